//! The signet-signer binary: parse arguments, set up the process, run.

use std::process::ExitCode;

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
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "signet-signer started");
    process::shutdown_signal().await;
    tracing::info!("signet-signer stopping");
    Ok(())
}
