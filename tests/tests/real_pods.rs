//! Signet as real pods (issue 20): the bundle installed as OLM would, its images the ones
//! `make images` built (static musl binaries, pushed by digest), on the environment's real
//! node (kubelet + containerd + runc). The operator pod reconciles, the signer pod it rolls
//! out becomes Ready by its own probes, signs a TaskRun that cosign verifies, is rolled when a
//! change needs a restart, and stays under the memory limit the operator sets.

// Test code: a failed unwrap is a failed test; each test is one ordered scenario.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::{
    FINISHED, assert_cosign_accepts, assert_ok, build_run, unbase64, verify_pinned, wait_signed,
};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::core::GroupVersionKind;
use kube::{Api, Client};
use serde_json::{Value, json};
use signet_crds::SignetConfig;
use signet_e2e::aws::{LocalKms, start_sts};
use signet_e2e::env::{Tekton, repo_root};
use signet_e2e::olm::Bundle;
use signet_e2e::operator::{ConfigCleanup, OPERATOR_NAMESPACE, merged};
use signet_e2e::pods::{
    Images, OPERATOR_PODS, SIGNER_PODS, build_and_push_task, install_bundle_on_the_node,
    kubectl_logs, pod_log, pod_memory_peak, restarts_and_oom, test_ca_config_map, trusting_test_ca,
    uninstall_from_the_node, wait_ready_pod,
};
use signet_e2e::registry::{give_registry_login, push_random_image};
use signet_e2e::sigstore::Fulcio;
use signet_e2e::{TestEnv, TestNamespace};

/// `kubectl logs` of the pods matching `selector` (for failure messages).
fn logs(env: &TestEnv, namespace: &str, selector: &str) -> String {
    kubectl_logs(env, namespace, selector)
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
                    uninstall_from_the_node(&client).await;
                }
            });
        })
        .join();
    }
}

/// Deletes every Task, Pipeline and run in Tekton's watched namespace (it is this test's
/// alone): their pods go with them.
struct TektonRunsCleanup(&'static TestEnv);

impl Drop for TektonRunsCleanup {
    fn drop(&mut self) {
        let env = self.0;
        let Some(tekton) = env.tekton.clone() else {
            return;
        };
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(client) = env.admin_client() {
                    for kind in ["PipelineRun", "TaskRun", "Pipeline", "Task"] {
                        let _ = tekton_api(&client, &tekton.runs_namespace, kind)
                            .delete_collection(&DeleteParams::background(), &ListParams::default())
                            .await;
                    }
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
    let _runs_cleanup = TektonRunsCleanup(env);

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
    really_run_and_signed(&admin, env, &tekton, &signer_ns, &public_key).await;

    // Dogfooding: a release TaskRun reports Signet's own images (operator, signer, bundle) as
    // its IMAGES result, as a release pipeline's last step would; the Signet running from those
    // very images signs them, and cosign verifies each.
    let ns = tekton.runs_namespace.as_str();
    let release = format!("signet-release-{}", common::rand_nanos());
    let refs = [&images.operator, &images.signer, &images.bundle];
    let listed: Vec<&str> = refs.iter().map(|r| r.as_str()).collect();
    let uid = tekton_api(&admin, ns, "TaskRun")
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
    let pod =
        kms_with_a_projected_web_identity(&admin, env, &node, &signer_ns, &config, &rolled).await;
    let pod = keyless_with_a_projected_token(&admin, env, &node, &signer_ns, &config, &pod).await;
    spiffe_through_the_mounted_agent_socket(&admin, env, &node, &signer_ns, &config, &pod).await;
}

/// Applies `config` and waits for a signer pod other than `previous` to be Ready.
async fn roll_to(
    admin: &Client,
    env: &TestEnv,
    node: &str,
    signer_ns: &str,
    config: &Value,
    previous: &Pod,
) -> Pod {
    Api::<SignetConfig>::all(admin.clone())
        .patch(
            "config",
            &PatchParams::apply("console-user").force(),
            &Patch::Apply(config),
        )
        .await
        .unwrap();
    let previous = previous.metadata.name.clone().unwrap();
    wait_ready_pod(
        admin,
        signer_ns,
        SIGNER_PODS,
        node,
        &[previous],
        Duration::from_secs(120),
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\noperator:\n{}\nsigner:\n{}",
            logs(env, OPERATOR_NAMESPACE, OPERATOR_PODS),
            logs(env, signer_ns, SIGNER_PODS)
        )
    })
}

/// `extraEnv` of `config` plus `vars` (a list replaces, so the CA variable is kept).
fn with_env(config: &Value, vars: &[(&str, &str)], spec: &Value) -> Value {
    let mut env = config["spec"]["signer"]["extraEnv"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    env.extend(vars.iter().map(|(k, v)| json!({"name": k, "value": v})));
    merged(
        &merged(config, &json!({"spec": spec})),
        &json!({"spec": {"signer": {"extraEnv": env}}}),
    )
}

/// A completed TaskRun (an image in the test registry) signed by the signer pod; its envelope.
async fn sign_one(admin: &Client, env: &TestEnv, signer_ns: &str, name: &str) -> (String, Value) {
    let ns = TestNamespace::create(admin, name).await.unwrap();
    give_registry_login(admin, env, ns.name(), "default")
        .await
        .unwrap();
    let repo = format!("real-pods/{name}-{}", common::rand_nanos());
    let digest = push_random_image(env, &repo, "v1").await.unwrap();
    let image = format!("{}/{repo}", env.registry);
    let uid = build_run(
        admin,
        ns.name(),
        "build",
        &format!("{image}:v1"),
        &digest,
        None,
        FINISHED,
    )
    .await;
    let run = wait_signed(admin, ns.name(), "build", || {
        logs(env, signer_ns, SIGNER_PODS)
    })
    .await;
    let annotations = run["metadata"]["annotations"].clone();
    let envelope = String::from_utf8(unbase64(
        &annotations[format!("chains.tekton.dev/signature-taskrun-{uid}")],
    ))
    .unwrap();
    (envelope, json!({"uid": uid, "annotations": annotations}))
}

/// AWS KMS (local-kms) through STS (moto) with the token the kubelet projects for
/// `sts.amazonaws.com` at the path the operator renders (EKS's IRSA shape); cosign verifies
/// with the key exported from KMS.
async fn kms_with_a_projected_web_identity(
    admin: &Client,
    env: &TestEnv,
    node: &str,
    signer_ns: &str,
    config: &Value,
    previous: &Pod,
) -> Pod {
    let kms = LocalKms::start(env).await.unwrap();
    let sts = start_sts(env).await.unwrap();
    kms.signing_key("ECC_NIST_P256", "signet").await.unwrap();
    let kms_config = with_env(
        config,
        &[
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL_KMS", &kms.server.url),
            ("AWS_ENDPOINT_URL_STS", &sts.url),
        ],
        &json!({
            "artifacts": {"taskRun": {"signer": "kms"}},
            "signing": {"kms": {"ref": "awskms:///alias/signet"}},
            "identity": {"aws": {"roleArn": "arn:aws:iam::111122223333:role/signet-signer"}}
        }),
    );
    let pod = roll_to(admin, env, node, signer_ns, &kms_config, previous).await;
    let mounts =
        serde_json::to_value(&pod.spec.as_ref().unwrap().containers[0].volume_mounts).unwrap();
    assert!(
        mounts
            .to_string()
            .contains("/var/run/secrets/eks.amazonaws.com/serviceaccount"),
        "{mounts}"
    );
    let (envelope, _) = sign_one(admin, env, signer_ns, "real-pods-kms").await;
    let exported = kms.public_pem("alias/signet").await.unwrap();
    assert_cosign_accepts(env, &exported, envelope.as_bytes(), "slsaprovenance1");
    pod
}

/// Keyless: the kubelet projects a token for Fulcio's audience, the signer pod trades it for a
/// certificate naming its ServiceAccount; the signature verifies with that certificate's key,
/// and the certificate chains to this Fulcio.
async fn keyless_with_a_projected_token(
    admin: &Client,
    env: &TestEnv,
    node: &str,
    signer_ns: &str,
    config: &Value,
    previous: &Pod,
) -> Pod {
    let fulcio = Fulcio::start(env, "sigstore").await.unwrap();
    let keyless = merged(
        config,
        &json!({"spec": {"signing": {"keyless": {"enabled": true, "fulcioUrl": fulcio.url, "issuer": env.oidc_issuer}}}}),
    );
    let pod = roll_to(admin, env, node, signer_ns, &keyless, previous).await;
    let (envelope, run) = sign_one(admin, env, signer_ns, "real-pods-keyless").await;
    let uid = run["uid"].as_str().unwrap();
    let cert = run["annotations"][format!("chains.tekton.dev/cert-taskrun-{uid}")]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = common::tempdir("real-pods-keyless");
    std::fs::write(dir.join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.join("fulcio.pem"), fulcio.trust_bundle().await.unwrap()).unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let identity =
        format!("https://kubernetes.io/namespaces/{signer_ns}/serviceaccounts/signet-signer");
    let sans = openssl(&[
        "x509",
        "-noout",
        "-ext",
        "subjectAltName",
        "-in",
        "cert.pem",
    ]);
    assert!(sans.contains(&format!("URI:{identity}")), "{sans}");
    openssl(&[
        "verify",
        "-CAfile",
        "fulcio.pem",
        "-partial_chain",
        "cert.pem",
    ]);
    let public = openssl(&["x509", "-noout", "-pubkey", "-in", "cert.pem"]);
    assert_cosign_accepts(env, &public, envelope.as_bytes(), "slsaprovenance1");
    let _ = std::fs::remove_dir_all(&dir);
    pod
}

/// The SPIRE agent's socket mounted from the node (`spiffe.mode: hostPath`): the signer pod
/// (uid 65532, attested by the agent's unix attestor) gets a JWT-SVID, which Fulcio certifies.
async fn spiffe_through_the_mounted_agent_socket(
    admin: &Client,
    env: &TestEnv,
    node: &str,
    signer_ns: &str,
    config: &Value,
    previous: &Pod,
) {
    let fulcio = Fulcio::start(env, "sigstore").await.unwrap();
    let socket = env.spiffe_socket.trim_start_matches("unix://");
    let spiffe = merged(
        config,
        &json!({"spec": {
            "signing": {"keyless": {"enabled": true, "fulcioUrl": fulcio.url, "issuer": env.spire_issuer, "provider": "spiffe"}},
            "spiffe": {"mode": "hostPath", "socketPath": socket}
        }}),
    );
    let pod = roll_to(admin, env, node, signer_ns, &spiffe, previous).await;
    let volumes = serde_json::to_value(&pod.spec.as_ref().unwrap().volumes).unwrap();
    assert!(volumes.to_string().contains("hostPath"), "{volumes}");
    let (_, run) = sign_one(admin, env, signer_ns, "real-pods-spiffe").await;
    let uid = run["uid"].as_str().unwrap();
    let cert = run["annotations"][format!("chains.tekton.dev/cert-taskrun-{uid}")]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = common::tempdir("real-pods-spiffe");
    std::fs::write(dir.join("cert.pem"), &cert).unwrap();
    let out = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-ext",
            "subjectAltName",
            "-in",
            "cert.pem",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    let sans = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(sans.contains(&format!("URI:{}", env.spiffe_id)), "{sans}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn tekton_api(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("tekton.dev", "v1", kind));
    Api::namespaced_with(client.clone(), ns, &ar)
}

async fn create(api: &Api<DynamicObject>, object: Value) -> DynamicObject {
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
/// the golden file's shape and against what Tekton recorded, the image verified.
async fn really_run_and_signed(
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

    // Its provenance: the golden file's shape, filled from what Tekton recorded.
    let envelope = unbase64(
        &run["metadata"]["annotations"][format!("chains.tekton.dev/signature-taskrun-{uid}")],
    );
    assert_cosign_accepts(env, public_key, &envelope, "slsaprovenance1");
    let statement = common::statement_of(&envelope);
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(
            repo_root().join("signer/testdata/taskrun-kaniko.slsa-v2alpha4.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let (mut want, mut got) = (BTreeSet::new(), BTreeSet::new());
    key_paths(&golden, "", &mut want);
    key_paths(&statement, "", &mut got);
    // The golden run also had a git source (a named resolved dependency); this one has none.
    want.remove("predicate.buildDefinition.resolvedDependencies[].name");
    want.remove("predicate.buildDefinition.resolvedDependencies[].digest.sha1");
    // A really-run TaskRun carries Tekton's feature flags in status.provenance, which Chains
    // (and Signet) put under internalParameters; the golden run had none.
    got.retain(|p| !p.starts_with("predicate.buildDefinition.internalParameters."));
    assert_eq!(
        (
            got.difference(&want).collect::<Vec<_>>(),
            want.difference(&got).collect::<Vec<_>>()
        ),
        (vec![], vec![]),
        "(keys only in the real run's provenance, keys only in the golden file): {statement:#}"
    );
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
