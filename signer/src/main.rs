//! The signet-signer binary: parse arguments, set up the process, run.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

/// mimalloc rather than glibc malloc: under bursts glibc kept freed memory (RSS 200 MiB after
/// 5,000 runs with a live heap under 20 MiB); mimalloc returns it (see docs/signer.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use signet_runtime::health::{self, Health};
use signet_runtime::lease::{self, LeaseLock, LeaseSettings};
use signet_runtime::process::{self, ClientArgs, LogArgs};
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
    /// Runs signed concurrently.
    #[arg(long, env = "SIGNET_WORKERS", default_value_t = 4)]
    workers: usize,
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
    let lock = LeaseLock::new(
        client.clone(),
        LeaseSettings {
            namespace: args.namespace.clone(),
            name: signet_signer::metrics::LEASE_NAME.to_owned(),
            identity: lease::process_identity(),
            duration: args.lease_duration.into(),
            renew_every: args.lease_renew.into(),
        },
    )
    .with_annotations({
        let started = k8s_openapi::jiff::Timestamp::now();
        let since = started
            .round(k8s_openapi::jiff::Unit::Second)
            .unwrap_or(started)
            .to_string();
        let metrics = metrics.clone();
        Arc::new(move || metrics.lease_annotations(&since))
    });
    let sources = Sources::watch(
        &client,
        &health,
        &args.namespace,
        (&args.config_map, &args.signing_secret),
    );
    let own_account = (args.namespace.clone(), args.service_account.clone());
    let ctx = Arc::new(Context::new(
        client,
        sources,
        metrics,
        args.workers,
        own_account,
    )?);
    for family in ctx.gauges() {
        health.add_sampled(family);
    }
    let namespaces: Vec<String> = args
        .namespaces
        .into_iter()
        .filter(|n| !n.is_empty())
        .collect();
    let reporting = health.clone();
    lease::lead(&lock, &health, |stop| {
        watch::run(ctx, &reporting, namespaces, stop)
    })
    .await?;
    Ok(())
}
