//! The signer end to end: the operator deploys the config and generates the key, the signer
//! binary runs as the `signet-signer` ServiceAccount, TaskRuns complete as Tekton would write
//! them, and the real cosign verifies what was stored.

// Helpers here are test code too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client};
use serde_json::{Value, json};
use signet_crds::SignetConfig;
use signet_e2e::operator::{ConfigCleanup, OperatorProcess, install_crd, install_operator_rbac};
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

fn rand_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one ordered scenario: each step builds on the last
async fn completed_taskruns_are_signed_and_cosign_verifies_the_attestation() {
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    install_crd(&admin).await.unwrap();
    let operator_identity = install_operator_rbac(&admin).await.unwrap();
    let signer_ns = format!("signet-e2e-signer-{}", std::process::id());
    let _cleanup = ConfigCleanup {
        env,
        namespaces: vec![signer_ns.clone()],
    };
    let operator = OperatorProcess::start(env, &operator_identity).unwrap();
    let configs: Api<SignetConfig> = Api::all(admin.clone());
    let apply = |spec: Value| {
        let configs = configs.clone();
        async move {
            let body = json!({"apiVersion": "signet.dev/v1alpha1", "kind": "SignetConfig", "metadata": {"name": "config"}, "spec": spec});
            configs
                .patch(
                    "config",
                    &PatchParams::apply("e2e-user").force(),
                    &Patch::Apply(&body),
                )
                .await
                .unwrap();
        }
    };
    apply(json!({"targetNamespace": signer_ns})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let public_key = loop {
        let c = configs.get("config").await.unwrap();
        if let Some(pk) = c.status.and_then(|s| s.public_key) {
            break pk;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no public key published:\n{}",
            operator.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // The signer runs with the token of the ServiceAccount the operator created.
    let signer_identity =
        ServiceAccountIdentity::mint(&admin, &signer_ns, "signet-signer", &[], 3600)
            .await
            .unwrap();
    let signer = OperatorProcess::start_signer(env, &signer_identity).unwrap();
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
    let signature = STANDARD
        .decode(
            annotations[format!("chains.tekton.dev/signature-taskrun-{uid}")]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let payload = STANDARD
        .decode(
            annotations[format!("chains.tekton.dev/payload-taskrun-{uid}")]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let statement: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        statement["predicateType"],
        "https://slsa.dev/provenance/v0.2"
    );
    assert_eq!(
        statement["subject"][0]["name"],
        "registry.local/team/app:v1"
    );
    let out = cosign_verify(env, &public_key, &signature, "slsaprovenance");
    assert!(
        out.status.success(),
        "cosign rejected the attestation: {}",
        String::from_utf8_lossy(&out.stderr)
    );

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

    // 2. Hot reload: a format this signer does not implement yet applies to the next run
    //    without a restart, and ends `failed` with a reason, never `signed=true`.
    apply(json!({"targetNamespace": signer_ns, "artifacts": {"taskRun": {"format": "slsa/v2alpha4"}}})).await;
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(admin.clone(), &signer_ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while cms.get("signet-signer-config").await.unwrap().data.unwrap()["artifacts.taskrun.format"]
        != "slsa/v2alpha4"
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the operator never rendered the new format"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
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
            .contains("slsa/v2alpha4"),
        "{annotations}"
    );
    let keys: Vec<&String> = annotations.as_object().unwrap().keys().collect();
    assert!(
        keys.iter().all(|k| k.starts_with("chains.tekton.dev/")),
        "wrote outside chains.tekton.dev/: {keys:?}"
    );

    // Chains' metric names count what happened: one run signed once, four failed attempts.
    assert_eq!(
        signer.metric("watcher_taskrun_marked_signed_total").await,
        Some(1)
    );
    assert_eq!(
        signer
            .metric("watcher_taskrun_signing_failures_total")
            .await,
        Some(4)
    );
    drop(signer);
    drop(operator);
}
