//! Real pods on the environment's real node (tests/env/node): Signet's own images as
//! `make images` built them, pods waited for by their real readiness, their logs read through
//! the kubelet, and their memory read from the node's cgroups.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{ListParams, LogParams, ObjectMeta, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::env::{EnvError, Tekton, TestEnv};
use crate::olm::Bundle;
use crate::operator::{OPERATOR_NAMESPACE, install_crd, merged};

/// The operator's and the signer's pods.
pub const OPERATOR_PODS: &str = "app.kubernetes.io/name=signet-operator";
pub const SIGNER_PODS: &str = "app.kubernetes.io/name=signet-signer";
/// Where pods find the test CA (the registries' TLS), mounted from ConfigMap `signet-test-ca`.
pub const CA_DIR: &str = "/etc/signet-test-ca";

/// The label that puts a namespace's pods on the real node (tests/env/node's admission policy).
pub const REAL_NODE_LABEL: &str = "signet.dev/real-node";

/// Signet's images as `tests/env/images` pushed them for this run, by digest.
#[derive(Clone, Debug)]
pub struct Images {
    pub operator: String,
    pub signer: String,
    /// The OLM bundle image.
    pub bundle: String,
}

fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // target/<profile>/deps/<test>-<hash> → target
    let exe = std::env::current_exe().unwrap_or_default();
    exe.ancestors()
        .nth(3)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
}

impl Images {
    /// Reads `$CARGO_TARGET_DIR/images/images.env`, which `make test` writes before the tests
    /// (tests/env/images pushing to the environment's referrers registry).
    pub fn built(env: &TestEnv) -> Result<Self, EnvError> {
        let path = target_dir().join("images/images.env");
        let text = std::fs::read_to_string(&path).map_err(|source| EnvError::Read {
            path: path.clone(),
            source,
        })?;
        let get = |key: &'static str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_owned)
                .ok_or_else(|| EnvError::Missing {
                    key,
                    path: path.clone(),
                })
        };
        let images = Self {
            operator: get("SIGNET_OPERATOR_IMAGE")?,
            signer: get("SIGNET_SIGNER_IMAGE")?,
            bundle: get("SIGNET_BUNDLE_IMAGE")?,
        };
        // Built for another environment (another registry address): say so instead of
        // pods that never pull.
        for image in [&images.operator, &images.signer, &images.bundle] {
            if !image.starts_with(&format!("{}/", env.referrers_registry))
                || !image.contains("@sha256:")
            {
                return Err(EnvError::Bundle(format!(
                    "{} names {image}, not an image by digest in {}: run tests/env/images {}/signet-dev",
                    path.display(),
                    env.referrers_registry,
                    env.referrers_registry
                )));
            }
        }
        Ok(images)
    }
}

/// Creates (or labels) `name` so that its pods run on the real node.
pub async fn real_node_namespace(
    admin: &Client,
    name: &str,
    extra_labels: &[(&str, &str)],
) -> Result<(), EnvError> {
    let mut labels: std::collections::BTreeMap<String, String> =
        [(REAL_NODE_LABEL.to_owned(), "true".to_owned())].into();
    labels.extend(
        extra_labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let namespaces = Api::<Namespace>::all(admin.clone());
    // One an earlier test deleted may still be terminating: a patch would not bring it back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while let Some(existing) = namespaces.get_opt(name).await? {
        if existing.metadata.deletion_timestamp.is_none() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(EnvError::Bundle(format!(
                "namespace {name} is still terminating after 90 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    namespaces
        .patch(
            name,
            &PatchParams::apply("signet-e2e-real-node").force(),
            &Patch::Apply(&ns),
        )
        .await?;
    Ok(())
}

/// Whether the pod's every container is ready (its readiness probe passed on the node).
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        && pod.metadata.deletion_timestamp.is_none()
}

/// The first pod matching `selector` in `namespace` that is Ready, is not one of `not` (pod
/// names, e.g. the pods before a rollout) and runs on `node`; waits up to `timeout`, then
/// fails with every matching pod's phase and container states.
pub async fn wait_ready_pod(
    admin: &Client,
    namespace: &str,
    selector: &str,
    node: &str,
    not: &[String],
    timeout: Duration,
) -> Result<Pod, EnvError> {
    let pods = Api::<Pod>::namespaced(admin.clone(), namespace);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let list = pods.list(&ListParams::default().labels(selector)).await?;
        if let Some(pod) = list.items.iter().find(|p| {
            is_ready(p)
                && !not.contains(&p.metadata.name.clone().unwrap_or_default())
                && p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
        }) {
            return Ok(pod.clone());
        }
        if tokio::time::Instant::now() > deadline {
            let states: Vec<String> = list
                .items
                .iter()
                .map(|p| {
                    format!(
                        "{}: {}",
                        p.metadata.name.clone().unwrap_or_default(),
                        serde_json::to_string(&p.status).unwrap_or_default()
                    )
                })
                .collect();
            return Err(EnvError::Bundle(format!(
                "no Ready pod {selector} in {namespace} on {node} after {timeout:?}: {states:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The pod's log (its first container), through the API server and the kubelet.
pub async fn pod_log(admin: &Client, namespace: &str, pod: &str) -> String {
    Api::<Pod>::namespaced(admin.clone(), namespace)
        .logs(pod, &LogParams::default())
        .await
        .unwrap_or_else(|e| format!("(no log of {namespace}/{pod}: {e})"))
}

/// Restarts and whether any container of the pod was ever `OOMKilled`.
pub fn restarts_and_oom(pod: &Pod) -> (i32, bool) {
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    let restarts = statuses.iter().map(|s| s.restart_count).sum();
    let oom = statuses.iter().any(|s| {
        [s.state.as_ref(), s.last_state.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|st| st.terminated.as_ref())
            .any(|t| t.reason.as_deref() == Some("OOMKilled"))
    });
    (restarts, oom)
}

/// The highest memory use of the pod's cgroup so far (cgroup v1
/// `memory.max_usage_in_bytes`, page cache included), read on the node.
pub fn pod_memory_peak(pod: &Pod) -> Option<u64> {
    let uid = pod.metadata.uid.as_deref()?;
    let want = format!("pod{uid}");
    let mut stack: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup/memory")
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("signet-test-"))
        })
        .collect();
    while let Some(dir) = stack.pop() {
        if dir.file_name().is_some_and(|n| n.to_string_lossy() == want) {
            let text = std::fs::read_to_string(dir.join("memory.max_usage_in_bytes")).ok()?;
            return text.trim().parse().ok();
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            stack.extend(
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_dir()),
            );
        }
    }
    None
}

/// `kubectl logs` of the pods matching `selector` (the last 60 lines of each, prefixed).
pub fn kubectl_logs(env: &TestEnv, namespace: &str, selector: &str) -> String {
    Command::new(&env.kubectl)
        .arg("--kubeconfig")
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

/// ConfigMap `signet-test-ca` in `namespace`, holding the test CA as `ca.crt`.
pub async fn test_ca_config_map(
    admin: &Client,
    env: &TestEnv,
    namespace: &str,
) -> Result<(), EnvError> {
    let ca = std::fs::read_to_string(&env.ca_file).map_err(|source| EnvError::Read {
        path: env.ca_file.clone(),
        source,
    })?;
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "signet-test-ca"}, "data": {"ca.crt": ca}});
    Api::<ConfigMap>::namespaced(admin.clone(), namespace)
        .patch(
            "signet-test-ca",
            &PatchParams::apply("signet-e2e").force(),
            &Patch::Apply(body),
        )
        .await?;
    Ok(())
}

/// A SignetConfig whose signer trusts the test CA the way a user with a private CA would:
/// the ConfigMap mounted through the escape hatches and `SSL_CERT_FILE` pointing at it.
pub fn trusting_test_ca(config: &Value) -> Value {
    merged(
        config,
        &json!({"spec": {"signer": {
            "extraEnv": [{"name": "SSL_CERT_FILE", "value": format!("{CA_DIR}/ca.crt")}],
            "extraVolumes": [{"name": "test-ca", "configMap": {"name": "signet-test-ca"}}],
            "extraVolumeMounts": [{"name": "test-ca", "mountPath": CA_DIR, "readOnly": true}],
        }}}),
    )
}

/// Installs `bundle` as OLM's install strategy would, into namespaces labelled for the real
/// node (the operator's, enforcing the restricted standard as OLM's suggested one does, and
/// the example's signer namespace), and waits for the operator pod to be Ready there.
pub async fn install_bundle_on_the_node(
    admin: &Client,
    env: &TestEnv,
    bundle: &Bundle,
    node: &str,
    signer_ns: &str,
) -> Result<Pod, EnvError> {
    real_node_namespace(
        admin,
        OPERATOR_NAMESPACE,
        &[("pod-security.kubernetes.io/enforce", "restricted")],
    )
    .await?;
    real_node_namespace(admin, signer_ns, &[]).await?;
    test_ca_config_map(admin, env, signer_ns).await?;
    install_crd(admin).await?;
    bundle
        .install_permissions(admin, OPERATOR_NAMESPACE)
        .await?;
    bundle.apply_deployments(admin, OPERATOR_NAMESPACE).await?;
    wait_ready_pod(
        admin,
        OPERATOR_NAMESPACE,
        OPERATOR_PODS,
        node,
        &[],
        Duration::from_secs(120),
    )
    .await
    .map_err(|e| {
        EnvError::Bundle(format!(
            "{e}\n{}",
            kubectl_logs(env, OPERATOR_NAMESPACE, OPERATOR_PODS)
        ))
    })
}

/// Takes Signet off the real node: the operator Deployment, and the label on its namespace
/// (other tests install there with kwok running their pods).
pub async fn uninstall_from_the_node(admin: &Client) {
    let _ = Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(
        admin.clone(),
        OPERATOR_NAMESPACE,
    )
    .delete("signet-operator", &kube::api::DeleteParams::foreground())
    .await;
    let unlabel = json!({"metadata": {"labels": {REAL_NODE_LABEL: null}}});
    let _ = Api::<Namespace>::all(admin.clone())
        .patch(
            OPERATOR_NAMESPACE,
            &PatchParams::default(),
            &Patch::Merge(&unlabel),
        )
        .await;
}

/// A Tekton Task that writes a file and pushes it as a one-layer image with crane, reporting
/// `IMAGE_URL` and `IMAGE_DIGEST` as a Kaniko task does, and `FILES`. Its second step trusts
/// the test CA from ConfigMap `signet-test-ca`.
pub fn build_and_push_task(name: &str, tekton: &Tekton) -> Value {
    let write = "#!/bin/sh\nset -e\nmkdir -p /workspace/rootfs/app\n\
        echo \"$(params.IMAGE) $(context.taskRun.uid)\" > /workspace/rootfs/app/built\n\
        printf app/built > $(results.FILES.path)\n";
    let push = "#!/bin/sh\nset -e\ntar -C /workspace/rootfs -cf /workspace/layer.tar app\n\
        crane append --oci-empty-base -f /workspace/layer.tar -t \"$(params.IMAGE)\" >/dev/null\n\
        ref=$(crane mutate --set-platform linux/amd64 \"$(params.IMAGE)\")\n\
        printf %s \"$(params.IMAGE)\" > $(results.IMAGE_URL.path)\n\
        printf %s \"${ref#*@}\" > $(results.IMAGE_DIGEST.path)\n";
    json!({
        "apiVersion": "tekton.dev/v1", "kind": "Task", "metadata": {"name": name},
        "spec": {
            "params": [{"name": "IMAGE", "type": "string"}],
            "results": [{"name": "IMAGE_URL"}, {"name": "IMAGE_DIGEST"}, {"name": "FILES"}],
            "volumes": [{"name": "ca", "configMap": {"name": "signet-test-ca"}}],
            "steps": [
                {"name": "write", "image": tekton.busybox_image, "script": write},
                {"name": "push", "image": tekton.build_image,
                 "env": [{"name": "SSL_CERT_FILE", "value": "/etc/test-ca/ca.crt"}],
                 "volumeMounts": [{"name": "ca", "mountPath": "/etc/test-ca"}],
                 "script": push}
            ]
        }
    })
}
