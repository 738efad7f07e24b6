//! The signet-signer binary: parse arguments, set up the process, run.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

/// mimalloc rather than glibc malloc: under bursts glibc kept freed memory (RSS 200 MiB after
/// 5,000 runs with a live heap under 20 MiB); mimalloc returns it (see docs/signer.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use signet_runtime::health::{self, Health};
use signet_runtime::lease::{self, LeaseLock, LeaseSettings};
use signet_runtime::process::{self, ClientArgs, LogArgs};
use signet_runtime::release;
use signet_runtime::shards::{ShardHolder, ShardSettings, Sharding};
use signet_signer::watch::sources::Sources;
use signet_signer::watch::{self, Context, Metrics};

/// Signs completed Tekton TaskRuns and PipelineRuns (Tekton Chains compatible).
#[derive(Debug, Parser)]
#[command(name = "signet-signer", version, about)]
struct Args {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    client: ClientArgs,
    /// Namespace holding the signer's ConfigMap, signing Secret and leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "signet-system")]
    namespace: String,
    /// ConfigMap with Tekton Chains' configuration keys, watched through the API.
    #[arg(
        long,
        env = "SIGNET_CONFIG_MAP",
        default_value = "signet-signer-config"
    )]
    config_map: String,
    /// Secret with `cosign.key` + `cosign.password` or `x509.pem`, watched through the API.
    #[arg(long, env = "SIGNET_SIGNING_SECRET", default_value = "signing-secrets")]
    signing_secret: String,
    /// Namespaces whose runs are signed, comma-separated; all when empty.
    #[arg(
        long,
        env = "SIGNET_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    namespaces: Vec<String>,
    /// Runs in flight at once (most of a run's time is spent waiting on registries, KMS
    /// and logs); the backlog found at start takes at most a quarter of them.
    #[arg(long, env = "SIGNET_WORKERS", default_value_t = 128)]
    workers: usize,
    /// Replicas sharing the runs (the Deployment's `replicas`). With more than one, runs are
    /// divided into as many shards by their UID, each owned through a Lease of its own;
    /// with one, a single Lease makes one process the signer and the others standbys.
    #[arg(long, env = "SIGNET_REPLICAS", default_value_t = 1)]
    replicas: usize,
    /// The signer's own ServiceAccount (in `--namespace`): its pull secrets are the registry
    /// credentials used when the run's ServiceAccount has none for a registry.
    #[arg(long, env = "SIGNET_SERVICE_ACCOUNT", default_value = "signet-signer")]
    service_account: String,
    /// Address for /healthz, /readyz and /metrics (the Deployment's `metrics` port).
    #[arg(long, env = "SIGNET_HEALTH_ADDR", default_value = "0.0.0.0:9090")]
    health_addr: SocketAddr,
    /// How long a leader's claim lasts without renewal.
    #[arg(long, default_value = "15s")]
    lease_duration: humantime::Duration,
    /// How often the leader renews its claim.
    #[arg(long, default_value = "5s")]
    lease_renew: humantime::Duration,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Our errors already carry their causes in the message: print it once.
            eprintln!("signet-signer: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let client = process::start(&args.log, args.client).await?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        namespace = %args.namespace,
        config_map = %args.config_map,
        signing_secret = %args.signing_secret,
        "signet-signer started"
    );
    let metrics = Metrics::default();
    let health = Health::with_histograms(
        "signet_signer_leader",
        metrics.exported(),
        metrics.histograms(),
    );
    health::serve(args.health_addr, health.clone()).await?;
    health.set_ready(true);
    let annotator: lease::Annotator = {
        let started = k8s_openapi::jiff::Timestamp::now();
        let since = started
            .round(k8s_openapi::jiff::Unit::Second)
            .unwrap_or(started)
            .to_string();
        let metrics = metrics.clone();
        Arc::new(move || metrics.lease_annotations(&since))
    };
    let lease_settings = LeaseSettings {
        namespace: args.namespace.clone(),
        name: signet_signer::metrics::LEASE_NAME.to_owned(),
        identity: lease::process_identity(),
        duration: args.lease_duration.into(),
        renew_every: args.lease_renew.into(),
    };
    let sources = Sources::watch(
        &client,
        &health,
        &args.namespace,
        (&args.config_map, &args.signing_secret),
    );
    let own_account = (args.namespace.clone(), args.service_account.clone());
    let ctx = Context::new(client.clone(), sources, metrics, args.workers, own_account)?;
    let namespaces: Vec<String> = args
        .namespaces
        .into_iter()
        .filter(|n| !n.is_empty())
        .collect();
    if !namespaces.is_empty() {
        tokio::spawn(let_go_elsewhere(client.clone(), namespaces.clone()));
    }
    if args.replicas > 1 {
        return share(
            client,
            ctx,
            &health,
            namespaces,
            (lease_settings, annotator),
            args.replicas,
        )
        .await;
    }
    let ctx = Arc::new(ctx);
    for family in ctx.gauges() {
        health.add_sampled(family);
    }
    // One replica is a sharding of one: it signs only while no other replica count does.
    let sharding = Sharding::new(&client, &lease_settings, &lease_settings.name, 1);
    while !sharding.renew().await {
        tokio::select! {
            () = tokio::time::sleep(lease_settings.renew_every) => {}
            () = process::shutdown_signal() => return Ok(()),
        }
    }
    let every = lease_settings.renew_every;
    let lock = LeaseLock::new(client, lease_settings).with_annotations(annotator);
    let reporting = health.clone();
    lease::lead(&lock, &health, |stop| async move {
        let until = async {
            tokio::select! {
                () = stop => {}
                () = sharding.keep(every) => {
                    tracing::warn!("lost the sharding lease: stopping, to wait for it again");
                }
            }
        };
        watch::run(ctx, &reporting, namespaces, Box::pin(until)).await;
    })
    .await?;
    Ok(())
}

/// A signer limited to `namespaces` signs no run elsewhere: takes its finalizers off the runs
/// an earlier signer held there (before `signer.namespaces` changed), pass after pass until
/// none is left.
async fn let_go_elsewhere(client: kube::Client, namespaces: Vec<String>) {
    loop {
        match release::release_run_finalizers(&client, &namespaces).await {
            Ok(done) => {
                if done.released > 0 {
                    tracing::info!(
                        runs = done.released,
                        "released Signet's finalizers from runs outside the signed namespaces"
                    );
                }
                if done.remaining == 0 {
                    return;
                }
            }
            Err(error) => tracing::warn!(%error, "retrying in 30 s"),
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
}

/// Active-active: signs the runs of the shards this replica holds among `replicas`, until
/// shutdown; then gives its shards up.
async fn share(
    client: kube::Client,
    ctx: Context,
    health: &Arc<Health>,
    namespaces: Vec<String>,
    (settings, annotator): (LeaseSettings, lease::Annotator),
    replicas: usize,
) -> anyhow::Result<()> {
    let holder = ShardHolder::new(
        &client,
        ShardSettings {
            namespace: settings.namespace,
            base: settings.name,
            identity: settings.identity,
            shards: replicas,
            replicas,
            duration: settings.duration,
            renew_every: settings.renew_every,
        },
        Some(&annotator),
    );
    let ctx = Arc::new(ctx.with_shards(holder.owned()));
    for family in ctx.gauges() {
        health.add_sampled(family);
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        process::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let working = async {
        // The watch lists once the first shards are held, so their runs come with the list.
        if first_rx.await.is_ok() {
            watch::run(ctx, health, namespaces, stopped(stop_rx.clone())).await;
        }
    };
    tokio::join!(
        holder.hold(first_tx, health, stopped(stop_rx.clone())),
        working
    );
    holder.release().await;
    tracing::info!("stopped; shards released");
    Ok(())
}
