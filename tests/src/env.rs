//! Finds the control plane that `tests/env/up` started, starting it when absent.
//!
//! Holds configuration, not clients: each `#[tokio::test]` has its own runtime, and a client
//! must not outlive the runtime that created it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// Errors from locating or starting the test environment.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("failed to run {script}: {source}")]
    Spawn {
        script: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to start the test environment: {script} exited with {status}")]
    Up {
        script: PathBuf,
        status: std::process::ExitStatus,
    },
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to find {key} in {path}")]
    Missing { key: &'static str, path: PathBuf },
    #[error("failed to load kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("failed to mint a token for ServiceAccount {0}: the TokenRequest returned none")]
    NoToken(String),
    #[error("ServiceAccount {0} never appeared (is the controller manager running?)")]
    NoAccount(String),
    #[error("the committed OLM bundle is unusable: {0}")]
    Bundle(String),
    #[error("failed to talk to the API server: {0}")]
    Client(#[from] kube::Error),
}

/// The running test control plane.
#[derive(Clone, Debug)]
pub struct TestEnv {
    /// `https://127.0.0.1:<port>`: the API server, and also its ServiceAccount token issuer.
    pub api_server: String,
    /// The issuer URL tokens carry in `iss`, whose discovery document anyone may read.
    pub oidc_issuer: String,
    /// The CA that signed the API server's certificate.
    pub ca_file: PathBuf,
    /// The API server's audit log (tests/src/audit.rs reads it).
    pub audit_log: PathBuf,
    /// Server version the environment was built at, e.g. `v1.37.2`.
    pub kube_version: String,
    /// Path to kubectl built at the same version.
    pub kubectl: PathBuf,
    /// The real cosign CLI, the verifier Signet's output must satisfy.
    pub cosign: PathBuf,
    /// sigstore policy-controller's `tester`: admission's verdict for one image and policy.
    pub policy_tester: PathBuf,
    /// The admin kubeconfig (for kubectl in tests; code under test never uses it).
    pub kubeconfig: PathBuf,
    /// `127.0.0.1:<port>`: the tag-schema registry (TLS from `ca_file`, htpasswd auth).
    pub registry: String,
    /// The registry's user and password.
    pub registry_user: String,
    pub registry_password: String,
    /// A `DOCKER_CONFIG` directory whose `config.json` logs in to the registry.
    pub docker_config: PathBuf,
    /// `127.0.0.1:<port>`: a registry with the OCI 1.1 referrers API (TLS, no auth).
    pub referrers_registry: String,
    /// Directory with OLM's `opm`, `operator-verify` and `bundle-validate`.
    pub olm_bin: PathBuf,
    /// Fulcio (tests start their own: `crate::sigstore`).
    pub fulcio: PathBuf,
    /// SPIRE: the agent's Workload API socket, the same socket at the path a pod would see it,
    /// the SPIFFE ID it issues this user's processes, and the JWT-SVID issuer (OIDC discovery).
    pub spiffe_socket: String,
    pub spiffe_pod_socket: String,
    pub spiffe_id: String,
    pub spire_issuer: String,
    /// Rekor's and Trillian's binaries, Trillian's gRPC address and Rekor's MySQL index DSN.
    pub rekor_bin: PathBuf,
    /// rekor-tiles' POSIX server (Rekor v2).
    pub rekor_v2: PathBuf,
    /// sigstore's timestamp authority (tests/env/tools/tsa).
    pub tsa: PathBuf,
    /// Ratify's CLI (tests/env/tools/ratify).
    pub ratify: PathBuf,
    pub trillian: String,
    pub rekor_index_dsn: String,
    /// OpenBao's `bao` binary (tests start their own servers: `crate::vault`).
    pub bao: PathBuf,
    /// local-kms (AWS KMS's API) and moto's server (for STS), started by tests: `crate::aws`.
    pub local_kms: PathBuf,
    pub moto_server: PathBuf,
    /// A Python with `cryptography` (moto's venv), for the cloud KMS test doubles.
    pub peer_python: PathBuf,
    /// A Python with python-tuf, for `crate::tuf`'s repositories.
    pub tuf_python: PathBuf,
    /// The storage backends' peers, started by tests (`crate::storage`): fake-gcs-server
    /// (Cloud Storage's JSON API) and FerretDB (MongoDB's wire protocol, on SQLite).
    pub fake_gcs: PathBuf,
    pub ferretdb: PathBuf,
    /// A Python with Google's Grafeas v1 types, for the Grafeas double.
    pub grafeas_python: PathBuf,
    /// The Prometheus operator's ServiceMonitor and PrometheusRule CRDs (YAML files), which
    /// the monitoring tests install and remove.
    pub prometheus_crds: PathBuf,
    /// The real node (tests/env/node: kubelet + containerd + runc), when this environment has
    /// one, and crane, which pushes images to the registry that node pulls from.
    pub node: Option<String>,
    pub crane: Option<PathBuf>,
    /// Tekton's controller on that node (tests/env/tekton): the one namespace it watches, and
    /// the step images built here (busybox; busybox + crane), by digest.
    pub tekton: Option<Tekton>,
    admin: Config,
}

/// Tekton Pipelines running for real (tests/env/tekton).
#[derive(Clone, Debug)]
pub struct Tekton {
    pub runs_namespace: String,
    pub busybox_image: String,
    pub build_image: String,
}

static ENV: OnceLock<Result<TestEnv, String>> = OnceLock::new();

impl TestEnv {
    /// The environment, started on first use if no healthy one is recorded.
    ///
    /// # Panics
    /// When the environment can neither be found nor started: no test can run without it.
    #[allow(clippy::panic)]
    pub fn get() -> &'static TestEnv {
        let env = ENV.get_or_init(|| {
            // Blocking work (a script, file reads) off any async runtime's worker thread.
            std::thread::spawn(|| Self::start().map_err(|e| e.to_string()))
                .join()
                .unwrap_or_else(|_| Err("test environment start-up panicked".to_owned()))
        });
        match env {
            Ok(env) => env,
            Err(message) => panic!("{message}"),
        }
    }

    fn start() -> Result<Self, EnvError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let script = repo_root().join("tests/env/up");
        let status = Command::new(&script)
            .status()
            .map_err(|source| EnvError::Spawn {
                script: script.clone(),
                source,
            })?;
        if !status.success() {
            return Err(EnvError::Up { script, status });
        }
        let dir = std::env::var_os("SIGNET_ENV_DIR").map_or_else(
            || {
                let home = std::env::var_os("HOME").unwrap_or_default();
                let cache = std::env::var_os("SIGNET_CACHE")
                    .map_or_else(|| Path::new(&home).join(".cache/signet"), PathBuf::from);
                cache.join("env")
            },
            PathBuf::from,
        );
        Self::from_env_file(&dir.join("env"))
    }

    fn from_env_file(path: &Path) -> Result<Self, EnvError> {
        let text = std::fs::read_to_string(path).map_err(|source| EnvError::Read {
            path: path.to_owned(),
            source,
        })?;
        let vars: HashMap<&str, &str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .collect();
        // Values are shell words: a value with shell syntax in it is single-quoted.
        let get = |key: &'static str| {
            vars.get(key)
                .map(|v| {
                    v.strip_prefix('\'')
                        .and_then(|v| v.strip_suffix('\''))
                        .unwrap_or(v)
                        .to_owned()
                })
                .ok_or_else(|| EnvError::Missing {
                    key,
                    path: path.to_owned(),
                })
        };
        let kubeconfig = PathBuf::from(get("KUBECONFIG")?);
        let admin = load_kubeconfig(&kubeconfig)?;
        Ok(Self {
            api_server: get("SIGNET_API_SERVER")?,
            oidc_issuer: get("SIGNET_OIDC_ISSUER")?,
            ca_file: PathBuf::from(get("SIGNET_CA_FILE")?),
            audit_log: PathBuf::from(get("SIGNET_AUDIT_LOG")?),
            kube_version: get("SIGNET_KUBE_VERSION")?,
            kubectl: PathBuf::from(get("SIGNET_KUBECTL")?),
            cosign: PathBuf::from(get("SIGNET_COSIGN")?),
            policy_tester: PathBuf::from(get("SIGNET_POLICY_TESTER")?),
            registry: get("SIGNET_REGISTRY")?,
            registry_user: get("SIGNET_REGISTRY_USER")?,
            registry_password: get("SIGNET_REGISTRY_PASSWORD")?,
            docker_config: PathBuf::from(get("SIGNET_DOCKER_CONFIG")?),
            referrers_registry: get("SIGNET_REFERRERS_REGISTRY")?,
            olm_bin: PathBuf::from(get("SIGNET_OLM_BIN")?),
            bao: PathBuf::from(get("SIGNET_BAO")?),
            fulcio: PathBuf::from(get("SIGNET_FULCIO")?),
            spiffe_socket: get("SIGNET_SPIFFE_SOCKET")?,
            spiffe_pod_socket: get("SIGNET_SPIFFE_POD_SOCKET")?,
            spiffe_id: get("SIGNET_SPIFFE_ID")?,
            spire_issuer: get("SIGNET_SPIRE_ISSUER")?,
            rekor_bin: PathBuf::from(get("SIGNET_REKOR_BIN")?),
            rekor_v2: PathBuf::from(get("SIGNET_REKOR_V2")?),
            tsa: PathBuf::from(get("SIGNET_TSA")?),
            ratify: PathBuf::from(get("SIGNET_RATIFY")?),
            trillian: get("SIGNET_TRILLIAN")?,
            rekor_index_dsn: get("SIGNET_REKOR_INDEX_DSN")?,
            local_kms: PathBuf::from(get("SIGNET_LOCAL_KMS")?),
            moto_server: PathBuf::from(get("SIGNET_MOTO_SERVER")?),
            peer_python: PathBuf::from(get("SIGNET_PEER_PYTHON")?),
            tuf_python: PathBuf::from(get("SIGNET_TUF_PYTHON")?),
            fake_gcs: PathBuf::from(get("SIGNET_FAKE_GCS")?),
            ferretdb: PathBuf::from(get("SIGNET_FERRETDB")?),
            grafeas_python: PathBuf::from(get("SIGNET_GRAFEAS_PYTHON")?),
            prometheus_crds: PathBuf::from(get("SIGNET_PROMETHEUS_CRDS")?),
            node: get("SIGNET_NODE").ok(),
            crane: get("SIGNET_CRANE").ok().map(PathBuf::from),
            tekton: match (
                get("SIGNET_TEKTON_RUNS_NAMESPACE"),
                get("TEKTON_BUSYBOX_IMAGE"),
                get("TEKTON_BUILD_IMAGE"),
            ) {
                (Ok(runs_namespace), Ok(busybox_image), Ok(build_image)) => Some(Tekton {
                    runs_namespace,
                    busybox_image,
                    build_image,
                }),
                _ => None,
            },
            kubeconfig,
            admin,
        })
    }

    /// A cluster-admin client, for test set-up and inspection only: the code under test
    /// must run with `ServiceAccountIdentity` instead.
    pub fn admin_client(&self) -> Result<Client, EnvError> {
        Ok(Client::try_from(self.admin.clone())?)
    }

    /// A client that sends no credentials at all, as an outside verifier would.
    pub fn anonymous_client(&self) -> Result<Client, EnvError> {
        Ok(Client::try_from(self.config_with(AuthInfo::default()))?)
    }

    /// The admin configuration with its credentials replaced by `auth`.
    pub fn config_with(&self, auth: AuthInfo) -> Config {
        let mut config = self.admin.clone();
        config.auth_info = auth;
        config
    }
}

fn load_kubeconfig(path: &Path) -> Result<Config, EnvError> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|source| EnvError::Kubeconfig {
        path: path.to_owned(),
        source,
    })?;
    // Reading a kubeconfig is async in kube but does no I/O for file-based credentials;
    // a small runtime keeps `TestEnv::get` usable from sync and async tests alike.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|source| EnvError::Read {
            path: path.to_owned(),
            source,
        })?;
    runtime
        .block_on(Config::from_custom_kubeconfig(
            kubeconfig,
            &KubeConfigOptions::default(),
        ))
        .map_err(|source| EnvError::Kubeconfig {
            path: path.to_owned(),
            source,
        })
}

/// The repository root (this crate lives in `<root>/tests`).
/// `N` distinct free ports on 127.0.0.1 for servers a test starts, found by holding `N`
/// listeners at once (ports taken one at a time may come back equal). They are chosen below
/// the kernel's ephemeral range (`ip_local_port_range`, 32768–60999 by default), so that no
/// outgoing connection of another process takes one in the moment between our check and the
/// server binding it — OpenBao binds its cluster port only when it is initialised, seconds
/// after it starts, and lost that race in CI.
/// What the cluster shows of a rollout in `ns` (`Deployments`, `ReplicaSets`, pods and the
/// namespace's recent Events), for a test's failure message when a signer never became ready.
pub fn rollout_state(env: &TestEnv, ns: &str) -> String {
    let kubectl = |args: &[&str]| {
        std::process::Command::new(&env.kubectl)
            .arg("--kubeconfig")
            .arg(&env.kubeconfig)
            .args(["-n", ns])
            .args(args)
            .output()
            .map_or_else(
                |e| format!("kubectl: {e}\n"),
                |o| {
                    format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    )
                },
            )
    };
    format!(
        "--- {ns}: deployments, replicasets, pods\n{}--- events\n{}",
        kubectl(&["get", "deployment,replicaset,pod", "-o", "wide"]),
        kubectl(&["get", "events", "--sort-by", ".lastTimestamp"])
    )
}

pub fn free_ports<const N: usize>() -> Result<[u16; N], EnvError> {
    let lowest_ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| {
            r.split_whitespace()
                .next()
                .and_then(|p| p.parse::<u16>().ok())
        })
        .unwrap_or(32768);
    let (low, high) = (20000u16, lowest_ephemeral.max(20001));
    // A different starting point per call and process, then a linear walk.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id();
    let span = u32::from(high - low);
    let mut listeners = Vec::with_capacity(N);
    let mut ports = [0u16; N];
    for step in 0..span {
        if listeners.len() == N {
            break;
        }
        let port = low + u16::try_from((seed.wrapping_add(step)) % span).unwrap_or(0);
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            ports[listeners.len()] = port;
            listeners.push(listener);
        }
    }
    if listeners.len() < N {
        return Err(EnvError::Bundle(format!(
            "no {N} free ports between {low} and {high}"
        )));
    }
    Ok(ports)
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_owned)
}
