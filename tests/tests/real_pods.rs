//! Signet as real pods (issue 20): the bundle installed as OLM would, its images the ones
//! `make images` built (static musl binaries, pushed by digest), on the environment's real
//! node (kubelet + containerd + runc). The operator pod reconciles, the signer pod it rolls
//! out becomes Ready by its own probes, signs a TaskRun that cosign verifies, is rolled when a
//! change needs a restart, and stays under the memory limit the operator sets. Then Tekton
//! really runs what it signs (`real_pods/tekton.rs`), it signs Signet's own images, and it
//! signs with each identity the kubelet gives the pod (`real_pods/identities.rs`).

// Test code: a failed unwrap is a failed test; each test is one ordered scenario.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;
#[path = "real_pods/identities.rs"]
mod identities;
#[path = "real_pods/tekton.rs"]
mod tekton;

use std::time::Duration;

use common::{assert_cosign_accepts, assert_ok, unbase64, verify_pinned, wait_signed};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use signet_crds::SignetConfig;
use signet_e2e::TestEnv;
use signet_e2e::olm::Bundle;
use signet_e2e::operator::{ConfigCleanup, OPERATOR_NAMESPACE, merged};
use signet_e2e::pods::{
    Images, OPERATOR_PODS, SIGNER_PODS, install_bundle_on_the_node, kubectl_logs, pod_log,
    pod_memory_peak, restarts_and_oom, trusting_test_ca, uninstall_from_the_node, wait_ready_pod,
};

/// `kubectl logs` of the pods matching `selector` (for failure messages).
fn logs(env: &TestEnv, namespace: &str, selector: &str) -> String {
    kubectl_logs(env, namespace, selector)
}

/// When the test ends, pass or fail: the operator Deployment goes (its pod stops on the node)
/// and its namespace loses the real-node label; every Task, Pipeline and run in Tekton's
/// watched namespace (this test's alone) is deleted, their pods with them.
struct RealPodsCleanup(&'static TestEnv);

impl Drop for RealPodsCleanup {
    fn drop(&mut self) {
        let env = self.0;
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let Ok(client) = env.admin_client() else {
                    return;
                };
                uninstall_from_the_node(&client).await;
                let Some(tekton) = env.tekton.clone() else {
                    return;
                };
                for kind in ["PipelineRun", "TaskRun", "Pipeline", "Task"] {
                    let _ = tekton::tekton_api(&client, &tekton.runs_namespace, kind)
                        .delete_collection(&DeleteParams::background(), &ListParams::default())
                        .await;
                }
            });
        })
        .join();
    }
}

#[tokio::test]
async fn the_bundle_runs_as_real_pods_from_signets_images_and_the_signer_pod_signs() {
    let env = TestEnv::get();
    let node = env
        .node
        .clone()
        .expect("this environment has no real node (tests/env/node)");
    let admin = env.admin_client().unwrap();
    let images = Images::built(env).unwrap();
    let mut bundle = Bundle::committed().unwrap();
    // The Deployment's image, containerImage, SIGNET_SIGNER_IMAGE and both relatedImages.
    assert_eq!(
        bundle.with_images(&images.operator, &images.signer),
        5,
        "{}",
        bundle.csv
    );
    let example = bundle.example().unwrap();
    let signer_ns = example["spec"]["targetNamespace"]
        .as_str()
        .unwrap()
        .to_owned();
    let _cleanup = ConfigCleanup {
        env,
        namespaces: vec![signer_ns.clone()],
    };
    let _real_pods_cleanup = RealPodsCleanup(env);

    // The namespaces exist before the operator (OLM's OperatorGroup namespace; the signer's
    // namespace the operator then takes over), labelled to run on the real node.
    let operator_pod = install_bundle_on_the_node(&admin, env, &bundle, &node, &signer_ns)
        .await
        .unwrap();
    let spec = operator_pod.spec.clone().unwrap();
    assert_eq!(
        spec.containers[0].image.as_deref(),
        Some(images.operator.as_str())
    );

    // The SignetConfig a user would write: the example, trusting the test CA.
    let config = trusting_test_ca(&example);
    let configs = Api::<SignetConfig>::all(admin.clone());
    configs
        .patch(
            "config",
            &PatchParams::apply("console-user").force(),
            &Patch::Apply(&config),
        )
        .await
        .unwrap();
    let signer_pod = wait_ready_pod(
        &admin,
        &signer_ns,
        SIGNER_PODS,
        &node,
        &[],
        Duration::from_secs(120),
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\noperator:\n{}\nsigner:\n{}",
            logs(env, OPERATOR_NAMESPACE, OPERATOR_PODS),
            logs(env, &signer_ns, SIGNER_PODS)
        )
    });
    let container = &signer_pod.spec.as_ref().unwrap().containers[0];
    assert_eq!(container.image.as_deref(), Some(images.signer.as_str()));
    let limit = container
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("memory"))
        .map(|q| q.0.clone());
    assert_eq!(
        limit.as_deref(),
        Some("256Mi"),
        "the operator's default memory limit"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let public_key = loop {
        let status = configs
            .get("config")
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        if let Some(pk) = status.public_key {
            break pk;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the SignetConfig published no public key in 60 s: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // A TaskRun that built an image in the (authenticated) test registry.
    let (envelope, _) = identities::sign_one(&admin, env, &signer_ns, "real-pods").await;
    assert_cosign_accepts(env, &public_key, envelope.as_bytes(), "slsaprovenance1");
    let first_log = pod_log(
        &admin,
        &signer_ns,
        signer_pod.metadata.name.as_deref().unwrap(),
    )
    .await;
    assert!(
        first_log.contains("build"),
        "the pod's own log names the run it signed:\n{first_log}"
    );

    // A change that needs a restart (the log level is an environment variable) rolls the pod.
    let before = signer_pod.metadata.name.clone().unwrap();
    configs
        .patch(
            "config",
            &PatchParams::apply("console-user").force(),
            &Patch::Apply(&merged(
                &config,
                &json!({"spec": {"signer": {"logLevel": "debug"}}}),
            )),
        )
        .await
        .unwrap();
    let rolled = wait_ready_pod(
        &admin,
        &signer_ns,
        SIGNER_PODS,
        &node,
        std::slice::from_ref(&before),
        Duration::from_secs(120),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(env, OPERATOR_NAMESPACE, OPERATOR_PODS)));
    let env_of = |pod: &Pod| {
        pod.spec.as_ref().unwrap().containers[0]
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .find(|v| v.name == "SIGNET_LOG_LEVEL")
            .and_then(|v| v.value)
    };
    assert_eq!(env_of(&rolled).as_deref(), Some("debug"));
    let pods = Api::<Pod>::namespaced(admin.clone(), &signer_ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while pods.get_opt(&before).await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the old signer pod {before} never went away"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (envelope, _) = identities::sign_one(&admin, env, &signer_ns, "real-pods-rolled").await;
    assert_cosign_accepts(env, &public_key, envelope.as_bytes(), "slsaprovenance1");

    // Neither pod restarted or was OOMKilled; the rolled pod's peak memory (the node's cgroup)
    // is under its limit.
    let rolled = pods
        .get(rolled.metadata.name.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(restarts_and_oom(&rolled), (0, false), "{:?}", rolled.status);
    let operator_pod = Api::<Pod>::namespaced(admin.clone(), OPERATOR_NAMESPACE)
        .get(operator_pod.metadata.name.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(
        restarts_and_oom(&operator_pod),
        (0, false),
        "{:?}",
        operator_pod.status
    );
    let peak = pod_memory_peak(&rolled).expect("the rolled signer pod's memory cgroup on the node");
    eprintln!(
        "signer pod memory peak: {} MiB (limit 256 MiB)",
        peak / 1_048_576
    );
    assert!(peak < 256 * 1024 * 1024, "peak {peak} bytes");
    // Tekton Pipelines for real: a Task that builds an image and pushes it (step images built
    // here), run as a TaskRun and inside a PipelineRun by Tekton's controller on the node; the
    // signer pod signs both runs and the image; cosign and policy-controller verify.
    let tekton = env
        .tekton
        .clone()
        .expect("this environment has no Tekton controller (tests/env/tekton)");
    tekton::really_run_and_signed(&admin, env, &tekton, &signer_ns, &public_key).await;

    // Dogfooding: a release TaskRun reports Signet's own images (operator, signer, bundle) as
    // its IMAGES result, as a release pipeline's last step would; the Signet running from those
    // very images signs them, and cosign verifies each.
    let ns = tekton.runs_namespace.as_str();
    let release = format!("signet-release-{}", common::rand_nanos());
    let refs = [&images.operator, &images.signer, &images.bundle];
    let listed: Vec<&str> = refs.iter().map(|r| r.as_str()).collect();
    let uid = tekton::tekton_api(&admin, ns, "TaskRun")
        .create(&PostParams::default(), &serde_json::from_value(json!({
            "apiVersion": "tekton.dev/v1", "kind": "TaskRun", "metadata": {"name": release},
            "spec": {"taskSpec": {"results": [{"name": "IMAGES"}], "steps": [{"name": "report",
                "image": tekton.busybox_image,
                "script": format!("#!/bin/sh\nprintf '%s' '{}' > $(results.IMAGES.path)\n", listed.join(","))}]}}
        })).unwrap())
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    let run = wait_signed(&admin, ns, &release, || logs(env, &signer_ns, SIGNER_PODS)).await;
    let envelope = unbase64(
        &run["metadata"]["annotations"][format!("chains.tekton.dev/signature-taskrun-{uid}")],
    );
    let statement = common::statement_of(&envelope);
    assert_eq!(
        statement["subject"].as_array().map(Vec::len),
        Some(3),
        "{statement:#}"
    );
    let key = common::tempdir("real-pods-dogfood");
    let key_file = key.join("cosign.pub");
    std::fs::write(&key_file, &public_key).unwrap();
    for image in refs {
        assert_ok(
            &verify_pinned(env, key_file.to_str().unwrap(), image, &[]),
            &format!("cosign verify {image}"),
        );
    }
    let _ = std::fs::remove_dir_all(&key);

    // Identities from inside the pod, each a SignetConfig change that rolls the signer:
    // AWS KMS through the web-identity token the kubelet projects, then keyless through the
    // OIDC token it projects for Fulcio.
    let pod = identities::kms_with_a_projected_web_identity(
        &admin, env, &node, &signer_ns, &config, &rolled,
    )
    .await;
    let pod =
        identities::keyless_with_a_projected_token(&admin, env, &node, &signer_ns, &config, &pod)
            .await;
    identities::spiffe_through_the_mounted_agent_socket(
        &admin, env, &node, &signer_ns, &config, &pod,
    )
    .await;
}
