//! Installs the operator from the committed OLM bundle as OLM would (CRD, and the CSV's
//! ServiceAccount and RBAC: see `crate::olm`) and runs the real binary as that ServiceAccount
//! with the environment the CSV's Deployment gives it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};

use crate::env::{EnvError, TestEnv};
use crate::identity::ServiceAccountIdentity;
use crate::olm::Bundle;

/// Namespace and name of the operator's ServiceAccount in tests.
pub const OPERATOR_NAMESPACE: &str = "signet-operator-system";
pub const OPERATOR_ACCOUNT: &str = "signet-operator";

/// Applies the bundle's SignetConfig CRD and waits until it is served.
pub async fn install_crd(admin: &Client) -> Result<(), EnvError> {
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let crd = Bundle::committed()?.crd;
    let name = crd.metadata.name.clone().unwrap_or_default();
    crds.patch(
        &name,
        &PatchParams::apply("signet-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await?;
    let established = await_condition(crds, &name, conditions::is_crd_established());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), established).await;
    Ok(())
}

/// Server-side applies the cluster's SignetConfig (`config`) with `spec`, as a user would.
pub async fn apply_config(admin: &Client, spec: serde_json::Value) -> Result<(), EnvError> {
    let body = serde_json::json!({"apiVersion": "signet.dev/v1alpha1", "kind": "SignetConfig",
                                  "metadata": {"name": "config"}, "spec": spec});
    Api::<signet_crds::SignetConfig>::all(admin.clone())
        .patch(
            "config",
            &PatchParams::apply("e2e-user").force(),
            &Patch::Apply(&body),
        )
        .await?;
    Ok(())
}

/// Creates the operator's namespace and the bundle CSV's ServiceAccount and RBAC in it;
/// returns its identity.
pub async fn install_operator_rbac(admin: &Client) -> Result<ServiceAccountIdentity, EnvError> {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(OPERATOR_NAMESPACE.to_owned()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(admin.clone())
        .patch(
            OPERATOR_NAMESPACE,
            &PatchParams::apply("signet-e2e").force(),
            &Patch::Apply(&ns),
        )
        .await?;
    Bundle::committed()?
        .install_permissions(admin, OPERATOR_NAMESPACE)
        .await
}

/// The CRD and the operator's RBAC from the bundle, and the operator running as its
/// ServiceAccount; the cleanup removes the SignetConfig and `signer_namespace` when dropped.
pub async fn start_operator(
    env: &'static TestEnv,
    admin: &Client,
    signer_namespace: &str,
) -> Result<(OperatorProcess, ConfigCleanup), EnvError> {
    install_crd(admin).await?;
    let identity = install_operator_rbac(admin).await?;
    let cleanup = ConfigCleanup {
        env,
        namespaces: vec![signer_namespace.to_owned()],
    };
    Ok((OperatorProcess::start(env, &identity)?, cleanup))
}

/// A running `signet-operator` or `signet-signer` process; killed on drop.
pub struct OperatorProcess {
    child: Child,
    /// Its log (JSON lines), for failure messages.
    pub log: PathBuf,
    dir: TempDir,
}

impl OperatorProcess {
    /// Starts the operator binary authenticated with `identity`'s token only, with the
    /// environment of the bundle CSV's Deployment (health address aside: tests bind an
    /// ephemeral loopback port) plus debug logging.
    pub fn start(env: &TestEnv, identity: &ServiceAccountIdentity) -> Result<Self, EnvError> {
        let mut vars = Bundle::committed()?.container_env(OPERATOR_NAMESPACE)?;
        vars.remove("SIGNET_HEALTH_ADDR");
        vars.insert(
            "SIGNET_LOG_LEVEL".to_owned(),
            "info,signet_operator=debug".to_owned(),
        );
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Self::start_binary(env, identity, "signet-operator", &vars, &env.api_server)
    }

    /// Starts the signer binary as `identity` (the `signet-signer` ServiceAccount of
    /// `namespace`) with the environment the operator put on the signer Deployment — the
    /// same command line a pod gets — plus debug logging.
    pub async fn start_signer(
        env: &TestEnv,
        admin: &Client,
        identity: &ServiceAccountIdentity,
    ) -> Result<Self, EnvError> {
        Self::start_signer_with(env, admin, identity, &[]).await
    }

    /// As [`Self::start_signer`], with `extra` variables last (they win over the others).
    pub async fn start_signer_with(
        env: &TestEnv,
        admin: &Client,
        identity: &ServiceAccountIdentity,
        extra: &[(&str, &str)],
    ) -> Result<Self, EnvError> {
        Self::start_signer_through(env, admin, identity, extra, &env.api_server).await
    }

    /// As [`Self::start_signer_with`], talking to the API server at `server` (a fault proxy
    /// in front of it).
    pub async fn start_signer_through(
        env: &TestEnv,
        admin: &Client,
        identity: &ServiceAccountIdentity,
        extra: &[(&str, &str)],
        server: &str,
    ) -> Result<Self, EnvError> {
        let deployment = Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(
            admin.clone(),
            &identity.namespace,
        )
        .get(signet_operator::names::SIGNER)
        .await?;
        let mut vars: Vec<(String, String)> = deployment
            .spec
            .template
            .spec
            .and_then(|s| s.containers.into_iter().next())
            .and_then(|c| c.env)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| Some((v.name, v.value?)))
            .collect();
        vars.extend([
            (
                "SIGNET_LOG_LEVEL".to_owned(),
                "info,signet_signer=debug".to_owned(),
            ),
            ("POD_NAMESPACE".to_owned(), identity.namespace.clone()),
            // Trust the test CA (the registry's TLS), as a pod would with a mounted bundle.
            (
                "SSL_CERT_FILE".to_owned(),
                env.ca_file.display().to_string(),
            ),
        ]);
        vars.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Self::start_binary(env, identity, "signet-signer", &vars, server)
    }

    /// Runs a workspace binary with a kubeconfig holding only `identity`'s token, health
    /// endpoints on an ephemeral loopback port and a short leader lease.
    fn start_binary(
        env: &TestEnv,
        identity: &ServiceAccountIdentity,
        name: &str,
        vars: &[(&str, &str)],
        server: &str,
    ) -> Result<Self, EnvError> {
        let dir = TempDir::new(name)?;
        let kubeconfig = dir.0.join("kubeconfig");
        let token_file = dir.0.join("token");
        write(&token_file, &identity.token)?;
        write(
            &kubeconfig,
            &format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster: {{server: \"{}\", certificate-authority: \"{}\"}}\nusers:\n- name: sa\n  user: {{tokenFile: \"{}\"}}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, user: sa}}\ncurrent-context: e2e\n",
                server,
                env.ca_file.display(),
                token_file.display()
            ),
        )?;
        let log = dir.0.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log).map_err(|source| EnvError::Read {
            path: log.clone(),
            source,
        })?;
        let binary = binary(name);
        let child = Command::new(&binary)
            .env_clear()
            .env("KUBECONFIG", &kubeconfig)
            .env("SIGNET_HEALTH_ADDR", "127.0.0.1:0")
            .envs(vars.iter().copied())
            // Short enough for a quick failover test, long enough that a loaded 2-core CI
            // machine does not miss renewals.
            .args(["--lease-duration", "6s", "--lease-renew", "1s"])
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|source| EnvError::Spawn {
                script: binary,
                source,
            })?;
        Ok(Self { child, log, dir })
    }

    /// The process's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The address of /healthz, /readyz and /metrics, once the process logged it.
    pub fn health_addr(&self) -> Option<String> {
        let log = self.log_text();
        let line = log.lines().find(|l| l.contains("serving /healthz"))?;
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        v["address"].as_str().map(str::to_owned)
    }

    /// GETs `path` from the process's health server; `(status, body)`.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.health_addr()?;
        let mut stream = tokio::net::TcpStream::connect(&addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let status = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Some((status, body))
    }

    /// The value of a counter or gauge on /metrics.
    pub async fn metric(&self, name: &str) -> Option<u64> {
        let (_, body) = self.get("/metrics").await?;
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} "))?.trim().parse().ok())
    }

    /// The process id (for RSS measurements).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Leaves the process running when this value is gone (`make demo` does, so that people
    /// can look around): returns its pid and the directory with its kubeconfig and log, which
    /// is kept too.
    pub fn detach(self) -> (u32, PathBuf) {
        let pid = self.child.id();
        let dir = self.dir.0.clone();
        std::mem::forget(self);
        (pid, dir)
    }

    /// Sends SIGKILL and waits: a crash (its lease stays held until it expires).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops it as Kubernetes would: SIGTERM, so that it releases its lease and the next
    /// process leads at once, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if !self.running() {
            return;
        }
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.running() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.kill();
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write(path: &std::path::Path, text: &str) -> Result<(), EnvError> {
    std::fs::write(path, text).map_err(|source| EnvError::Read {
        path: path.to_owned(),
        source,
    })
}

/// A workspace binary built next to this test executable (`target/<profile>/<name>`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test>-<hash> → target/<profile>/<name>
    exe.parent()
        .and_then(|deps| deps.parent())
        .map_or_else(|| PathBuf::from(name), |dir| dir.join(name))
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Result<Self, EnvError> {
        let path =
            std::env::temp_dir().join(format!("{prefix}-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&path).map_err(|source| EnvError::Read {
            path: path.clone(),
            source,
        })?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Removes the SignetConfig (finalizer included, in case the operator died) and the given
/// namespaces when a test ends, pass or fail.
pub struct ConfigCleanup {
    pub env: &'static TestEnv,
    pub namespaces: Vec<String>,
}

impl Drop for ConfigCleanup {
    fn drop(&mut self) {
        let env = self.env;
        let namespaces = std::mem::take(&mut self.namespaces);
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                let Ok(client) = env.admin_client() else {
                    return;
                };
                let configs: Api<signet_crds::SignetConfig> = Api::all(client.clone());
                let strip = serde_json::json!({"metadata": {"finalizers": null}});
                let _ = configs
                    .patch("config", &PatchParams::default(), &Patch::Merge(&strip))
                    .await;
                let _ = configs
                    .delete("config", &kube::api::DeleteParams::default())
                    .await;
                let all: Api<Namespace> = Api::all(client);
                for ns in namespaces {
                    let _ = all
                        .delete(&ns, &kube::api::DeleteParams::background())
                        .await;
                }
            });
        })
        .join();
    }
}

/// `spec` over `base`, objects merged key by key (how tests layer a change over a base spec).
pub fn merged(base: &serde_json::Value, spec: &serde_json::Value) -> serde_json::Value {
    match (base, spec) {
        (serde_json::Value::Object(b), serde_json::Value::Object(s)) => {
            let mut out = b.clone();
            for (k, v) in s {
                let m = out.get(k).map_or_else(|| v.clone(), |bv| merged(bv, v));
                out.insert(k.clone(), m);
            }
            serde_json::Value::Object(out)
        }
        (_, s) => s.clone(),
    }
}
