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

/// Registry credentials: read a run's ServiceAccount and its pull secrets. A ClusterRole
/// installed with the operator (`signet-signer-credentials`), bound to the signer cluster-wide
/// when it signs every namespace, else in each namespace it signs and its own.
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
    names::OPERATOR_BINDING,
    super::monitoring::DASHBOARD_CONFIG_MAP,
];

/// The cluster roles installed with the operator that it binds and nothing else may: what it
/// does in the signer's namespace, and the signer's registry credentials.
const OPERATOR_BINDS: &[&str] = &[names::OPERATOR_NAMESPACE_ROLE, names::SIGNER_CREDENTIALS];

/// What the operator does only inside the signer's namespace (`signet-operator-namespace`,
/// bound there by the operator's own RoleBinding): its signing Secret (named by the user:
/// created, read and — when the operator made it and the namespace moved — deleted, never
/// updated), and the signer's Deployment.
pub const OPERATOR_NAMESPACE_RULES: &[Rule] = &[
    (
        &[""],
        &["secrets"],
        &["get", "list", "watch", "create", "delete"],
        ANY,
    ),
    (&["apps"], &["deployments"], &["create"], ANY),
    (
        &["apps"],
        &["deployments"],
        &["patch", "update", "delete"],
        &[SIGNER],
    ),
];

/// The operator's own cluster-wide rights (the bundle's CSV uses exactly these). No Secret
/// anywhere and no Deployment write: those come with [`OPERATOR_NAMESPACE_RULES`], which the
/// operator may bind (and only bind: `bind` on those two cluster roles by name) in the
/// namespace it runs the signer in. It reads Deployments everywhere to see its signer's.
/// What it changes or deletes is limited by name wherever the name is fixed; it may delete
/// namespaces, and deletes only those marked as created for this SignetConfig.
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
    (&["apps"], &["deployments"], &["get", "list", "watch"], ANY),
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
    // The installed cluster roles are bound, never changed: only the signer's is the
    // operator's to change.
    (
        &["rbac.authorization.k8s.io"],
        &["clusterroles"],
        &["patch", "update", "delete"],
        &[SIGNER],
    ),
    (
        &["rbac.authorization.k8s.io"],
        &["clusterrolebindings", "roles", "rolebindings"],
        &["patch", "update", "delete"],
        OPERATOR_MANAGED,
    ),
    (
        &["rbac.authorization.k8s.io"],
        &["clusterroles"],
        &["bind"],
        OPERATOR_BINDS,
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

/// The cluster roles installed with the operator (plain manifests and the bundle): (name,
/// rules). The operator binds them; it never creates or changes them.
pub const INSTALLED_CLUSTER_ROLES: &[(&str, &[Rule])] = &[
    (names::OPERATOR_NAMESPACE_ROLE, OPERATOR_NAMESPACE_RULES),
    (names::SIGNER_CREDENTIALS, SIGNER_CREDENTIAL_RULES),
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
/// to [`MAX_SIGNER_REPLICAS`] (`signet-signer-shard-<i>-of-<n>`), and the sharding Lease every
/// signer holds with the others of its replica count (`signet-signer-sharding`): named, so the
/// signer may touch no other Lease.
pub fn signer_shard_leases() -> Vec<String> {
    (2..=MAX_SIGNER_REPLICAS)
        .flat_map(|n| (0..n).map(move |i| signet_runtime::shards::lease_name(SIGNER, i, n)))
        .chain([signet_runtime::shards::sharding_lease(SIGNER)])
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

/// The signer's ClusterRole: runs and Events.
pub fn render_signer_cluster_role(inputs: &BuildInputs) -> ClusterRole {
    ClusterRole {
        metadata: metadata(SIGNER, None, inputs),
        rules: Some(policy_rules(SIGNER_CLUSTER_RULES)),
        ..ClusterRole::default()
    }
}

fn role_ref_to(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: Some("rbac.authorization.k8s.io".to_owned()),
        kind: kind.to_owned(),
        name: name.to_owned(),
    }
}

/// Where the signer reads registry credentials (the installed ClusterRole
/// `signet-signer-credentials`): cluster-wide when it signs every namespace, else in each
/// namespace it signs and its own (its own pull secrets are the fallback credentials).
#[derive(Clone, Debug, PartialEq)]
pub enum CredentialAccess {
    Everywhere(Box<ClusterRoleBinding>),
    In(Vec<RoleBinding>),
}

pub fn render_credential_access(spec: &SignetConfigSpec, inputs: &BuildInputs) -> CredentialAccess {
    let role_ref = role_ref_to("ClusterRole", names::SIGNER_CREDENTIALS);
    let subjects = Some(signer_subject(&spec.target_namespace));
    if spec.signer.namespaces.is_empty() {
        return CredentialAccess::Everywhere(Box::new(ClusterRoleBinding {
            metadata: metadata(names::SIGNER_CREDENTIALS, None, inputs),
            role_ref,
            subjects,
        }));
    }
    let mut namespaces: Vec<&str> = spec.signer.namespaces.iter().map(String::as_str).collect();
    namespaces.push(&spec.target_namespace);
    namespaces.sort_unstable();
    namespaces.dedup();
    CredentialAccess::In(
        namespaces
            .into_iter()
            .map(|ns| RoleBinding {
                metadata: metadata(names::SIGNER_CREDENTIALS, Some(ns), inputs),
                role_ref: role_ref.clone(),
                subjects: subjects.clone(),
            })
            .collect(),
    )
}

/// The operator's own RoleBinding in the signer's namespace to the installed ClusterRole
/// `signet-operator-namespace`: its Secret and Deployment rights there, and nowhere else.
pub fn render_operator_binding(
    namespace: &str,
    operator: &Subject,
    inputs: &BuildInputs,
) -> RoleBinding {
    RoleBinding {
        metadata: metadata(names::OPERATOR_BINDING, Some(namespace), inputs),
        role_ref: role_ref_to("ClusterRole", names::OPERATOR_NAMESPACE_ROLE),
        subjects: Some(vec![operator.clone()]),
    }
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
    role_ref_to(kind, SIGNER)
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
