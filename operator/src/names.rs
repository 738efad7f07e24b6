//! Names and labels of everything the operator manages: written once, used by the builders,
//! the pruner and the tests.

use std::collections::BTreeMap;

/// The only SignetConfig the operator acts on.
pub const SINGLETON: &str = signet_crds::SINGLETON_NAME;
/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "signet-operator";
/// Finalizer on the SignetConfig that lets the operator clean up before it disappears.
pub const FINALIZER: &str = "signet.dev/cleanup";
/// Name of the signer's ServiceAccount, Deployment, Roles and bindings.
pub const SIGNER: &str = "signet-signer";
/// The signer's Chains-style configuration.
pub const SIGNER_CONFIG_MAP: &str = "signet-signer-config";
/// Public key for verifiers, readable by anyone granted access to it.
pub const PUBLIC_KEY_CONFIG_MAP: &str = "signet-public-key";
/// Role and RoleBinding giving the signer registry credentials (ServiceAccounts and their
/// pull secrets) in each namespace it signs, when `signer.namespaces` limits it.
pub const SIGNER_CREDENTIALS: &str = "signet-signer-credentials";
/// The ClusterRole (installed with the operator, never changed by it) holding what the
/// operator does inside the signer's namespace — Secrets and Deployments — and the
/// RoleBinding in that namespace through which the operator grants it to itself.
pub const OPERATOR_NAMESPACE_ROLE: &str = "signet-operator-namespace";
pub const OPERATOR_BINDING: &str = "signet-operator";
/// Annotation on a Namespace the operator created: the UID of the SignetConfig it was made
/// for. Only a namespace whose marker names the current SignetConfig is ever deleted.
pub const CREATED_FOR_ANNOTATION: &str = "signet.dev/created-for";
/// The signer's metrics Service.
pub const METRICS_SERVICE: &str = "signet-signer-metrics";
/// Pod-template annotation with the hash of everything that needs a restart.
pub const RESTART_HASH_ANNOTATION: &str = "signet.dev/restart-hash";
/// Annotation with the hash of what the operator last applied to an object.
pub const APPLIED_HASH_ANNOTATION: &str = "signet.dev/applied-hash";
/// Label on every managed object; its value is the SignetConfig's name.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "signet-operator";
/// Marks a Secret or Namespace the operator created (and so may delete).
pub const CREATED_BY_OPERATOR_LABEL: &str = "signet.dev/created-by-operator";
/// Default signer image repository; the tag is the operator's own version.
pub const DEFAULT_SIGNER_IMAGE_REPOSITORY: &str = "ghcr.io/signet-dev/signet-signer";
/// Operator version: the signer it deploys is the same version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Labels on every object the operator manages.
pub fn managed_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
        ("app.kubernetes.io/part-of".to_owned(), "signet".to_owned()),
        ("app.kubernetes.io/version".to_owned(), VERSION.to_owned()),
    ])
}

/// Labels that select the signer's pods (stable across versions: a selector is immutable).
pub fn signer_selector() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), SIGNER.to_owned()),
        (
            "app.kubernetes.io/component".to_owned(),
            "signer".to_owned(),
        ),
    ])
}

/// Label selector string matching every managed object.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}")
}
