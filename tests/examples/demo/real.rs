//! `make demo REAL=1`: Signet from its own images (`make images`: static binaries in OCI
//! images, by digest) as real pods on the environment's real node (kubelet + containerd +
//! runc), installed from the bundle as OLM would; Tekton's controller on the same node runs a
//! TaskRun that builds an image and pushes it; the signer pod signs run and image; cosign
//! verifies. Ends by printing what runs where.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Api, Client};
use serde_json::{Value, json};
use signet_crds::SignetConfig;
use signet_e2e::TestEnv;
use signet_e2e::olm::Bundle;
use signet_e2e::operator::OPERATOR_NAMESPACE;
use signet_e2e::pods::{
    Images, OPERATOR_PODS, SIGNER_PODS, build_and_push_task, install_bundle_on_the_node,
    kubectl_logs, test_ca_config_map, trusting_test_ca, wait_ready_pod,
};

use super::{Result, signet_cli, step, summarise, verify_with_cosign};

fn describe(pod: &Pod) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    format!(
        "{}/{} on node {} ({})",
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
        spec.node_name.unwrap_or_default(),
        spec.containers
            .first()
            .and_then(|c| c.image.clone())
            .unwrap_or_default()
    )
}

fn tekton(admin: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        admin.clone(),
        ns,
        &ApiResource::from_gvk(&GroupVersionKind::gvk("tekton.dev", "v1", kind)),
    )
}

pub async fn demo(env: &'static TestEnv, admin: &Client, dir: &Path) -> Result<()> {
    let (Some(node), Some(tekton_env)) = (env.node.clone(), env.tekton.clone()) else {
        return Err(
            "the environment has no real node: run `make demo REAL=1` (it sets SIGNET_ENV_NODE=1)"
                .into(),
        );
    };
    step(
        2,
        "Installing Signet from its own images as OLM would, as pods on the real node",
    );
    let images = Images::built(env)?;
    let mut bundle = Bundle::committed()?;
    bundle.with_images(&images.operator, &images.signer);
    let example = bundle.example()?;
    let signer_ns = example["spec"]["targetNamespace"]
        .as_str()
        .unwrap_or("signet-system")
        .to_owned();
    let operator = install_bundle_on_the_node(admin, env, &bundle, &node, &signer_ns).await?;
    // The next tests/env/up takes the operator off the node again.
    std::fs::write(dir.join("real"), "")?;
    println!(
        "      operator pod {} Ready by its probes",
        describe(&operator)
    );

    step(
        3,
        "Applying the bundle's example SignetConfig; the operator rolls out the signer pod",
    );
    Api::<SignetConfig>::all(admin.clone())
        .patch(
            "config",
            &PatchParams::apply("signet-demo").force(),
            &Patch::Apply(&trusting_test_ca(&example)),
        )
        .await?;
    let signer = wait_ready_pod(
        admin,
        &signer_ns,
        SIGNER_PODS,
        &node,
        &[],
        Duration::from_secs(120),
    )
    .await?;
    let limit = signer
        .spec
        .as_ref()
        .and_then(|s| s.containers[0].resources.clone())
        .and_then(|r| r.limits)
        .and_then(|l| l.get("memory").cloned());
    println!(
        "      signer pod {} Ready, memory limit {}",
        describe(&signer),
        limit.map_or_else(|| "-".to_owned(), |q| q.0)
    );
    let configs = Api::<SignetConfig>::all(admin.clone());
    let public_key = loop {
        if let Some(pk) = configs
            .get("config")
            .await?
            .status
            .and_then(|s| s.public_key)
        {
            break pk;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    step(
        4,
        "Tekton runs a TaskRun that builds a small image and pushes it (step images built here)",
    );
    let ns = tekton_env.runs_namespace.as_str();
    test_ca_config_map(admin, env, ns).await?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let task = format!("build-and-push-{stamp}");
    let run_name = format!("build-app-{stamp}");
    let image = format!("{}/demo/app:{stamp}", env.referrers_registry);
    let create = |kind: &str, body: Value| {
        let api = tekton(admin, ns, kind);
        async move {
            let object: DynamicObject = serde_json::from_value(body)?;
            Ok::<_, Box<dyn std::error::Error>>(api.create(&PostParams::default(), &object).await?)
        }
    };
    create("Task", build_and_push_task(&task, &tekton_env)).await?;
    let uid = create(
        "TaskRun",
        json!({
            "apiVersion": "tekton.dev/v1", "kind": "TaskRun", "metadata": {"name": run_name},
            "spec": {"taskRef": {"name": task}, "params": [{"name": "IMAGE", "value": image}]}
        }),
    )
    .await?
    .metadata
    .uid
    .unwrap_or_default();
    println!("      TaskRun {ns}/{run_name}: Task {task}, IMAGE={image}");

    step(
        5,
        "Waiting for Tekton to finish it and for the signer pod to sign it",
    );
    let runs = tekton(admin, ns, "TaskRun");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let run = loop {
        let run = serde_json::to_value(runs.get(&run_name).await?)?;
        let annotations = &run["metadata"]["annotations"];
        if annotations["chains.tekton.dev/signed"] == "true" {
            break run;
        }
        if annotations["chains.tekton.dev/signed"] == "failed"
            || run["status"]["conditions"][0]["status"] == "False"
        {
            return Err(format!(
                "the run failed: {:#}\n{}",
                run["status"]["conditions"], annotations["chains.tekton.dev/failure-reason"]
            )
            .into());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "not signed within 3 minutes; signer pod log:\n{}",
                kubectl_logs(env, &signer_ns, SIGNER_PODS)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let result = |name: &str| {
        run["status"]["results"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["name"] == name)
            .and_then(|r| r["value"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let digest = result("IMAGE_DIGEST");
    println!(
        "      {}: pushed {}@{digest}; chains.tekton.dev/signed: true",
        run["status"]["conditions"][0]["reason"]
            .as_str()
            .unwrap_or_default(),
        result("IMAGE_URL")
    );
    for step in run["status"]["steps"].as_array().into_iter().flatten() {
        println!(
            "        step {:<6} ran {}",
            step["name"].as_str().unwrap_or_default(),
            step["imageID"].as_str().unwrap_or_default()
        );
    }
    let envelope = STANDARD.decode(
        run["metadata"]["annotations"][format!("chains.tekton.dev/signature-taskrun-{uid}")]
            .as_str()
            .unwrap_or_default(),
    )?;
    let envelope: Value = serde_json::from_slice(&envelope)?;
    let statement: Value = serde_json::from_slice(
        &STANDARD.decode(envelope["payload"].as_str().unwrap_or_default())?,
    )?;
    summarise(&statement);

    step(6, "Verifying the image Tekton built with cosign");
    let repository = image
        .rsplit_once(':')
        .map_or(image.as_str(), |(repo, _)| repo);
    verify_with_cosign(env, dir, &public_key, &format!("{repository}@{digest}"))?;

    step(7, "Checking the run's whole record with kubectl signet");
    signet_cli(env, &["verify", "taskrun", &run_name, "-n", ns])?;

    step(8, "What runs where");
    println!(
        "      on this machine as processes (tests/env, all on 127.0.0.1): etcd, kube-apiserver, kube-controller-manager,"
    );
    println!(
        "        kube-scheduler, kwok (fake node kwok-node-0), two registries, containerd + kubelet (node {node})"
    );
    let pods = Api::<Pod>::all(admin.clone())
        .list(&ListParams::default())
        .await?;
    println!("      pods on node {node} (containerd + runc, host network, 127.0.0.1):");
    for pod in pods
        .items
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.as_str()))
    {
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        println!("        {:<10} {}", phase, describe(pod));
    }
    println!(
        "\nDone: Signet's own images run as pods on a real kubelet, Tekton really ran the TaskRun, the signer pod signed it and the image, and cosign verifies both.\n\
         \nLook around:\n\
         \x20 export KUBECONFIG={kubeconfig}\n\
         \x20 {kubectl} get pods -A -o wide\n\
         \x20 {kubectl} logs -n {signer_ns} deploy/signet-signer\n\
         \x20 {kubectl} logs -n {OPERATOR_NAMESPACE} -l {OPERATOR_PODS}\n\
         \x20 container logs: {logs}\n\
         \nThe pods keep running; `make demo` again replaces them, `make env-down` stops everything.",
        kubeconfig = env.kubeconfig.display(),
        kubectl = env.kubectl.display(),
        logs = env
            .kubeconfig
            .parent()
            .map(|p| p.join("node/pod-logs"))
            .unwrap_or_default()
            .display(),
    );
    Ok(())
}
