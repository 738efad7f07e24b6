//! `kubectl-signet`: is this run signed, by whom, and if not, why not. Installed on the PATH
//! it is also `kubectl signet …` (a kubectl plugin), with the same kubeconfig.
//!
//! Exit status: 0 when the answer is yes (verified, Ready), 1 when it is no, 2 when the
//! question could not be answered (no such run, no cluster, bad arguments).

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cluster;
mod explain;
mod report;
mod status;
mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::{Parser, Subcommand, ValueEnum};
use signet_config::trusted_root::TrustedRoot;
use signet_crds::SignetConfig;
use signet_signer::annotations::ANNOTATION_PREFIX;
use signet_signer::metrics::lease_for;
use signet_signer::run::RunKind;
use signet_signer::storage::oci::auth::logins_of;
use signet_signer::storage::oci::registry::Clients;

use crate::cluster::Cluster;
use crate::report::colour_wanted;
use crate::verify::{Trust, Verifier, public_key_der};

/// Is this Tekton run signed, by whom, and if not, why not.
#[derive(Debug, Parser)]
#[command(name = "kubectl-signet", version, about)]
struct Args {
    /// The kubeconfig to use (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Checks a run's signature, transparency entry and every image's signature and
    /// attestation against the keys the cluster publishes.
    Verify {
        #[command(flatten)]
        run: RunArgs,
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Says why a run is not signed (or that it is), with the fix.
    Explain {
        #[command(flatten)]
        run: RunArgs,
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Prints the provenance stored on the run (the decoded in-toto statement), unverified.
    Provenance {
        #[command(flatten)]
        run: RunArgs,
    },
    /// The SignetConfig's conditions, the signer's leader and its counters.
    Status {
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

/// What `verify` trusts, where the cluster's SignetConfig does not say.
#[derive(Debug, clap::Args)]
struct TrustArgs {
    /// PEM public key to verify with, instead of the SignetConfig's status.publicKey.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Fulcio's root certificates (PEM), for keyless signatures.
    #[arg(long, env = "SIGSTORE_ROOT_FILE")]
    certificate_roots: Option<PathBuf>,
    /// The identity keyless certificates must carry, instead of the SignetConfig's
    /// status.identity.certificateIdentity.
    #[arg(long)]
    certificate_identity: Option<String>,
    /// The OIDC issuer keyless certificates must name, instead of the SignetConfig's
    /// status.identity.issuer (published with the certificate identity).
    #[arg(long)]
    certificate_oidc_issuer: Option<String>,
    /// Rekor's PEM public key (default: read from the log itself).
    #[arg(long, env = "SIGSTORE_REKOR_PUBLIC_KEY")]
    rekor_public_key: Option<PathBuf>,
    /// The timestamp authority's PEM certificate chain, for signed timestamps in bundles.
    #[arg(long, env = "SIGSTORE_TSA_CERTIFICATE_FILE")]
    timestamp_certificate_chain: Option<PathBuf>,
    /// A Sigstore trusted root (`trusted_root.json`, as cosign v3 takes it): Fulcio roots,
    /// the key of the SignetConfig's log and the chain of its timestamp authority, where
    /// the flags above do not give them.
    #[arg(long)]
    trusted_root: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// `taskrun` (`tr`) or `pipelinerun` (`pr`).
    kind: Kind,
    name: String,
    /// The run's namespace (default: the kubeconfig context's).
    #[arg(short, long)]
    namespace: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kind {
    #[value(alias = "tr", alias = "taskruns")]
    Taskrun,
    #[value(alias = "pr", alias = "pipelineruns")]
    Pipelinerun,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

/// Why a command could not answer (exit status 2).
type Failure = String;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(failure) => {
            eprintln!("kubectl-signet: {failure}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<bool, Failure> {
    let cluster = Cluster::connect(args.kubeconfig.as_deref(), args.context.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    match args.command {
        Command::Verify { run, output, trust } => {
            let config = cluster.config().await.map_err(|e| e.to_string())?;
            let trust = trust_from(trust, config.as_ref())?;
            let verifier = Verifier {
                trust,
                spec: config.map(|c| c.spec),
                clients: Clients::new().map_err(|e| format!("TLS set-up: {e}"))?,
                logins: docker_logins(),
                vouched: std::sync::Mutex::default(),
            };
            let run = read_run(&cluster, &run).await?;
            let report = verifier.verify(&run).await;
            print(output, &report, |r| r.text(colour_wanted()))?;
            if report.undecided {
                return Err(format!(
                    "could not tell whether {} is genuine with what is trusted (see the checks marked undecided)",
                    report.subject
                ));
            }
            Ok(report.verified)
        }
        Command::Explain { run, output } => explain(&cluster, &run, output).await,
        Command::Provenance { run } => provenance(&cluster, &run).await,
        Command::Status { output } => {
            let config = cluster
                .config()
                .await
                .map_err(|e| e.to_string())?
                .ok_or("there is no SignetConfig named config in this cluster")?;
            let lease = cluster
                .lease(
                    &config.spec.target_namespace,
                    &lease_for(config.spec.signer.replicas, None),
                )
                .await
                .map_err(|e| e.to_string())?;
            let shown = status::status(&config, lease.as_ref());
            print(output, &shown, |s| s.text(colour_wanted()))?;
            Ok(shown.ready)
        }
    }
}

/// What `verify` trusts: the flags, else what the SignetConfig publishes (its public key, the
/// identity and issuer of its keyless certificates), else what a trusted root pins.
fn trust_from(args: TrustArgs, config: Option<&SignetConfig>) -> Result<Trust, Failure> {
    let status = config.and_then(|c| c.status.clone()).unwrap_or_default();
    let key = match args.key {
        Some(path) => Some((read_key(&path)?, format!("the key in {}", path.display()))),
        None => status
            .public_key
            .as_deref()
            .map(|pem| {
                public_key_der(pem)
                    .map(|der| (der, "the SignetConfig's public key".to_owned()))
                    .map_err(|e| format!("the SignetConfig's status.publicKey: {e}"))
            })
            .transpose()?,
    };
    let root = args
        .trusted_root
        .map(|p| TrustedRoot::parse(&read_text(&p)?).map_err(|e| format!("{}: {e}", p.display())))
        .transpose()?;
    let transparency = config.map(|c| &c.spec.transparency);
    // Sigstore's public instance is pinned by the public-good root built in, as in the signer.
    let public = |url: &str, public: &str| url.trim_end_matches('/') == public;
    let builtin = signet_config::trusted_root::public_good();
    let public_fulcio = config
        .filter(|c| {
            public(
                &c.spec.signing.keyless.fulcio_url,
                signet_config::DEFAULT_FULCIO_URL,
            )
        })
        .and(builtin);
    let public_log = transparency
        .filter(|t| {
            t.version == signet_crds::RekorVersion::V1
                && public(&t.url, signet_config::DEFAULT_REKOR_URL)
        })
        .and(builtin);
    Ok(Trust {
        key,
        roots: args
            .certificate_roots
            .map(|p| read_text(&p))
            .transpose()?
            .or_else(|| root.as_ref().map(TrustedRoot::fulcio_roots_pem))
            .or_else(|| public_fulcio.map(TrustedRoot::fulcio_roots_pem))
            .filter(|pem| !pem.is_empty()),
        // The published issuer goes with the published identity: it is the cluster's token
        // issuer, which Fulcio writes into the certificates it issues the signer.
        issuer: args.certificate_oidc_issuer.or_else(|| {
            let published = status.identity.as_ref()?;
            published
                .certificate_identity
                .is_some()
                .then(|| published.issuer.clone())
        }),
        identity: args
            .certificate_identity
            .or_else(|| status.identity.and_then(|i| i.certificate_identity)),
        rekor_key: match args.rekor_public_key {
            Some(p) => Some(read_key(&p)?),
            None => root
                .as_ref()
                .zip(transparency)
                .and_then(|(r, t)| r.log_key(&t.url).map(<[u8]>::to_vec))
                .or_else(|| {
                    public_log
                        .and_then(|r| r.log_key(signet_config::DEFAULT_REKOR_URL))
                        .map(<[u8]>::to_vec)
                }),
        },
        tsa_chain: args
            .timestamp_certificate_chain
            .map(|p| read_text(&p))
            .transpose()?
            .or_else(|| {
                let (r, t) = root.as_ref().zip(transparency)?;
                r.timestamp_chain_pem(t.timestamp_url.as_deref()?)
            }),
    })
}

async fn explain(cluster: &Cluster, args: &RunArgs, output: Output) -> Result<bool, Failure> {
    let run = read_run(cluster, args).await?;
    let config = cluster.config().await.map_err(|e| e.to_string())?;
    let events = cluster
        .events(&run.namespace, &run.uid)
        .await
        .map_err(|e| e.to_string())?;
    let leader = match &config {
        Some(config) => cluster
            .lease(
                &config.spec.target_namespace,
                &lease_for(config.spec.signer.replicas, Some(&run.uid)),
            )
            .await
            .map_err(|e| e.to_string())?
            .as_ref()
            .and_then(explain::fresh_holder),
        None => None,
    };
    let explained = explain::explain(&run, config.as_ref(), &events, leader.as_deref());
    print(output, &explained, |e| e.text(&run))?;
    Ok(true)
}

async fn provenance(cluster: &Cluster, args: &RunArgs) -> Result<bool, Failure> {
    let run = read_run(cluster, args).await?;
    let name = format!("{ANNOTATION_PREFIX}payload-{}-{}", run.kind.key(), run.uid);
    let payload = run.annotation(&name).ok_or_else(|| {
        format!(
            "{} {}/{} has no {name} annotation: it is not signed yet, or the tekton storage backend is off (kubectl signet explain)",
            run.kind.kind(),
            run.namespace,
            run.name
        )
    })?;
    let bytes = STANDARD
        .decode(payload)
        .map_err(|_| format!("{name} is not base64"))?;
    let statement: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| format!("{name} is not JSON"))?;
    println!(
        "{}",
        serde_json::to_string_pretty(&statement).unwrap_or_default()
    );
    Ok(true)
}

async fn read_run(cluster: &Cluster, args: &RunArgs) -> Result<signet_signer::run::Run, Failure> {
    let kind = match args.kind {
        Kind::Taskrun => RunKind::TaskRun,
        Kind::Pipelinerun => RunKind::PipelineRun,
    };
    let namespace = args.namespace.as_deref().unwrap_or(&cluster.namespace);
    cluster
        .run(kind, namespace, &args.name)
        .await
        .map_err(|e| e.to_string())
}

fn print<T: serde::Serialize>(
    output: Output,
    value: &T,
    text: impl Fn(&T) -> String,
) -> Result<(), Failure> {
    match output {
        Output::Text => print!("{}", text(value)),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).map_err(|e| e.to_string())?
        ),
    }
    Ok(())
}

fn read_text(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| format!("failed to read {}: {e}", path.display()))
}

fn read_key(path: &Path) -> Result<Vec<u8>, Failure> {
    public_key_der(&read_text(path)?).map_err(|e| format!("{}: {e}", path.display()))
}

/// Registry logins from the docker config cosign also reads: `$DOCKER_CONFIG/config.json`,
/// else `~/.docker/config.json`.
fn docker_logins() -> Vec<signet_signer::storage::oci::auth::Login> {
    let dir = std::env::var_os("DOCKER_CONFIG").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".docker"),
        PathBuf::from,
    );
    std::fs::read(dir.join("config.json"))
        .map(|data| logins_of(&data))
        .unwrap_or_default()
}
