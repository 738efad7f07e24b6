// Over 450 lines: the signing half of the CR, each field with the user documentation the CRD schema and docs/reference carry.
//! What is signed and how: artifacts, provenance, storage backends, keys, keyless, KMS,
//! transparency and filters. Field meanings follow Tekton Chains' `chains-config` keys.

use k8s_openapi::api::core::v1::SecretKeySelector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Provenance format of TaskRuns and PipelineRuns.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum ArtifactFormat {
    /// SLSA v0.2 (Chains' `in-toto`).
    #[default]
    #[serde(rename = "slsa/v1", alias = "in-toto")]
    SlsaV1,
    /// SLSA v1.0.
    #[serde(rename = "slsa/v2alpha3")]
    SlsaV2Alpha3,
    /// SLSA v1.0 with step results and `isBuildArtifact`.
    #[serde(rename = "slsa/v2alpha4")]
    SlsaV2Alpha4,
}

/// Image signature format.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum OciFormat {
    #[default]
    #[serde(rename = "simplesigning")]
    SimpleSigning,
}

/// Storage backend of TaskRun attestations and image signatures.
#[derive(
    Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    Tekton,
    Oci,
    Gcs,
    Docdb,
    Grafeas,
    Kafka,
    Archivista,
}

/// Storage backend of PipelineRun attestations (Chains has no Kafka storage for them).
#[derive(
    Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum PipelineRunStorageBackend {
    Tekton,
    Oci,
    Gcs,
    Docdb,
    Grafeas,
    Archivista,
}

/// Which signer signs.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SignerKind {
    /// A key from the signing Secret, or a Fulcio certificate when keyless is on.
    #[default]
    X509,
    /// `signing.kms.ref`.
    Kms,
    /// Store without signing.
    None,
}

/// What is signed and stored for each kind of artifact.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ArtifactsSpec {
    pub task_run: TaskRunArtifactSpec,
    pub pipeline_run: PipelineRunArtifactSpec,
    pub oci: OciArtifactSpec,
}

/// A storage list's schema: no default, `atomic`, each backend at most once.
///
/// With a schema default, server-side applying `storage: []` over a non-empty list left the
/// default in place (the API server drops the emptied list and defaulting refills it); without
/// one an omitted list still means the default: serde fills it in from `Default`. With a `set`
/// list, server-side applying `[]` over a list the same manager had applied (`[oci]`) removed
/// the field, which then read as omitted — the default again. Atomic, `[]` stays `[]`.
fn storage_list(schema: &mut schemars::Schema) {
    schema.remove("default");
    schema.insert("x-kubernetes-list-type".to_owned(), "atomic".into());
    schema.insert("maxItems".to_owned(), 7.into());
    schema.insert(
        "x-kubernetes-validations".to_owned(),
        serde_json::json!([{
            "rule": "self.all(x, self.filter(y, y == x).size() == 1)",
            "message": "each storage backend at most once"
        }]),
    );
}

/// TaskRun provenance (Chains' `artifacts.taskrun.*`).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct TaskRunArtifactSpec {
    pub format: ArtifactFormat,
    /// Where to store; empty stores nowhere. Omitted: `[tekton]`.
    #[schemars(transform = storage_list)]
    pub storage: Vec<StorageBackend>,
    pub signer: SignerKind,
}

impl Default for TaskRunArtifactSpec {
    fn default() -> Self {
        Self {
            format: ArtifactFormat::SlsaV1,
            storage: vec![StorageBackend::Tekton],
            signer: SignerKind::X509,
        }
    }
}

/// PipelineRun provenance (Chains' `artifacts.pipelinerun.*`).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct PipelineRunArtifactSpec {
    pub format: ArtifactFormat,
    /// Where to store; empty stores nowhere. Omitted: `[tekton]`.
    #[schemars(transform = storage_list)]
    pub storage: Vec<PipelineRunStorageBackend>,
    pub signer: SignerKind,
    /// Also describe each child TaskRun's steps and results.
    pub deep_inspection: bool,
}

impl Default for PipelineRunArtifactSpec {
    fn default() -> Self {
        Self {
            format: ArtifactFormat::SlsaV1,
            storage: vec![PipelineRunStorageBackend::Tekton],
            signer: SignerKind::X509,
            deep_inspection: false,
        }
    }
}

/// Image signatures (Chains' `artifacts.oci.*`).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct OciArtifactSpec {
    pub format: OciFormat,
    /// Where to store image signatures; empty signs no images. Omitted: `[oci]`.
    #[schemars(transform = storage_list)]
    pub storage: Vec<StorageBackend>,
    pub signer: SignerKind,
}

impl Default for OciArtifactSpec {
    fn default() -> Self {
        Self {
            format: OciFormat::SimpleSigning,
            storage: vec![StorageBackend::Oci],
            signer: SignerKind::X509,
        }
    }
}

/// SLSA build definition type.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum BuildType {
    #[default]
    #[serde(rename = "https://tekton.dev/chains/v2/slsa")]
    Slsa,
    #[serde(rename = "https://tekton.dev/chains/v2/slsa-tekton")]
    SlsaTekton,
}

/// Provenance builder identity.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ProvenanceSpec {
    #[schemars(length(min = 1))]
    pub builder_id: String,
    pub build_type: BuildType,
}

impl Default for ProvenanceSpec {
    fn default() -> Self {
        Self {
            builder_id: "https://tekton.dev/chains/v2".to_owned(),
            build_type: BuildType::Slsa,
        }
    }
}

/// OCI storage encoding.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum OciEncoding {
    /// `.sig`/`.att` tags with cosign's layers.
    #[default]
    Dsse,
    /// Sigstore bundles as OCI 1.1 referrers.
    SigstoreBundle,
}

/// Options of each storage backend.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct StorageSpec {
    pub oci: OciStorage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gcs: Option<GcsStorage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docdb: Option<DocDbStorage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grafeas: Option<GrafeasStorage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pubsub: Option<PubSubStorage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archivista: Option<ArchivistaStorage>,
}

/// OCI registry storage.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct OciStorage {
    /// Store signatures and attestations in this repository instead of next to the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Plain HTTP or unverified TLS to the registry. Only for test registries.
    pub insecure: bool,
    pub encoding: OciEncoding,
}

/// Google Cloud Storage.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GcsStorage {
    #[schemars(length(min = 1))]
    pub bucket: String,
}

/// A go-cloud document store (`firestore://`, `dynamodb://`, `mongo://`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct DocDbStorage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mongo_server_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mongo_server_url_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mongo_server_url_path: Option<String>,
}

/// Grafeas occurrences.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct GrafeasStorage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note_hint: Option<String>,
}

/// Pub/Sub publishing.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct PubSubStorage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka_bootstrap_servers: Option<String>,
}

/// Archivista.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ArchivistaStorage {
    #[schemars(length(min = 1))]
    pub url: String,
}

/// How the signer obtains its signing key or certificate.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SigningSpec {
    pub keys: KeysSpec,
    pub keyless: KeylessSpec,
    pub kms: KmsSpec,
    /// Where the Sigstore trusted root (`trusted_root.json`, as `cosign trusted-root create`
    /// writes it) comes from — a ConfigMap in the target namespace, or a TUF repository — and
    /// with it, optionally, a signing config (`signing_config.v0.2.json`) naming the Fulcio,
    /// Rekor and timestamp authority to use. Fulcio, Rekor and timestamp authority answers are
    /// checked against the trusted root alone, and the operator publishes it beside the public
    /// key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_root: Option<TrustedRootRef>,
    /// Insecure: trust whatever root a Fulcio sends and whatever key a transparency log or
    /// timestamp authority serves when nothing pins them (no `trustedRoot`, no cosign
    /// environment pin, not Sigstore's public instance, whose root is built in). Without it
    /// such a spec is refused. For a test instance only: anyone who can answer in the
    /// service's name can then sign what verifies.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure_trust_on_first_use: bool,
}

/// Where the trusted root (and a signing config) comes from: `configMapName`, or `tuf`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrustedRootRef {
    /// ConfigMap in the target namespace holding the trusted root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub config_map_name: Option<String>,
    /// Its key; `trusted_root.json` when unset.
    #[serde(default = "default_trusted_root_key")]
    pub key: String,
    /// The ConfigMap's key holding a signing config (`signing_config.v0.2.json`); none is
    /// read when unset. Its services replace `signing.keyless.fulcioUrl`,
    /// `transparency.url`/`version` and `transparency.timestampUrl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_config_key: Option<String>,
    /// Fetch the trusted root and signing config from a TUF repository instead (what cosign
    /// v3 does): checked from a pinned root, looked at again every 5 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuf: Option<TufSource>,
}

/// A TUF repository publishing `trusted_root.json` (and `signing_config.v0.2.json`), as
/// Sigstore's does.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TufSource {
    /// The repository's URL; `signing.keyless.tufMirrorUrl` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_url: Option<String>,
    /// ConfigMap in the target namespace holding the root to start from (`root.json` of the
    /// repository, obtained out of band). Unset: Sigstore's public root, built in, which only
    /// Sigstore's mirror (`https://tuf-repo-cdn.sigstore.dev`) is signed by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub root_config_map_name: Option<String>,
    /// Its key; `root.json` when unset.
    #[serde(default = "default_tuf_root_key")]
    pub root_key: String,
}

fn default_trusted_root_key() -> String {
    "trusted_root.json".to_owned()
}

fn default_tuf_root_key() -> String {
    "root.json".to_owned()
}

/// The signing Secret (`cosign.key` + `cosign.password`, or `x509.pem`).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct KeysSpec {
    /// Secret in the target namespace holding the key.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Create an encrypted cosign key pair when the Secret does not exist. An existing
    /// Secret is never rewritten.
    pub generate: bool,
}

impl Default for KeysSpec {
    fn default() -> Self {
        Self {
            secret_name: "signing-secrets".to_owned(),
            generate: true,
        }
    }
}

/// cosign's OIDC provider names.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FulcioProvider {
    Filesystem,
    Spiffe,
    #[serde(rename = "envvar")]
    EnvVar,
    GithubActions,
    GoogleWorkloadIdentity,
    GoogleImpersonate,
    BuildkiteAgent,
}

/// Keyless signing through Fulcio with the pod's OIDC token.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct KeylessSpec {
    pub enabled: bool,
    #[schemars(regex(pattern = r"^https?://"))]
    pub fulcio_url: String,
    /// OIDC issuer Fulcio expects in the token.
    #[schemars(regex(pattern = r"^https?://"))]
    pub issuer: String,
    /// Token source; unset tries each in cosign's order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<FulcioProvider>,
    /// Audience of the projected ServiceAccount token.
    #[schemars(length(min = 1))]
    pub token_audience: String,
    /// Read the identity token from this file instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_path: Option<String>,
    /// TUF mirror for the Fulcio and Rekor roots.
    #[schemars(regex(pattern = r"^https?://"))]
    pub tuf_mirror_url: String,
}

impl Default for KeylessSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            fulcio_url: "https://fulcio.sigstore.dev".to_owned(),
            issuer: "https://oauth2.sigstore.dev/auth".to_owned(),
            provider: None,
            token_audience: "sigstore".to_owned(),
            token_path: None,
            tuf_mirror_url: "https://tuf-repo-cdn.sigstore.dev".to_owned(),
        }
    }
}

/// A key in a cloud KMS or Vault transit.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct KmsSpec {
    /// `awskms://…`, `gcpkms://…`, `azurekms://…` or `hashivault://…`.
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(awskms|gcpkms|azurekms|hashivault)://.+"))]
    pub kms_ref: Option<String>,
    pub auth: KmsAuthSpec,
}

/// Vault authentication for `hashivault://` keys.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "!(has(self.tokenSecretRef) && has(self.tokenPath))", "message": "signing.kms.auth: set tokenSecretRef or tokenPath, not both"}]))]
#[serde(rename_all = "camelCase", default)]
pub struct KmsAuthSpec {
    /// Vault address.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub address: Option<String>,
    /// Secret key holding a Vault token; mounted into the signer as a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeySelector>,
    /// File holding a Vault token, already present in the pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_path: Option<String>,
    /// Vault JWT/OIDC login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc: Option<VaultOidcAuth>,
    /// SPIFFE JWT-SVID used as the login JWT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spire: Option<VaultSpireAuth>,
    /// Allows an `http://` address that is not on loopback: the token or login JWT, and every
    /// signature, then cross the network in the clear. Off by default.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

/// Vault JWT auth.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct VaultOidcAuth {
    /// Mount path of the JWT auth method, e.g. `jwt`.
    pub path: String,
    pub role: String,
    /// JWT to log in with. When unset, the operator projects a ServiceAccount token for
    /// `audience` and logs in with it — never the pod's API-server token, which whoever sees
    /// the login could replay against the API server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_path: Option<String>,
    /// Audience of the projected token (the Vault role's `bound_audiences`); `vault` when
    /// unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

/// SPIFFE JWT-SVID for Vault login.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct VaultSpireAuth {
    /// Audience of the JWT-SVID.
    pub audience: String,
}

/// Transparency log mode.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TransparencyMode {
    #[default]
    Disabled,
    Enabled,
    /// Only runs annotated `chains.tekton.dev/transparency-upload: "true"`.
    Manual,
}

/// Rekor uploads.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct TransparencySpec {
    pub mode: TransparencyMode,
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: String,
    /// Which Rekor API `url` speaks: `v1` (Trillian-backed) or `v2` (rekor-tiles).
    pub version: RekorVersion,
    /// An RFC 3161 timestamp authority (e.g. `https://timestamp.sigstore.dev/api/v1/timestamp`)
    /// whose signed timestamps go into Sigstore bundles (`storage.oci.encoding:
    /// sigstore-bundle`). Needed for keyless signing with Rekor v2; independent of `mode`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub timestamp_url: Option<String>,
}

impl Default for TransparencySpec {
    fn default() -> Self {
        Self {
            mode: TransparencyMode::Disabled,
            url: "https://rekor.sigstore.dev".to_owned(),
            version: RekorVersion::V1,
            timestamp_url: None,
        }
    }
}

/// A Rekor API version.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RekorVersion {
    #[default]
    V1,
    V2,
}

/// Which runs are signed.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct FilterSpec {
    /// Extra `spec.managedBy` values to sign (unset and `tekton.dev/pipeline` always are).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub managed_by: Vec<String>,
}
