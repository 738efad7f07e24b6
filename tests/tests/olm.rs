//! The OLM bundle and catalog: OLM's own validators accept them (and reject a broken copy),
//! and installing the bundle the way OLM does — its CRD, its install strategy's
//! ServiceAccount, RBAC and Deployment, the `alm-examples` SignetConfig — gives a signer that
//! signs a TaskRun cosign verifies. The operator process runs with the CSV's ServiceAccount
//! token and its Deployment's environment, so this proves the CSV's RBAC is enough.

// Test code: a failed unwrap is a failed test; each test is one ordered scenario.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{
    FINISHED, assert_cosign_accepts, assert_ok, build_run, unbase64, verify_pinned, wait_signed,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams};
use serde_json::json;
use signet_crds::SignetConfig;
use signet_e2e::env::repo_root;
use signet_e2e::olm::Bundle;
use signet_e2e::operator::{
    ConfigCleanup, OPERATOR_NAMESPACE, OperatorProcess, install_crd, install_operator_rbac,
};
use signet_e2e::registry::{give_registry_login, push_random_image};
use signet_e2e::{ServiceAccountIdentity, TestEnv, TestNamespace};
use signet_operator::install::{Channels, catalog};

fn run(env: &TestEnv, tool: &str, args: &[&Path]) -> Output {
    Command::new(env.olm_bin.join(tool))
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "signet-olm-{name}-{}-{}",
            std::process::id(),
            common::rand_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// `1.37` from `v1.37.2`.
fn minor(version: &str) -> String {
    version
        .trim_start_matches('v')
        .splitn(3, '.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".")
}

#[test]
fn the_bundle_and_catalog_pass_olms_validators_and_broken_copies_do_not() {
    let env = TestEnv::get();
    let root = repo_root();
    let bundle = root.join("bundle");
    let k8s = format!("-k8s-version={}", minor(&env.kube_version));

    // operator-sdk bundle validate's checks, with the operatorframework suite.
    let out = run(env, "bundle-validate", &[Path::new(&k8s), &bundle]);
    assert!(out.status.success(), "bundle-validate: {}", text(&out));
    assert!(
        !text(&out).contains("WARN"),
        "warnings must be fixed or documented in docs/install.md: {}",
        text(&out)
    );
    let out = run(
        env,
        "operator-verify",
        &[Path::new("manifests"), &bundle.join("manifests")],
    );
    assert!(out.status.success(), "operator-verify: {}", text(&out));
    let out = run(
        env,
        "opm",
        &[Path::new("validate"), &root.join("olm/catalog")],
    );
    assert!(out.status.success(), "opm validate: {}", text(&out));

    // A CSV with a category OperatorHub does not know and a bad minKubeVersion is refused.
    let broken = Scratch::new("bundle");
    copy_dir(&bundle, &broken.0);
    let csv = broken
        .0
        .join("manifests/signet-operator.clusterserviceversion.yaml");
    let edited = std::fs::read_to_string(&csv)
        .unwrap()
        .replace(
            "categories: Security, Developer Tools",
            "categories: Security, Signing",
        )
        .replace("minKubeVersion: \"1.29.0\"", "minKubeVersion: soon");
    std::fs::write(&csv, edited).unwrap();
    let out = run(env, "bundle-validate", &[Path::new(&k8s), &broken.0]);
    assert!(!out.status.success(), "accepted: {}", text(&out));
    assert!(text(&out).contains("not in the set of standard categories"));
    assert!(text(&out).contains("MinKubeVersion has an invalid value: soon"));

    // Two releases in a channel, the second replacing the first, is a valid catalog; a
    // channel entry without its bundle is not.
    let channels: Channels = serde_saphyr::from_str(
        "package: signet-operator\ndefaultChannel: stable\nchannels:\n  - name: stable\n    releases: [\"0.1.0\", \"0.2.0\"]\n",
    )
    .unwrap();
    let upgrade = Scratch::new("catalog");
    std::fs::create_dir_all(upgrade.0.join("signet-operator")).unwrap();
    let two = catalog(&channels, "0.2.0").unwrap();
    std::fs::write(upgrade.0.join("signet-operator/catalog.yaml"), &two).unwrap();
    let out = run(env, "opm", &[Path::new("validate"), &upgrade.0]);
    assert!(
        out.status.success(),
        "opm validate (upgrade): {}",
        text(&out)
    );
    let missing = two.replacen(
        "name: signet-operator.v0.1.0\n",
        "name: signet-operator.v0.0.9\n",
        1,
    );
    assert_ne!(missing, two);
    std::fs::write(upgrade.0.join("signet-operator/catalog.yaml"), &missing).unwrap();
    let out = run(env, "opm", &[Path::new("validate"), &upgrade.0]);
    assert!(
        !out.status.success(),
        "accepted a dangling channel entry: {}",
        text(&out)
    );
}

/// Deletes the operator Deployment the test applied.
struct DeploymentCleanup(&'static TestEnv);

impl Drop for DeploymentCleanup {
    fn drop(&mut self) {
        let env = self.0;
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(client) = env.admin_client() {
                    let _ = Api::<Deployment>::namespaced(client, OPERATOR_NAMESPACE)
                        .delete("signet-operator", &DeleteParams::background())
                        .await;
                }
            });
        })
        .join();
    }
}

#[tokio::test]
async fn installed_as_olm_would_the_operator_rolls_out_a_signer_that_signs_a_taskrun() {
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    let bundle = Bundle::committed().unwrap();
    let example = bundle.example().unwrap();
    let signer_ns = example["spec"]["targetNamespace"]
        .as_str()
        .unwrap()
        .to_owned();
    let _cleanup = ConfigCleanup {
        env,
        namespaces: vec![signer_ns.clone()],
    };
    let _deployment_cleanup = DeploymentCleanup(env);

    // The CRD and install strategy, in a namespace that enforces the restricted Pod Security
    // Standard as the sample OperatorGroup's does.
    install_crd(&admin).await.unwrap();
    let identity = install_operator_rbac(&admin).await.unwrap();
    let restricted = Namespace {
        metadata: ObjectMeta {
            name: Some(OPERATOR_NAMESPACE.to_owned()),
            labels: Some(
                [(
                    "pod-security.kubernetes.io/enforce".to_owned(),
                    "restricted".to_owned(),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(admin.clone())
        .patch(
            OPERATOR_NAMESPACE,
            &PatchParams::apply("olm-e2e").force(),
            &Patch::Apply(&restricted),
        )
        .await
        .unwrap();
    bundle
        .apply_deployments(&admin, OPERATOR_NAMESPACE)
        .await
        .unwrap();
    // The Deployment's pod is admitted under the restricted standard (kwok runs it).
    let deployments = Api::<Deployment>::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let d = deployments.get("signet-operator").await.unwrap();
        if d.status.and_then(|s| s.ready_replicas) == Some(1) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the CSV's Deployment never got a ready pod (restricted PSA?)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The real operator, as the CSV's ServiceAccount with its Deployment's environment.
    let operator = OperatorProcess::start(env, &identity).unwrap();
    Api::<SignetConfig>::all(admin.clone())
        .patch(
            "config",
            &PatchParams::apply("console-user").force(),
            &Patch::Apply(&example),
        )
        .await
        .unwrap();
    let configs = Api::<SignetConfig>::all(admin.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let public_key = loop {
        let config = configs.get("config").await.unwrap();
        let status = config.status.unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == signet_crds::ConditionStatus::True);
        if let (true, Some(pk)) = (ready, status.public_key) {
            break pk;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the example SignetConfig never became Ready:\n{}",
            operator.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let signer_deployment = Api::<Deployment>::namespaced(admin.clone(), &signer_ns)
        .get("signet-signer")
        .await
        .unwrap();
    let signer_image = signer_deployment.spec.template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap();
    let related = bundle.csv["spec"]["relatedImages"].as_array().unwrap();
    assert!(
        related.iter().any(|r| r["image"] == json!(signer_image)),
        "signer image {signer_image} is not one of the CSV's relatedImages"
    );

    // The signer the operator rolled out (as its ServiceAccount, with its environment).
    let signer_identity =
        ServiceAccountIdentity::mint(&admin, &signer_ns, "signet-signer", &[], 3600)
            .await
            .unwrap();
    let signer = OperatorProcess::start_signer(env, &admin, &signer_identity)
        .await
        .unwrap();
    // A TaskRun that built an image in the test registry, as a Kaniko task would report it.
    let ns = TestNamespace::create(&admin, "olm").await.unwrap();
    give_registry_login(&admin, env, ns.name(), "default")
        .await
        .unwrap();
    let repo = format!("olm/app-{}", common::rand_nanos());
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
    let run = wait_signed(&admin, ns.name(), "build", || signer.log_text()).await;
    let envelope = unbase64(
        &run["metadata"]["annotations"][format!("chains.tekton.dev/signature-taskrun-{uid}")],
    );
    let statement = common::statement_of(&envelope);
    assert_eq!(statement["predicateType"], "https://slsa.dev/provenance/v1");
    assert_cosign_accepts(env, &public_key, &envelope, "slsaprovenance1");

    // The image is signed and attested in the registry.
    let key = Scratch::new("key");
    let key_file = key.0.join("cosign.pub");
    std::fs::write(&key_file, &public_key).unwrap();
    let key_file = key_file.to_str().unwrap();
    let pinned = format!("{image}@{digest}");
    assert_ok(&verify_pinned(env, key_file, &pinned, &[]), "cosign verify");
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
}
