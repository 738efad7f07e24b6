//! Workload identity (Azure, AWS, GCP) and SPIFFE settings of the signer.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Cloud identities the signer's ServiceAccount federates with; set at most what you use.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct IdentitySpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureIdentity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsIdentity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpIdentity>,
}

/// Azure: Workload Identity (a managed identity or app registration federated with the
/// cluster's OIDC issuer: `clientId` and `tenantId`), or, with `managedIdentity`, the managed
/// identity of the node (or the user-assigned one `clientId` names) without federation.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AzureIdentity {
    /// Client (application) id of the identity. Required for Workload Identity; with
    /// `managedIdentity`, selects a user-assigned identity (unset: the node's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub client_id: Option<String>,
    /// Directory (tenant) id. Required for Workload Identity; unset with `managedIdentity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub tenant_id: Option<String>,
    /// Tokens from the instance metadata endpoint (AKS node or user-assigned managed
    /// identity) instead of a federated ServiceAccount token.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub managed_identity: bool,
}

/// AWS: IAM roles for service accounts (`roleArn`, web identity), or EKS Pod Identity
/// (`podIdentity: true`: the role is bound to the signer's ServiceAccount by an association,
/// `aws eks create-pod-identity-association`, and nothing is rendered for it).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AwsIdentity {
    /// The role to assume with web identity, `arn:aws:iam::<account>:role/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$"))]
    pub role_arn: Option<String>,
    /// Credentials from the EKS Pod Identity Agent (the association names the role).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pod_identity: bool,
}

/// GCP Workload Identity Federation.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GcpIdentity {
    /// Google service account to impersonate, `<name>@<project>.iam.gserviceaccount.com`.
    #[schemars(regex(pattern = r"^[a-z0-9-]+@[a-z0-9-]+\.iam\.gserviceaccount\.com$"))]
    pub service_account: String,
    /// Workload identity provider, `//iam.googleapis.com/projects/…/providers/…`: the audience
    /// of the projected token. Unset on GKE, where the metadata server provides tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_identity_provider: Option<String>,
}

/// How the SPIFFE Workload API socket reaches the signer.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum SpiffeMode {
    /// No SPIFFE socket.
    #[default]
    #[serde(rename = "none")]
    None,
    /// A CSI volume from the SPIFFE CSI driver.
    #[serde(rename = "csi")]
    Csi,
    /// A hostPath directory holding the agent's socket.
    #[serde(rename = "hostPath")]
    HostPath,
}

/// SPIFFE Workload API access.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "self.mode != 'hostPath' || self.socketPath.startsWith('/')", "message": "spiffe.socketPath must be an absolute path on the node"}]))]
#[serde(rename_all = "camelCase", default)]
pub struct SpiffeSpec {
    pub mode: SpiffeMode,
    /// With `hostPath`: the agent socket on the node. With `csi`: the socket's file name
    /// inside the CSI volume.
    pub socket_path: String,
    /// CSI driver name, with `csi`.
    pub csi_driver: String,
}

impl Default for SpiffeSpec {
    fn default() -> Self {
        Self {
            mode: SpiffeMode::None,
            socket_path: "/run/spire/agent-sockets/spire-agent.sock".to_owned(),
            csi_driver: "csi.spiffe.io".to_owned(),
        }
    }
}
