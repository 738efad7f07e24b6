//! The signet-operator binary: parse arguments, set up the process, run.

use std::process::ExitCode;

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
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Our errors already carry their causes in the message: print it once.
            eprintln!("signet-operator: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let _client = process::start(&args.log).await?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "signet-operator started"
    );
    process::shutdown_signal().await;
    tracing::info!("signet-operator stopping");
    Ok(())
}
