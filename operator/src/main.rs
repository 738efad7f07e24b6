//! The signet-operator binary: parse arguments, set up the process, run.

use clap::Parser;
use signet_signer::process::{self, LogArgs};

/// Reconciles the cluster's `SignetConfig` into a managed signet-signer.
#[derive(Debug, Parser)]
#[command(name = "signet-operator", version, about)]
struct Args {
    #[command(flatten)]
    log: LogArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _client = process::start(&args.log).await?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "signet-operator started");
    process::shutdown_signal().await;
    tracing::info!("signet-operator stopping");
    Ok(())
}
