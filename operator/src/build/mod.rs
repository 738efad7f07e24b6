//! Builds every object the signer needs from a validated spec. Pure: no client, no `async`;
//! each builder takes what it needs and returns the object, so tests compare whole objects.

pub mod deployment;
pub mod keys;
pub mod monitoring;
pub mod namespace;
pub mod rbac;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;

use crate::names::{self, managed_labels};
use crate::validate::Validated;

/// What the builders need besides the spec.
#[derive(Clone, Debug)]
pub struct BuildInputs {
    /// Owner reference to the SignetConfig; every namespaced object carries it.
    pub owner: OwnerReference,
    /// Image used when the spec does not name one.
    pub default_signer_image: String,
    /// Who the operator runs as: the subject of its RoleBinding in the signer's namespace.
    pub operator: Subject,
}

/// Every object the operator wants to exist, in apply order.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub namespace: Namespace,
    /// The operator's own Secret and Deployment rights in the signer's namespace: first.
    pub operator_binding: RoleBinding,
    pub service_account: ServiceAccount,
    pub cluster_role: ClusterRole,
    pub cluster_role_binding: ClusterRoleBinding,
    pub role: Role,
    pub role_binding: RoleBinding,
    /// Registry-credential access: cluster-wide, or per signed namespace.
    pub credential_access: rbac::CredentialAccess,
    pub config_map: ConfigMap,
    pub deployment: Deployment,
    pub service: Service,
}

/// Builds the desired objects for `v`.
pub fn build(v: &Validated, inputs: &BuildInputs) -> Desired {
    let ns = v.spec.target_namespace.as_str();
    Desired {
        namespace: namespace::render_namespace(&v.spec),
        operator_binding: rbac::render_operator_binding(ns, &inputs.operator, inputs),
        service_account: rbac::render_service_account(&v.spec, inputs),
        cluster_role: rbac::render_signer_cluster_role(inputs),
        cluster_role_binding: rbac::render_signer_cluster_role_binding(ns, inputs),
        role: rbac::render_signer_role(ns, &v.spec.signing.keys.secret_name, inputs),
        role_binding: rbac::render_signer_role_binding(ns, inputs),
        credential_access: rbac::render_credential_access(&v.spec, inputs),
        config_map: render_signer_config_map(v, inputs),
        deployment: deployment::render_deployment(v, inputs),
        service: render_metrics_service(ns, inputs),
    }
}

/// Metadata every managed object shares.
pub fn metadata(name: &str, namespace: Option<&str>, inputs: &BuildInputs) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(managed_labels()),
        owner_references: Some(vec![inputs.owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// The signer's ConfigMap: Chains' keys rendered by the signer crate itself.
pub fn render_signer_config_map(v: &Validated, inputs: &BuildInputs) -> ConfigMap {
    ConfigMap {
        metadata: metadata(
            names::SIGNER_CONFIG_MAP,
            Some(&v.spec.target_namespace),
            inputs,
        ),
        data: Some({
            let mut data = v.signer_config.render();
            if let Some(gcp) = &v.spec.identity.gcp
                && let Some(provider) = &gcp.workload_identity_provider
            {
                data.insert(
                    deployment::GCP_CREDENTIALS_KEY.to_owned(),
                    deployment::gcp_credential_config(provider, &gcp.service_account),
                );
            }
            data
        }),
        ..ConfigMap::default()
    }
}

/// The Service in front of the signer's metrics port.
pub fn render_metrics_service(namespace: &str, inputs: &BuildInputs) -> Service {
    let spec = serde_json::json!({
        "selector": names::signer_selector(),
        "ports": [{"name": "metrics", "port": deployment::METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}]
    });
    Service {
        metadata: metadata(names::METRICS_SERVICE, Some(namespace), inputs),
        spec: serde_json::from_value(spec).ok(),
        ..Service::default()
    }
}

/// Labels as a map, for builders that add to the managed set.
pub fn with_labels(extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut labels = extra.clone();
    labels.extend(managed_labels());
    labels
}

#[cfg(test)]
mod tests;
