//! Tekton Pipelines for real: its controller on the node runs a Task that builds and pushes
//! an image, as a TaskRun and inside a PipelineRun; the signer pod signs them; the provenance
//! is checked against the shape of Chains' own expected statement and against what Tekton
//! recorded.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use kube::api::{ApiResource, DynamicObject, ListParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client};
use serde_json::{Value, json};
use signet_e2e::TestEnv;
use signet_e2e::env::{Tekton, repo_root};
use signet_e2e::pods::{SIGNER_PODS, build_and_push_task, test_ca_config_map};

use super::common::{self, assert_cosign_accepts, assert_ok, unbase64, verify_pinned, wait_signed};
use super::logs;

pub(crate) fn tekton_api(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("tekton.dev", "v1", kind));
    Api::namespaced_with(client.clone(), ns, &ar)
}

pub(crate) async fn create(api: &Api<DynamicObject>, object: Value) -> DynamicObject {
    let object: DynamicObject = serde_json::from_value(object).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap()
}

/// Every key path of `v` (`a.b[].c`), arrays' elements folded into one.
fn key_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(path.clone());
                key_paths(v, &path, out);
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|i| key_paths(i, &format!("{prefix}[]"), out)),
        _ => {}
    }
}

/// The `sha256` hex of an image reference by digest (`…@sha256:<hex>`).
fn sha256_of(reference: &str) -> String {
    reference
        .rsplit_once("@sha256:")
        .map(|(_, hex)| hex.to_owned())
        .unwrap_or_default()
}

/// A Task that writes a file and pushes it as an image with crane (reporting `IMAGE_URL` and
/// `IMAGE_DIGEST` as a Kaniko task does, and `FILES`), run by Tekton as a TaskRun and as the first
/// task of a PipelineRun; both runs signed by the signer pod, their provenance checked against
/// the shape of Chains' own expected statement and against what Tekton recorded, the image
/// verified.
pub(crate) async fn really_run_and_signed(
    admin: &Client,
    env: &TestEnv,
    tekton: &Tekton,
    signer_ns: &str,
    public_key: &str,
) {
    let ns = tekton.runs_namespace.as_str();
    test_ca_config_map(admin, env, ns).await.unwrap();
    let suffix = common::rand_nanos();
    let task = format!("build-and-push-{suffix}");
    create(
        &tekton_api(admin, ns, "Task"),
        build_and_push_task(&task, tekton),
    )
    .await;
    let image = format!("{}/real-pods/app-{suffix}", env.referrers_registry);
    let taskruns = tekton_api(admin, ns, "TaskRun");
    let run_name = format!("build-{suffix}");
    let uid = create(&taskruns, json!({
        "apiVersion": "tekton.dev/v1", "kind": "TaskRun", "metadata": {"name": run_name},
        "spec": {"taskRef": {"name": task}, "params": [{"name": "IMAGE", "value": format!("{image}:v1")}]}
    })).await.metadata.uid.unwrap();
    let log = || logs(env, signer_ns, SIGNER_PODS);
    let run = wait_signed(admin, ns, &run_name, log).await;
    let status = &run["status"];
    assert_eq!(
        status["conditions"][0]["reason"], "Succeeded",
        "Tekton ran it: {status}"
    );
    let result = |name: &str| {
        status["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .map(|r| r["value"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let digest = result("IMAGE_DIGEST");
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );

    // Its provenance: the shape of what Chains' own tests expect for its test TaskRun
    // (signer/testdata/chains, transcribed from Chains, not Signet's output), filled from what
    // Tekton recorded.
    let envelope = unbase64(
        &run["metadata"]["annotations"][format!("chains.tekton.dev/signature-taskrun-{uid}")],
    );
    assert_cosign_accepts(env, public_key, &envelope, "slsaprovenance1");
    let statement = common::statement_of(&envelope);
    let chains: Value = serde_json::from_str(
        &std::fs::read_to_string(
            repo_root().join("signer/testdata/chains/taskrun1.slsa-v2alpha4.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let (mut want, mut got) = (BTreeSet::new(), BTreeSet::new());
    key_paths(&chains, "", &mut want);
    key_paths(&statement, "", &mut got);
    // Chains' test run came from a Task in git (a named `task` dependency, a sha1) and had
    // type-hinted inputs; this one has neither. Each run's spec and feature flags are its own:
    // compared with what Tekton recorded below.
    want.remove("predicate.buildDefinition.resolvedDependencies[].name");
    want.remove("predicate.buildDefinition.resolvedDependencies[].digest.sha1");
    for set in [&mut want, &mut got] {
        set.retain(|p| {
            !p.starts_with("predicate.buildDefinition.internalParameters.")
                && !p.starts_with("predicate.buildDefinition.externalParameters.runSpec.")
        });
    }
    assert_eq!(
        (
            got.difference(&want).collect::<Vec<_>>(),
            want.difference(&got).collect::<Vec<_>>()
        ),
        (vec![], vec![]),
        "(keys only in the real run's provenance, keys only in Chains' expected statement): {statement:#}"
    );
    let run_spec = &statement["predicate"]["buildDefinition"]["externalParameters"]["runSpec"];
    for (key, value) in run["spec"].as_object().unwrap() {
        if key != "taskSpec" {
            assert_eq!(&run_spec[key], value, "runSpec.{key}");
        }
    }
    assert_eq!(
        statement["predicate"]["buildDefinition"]["internalParameters"]["tekton-pipelines-feature-flags"]
            ["resultExtractionMethod"],
        "termination-message"
    );
    assert_eq!(
        statement["subject"],
        json!([{"name": format!("{image}:v1"), "digest": {"sha256": digest.trim_start_matches("sha256:")}}])
    );
    let meta = &statement["predicate"]["runDetails"]["metadata"];
    assert_eq!(meta["startedOn"], status["startTime"]);
    assert_eq!(meta["finishedOn"], status["completionTime"]);
    assert_eq!(meta["invocationId"], json!(uid));
    let deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    for step in status["steps"].as_array().unwrap() {
        let image_id = step["imageID"].as_str().unwrap();
        assert!(
            deps.iter()
                .any(|d| d["digest"]["sha256"] == json!(sha256_of(image_id))
                    && image_id
                        .starts_with(d["uri"].as_str().unwrap().trim_start_matches("oci://"))),
            "step image {image_id} is not a resolved dependency: {deps:?}"
        );
    }
    assert_eq!(status["steps"].as_array().unwrap().len(), 2);
    let byproducts = statement["predicate"]["runDetails"]["byproducts"]
        .as_array()
        .unwrap();
    assert_eq!(byproducts.len(), 1, "{byproducts:?}");
    assert_eq!(
        byproducts[0]["name"],
        json!(format!("taskRunResults/{run_name}/FILES"))
    );
    assert_eq!(unbase64(&byproducts[0]["content"]), b"\"app/built\"");

    // The image the TaskRun pushed: signed and attested next to it, verified by cosign and
    // admitted by policy-controller.
    let key = common::tempdir("real-pods-key");
    let key_file = key.join("cosign.pub");
    std::fs::write(&key_file, public_key).unwrap();
    let key_file = key_file.to_str().unwrap();
    let pinned = format!("{image}@{digest}");
    assert_ok(
        &verify_pinned(env, key_file, &pinned, &[]),
        "cosign verify (image built by Tekton)",
    );
    let out = common::cosign_registry(
        env,
        &[
            "verify-attestation",
            "--key",
            key_file,
            "--insecure-ignore-tlog=true",
            "--type",
            "slsaprovenance1",
            &pinned,
        ],
        &[],
    );
    assert_ok(&out, "cosign verify-attestation");
    let policy = key.join("policy.yaml");
    let indented = public_key.lines().fold(String::new(), |mut out, l| {
        out.push_str("        ");
        out.push_str(l);
        out.push('\n');
        out
    });
    std::fs::write(&policy, format!(
        "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: signet-real-pods\nspec:\n  images:\n  - glob: \"**\"\n  authorities:\n  - name: signet\n    key:\n      data: |\n{indented}"
    )).unwrap();
    let out = Command::new(&env.policy_tester)
        .args(["--policy", policy.to_str().unwrap(), "--image", &pinned])
        .env("SSL_CERT_FILE", &env.ca_file)
        .output()
        .unwrap();
    assert_ok(&out, "policy-controller tester (image built by Tekton)");

    // A PipelineRun of that Task and a second one reading its result: Tekton runs both tasks,
    // the signer signs the PipelineRun with the image the pipeline reports.
    let pipeline = format!("release-{suffix}");
    create(&tekton_api(admin, ns, "Pipeline"), json!({
        "apiVersion": "tekton.dev/v1", "kind": "Pipeline", "metadata": {"name": pipeline},
        "spec": {
            "params": [{"name": "IMAGE", "type": "string"}],
            "results": [
                {"name": "IMAGE_URL", "value": "$(tasks.build.results.IMAGE_URL)"},
                {"name": "IMAGE_DIGEST", "value": "$(tasks.build.results.IMAGE_DIGEST)"}
            ],
            "tasks": [
                {"name": "build", "taskRef": {"name": task}, "params": [{"name": "IMAGE", "value": "$(params.IMAGE)"}]},
                {"name": "check", "runAfter": ["build"], "params": [{"name": "DIGEST", "value": "$(tasks.build.results.IMAGE_DIGEST)"}],
                 "taskSpec": {"params": [{"name": "DIGEST"}], "steps": [{"name": "check", "image": tekton.busybox_image,
                    "script": "#!/bin/sh\necho \"built $(params.DIGEST)\"\n"}]}}
            ]
        }
    })).await;
    let pr_name = format!("release-{suffix}");
    let pr_uid = create(&tekton_api(admin, ns, "PipelineRun"), json!({
        "apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "metadata": {"name": pr_name},
        "spec": {"pipelineRef": {"name": pipeline}, "params": [{"name": "IMAGE", "value": format!("{image}:v2")}]}
    })).await.metadata.uid.unwrap();
    let prs = tekton_api(admin, ns, "PipelineRun");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let pr = loop {
        let v = serde_json::to_value(prs.get(&pr_name).await.unwrap()).unwrap();
        if v["metadata"]["annotations"]["chains.tekton.dev/signed"] == "true" {
            break v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "PipelineRun never signed: {v:#}\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        pr["status"]["conditions"][0]["reason"], "Succeeded",
        "{:#}",
        pr["status"]
    );
    let envelope = unbase64(
        &pr["metadata"]["annotations"][format!("chains.tekton.dev/signature-pipelinerun-{pr_uid}")],
    );
    assert_cosign_accepts(env, public_key, &envelope, "slsaprovenance1");
    let statement = common::statement_of(&envelope);
    let pr_digest = pr["status"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "IMAGE_DIGEST")
        .unwrap()["value"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        statement["subject"][0]["digest"]["sha256"],
        json!(pr_digest.trim_start_matches("sha256:"))
    );
    // Both child TaskRuns ran for real and were signed too.
    let children = taskruns
        .list(&ListParams::default().labels(&format!("tekton.dev/pipelineRun={pr_name}")))
        .await
        .unwrap();
    assert_eq!(children.items.len(), 2);
    assert_ok(
        &verify_pinned(env, key_file, &format!("{image}@{pr_digest}"), &[]),
        "cosign verify (image built in the PipelineRun)",
    );
    let _ = std::fs::remove_dir_all(&key);
}
