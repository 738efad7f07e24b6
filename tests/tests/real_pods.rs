//! Signet as real pods (issue 20): the bundle installed as OLM would, its images the ones
//! `make images` built (static musl binaries, pushed by digest), on the environment's real
//! node (kubelet + containerd + runc). The operator pod reconciles, the signer pod it rolls
//! out becomes Ready by its own probes, signs a TaskRun that cosign verifies, is rolled when a
//! change needs a restart, and stays under the memory limit the operator sets.

// Test code: a failed unwrap is a failed test; each test is one ordered scenario.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{FINISHED, assert_cosign_accepts, build_run, unbase64, wait_signed};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;
use signet_crds::SignetConfig;
use signet_e2e::olm::Bundle;
use signet_e2e::operator::{ConfigCleanup, OPERATOR_NAMESPACE, install_crd, merged};
use signet_e2e::pods::{
    Images, pod_log, pod_memory_peak, real_node_namespace, restarts_and_oom, wait_ready_pod,
};
use signet_e2e::registry::{give_registry_login, push_random_image};
use signet_e2e::{TestEnv, TestNamespace};

const OPERATOR_PODS: &str = "app.kubernetes.io/name=signet-operator";
const SIGNER_PODS: &str = "app.kubernetes.io/name=signet-signer";
/// Where the signer pod finds the test CA (the registries' TLS), mounted from a ConfigMap
/// through the SignetConfig's escape hatches, as a user with a private CA would.
const CA_DIR: &str = "/etc/signet-test-ca";

/// `kubectl logs` of the pods matching `selector` (for failure messages; sync, as
/// `wait_signed` wants).
fn logs(env: &TestEnv, namespace: &str, selector: &str) -> String {
    Command::new(&env.kubectl)
        .args(["--kubeconfig"])
        .arg(&env.kubeconfig)
        .args([
            "logs", "-n", namespace, "-l", selector, "--tail", "60", "--prefix",
        ])
        .output()
        .map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_default()
}

/// Deletes the operator Deployment (its pod stops on the node) when the test ends.
struct OperatorCleanup(&'static TestEnv);

impl Drop for OperatorCleanup {
    fn drop(&mut self) {
        let env = self.0;
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(client) = env.admin_client() {
                    let _ = Api::<Deployment>::namespaced(client, OPERATOR_NAMESPACE)
                        .delete("signet-operator", &DeleteParams::foreground())
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
    let _operator_cleanup = OperatorCleanup(env);

    // The namespaces exist before the operator (OLM's OperatorGroup namespace; the signer's
    // namespace the operator then takes over), labelled to run on the real node.
    real_node_namespace(
        &admin,
        OPERATOR_NAMESPACE,
        &[("pod-security.kubernetes.io/enforce", "restricted")],
    )
    .await
    .unwrap();
    real_node_namespace(&admin, &signer_ns, &[]).await.unwrap();
    install_crd(&admin).await.unwrap();
    let _identity = bundle
        .install_permissions(&admin, OPERATOR_NAMESPACE)
        .await
        .unwrap();
    bundle
        .apply_deployments(&admin, OPERATOR_NAMESPACE)
        .await
        .unwrap();
    let operator_pod = wait_ready_pod(
        &admin,
        OPERATOR_NAMESPACE,
        OPERATOR_PODS,
        &node,
        &[],
        Duration::from_secs(120),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(env, OPERATOR_NAMESPACE, OPERATOR_PODS)));
    let spec = operator_pod.spec.clone().unwrap();
    assert_eq!(
        spec.containers[0].image.as_deref(),
        Some(images.operator.as_str())
    );

    // The SignetConfig a user would write: the example, trusting the test CA.
    let ca = std::fs::read_to_string(&env.ca_file).unwrap();
    Api::<ConfigMap>::namespaced(admin.clone(), &signer_ns)
        .patch(
            "signet-test-ca",
            &PatchParams::apply("signet-e2e").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "signet-test-ca"},
                "data": {"ca.crt": ca},
            })),
        )
        .await
        .unwrap();
    let config = merged(
        &example,
        &json!({"spec": {"signer": {
            "extraEnv": [{"name": "SSL_CERT_FILE", "value": format!("{CA_DIR}/ca.crt")}],
            "extraVolumes": [{"name": "test-ca", "configMap": {"name": "signet-test-ca"}}],
            "extraVolumeMounts": [{"name": "test-ca", "mountPath": CA_DIR, "readOnly": true}],
        }}}),
    );
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
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // A TaskRun that built an image in the (authenticated) test registry.
    let ns = TestNamespace::create(&admin, "real-pods").await.unwrap();
    give_registry_login(&admin, env, ns.name(), "default")
        .await
        .unwrap();
    let repo = format!("real-pods/app-{}", common::rand_nanos());
    let digest = push_random_image(env, &repo, "v1").await.unwrap();
    let image = format!("{}/{repo}", env.registry);
    let uid = build_run(
        &admin,
        ns.name(),
        "build",
        &format!("{image}:v1"),
        &digest,
        None,
        FINISHED,
    )
    .await;
    let run = wait_signed(&admin, ns.name(), "build", || {
        logs(env, &signer_ns, SIGNER_PODS)
    })
    .await;
    let envelope = unbase64(
        &run["metadata"]["annotations"][format!("chains.tekton.dev/signature-taskrun-{uid}")],
    );
    assert_cosign_accepts(env, &public_key, &envelope, "slsaprovenance1");
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
        &[before.clone()],
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
    let uid2 = build_run(
        &admin,
        ns.name(),
        "build-2",
        &format!("{image}:v1"),
        &digest,
        None,
        FINISHED,
    )
    .await;
    let run = wait_signed(&admin, ns.name(), "build-2", || {
        logs(env, &signer_ns, SIGNER_PODS)
    })
    .await;
    let envelope = unbase64(
        &run["metadata"]["annotations"][format!("chains.tekton.dev/signature-taskrun-{uid2}")],
    );
    assert_cosign_accepts(env, &public_key, &envelope, "slsaprovenance1");

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
        "signer pod memory peak: {:.1} MiB (limit 256 MiB)",
        peak as f64 / 1048576.0
    );
    assert!(peak < 256 * 1024 * 1024, "peak {peak} bytes");
}
