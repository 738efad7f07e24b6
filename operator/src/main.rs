//! The signet-operator binary: parse arguments, set up the process, run.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use signet_operator::controller::{self, Context};
use signet_operator::names::{DEFAULT_SIGNER_IMAGE_REPOSITORY, VERSION};
use signet_signer::process::{self, LogArgs};

/// Reconciles the cluster's `SignetConfig` into a managed signet-signer.
#[derive(Debug, Parser)]
#[command(name = "signet-operator", version, about)]
struct Args {
    #[command(flatten)]
    log: LogArgs,
    /// Signer image to deploy when the SignetConfig names none (OLM sets this from
    /// relatedImages); defaults to the signer of this operator's version.
    #[arg(long, env = "SIGNET_SIGNER_IMAGE")]
    signer_image: Option<String>,
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
        Command::Run => run(&args.log, args.signer_image).await,
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

async fn run(log: &LogArgs, signer_image: Option<String>) -> anyhow::Result<()> {
    let client = process::start(log).await?;
    let image =
        signer_image.unwrap_or_else(|| format!("{DEFAULT_SIGNER_IMAGE_REPOSITORY}:{VERSION}"));
    tracing::info!(version = VERSION, signer_image = %image, "signet-operator started");
    let ctx = Arc::new(Context::new(client, image));
    controller::run(ctx, process::shutdown_signal()).await;
    tracing::info!("signet-operator stopped");
    Ok(())
}
