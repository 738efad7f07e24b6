//! One run through the signing pipeline: format → sign → store (as annotations). Pure: the
//! caller supplies the config and key and writes the returned annotations.
//!
//! Must never report success for something it did not do: an unimplemented format, signer
//! or backend is an error, so the run is retried and then marked `failed`, never `true`.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::config::{SignerConfig, SignerKind, StorageBackend};
use crate::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use crate::formats::statement;
use crate::keys::{SigningKey, SigningKeyError};
use crate::run::{ANNOTATION_PREFIX, Run, RunKind, SIGNED};

/// Why a run could not be signed and stored. Messages name the run and what failed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("failed to sign {run}: {source}")]
    Key {
        run: String,
        source: std::sync::Arc<SigningKeyError>,
    },
    #[error("failed to sign {run}: signer {signer} is not implemented by this signer version")]
    SignerNotImplemented { run: String, signer: &'static str },
    #[error(
        "failed to store {run}: storage backend {backend} is not implemented by this signer version"
    )]
    StorageNotImplemented { run: String, backend: &'static str },
    #[error("failed to sign {run}: {message}")]
    Other { run: String, message: String },
}

impl SignError {
    /// Short machine-readable kind, for the `error_type` metric label.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Key { .. } | Self::SignerNotImplemented { .. } => "signer",
            Self::StorageNotImplemented { .. } => "storage",
            Self::Other { .. } => "other",
        }
    }
}

/// Signs `run` and returns the annotations to write: `payload-`, `signature-`, `cert-`,
/// `chain-` for the run, and `signed: "true"` — only when every configured backend is done.
pub fn sign_run(
    run: &Run,
    children: &[Run],
    config: &SignerConfig,
    key: Result<&SigningKey, std::sync::Arc<SigningKeyError>>,
) -> Result<BTreeMap<String, String>, SignError> {
    let artifact = match run.kind {
        RunKind::TaskRun => &config.taskrun,
        RunKind::PipelineRun => &config.pipelinerun,
    };
    let statement = statement(run, children, config);
    let payload = serde_json::to_vec(&statement).map_err(|e| SignError::Other {
        run: run.id(),
        message: e.to_string(),
    })?;
    let envelope = match artifact.signer {
        SignerKind::X509 if config.x509.fulcio_enabled => {
            return Err(SignError::SignerNotImplemented {
                run: run.id(),
                signer: "x509 (keyless, Fulcio)",
            });
        }
        SignerKind::X509 => {
            let key = key.map_err(|source| SignError::Key {
                run: run.id(),
                source,
            })?;
            Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &payload, "", |pae| {
                key.sign(pae).map_err(|source| SignError::Key {
                    run: run.id(),
                    source: std::sync::Arc::new(source),
                })
            })?
        }
        SignerKind::Kms => {
            return Err(SignError::SignerNotImplemented {
                run: run.id(),
                signer: "kms",
            });
        }
        SignerKind::None => Envelope {
            payload_type: IN_TOTO_PAYLOAD_TYPE.to_owned(),
            payload: STANDARD.encode(&payload),
            signatures: Vec::new(),
        },
    };
    let envelope_json = serde_json::to_vec(&envelope).map_err(|e| SignError::Other {
        run: run.id(),
        message: e.to_string(),
    })?;
    let mut out = BTreeMap::new();
    for backend in &artifact.storage {
        match backend {
            StorageBackend::Tekton => {
                let key = run.storage_key();
                out.insert(
                    format!("{ANNOTATION_PREFIX}payload-{key}"),
                    STANDARD.encode(&payload),
                );
                out.insert(
                    format!("{ANNOTATION_PREFIX}signature-{key}"),
                    STANDARD.encode(&envelope_json),
                );
                out.insert(format!("{ANNOTATION_PREFIX}cert-{key}"), String::new());
                out.insert(format!("{ANNOTATION_PREFIX}chain-{key}"), String::new());
            }
            other => {
                return Err(SignError::StorageNotImplemented {
                    run: run.id(),
                    backend: other.as_str(),
                });
            }
        }
    }
    out.insert(SIGNED.to_owned(), "true".to_owned());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ArtifactFormat;
    use crate::keys::generate_ecdsa_p256;
    use serde_json::json;

    fn run() -> Run {
        Run::from_object(
            RunKind::TaskRun,
            json!({"metadata": {"name": "r", "namespace": "n", "uid": "abc"},
            "status": {"conditions": [{"type": "Succeeded", "status": "True"}]}}),
        )
    }

    fn key() -> SigningKey {
        let pair = generate_ecdsa_p256().unwrap();
        let data = BTreeMap::from([
            ("cosign.key".to_owned(), pair.private_pem.into_bytes()),
            (
                "cosign.password".to_owned(),
                pair.password.as_bytes().to_vec(),
            ),
        ]);
        SigningKey::from_secret_data("n/s", &data).unwrap()
    }

    #[test]
    fn pipelinerun_annotations_use_the_pipelinerun_key() {
        let key = key();
        let pipelinerun = Run::from_object(
            RunKind::PipelineRun,
            json!({"metadata": {"name": "p", "namespace": "n", "uid": "u"}}),
        );
        let out = sign_run(&pipelinerun, &[], &SignerConfig::default(), Ok(&key)).unwrap();
        assert!(out.contains_key("chains.tekton.dev/signature-pipelinerun-u"));
    }

    #[test]
    fn default_config_stores_a_signed_envelope_on_the_run() {
        let key = key();
        let out = sign_run(&run(), &[], &SignerConfig::default(), Ok(&key)).unwrap();
        assert_eq!(out["chains.tekton.dev/signed"], "true");
        let envelope: Envelope = serde_json::from_slice(
            &STANDARD
                .decode(&out["chains.tekton.dev/signature-taskrun-abc"])
                .unwrap(),
        )
        .unwrap();
        assert_eq!(envelope.payload_type, "application/vnd.in-toto+json");
        assert_eq!(envelope.signatures.len(), 1);
        assert_eq!(
            envelope.payload,
            out["chains.tekton.dev/payload-taskrun-abc"]
        );
    }

    #[test]
    fn unimplemented_signer_backend_or_missing_key_never_yields_signed() {
        let key = key();
        let mut config = SignerConfig::default();
        config.x509.fulcio_enabled = true;
        assert!(matches!(
            sign_run(&run(), &[], &config, Ok(&key)),
            Err(SignError::SignerNotImplemented { .. })
        ));
        config = SignerConfig::default();
        config.taskrun.format = ArtifactFormat::SlsaV2Alpha4;
        assert!(
            sign_run(&run(), &[], &config, Ok(&key)).is_ok(),
            "SLSA v1.0 is implemented for TaskRuns"
        );
        let mut config = SignerConfig::default();
        config.taskrun.storage.insert(StorageBackend::Oci);
        assert!(matches!(
            sign_run(&run(), &[], &config, Ok(&key)),
            Err(SignError::StorageNotImplemented { .. })
        ));
        let missing = std::sync::Arc::new(SigningKeyError::Missing {
            secret: "n/s".into(),
        });
        assert!(matches!(
            sign_run(&run(), &[], &SignerConfig::default(), Err(missing)),
            Err(SignError::Key { .. })
        ));
    }
}
