//! What the operator reports: conditions, the signer's rollout, the public key and identity.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of the signer installation.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SignetConfigStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`, as Kubernetes API conventions describe.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Version of the operator (and so of the signer) in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<SignerStatus>,
    /// PEM public key that verifies the signer's signatures (key-based signing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The OIDC issuer and subject a cloud must trust for workload identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityStatus>,
    /// What `spec.monitoring` set up, or why part of it is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<String>,
    /// Where verifiers find what they verify with, as published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationStatus>,
}

/// The ConfigMap the operator publishes for verifiers.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VerificationStatus {
    /// `<namespace>/signet-public-key`: `cosign.pub`, `trusted_root.json`, and for keyless
    /// signing `certificate-identity` and `certificate-oidc-issuer`.
    pub config_map: String,
    /// `sha256:<hex>` of the `trusted_root.json` it holds (`spec.signing.trustedRoot`), so a
    /// verifier can tell it uses the same one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_root_digest: Option<String>,
    /// Where that trusted root came from: `ConfigMap <ns>/<name>` or `TUF <mirror> (root
    /// version N)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_root_source: Option<String>,
    /// The services a signing config chose (they replace the spec's URLs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_config: Option<SigningServices>,
}

/// The services in force from a signing config.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SigningServices {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fulcio_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rekor_url: Option<String>,
    /// `v1` or `v2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rekor_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_url: Option<String>,
}

/// The signer Deployment's rollout.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SignerStatus {
    pub replicas: i32,
    pub ready_replicas: i32,
    /// Hash of the pod-template inputs that need a restart.
    pub config_hash: String,
}

/// Workload identity to federate.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IdentityStatus {
    /// The cluster's ServiceAccount token issuer.
    pub issuer: String,
    /// `system:serviceaccount:<namespace>:<name>` of the signer.
    pub subject: String,
    /// With keyless signing from the ServiceAccount token: the identity Fulcio writes in the
    /// certificates (`https://kubernetes.io/namespaces/<ns>/serviceaccounts/<name>`), which
    /// verifiers pass as `--certificate-identity`. Unset otherwise (with the `spiffe`
    /// provider the certificates carry the SPIFFE ID SPIRE issues the signer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_identity: Option<String>,
    /// Per cloud of `spec.identity`: the credentials the signer uses and what the cloud must
    /// trust for them to work.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clouds: Vec<CloudIdentityStatus>,
}

/// The credentials the signer uses with one cloud.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CloudIdentityStatus {
    /// `aws`, `azure` or `gcp`.
    pub cloud: String,
    /// Which credentials: `web identity (IRSA)`, `EKS Pod Identity`, `workload identity`,
    /// `managed identity`, `workload identity federation`, `GKE metadata server`.
    pub credentials: String,
    /// What has to be set up on the cloud's side, with the names to use.
    pub trust: String,
}

/// `True`, `False` or `Unknown`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    #[default]
    Unknown,
}

/// One condition, as in `metav1.Condition`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Progressing` or `Degraded`.
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    /// CamelCase reason for the last transition.
    pub reason: String,
    /// What happened, for a person.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
