//! The signing loop: watch completed runs, sign each once with bounded concurrency, and
//! record the outcome on the run through `mark`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use tokio::sync::Semaphore;

use crate::config::SignerConfig;
use crate::config::{SignerKind, TransparencyMode};
use crate::health::Health;
use crate::keyless;
use crate::kms::KmsSigners;
use crate::mark::{Written, hold_or_release, release, write};
pub use crate::metrics::Metrics;
use crate::oci::registry::Clients;
use crate::pipeline::{Keys, SignError, Signed, sign_run};
use crate::queue::{Backlog, InFlight, Work};
use crate::run::{FAILURE_REASON, RETRIES, Run, RunKind, SIGNED};
use crate::sources::Sources;
use crate::transparency::{LogKeys, Rekor};
use crate::watch_status::WatchStatus;

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
    /// HTTP clients for registries.
    registries: Clients,
    /// The KMS key in force, if any.
    kms: KmsSigners,
    /// The transparency logs' public keys, read once.
    log_keys: LogKeys,
    /// The signer's own ServiceAccount `(namespace, name)`: its pull secrets are the
    /// fallback registry credentials.
    own_account: (String, String),
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
            registries: Clients::new()?,
            kms: KmsSigners::default(),
            log_keys: LogKeys::default(),
            own_account,
        })
    }
}

fn resource(kind: RunKind) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("tekton.dev", "v1", kind.kind()))
}

fn runs(client: &Client, kind: RunKind, namespace: Option<&str>) -> Api<DynamicObject> {
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
    let (mut events, mut statuses) = watch_runs(&ctx.client, health, namespaces);
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
    let (holds_tx, holds_rx) = tokio::sync::mpsc::unbounded_channel::<Hold>();
    let holder = tokio::spawn(write_holds(ctx.clone(), holds_rx));
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            () = &mut stop => break,
            e = events.next() => e,
        };
        let (kind, obj, initial) = match event {
            Some((kind, index, Ok(event))) => {
                let status = &mut statuses[index];
                match event {
                    watcher::Event::Apply(obj) => {
                        status.working();
                        (kind, obj, false)
                    }
                    watcher::Event::InitApply(obj) => {
                        status.working();
                        (kind, obj, true)
                    }
                    watcher::Event::InitDone => {
                        status.listed();
                        continue;
                    }
                    // A (re)list is starting: neither success nor failure yet.
                    watcher::Event::Init => continue,
                    watcher::Event::Delete(_) => {
                        status.working();
                        continue;
                    }
                }
            }
            Some((_, index, Err(error))) => {
                statuses[index].failed(&error);
                continue;
            }
            None => break,
        };
        let run = Run::from_object(kind, serde_json::to_value(&obj).unwrap_or_default());
        if run.is_finished() || !is_ours(&ctx, &run) {
            continue;
        }
        if !run.is_done() {
            // Off the event loop: a finalizer write must not hold up the next event.
            if let Some(finalizers) = hold_or_release(&run) {
                let hold = Hold {
                    run: run.reference(),
                    resource_version: obj.metadata.resource_version.clone().unwrap_or_default(),
                    finalizers,
                };
                if holds_tx.send(hold).is_err() {
                    break;
                }
            }
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
    // Wait for in-flight runs to finish before returning (graceful shutdown).
    let _ = permits
        .acquire_many(u32::try_from(ctx.workers).unwrap_or(u32::MAX))
        .await;
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
            // runs. A failing watch (403, a missing CRD, the API server away) backs off.
            watcher(
                runs(client, kind, ns.as_deref()),
                watcher::Config::default(),
            )
            .default_backoff()
            .map(move |event| (kind, index, event))
            .boxed()
        })
    });
    let events = futures::stream::select_all(streams.collect::<Vec<_>>());
    (events, statuses)
}

/// Whether `run` is this signer's to sign under the configuration in force
/// (`filter.managed-by`); with an unreadable configuration it is, and fails saying why.
fn is_ours(ctx: &Context, run: &Run) -> bool {
    ctx.sources
        .config()
        .map_or(true, |config| run.is_ours(&config.managed_by))
}

/// A finalizer change waiting to be written: only the run's reference and the new list, so a
/// queue of thousands in a burst (writes wait for the client limiter) stays small.
struct Hold {
    run: Run,
    resource_version: String,
    finalizers: Vec<String>,
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
                let _ = write(
                    &api,
                    &hold.run,
                    &hold.resource_version,
                    &BTreeMap::new(),
                    Some(hold.finalizers),
                )
                .await;
            }
        })
        .await;
}

/// Hands work to the workers: live runs first, then the newest of the backlog.
async fn dispatch(
    ctx: Arc<Context>,
    mut live: tokio::sync::mpsc::UnboundedReceiver<Work>,
    backlog: Arc<Backlog>,
    permits: Arc<Semaphore>,
) {
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let work = loop {
            match live.try_recv() {
                Ok(work) => break work,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => return,
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {}
            }
            if let Some(work) = backlog.pop_newest() {
                break work;
            }
            tokio::select! {
                work = live.recv() => match work {
                    Some(work) => break work,
                    None => return,
                },
                () = backlog.added.notified() => {}
            }
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
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
                match process(&ctx, run.kind, &run.namespace, &run.name, cached.take()).await {
                    Step::Again if again < 10 => again += 1,
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

/// The annotation that asks for a Rekor upload when `transparency.enabled` is `manual`.
pub const TRANSPARENCY_UPLOAD: &str = "chains.tekton.dev/transparency-upload";

/// Whether `run` goes to the transparency log: every run, or (manual) only those annotated
/// `chains.tekton.dev/transparency-upload: "true"`.
pub fn uploads(config: &SignerConfig, run: &Run) -> bool {
    match config.transparency.mode {
        TransparencyMode::Enabled => true,
        TransparencyMode::Manual => run.annotation(TRANSPARENCY_UPLOAD) == Some("true"),
        TransparencyMode::Disabled => false,
    }
}

/// Signs `run` with every key its configuration asks for: the signing Secret's, the KMS key,
/// and for keyless signing a fresh key and certificate from Fulcio.
async fn sign(
    ctx: &Context,
    run: &Run,
    children: &[Run],
    config: &SignerConfig,
) -> Result<Signed, SignError> {
    let key = ctx.sources.key();
    let kms = ctx.kms.signer(&config.kms);
    let uses_x509 = [
        config.taskrun.signer,
        config.pipelinerun.signer,
        config.oci.signer,
    ]
    .contains(&SignerKind::X509);
    let keyless = if config.x509.fulcio_enabled && uses_x509 {
        Some(keyless::certificate(ctx.registries.http(), &config.x509).await)
    } else {
        None
    };
    let keys = Keys {
        x509: key.as_deref().map_err(Clone::clone),
        kms: kms
            .as_ref()
            .map(|k| k.as_ref().map(AsRef::as_ref).map_err(Clone::clone)),
        keyless: keyless.as_ref().map(|k| k.as_ref().map_err(Clone::clone)),
    };
    let tlog = uploads(config, run).then(|| {
        Rekor::new(
            ctx.registries.http(),
            &config.transparency.url,
            &ctx.log_keys,
        )
    });
    sign_run(run, children, config, &keys, tlog.as_ref()).await
}

/// What [`process`] asks its caller to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Nothing: signed, failed for good, or not ours to sign.
    Done,
    /// Read the run again and go on at once (a write conflicted, or a retry is due).
    Again,
    /// The API server did not answer a read or write: try again after a backoff.
    ApiError,
}

/// Times a run is retried when the API server does not answer (about 7½ minutes in all).
const API_RETRIES: u32 = 20;

/// Wait before API retry `n` (1-based): 0.5 s doubling to 30 s.
fn api_backoff(n: u32) -> Duration {
    Duration::from_millis(500u64 << n.saturating_sub(1).min(6)).min(Duration::from_secs(30))
}

/// Signs one run, or records why not, and says what to do next.
async fn process(
    ctx: &Context,
    kind: RunKind,
    namespace: &str,
    name: &str,
    cached: Option<DynamicObject>,
) -> Step {
    let api = runs(&ctx.client, kind, Some(namespace));
    let metrics = ctx.metrics.of(kind);
    let obj = match cached {
        Some(obj) => obj,
        None => match api.get(name).await {
            Ok(obj) => obj,
            Err(kube::Error::Api(s)) if s.code == 404 => return Step::Done,
            Err(error) => {
                tracing::warn!(%error, run = %format!("{namespace}/{name}"), "failed to read run");
                return Step::ApiError;
            }
        },
    };
    let run = Run::from_object(kind, serde_json::to_value(&obj).unwrap_or_default());
    if !run.is_done() || run.is_finished() || !is_ours(ctx, &run) {
        return Step::Done;
    }
    let retries = run.retries();
    if retries > 0 {
        tokio::time::sleep(Duration::from_millis(250 << retries.min(4))).await;
    }
    let outcome = match (ctx.sources.config(), children(ctx, &run).await) {
        (Err(error), _) => Err(SignError::Other {
            run: run.id(),
            message: error.to_string(),
        }),
        (_, Err(error)) => Err(error),
        (Ok(config), Ok(children)) => match sign(ctx, &run, &children, &config).await {
            Ok(signed) => store_in_registries(ctx, &run, &config, signed).await,
            Err(error) => Err(error),
        },
    };
    let rv = obj.metadata.resource_version.clone().unwrap_or_default();
    match outcome {
        Ok(annotations) => {
            metrics.sign_created.inc();
            match write(&api, &run, &rv, &annotations, release(&run)).await {
                Written::Yes => {
                    metrics.payload_stored.inc();
                    metrics.marked_signed.inc();
                    tracing::info!(run = %run.id(), uid = %run.uid, "signed");
                    Step::Done
                }
                Written::Conflict => Step::Again,
                Written::Failed => Step::ApiError,
            }
        }
        Err(error) => {
            let attempt = retries + 1;
            let mut annotations = BTreeMap::new();
            let note = if attempt > MAX_RETRIES {
                annotations.insert(SIGNED.to_owned(), "failed".to_owned());
                annotations.insert(FAILURE_REASON.to_owned(), error.to_string());
                "SigningFailed"
            } else {
                annotations.insert(RETRIES.to_owned(), attempt.to_string());
                "SigningRetry"
            };
            tracing::warn!(run = %run.id(), uid = %run.uid, attempt, error_type = error.error_type(), %error, "signing failed");
            let done = attempt > MAX_RETRIES;
            let written = write(
                &api,
                &run,
                &rv,
                &annotations,
                release(&run).filter(|_| done),
            )
            .await;
            match written {
                Written::Conflict => return Step::Again,
                Written::Failed => return Step::ApiError,
                Written::Yes => {}
            }
            {
                // Counted once recorded: a conflict is retried, not a second failure.
                metrics.signing_failures.inc();
                let event = Event {
                    type_: EventType::Warning,
                    reason: note.to_owned(),
                    note: Some(error.to_string()),
                    action: "Sign".to_owned(),
                    secondary: None,
                };
                let reference = obj.object_ref(&resource(kind));
                if let Err(e) = ctx.recorder.publish(&event, &reference).await {
                    tracing::debug!(error = %e, "failed to record an Event");
                }
            }
            if attempt <= MAX_RETRIES {
                Step::Again
            } else {
                Step::Done
            }
        }
    }
}

/// Pushes a signed run's OCI layers with the credentials of the run's ServiceAccount, then
/// the signer's own; returns the annotations to write once every push succeeded.
async fn store_in_registries(
    ctx: &Context,
    run: &Run,
    config: &SignerConfig,
    signed: Signed,
) -> Result<BTreeMap<String, String>, SignError> {
    if signed.pushes.is_empty() {
        return Ok(signed.annotations);
    }
    let failed = |message: String| SignError::Registry {
        run: run.id(),
        message,
    };
    let account = run.service_account();
    let mut entries = crate::oci::service_account_entries(&ctx.client, &run.namespace, &account)
        .await
        .map_err(|e| {
            failed(format!(
                "reading the pull secrets of ServiceAccount {}/{account}: {e}",
                run.namespace
            ))
        })?;
    // The signer's own pull secrets are the fallback: read only when the run's leave an image
    // without a credential.
    let uncovered = signed.pushes.iter().any(|p| {
        [&p.image, &p.target]
            .iter()
            .any(|image| crate::oci::auth::credential_for(&entries, image).is_none())
    });
    if uncovered {
        let (own_ns, own_name) = &ctx.own_account;
        entries.extend(
            crate::oci::service_account_entries(&ctx.client, own_ns, own_name)
                .await
                .map_err(|e| {
                    failed(format!(
                        "reading the pull secrets of ServiceAccount {own_ns}/{own_name}: {e}"
                    ))
                })?,
        );
    }
    let written = crate::oci::push_all(
        &ctx.registries,
        &entries,
        &signed.pushes,
        config.storage.oci_insecure,
    )
    .await
    .map_err(|e| failed(e.to_string()))?;
    tracing::debug!(run = %run.id(), layers = written, already_there = signed.pushes.len() - written, "pushed to OCI registries");
    Ok(signed.annotations)
}

/// A PipelineRun's child TaskRuns (from `status.childReferences`), read from the API; none
/// for a TaskRun. A child that cannot be read fails the attempt rather than leave it out.
async fn children(ctx: &Context, run: &Run) -> Result<Vec<Run>, SignError> {
    if run.kind == RunKind::TaskRun {
        return Ok(Vec::new());
    }
    let api = runs(&ctx.client, RunKind::TaskRun, Some(&run.namespace));
    let mut out = Vec::new();
    let refs = run.object["status"]["childReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for child in refs.iter().filter(|c| c["kind"] == "TaskRun") {
        let name = child["name"].as_str().unwrap_or_default();
        let obj = api.get(name).await.map_err(|e| SignError::Other {
            run: run.id(),
            message: format!("failed to read child TaskRun {}/{name}: {e}", run.namespace),
        })?;
        out.push(Run::from_object(
            RunKind::TaskRun,
            serde_json::to_value(&obj).unwrap_or_default(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod transparency_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn api_retries_back_off_to_thirty_seconds_for_about_seven_minutes() {
        assert_eq!(api_backoff(1), Duration::from_millis(500));
        assert_eq!(api_backoff(2), Duration::from_secs(1));
        assert_eq!(api_backoff(7), Duration::from_secs(30));
        assert_eq!(api_backoff(u32::MAX), Duration::from_secs(30));
        let total: Duration = (1..=API_RETRIES).map(api_backoff).sum();
        assert!(
            total > Duration::from_secs(400) && total < Duration::from_secs(500),
            "{total:?}"
        );
    }

    #[test]
    fn manual_transparency_uploads_only_annotated_runs() {
        let plain = Run::from_object(RunKind::TaskRun, json!({"metadata": {"name": "a"}}));
        let asked = Run::from_object(
            RunKind::TaskRun,
            json!({"metadata": {"name": "b", "annotations": {TRANSPARENCY_UPLOAD: "true"}}}),
        );
        let mut config = SignerConfig::default();
        assert!(!uploads(&config, &asked), "disabled by default");
        config.transparency.mode = TransparencyMode::Manual;
        assert!(!uploads(&config, &plain));
        assert!(uploads(&config, &asked));
        config.transparency.mode = TransparencyMode::Enabled;
        assert!(uploads(&config, &plain));
    }
}
