//! The `SignetConfig` custom resource (group `signet.dev`, cluster-scoped singleton).
//!
//! Types, defaults and API-server validation (schema, enums, CEL rules) only: no client, no
//! I/O. The operator reads these; the CRD YAML and the reference doc are generated from them.

mod identity;
mod monitoring;
mod reference;
mod signer;
mod signing;
mod status;

pub use identity::{AwsIdentity, AzureIdentity, GcpIdentity, IdentitySpec, SpiffeMode, SpiffeSpec};
pub use monitoring::MonitoringSpec;
pub use reference::reference_markdown;
pub use signer::SignerSpec;
pub use signing::{
    ArchivistaStorage, ArtifactFormat, ArtifactsSpec, BuildType, DocDbStorage, FilterSpec,
    FulcioProvider, GcsStorage, GrafeasStorage, KeylessSpec, KeysSpec, KmsAuthSpec, KmsSpec,
    OciArtifactSpec, OciEncoding, OciFormat, OciStorage, PipelineRunArtifactSpec,
    PipelineRunStorageBackend, ProvenanceSpec, PubSubStorage, RekorVersion, SignerKind,
    SigningSpec, StorageBackend, StorageSpec, TaskRunArtifactSpec, TransparencyMode,
    TransparencySpec, TrustedRootRef, TufSource, VaultOidcAuth, VaultSpireAuth,
};
pub use status::{
    CloudIdentityStatus, Condition, ConditionStatus, IdentityStatus, SignerStatus,
    SignetConfigStatus, SigningServices, VerificationStatus,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The only `SignetConfig` the operator acts on.
pub const SINGLETON_NAME: &str = "config";

/// Where the operator installs the signer unless told otherwise.
pub const DEFAULT_TARGET_NAMESPACE: &str = "signet-system";

/// Desired state of Signet in a cluster: exactly one, named `config`.
#[derive(CustomResource, JsonSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "signet.dev",
    version = "v1alpha1",
    kind = "SignetConfig",
    shortname = "signet",
    status = "SignetConfigStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.version"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!self.signing.keyless.enabled || [self.artifacts.taskRun.signer, self.artifacts.pipelineRun.signer, self.artifacts.oci.signer].all(s, s != 'kms')",
        "message": "signing.keyless.enabled needs the x509 signer: set artifacts.taskRun.signer, artifacts.pipelineRun.signer and artifacts.oci.signer to x509 (or none)"
    },
    {
        "rule": "![self.artifacts.taskRun.signer, self.artifacts.pipelineRun.signer, self.artifacts.oci.signer].exists(s, s == 'kms') || has(self.signing.kms.ref)",
        "message": "the kms signer needs signing.kms.ref (awskms://, gcpkms://, azurekms:// or hashivault://)"
    }
]))]
#[serde(rename_all = "camelCase", default)]
pub struct SignetConfigSpec {
    /// Namespace the operator installs the signer into. Changing it moves everything.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub target_namespace: String,
    /// The signer's pod: replicas, scheduling, resources, and escape hatches.
    pub signer: SignerSpec,
    /// What is signed, in which format, stored where (Chains' `artifacts.*`).
    pub artifacts: ArtifactsSpec,
    /// Provenance builder identity (Chains' `builder.id`, `builddefinition.buildtype`).
    pub provenance: ProvenanceSpec,
    /// Options of each storage backend (Chains' `storage.*`).
    pub storage: StorageSpec,
    /// Keys, keyless (Fulcio) and KMS signing.
    pub signing: SigningSpec,
    /// Rekor transparency log uploads (Chains' `transparency.*`).
    pub transparency: TransparencySpec,
    /// Which runs are signed (Chains' `filter.*`).
    pub filter: FilterSpec,
    /// Cloud workload identity the signer's ServiceAccount federates with.
    pub identity: IdentitySpec,
    /// SPIFFE Workload API socket for JWT-SVIDs (keyless and Vault auth).
    pub spiffe: SpiffeSpec,
    /// ServiceMonitor, PrometheusRule and Grafana dashboard for the signer.
    pub monitoring: MonitoringSpec,
}

impl Default for SignetConfigSpec {
    fn default() -> Self {
        Self {
            target_namespace: DEFAULT_TARGET_NAMESPACE.to_owned(),
            signer: SignerSpec::default(),
            artifacts: ArtifactsSpec::default(),
            provenance: ProvenanceSpec::default(),
            storage: StorageSpec::default(),
            signing: SigningSpec::default(),
            transparency: TransparencySpec::default(),
            filter: FilterSpec::default(),
            identity: IdentitySpec::default(),
            spiffe: SpiffeSpec::default(),
            monitoring: MonitoringSpec::default(),
        }
    }
}

/// The CRD as installed: the derived schema plus the rule that makes `config` the only
/// accepted name (a rule on `metadata`, which the derive cannot express).
pub fn crd() -> CustomResourceDefinition {
    let mut crd = SignetConfig::crd();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            let rule = serde_json::json!({
                "rule": "self.metadata.name == 'config'",
                "message": "SignetConfig is a cluster singleton: its name must be \"config\""
            });
            let rules = schema.x_kubernetes_validations.get_or_insert_with(Vec::new);
            if let Ok(rule) = serde_json::from_value(rule) {
                rules.push(rule);
            }
            if let Ok(mut value) = serde_json::to_value(&*schema) {
                strip_storage_list_defaults(&mut value);
                if let Ok(stripped) = serde_json::from_value(value) {
                    *schema = stripped;
                }
            }
        }
    }
    crd
}

/// Removes the storage lists (`artifacts.*.storage`) from every object default in the schema,
/// as `signing::storage_list` does from the lists' own schemas: a defaulted list is owned by no
/// apply manager, so server-side applying `storage: []` would leave it in place. Omitted lists
/// are defaulted by serde in the operator instead.
fn strip_storage_list_defaults(schema: &mut serde_json::Value) {
    fn strip_default(value: &mut serde_json::Value) {
        if let serde_json::Value::Object(map) = value {
            map.retain(|key, v| !(key == "storage" && v.is_array()));
            map.values_mut().for_each(strip_default);
        }
    }
    match schema {
        serde_json::Value::Object(map) => {
            if let Some(default) = map.get_mut("default") {
                strip_default(default);
            }
            map.iter_mut()
                .filter(|(key, _)| *key != "default")
                .for_each(|(_, v)| strip_storage_list_defaults(v));
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_storage_list_defaults),
        _ => {}
    }
}

/// The CRD as YAML, as committed in `crds/signetconfig.yaml`.
pub fn crd_yaml() -> Result<String, serde_saphyr::ser::Error> {
    let body = serde_saphyr::to_string(&crd())?;
    Ok(format!(
        "# Generated by `make generate` from crds/src; do not edit.\n{body}"
    ))
}

#[cfg(test)]
mod tests;
