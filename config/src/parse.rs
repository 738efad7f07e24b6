//! Reading `SignerConfig` from the ConfigMap's key/value map, with Chains' defaults.
//!
//! Unlike Chains, a malformed value is an error naming the key and what it accepts; nothing
//! is silently replaced by a default.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    ArtifactConfig, ArtifactFormat, BuildType, FulcioProvider, OciEncoding, OciFormat,
    RekorVersion, SignerConfig, SignerKind, StorageBackend, TransparencyMode,
};

/// A configuration value the signer cannot accept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read config key {key}: {value:?} is not one of: {accepted}")]
    NotAllowed {
        key: String,
        value: String,
        accepted: String,
    },
    #[error(
        "failed to read config key {key}: {value:?} is not a boolean (use \"true\" or \"false\")"
    )]
    NotABool { key: String, value: String },
    #[error(
        "failed to read config key {key}: {value:?} is a name from Chains' docs that cosign does not know; use {suggestion}"
    )]
    DocumentedProviderName {
        key: String,
        value: String,
        suggestion: &'static str,
    },
    #[error(
        "failed to read config key {key}: {backend:?} is not allowed for this artifact kind (accepted: {accepted})"
    )]
    BackendNotAllowed {
        key: String,
        backend: String,
        accepted: String,
    },
    #[error(
        "nothing pins the trust in {services}: set sigstore.trusted-root (spec.signing.trustedRoot), cosign's pins (SIGSTORE_ROOT_FILE, SIGSTORE_REKOR_PUBLIC_KEY, SIGSTORE_TSA_CERTIFICATE_FILE), or {key}: \"true\" (spec.signing.insecureTrustOnFirstUse) to trust whatever they serve"
    )]
    Unpinned { services: String, key: &'static str },
    #[error("failed to read config key {key}: {source}")]
    TrustedRoot {
        key: String,
        source: crate::trusted_root::TrustedRootError,
    },
}

/// The map being read, with the lookups every key needs.
struct Keys<'a>(&'a BTreeMap<String, String>);

impl Keys<'_> {
    /// The trimmed value, `None` when absent or blank.
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    fn string(&self, key: &str) -> Option<String> {
        self.get(key).map(str::to_owned)
    }

    fn string_or(&self, key: &str, default: &str) -> String {
        self.get(key).unwrap_or(default).to_owned()
    }

    fn boolean(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(ConfigError::NotABool {
                key: key.to_owned(),
                value: other.to_owned(),
            }),
        }
    }

    fn spelled<T>(
        &self,
        key: &str,
        default: T,
        parse: fn(&str) -> Option<T>,
        accepted: fn() -> String,
    ) -> Result<T, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(value) => parse(value).ok_or_else(|| ConfigError::NotAllowed {
                key: key.to_owned(),
                value: value.to_owned(),
                accepted: accepted(),
            }),
        }
    }

    /// A comma-separated backend set; present but blank means "store nowhere".
    fn storage(
        &self,
        key: &str,
        default: StorageBackend,
        allowed: &[StorageBackend],
    ) -> Result<BTreeSet<StorageBackend>, ConfigError> {
        let Some(raw) = self.0.get(key) else {
            return Ok(BTreeSet::from([default]));
        };
        let accepted = || {
            allowed
                .iter()
                .map(|b| b.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut set = BTreeSet::new();
        for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match StorageBackend::parse(name) {
                Some(b) if allowed.contains(&b) => {
                    set.insert(b);
                }
                Some(_) => {
                    return Err(ConfigError::BackendNotAllowed {
                        key: key.to_owned(),
                        backend: name.to_owned(),
                        accepted: accepted(),
                    });
                }
                None => {
                    return Err(ConfigError::NotAllowed {
                        key: key.to_owned(),
                        value: name.to_owned(),
                        accepted: accepted(),
                    });
                }
            }
        }
        Ok(set)
    }

    fn storage_config(&self) -> Result<super::StorageConfig, ConfigError> {
        let d = SignerConfig::default();
        Ok(super::StorageConfig {
            oci_repository: self.string("storage.oci.repository"),
            oci_insecure: self.boolean("storage.oci.repository.insecure", false)?,
            oci_encoding: self.spelled(
                "storage.oci.encoding-format",
                OciEncoding::Dsse,
                OciEncoding::parse,
                OciEncoding::accepted,
            )?,
            gcs_bucket: self.string("storage.gcs.bucket"),
            docdb_url: self.string("storage.docdb.url"),
            docdb_mongo_server_url: self.string("storage.docdb.mongo-server-url"),
            docdb_mongo_server_url_dir: self.string("storage.docdb.mongo-server-url-dir"),
            docdb_mongo_server_url_path: self.string("storage.docdb.mongo-server-url-path"),
            grafeas_project_id: self.string("storage.grafeas.projectid"),
            grafeas_note_id: self.string("storage.grafeas.noteid"),
            grafeas_note_hint: self
                .string_or("storage.grafeas.notehint", &d.storage.grafeas_note_hint),
            pubsub_provider: self.string("storage.pubsub.provider"),
            pubsub_topic: self.string("storage.pubsub.topic"),
            pubsub_kafka_bootstrap_servers: self.string("storage.pubsub.kafka.bootstrap.servers"),
            archivista_url: self.string("storage.archivista.url"),
        })
    }

    fn x509(
        &self,
        fulcio_provider: Option<FulcioProvider>,
    ) -> Result<super::X509Config, ConfigError> {
        let d = SignerConfig::default();
        Ok(super::X509Config {
            fulcio_enabled: self.boolean("signers.x509.fulcio.enabled", false)?,
            fulcio_address: self.string_or("signers.x509.fulcio.address", &d.x509.fulcio_address),
            fulcio_issuer: self.string_or("signers.x509.fulcio.issuer", &d.x509.fulcio_issuer),
            fulcio_provider,
            identity_token_file: self.string("signers.x509.identity.token.file"),
            tuf_mirror_url: self.string_or("signers.x509.tuf.mirror.url", &d.x509.tuf_mirror_url),
        })
    }

    fn kms(&self) -> Result<super::KmsConfig, ConfigError> {
        Ok(super::KmsConfig {
            kmsref: self.string("signers.kms.kmsref"),
            auth_address: self.string("signers.kms.auth.address"),
            auth_token: self
                .string("signers.kms.auth.token")
                .map(crate::redacted::Redacted::new),
            auth_token_path: self.string("signers.kms.auth.token-path"),
            auth_oidc_path: self.string("signers.kms.auth.oidc.path"),
            auth_oidc_role: self.string("signers.kms.auth.oidc.role"),
            auth_oidc_token_path: self.string("signers.kms.auth.oidc.token-path"),
            auth_spire_sock: self.string("signers.kms.auth.spire.sock"),
            auth_spire_audience: self.string("signers.kms.auth.spire.audience"),
            auth_insecure: self.boolean("signers.kms.auth.insecure", false)?,
        })
    }

    fn artifact(
        &self,
        kind: &str,
        allowed: &[StorageBackend],
    ) -> Result<ArtifactConfig, ConfigError> {
        Ok(ArtifactConfig {
            format: self.spelled(
                &format!("artifacts.{kind}.format"),
                ArtifactFormat::InToto,
                ArtifactFormat::parse,
                ArtifactFormat::accepted,
            )?,
            storage: self.storage(
                &format!("artifacts.{kind}.storage"),
                StorageBackend::Tekton,
                allowed,
            )?,
            signer: self.spelled(
                &format!("artifacts.{kind}.signer"),
                SignerKind::X509,
                SignerKind::parse,
                SignerKind::accepted,
            )?,
        })
    }
}

/// Backends a PipelineRun may use: Chains has no Kafka storage for them.
pub const PIPELINERUN_BACKENDS: &[StorageBackend] = &[
    StorageBackend::Tekton,
    StorageBackend::Oci,
    StorageBackend::Gcs,
    StorageBackend::DocDb,
    StorageBackend::Grafeas,
    StorageBackend::Archivista,
];

impl SignerConfig {
    /// Reads the ConfigMap's data. Absent keys take Chains' defaults; unknown keys are ignored
    /// as Chains ignores them.
    pub fn parse(data: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let keys = Keys(data);
        let d = SignerConfig::default();
        let provider_key = "signers.x509.fulcio.provider";
        let fulcio_provider = match keys.get(provider_key) {
            Some("google") => {
                return Err(ConfigError::DocumentedProviderName {
                    key: provider_key.to_owned(),
                    value: "google".to_owned(),
                    suggestion: "google-workload-identity or google-impersonate",
                });
            }
            Some("github") => {
                return Err(ConfigError::DocumentedProviderName {
                    key: provider_key.to_owned(),
                    value: "github".to_owned(),
                    suggestion: "github-actions",
                });
            }
            Some(_) => Some(keys.spelled(
                provider_key,
                FulcioProvider::Filesystem,
                FulcioProvider::parse,
                FulcioProvider::accepted,
            )?),
            None => None,
        };
        Ok(SignerConfig {
            taskrun: keys.artifact("taskrun", StorageBackend::ALL)?,
            pipelinerun: keys.artifact("pipelinerun", PIPELINERUN_BACKENDS)?,
            pipelinerun_deep_inspection: keys
                .boolean("artifacts.pipelinerun.enable-deep-inspection", false)?,
            oci: super::OciArtifactConfig {
                format: keys.spelled(
                    "artifacts.oci.format",
                    OciFormat::SimpleSigning,
                    OciFormat::parse,
                    OciFormat::accepted,
                )?,
                storage: keys.storage(
                    "artifacts.oci.storage",
                    StorageBackend::Oci,
                    StorageBackend::ALL,
                )?,
                signer: keys.spelled(
                    "artifacts.oci.signer",
                    SignerKind::X509,
                    SignerKind::parse,
                    SignerKind::accepted,
                )?,
            },
            storage: keys.storage_config()?,
            transparency: super::TransparencyConfig {
                mode: keys.spelled(
                    "transparency.enabled",
                    TransparencyMode::Disabled,
                    TransparencyMode::parse,
                    TransparencyMode::accepted,
                )?,
                url: keys.string_or("transparency.url", &d.transparency.url),
                version: keys.spelled(
                    "transparency.version",
                    RekorVersion::V1,
                    RekorVersion::parse,
                    RekorVersion::accepted,
                )?,
                timestamp_url: keys.string("transparency.timestamp.url"),
            },
            x509: keys.x509(fulcio_provider)?,
            kms: keys.kms()?,
            builder_id: keys.string_or("builder.id", &d.builder_id),
            build_type: keys.spelled(
                "builddefinition.buildtype",
                BuildType::Slsa,
                BuildType::parse,
                BuildType::accepted,
            )?,
            managed_by: keys
                .get("filter.managed-by")
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            trusted_root: keys
                .get(TRUSTED_ROOT_KEY)
                .map(|text| {
                    crate::trusted_root::TrustedRoot::parse(text).map_err(|source| {
                        ConfigError::TrustedRoot {
                            key: TRUSTED_ROOT_KEY.to_owned(),
                            source,
                        }
                    })
                })
                .transpose()?,
            insecure_trust_on_first_use: keys.boolean(TOFU_KEY, false)?,
        })
    }
}

/// The key holding the trusted root's JSON.
pub const TRUSTED_ROOT_KEY: &str = "sigstore.trusted-root";
/// The key that lets the signer trust what unpinned Sigstore services serve.
pub const TOFU_KEY: &str = "sigstore.insecure-trust-on-first-use";
