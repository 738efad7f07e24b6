//! The signer's ServiceAccount and RBAC, and the operator's own RBAC. Each rule list is
//! written here once; the bundle and the tests reuse it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use signet_crds::SignetConfigSpec;

use super::{BuildInputs, metadata};
use crate::names::{self, SIGNER};

/// One RBAC rule: API groups, resources, verbs, and the object names it is limited to
/// (empty: any name). Verbs that cannot be limited by name (`create`, and `list`/`watch`
/// without a name field selector) go in a rule of their own.
pub type Rule = (
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
);

const ANY: &[&str] = &[];

/// What the signer does across the cluster: read and annotate runs (and manage their
/// finalizers) and record Events. Nothing else.
pub const SIGNER_CLUSTER_RULES: &[Rule] = &[
    (
        &["tekton.dev"],
        &["taskruns", "pipelineruns"],
        &["get", "list", "watch", "patch"],
        ANY,
    ),
    (
        &["", "events.k8s.io"],
        &["events"],
        &["create", "patch"],
        ANY,
    ),
];

/// Registry credentials: read a run's ServiceAccount and its pull secrets. Cluster-wide when
/// the signer signs every namespace; else a Role in each namespace it signs, and its own.
pub const SIGNER_CREDENTIAL_RULES: &[Rule] = &[
    (&[""], &["serviceaccounts"], &["get"], ANY),
    (&[""], &["secrets"], &["get"], ANY),
];

/// What the signer does in its own namespace: watch its ConfigMap and signing Secret (names
/// filled in by [`render_signer_role`]), and hold its leader-election Lease.
pub const SIGNER_NAMESPACE_RULES: &[Rule] = &[
    (
        &[""],
        &["configmaps", "secrets"],
        &["get", "list", "watch"],
        ANY,
    ),
    (&["coordination.k8s.io"], &["leases"], &["create"], ANY),
    (
        &["coordination.k8s.io"],
        &["leases"],
        &["get", "update"],
        &[SIGNER],
    ),
];

/// The names of what the operator makes in the signer's namespace and cluster-wide: it may
/// change or delete those, and only those.
const OPERATOR_MANAGED: &[&str] = &[
    SIGNER,
    names::SIGNER_CREDENTIALS,
    names::SIGNER_CONFIG_MAP,
    names::PUBLIC_KEY_CONFIG_MAP,
    names::METRICS_SERVICE,
    super::monitoring::DASHBOARD_CONFIG_MAP,
];

/// The operator's own cluster-wide rights (the bundle's CSV uses exactly these). It holds
/// every right it grants the signer, as RBAC requires of whoever creates a role. What it
/// changes or deletes is limited by name wherever the name is fixed; Secrets (the signing
/// Secret's name is the user's choice) are created and, when the operator made them and the
/// target namespace moved, deleted — never updated.
pub const OPERATOR_CLUSTER_RULES: &[Rule] = &[
    (
        &["signet.dev"],
        &["signetconfigs"],
        &["get", "list", "watch", "patch", "update"],
        ANY,
    ),
    (
        &["signet.dev"],
        &["signetconfigs/status"],
        &["get", "patch", "update"],
        ANY,
    ),
    (
        &["signet.dev"],
        &["signetconfigs/finalizers"],
        &["update"],
        ANY,
    ),
    (
        &[""],
        &["namespaces"],
        &["get", "list", "watch", "create", "patch", "delete"],
        ANY,
    ),
    (
        &[""],
        &["serviceaccounts", "configmaps", "services"],
        &["get", "list", "watch", "create"],
        ANY,
    ),
    (
        &[""],
        &["serviceaccounts", "configmaps", "services"],
        &["patch", "update", "delete"],
        OPERATOR_MANAGED,
    ),
    (
        &[""],
        &["secrets"],
        &["get", "list", "watch", "create", "delete"],
        ANY,
    ),
    (
        &["apps"],
        &["deployments"],
        &["get", "list", "watch", "create"],
        ANY,
    ),
    (
        &["apps"],
        &["deployments"],
        &["patch", "update", "delete"],
        OPERATOR_MANAGED,
    ),
    (
        &["rbac.authorization.k8s.io"],
        &[
            "clusterroles",
            "clusterrolebindings",
            "roles",
            "rolebindings",
        ],
        &["get", "list", "watch", "create"],
        ANY,
    ),
    (
        &["rbac.authorization.k8s.io"],
        &[
            "clusterroles",
            "clusterrolebindings",
            "roles",
            "rolebindings",
        ],
        &["patch", "update", "delete"],
        OPERATOR_MANAGED,
    ),
    (&["coordination.k8s.io"], &["leases"], &["create"], ANY),
    (
        &["coordination.k8s.io"],
        &["leases"],
        &["get", "update"],
        &[crate::install::OPERATOR, SIGNER],
    ),
    (
        &["tekton.dev"],
        &["taskruns", "pipelineruns"],
        &["get", "list", "watch", "patch"],
        ANY,
    ),
    (
        &["", "events.k8s.io"],
        &["events"],
        &["create", "patch"],
        ANY,
    ),
    // `spec.monitoring`: the signer's ServiceMonitor and PrometheusRule.
    (
        &["monitoring.coreos.com"],
        &["servicemonitors", "prometheusrules"],
        &["create"],
        ANY,
    ),
    (
        &["monitoring.coreos.com"],
        &["servicemonitors", "prometheusrules"],
        &["get", "patch", "update", "delete"],
        &[SIGNER],
    ),
];

/// `PolicyRule`s from [`Rule`]s.
pub fn policy_rules(rules: &[Rule]) -> Vec<PolicyRule> {
    let strings = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    rules
        .iter()
        .map(|(groups, resources, verbs, names)| {
            let mut names = strings(names);
            // The signer's Lease stands for the shard Leases of every replica count too.
            if *resources == ["leases"] && names.iter().any(|n| n == SIGNER) {
                names.extend(signer_shard_leases());
            }
            PolicyRule {
                api_groups: Some(strings(groups)),
                resources: Some(strings(resources)),
                verbs: strings(verbs),
                resource_names: (!names.is_empty()).then_some(names),
                ..PolicyRule::default()
            }
        })
        .collect()
}

/// The most signer replicas the SignetConfig allows (`spec.signer.replicas`).
pub const MAX_SIGNER_REPLICAS: usize = 10;

/// The Leases active-active signers hold their shards with, for every replica count from 2
/// to [`MAX_SIGNER_REPLICAS`] (`signet-signer-shard-<i>-of-<n>`): named, so the signer may
/// touch no other Lease.
pub fn signer_shard_leases() -> Vec<String> {
    (2..=MAX_SIGNER_REPLICAS)
        .flat_map(|n| (0..n).map(move |i| signet_runtime::shards::lease_name(SIGNER, i, n)))
        .collect()
}

/// Annotations each cloud's workload identity reads from the ServiceAccount.
fn identity_annotations(spec: &SignetConfigSpec) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(azure) = spec.identity.azure.as_ref().filter(|a| !a.managed_identity) {
        for (key, value) in [
            ("client-id", &azure.client_id),
            ("tenant-id", &azure.tenant_id),
        ] {
            if let Some(value) = value {
                out.insert(format!("azure.workload.identity/{key}"), value.clone());
            }
        }
    }
    if let Some(role_arn) = spec
        .identity
        .aws
        .as_ref()
        .and_then(|aws| aws.role_arn.as_ref())
    {
        out.insert("eks.amazonaws.com/role-arn".to_owned(), role_arn.clone());
    }
    if let Some(gcp) = &spec.identity.gcp {
        out.insert(
            "iam.gke.io/gcp-service-account".to_owned(),
            gcp.service_account.clone(),
        );
    }
    out
}

/// The signer's ServiceAccount.
pub fn render_service_account(spec: &SignetConfigSpec, inputs: &BuildInputs) -> ServiceAccount {
    let mut meta = metadata(SIGNER, Some(&spec.target_namespace), inputs);
    let annotations = identity_annotations(spec);
    meta.annotations = (!annotations.is_empty()).then_some(annotations);
    ServiceAccount {
        metadata: meta,
        automount_service_account_token: Some(true),
        ..ServiceAccount::default()
    }
}

/// The signer's ClusterRole: runs and Events, and registry credentials everywhere unless
/// `signer.namespaces` limits the signer (then [`render_credential_access`] grants them).
pub fn render_signer_cluster_role(spec: &SignetConfigSpec, inputs: &BuildInputs) -> ClusterRole {
    let mut rules = policy_rules(SIGNER_CLUSTER_RULES);
    if spec.signer.namespaces.is_empty() {
        rules.extend(policy_rules(SIGNER_CREDENTIAL_RULES));
    }
    ClusterRole {
        metadata: metadata(SIGNER, None, inputs),
        rules: Some(rules),
        ..ClusterRole::default()
    }
}

/// With `signer.namespaces` set: a Role and RoleBinding reading ServiceAccounts and Secrets
/// in each namespace the signer signs and in its own (its own pull secrets are the fallback
/// credentials), for the signer's ServiceAccount. None when it signs every namespace.
pub fn render_credential_access(
    spec: &SignetConfigSpec,
    inputs: &BuildInputs,
) -> Vec<(Role, RoleBinding)> {
    if spec.signer.namespaces.is_empty() {
        return Vec::new();
    }
    let mut namespaces: Vec<&str> = spec.signer.namespaces.iter().map(String::as_str).collect();
    namespaces.push(&spec.target_namespace);
    namespaces.sort_unstable();
    namespaces.dedup();
    namespaces
        .into_iter()
        .map(|ns| {
            let meta = metadata(names::SIGNER_CREDENTIALS, Some(ns), inputs);
            let role = Role {
                metadata: meta.clone(),
                rules: Some(policy_rules(SIGNER_CREDENTIAL_RULES)),
            };
            let binding = RoleBinding {
                metadata: meta,
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".to_owned()),
                    kind: "Role".to_owned(),
                    name: names::SIGNER_CREDENTIALS.to_owned(),
                },
                subjects: Some(signer_subject(&spec.target_namespace)),
            };
            (role, binding)
        })
        .collect()
}

fn signer_subject(namespace: &str) -> Vec<Subject> {
    vec![Subject {
        kind: "ServiceAccount".to_owned(),
        name: SIGNER.to_owned(),
        namespace: Some(namespace.to_owned()),
        api_group: None,
    }]
}

fn role_ref(kind: &str) -> RoleRef {
    RoleRef {
        api_group: Some("rbac.authorization.k8s.io".to_owned()),
        kind: kind.to_owned(),
        name: SIGNER.to_owned(),
    }
}

pub fn render_signer_cluster_role_binding(
    namespace: &str,
    inputs: &BuildInputs,
) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: metadata(SIGNER, None, inputs),
        role_ref: role_ref("ClusterRole"),
        subjects: Some(signer_subject(namespace)),
    }
}

/// The namespaced Role, limited by name to the signer's ConfigMap, signing Secret and Lease
/// where the verb allows it (`list`/`watch` are then restricted by field selector).
pub fn render_signer_role(namespace: &str, secret_name: &str, inputs: &BuildInputs) -> Role {
    let mut rules = policy_rules(SIGNER_NAMESPACE_RULES);
    if let Some(first) = rules.first_mut() {
        first.resource_names = Some(vec![
            names::SIGNER_CONFIG_MAP.to_owned(),
            secret_name.to_owned(),
        ]);
    }
    Role {
        metadata: metadata(SIGNER, Some(namespace), inputs),
        rules: Some(rules),
    }
}

pub fn render_signer_role_binding(namespace: &str, inputs: &BuildInputs) -> RoleBinding {
    RoleBinding {
        metadata: metadata(SIGNER, Some(namespace), inputs),
        role_ref: role_ref("Role"),
        subjects: Some(signer_subject(namespace)),
    }
}
