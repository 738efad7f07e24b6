//! `make demo`: Signet end to end on this machine, in about a minute once the peers are built.
//!
//! Starts the local control plane and registry (tests/env), installs Signet from the OLM
//! bundle the way OLM would, applies the bundle's example SignetConfig, pushes a small random
//! image, completes a TaskRun that reports building it, waits for the signer, prints what the
//! provenance says and verifies image, signature and attestation with the real cosign. The
//! operator and signer keep running afterwards so you can look around; a second `make demo`
//! replaces them, and `make env-down` stops everything.
//!
//! `make demo REAL=1` (`SIGNET_DEMO_REAL=1`, module `real`): the same from Signet's own
//! images as real pods on a real node, with Tekton really running the TaskRun.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::too_many_lines)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use signet_crds::{ConditionStatus, SignetConfig};
use signet_e2e::olm::Bundle;
use signet_e2e::operator::{
    OPERATOR_NAMESPACE, OperatorProcess, install_crd, install_operator_rbac,
};
use signet_e2e::registry::{give_registry_login, push_random_image};
use signet_e2e::{ServiceAccountIdentity, TestEnv};

#[path = "demo/real.rs"]
mod real;

const DEMO_NAMESPACE: &str = "signet-demo";
const STEPS: usize = 8;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn step(n: usize, what: &str) {
    println!("\n[{n}/{STEPS}] {what}");
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("make demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(demo()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nmake demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where the demo keeps the pids of the processes it leaves running (the next tests/env/up,
/// which the next demo or test run calls, and tests/env/down stop them) and the public key.
fn demo_dir(env: &TestEnv) -> PathBuf {
    env.kubeconfig
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        .join("demo")
}

/// Notes a process left running: its name, pid and the directory with its kubeconfig and log.
fn record(dir: &Path, name: &str, (pid, process_dir): (u32, &Path)) -> Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("pids"))?;
    writeln!(file, "{name} {pid} {}", process_dir.display())?;
    Ok(())
}

async fn demo() -> Result<()> {
    step(
        1,
        "Starting the control plane and registry on 127.0.0.1 (tests/env/up; the first run builds them: about 10 minutes on two cores)",
    );
    let env = tokio::task::spawn_blocking(TestEnv::get).await?;
    let admin = env.admin_client()?;
    let dir = demo_dir(env);
    std::fs::create_dir_all(&dir)?;
    if std::env::var("SIGNET_DEMO_REAL").is_ok_and(|v| v == "1") {
        return real::demo(env, &admin, &dir).await;
    }

    step(2, "Installing Signet as OLM would, from bundle/manifests");
    let bundle = Bundle::committed()?;
    install_crd(&admin).await?;
    let identity = install_operator_rbac(&admin).await?;
    bundle.apply_deployments(&admin, OPERATOR_NAMESPACE).await?;
    let rules = bundle.csv["spec"]["install"]["spec"]["clusterPermissions"][0]["rules"]
        .as_array()
        .map_or(0, Vec::len);
    println!(
        "      {}: CRD signetconfigs.signet.dev, ServiceAccount {OPERATOR_NAMESPACE}/{}, a ClusterRole of {rules} rules, Deployment signet-operator",
        bundle.csv["metadata"]["name"].as_str().unwrap_or_default(),
        identity.name
    );

    step(
        3,
        "Running signet-operator as that ServiceAccount and applying the bundle's example SignetConfig",
    );
    let operator = OperatorProcess::start(env, &identity)?;
    let example = bundle.example()?;
    Api::<SignetConfig>::all(admin.clone())
        .patch(
            "config",
            &PatchParams::apply("signet-demo").force(),
            &Patch::Apply(&example),
        )
        .await?;
    let public_key = wait_ready(&admin, &operator).await?;
    let (pid, operator_dir) = operator.detach();
    record(&dir, "signet-operator", (pid, &operator_dir))?;
    let signer_ns = example["spec"]["targetNamespace"]
        .as_str()
        .unwrap_or("signet-system")
        .to_owned();
    println!(
        "      SignetConfig config is Ready: signer Deployment in {signer_ns}, a generated key pair in {signer_ns}/signing-secrets"
    );

    step(
        4,
        "Running the signer the operator rolled out, as its ServiceAccount",
    );
    let signer_identity =
        ServiceAccountIdentity::mint(&admin, &signer_ns, "signet-signer", &[], 24 * 3600).await?;
    let signer = OperatorProcess::start_signer(env, &admin, &signer_identity).await?;
    let signer_log = signer.log.clone();
    let (pid, signer_dir) = signer.detach();
    record(&dir, "signet-signer", (pid, &signer_dir))?;

    step(
        5,
        "Pushing a small random image and completing a TaskRun that reports building it",
    );
    let ns = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(DEMO_NAMESPACE.to_owned()),
            ..kube::api::ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(admin.clone())
        .patch(
            DEMO_NAMESPACE,
            &PatchParams::apply("signet-demo").force(),
            &Patch::Apply(&ns),
        )
        .await?;
    give_registry_login(&admin, env, DEMO_NAMESPACE, "default").await?;
    let digest = push_random_image(env, "demo/app", "latest").await?;
    let image = format!("{}/demo/app", env.registry);
    let run_name = format!(
        "build-app-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
    );
    let uid = complete_taskrun(&admin, &run_name, &image, &digest).await?;
    println!("      pushed {image}@{digest}");
    println!(
        "      TaskRun {DEMO_NAMESPACE}/{run_name} succeeded with IMAGE_URL and IMAGE_DIGEST results"
    );

    step(6, "Waiting for the signer to sign it");
    let run = wait_signed(&admin, &run_name, &signer_log).await?;
    let annotations = &run["metadata"]["annotations"];
    let envelope = STANDARD.decode(
        annotations[format!("chains.tekton.dev/signature-taskrun-{uid}")]
            .as_str()
            .unwrap_or_default(),
    )?;
    let envelope: Value = serde_json::from_slice(&envelope)?;
    let statement: Value = serde_json::from_slice(
        &STANDARD.decode(envelope["payload"].as_str().unwrap_or_default())?,
    )?;
    summarise(&statement);

    step(7, "Verifying with cosign");
    let key = verify_with_cosign(
        env,
        dir.as_path(),
        &public_key,
        &format!("{image}@{digest}"),
    )?;

    step(
        8,
        "Checking the run's whole record with kubectl signet (the CLI in this repository)",
    );
    signet_cli(env, &["verify", "taskrun", &run_name, "-n", DEMO_NAMESPACE])?;
    signet_cli(env, &["status"])?;

    let kubectl = env.kubectl.display();
    let plugin_dir = signet_e2e::operator::binary("kubectl-signet");
    let plugin_dir = plugin_dir
        .parent()
        .map_or_else(|| ".".into(), |p| p.display().to_string());
    println!(
        "\nDone: the TaskRun is signed, and cosign verifies the image's signature and its SLSA provenance.\n\
         \nLook around:\n\
         \x20 export KUBECONFIG={kubeconfig}\n\
         \x20 {kubectl} get signetconfig config                    # READY True\n\
         \x20 {kubectl} get taskrun -n {DEMO_NAMESPACE} {run_name} -o yaml   # the chains.tekton.dev/* annotations\n\
         \x20 {kubectl} get deploy,sa,cm,secret -n {signer_ns}        # what the operator manages\n\
         \x20 export PATH={plugin_dir}:$PATH                         # kubectl-signet as a kubectl plugin\n\
         \x20 {kubectl} signet explain taskrun {run_name} -n {DEMO_NAMESPACE}\n\
         \x20 operator log: {operator_log}\n\
         \x20 signer log:   {signer_log}\n\
         \x20 public key:   {key}\n\
         \nThe operator and signer keep running: complete another TaskRun in any namespace and it is signed.\n\
         `make demo` again replaces them; `make env-down` stops everything and deletes the state.",
        kubeconfig = env.kubeconfig.display(),
        operator_log = operator_dir.join("signet-operator.log").display(),
        signer_log = signer_dir.join("signet-signer.log").display(),
        key = key.display(),
    );
    Ok(())
}

/// Waits for `Ready=True` and the published public key, showing the reason while it waits.
async fn wait_ready(admin: &Client, operator: &OperatorProcess) -> Result<String> {
    let configs = Api::<SignetConfig>::all(admin.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut last = String::new();
    loop {
        let status = configs.get("config").await?.status.unwrap_or_default();
        if let Some(ready) = status.conditions.iter().find(|c| c.type_ == "Ready") {
            if ready.status == ConditionStatus::True {
                if let Some(key) = status.public_key {
                    return Ok(key);
                }
            } else if ready.reason != last {
                println!("      Ready=False: {} {}", ready.reason, ready.message);
                last.clone_from(&ready.reason);
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "the SignetConfig did not become Ready in 2 minutes; operator log:\n{}",
                operator.log_text()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn taskruns(admin: &Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("tekton.dev", "v1", "TaskRun");
    Api::namespaced_with(admin.clone(), DEMO_NAMESPACE, &ApiResource::from_gvk(&gvk))
}

/// Creates TaskRun `name` and completes it as Tekton would after a Kaniko build of `image`.
async fn complete_taskrun(admin: &Client, name: &str, image: &str, digest: &str) -> Result<String> {
    let runs = taskruns(admin);
    let run: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tekton.dev/v1", "kind": "TaskRun", "metadata": {"name": name},
        "spec": {"taskSpec": {"steps": [{"name": "build", "image": "gcr.io/kaniko-project/executor:v1.23.2"}]}}
    }))?;
    let created = runs.create(&PostParams::default(), &run).await?;
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let status = json!({"status": {
        "podName": format!("{name}-pod"),
        "startTime": now, "completionTime": now,
        "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded", "lastTransitionTime": now}],
        "steps": [{"name": "build", "container": "step-build",
                   "imageID": "gcr.io/kaniko-project/executor@sha256:3333333333333333333333333333333333333333333333333333333333333333"}],
        "results": [
            {"name": "IMAGE_URL", "type": "string", "value": format!("{image}:latest")},
            {"name": "IMAGE_DIGEST", "type": "string", "value": digest}
        ]
    }});
    runs.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(created.metadata.uid.unwrap_or_default())
}

async fn wait_signed(admin: &Client, name: &str, signer_log: &Path) -> Result<Value> {
    let runs = taskruns(admin);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let run = serde_json::to_value(runs.get(name).await?)?;
        match run["metadata"]["annotations"]["chains.tekton.dev/signed"].as_str() {
            Some("true") => {
                println!("      chains.tekton.dev/signed: true");
                return Ok(run);
            }
            Some("failed") => {
                return Err(format!(
                    "signing failed: {}",
                    run["metadata"]["annotations"]["chains.tekton.dev/failure-reason"]
                )
                .into());
            }
            _ => {}
        }
        if tokio::time::Instant::now() > deadline {
            let log = std::fs::read_to_string(signer_log).unwrap_or_default();
            return Err(format!("not signed within a minute; signer log:\n{log}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A few lines about the SLSA v1.0 provenance.
fn summarise(statement: &Value) {
    let predicate = &statement["predicate"];
    let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    println!("      provenance: {}", text(&statement["predicateType"]));
    for subject in statement["subject"].as_array().into_iter().flatten() {
        println!(
            "        subject      {}@sha256:{}",
            subject["name"].as_str().unwrap_or_default(),
            subject["digest"]["sha256"].as_str().unwrap_or_default()
        );
    }
    println!(
        "        builder      {}",
        text(&predicate["runDetails"]["builder"]["id"])
    );
    println!(
        "        buildType    {}",
        text(&predicate["buildDefinition"]["buildType"])
    );
    let deps = predicate["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .map_or(0, Vec::len);
    println!("        dependencies {deps} resolved (step images and task sources)");
    println!(
        "        finished     {}",
        text(&predicate["runDetails"]["metadata"]["finishedOn"])
    );
}

/// Runs `kubectl-signet ARGS` as a user would, printing its output indented.
fn signet_cli(env: &TestEnv, args: &[&str]) -> Result<()> {
    println!("      $ kubectl signet {}", args.join(" "));
    let out = Command::new(signet_e2e::operator::binary("kubectl-signet"))
        .args(args)
        .env("KUBECONFIG", &env.kubeconfig)
        .env("DOCKER_CONFIG", &env.docker_config)
        .env("SSL_CERT_FILE", &env.ca_file)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
    {
        println!("        {line}");
    }
    if !out.status.success() {
        return Err(format!("kubectl signet {} failed", args[0]).into());
    }
    Ok(())
}

/// Writes the public key beside the demo's state and verifies the image's signature and its
/// SLSA provenance attestation with cosign; returns the key's path.
fn verify_with_cosign(
    env: &TestEnv,
    dir: &Path,
    public_key: &str,
    pinned: &str,
) -> Result<PathBuf> {
    let key = dir.join("cosign.pub");
    std::fs::write(&key, public_key)?;
    let key_arg = key.to_string_lossy().into_owned();
    cosign(
        env,
        &[
            "verify",
            "--key",
            &key_arg,
            "--insecure-ignore-tlog=true",
            pinned,
        ],
    )?;
    cosign(
        env,
        &[
            "verify-attestation",
            "--key",
            &key_arg,
            "--insecure-ignore-tlog=true",
            "--type",
            "slsaprovenance1",
            pinned,
        ],
    )?;
    Ok(key)
}

fn cosign(env: &TestEnv, args: &[&str]) -> Result<()> {
    println!("      $ cosign {}", args.join(" "));
    let out = Command::new(&env.cosign)
        .args(args)
        .env("DOCKER_CONFIG", &env.docker_config)
        .env("SSL_CERT_FILE", &env.ca_file)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        println!("        {line}");
    }
    if !out.status.success() {
        return Err(format!("cosign {} failed", args[0]).into());
    }
    Ok(())
}
