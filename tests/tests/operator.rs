// Over 450 lines: one e2e binary per area, its scenarios each a test beside the set-up they share.
//! The operator end to end: the real binary, authenticated as its own ServiceAccount, against
//! the real control plane. One SignetConfig may exist per cluster, so the scenarios take
//! turns, each with its own rollout (`Rolled`); API-server validation uses dry-run creates
//! and runs alongside.

// Helpers here are test code too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use signet_crds::SignetConfig;
use signet_e2e::TestEnv;
use signet_e2e::operator::{
    ConfigCleanup, OPERATOR_NAMESPACE, OperatorProcess, install_crd, install_operator_rbac,
};

/// How long a rollout may take: the controller-manager and kwok make the signer's pod ready
/// (seconds normally; the bound is generous for a loaded 2-core machine).
const TIMEOUT: Duration = Duration::from_secs(60);

/// Tests that run operator processes share one Lease and one SignetConfig: one at a time.
static OPERATORS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn eventually<T, F, Fut>(what: &str, log: impl Fn() -> String, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; operator log:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `(type, reason)` of every Event on the SignetConfig `config` (by uid), eventually holding
/// all of `wanted`.
async fn config_events(
    admin: &Client,
    config: &SignetConfig,
    wanted: &[(&str, &str)],
    log: impl Fn() -> String,
) -> Vec<(String, String, String)> {
    let uid = config.metadata.uid.clone().unwrap();
    // Events about cluster-scoped objects live in `default`.
    let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(admin.clone(), "default");
    eventually("the SignetConfig's Events", log, || async {
        let seen: Vec<(String, String, String)> = events
            .list(&ListParams::default().fields(&format!("involvedObject.uid={uid}")))
            .await
            .ok()?
            .items
            .into_iter()
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default(),
                )
            })
            .collect();
        wanted
            .iter()
            .all(|(t, r)| seen.iter().any(|(st, sr, _)| st == t && sr == r))
            .then_some(seen)
    })
    .await
}

fn condition(config: &SignetConfig, type_: &str) -> Option<(String, String, String)> {
    let c = config
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((
        format!("{:?}", c.status),
        c.reason.clone(),
        c.message.clone(),
    ))
}

async fn apply_config(admin: &Client, spec: serde_json::Value) {
    signet_e2e::operator::apply_config(admin, spec)
        .await
        .unwrap();
}

/// Deletes the SignetConfig and waits until the operator's finalizer let it go.
async fn delete_config(configs: &Api<SignetConfig>, log: impl Fn() -> String) {
    configs
        .delete("config", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the SignetConfig to be deleted", log, || async {
        configs
            .get_opt("config")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
}

/// The public key the SignetConfig's status publishes.
async fn published_key(configs: &Api<SignetConfig>) -> Option<String> {
    configs.get("config").await.unwrap().status?.public_key
}

/// Waits until namespace `name` is gone or being deleted.
async fn namespace_deleted(namespaces: &Api<Namespace>, name: &str, log: impl Fn() -> String) {
    eventually(&format!("namespace {name} to be deleted"), log, || async {
        match namespaces.get_opt(name).await.ok()? {
            None => Some(()),
            Some(n) => n.metadata.deletion_timestamp.map(|_| ()),
        }
    })
    .await;
}

fn rs_names(list: &[ReplicaSet]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(ResourceExt::name_any).collect();
    v.sort();
    v
}

async fn can_i(
    env: &TestEnv,
    namespace: &str,
    verb: &str,
    resource: &str,
    scope: Option<&str>,
) -> bool {
    let user = format!("system:serviceaccount:{namespace}:signet-signer");
    can_as(env, &user, verb, resource, scope).await
}

/// What the operator's ServiceAccount may do, as the API server's authorizer says.
async fn operator_can(env: &TestEnv, verb: &str, resource: &str, scope: Option<&str>) -> bool {
    let user = format!("system:serviceaccount:{OPERATOR_NAMESPACE}:signet-operator");
    can_as(env, &user, verb, resource, scope).await
}

async fn can_as(
    env: &TestEnv,
    user: &str,
    verb: &str,
    resource: &str,
    scope: Option<&str>,
) -> bool {
    let mut cmd = tokio::process::Command::new(&env.kubectl);
    cmd.env("KUBECONFIG", &env.kubeconfig)
        .args(["auth", "can-i", verb, resource, "--as", user]);
    match scope {
        Some(ns) => cmd.args(["-n", ns]),
        None => cmd.arg("--all-namespaces"),
    };
    let out = cmd.output().await.unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

#[tokio::test]
async fn api_server_rejects_invalid_signetconfigs_naming_the_rule() {
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    install_crd(&admin).await.unwrap();
    let api: Api<SignetConfig> = Api::all(admin.clone());
    let raw: Api<kube::api::DynamicObject> =
        Api::all_with(admin, &kube::core::ApiResource::erase::<SignetConfig>(&()));
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let cases = [
        (
            json!({"metadata": {"name": "second"}, "spec": {}}),
            "its name must be \"config\"",
        ),
        (
            json!({"metadata": {"name": "config"}, "spec": {"signing": {"keyless": {"enabled": true}}, "artifacts": {"oci": {"signer": "kms"}}}}),
            "signing.keyless.enabled needs the x509 signer",
        ),
        (
            json!({"metadata": {"name": "config"}, "spec": {"artifacts": {"taskRun": {"signer": "kms"}}}}),
            "the kms signer needs signing.kms.ref",
        ),
        (
            json!({"metadata": {"name": "config"}, "spec": {"signing": {"kms": {"ref": "hashivault://k", "auth": {"tokenPath": "/t", "tokenSecretRef": {"name": "v", "key": "token"}}}}}}),
            "set tokenSecretRef or tokenPath, not both",
        ),
        (
            json!({"metadata": {"name": "config"}, "spec": {"artifacts": {"taskRun": {"format": "slsa/v3"}}}}),
            "spec.artifacts.taskRun.format",
        ),
        (
            json!({"metadata": {"name": "config"}, "spec": {"signing": {"kms": {"ref": "s3://bucket/key"}}}}),
            "spec.signing.kms.ref",
        ),
        (
            json!({"metadata": {"name": "config"}, "spec": {"artifacts": {"pipelineRun": {"storage": ["kafka"]}}}}),
            "spec.artifacts.pipelineRun.storage",
        ),
        (
            json!({"metadata": {"name": "config"}, "spec": {"artifacts": {"taskRun": {"storage": ["oci", "tekton", "oci"]}}}}),
            "each storage backend at most once",
        ),
    ];
    for (object, expected) in cases {
        let mut object = object;
        object["apiVersion"] = json!("signet.dev/v1alpha1");
        object["kind"] = json!("SignetConfig");
        // Raw JSON, so that values the Rust types would refuse still reach the API server.
        let obj: kube::api::DynamicObject = serde_json::from_value(object).unwrap();
        let err = raw.create(&dry, &obj).await.unwrap_err();
        assert!(
            err.to_string().contains(expected),
            "expected {expected:?} in {err}"
        );
    }
    let ok: SignetConfig = serde_json::from_value(json!({"apiVersion": "signet.dev/v1alpha1", "kind": "SignetConfig", "metadata": {"name": "config"}, "spec": {}})).unwrap();
    // Validation runs before the storage layer: a valid spec either passes the dry run or
    // meets the SignetConfig the other test created (409), never a 422.
    match api.create(&dry, &ok).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("a valid SignetConfig was refused: {e}"),
    }
}

/// The operator running as its own ServiceAccount, and a SignetConfig with
/// `targetNamespace: signet-e2e-<name>-<pid>` rolled out and Ready. `also` names more
/// namespaces (`<ns>-<suffix>`) a scenario uses, removed with the config at the end. Each
/// scenario gets its own, in turn (one SignetConfig per cluster).
struct Rolled {
    env: &'static TestEnv,
    admin: Client,
    configs: Api<SignetConfig>,
    ns: String,
    /// The SignetConfig as it first turned Ready.
    config: SignetConfig,
    operator: OperatorProcess,
    _cleanup: ConfigCleanup,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl Rolled {
    async fn up(name: &str, also: &[&str]) -> Self {
        let serial = OPERATORS.lock().await;
        let env = TestEnv::get();
        let admin = env.admin_client().unwrap();
        install_crd(&admin).await.unwrap();
        let identity = install_operator_rbac(&admin).await.unwrap();
        let operator = OperatorProcess::start(env, &identity).unwrap();
        let ns = format!("signet-e2e-{name}-{}", std::process::id());
        let mut namespaces = vec![ns.clone()];
        namespaces.extend(also.iter().map(|suffix| format!("{ns}-{suffix}")));
        let cleanup = ConfigCleanup { env, namespaces };
        let configs: Api<SignetConfig> = Api::all(admin.clone());
        apply_config(&admin, json!({"targetNamespace": ns})).await;
        let config = eventually(
            "Ready=True",
            || {
                format!(
                    "{}\n{}",
                    operator.log_text(),
                    signet_e2e::env::rollout_state(env, &ns)
                )
            },
            || async {
                let c = configs.get("config").await.ok()?;
                (condition(&c, "Ready")?.0 == "True").then_some(c)
            },
        )
        .await;
        Self {
            env,
            admin,
            configs,
            ns,
            config,
            operator,
            _cleanup: cleanup,
            _serial: serial,
        }
    }

    fn log(&self) -> String {
        self.operator.log_text()
    }

    /// The generated signing Secret's data and its public key.
    async fn generated_key(&self) -> (BTreeMap<String, ByteString>, String) {
        let secret = Api::<Secret>::namespaced(self.admin.clone(), &self.ns)
            .get("signing-secrets")
            .await
            .unwrap();
        let data = secret.data.clone().unwrap();
        let public = String::from_utf8(data["cosign.pub"].0.clone()).unwrap();
        (data, public)
    }
}

/// A fresh SignetConfig rolls the signer out and reports Ready with a generated key, whose
/// public half is published in the status and a ConfigMap.
#[tokio::test]
async fn a_fresh_signetconfig_rolls_out_a_ready_signer_with_a_generated_key() {
    let r = Rolled::up("fresh", &[]).await;
    let (env, admin, ns1, config) = (r.env, &r.admin, &r.ns, &r.config);
    let (data, public) = r.generated_key().await;
    let status = config.status.clone().unwrap();
    assert_eq!(
        status.identity.as_ref().unwrap().subject,
        format!("system:serviceaccount:{ns1}:signet-signer")
    );
    assert_eq!(status.identity.as_ref().unwrap().issuer, env.oidc_issuer);
    assert_eq!(status.public_key.as_deref(), Some(public.as_str()));
    assert!(
        String::from_utf8_lossy(&data["cosign.key"].0)
            .starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")
    );
    let published = Api::<ConfigMap>::namespaced(admin.clone(), ns1)
        .get("signet-public-key")
        .await
        .unwrap();
    assert_eq!(published.data.unwrap()["cosign.pub"], public);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), ns1);
    let deployment = deployments.get("signet-signer").await.unwrap();
    assert_eq!(deployment.status.unwrap().ready_replicas, Some(1));
    // What the operator did is on the SignetConfig as Events, under the conditions' reasons.
    let events = config_events(
        admin,
        config,
        &[
            ("Normal", "Applied"),
            ("Normal", "KeyGenerated"),
            ("Normal", "RollingOut"),
            ("Normal", "SignerReady"),
        ],
        || r.log(),
    )
    .await;
    let applied = events.iter().find(|e| e.1 == "Applied").unwrap();
    assert!(
        applied.2.contains("Deployment/signet-signer"),
        "{applied:?} in {events:?}\n{}",
        r.log()
    );
    assert!(
        events.iter().all(|e| !e.2.contains("PRIVATE KEY")),
        "key material in an Event: {events:?}"
    );
}

/// The signer's RBAC is what it needs and nothing more; limiting the signed namespaces limits
/// where it reads Secrets.
#[tokio::test]
async fn the_signers_rbac_is_what_it_needs_and_nothing_more() {
    let r = Rolled::up("rbac", &[]).await;
    let (env, admin) = (r.env, &r.admin);
    let ns1 = r.ns.clone();
    let log = || r.log();
    assert!(can_i(env, &ns1, "patch", "taskruns.tekton.dev", None).await);
    assert!(can_i(env, &ns1, "watch", "pipelineruns.tekton.dev", None).await);
    assert!(can_i(env, &ns1, "get", "secrets", Some("default")).await);
    assert!(
        !can_i(env, &ns1, "list", "secrets", None).await,
        "the signer must not list Secrets cluster-wide"
    );
    assert!(!can_i(env, &ns1, "delete", "taskruns.tekton.dev", None).await);
    assert!(!can_i(env, &ns1, "create", "deployments", Some(&ns1)).await);
    assert!(
        can_i(
            env,
            &ns1,
            "update",
            "leases.coordination.k8s.io/signet-signer",
            Some(&ns1)
        )
        .await
    );
    assert!(
        !can_i(
            env,
            &ns1,
            "update",
            "leases.coordination.k8s.io/another-lease",
            Some(&ns1)
        )
        .await,
        "the signer may update only its own Lease"
    );
    // Limiting the signed namespaces limits where the signer reads Secrets (registry
    // credentials): only there and in its own namespace; lifting the limit restores it.
    apply_config(
        admin,
        json!({"targetNamespace": ns1, "signer": {"namespaces": [ns1]}}),
    )
    .await;
    eventually(
        "Secrets readable only where the signer signs",
        log,
        || async {
            (!can_i(env, &ns1, "get", "secrets", Some("default")).await
                && can_i(env, &ns1, "get", "secrets", Some(&ns1)).await)
                .then_some(())
        },
    )
    .await;
    // Someone labels their own Secret as Signet's: the operator's prune, which runs with the
    // next reconcile, must not delete what the SignetConfig does not own.
    let elsewhere = signet_e2e::TestNamespace::create(admin, "prune-foreign")
        .await
        .unwrap();
    let bait = Secret {
        metadata: ObjectMeta {
            name: Some("labelled-as-signets".into()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                "signet-operator".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        ..Secret::default()
    };
    let secrets = Api::<Secret>::namespaced(admin.clone(), elsewhere.name());
    secrets.create(&PostParams::default(), &bait).await.unwrap();
    apply_config(admin, json!({"targetNamespace": ns1})).await;
    eventually("Secrets readable everywhere again", log, || async {
        can_i(env, &ns1, "get", "secrets", Some("default"))
            .await
            .then_some(())
    })
    .await;
    eventually("the credential RoleBinding pruned", log, || async {
        Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(admin.clone(), &ns1)
            .get_opt("signet-signer-credentials")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        secrets
            .get_opt("labelled-as-signets")
            .await
            .unwrap()
            .is_some(),
        "the operator deleted a Secret it does not own because of a label:\n{}",
        log()
    );
}

/// A reconcile that finds everything as desired writes nothing.
#[tokio::test]
async fn a_reconcile_that_finds_everything_as_desired_writes_nothing() {
    let r = Rolled::up("idle", &[]).await;
    let (admin, configs, operator) = (&r.admin, &r.configs, &r.operator);
    let ns1 = r.ns.clone();
    let log = || r.log();
    let versions = |admin: Client, ns: String| async move {
        let mut v = BTreeMap::new();
        for d in Api::<Deployment>::namespaced(admin.clone(), &ns)
            .list(&ListParams::default())
            .await
            .unwrap()
        {
            // Generation, not resourceVersion: the Deployment controller writes status.
            v.insert(
                format!("deploy/{}", d.name_any()),
                d.metadata.generation.map(|g| g.to_string()),
            );
        }
        for c in Api::<ConfigMap>::namespaced(admin.clone(), &ns)
            .list(&ListParams::default())
            .await
            .unwrap()
        {
            v.insert(format!("cm/{}", c.name_any()), c.resource_version());
        }
        for s in Api::<Secret>::namespaced(admin.clone(), &ns)
            .list(&ListParams::default())
            .await
            .unwrap()
        {
            v.insert(format!("secret/{}", s.name_any()), s.resource_version());
        }
        v.insert(
            "clusterrole".into(),
            Api::<ClusterRole>::all(admin.clone())
                .get("signet-signer")
                .await
                .unwrap()
                .resource_version(),
        );
        v
    };
    let before = versions(admin.clone(), ns1.clone()).await;
    let read_before = configs.get("config").await.unwrap();
    let config_rv = read_before.resource_version();
    let count = |needle: &str| operator.log_text().matches(needle).count();
    let writes = operator.metric("signet_operator_writes_total").await;
    assert!(
        writes.is_some_and(|w| w > 0),
        "the rollout must have counted writes"
    );
    let (applies, idle) = (
        count("applied SignetConfig config"),
        count("nothing written"),
    );
    configs
        .patch(
            "config",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"e2e/poke": "1"}}})),
        )
        .await
        .unwrap();
    eventually("a reconcile of the poked SignetConfig", log, || async {
        (count("nothing written") > idle).then_some(())
    })
    .await;
    assert_eq!(
        count("applied SignetConfig config"),
        applies,
        "a no-op reconcile sent writes"
    );
    assert_eq!(
        operator.metric("signet_operator_writes_total").await,
        writes
    );
    assert_eq!(
        versions(admin.clone(), ns1.clone()).await,
        before,
        "a no-op reconcile changed managed objects"
    );
    let after = configs.get("config").await.unwrap();
    assert_ne!(
        after.resource_version(),
        config_rv,
        "the poke itself must have been written"
    );
    assert_eq!(
        after.status, read_before.status,
        "a no-op reconcile changed the status"
    );
}

/// A hot-reloaded key updates the ConfigMap without rolling the pods, a restart-requiring
/// one rolls them, and a deleted managed object comes back.
#[tokio::test]
async fn changes_reload_or_roll_the_signer_and_deleted_objects_come_back() {
    let r = Rolled::up("changes", &[]).await;
    let admin = &r.admin;
    let ns1 = r.ns.clone();
    let log = || r.log();
    let replicasets: Api<ReplicaSet> = Api::namespaced(admin.clone(), &ns1);
    let sets_before = rs_names(
        &replicasets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items,
    );
    apply_config(
        admin,
        json!({"targetNamespace": ns1, "artifacts": {"taskRun": {"format": "slsa/v2alpha4"}}}),
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), &ns1);
    eventually("the ConfigMap to carry the new format", log, || async {
        let cm = cms.get("signet-signer-config").await.ok()?;
        (cm.data?.get("artifacts.taskrun.format")? == "slsa/v2alpha4").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        rs_names(
            &replicasets
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
        ),
        sets_before
    );

    // ... and a restart-requiring one (workload identity) rolls them.
    apply_config(admin, json!({"targetNamespace": ns1, "artifacts": {"taskRun": {"format": "slsa/v2alpha4"}},
                                "identity": {"aws": {"roleArn": "arn:aws:iam::123456789012:role/signer"}}})).await;
    eventually("a new ReplicaSet", log, || async {
        let sets = rs_names(&replicasets.list(&ListParams::default()).await.ok()?.items);
        (sets.len() > sets_before.len()).then_some(())
    })
    .await;

    // 5. A deleted managed object comes back.
    cms.delete("signet-signer-config", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the ConfigMap to be recreated", log, || async {
        cms.get_opt("signet-signer-config").await.ok().flatten()
    })
    .await;
}

/// A spec the API server accepts but the operator cannot act on: Degraded, naming the field,
/// and the running signer is left alone.
#[tokio::test]
async fn a_spec_the_operator_cannot_act_on_degrades_and_leaves_the_signer_alone() {
    let r = Rolled::up("degraded", &[]).await;
    let (admin, configs) = (&r.admin, &r.configs);
    let ns1 = r.ns.clone();
    let log = || r.log();
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns1);
    // The spec's generation, not the resourceVersion: the Deployment controller keeps
    // writing status while the previous rollout settles.
    let running = deployments
        .get("signet-signer")
        .await
        .unwrap()
        .metadata
        .generation;
    apply_config(
        admin,
        json!({"targetNamespace": ns1, "artifacts": {"taskRun": {"storage": ["archivista"]}}}),
    )
    .await;
    let degraded = eventually("Degraded=True", log, || async {
        let c = configs.get("config").await.ok()?;
        let d = condition(&c, "Degraded")?;
        (d.0 == "True").then_some(d)
    })
    .await;
    assert_eq!(degraded.1, "InvalidSpec");
    assert!(
        degraded.2.contains("spec.artifacts.taskRun.storage"),
        "{}",
        degraded.2
    );
    let events = config_events(admin, &r.config, &[("Warning", "InvalidSpec")], log).await;
    let invalid = events.iter().find(|e| e.1 == "InvalidSpec").unwrap();
    assert_eq!(
        invalid.2, degraded.2,
        "the Event says what the condition says"
    );
    assert_eq!(
        deployments
            .get("signet-signer")
            .await
            .unwrap()
            .metadata
            .generation,
        running,
        "an invalid spec changed the running signer"
    );
}

/// Moving `targetNamespace` keeps the generated key: it is copied, not minted anew, so
/// verifiers holding the published public key keep working; the old namespace (ours) is
/// removed.
#[tokio::test]
async fn moving_to_another_namespace_keeps_the_generated_key() {
    let r = Rolled::up("move", &["c", "forged"]).await;
    let (env, admin, configs) = (r.env, &r.admin, &r.configs);
    let ns1 = r.ns.clone();
    let log = || r.log();
    let ns3 = format!("{ns1}-c");
    let (data, public) = r.generated_key().await;
    // The operator's Secret and Deployment rights are in the signer's namespace only.
    assert!(operator_can(env, "get", "secrets", Some(&ns1)).await);
    assert!(operator_can(env, "create", "deployments", Some(&ns1)).await);
    for (verb, resource, scope) in [
        ("list", "secrets", None),
        ("get", "secrets", Some("default")),
        ("create", "secrets", Some("kube-system")),
        ("create", "deployments", Some("default")),
        ("delete", "deployments", Some("kube-system")),
    ] {
        assert!(
            !operator_can(env, verb, resource, scope).await,
            "the operator may {verb} {resource} in {scope:?}"
        );
    }
    for scope in [ns1.as_str(), "default"] {
        let out = std::process::Command::new(&env.kubectl)
            .env("KUBECONFIG", &env.kubeconfig)
            .args(["auth", "can-i", "--list", "-n", scope, "--as"])
            .arg(format!(
                "system:serviceaccount:{OPERATOR_NAMESPACE}:signet-operator"
            ))
            .output()
            .unwrap();
        eprintln!(
            "operator's rights in {scope}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // A namespace someone labelled as created by the operator, with nothing in it: without
    // the marker naming this SignetConfig, the prune that removes the old namespace keeps it.
    let forged = format!("{ns1}-forged");
    let mut forged_ns = Namespace::default();
    forged_ns.metadata.name = Some(forged.clone());
    forged_ns.metadata.labels = Some(BTreeMap::from([(
        "signet.dev/created-by-operator".to_owned(),
        "true".to_owned(),
    )]));
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &forged_ns)
        .await
        .unwrap();
    // 7. Moving to another namespace keeps the generated key: it is copied, not minted anew,
    //    so verifiers holding the published public key keep working; the old namespace (ours)
    //    is removed.
    apply_config(admin, json!({"targetNamespace": ns3})).await;
    eventually("Ready=True in the third namespace", log, || async {
        let c = configs.get("config").await.ok()?;
        let moved = c.status.as_ref()?.identity.as_ref()?.subject.contains(&ns3);
        (moved && condition(&c, "Ready")?.0 == "True").then_some(())
    })
    .await;
    let carried = Api::<Secret>::namespaced(admin.clone(), &ns3)
        .get("signing-secrets")
        .await
        .unwrap();
    assert_eq!(carried.data.as_ref(), Some(&data), "a new key was minted");
    assert_eq!(
        published_key(configs).await.as_deref(),
        Some(public.as_str())
    );
    let old_ns = Api::<Namespace>::all(admin.clone());
    namespace_deleted(&old_ns, &ns1, log).await;
    let kept = old_ns.get_opt(&forged).await.unwrap();
    assert!(
        kept.is_some_and(|n| n.metadata.deletion_timestamp.is_none()),
        "the operator deleted a namespace it did not create because of a label:\n{}",
        log()
    );
    assert!(operator_can(env, "get", "secrets", Some(&ns3)).await);
    assert!(!operator_can(env, "get", "secrets", Some(&forged)).await);
}

/// A namespace `ns` of the user's with their own cosign key in Secret `my-keys`: the Secret as
/// sent, as created, and its public key.
async fn users_own_key(admin: &Client, ns: &str) -> (Secret, Secret, String) {
    let user_ns = Namespace {
        metadata: ObjectMeta {
            name: Some(ns.to_owned()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &user_ns)
        .await
        .unwrap();
    let pair = signet_config::keys::generate_ecdsa_p256().unwrap();
    let user_secret = Secret {
        metadata: ObjectMeta {
            name: Some("my-keys".into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([
            (
                "cosign.key".to_owned(),
                ByteString(pair.private_pem.clone().into_bytes()),
            ),
            (
                "cosign.password".to_owned(),
                ByteString(pair.password.as_bytes().to_vec()),
            ),
            (
                "cosign.pub".to_owned(),
                ByteString(pair.public_pem.clone().into_bytes()),
            ),
        ])),
        ..Secret::default()
    };
    let secrets2: Api<Secret> = Api::namespaced(admin.clone(), ns);
    let created = secrets2
        .create(&PostParams::default(), &user_secret)
        .await
        .unwrap();
    (user_secret, created, pair.public_pem)
}

/// Moving to a namespace where the user keeps their own key leaves the key untouched and
/// publishes its public key; deleting the SignetConfig then removes what the operator made,
/// never the user's key, and takes the signer's finalizer off runs (no signer is left to do
/// it), keeping others'.
#[tokio::test]
async fn a_users_own_key_is_never_written_and_uninstall_removes_only_ours() {
    let r = Rolled::up("own-key", &["b"]).await;
    let (admin, configs) = (&r.admin, &r.configs);
    let ns1 = r.ns.clone();
    let log = || r.log();
    let ns2 = format!("{ns1}-b");
    let old_ns = Api::<Namespace>::all(admin.clone());
    // 8. Moving to a namespace where the user keeps their own key: the key is untouched,
    //    its public key is published, and the old namespace (ours) is removed.
    let (user_secret, created, user_public) = users_own_key(admin, &ns2).await;
    let secrets2: Api<Secret> = Api::namespaced(admin.clone(), &ns2);
    apply_config(
        admin,
        json!({"targetNamespace": ns2, "signing": {"keys": {"secretName": "my-keys"}}}),
    )
    .await;
    eventually("Ready=True in the new namespace", log, || async {
        let c = configs.get("config").await.ok()?;
        let moved = c.status.as_ref()?.identity.as_ref()?.subject.contains(&ns2);
        (moved && condition(&c, "Ready")?.0 == "True").then_some(())
    })
    .await;
    let after = secrets2.get("my-keys").await.unwrap();
    assert_eq!(
        after.resource_version(),
        created.resource_version(),
        "the user's Secret was written to"
    );
    assert_eq!(after.data, user_secret.data);
    assert!(after.owner_references().is_empty());
    assert_eq!(
        published_key(configs).await.as_deref(),
        Some(user_public.as_str())
    );
    namespace_deleted(&old_ns, &ns1, log).await;

    // 9. Deleting the SignetConfig removes what the operator made, never the user's key, and
    //    takes the signer's finalizer off runs (no signer is left to do it), keeping others'.
    let runs: Api<kube::api::DynamicObject> = Api::namespaced_with(
        admin.clone(),
        &ns2,
        &kube::api::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
            "tekton.dev",
            "v1",
            "TaskRun",
        )),
    );
    let held: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tekton.dev/v1", "kind": "TaskRun",
        "metadata": {"name": "held", "finalizers": ["chains.tekton.dev/taskrun", "example.com/theirs"]},
        "spec": {"taskSpec": {"steps": [{"name": "s", "image": "busybox"}]}}
    }))
    .unwrap();
    runs.create(&PostParams::default(), &held).await.unwrap();
    delete_config(configs, log).await;
    let finalizers = runs.get("held").await.unwrap().finalizers().to_vec();
    assert_eq!(finalizers, ["example.com/theirs"], "{}", log());
    runs.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(
        Api::<ClusterRole>::all(admin.clone())
            .get_opt("signet-signer")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        Api::<Deployment>::namespaced(admin.clone(), &ns2)
            .get_opt("signet-signer")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        secrets2.get("my-keys").await.unwrap().data,
        user_secret.data
    );
    let _ = old_ns.delete(&ns2, &DeleteParams::default()).await;
}

#[tokio::test]
async fn only_one_operator_acts_and_a_standby_takes_over() {
    let _serial = OPERATORS.lock().await;
    let env = TestEnv::get();
    let admin = env.admin_client().unwrap();
    install_crd(&admin).await.unwrap();
    let identity = install_operator_rbac(&admin).await.unwrap();
    let ns = format!("signet-e2e-ha-{}", std::process::id());
    let _cleanup = ConfigCleanup {
        env,
        namespaces: vec![ns.clone()],
    };
    let mut first = OperatorProcess::start(env, &identity).unwrap();
    let first_log = || first.log_text();
    eventually("the first operator to lead", first_log, || async {
        first.log_text().contains("became leader").then_some(())
    })
    .await;
    let mut second = OperatorProcess::start(env, &identity).unwrap();
    let second_log = || second.log_text();
    eventually("the second operator to stand by", second_log, || async {
        second.log_text().contains("standing by").then_some(())
    })
    .await;
    assert_eq!(
        second.get("/readyz").await.map(|r| r.0),
        Some(200),
        "a standby is ready"
    );
    assert_eq!(second.metric("signet_operator_leader").await, Some(0));
    assert_eq!(first.metric("signet_operator_leader").await, Some(1));

    apply_config(&admin, json!({"targetNamespace": ns})).await;
    let configs: Api<SignetConfig> = Api::all(admin.clone());
    let both_logs = || {
        format!(
            "first:\n{}\nsecond:\n{}",
            first.log_text(),
            second.log_text()
        )
    };
    eventually("Ready=True", both_logs, || async {
        let c = configs.get("config").await.ok()?;
        (condition(&c, "Ready")?.0 == "True").then_some(())
    })
    .await;
    assert!(
        first
            .metric("signet_operator_reconciles_total")
            .await
            .unwrap()
            > 0
    );
    assert_eq!(
        second.metric("signet_operator_reconciles_total").await,
        Some(0),
        "the standby acted"
    );

    // The leader dies without releasing its lease: the standby takes over once it expires
    // and acts on the next change.
    first.kill();
    eventually("the standby to lead", second_log, || async {
        second.log_text().contains("became leader").then_some(())
    })
    .await;
    apply_config(
        &admin,
        json!({"targetNamespace": ns, "signer": {"logLevel": "debug"}}),
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
    eventually("the new leader to apply the change", second_log, || async {
        let d = deployments.get("signet-signer").await.ok()?;
        let env = d.spec.template.spec?.containers.first()?.env.clone()?;
        env.iter()
            .any(|e| e.name == "SIGNET_LOG_LEVEL" && e.value.as_deref() == Some("debug"))
            .then_some(())
    })
    .await;
    // The operator made this namespace, but a user has since put something of theirs in it
    // (a ConfigMap): uninstalling keeps the namespace.
    let users_own: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "users-own"}, "data": {"k": "v"}}))
            .unwrap();
    Api::<ConfigMap>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &users_own)
        .await
        .unwrap();
    delete_config(&configs, second_log).await;
    assert!(
        second.running(),
        "the new leader exited:\n{}",
        second.log_text()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let kept = Api::<Namespace>::all(admin.clone()).get(&ns).await.unwrap();
    assert!(
        kept.metadata.deletion_timestamp.is_none(),
        "the namespace holding a user's ConfigMap was deleted:\n{}",
        second.log_text()
    );
}

/// The Prometheus operator's CRDs, installed for one test and removed when it ends.
struct PrometheusCrds(&'static TestEnv);

impl PrometheusCrds {
    fn kubectl(env: &TestEnv, args: &[&str]) -> std::process::Output {
        std::process::Command::new(&env.kubectl)
            .arg("--kubeconfig")
            .arg(&env.kubeconfig)
            .args(args)
            .output()
            .unwrap()
    }

    fn files(env: &TestEnv) -> Vec<String> {
        ["servicemonitors", "prometheusrules"]
            .iter()
            .map(|k| {
                env.prometheus_crds
                    .join(format!("monitoring.coreos.com_{k}.yaml"))
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }

    /// Removes them (a run before this one may have left them), waiting until gone.
    fn remove(env: &TestEnv) {
        for file in Self::files(env) {
            let _ = Self::kubectl(
                env,
                &["delete", "--ignore-not-found", "--wait", "-f", &file],
            );
        }
    }

    fn install(env: &'static TestEnv) -> Self {
        for file in Self::files(env) {
            let out = Self::kubectl(env, &["apply", "--server-side", "-f", &file]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for crd in ["servicemonitors", "prometheusrules"] {
            let out = Self::kubectl(
                env,
                &[
                    "wait",
                    "--for=condition=Established",
                    "--timeout=60s",
                    &format!("crd/{crd}.monitoring.coreos.com"),
                ],
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Self(env)
    }
}

impl Drop for PrometheusCrds {
    fn drop(&mut self) {
        Self::remove(self.0);
    }
}

/// `spec.monitoring` without the Prometheus operator: only the dashboard, a Warning Event and
/// `status.monitoring` saying why, Ready unaffected. With its CRDs installed: a ServiceMonitor
/// and a PrometheusRule the real CRD schemas accept, with the user's labels and alert
/// threshold. Switched off: all three removed. One ordered story.
#[tokio::test]
#[allow(clippy::too_many_lines)]
async fn monitoring_is_set_up_with_or_without_the_prometheus_operator() {
    let r = Rolled::up("monitoring", &[]).await;
    let (env, admin, configs, ns) = (r.env, &r.admin, &r.configs, r.ns.clone());
    let log = || r.log();
    PrometheusCrds::remove(env);
    let spec = |enabled: bool, minutes: u32| {
        json!({"targetNamespace": ns, "monitoring": {
            "enabled": enabled, "labels": {"release": "prometheus"}, "waitingMinutes": minutes
        }})
    };
    apply_config(admin, spec(true, 10)).await;
    let config = eventually(
        "status.monitoring without the Prometheus operator",
        log,
        || async {
            let c = configs.get("config").await.ok()?;
            let said = c.status.as_ref()?.monitoring.clone()?;
            said.contains("dashboard) only").then_some(c)
        },
    )
    .await;
    assert_eq!(
        condition(&config, "Ready").unwrap().0,
        "True",
        "monitoring never blocks Ready"
    );
    let dashboards = Api::<ConfigMap>::namespaced(admin.clone(), &ns);
    let dashboard = dashboards.get("signet-dashboard").await.unwrap();
    let labels = dashboard.labels();
    assert_eq!(
        labels.get("grafana_dashboard").map(String::as_str),
        Some("1")
    );
    assert_eq!(
        labels.get("release").map(String::as_str),
        Some("prometheus")
    );
    let json: serde_json::Value =
        serde_json::from_str(&dashboard.data.unwrap()["signet-signer.json"]).unwrap();
    assert_eq!(json["uid"], "signet-signer");
    config_events(admin, &config, &[("Warning", "MonitoringUnavailable")], log).await;

    // The Prometheus operator's CRDs appear; a spec change (or the 5-minute look) adds both.
    let _crds = PrometheusCrds::install(env);
    apply_config(admin, spec(true, 15)).await;
    let monitors = Api::<kube::core::DynamicObject>::namespaced_with(
        admin.clone(),
        &ns,
        &signet_operator::build::monitoring::service_monitor_resource(),
    );
    let rules = Api::<kube::core::DynamicObject>::namespaced_with(
        admin.clone(),
        &ns,
        &signet_operator::build::monitoring::prometheus_rule_resource(),
    );
    // A reconcile that began before the change may create the rule from the old spec first.
    let rule = eventually("the PrometheusRule for 15 minutes", log, || async {
        let rule = rules.get_opt("signet-signer").await.ok()??;
        rule.data.to_string().contains("> 900").then_some(rule)
    })
    .await;
    let monitor = monitors.get("signet-signer").await.unwrap();
    assert_eq!(
        monitor.labels().get("release").map(String::as_str),
        Some("prometheus")
    );
    assert_eq!(monitor.data["spec"]["endpoints"][0]["port"], "metrics");
    let alerts: Vec<&serde_json::Value> = rule.data["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    let names: Vec<&str> = alerts
        .iter()
        .map(|a| a["alert"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "SignetSigningFailures",
            "SignetRunsWaiting",
            "SignetNoLeader",
            "SignetSigningKeyNotLoadable"
        ]
    );
    let waiting = alerts
        .iter()
        .find(|a| a["alert"] == "SignetRunsWaiting")
        .unwrap();
    assert!(
        waiting["expr"].as_str().unwrap().ends_with("> 900"),
        "{waiting}"
    );
    let config = eventually(
        "status.monitoring with the Prometheus operator",
        log,
        || async {
            let c = configs.get("config").await.ok()?;
            c.status
                .as_ref()?
                .monitoring
                .as_ref()?
                .starts_with("ServiceMonitor")
                .then_some(c)
        },
    )
    .await;
    assert_eq!(condition(&config, "Ready").unwrap().0, "True");

    // Switched off: everything monitoring made is removed.
    apply_config(admin, spec(false, 15)).await;
    eventually("monitoring removed", log, || async {
        let gone = rules.get_opt("signet-signer").await.ok()?.is_none()
            && monitors.get_opt("signet-signer").await.ok()?.is_none()
            && dashboards.get_opt("signet-dashboard").await.ok()?.is_none();
        let status_clear = configs
            .get("config")
            .await
            .ok()?
            .status?
            .monitoring
            .is_none();
        (gone && status_clear).then_some(())
    })
    .await;
}
