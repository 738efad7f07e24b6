//! The signet-signer binary: parse arguments, set up the process, run.

use std::process::ExitCode;

use clap::Parser;
use signet_signer::health::{self, Health};
use signet_signer::process::{self, LogArgs};

/// Signs completed Tekton TaskRuns and PipelineRuns (Tekton Chains compatible).
#[derive(Debug, Parser)]
#[command(name = "signet-signer", version, about)]
struct Args {
    #[command(flatten)]
    log: LogArgs,
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
    /// Address for /healthz, /readyz and /metrics (the Deployment's `metrics` port).
    #[arg(long, env = "SIGNET_HEALTH_ADDR", default_value = "0.0.0.0:9090")]
    health_addr: std::net::SocketAddr,
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
    let _client = process::start(&args.log).await?;
    let health = Health::new(Vec::new());
    health::serve(args.health_addr, health.clone(), "signet_signer").await?;
    health.set_ready(true);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        namespace = %args.namespace,
        config_map = %args.config_map,
        signing_secret = %args.signing_secret,
        "signet-signer started"
    );
    process::shutdown_signal().await;
    tracing::info!("signet-signer stopping");
    Ok(())
}
