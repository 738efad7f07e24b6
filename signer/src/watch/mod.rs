//! The signing loop: watch completed runs, sign each once with bounded concurrency, and
//! record the outcome on the run through `mark`.

pub mod mark;
pub mod queue;
pub mod retry;
pub mod sources;
pub mod status;
mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use signet_runtime::health::{Health, Sampled};
use tokio::sync::Semaphore;

use crate::annotations::SIGNED;
pub use crate::metrics::Metrics;
use crate::run::{Run, RunKind};
use crate::signing::kms::KmsSigners;
use crate::storage::Registries;
use crate::storage::oci::registry::Clients;
use crate::transparency::LogKeys;
use crate::transparency::timestamp::TsaChains;
use mark::{Written, hold_or_release, release, write};
use queue::{Backlog, InFlight, Work};
use retry::{AGAIN_LIMIT, API_RETRIES, Step, api_backoff};
use sources::Sources;
use status::WatchStatus;

/// Most queued runs kept as whole watched objects; the rest wait as references.
const CACHED_OBJECTS: usize = 256;
/// Finalizer writes in flight at once.
const HOLD_WRITERS: usize = 4;

/// After this many failed attempts a run is marked `failed` (Chains' limit).
pub const MAX_RETRIES: u32 = 3;

/// Shared state of the loop.
pub struct Context {
    pub client: Client,
    pub sources: Sources,
    pub metrics: Metrics,
    pub workers: usize,
    recorder: Recorder,
    in_flight: InFlight,
    /// HTTP clients for registries, Fulcio and Rekor.
    clients: Clients,
    /// The KMS key in force, if any.
    kms: KmsSigners,
    /// The transparency logs' public keys, read once.
    log_keys: LogKeys,
    /// The timestamp authorities' pinned chains, read once.
    tsa_chains: TsaChains,
    /// The signer's own ServiceAccount `(namespace, name)`: its pull secrets are the
    /// fallback registry credentials.
    own_account: (String, String),
    /// Clients of the storage backends outside the cluster (gcs, docdb).
    stores: crate::storage::Stores,
    /// With several replicas, the shards of runs this one holds; `None`: every run.
    shards: Option<signet_runtime::shards::Owned>,
}

impl Context {
    pub fn new(
        client: Client,
        sources: Sources,
        metrics: Metrics,
        workers: usize,
        own_account: (String, String),
    ) -> Result<Self, reqwest::Error> {
        let reporter = Reporter {
            controller: "signet-signer".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let recorder = Recorder::new(client.clone(), reporter);
        Ok(Self {
            client,
            sources,
            metrics,
            workers: workers.max(1),
            recorder,
            in_flight: InFlight::default(),
            clients: Clients::new()?,
            kms: KmsSigners::default(),
            log_keys: LogKeys::default(),
            tsa_chains: TsaChains::default(),
            own_account,
            stores: crate::storage::Stores::default(),
            shards: None,
        })
    }

    /// Signs only the runs of the shards in `owned` (active-active replicas).
    #[must_use]
    pub fn with_shards(mut self, owned: signet_runtime::shards::Owned) -> Self {
        self.shards = Some(owned);
        self
    }

    /// Whether the run with `uid` is this replica's (always, without shards).
    pub fn owns(&self, uid: &str) -> bool {
        self.shards.as_ref().is_none_or(|s| s.owns(uid))
    }
}

impl Context {
    /// The signer's gauges, read at each scrape: runs in flight (queued, being signed or
    /// waiting for a retry), how long the longest-waiting of them has waited since the signer
    /// saw it done, and whether the signing Secret's key is loaded where the configuration
    /// needs one. The alerts the operator renders read these.
    pub fn gauges(self: &Arc<Self>) -> Vec<Sampled> {
        let (count, oldest, key) = (self.clone(), self.clone(), self.clone());
        vec![
            Sampled::gauge(
                "signet_signer_runs_in_flight",
                "Completed runs queued, being signed or waiting for a retry.",
                // Counts of runs fit f64 exactly.
                #[allow(clippy::cast_precision_loss)]
                move || count.in_flight.waiting().0 as f64,
            ),
            Sampled::gauge(
                "signet_signer_oldest_in_flight_seconds",
                "How long the run in flight the longest has waited since the signer saw it done (0 when none).",
                move || oldest.in_flight.waiting().1.as_secs_f64(),
            ),
            Sampled::gauge(
                "signet_signer_signing_key_loaded",
                "1 when the signing Secret's key is loaded or the configuration needs none (keyless, KMS); 0 when it cannot be loaded or the configuration is unreadable.",
                move || f64::from(u8::from(key.signing_key_ready())),
            ),
            self.metrics.failures_by_reason(),
            self.stores.writes_total(),
            crate::signing::kms::key_changes_total(),
            Sampled {
                name: "signet_signer_api_requests_total",
                help: "Requests made to the API server: reads (get, list, watch) and writes.",
                type_: "counter",
                // Counts fit f64 exactly for any realistic uptime.
                #[allow(clippy::cast_precision_loss)]
                read: Arc::new(|| {
                    let (reads, writes) = signet_runtime::ratelimit::requests();
                    vec![
                        ("verb=\"read\"".to_owned(), reads as f64),
                        ("verb=\"write\"".to_owned(), writes as f64),
                    ]
                }),
            },
        ]
        .into_iter()
        .chain(crate::peers::sampled(&[
            self.clients.limits().clone(),
            self.kms.limits().clone(),
        ]))
        .collect()
    }

    fn signing_key_ready(&self) -> bool {
        let Ok(config) = self.sources.config() else {
            return false;
        };
        let needs_key = !config.x509.fulcio_enabled
            && [
                config.taskrun.signer,
                config.pipelinerun.signer,
                config.oci.signer,
            ]
            .contains(&signet_config::SignerKind::X509);
        !needs_key || self.sources.key().is_ok()
    }

    /// Where runs' registry credentials come from and go through.
    fn registries(&self) -> Registries<'_> {
        Registries {
            client: &self.client,
            clients: &self.clients,
            own_account: &self.own_account,
        }
    }
}

fn resource(kind: RunKind) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("tekton.dev", "v1", kind.kind()))
}

pub(crate) fn runs(client: &Client, kind: RunKind, namespace: Option<&str>) -> Api<DynamicObject> {
    let ar = resource(kind);
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

/// Watches TaskRuns and PipelineRuns in `namespaces` (all when empty) until `stop` resolves.
pub async fn run(
    ctx: Arc<Context>,
    health: &Arc<Health>,
    namespaces: Vec<String>,
    stop: impl std::future::Future<Output = ()>,
) {
    ctx.sources.wait_synced().await;
    tracing::info!(workers = ctx.workers, "signing TaskRuns and PipelineRuns");
    let (mut events, mut statuses) = watch_runs(&ctx.client, health, namespaces.clone());
    // Two queues: runs that complete while we watch (signed first), and the backlog found at
    // start (drained in the background, newest first). The backlog holds references, not
    // objects, so a large backlog costs little memory.
    let (live_tx, live_rx) = tokio::sync::mpsc::unbounded_channel::<Work>();
    let backlog = Arc::new(Backlog::default());
    let permits = Arc::new(Semaphore::new(ctx.workers));
    let dispatcher = tokio::spawn(dispatch(
        ctx.clone(),
        live_rx,
        backlog.clone(),
        permits.clone(),
    ));
    let helpers = [
        Some(open_backlog_later(&backlog)),
        rescan_on_takeover(&ctx, &backlog, &namespaces),
    ];
    let (holds_tx, holds_rx) = tokio::sync::mpsc::unbounded_channel::<Hold>();
    let holder = tokio::spawn(write_holds(ctx.clone(), holds_rx));
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            () = &mut stop => break,
            e = events.next() => e,
        };
        let Some((kind, index, event)) = event else {
            break;
        };
        let Some((obj, initial)) = observe(event, index, &mut statuses, &backlog) else {
            continue;
        };
        let run = Run::from_object(kind, serde_json::to_value(&obj).unwrap_or_default());
        let signable = !run.is_finished() && is_ours(&ctx, &run);
        let change = if !signable {
            // Nothing will sign it here — marked already (by someone else: our own mark
            // drops the finalizer in the same write), or no longer ours by
            // `filter.managed-by` since it was held — so our finalizer must not hold it.
            // Another replica's shard is that replica's to touch.
            ctx.owns(&run.uid).then(|| release(&run)).flatten()
        } else if !run.is_done() {
            hold_or_release(&run)
        } else {
            None
        };
        if let Some(finalizers) = change {
            // Off the event loop: a finalizer write must not hold up the next event.
            let hold = Hold {
                run: run.reference(),
                resource_version: obj.metadata.resource_version.clone().unwrap_or_default(),
                finalizers,
                // Held by us and marked: not by us, whose mark drops the finalizer with it.
                marked_by_another: run
                    .is_finished()
                    .then(|| run.annotation(SIGNED).unwrap_or_default().to_owned()),
            };
            if holds_tx.send(hold).is_err() {
                break;
            }
        }
        if !signable || !run.is_done() {
            continue;
        }
        let Some(queued) = ctx.in_flight.insert(&run.uid) else {
            continue;
        };
        if initial {
            let created = obj.metadata.creation_timestamp.as_ref().map(|t| t.0);
            backlog.push(created, run.reference());
        } else {
            // Keep the watched object (it saves a read) only while the queue is short; past
            // that, a reference, read again when its turn comes. Bounds memory in a burst.
            let cached = (queued <= CACHED_OBJECTS).then(|| {
                let mut obj = obj;
                obj.metadata.managed_fields = None;
                obj
            });
            let work = Work {
                run: run.reference(),
                cached,
                queued: std::time::Instant::now(),
            };
            if live_tx.send(work).is_err() {
                break;
            }
        }
    }
    dispatcher.abort();
    holder.abort();
    for helper in helpers.into_iter().flatten() {
        helper.abort();
    }
    // Wait for in-flight runs to finish before returning (graceful shutdown).
    let _ = permits
        .acquire_many(u32::try_from(ctx.workers).unwrap_or(u32::MAX))
        .await;
}

/// Reports a watch event to its watch's standing and opens the backlog once every watch has
/// listed; the run it carries, if any, and whether it came with a list.
fn observe(
    event: Result<watcher::Event<DynamicObject>, watcher::Error>,
    index: usize,
    statuses: &mut [WatchStatus],
    backlog: &Backlog,
) -> Option<(DynamicObject, bool)> {
    let status = &mut statuses[index];
    match event {
        Ok(watcher::Event::Apply(obj)) => {
            status.working();
            Some((obj, false))
        }
        Ok(watcher::Event::InitApply(obj)) => {
            status.working();
            Some((obj, true))
        }
        Ok(watcher::Event::InitDone) => {
            status.listed();
            if statuses.iter().all(WatchStatus::has_listed) {
                backlog.open();
            }
            None
        }
        // A (re)list is starting: neither success nor failure yet.
        Ok(watcher::Event::Init) => None,
        Ok(watcher::Event::Delete(_)) => {
            status.working();
            None
        }
        Err(error) => {
            status.failed(&error);
            None
        }
    }
}

type RunEvents = futures::stream::SelectAll<
    futures::stream::BoxStream<
        'static,
        (
            RunKind,
            usize,
            Result<watcher::Event<DynamicObject>, watcher::Error>,
        ),
    >,
>;

/// One watch per run kind and namespace (all namespaces when `namespaces` is empty), merged,
/// with the standing of each (indexed by the event's `usize`) reported to `health`.
fn watch_runs(
    client: &Client,
    health: &Arc<Health>,
    namespaces: Vec<String>,
) -> (RunEvents, Vec<WatchStatus>) {
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    let mut statuses = Vec::new();
    let streams = scopes.into_iter().flat_map(|ns| {
        [RunKind::TaskRun, RunKind::PipelineRun].map(|kind| {
            let index = statuses.len();
            let scope = ns.as_deref().map_or_else(
                || "all namespaces".to_owned(),
                |ns| format!("namespace {ns}"),
            );
            statuses.push(WatchStatus::new(
                health,
                format!("watch {}s ({scope})", kind.kind()),
            ));
            // Whole objects stream past; none is kept, so memory does not grow with finished
            // runs. Lists come 100 runs a page (signed runs carry kilobytes of annotations:
            // kube's default 500 kept the RSS ~17 MiB higher after a 10,000-run list). A
            // failing watch (403, a missing CRD, the API server away) backs off.
            watcher(
                runs(client, kind, ns.as_deref()),
                watcher::Config::default().page_size(LIST_PAGE),
            )
            .default_backoff()
            .map(move |event| (kind, index, event))
            .boxed()
        })
    });
    let events = futures::stream::select_all(streams.collect::<Vec<_>>());
    (events, statuses)
}

/// Whether `run` is this signer's to sign: in a shard it holds, and under the configuration
/// in force (`filter.managed-by`); with an unreadable configuration it is, and fails saying
/// why.
fn is_ours(ctx: &Context, run: &Run) -> bool {
    ctx.owns(&run.uid)
        && ctx
            .sources
            .config()
            .map_or(true, |config| run.is_ours(&config.managed_by))
}

/// The backlog is handed out once every watch has listed, or after this long at the latest.
const BACKLOG_OPENS_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// Opens the backlog after [`BACKLOG_OPENS_AFTER`] at the latest: a watch that cannot list
/// (a missing CRD, a 403) must not hold back the others' backlog.
fn open_backlog_later(backlog: &Arc<Backlog>) -> tokio::task::JoinHandle<()> {
    let backlog = backlog.clone();
    tokio::spawn(async move {
        tokio::time::sleep(BACKLOG_OPENS_AFTER).await;
        backlog.open();
    })
}

/// Runs per page when the watches list and when shards are taken over.
const LIST_PAGE: u32 = 100;

/// With shards: when this replica takes a shard after the watch listed (another replica
/// died, or the shard was taken in a later round), the shard's completed unsigned runs were
/// skipped; lists the runs a page at a time and puts those into the backlog.
fn rescan_on_takeover(
    ctx: &Arc<Context>,
    backlog: &Arc<Backlog>,
    namespaces: &[String],
) -> Option<tokio::task::JoinHandle<()>> {
    let owned = ctx.shards.clone()?;
    Some(tokio::spawn(rescans(
        ctx.clone(),
        owned,
        backlog.clone(),
        namespaces.to_vec(),
    )))
}

async fn rescans(
    ctx: Arc<Context>,
    owned: signet_runtime::shards::Owned,
    backlog: Arc<Backlog>,
    namespaces: Vec<String>,
) {
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    let mut seen = owned.gains();
    loop {
        owned.gained.notified().await;
        // Several shards taken in one round: one listing.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let gains = owned.gains();
        if gains == seen {
            continue;
        }
        seen = gains;
        let now = owned.count();
        let mut found = 0;
        for scope in &scopes {
            for kind in [RunKind::TaskRun, RunKind::PipelineRun] {
                let api = runs(&ctx.client, kind, scope.as_deref());
                let mut params = kube::api::ListParams::default().limit(LIST_PAGE);
                loop {
                    let page = match api.list(&params).await {
                        Ok(page) => page,
                        Err(error) => {
                            tracing::warn!(%error, "failed to list the runs of a shard taken over; they are signed at their next change");
                            break;
                        }
                    };
                    for obj in page.items {
                        let created = obj.metadata.creation_timestamp.as_ref().map(|t| t.0);
                        let run =
                            Run::from_object(kind, serde_json::to_value(&obj).unwrap_or_default());
                        if run.is_done()
                            && !run.is_finished()
                            && is_ours(&ctx, &run)
                            && ctx.in_flight.insert(&run.uid).is_some()
                        {
                            found += 1;
                            backlog.push(created, run.reference());
                        }
                    }
                    match page.metadata.continue_ {
                        Some(token) if !token.is_empty() => params = params.continue_token(&token),
                        _ => break,
                    }
                }
            }
        }
        tracing::info!(
            shards = now,
            runs = found,
            "shards taken over: their unsigned runs queued"
        );
    }
}

/// A finalizer change waiting to be written: only the run's reference and the new list, so a
/// queue of thousands in a burst (writes wait for the client limiter) stays small.
struct Hold {
    run: Run,
    resource_version: String,
    finalizers: Vec<String>,
    /// The `signed` value someone other than Signet wrote on a run Signet held.
    marked_by_another: Option<String>,
}

/// Writes finalizer changes, a few at a time, in the order they were seen. A hold for a run
/// whose completion is already queued is dropped: the run is next in line to be signed, and
/// the write would only bump its resourceVersion and make the signing write conflict.
async fn write_holds(ctx: Arc<Context>, rx: tokio::sync::mpsc::UnboundedReceiver<Hold>) {
    let holds = futures::stream::unfold(rx, |mut rx| async { rx.recv().await.map(|h| (h, rx)) });
    holds
        .for_each_concurrent(HOLD_WRITERS, |hold| {
            let ctx = ctx.clone();
            async move {
                if ctx.in_flight.contains(&hold.run.uid) {
                    return;
                }
                let api = runs(&ctx.client, hold.run.kind, Some(&hold.run.namespace));
                let written = write(
                    &api,
                    &hold.run,
                    &hold.resource_version,
                    &BTreeMap::new(),
                    Some(hold.finalizers),
                )
                .await;
                if let (Written::Yes, Some(value)) = (written, hold.marked_by_another) {
                    worker::marked_by_another(&ctx, &hold.run, &value).await;
                }
            }
        })
        .await;
}

/// A backlog run's place: freeing it wakes the dispatcher, which may be waiting for one.
struct BacklogPlace {
    place: Option<tokio::sync::OwnedSemaphorePermit>,
    backlog: Arc<Backlog>,
}

impl Drop for BacklogPlace {
    fn drop(&mut self) {
        // The place first, then the wake-up: woken earlier, the dispatcher would find no
        // place and wait again with the wake-up spent.
        drop(self.place.take());
        self.backlog.added.notify_one();
    }
}

/// Hands work out, up to `ctx.workers` runs in flight: live runs first, then the newest of
/// the backlog, which may hold at most a quarter of the places — so that a run completed
/// while a long backlog drains finds a place at once and its API requests queue behind
/// few of the backlog's in the client's rate limiter.
async fn dispatch(
    ctx: Arc<Context>,
    mut live: tokio::sync::mpsc::UnboundedReceiver<Work>,
    backlog: Arc<Backlog>,
    permits: Arc<Semaphore>,
) {
    let backlog_places = Arc::new(Semaphore::new((ctx.workers / 4).max(1)));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (work, backlog_place) = loop {
            match live.try_recv() {
                Ok(work) => break (work, None),
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => return,
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {}
            }
            if let Ok(place) = backlog_places.clone().try_acquire_owned()
                && let Some(work) = backlog.pop_newest()
            {
                break (work, Some(place));
            }
            // Woken by a new live run, a new backlog run, or a backlog place freed.
            tokio::select! {
                work = live.recv() => match work {
                    Some(work) => break (work, None),
                    None => return,
                },
                () = backlog.added.notified() => {}
            }
        };
        let ctx = ctx.clone();
        let backlog = backlog.clone();
        tokio::spawn(async move {
            let _place = backlog_place.map(|place| BacklogPlace {
                place: Some(place),
                backlog,
            });
            let Work {
                run,
                mut cached,
                queued,
            } = work;
            // Released when this task ends, however it ends (a panic included).
            let _claim = ctx.in_flight.claim(&run.uid);
            let metrics = ctx.metrics.of(run.kind);
            metrics.queue_seconds.observe(queued.elapsed());
            let started = std::time::Instant::now();
            // Retries happen here rather than on the watch event our own write causes: that
            // event arrives while the run is still in flight and is skipped. A watched object
            // is used as is: the write is conditional on its resourceVersion, so a stale copy
            // cannot sign twice — it gets a conflict and the run is read afresh. Bounded, in
            // case something keeps changing the run.
            let (mut again, mut unreachable) = (0, 0);
            loop {
                match worker::process(&ctx, run.kind, &run.namespace, &run.name, cached.take())
                    .await
                {
                    Step::Again if again < AGAIN_LIMIT => again += 1,
                    Step::Done | Step::Again => break,
                    // The API server did not answer: the write (or read) is retried here,
                    // since a watch that relisted meanwhile would not bring the run back.
                    Step::ApiError if unreachable < API_RETRIES => {
                        unreachable += 1;
                        tokio::time::sleep(api_backoff(unreachable)).await;
                    }
                    Step::ApiError => {
                        tracing::warn!(run = %run.id(), attempts = unreachable, "giving up on the API server for this run until its next watch event");
                        break;
                    }
                }
            }
            metrics.sign_seconds.observe(started.elapsed());
            drop(permit);
        });
    }
}
