//! The `SignetConfig` custom resource (group `signet.dev`, cluster-scoped singleton).
//!
//! Types only: no client, no I/O. The operator reads these; the CRD YAML is generated from them.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The only `SignetConfig` the operator acts on.
pub const SINGLETON_NAME: &str = "config";

/// Where the operator installs the signer unless told otherwise.
pub const DEFAULT_TARGET_NAMESPACE: &str = "signet-system";

/// Desired state of Signet in a cluster: one per cluster, named `config`.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "signet.dev",
    version = "v1alpha1",
    kind = "SignetConfig",
    shortname = "signet",
    status = "SignetConfigStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct SignetConfigSpec {
    /// Namespace the operator installs the signer into.
    #[serde(default = "default_target_namespace")]
    #[schemars(default = "default_target_namespace")]
    pub target_namespace: String,
}

/// What the operator last observed and did.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SignetConfigStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

fn default_target_namespace() -> String {
    DEFAULT_TARGET_NAMESPACE.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::{CustomResourceExt, Resource};

    #[test]
    fn crd_is_cluster_scoped_in_signet_dev() {
        let crd = SignetConfig::crd();
        assert_eq!(crd.spec.group, "signet.dev");
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(SignetConfig::api_version(&()), "signet.dev/v1alpha1");
    }

    #[test]
    fn empty_spec_defaults_target_namespace() {
        let spec: SignetConfigSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(spec.target_namespace, "signet-system");
    }
}
