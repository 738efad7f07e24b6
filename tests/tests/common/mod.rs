// Over 450 lines: every helper the e2e binaries share, in one module each of them includes.
//! What the signer's end-to-end tests share: the operator + SignetConfig stack, TaskRuns
//! completed as Tekton would write them, waiting for the signer's marks, and the real cosign.
//! Each test binary uses part of it.

#![allow(dead_code)]

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client};
use serde_json::{Value, json};
use signet_crds::SignetConfig;
use signet_e2e::operator::{ConfigCleanup, OperatorProcess, apply_config, start_operator};
use signet_e2e::registry::give_registry_login;
use signet_e2e::{ServiceAccountIdentity, TestEnv};

pub const DIGEST: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

pub fn taskruns(client: &Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("tekton.dev", "v1", "TaskRun"));
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// When the runs here finish, unless a test needs another time.
pub const FINISHED: &str = "2026-11-26T10:01:00Z";

/// Creates TaskRun `name` (as ServiceAccount `account`, `default` when `None`) and completes
/// it through the status subresource at `finished`, reporting that it built `image_url` with
/// `digest`, as a Kaniko task would. Returns its uid.
pub async fn build_run(
    client: &Client,
    ns: &str,
    name: &str,
    image_url: &str,
    digest: &str,
    account: Option<&str>,
    finished: &str,
) -> String {
    let runs = taskruns(client, ns);
    let mut spec = json!({"taskSpec": {"steps": [{"name": "build", "image": "gcr.io/kaniko-project/executor:v1"}]}});
    if let Some(account) = account {
        spec["serviceAccountName"] = json!(account);
    }
    let run: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tekton.dev/v1", "kind": "TaskRun", "metadata": {"name": name}, "spec": spec
    }))
    .unwrap();
    let created = runs.create(&PostParams::default(), &run).await.unwrap();
    let status = json!({"status": {
        "podName": format!("{name}-pod"),
        "startTime": "2026-11-26T10:00:00Z", "completionTime": finished,
        "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded", "lastTransitionTime": finished}],
        "steps": [{"name": "build", "container": "step-build", "imageID": format!("gcr.io/kaniko-project/executor@{DIGEST}")}],
        "results": [
            {"name": "IMAGE_URL", "type": "string", "value": image_url},
            {"name": "IMAGE_DIGEST", "type": "string", "value": digest}
        ]
    }});
    runs.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    created.metadata.uid.unwrap()
}

/// A completed TaskRun that built `registry.local/team/app:v1` (in no registry); its uid.
pub async fn completed_taskrun(client: &Client, ns: &str, name: &str) -> String {
    build_run(
        client,
        ns,
        name,
        "registry.local/team/app:v1",
        DIGEST,
        None,
        FINISHED,
    )
    .await
}

pub async fn wait_annotation(
    client: &Client,
    ns: &str,
    name: &str,
    key: &str,
    log: impl Fn() -> String,
) -> Value {
    wait_annotation_within(client, ns, name, key, log, Duration::from_secs(30)).await
}

/// [`wait_annotation`], waiting at most `within`.
pub async fn wait_annotation_within(
    client: &Client,
    ns: &str,
    name: &str,
    key: &str,
    log: impl Fn() -> String,
    within: Duration,
) -> Value {
    let runs = taskruns(client, ns);
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let run = runs.get(name).await.unwrap();
        let value = serde_json::to_value(&run).unwrap();
        if value["metadata"]["annotations"][key].is_string() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{ns}/{name} never got {key}; signer log:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the operator rendered `key=want` into the signer's ConfigMap in `signer_ns`,
/// then gives the signer's watch a moment to deliver it.
pub async fn wait_rendered(admin: &Client, signer_ns: &str, key: &str, want: &str) {
    wait_rendered_for(admin, signer_ns, key, want, Duration::from_secs(30)).await;
}

/// [`wait_rendered`], waiting at most `within`.
pub async fn wait_rendered_for(
    admin: &Client,
    signer_ns: &str,
    key: &str,
    want: &str,
    within: Duration,
) {
    let cms = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(admin.clone(), signer_ns);
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let data = cms
            .get("signet-signer-config")
            .await
            .unwrap()
            .data
            .unwrap_or_default();
        if data.get(key).map(String::as_str) == Some(want) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the operator never rendered {key}={want}: {data:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// Waits until the SignetConfig is `Degraded` for `reason`; returns the condition's message.
pub async fn wait_degraded(configs: &Api<SignetConfig>, reason: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let config = configs.get("config").await.unwrap();
        let degraded = config.status.and_then(|s| {
            s.conditions.into_iter().find(|c| {
                c.type_ == "Degraded"
                    && c.status == signet_crds::ConditionStatus::True
                    && c.reason == reason
            })
        });
        if let Some(condition) = degraded {
            return condition.message;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the SignetConfig never became Degraded for {reason}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for `name` to be marked and checks it is `signed=true`; returns the run.
pub async fn wait_signed(client: &Client, ns: &str, name: &str, log: impl Fn() -> String) -> Value {
    let run = wait_annotation(client, ns, name, "chains.tekton.dev/signed", &log).await;
    assert_eq!(
        run["metadata"]["annotations"]["chains.tekton.dev/signed"],
        "true",
        "{ns}/{name}: {}",
        log()
    );
    run
}

pub fn cosign_verify(
    env: &TestEnv,
    public_key: &str,
    envelope: &[u8],
    predicate_type: &str,
) -> std::process::Output {
    let dir = std::env::temp_dir().join(format!(
        "signet-verify-{}-{}",
        std::process::id(),
        rand_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cosign.pub"), public_key).unwrap();
    std::fs::write(dir.join("sig"), envelope).unwrap();
    let out = std::process::Command::new(&env.cosign)
        .args(["verify-blob-attestation", "--insecure-ignore-tlog", "--key"])
        .arg(dir.join("cosign.pub"))
        .arg("--signature")
        .arg(dir.join("sig"))
        .args([
            "--type",
            predicate_type,
            "--check-claims=false",
            "/dev/null",
        ])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    out
}

/// `cosign verify-blob-attestation` of a DSSE `envelope` with `public_key`, the transparency
/// log checked: cosign looks the entry up in the Rekor at `rekor_url` and verifies it with the
/// log's key in `rekor_key` (nothing else trusted).
pub fn cosign_verify_in_log(
    env: &TestEnv,
    public_key: &str,
    envelope: &[u8],
    rekor_url: &str,
    rekor_key: &std::path::Path,
) -> std::process::Output {
    let dir = tempdir("cosign-tlog");
    std::fs::write(dir.join("cosign.pub"), public_key).unwrap();
    std::fs::write(dir.join("sig"), envelope).unwrap();
    let out = std::process::Command::new(&env.cosign)
        .args(["verify-blob-attestation", "--rekor-url", rekor_url, "--key"])
        .arg(dir.join("cosign.pub"))
        .arg("--signature")
        .arg(dir.join("sig"))
        .args([
            "--type",
            "slsaprovenance",
            "--check-claims=false",
            "/dev/null",
        ])
        .env("SIGSTORE_REKOR_PUBLIC_KEY", rekor_key)
        .env("TUF_ROOT", dir.join("tuf"))
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    out
}

/// Decodes a base64 annotation value.
pub fn unbase64(value: &Value) -> Vec<u8> {
    STANDARD.decode(value.as_str().unwrap()).unwrap()
}

/// The in-toto statement inside a DSSE envelope.
pub fn statement_of(envelope: &[u8]) -> Value {
    let envelope: Value = serde_json::from_slice(envelope).unwrap();
    serde_json::from_slice(&unbase64(&envelope["payload"])).unwrap()
}

/// Asserts the real cosign verifies `envelope` with `public_key` as `predicate_type`.
pub fn assert_cosign_accepts(
    env: &TestEnv,
    public_key: &str,
    envelope: &[u8],
    predicate_type: &str,
) {
    let out = cosign_verify(env, public_key, envelope, predicate_type);
    assert!(
        out.status.success(),
        "cosign rejected the {predicate_type} attestation: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn rand_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// One SignetConfig per cluster: the tests in this file take turns.
pub static STACK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What most scenarios start from: a Stack (operator, SignetConfig in
/// `signet-e2e-<name>-<pid>`), its signer running, and a namespace for runs. Scenarios take
/// turns (`STACK`); dropping it stops the signer, then the stack.
pub struct Scene {
    pub env: &'static TestEnv,
    pub admin: Client,
    pub work: signet_e2e::TestNamespace,
    pub signer: OperatorProcess,
    pub stack: Stack,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Scene {
    /// With image signatures off (the runs report images in a registry that does not exist).
    pub async fn up(name: &str) -> Self {
        Self::up_with(name, json!({"artifacts": {"oci": {"storage": []}}})).await
    }

    pub async fn up_with(name: &str, base: Value) -> Self {
        let turn = STACK.lock().await;
        let env = TestEnv::get();
        let admin = env.admin_client().unwrap();
        let signer_ns = format!("signet-e2e-{name}-{}", std::process::id());
        let stack = Stack::up_with(env, &admin, &signer_ns, base).await;
        let signer = stack.signer(&admin, env).await;
        let work = signet_e2e::TestNamespace::create(&admin, name)
            .await
            .unwrap();
        Self {
            env,
            admin,
            work,
            signer,
            stack,
            _turn: turn,
        }
    }

    pub fn log(&self) -> String {
        self.signer.log_text()
    }

    /// The namespace runs are created in.
    pub fn ns(&self) -> &str {
        self.work.name()
    }
}

/// The operator, running as its ServiceAccount, with a SignetConfig targeting `signer_ns`,
/// and the published public key.
pub struct Stack {
    pub operator: OperatorProcess,
    pub admin: Client,
    pub configs: Api<SignetConfig>,
    pub signer_ns: String,
    pub public_key: String,
    /// Merged under every applied spec. The scenarios here report images in a registry that
    /// does not exist (`registry.local`), so image signatures (`artifacts.oci`) are off unless
    /// a test turns them on; the OCI scenario uses the real test registry.
    pub base: Value,
    pub _cleanup: ConfigCleanup,
}

pub use signet_e2e::operator::merged;

impl Stack {
    pub async fn up(env: &'static TestEnv, admin: &Client, signer_ns: &str) -> Self {
        Self::up_with(
            env,
            admin,
            signer_ns,
            json!({"artifacts": {"oci": {"storage": []}}}),
        )
        .await
    }

    pub async fn up_with(
        env: &'static TestEnv,
        admin: &Client,
        signer_ns: &str,
        base: Value,
    ) -> Self {
        let (operator, cleanup) = start_operator(env, admin, signer_ns).await.unwrap();
        let mut stack = Self {
            operator,
            admin: admin.clone(),
            configs: Api::all(admin.clone()),
            signer_ns: signer_ns.to_owned(),
            public_key: String::new(),
            base,
            _cleanup: cleanup,
        };
        stack.apply(json!({"targetNamespace": signer_ns})).await;
        // Keyless signing has no key to publish: wait for Ready instead.
        let keyless = stack.base["signing"]["keyless"]["enabled"] == json!(true);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        stack.public_key = loop {
            let status = stack.configs.get("config").await.unwrap().status;
            let ready = status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == signet_crds::ConditionStatus::True)
            });
            if keyless && ready {
                break String::new();
            }
            if let Some(pk) = status.and_then(|s| s.public_key) {
                break pk;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no public key published:\n{}",
                stack.operator.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        stack
    }

    pub async fn apply(&self, spec: Value) {
        apply_config(&self.admin, merged(&self.base, &spec))
            .await
            .unwrap();
    }

    /// A signer process with the token of the ServiceAccount the operator created.
    pub async fn signer(&self, admin: &Client, env: &TestEnv) -> OperatorProcess {
        let identity =
            ServiceAccountIdentity::mint(admin, &self.signer_ns, "signet-signer", &[], 3600)
                .await
                .unwrap();
        OperatorProcess::start_signer(env, admin, &identity)
            .await
            .unwrap()
    }
}

/// Waits up to 15 s (an Event is published right after the annotations it follows) for an
/// Event `reason` of type `type_` on the object `name`, and returns its note.
pub async fn wait_event(
    client: &Client,
    ns: &str,
    name: &str,
    reason: &str,
    type_: &str,
) -> String {
    let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let found = events
            .list(&kube::api::ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| {
                e.involved_object.name.as_deref() == Some(name)
                    && e.reason.as_deref() == Some(reason)
                    && e.type_.as_deref() == Some(type_)
            });
        if let Some(event) = found {
            return event.message.unwrap_or_default();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: no {reason} Event"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for `name` to end `failed` and returns its failure reason, checking it was never
/// `signed=true` and that a Warning Event says why.
pub async fn assert_fails(
    client: &Client,
    ns: &str,
    name: &str,
    log: impl Fn() -> String,
) -> String {
    assert_fails_within(client, ns, name, log, Duration::from_secs(30)).await
}

/// [`assert_fails`], waiting at most `within` for the failure.
pub async fn assert_fails_within(
    client: &Client,
    ns: &str,
    name: &str,
    log: impl Fn() -> String,
    within: Duration,
) -> String {
    let key = "chains.tekton.dev/failure-reason";
    let run = wait_annotation_within(client, ns, name, key, &log, within).await;
    let annotations = &run["metadata"]["annotations"];
    assert_eq!(annotations["chains.tekton.dev/signed"], "failed", "{name}");
    assert_eq!(annotations["chains.tekton.dev/retries"], "3", "{name}");
    wait_event(client, ns, name, "SigningFailed", "Warning").await;
    annotations["chains.tekton.dev/failure-reason"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A cosign key pair in `dir`: `cosign generate-key-pair` (ECDSA P-256) when `openssl_args` is
/// empty, else an `openssl genpkey` key imported with `cosign import-key-pair`. Returns the
/// Secret data a user would create from it, and the public key.
pub fn cosign_key_pair(
    env: &TestEnv,
    dir: &std::path::Path,
    name: &str,
    openssl_args: &[&str],
) -> (
    std::collections::BTreeMap<String, k8s_openapi::ByteString>,
    String,
) {
    let password = format!("a user's passphrase for {name}");
    let mut cosign = std::process::Command::new(&env.cosign);
    if openssl_args.is_empty() {
        cosign.args(["generate-key-pair", "--output-key-prefix", name]);
    } else {
        let pem = format!("{name}.pem");
        let made = std::process::Command::new("openssl")
            .args(["genpkey", "-out", &pem])
            .args(openssl_args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(made.status.success(), "{made:?}");
        cosign.args([
            "import-key-pair",
            "--key",
            &pem,
            "--output-key-prefix",
            name,
        ]);
    }
    let out = cosign
        .current_dir(dir)
        .env("COSIGN_PASSWORD", &password)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |ext: &str| std::fs::read(dir.join(format!("{name}.{ext}"))).unwrap();
    let public = String::from_utf8(read("pub")).unwrap();
    let data = std::collections::BTreeMap::from([
        (
            "cosign.key".to_owned(),
            k8s_openapi::ByteString(read("key")),
        ),
        (
            "cosign.pub".to_owned(),
            k8s_openapi::ByteString(read("pub")),
        ),
        (
            "cosign.password".to_owned(),
            k8s_openapi::ByteString(password.into_bytes()),
        ),
    ]);
    (data, public)
}

/// The real cosign, logged in to the test registry and trusting the test CA.
pub fn cosign_registry(
    env: &TestEnv,
    args: &[&str],
    extra: &[(&str, &str)],
) -> std::process::Output {
    std::process::Command::new(&env.cosign)
        .args(args)
        .env("DOCKER_CONFIG", &env.docker_config)
        .env("SSL_CERT_FILE", &env.ca_file)
        .envs(extra.iter().copied())
        .output()
        .unwrap()
}

/// `kubectl-signet ARGS` as a user runs it: the admin kubeconfig, the registry login and CA,
/// and no Sigstore trust from the environment.
pub fn kubectl_signet(env: &TestEnv, args: &[&str]) -> std::process::Output {
    std::process::Command::new(signet_e2e::operator::binary("kubectl-signet"))
        .args(args)
        .env("KUBECONFIG", &env.kubeconfig)
        .env("DOCKER_CONFIG", &env.docker_config)
        .env("SSL_CERT_FILE", &env.ca_file)
        .env_remove("SIGSTORE_ROOT_FILE")
        .env_remove("SIGSTORE_REKOR_PUBLIC_KEY")
        .output()
        .unwrap()
}

/// The outcome (`pass`, `fail`, `skip`) of the check `name` in a `kubectl signet verify -o
/// json` report; empty when the report has no such check.
pub fn check_outcome(report: &Value, name: &str) -> String {
    report["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == name)
        .and_then(|c| c["outcome"].as_str())
        .unwrap_or_default()
        .to_owned()
}

pub fn assert_ok(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `cosign verify --key KEY` of an image pinned by digest, no transparency log.
pub fn verify_pinned(
    env: &TestEnv,
    key: &str,
    pinned: &str,
    extra: &[(&str, &str)],
) -> std::process::Output {
    cosign_registry(
        env,
        &[
            "verify",
            "--key",
            key,
            "--insecure-ignore-tlog=true",
            pinned,
        ],
        extra,
    )
}

/// A signer that stores attestations in the registry too, the run namespace's ServiceAccount
/// holding the registry login (as a Kaniko task's would), and a scratch directory with
/// Signet's public key in it.
pub struct OciScene {
    pub scene: Scene,
    pub dir: std::path::PathBuf,
    pub signet_pub: String,
}

impl OciScene {
    pub async fn up(name: &str) -> Self {
        let scene = Scene::up_with(
            name,
            json!({"artifacts": {"taskRun": {"storage": ["tekton", "oci"]}}}),
        )
        .await;
        give_registry_login(&scene.admin, scene.env, scene.ns(), "default")
            .await
            .unwrap();
        let dir = std::env::temp_dir().join(format!("signet-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let signet_pub = dir.join("signet.pub");
        std::fs::write(&signet_pub, &scene.stack.public_key).unwrap();
        let signet_pub = signet_pub.to_str().unwrap().to_owned();
        Self {
            scene,
            dir,
            signet_pub,
        }
    }
}

impl Drop for OciScene {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A completed TaskRun that built `image` (tagged `latest`) with `digest`. Runs of the same
/// image have the same provenance unless their times differ: a rebuild gives its own time
/// through [`build_run`].
pub async fn taskrun_building(client: &Client, ns: &str, name: &str, image: &str, digest: &str) {
    let url = format!("{image}:latest");
    build_run(client, ns, name, &url, digest, None, FINISHED).await;
}

/// `ratify verify` of `image` with `config` (and `extra` environment): whether its report says
/// verified, and the report.
pub fn ratify_verify(
    env: &TestEnv,
    config: &std::path::Path,
    image: &str,
    extra: &[(&str, &str)],
) -> (bool, String) {
    let out = std::process::Command::new(&env.ratify)
        .arg("verify")
        .arg("-c")
        .arg(config)
        .args(["-s", image])
        .env("DOCKER_CONFIG", &env.docker_config)
        .env("SSL_CERT_FILE", &env.ca_file)
        .env("HOME", config.parent().unwrap())
        .envs(extra.iter().copied())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    (out.status.success() && report["isSuccess"] == true, said)
}

/// How many times the signer has applied (or refused) its ConfigMap or signing Secret so far:
/// its `signet_signer::watch::sources` log lines. Mark before a change, then
/// [`wait_applied`]: a wait on the event itself instead of a sleep.
pub fn applied(signer: &OperatorProcess) -> usize {
    signer
        .log_text()
        .lines()
        .filter(|l| l.contains("\"target\":\"signet_signer::watch::sources\""))
        .count()
}

/// Waits until the signer has applied (or refused) a change to its ConfigMap or signing
/// Secret since the mark `before` ([`applied`]).
pub async fn wait_applied(signer: &OperatorProcess, before: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while applied(signer) <= before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the signer never applied the change:\n{}",
            signer.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A scratch directory for one test.
pub fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "signet-{name}-{}-{}",
        std::process::id(),
        rand_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What [`burst_through_outage`] left: the DSSE envelope stored on each run marked signed
/// (the caller has cosign verify each with the key), and how many failed.
pub struct Burst {
    pub signed: Vec<(String, Vec<u8>)>,
    pub failed: usize,
}

impl Burst {
    /// cosign verifies every run the outage left marked signed, with `public_key`: none was
    /// marked signed with a signature that does not verify.
    pub fn all_verify(&self, env: &TestEnv, public_key: &str) {
        for (name, envelope) in &self.signed {
            let out = cosign_verify(env, public_key, envelope, "slsaprovenance");
            assert!(
                out.status.success(),
                "{name}, marked signed during the outage: cosign rejected it: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Twelve completed runs with a peer (a KMS, a storage backend) stopped (by `stop`) after the
/// fifth, once the first is marked: every one ends `signed=true` (with its envelope stored on it) or `failed` with a
/// reason naming `uri` (never stuck), and at least one failed.
pub async fn burst_through_outage(
    admin: &kube::Client,
    ns: &str,
    uri: &str,
    stop: impl FnOnce(),
    log: impl Fn() -> String,
) -> Burst {
    let names: Vec<String> = (0..12).map(|i| format!("burst-{i}")).collect();
    let mut stop = Some(stop);
    for (i, name) in names.iter().enumerate() {
        completed_taskrun(admin, ns, name).await;
        if i == 4
            && let Some(stop) = stop.take()
        {
            // Some runs signed before the peer goes: what the outage leaves marked signed is
            // then checked by cosign, not only what it fails.
            wait_annotation(admin, ns, &names[0], "chains.tekton.dev/signed", &log).await;
            stop();
        }
    }
    let (mut signed, mut n_failed) = (Vec::new(), 0);
    for name in &names {
        let run = wait_annotation(admin, ns, name, "chains.tekton.dev/signed", &log).await;
        match run["metadata"]["annotations"]["chains.tekton.dev/signed"].as_str() {
            Some("true") => {
                let uid = run["metadata"]["uid"].as_str().unwrap();
                let stored = &run["metadata"]["annotations"]
                    [format!("chains.tekton.dev/signature-taskrun-{uid}")];
                assert!(
                    stored.is_string(),
                    "{name}: signed, with no envelope stored on it"
                );
                signed.push((name.clone(), unbase64(stored)));
            }
            Some("failed") => {
                n_failed += 1;
                let reason = run["metadata"]["annotations"]["chains.tekton.dev/failure-reason"]
                    .as_str()
                    .unwrap_or_default();
                assert!(reason.contains(uri), "{name}: {reason}");
            }
            other => panic!("{name}: signed={other:?}"),
        }
    }
    assert!(
        n_failed > 0,
        "the outage failed no run ({} signed)",
        signed.len()
    );
    eprintln!(
        "{uri} outage: {} of 12 signed, {n_failed} failed",
        signed.len()
    );
    Burst {
        signed,
        failed: n_failed,
    }
}

/// Writes `text` to `dir/name` (a credential file a signer is given); its path.
pub fn write_secret_file(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Creates PipelineRun `name` with `status` and waits for it to be signed: its uid and
/// annotations.
pub async fn signed_pipelinerun(
    prs: &Api<DynamicObject>,
    name: &str,
    status: Value,
    log: impl Fn() -> String,
) -> (String, Value) {
    let pr: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "metadata": {"name": name},
        "spec": {"pipelineRef": {"name": "release"}}
    }))
    .unwrap();
    let uid = prs
        .create(&PostParams::default(), &pr)
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    prs.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let v = serde_json::to_value(prs.get(name).await.unwrap()).unwrap();
        if v["metadata"]["annotations"]["chains.tekton.dev/signed"] == "true" {
            return (uid, v["metadata"]["annotations"].clone());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "PipelineRun {name} never signed:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The external-account configuration the operator rendered for `spec.identity.gcp` (in the
/// signer ConfigMap), with Google's STS and IAM endpoints moved to the cloud double `google`,
/// and a token for the signer's ServiceAccount as the kubelet would project it, minted for
/// `audience` (`None`: the provider's own, which the double accepts).
pub struct GoogleCredentials {
    pub rendered: Value,
    pub federated: ServiceAccountIdentity,
    /// The configuration file to give the signer as `GOOGLE_APPLICATION_CREDENTIALS`.
    pub file: String,
}

impl GoogleCredentials {
    pub async fn write(
        admin: &Client,
        signer_ns: &str,
        google: &signet_e2e::clouds::CloudDouble,
        audience: Option<&str>,
        files: &std::path::Path,
    ) -> Self {
        let config_map =
            Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(admin.clone(), signer_ns)
                .get("signet-signer-config")
                .await
                .unwrap();
        let rendered: Value =
            serde_json::from_str(&config_map.data.unwrap()["gcp-credentials.json"]).unwrap();
        let provider = rendered["audience"].as_str().unwrap().to_owned();
        let account = rendered["service_account_impersonation_url"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .trim_end_matches(":generateAccessToken")
            .to_owned();
        let audience = audience.map_or_else(|| format!("https:{provider}"), str::to_owned);
        let federated =
            ServiceAccountIdentity::mint(admin, signer_ns, "signet-signer", &[&audience], 3600)
                .await
                .unwrap();
        let token_file = write_secret_file(files, "gcp-identity-token", &federated.token);
        let mut credentials = rendered.clone();
        credentials["token_url"] = json!(format!("{}/v1/token", google.url));
        credentials["service_account_impersonation_url"] = json!(format!(
            "{}/v1/projects/-/serviceAccounts/{account}:generateAccessToken",
            google.url
        ));
        credentials["credential_source"]["file"] = json!(token_file);
        let file = write_secret_file(files, "credentials.json", &credentials.to_string());
        Self {
            rendered,
            federated,
            file,
        }
    }
}

/// Runs openssl in `dir`; its standard output (a failure fails the test, with openssl's words).
pub fn openssl_in(dir: &std::path::Path, args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
