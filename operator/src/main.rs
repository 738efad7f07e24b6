//! The signet-operator binary: parse arguments, set up the process, run.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use signet_signer::process::{self, LogArgs};

/// Reconciles the cluster's `SignetConfig` into a managed signet-signer.
#[derive(Debug, Parser)]
#[command(name = "signet-operator", version, about)]
struct Args {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the operator against the cluster in KUBECONFIG or the in-cluster config (default).
    Run,
    /// Print the SignetConfig CustomResourceDefinition as YAML.
    Crd,
    /// Print the SignetConfig reference page (Markdown) generated from the CRD schema.
    #[command(hide = true)]
    ReferenceDoc,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command.unwrap_or(Command::Run) {
        Command::Run => run(&args.log).await,
        Command::Crd => signet_crds::crd_yaml()
            .map(|yaml| print!("{yaml}"))
            .map_err(anyhow::Error::from),
        Command::ReferenceDoc => {
            print!("{}", signet_crds::reference_markdown());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Our errors already carry their causes in the message: print it once.
            eprintln!("signet-operator: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(log: &LogArgs) -> anyhow::Result<()> {
    let _client = process::start(log).await?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "signet-operator started"
    );
    process::shutdown_signal().await;
    tracing::info!("signet-operator stopping");
    Ok(())
}
