//! The signer end to end: the operator deploys the config and generates the key, the signer
//! binary runs as the `signet-signer` ServiceAccount, TaskRuns complete as Tekton would write
//! them, and the real cosign verifies what was stored.

// Helpers here are test code too: a failed unwrap is a failed test. Each test is one ordered
// scenario whose steps build on each other, so they run long.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client};
use serde_json::{Value, json};
use signet_crds::SignetConfig;
use signet_e2e::operator::{
    ConfigCleanup, OperatorProcess, apply_config, install_crd, install_operator_rbac,
};
use signet_e2e::{ServiceAccountIdentity, TestEnv, TestNamespace};

const DIGEST: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

fn taskruns(client: &Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("tekton.dev", "v1", "TaskRun"));
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// Creates a TaskRun and completes it through the status subresource, as Tekton would.
async fn completed_taskrun(client: &Client, ns: &str, name: &str) -> String {
    let runs = taskruns(client, ns);
    let run: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tekton.dev/v1", "kind": "TaskRun", "metadata": {"name": name},
        "spec": {"taskSpec": {"steps": [{"name": "build", "image": "gcr.io/kaniko-project/executor:v1", "args": ["--destination=registry.local/app"]}]}}
    }))
    .unwrap();
    let created = runs.create(&PostParams::default(), &run).await.unwrap();
    let status = json!({"status": {
        "podName": format!("{name}-pod"),
        "startTime": "2026-11-26T10:00:00Z", "completionTime": "2026-11-26T10:01:00Z",
        "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded", "lastTransitionTime": "2026-11-26T10:01:00Z"}],
        "steps": [{"name": "build", "container": "step-build", "imageID": format!("gcr.io/kaniko-project/executor@{DIGEST}")}],
        "results": [
            {"name": "IMAGE_URL", "type": "string", "value": "registry.local/team/app:v1"},
            {"name": "IMAGE_DIGEST", "type": "string", "value": DIGEST}
        ]
    }});
    runs.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    created.metadata.uid.unwrap()
}

async fn wait_annotation(
    client: &Client,
    ns: &str,
    name: &str,
    key: &str,
    log: impl Fn() -> String,
) -> Value {
    let runs = taskruns(client, ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
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
async fn wait_rendered(admin: &Client, signer_ns: &str, key: &str, want: &str) {
    let cms = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(admin.clone(), signer_ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
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

/// Waits for `name` to be marked and checks it is `signed=true`; returns the run.
async fn wait_signed(client: &Client, ns: &str, name: &str, log: impl Fn() -> String) -> Value {
    let run = wait_annotation(client, ns, name, "chains.tekton.dev/signed", &log).await;
    assert_eq!(
        run["metadata"]["annotations"]["chains.tekton.dev/signed"],
        "true",
        "{ns}/{name}: {}",
        log()
    );
    run
}

fn cosign_verify(
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

/// Decodes a base64 annotation value.
fn unbase64(value: &Value) -> Vec<u8> {
    STANDARD.decode(value.as_str().unwrap()).unwrap()
}

/// The in-toto statement inside a DSSE envelope.
fn statement_of(envelope: &[u8]) -> Value {
    let envelope: Value = serde_json::from_slice(envelope).unwrap();
    serde_json::from_slice(&unbase64(&envelope["payload"])).unwrap()
}

/// Asserts the real cosign verifies `envelope` with `public_key` as `predicate_type`.
fn assert_cosign_accepts(env: &TestEnv, public_key: &str, envelope: &[u8], predicate_type: &str) {
    let out = cosign_verify(env, public_key, envelope, predicate_type);
    assert!(
        out.status.success(),
        "cosign rejected the {predicate_type} attestation: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rand_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// One SignetConfig per cluster: the tests in this file take turns.
static STACK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The operator, running as its ServiceAccount, with a SignetConfig targeting `signer_ns`,
/// and the published public key.
struct Stack {
    operator: OperatorProcess,
    admin: Client,
    configs: Api<SignetConfig>,
    signer_ns: String,
    public_key: String,
    /// Merged under every applied spec. The scenarios here report images in a registry that
    /// does not exist (`registry.local`), so image signatures (`artifacts.oci`) are off unless
    /// a test turns them on; the OCI scenario uses the real test registry.
    base: Value,
    _cleanup: ConfigCleanup,
}

/// `spec` over `base`, objects merged key by key.
fn merged(base: &Value, spec: &Value) -> Value {
    match (base, spec) {
        (Value::Object(b), Value::Object(s)) => {
            let mut out = b.clone();
            for (k, v) in s {
                let m = out.get(k).map_or_else(|| v.clone(), |bv| merged(bv, v));
                out.insert(k.clone(), m);
            }
            Value::Object(out)
        }
        (_, s) => s.clone(),
    }
}

impl Stack {
    async fn up(env: &'static TestEnv, admin: &Client, signer_ns: &str) -> Self {
        Self::up_with(
            env,
            admin,
            signer_ns,
            json!({"artifacts": {"oci": {"storage": []}}}),
        )
        .await
    }

    async fn up_with(env: &'static TestEnv, admin: &Client, signer_ns: &str, base: Value) -> Self {
        install_crd(admin).await.unwrap();
        let operator_identity = install_operator_rbac(admin).await.unwrap();
        let cleanup = ConfigCleanup {
            env,
            namespaces: vec![signer_ns.to_owned()],
        };
        let operator = OperatorProcess::start(env, &operator_identity).unwrap();
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
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        stack.public_key = loop {
            let c = stack.configs.get("config").await.unwrap();
            if let Some(pk) = c.status.and_then(|s| s.public_key) {
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

    async fn apply(&self, spec: Value) {
        apply_config(&self.admin, merged(&self.base, &spec))
            .await
            .unwrap();
    }

    /// A signer process with the token of the ServiceAccount the operator created.
    async fn signer(&self, admin: &Client, env: &TestEnv) -> OperatorProcess {
        let identity =
            ServiceAccountIdentity::mint(admin, &self.signer_ns, "signet-signer", &[], 3600)
                .await
                .unwrap();
        OperatorProcess::start_signer(env, admin, &identity)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn completed_taskruns_are_signed_and_cosign_verifies_the_attestation() {
    let _turn = STACK.lock().await;
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    let stack = Stack::up(
        env,
        &admin,
        &format!("signet-e2e-signer-{}", std::process::id()),
    )
    .await;
    let (public_key, signer_ns) = (stack.public_key.clone(), stack.signer_ns.clone());
    let apply = |spec: Value| stack.apply(spec);
    let signer = stack.signer(&admin, env).await;
    let log = || signer.log_text();
    let work = TestNamespace::create(&admin, "signer-runs").await.unwrap();

    // 1. A completed TaskRun ends signed=true with Chains' annotations, and cosign verifies it.
    let uid = completed_taskrun(&admin, work.name(), "build-1").await;
    let run = wait_annotation(
        &admin,
        work.name(),
        "build-1",
        "chains.tekton.dev/signed",
        log,
    )
    .await;
    let annotations = &run["metadata"]["annotations"];
    assert_eq!(
        annotations["chains.tekton.dev/signed"], "true",
        "{annotations}"
    );
    let signature = unbase64(&annotations[format!("chains.tekton.dev/signature-taskrun-{uid}")]);
    let payload = unbase64(&annotations[format!("chains.tekton.dev/payload-taskrun-{uid}")]);
    let statement: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        statement["predicateType"],
        "https://slsa.dev/provenance/v0.2"
    );
    assert_eq!(
        statement["subject"][0]["name"],
        "registry.local/team/app:v1"
    );
    assert_cosign_accepts(env, &public_key, &signature, "slsaprovenance");

    // A tampered envelope must fail the same verification, or the check above proves nothing.
    let mut envelope: Value = serde_json::from_slice(&signature).unwrap();
    let mut forged = statement.clone();
    forged["subject"][0]["name"] = json!("registry.local/evil/app");
    envelope["payload"] = json!(STANDARD.encode(serde_json::to_vec(&forged).unwrap()));
    let out = cosign_verify(
        env,
        &public_key,
        &serde_json::to_vec(&envelope).unwrap(),
        "slsaprovenance",
    );
    assert!(!out.status.success(), "cosign accepted a forged payload");

    // 1b. A completed PipelineRun (its child TaskRun listed in childReferences) is signed too,
    //     with the child's steps in its provenance, and cosign verifies it.
    completed_taskrun(&admin, work.name(), "pr-child").await;
    let prs = Api::<DynamicObject>::namespaced_with(
        admin.clone(),
        work.name(),
        &ApiResource::from_gvk(&GroupVersionKind::gvk("tekton.dev", "v1", "PipelineRun")),
    );
    let pr: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "metadata": {"name": "release"},
        "spec": {"pipelineRef": {"name": "release"}}
    }))
    .unwrap();
    let pr_uid = prs
        .create(&PostParams::default(), &pr)
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    let status = json!({"status": {
        "startTime": "2026-11-26T10:00:00Z", "completionTime": "2026-11-26T10:02:00Z",
        "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded", "lastTransitionTime": "2026-11-26T10:02:00Z"}],
        "childReferences": [{"apiVersion": "tekton.dev/v1", "kind": "TaskRun", "name": "pr-child", "pipelineTaskName": "build"}],
        "results": [{"name": "IMAGE_URL", "value": "registry.local/team/release:v1"}, {"name": "IMAGE_DIGEST", "value": DIGEST}]
    }});
    prs.patch_status("release", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let pr_annotations = loop {
        let v = serde_json::to_value(prs.get("release").await.unwrap()).unwrap();
        if v["metadata"]["annotations"]["chains.tekton.dev/signed"] == "true" {
            break v["metadata"]["annotations"].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "PipelineRun never signed:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let envelope =
        unbase64(&pr_annotations[format!("chains.tekton.dev/signature-pipelinerun-{pr_uid}")]);
    let statement = statement_of(&envelope);
    assert_eq!(
        statement["predicate"]["buildType"],
        "tekton.dev/v1/PipelineRun"
    );
    assert_eq!(
        statement["predicate"]["buildConfig"]["tasks"][0]["steps"][0]["environment"]["container"],
        "build"
    );
    assert_eq!(
        statement["subject"][0]["name"],
        "registry.local/team/release:v1"
    );
    assert_cosign_accepts(env, &public_key, &envelope, "slsaprovenance");

    // 1c. Finalizers: a running TaskRun is held by chains.tekton.dev/taskrun; deleted after it
    //     completes, it is still signed first and then let go; a signed run keeps no finalizer.
    let trs = taskruns(&admin, work.name());
    let held: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tekton.dev/v1", "kind": "TaskRun", "metadata": {"name": "held"},
        "spec": {"taskSpec": {"steps": [{"name": "build", "image": "gcr.io/kaniko-project/executor:v1"}]}}
    }))
    .unwrap();
    trs.create(&PostParams::default(), &held).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !trs
        .get("held")
        .await
        .unwrap()
        .metadata
        .finalizers
        .unwrap_or_default()
        .contains(&"chains.tekton.dev/taskrun".to_owned())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no finalizer on a running TaskRun:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Complete it and delete it at once: the finalizer holds it until it is signed.
    let done = json!({"status": {
        "podName": "held-pod", "startTime": "2026-11-26T10:00:00Z", "completionTime": "2026-11-26T10:01:00Z",
        "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded", "lastTransitionTime": "2026-11-26T10:01:00Z"}]
    }});
    trs.patch_status("held", &PatchParams::default(), &Patch::Merge(&done))
        .await
        .unwrap();
    trs.delete("held", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while trs.get_opt("held").await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the deleted TaskRun was never let go:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        log()
            .lines()
            .any(|l| l.contains("\"message\":\"signed\"") && l.contains("/held\"")),
        "the deleted TaskRun was not signed before it went:\n{}",
        log()
    );
    let first = trs.get("build-1").await.unwrap();
    assert!(
        !first
            .metadata
            .finalizers
            .unwrap_or_default()
            .iter()
            .any(|f| f.starts_with("chains.tekton.dev/"))
    );

    // 2. Hot reload: SLSA v1.0 applies to the next run without a restart, and cosign
    //    verifies it as `slsaprovenance1`.
    let rendered =
        |key: &'static str, want: &'static str| wait_rendered(&admin, &signer_ns, key, want);
    apply(json!({"targetNamespace": signer_ns, "artifacts": {"taskRun": {"format": "slsa/v2alpha3"}}})).await;
    rendered("artifacts.taskrun.format", "slsa/v2alpha3").await;
    let uid = completed_taskrun(&admin, work.name(), "build-v1").await;
    let run = wait_annotation(
        &admin,
        work.name(),
        "build-v1",
        "chains.tekton.dev/signed",
        log,
    )
    .await;
    let key = format!("chains.tekton.dev/signature-taskrun-{uid}");
    let envelope = unbase64(&run["metadata"]["annotations"][&key]);
    let statement = statement_of(&envelope);
    assert_eq!(statement["predicateType"], "https://slsa.dev/provenance/v1");
    assert_eq!(
        statement["predicate"]["runDetails"]["metadata"]["invocationID"],
        uid.as_str()
    );
    assert_cosign_accepts(env, &public_key, &envelope, "slsaprovenance1");

    // 3. A signer this version does not implement (keyless) ends `failed` with a reason
    //    after 3 retries — never `signed=true`.
    apply(json!({"targetNamespace": signer_ns, "signing": {"keyless": {"enabled": true}}})).await;
    rendered("signers.x509.fulcio.enabled", "true").await;
    completed_taskrun(&admin, work.name(), "build-2").await;
    let run = wait_annotation(
        &admin,
        work.name(),
        "build-2",
        "chains.tekton.dev/failure-reason",
        log,
    )
    .await;
    let annotations = &run["metadata"]["annotations"];
    assert_eq!(annotations["chains.tekton.dev/signed"], "failed");
    assert_eq!(annotations["chains.tekton.dev/retries"], "3");
    assert!(
        annotations["chains.tekton.dev/failure-reason"]
            .as_str()
            .unwrap()
            .contains("keyless"),
        "{annotations}"
    );
    let keys: Vec<&String> = annotations.as_object().unwrap().keys().collect();
    assert!(
        keys.iter().all(|k| k.starts_with("chains.tekton.dev/")),
        "wrote outside chains.tekton.dev/: {keys:?}"
    );

    // Chains' metric names count what happened: four TaskRuns and one PipelineRun signed
    // once each, four failed attempts.
    assert_eq!(
        signer.metric("watcher_taskrun_marked_signed_total").await,
        Some(4)
    );
    assert_eq!(
        signer
            .metric("watcher_pipelinerun_marked_signed_total")
            .await,
        Some(1)
    );
    assert_eq!(
        signer
            .metric("watcher_taskrun_signing_failures_total")
            .await,
        Some(4)
    );
    // Latency histograms: every run a worker took is observed, once per kind it belongs to.
    for (family, kind, at_least) in [
        ("signet_signer_queue_duration_seconds", "taskrun", 5),
        ("signet_signer_sign_duration_seconds", "taskrun", 5),
        ("signet_signer_sign_duration_seconds", "pipelinerun", 1),
    ] {
        let count = signer
            .metric(&format!("{family}_count{{kind=\"{kind}\"}}"))
            .await
            .unwrap_or(0);
        let inf = signer
            .metric(&format!("{family}_bucket{{kind=\"{kind}\",le=\"+Inf\"}}"))
            .await;
        assert!(count >= at_least, "{family} {kind}: {count}");
        assert_eq!(
            inf,
            Some(count),
            "{family} {kind}: +Inf bucket is the count"
        );
    }
    drop(signer);
}

/// Names of runs the log says were signed, with how often each was.
fn signed_in_log(log: &str) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for line in log.lines().filter(|l| l.contains("\"message\":\"signed\"")) {
        let v: Value = serde_json::from_str(line).unwrap();
        *counts
            .entry(v["run"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    counts
}

#[tokio::test]
async fn a_signer_killed_mid_burst_leaves_every_run_signed_exactly_once() {
    const RUNS: usize = 120;
    let _turn = STACK.lock().await;
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    let stack = Stack::up(
        env,
        &admin,
        &format!("signet-e2e-kill-{}", std::process::id()),
    )
    .await;
    let work = TestNamespace::create(&admin, "kill-runs").await.unwrap();
    let mut first = stack.signer(&admin, env).await;
    let runs = taskruns(&admin, work.name());
    // Every change to every run, as the API server reports it: a run signed twice would show
    // two different signatures (ECDSA signatures are randomised).
    let seen: std::sync::Arc<
        std::sync::Mutex<std::collections::BTreeMap<String, std::collections::BTreeSet<String>>>,
    > = std::sync::Arc::default();
    let watching = {
        let seen = seen.clone();
        let mut events = futures::StreamExt::boxed(kube::runtime::watcher(
            runs.clone(),
            kube::runtime::watcher::Config::default(),
        ));
        tokio::spawn(async move {
            while let Some(Ok(event)) = futures::StreamExt::next(&mut events).await {
                if let kube::runtime::watcher::Event::Apply(obj)
                | kube::runtime::watcher::Event::InitApply(obj) = event
                {
                    let name = obj.metadata.name.clone().unwrap_or_default();
                    for (k, v) in obj.metadata.annotations.unwrap_or_default() {
                        if k.starts_with("chains.tekton.dev/signature-") {
                            seen.lock()
                                .unwrap()
                                .entry(name.clone())
                                .or_default()
                                .insert(v);
                        }
                    }
                }
            }
        })
    };
    let names: Vec<String> = (0..RUNS).map(|i| format!("run-{i}")).collect();
    let creating = {
        let admin = admin.clone();
        let ns = work.name().to_owned();
        let names = names.clone();
        tokio::spawn(async move {
            futures::StreamExt::collect::<Vec<_>>(futures::StreamExt::buffer_unordered(
                futures::stream::iter(names.into_iter().map(|n| {
                    let admin = admin.clone();
                    let ns = ns.clone();
                    async move { completed_taskrun(&admin, &ns, &n).await }
                })),
                8,
            ))
            .await
        })
    };
    // Kill the first signer (SIGKILL: no lease release, no cleanup) once it is under way.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while signed_in_log(&first.log_text()).len() < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first signer never got going:\n{}",
            first.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill();
    let second = stack.signer(&admin, env).await;
    creating.await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let list = runs.list(&kube::api::ListParams::default()).await.unwrap();
        let done = list
            .items
            .iter()
            .filter(|r| {
                r.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("chains.tekton.dev/signed"))
                    .is_some_and(|v| v == "true")
            })
            .count();
        if done == RUNS {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{done} of {RUNS} signed; second signer:\n{}",
            second.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    watching.abort();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), RUNS, "every run carries a signature");
    let twice: Vec<_> = seen
        .iter()
        .filter(|(_, sigs)| sigs.len() > 1)
        .map(|(n, _)| n)
        .collect();
    assert!(twice.is_empty(), "signed more than once: {twice:?}");
    let by_first = signed_in_log(&first.log_text()).len();
    let by_second = signed_in_log(&second.log_text()).len();
    assert!(
        by_first >= 10 && by_second > 0,
        "both signers worked: {by_first} + {by_second}"
    );
    assert!(
        by_first + by_second <= RUNS,
        "more signing writes than runs: {by_first} + {by_second}"
    );
}

/// A cosign key pair in `dir`: `cosign generate-key-pair` (ECDSA P-256) when `openssl_args` is
/// empty, else an `openssl genpkey` key imported with `cosign import-key-pair`. Returns the
/// Secret data a user would create from it, and the public key.
fn cosign_key_pair(
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

/// Keys made by cosign — its own P-256 pair, then P-384, Ed25519 and RSA keys it imported —
/// sign in Signet, and cosign verifies each attestation. The later keys replace the Secret's
/// data while the signer runs: the next run is signed with the new key, without a restart.
#[tokio::test]
async fn keys_made_by_cosign_of_every_type_sign_in_signet_and_cosign_verifies_them() {
    let _turn = STACK.lock().await;
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    let signer_ns = format!("signet-e2e-cosignkey-{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("signet-cosign-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The user's own key, made by cosign, in place before the operator arrives.
    let (data, cosign_pub) = cosign_key_pair(env, &dir, "p256", &[]);
    let secret = k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("signing-secrets".into()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    let ns = k8s_openapi::api::core::v1::Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(signer_ns.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(admin.clone(), &signer_ns);
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();

    let stack = Stack::up(env, &admin, &signer_ns).await;
    assert_eq!(
        stack.public_key, cosign_pub,
        "the operator publishes the user's key, not a new one"
    );
    let signer = stack.signer(&admin, env).await;
    let work = TestNamespace::create(&admin, "cosignkey-runs")
        .await
        .unwrap();
    let rotations: [(&str, &[&str]); 4] = [
        ("p256", &[]),
        (
            "p384",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
        ),
        ("ed25519", &["-algorithm", "ED25519"]),
        (
            "rsa3072",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"],
        ),
    ];
    for (name, openssl_args) in rotations {
        let public = if openssl_args.is_empty() {
            cosign_pub.clone()
        } else {
            let (data, public) = cosign_key_pair(env, &dir, name, openssl_args);
            let patch = json!({"data": data});
            secrets
                .patch(
                    "signing-secrets",
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .unwrap();
            public
        };
        // The watched Secret reaches the signer within a second; give it that before the run.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let uid = completed_taskrun(&admin, work.name(), name).await;
        let run = wait_signed(&admin, work.name(), name, || signer.log_text()).await;
        let envelope = unbase64(
            &run["metadata"]["annotations"][format!("chains.tekton.dev/signature-taskrun-{uid}")],
        );
        assert_cosign_accepts(env, &public, &envelope, "slsaprovenance");
        // And the previous key's public half does not verify it (the new key really signed).
        if name != "p256" {
            assert!(
                !cosign_verify(env, &cosign_pub, &envelope, "slsaprovenance")
                    .status
                    .success(),
                "{name}: the P-256 key verified a signature the {name} key made"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Waits for `name` to end `failed` and returns its failure reason, checking it was never
/// `signed=true` and that a Warning Event says why.
async fn assert_fails(client: &Client, ns: &str, name: &str, log: impl Fn() -> String) -> String {
    let run = wait_annotation(client, ns, name, "chains.tekton.dev/failure-reason", &log).await;
    let annotations = &run["metadata"]["annotations"];
    assert_eq!(annotations["chains.tekton.dev/signed"], "failed", "{name}");
    assert_eq!(annotations["chains.tekton.dev/retries"], "3", "{name}");
    // The Event is published right after the annotations are written: allow it a moment.
    let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let found = events
            .list(&kube::api::ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| {
                e.involved_object.name.as_deref() == Some(name)
                    && e.reason.as_deref() == Some("SigningFailed")
                    && e.type_.as_deref() == Some("Warning")
            });
        if found {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: no SigningFailed Event"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    annotations["chains.tekton.dev/failure-reason"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The documented failure states, each ending `failed` with a reason and an Event, never
/// `signed=true` — and runs written by someone else while the signer signs (write
/// conflicts) still end signed exactly once, with the other writer's changes kept.
#[tokio::test]
async fn failures_end_failed_with_a_reason_and_conflicts_still_sign_once() {
    let _turn = STACK.lock().await;
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    let signer_ns = format!("signet-e2e-faults-{}", std::process::id());
    let mut stack = Stack::up(env, &admin, &signer_ns).await;
    // The operator would repair what this test breaks (it regenerates a missing key and
    // re-renders the ConfigMap): the signer alone faces the broken state.
    stack.operator.kill();
    let signer = stack.signer(&admin, env).await;
    let log = || signer.log_text();
    let work = TestNamespace::create(&admin, "fault-runs").await.unwrap();
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(admin.clone(), &signer_ns);
    let config_maps =
        Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(admin.clone(), &signer_ns);
    let good_secret = secrets.get("signing-secrets").await.unwrap();
    let settle = || tokio::time::sleep(Duration::from_millis(1500));

    // 1. The Secret deleted.
    secrets
        .delete("signing-secrets", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    settle().await;
    completed_taskrun(&admin, work.name(), "no-secret").await;
    let reason = assert_fails(&admin, work.name(), "no-secret", log).await;
    assert!(reason.contains("signing-secrets"), "{reason}");

    // 2. The same key back, as a user's own (mutable) Secret with the wrong password.
    let mut data = good_secret.data.clone().unwrap();
    let password = data.insert(
        "cosign.password".to_owned(),
        k8s_openapi::ByteString(b"not the password".to_vec()),
    );
    let user_secret = k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("signing-secrets".into()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    secrets
        .create(&PostParams::default(), &user_secret)
        .await
        .unwrap();
    settle().await;
    completed_taskrun(&admin, work.name(), "wrong-password").await;
    let reason = assert_fails(&admin, work.name(), "wrong-password", log).await;
    assert!(
        reason.contains("wrong password") && reason.contains("signing-secrets"),
        "{reason}"
    );

    // 3. An unknown format in the ConfigMap (the right password restored first).
    let patch = json!({"data": {"cosign.password": password}});
    secrets
        .patch(
            "signing-secrets",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let patch = json!({"data": {"artifacts.taskrun.format": "slsa/v9"}});
    config_maps
        .patch(
            "signet-signer-config",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    settle().await;
    completed_taskrun(&admin, work.name(), "bad-format").await;
    let reason = assert_fails(&admin, work.name(), "bad-format", log).await;
    assert!(
        reason.contains("artifacts.taskrun.format") && reason.contains("slsa/v9"),
        "{reason}"
    );

    // 4. Conflicts: with the format fixed, another client labels each run every few
    //    milliseconds while it is signed. Every run still ends signed=true exactly once,
    //    and the other writer's labels stay.
    let patch = json!({"data": {"artifacts.taskrun.format": "in-toto"}});
    config_maps
        .patch(
            "signet-signer-config",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    settle().await;
    let runs = taskruns(&admin, work.name());
    let names: Vec<String> = (0..10).map(|i| format!("contended-{i}")).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn({
        let (runs, names, stop) = (runs.clone(), names.clone(), stop.clone());
        async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                for name in &names {
                    let patch = json!({"metadata": {"labels": {"touched": n.to_string()}}});
                    let _ = runs
                        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await;
                }
            }
            n
        }
    });
    for name in &names {
        completed_taskrun(&admin, work.name(), name).await;
    }
    for name in &names {
        wait_signed(&admin, work.name(), name, log).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = writer.await.unwrap();
    for name in &names {
        let run = runs.get(name).await.unwrap();
        assert!(
            run.metadata
                .labels
                .unwrap_or_default()
                .contains_key("touched"),
            "{name}: the other writer's label was lost"
        );
    }
    let signatures = signed_in_log(&log());
    for name in &names {
        assert_eq!(
            signatures.get(&format!("{}/{name}", work.name())),
            Some(&1),
            "{name} signed other than once"
        );
    }
    let conflicts = log().matches("changed meanwhile").count();
    println!("{rounds} label rounds, {conflicts} signing writes conflicted and were retried");
    drop(signer);
}

/// Runs the real cosign against the test registry (its CA and login), with `extra` env.
fn cosign_registry(env: &TestEnv, args: &[&str], extra: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(&env.cosign)
        .args(args)
        .env("DOCKER_CONFIG", &env.docker_config)
        .env("SSL_CERT_FILE", &env.ca_file)
        .envs(extra.iter().copied())
        .output()
        .unwrap()
}

fn assert_ok(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Creates a TaskRun that built `image` (as a Kaniko task reports it) and completes it.
/// Runs of the same image have the same provenance unless their times differ: a rebuild
/// gives its own `finished` time.
async fn taskrun_building(client: &Client, ns: &str, name: &str, image: &str, digest: &str) {
    taskrun_building_at(client, ns, name, image, digest, "2026-11-26T10:01:00Z").await;
}

/// As [`taskrun_building`], run as ServiceAccount `account`.
async fn taskrun_building_as(
    client: &Client,
    ns: &str,
    name: &str,
    image: &str,
    digest: &str,
    account: &str,
) {
    let runs = taskruns(client, ns);
    let run: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tekton.dev/v1", "kind": "TaskRun", "metadata": {"name": name},
        "spec": {"serviceAccountName": account,
                 "taskSpec": {"steps": [{"name": "build", "image": "gcr.io/kaniko-project/executor:v1"}]}}
    }))
    .unwrap();
    runs.create(&PostParams::default(), &run).await.unwrap();
    complete_building(&runs, name, image, digest, "2026-11-26T10:01:00Z").await;
}

async fn taskrun_building_at(
    client: &Client,
    ns: &str,
    name: &str,
    image: &str,
    digest: &str,
    finished: &str,
) {
    let runs = taskruns(client, ns);
    let run: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tekton.dev/v1", "kind": "TaskRun", "metadata": {"name": name},
        "spec": {"taskSpec": {"steps": [{"name": "build", "image": "gcr.io/kaniko-project/executor:v1"}]}}
    }))
    .unwrap();
    runs.create(&PostParams::default(), &run).await.unwrap();
    complete_building(&runs, name, image, digest, finished).await;
}

/// Completes run `name` through the status subresource, reporting `image@digest` built.
async fn complete_building(
    runs: &Api<DynamicObject>,
    name: &str,
    image: &str,
    digest: &str,
    finished: &str,
) {
    let status = json!({"status": {
        "podName": format!("{name}-pod"),
        "startTime": "2026-11-26T10:00:00Z", "completionTime": finished,
        "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded", "lastTransitionTime": finished}],
        "steps": [{"name": "build", "container": "step-build", "imageID": format!("gcr.io/kaniko-project/executor@{DIGEST}")}],
        "results": [
            {"name": "IMAGE_URL", "type": "string", "value": format!("{image}:latest")},
            {"name": "IMAGE_DIGEST", "type": "string", "value": digest}
        ]
    }});
    runs.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// The layers under `tag` in `repository` of the test registry.
async fn layers(env: &TestEnv, repository: &str, tag: &str) -> Vec<Value> {
    let manifest = signet_e2e::registry::repository(env, repository)
        .manifest(tag)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{repository}:{tag} does not exist"));
    let manifest: Value = serde_json::from_slice(&manifest).unwrap();
    manifest["layers"].as_array().unwrap().clone()
}

/// Images a TaskRun built come out signed in the registry, with their provenance attached:
/// cosign verifies both, a signature cosign itself made stays valid, identical layers are not
/// pushed twice, `storage.oci.repository` moves them, and a missing image or missing
/// credentials end `failed` with a reason naming the registry.
#[tokio::test]
async fn images_are_signed_and_attested_in_the_registry_and_cosign_verifies_them() {
    let _turn = STACK.lock().await;
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    let pid = std::process::id();
    let signer_ns = format!("signet-e2e-oci-{pid}");
    let stack = Stack::up_with(
        env,
        &admin,
        &signer_ns,
        json!({"artifacts": {"taskRun": {"storage": ["tekton", "oci"]}}}),
    )
    .await;
    let signer = stack.signer(&admin, env).await;
    let log = || signer.log_text();
    let work = TestNamespace::create(&admin, "oci-runs").await.unwrap();
    let dir = std::env::temp_dir().join(format!("signet-oci-{pid}"));
    std::fs::create_dir_all(&dir).unwrap();
    let signet_pub = dir.join("signet.pub");
    std::fs::write(&signet_pub, &stack.public_key).unwrap();
    let signet_pub = signet_pub.to_str().unwrap();

    // The run's ServiceAccount holds the registry login, as a Kaniko task's would.
    let docker_config = std::fs::read(env.docker_config.join("config.json")).unwrap();
    let pull = k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("registry-login".into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(std::collections::BTreeMap::from([(
            ".dockerconfigjson".to_owned(),
            k8s_openapi::ByteString(docker_config),
        )])),
        ..Default::default()
    };
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(admin.clone(), work.name())
        .create(&PostParams::default(), &pull)
        .await
        .unwrap();
    let accounts =
        Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(admin.clone(), work.name());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while accounts.get_opt("default").await.unwrap().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no default ServiceAccount"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let patch = json!({"imagePullSecrets": [{"name": "registry-login"}]});
    accounts
        .patch("default", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();

    // 1. An image cosign signed itself first (with its own key, legacy .sig layout).
    let repo = format!("team/app-{pid}");
    let image = format!("{}/{repo}", env.registry);
    let digest = signet_e2e::registry::push_random_image(env, &repo, "latest")
        .await
        .unwrap();
    let pinned = format!("{image}@{digest}");
    let _ = cosign_key_pair(env, &dir, "user", &[]);
    let user_pub = dir.join("user.pub");
    let user_pub = user_pub.to_str().unwrap();
    let password = "a user's passphrase for user";
    let out = cosign_registry(
        env,
        &[
            "sign",
            "--key",
            dir.join("user.key").to_str().unwrap(),
            "--yes",
            "--tlog-upload=false",
            "--new-bundle-format=false",
            "--use-signing-config=false",
            &pinned,
        ],
        &[("COSIGN_PASSWORD", password)],
    );
    assert_ok(&out, "cosign sign (the user's own signature)");

    // 2. A TaskRun that built it: signed=true only after the registry has both layers.
    taskrun_building(&admin, work.name(), "build-app", &image, &digest).await;
    wait_signed(&admin, work.name(), "build-app", log).await;
    let verify = |key: &str| {
        cosign_registry(
            env,
            &[
                "verify",
                "--key",
                key,
                "--insecure-ignore-tlog=true",
                &pinned,
            ],
            &[],
        )
    };
    assert_ok(&verify(signet_pub), "cosign verify (Signet's key)");
    assert_ok(
        &verify(user_pub),
        "cosign verify (the user's earlier signature)",
    );
    let out = cosign_registry(
        env,
        &[
            "verify-attestation",
            "--key",
            signet_pub,
            "--insecure-ignore-tlog=true",
            "--type",
            "slsaprovenance",
            &pinned,
        ],
        &[],
    );
    assert_ok(&out, "cosign verify-attestation");
    let out = cosign_registry(env, &["tree", &pinned], &[]);
    assert_ok(&out, "cosign tree");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        tree.contains("Signatures") && tree.contains("Attestations"),
        "cosign tree:\n{tree}"
    );
    let sig_tag = format!("{}.sig", digest.replacen(':', "-", 1));
    assert_eq!(
        layers(env, &repo, &sig_tag).await.len(),
        2,
        "the user's and Signet's"
    );

    // 3. A second run reporting the same image: the identical signature layer is not pushed
    //    again; the new run's attestation is added next to the first.
    taskrun_building_at(
        &admin,
        work.name(),
        "rebuild-app",
        &image,
        &digest,
        "2026-11-26T10:05:00Z",
    )
    .await;
    wait_signed(&admin, work.name(), "rebuild-app", log).await;
    assert_eq!(
        layers(env, &repo, &sig_tag).await.len(),
        2,
        "no duplicate signature"
    );
    let att_tag = format!("{}.att", digest.replacen(':', "-", 1));
    assert_eq!(
        layers(env, &repo, &att_tag).await.len(),
        2,
        "one attestation per run"
    );

    // 4. An unsigned image fails verification (the check above can fail).
    let other = format!("team/unsigned-{pid}");
    let unsigned = signet_e2e::registry::push_random_image(env, &other, "latest")
        .await
        .unwrap();
    let unsigned = format!("{}/{other}@{unsigned}", env.registry);
    let out = verify_pinned(env, signet_pub, &unsigned, &[]);
    assert!(!out.status.success(), "cosign verified an unsigned image");

    // 4b. sigstore policy-controller, as its admission webhook would decide with a key-based
    //     ClusterImagePolicy: admits the image Signet signed, rejects the unsigned one.
    let policy = dir.join("policy.yaml");
    let indented: String = stack.public_key.lines().fold(String::new(), |mut out, l| {
        out.push_str("        ");
        out.push_str(l);
        out.push('\n');
        out
    });
    std::fs::write(
        &policy,
        format!(
            "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: signet-images\nspec:\n  images:\n  - glob: \"**\"\n  authorities:\n  - name: signet\n    key:\n      data: |\n{indented}"
        ),
    )
    .unwrap();
    let tester = |image: &str| {
        std::process::Command::new(&env.policy_tester)
            .args(["--policy", policy.to_str().unwrap(), "--image", image])
            .env("DOCKER_CONFIG", &env.docker_config)
            .env("SSL_CERT_FILE", &env.ca_file)
            .output()
            .unwrap()
    };
    assert_ok(&tester(&pinned), "policy-controller tester (signed image)");
    let out = tester(&unsigned);
    assert!(
        !out.status.success(),
        "policy-controller admitted an unsigned image: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // 5. storage.oci.repository: signatures and attestations go to another repository,
    //    where cosign finds them with COSIGN_REPOSITORY.
    let elsewhere = format!("{}/signatures-{pid}", env.registry);
    stack
        .apply(json!({"targetNamespace": signer_ns, "storage": {"oci": {"repository": elsewhere}}}))
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let moved_repo = format!("team/moved-{pid}");
    let moved_digest = signet_e2e::registry::push_random_image(env, &moved_repo, "latest")
        .await
        .unwrap();
    let moved = format!("{}/{moved_repo}", env.registry);
    taskrun_building(&admin, work.name(), "build-moved", &moved, &moved_digest).await;
    wait_signed(&admin, work.name(), "build-moved", log).await;
    let moved_pinned = format!("{moved}@{moved_digest}");
    let out = verify_pinned(
        env,
        signet_pub,
        &moved_pinned,
        &[("COSIGN_REPOSITORY", &elsewhere)],
    );
    assert_ok(&out, "cosign verify with COSIGN_REPOSITORY");
    let out = cosign_registry(
        env,
        &[
            "verify-attestation",
            "--key",
            signet_pub,
            "--insecure-ignore-tlog=true",
            "--type",
            "slsaprovenance",
            &moved_pinned,
        ],
        &[("COSIGN_REPOSITORY", &elsewhere)],
    );
    assert_ok(&out, "cosign verify-attestation with COSIGN_REPOSITORY");
    let out = verify_pinned(env, signet_pub, &moved_pinned, &[]);
    assert!(
        !out.status.success(),
        "the signature was stored next to the image too"
    );

    // 6. An image that does not exist: failed, naming the registry and the image.
    let ghost = "sha256:4444444444444444444444444444444444444444444444444444444444444444";
    taskrun_building(&admin, work.name(), "build-ghost", &moved, ghost).await;
    let reason = assert_fails(&admin, work.name(), "build-ghost", log).await;
    assert!(
        reason.contains(&env.registry) && reason.contains("does not exist"),
        "{reason}"
    );

    // 6b. A registry that is down (nothing listens): failed, naming it.
    taskrun_building(
        &admin,
        work.name(),
        "build-down",
        "127.0.0.1:9/team/app",
        &moved_digest,
    )
    .await;
    let reason = assert_fails(&admin, work.name(), "build-down", log).await;
    assert!(reason.contains("127.0.0.1:9"), "{reason}");

    // 7. No credentials for the registry (a namespace whose ServiceAccount has none): failed
    //    with a reason that says so, and no password in it or in the log.
    let bare = TestNamespace::create(&admin, "oci-bare").await.unwrap();
    taskrun_building(&admin, bare.name(), "build-bare", &moved, &moved_digest).await;
    let reason = assert_fails(&admin, bare.name(), "build-bare", log).await;
    assert!(
        reason.contains("401") && reason.contains(&env.registry),
        "{reason}"
    );
    assert!(
        !log().contains(&env.registry_password),
        "the registry password is in the log"
    );

    // 7b. The signer's own ServiceAccount is the fallback: given the login, the same kind of
    //     run in the same bare namespace is signed.
    let own_login = k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("registry-login".into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: pull.data.clone(),
        ..Default::default()
    };
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(admin.clone(), &signer_ns)
        .create(&PostParams::default(), &own_login)
        .await
        .unwrap();
    Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(admin.clone(), &signer_ns)
        .patch(
            "signet-signer",
            &PatchParams::default(),
            &Patch::Merge(&json!({"imagePullSecrets": [{"name": "registry-login"}]})),
        )
        .await
        .unwrap();
    taskrun_building(&admin, bare.name(), "build-fallback", &moved, &moved_digest).await;
    wait_signed(&admin, bare.name(), "build-fallback", log).await;

    // 8. Image signatures switched off again with server-side apply (`storage: []` over the
    //    default): the operator renders an empty storage, so the list default must not
    //    come back.
    stack
        .apply(json!({"targetNamespace": signer_ns, "artifacts": {"oci": {"storage": []}}}))
        .await;
    wait_rendered(&admin, &signer_ns, "artifacts.oci.storage", "").await;
    std::fs::remove_dir_all(&dir).unwrap();
    drop(signer);
}

fn verify_pinned(
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

/// `storage.oci.encoding-format: sigstore-bundle`: attestations (here SLSA v1.0) become
/// Sigstore bundles pushed as OCI 1.1 referrers of the image — through the referrers API where
/// the registry has one, through the fallback tag where it does not — and cosign verifies them
/// with `--new-bundle-format`; image signatures stay in `.sig`.
#[tokio::test]
async fn sigstore_bundles_are_pushed_as_referrers_and_cosign_verifies_them() {
    let _turn = STACK.lock().await;
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    let pid = std::process::id();
    let signer_ns = format!("signet-e2e-bundle-{pid}");
    let stack = Stack::up_with(
        env,
        &admin,
        &signer_ns,
        json!({
            "artifacts": {"taskRun": {"storage": ["oci"], "format": "slsa/v2alpha4"}},
            "storage": {"oci": {"encoding": "sigstore-bundle"}}
        }),
    )
    .await;
    let signer = stack.signer(&admin, env).await;
    let log = || signer.log_text();
    let work = TestNamespace::create(&admin, "bundle-runs").await.unwrap();
    let key = std::env::temp_dir().join(format!("signet-bundle-{pid}.pub"));
    std::fs::write(&key, &stack.public_key).unwrap();
    let key = key.to_str().unwrap();
    // Credentials for the tag-schema registry (the referrers one takes none).
    let login = k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("registry-login".into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(std::collections::BTreeMap::from([(
            ".dockerconfigjson".to_owned(),
            k8s_openapi::ByteString(std::fs::read(env.docker_config.join("config.json")).unwrap()),
        )])),
        ..Default::default()
    };
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(admin.clone(), work.name())
        .create(&PostParams::default(), &login)
        .await
        .unwrap();
    let run_account = k8s_openapi::api::core::v1::ServiceAccount {
        metadata: kube::api::ObjectMeta {
            name: Some("builder".into()),
            ..Default::default()
        },
        image_pull_secrets: Some(vec![k8s_openapi::api::core::v1::LocalObjectReference {
            name: "registry-login".into(),
        }]),
        ..Default::default()
    };
    Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(admin.clone(), work.name())
        .create(&PostParams::default(), &run_account)
        .await
        .unwrap();

    for (registry, name) in [
        (env.referrers_registry.as_str(), "with-referrers-api"),
        (env.registry.as_str(), "tag-fallback"),
    ] {
        let repo = format!("team/{name}-{pid}");
        let digest = signet_e2e::registry::push_random_image_to(env, registry, &repo, "latest")
            .await
            .unwrap();
        let image = format!("{registry}/{repo}");
        // The run's ServiceAccount (not `default`) carries the login.
        taskrun_building_as(&admin, work.name(), name, &image, &digest, "builder").await;
        wait_signed(&admin, work.name(), name, log).await;
        let pinned = format!("{image}@{digest}");
        let out = cosign_registry(
            env,
            &[
                "verify-attestation",
                "--key",
                key,
                "--insecure-ignore-tlog=true",
                "--new-bundle-format",
                "--type",
                "slsaprovenance1",
                &pinned,
            ],
            &[],
        );
        assert_ok(
            &out,
            &format!("cosign verify-attestation --new-bundle-format ({name})"),
        );
        // The image signature stays in cosign's .sig tag in this encoding.
        let out = verify_pinned(env, key, &pinned, &[]);
        assert_ok(&out, &format!("cosign verify ({name})"));
    }

    // TLS is verified unless the user turns it off: a signer that does not trust the
    // registry's CA (no roots at all) fails the run, naming the certificate problem; with
    // `storage.oci.insecure` the same signer signs.
    drop(signer);
    let identity = ServiceAccountIdentity::mint(&admin, &signer_ns, "signet-signer", &[], 3600)
        .await
        .unwrap();
    let untrusting = OperatorProcess::start_signer_with(
        env,
        &admin,
        &identity,
        &[("SSL_CERT_FILE", "/dev/null")],
    )
    .await
    .unwrap();
    let log = || untrusting.log_text();
    let repo = format!("team/insecure-{pid}");
    let digest =
        signet_e2e::registry::push_random_image_to(env, &env.referrers_registry, &repo, "latest")
            .await
            .unwrap();
    let image = format!("{}/{repo}", env.referrers_registry);
    taskrun_building_as(&admin, work.name(), "untrusted", &image, &digest, "builder").await;
    let reason = assert_fails(&admin, work.name(), "untrusted", log).await;
    assert!(reason.contains("certificate"), "{reason}");
    stack
        .apply(json!({"targetNamespace": signer_ns, "storage": {"oci": {"insecure": true}}}))
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    taskrun_building_as(&admin, work.name(), "insecure", &image, &digest, "builder").await;
    wait_signed(&admin, work.name(), "insecure", log).await;
    drop(untrusting);
}
