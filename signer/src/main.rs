//! The signet-signer binary: parse arguments, set up the process, run.

use clap::Parser;
use signet_signer::process::{self, LogArgs};

/// Signs completed Tekton TaskRuns and PipelineRuns (Tekton Chains compatible).
#[derive(Debug, Parser)]
#[command(name = "signet-signer", version, about)]
struct Args {
    #[command(flatten)]
    log: LogArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _client = process::start(&args.log).await?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "signet-signer started");
    process::shutdown_signal().await;
    tracing::info!("signet-signer stopping");
    Ok(())
}
