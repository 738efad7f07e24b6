//! The signet-operator binary: parse arguments, set up the process, run.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;

use signet_operator::controller::{self, Context, Metrics};
use signet_operator::names::{DEFAULT_SIGNER_IMAGE_REPOSITORY, VERSION};
use signet_runtime::health::{self, Health};
use signet_runtime::lease::{self, LeaseLock, LeaseSettings};
use signet_runtime::process::{self, ClientArgs, LogArgs};

/// Reconciles the cluster's `SignetConfig` into a managed signet-signer.
#[derive(Debug, Parser)]
#[command(name = "signet-operator", version, about)]
struct Args {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    client: ClientArgs,
    /// Signer image to deploy when the SignetConfig names none (OLM sets this from
    /// relatedImages); defaults to the signer of this operator's version.
    #[arg(long, env = "SIGNET_SIGNER_IMAGE")]
    signer_image: Option<String>,
    #[command(flatten)]
    process: ProcessArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the operator against the cluster in KUBECONFIG or the in-cluster config (default).
    Run,
    /// Print the SignetConfig CustomResourceDefinition as YAML.
    Crd,
    /// Print the SignetConfig equivalent to a Tekton Chains `chains-config` ConfigMap or a
    /// TektonConfig's `spec.chain` (YAML file, `-` for standard input). Keys that need manual
    /// steps are listed on standard error.
    Migrate {
        /// The ConfigMap or TektonConfig, e.g. from `kubectl get cm chains-config -o yaml`.
        file: String,
    },
    /// Write every generated file (CRD, reference doc, OLM bundle and catalog, plain
    /// manifests) under the repository root `dir`; `make generate` runs it.
    #[command(hide = true)]
    Generate {
        #[arg(default_value = ".")]
        dir: std::path::PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command.unwrap_or(Command::Run) {
        Command::Run => run(&args.log, args.client, args.signer_image, &args.process).await,
        Command::Crd => signet_crds::crd_yaml()
            .map(|yaml| print!("{yaml}"))
            .map_err(anyhow::Error::from),
        Command::Migrate { file } => migrate(&file),
        Command::Generate { dir } => generate(&dir),
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

fn generate(dir: &std::path::Path) -> anyhow::Result<()> {
    for (path, contents) in signet_operator::install::generated_files()? {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, contents)
            .map_err(|e| anyhow::anyhow!("failed to write {}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn migrate(file: &str) -> anyhow::Result<()> {
    use std::io::Read;
    let mut text = String::new();
    if file == "-" {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("failed to read {file}: {e}"))?;
    }
    let keys = signet_operator::migrate::keys_of(&text)?;
    let migrated = signet_operator::migrate::migrate(&keys)?;
    for note in &migrated.notes {
        eprintln!("signet-operator migrate: {note}");
    }
    print!("{}", serde_saphyr::to_string(&migrated.config)?);
    Ok(())
}

async fn run(
    log: &LogArgs,
    limits: ClientArgs,
    signer_image: Option<String>,
    p: &ProcessArgs,
) -> anyhow::Result<()> {
    let client = process::start(log, limits).await?;
    let image =
        signer_image.unwrap_or_else(|| format!("{DEFAULT_SIGNER_IMAGE_REPOSITORY}:{VERSION}"));
    tracing::info!(version = VERSION, signer_image = %image, "signet-operator started");
    let metrics = Metrics::default();
    let health = Health::new("signet_operator_leader", metrics.exported());
    health::serve(p.health_addr, health.clone()).await?;
    // A standby is healthy and ready: it is doing its job by waiting.
    health.set_ready(true);
    let lock = LeaseLock::new(
        client.clone(),
        LeaseSettings {
            namespace: p
                .lease_namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_owned()),
            name: "signet-operator".to_owned(),
            identity: lease::process_identity(),
            duration: p.lease_duration.into(),
            renew_every: p.lease_renew.into(),
        },
    );
    let ctx = Arc::new(Context::new(client, image, metrics));
    lease::lead(&lock, &health, |stop| controller::run(ctx, stop)).await?;
    Ok(())
}

/// Health endpoints and leader election.
#[derive(Debug, clap::Args)]
struct ProcessArgs {
    /// Address for /healthz, /readyz and /metrics.
    #[arg(long, env = "SIGNET_HEALTH_ADDR", default_value = "0.0.0.0:8081")]
    health_addr: SocketAddr,
    /// Namespace of the leader-election Lease; defaults to the operator's own namespace
    /// (in-cluster) or the kubeconfig context's namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// How long a leader's claim lasts without renewal.
    #[arg(long, default_value = "15s")]
    lease_duration: humantime::Duration,
    /// How often the leader renews its claim.
    #[arg(long, default_value = "5s")]
    lease_renew: humantime::Duration,
}
