//! Signing one run: format → sign → record in the transparency log → plan its storage.
//! Pure but for the signing and the log (a KMS, Fulcio and Rekor answer over the network):
//! the caller supplies the config and keys, then stores what [`sign_run`] returns
//! (`storage::store`).
//!
//! Must never report success for something it did not do: an unimplemented format, signer
//! or backend is an error, so the run is retried and then marked `failed`, never `true`.

pub mod dsse;
pub mod key;
pub mod keyless;
pub mod kms;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use signet_config::keys::SigningKeyError;
use signet_config::{OciEncoding, SignerConfig, SignerKind, StorageBackend};

use crate::annotations::ANNOTATION_PREFIX;
use crate::formats::statement;
use crate::run::extract::RunArtifacts;
use crate::run::{Run, RunKind};
use crate::storage::oci::layout::simple_signing_payload;
use crate::storage::oci::reference::ImageRef;
use crate::storage::{Attestation, ImageSignature, Signed, backend};
use crate::transparency::timestamp::{TimestampError, Tsa};
use crate::transparency::{Entry, Rekor, TransparencyError};
use dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE, pae};
use key::{Certificate, Key, signer_of};
use keyless::KeylessError;
use kms::KmsError;

pub use key::Keys;

/// Why a run could not be signed and stored. Messages name the run and what failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum SignError {
    #[error("failed to sign {run}: {source}")]
    Key {
        run: String,
        source: std::sync::Arc<SigningKeyError>,
    },
    #[error("failed to sign {run} with {source}")]
    Kms { run: String, source: KmsError },
    #[error("failed to sign {run}: {source}")]
    Keyless { run: String, source: KeylessError },
    #[error("failed to record {run} in the {source}")]
    Transparency {
        run: String,
        source: TransparencyError,
    },
    #[error("failed to timestamp {run}'s signature at the {source}")]
    Timestamp { run: String, source: TimestampError },
    #[error("failed to sign {run}: signer {signer} is not implemented by this signer version")]
    SignerNotImplemented { run: String, signer: &'static str },
    #[error(
        "failed to store {run}: storage backend {backend} is not implemented by this signer version"
    )]
    StorageNotImplemented { run: String, backend: &'static str },
    #[error("failed to store {run} in an OCI registry: {message}")]
    Registry { run: String, message: String },
    #[error("failed to store {run} in storage backend {backend}: {message}")]
    Storage {
        run: String,
        backend: &'static str,
        message: String,
    },
    #[error("failed to sign {run}: {message}")]
    Other { run: String, message: String },
}

impl SignError {
    /// Short machine-readable kind, for the `error_type` metric label.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Key { .. }
            | Self::Kms { .. }
            | Self::Keyless { .. }
            | Self::SignerNotImplemented { .. } => "signer",
            Self::StorageNotImplemented { .. } | Self::Registry { .. } | Self::Storage { .. } => {
                "storage"
            }
            Self::Transparency { .. } => "transparency",
            Self::Timestamp { .. } => "timestamp",
            Self::Other { .. } => "other",
        }
    }
}

/// The Sigstore services that witness a run's signatures: the transparency log, and the
/// timestamp authority whose signed timestamps go into Sigstore bundles.
#[derive(Clone, Copy, Debug, Default)]
pub struct Witnesses<'a> {
    pub tlog: Option<&'a Rekor>,
    pub tsa: Option<&'a Tsa>,
}

/// A verified signed timestamp (DER `TimeStampResp`) over the signature in `envelope_json`,
/// when `tsa` is in use.
async fn timestamp_envelope(
    run: &Run,
    tsa: Option<&Tsa>,
    envelope_json: &[u8],
) -> Result<Option<Vec<u8>>, SignError> {
    let Some(tsa) = tsa else {
        return Ok(None);
    };
    let envelope: Envelope =
        serde_json::from_slice(envelope_json).map_err(|e| SignError::Other {
            run: run.id(),
            message: e.to_string(),
        })?;
    // An unsigned envelope (signer `none`) has nothing to timestamp.
    let Some(signature) = envelope.signatures.first() else {
        return Ok(None);
    };
    let signature = STANDARD
        .decode(&signature.sig)
        .map_err(|e| SignError::Other {
            run: run.id(),
            message: format!("the envelope's signature is not base64: {e}"),
        })?;
    tsa.timestamp(&signature)
        .await
        .map(|t| Some(t.response))
        .map_err(|source| SignError::Timestamp {
            run: run.id(),
            source,
        })
}

/// The images a run built (with `deep`, its children's too), each checked as a reference.
fn images_of(run: &Run, artifacts: &RunArtifacts, deep: bool) -> Result<Vec<ImageRef>, SignError> {
    let mut images = artifacts
        .images(deep)
        .iter()
        .map(|a| {
            let digest = format!(
                "sha256:{}",
                a.digest.get("sha256").cloned().unwrap_or_default()
            );
            ImageRef::new(&a.uri, &digest).map_err(|e| SignError::Other {
                run: run.id(),
                message: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    images.sort();
    images.dedup();
    Ok(images)
}

/// The DSSE envelope (JSON) of `payload`, signed with `key` (unsigned for the `none` signer).
async fn signed_envelope(
    run: &Run,
    key: Option<Key<'_>>,
    payload: &[u8],
) -> Result<Vec<u8>, SignError> {
    let envelope = match key {
        Some(key) => {
            let signature = key.sign(run, &pae(IN_TOTO_PAYLOAD_TYPE, payload)).await?;
            Envelope::with_signature(IN_TOTO_PAYLOAD_TYPE, payload, "", &signature)
        }
        None => Envelope {
            payload_type: IN_TOTO_PAYLOAD_TYPE.to_owned(),
            payload: STANDARD.encode(payload),
            signatures: Vec::new(),
        },
    };
    serde_json::to_vec(&envelope).map_err(|e| SignError::Other {
        run: run.id(),
        message: e.to_string(),
    })
}

/// The run's attestation as a `dsse` entry in the transparency log, when one is in use and
/// the attestation is signed.
async fn record_attestation(
    run: &Run,
    tlog: Option<&Rekor>,
    key: Option<Key<'_>>,
    certificate: Option<&Certificate<'_>>,
    envelope_json: &[u8],
) -> Result<Option<Entry>, SignError> {
    let (Some(tlog), Some(key)) = (tlog, key) else {
        return Ok(None);
    };
    let verifier = key.verifier_pem(run, certificate).await?;
    tlog.dsse(envelope_json, &verifier)
        .await
        .map(Some)
        .map_err(|source| SignError::Transparency {
            run: run.id(),
            source,
        })
}

/// cosign v3's image signature statement: the image's digest as the only subject, predicate
/// type `https://sigstore.dev/cosign/sign/v1`, an empty predicate.
pub fn cosign_sign_statement(image: &ImageRef) -> Vec<u8> {
    let hex = image
        .digest
        .strip_prefix("sha256:")
        .unwrap_or(&image.digest);
    serde_json::to_vec(&serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"digest": {"sha256": hex}}],
        "predicateType": COSIGN_SIGN_PREDICATE_TYPE,
        "predicate": {}
    }))
    .unwrap_or_default()
}

/// The predicate type of cosign v3's image signatures.
pub const COSIGN_SIGN_PREDICATE_TYPE: &str = "https://sigstore.dev/cosign/sign/v1";

/// Image signatures (`artifacts.oci`): cosign's simple-signing payload for each image,
/// signed unwrapped, recorded in the transparency log when one is in use, and handed to
/// each configured backend.
async fn sign_images(
    run: &Run,
    config: &SignerConfig,
    images: &[ImageRef],
    (key, certificate, witnesses): (Key<'_>, Option<&Certificate<'_>>, Witnesses<'_>),
    out: &mut Signed,
) -> Result<(), SignError> {
    let tlog = witnesses.tlog;
    let backends = config
        .oci
        .storage
        .iter()
        .map(|kind| backend(run, *kind))
        .collect::<Result<Vec<_>, _>>()?;
    // With bundles, the image signature is what cosign v3 signs: an in-toto statement about
    // the image's digest (predicate type `cosign/sign/v1`) in a DSSE envelope.
    let bundles = config.storage.oci_encoding == OciEncoding::SigstoreBundle
        && config.oci.storage.contains(&StorageBackend::Oci);
    let public_der = if bundles {
        key.public_der(run).await?
    } else {
        Vec::new()
    };
    let simple_needed = !bundles || config.oci.storage.iter().any(|b| *b != StorageBackend::Oci);
    for image in images {
        let bundle_envelope = if bundles {
            let statement = cosign_sign_statement(image);
            Some(signed_envelope(run, Some(key), &statement).await?)
        } else {
            None
        };
        let timestamp = match &bundle_envelope {
            Some(envelope) => timestamp_envelope(run, witnesses.tsa, envelope).await?,
            None => None,
        };
        let payload = simple_signing_payload(image);
        // The simple-signing signature only for what still stores it (`.sig`, `tekton`): with
        // bundles into OCI alone it would be a wasted KMS call per image.
        let raw_signature = if simple_needed {
            key.sign(run, &payload).await?
        } else {
            Vec::new()
        };
        // Recorded per image, so that a run's entries do not overwrite each other: the
        // bundle's envelope as a `dsse` entry, or the simple-signing signature as a
        // `hashedrekord` one.
        let entry = match (tlog, &bundle_envelope) {
            (Some(_), Some(envelope)) => {
                record_attestation(run, tlog, Some(key), certificate, envelope).await?
            }
            (Some(tlog), None) => {
                let verifier = key.verifier_pem(run, certificate).await?;
                let entry = tlog
                    .hashedrekord(&payload, &raw_signature, &verifier)
                    .await
                    .map_err(|source| SignError::Transparency {
                        run: run.id(),
                        source,
                    })?;
                Some(entry)
            }
            (None, _) => None,
        };
        if let (Some(entry), Some(tlog)) = (&entry, tlog) {
            out.annotations.insert(
                format!("{ANNOTATION_PREFIX}transparency-{}", image.short_digest()),
                tlog.address(entry),
            );
        }
        let signature = ImageSignature {
            image,
            payload: &payload,
            signature: &STANDARD.encode(&raw_signature),
            certificate,
            entry: entry.as_ref(),
            envelope: bundle_envelope.as_deref(),
            public_der: &public_der,
            timestamp: timestamp.as_deref(),
        };
        for backend in &backends {
            backend.image_signature(run, config, &signature, out)?;
        }
    }
    Ok(())
}

/// Signs `run`: its attestation for every configured backend and, for the images it built,
/// cosign image signatures (`artifacts.oci`). What it returns is stored by `storage::store`,
/// which alone adds `signed: "true"`: only because every configured format, signer and
/// backend got this far.
pub async fn sign_run(
    run: &Run,
    children: &[Run],
    config: &SignerConfig,
    keys: &Keys<'_>,
    witnesses: Witnesses<'_>,
) -> Result<Signed, SignError> {
    let tlog = witnesses.tlog;
    // Timestamps travel in Sigstore bundles only.
    let tsa = witnesses
        .tsa
        .filter(|_| config.storage.oci_encoding == OciEncoding::SigstoreBundle);
    let artifact = match run.kind {
        RunKind::TaskRun => &config.taskrun,
        RunKind::PipelineRun => &config.pipelinerun,
    };
    let backends = artifact
        .storage
        .iter()
        .map(|kind| backend(run, *kind))
        .collect::<Result<Vec<_>, _>>()?;
    // Type hinting runs once: the statement and the image signatures read the same value.
    let artifacts = RunArtifacts::of(run, children);
    let statement = statement(run, children, &artifacts, config);
    let payload = serde_json::to_vec(&statement).map_err(|e| SignError::Other {
        run: run.id(),
        message: e.to_string(),
    })?;
    // Rekor v2 refuses a signature it holds and gives no entry back: there, each signature is
    // made fresh, so content signed again (a rebuilt image, a retry) gets an entry of its own.
    let fresh = tlog.is_some_and(|t| t.version == signet_config::RekorVersion::V2);
    let signer = |kind: SignerKind| {
        signer_of(run, config, kind, keys)
            .map(|key| key.map(|k| if fresh { k.hedged() } else { k }))
    };
    let run_key = signer(artifact.signer)?;
    let keyless = keys.certificate(config);
    let run_certificate = keyless
        .as_ref()
        .filter(|_| artifact.signer == SignerKind::X509);
    // A Fulcio certificate lives minutes; Rekor v2 records no time, so only a signed timestamp
    // shows the signature was made while it was valid.
    if keyless.is_some()
        && tsa.is_none()
        && tlog.is_some_and(|t| t.version == signet_config::RekorVersion::V2)
    {
        return Err(SignError::Other {
            run: run.id(),
            message: "keyless signing with Rekor v2 needs a timestamp authority (transparency.timestamp.url) and Sigstore bundles (storage.oci.encoding-format: sigstore-bundle)".to_owned(),
        });
    }
    let envelope_json = signed_envelope(run, run_key, &payload).await?;
    let entry = record_attestation(run, tlog, run_key, run_certificate, &envelope_json).await?;
    let deep = run.kind == RunKind::PipelineRun && config.pipelinerun_deep_inspection;
    let images = images_of(run, &artifacts, deep)?;
    // The attestation's bundle goes to the registry of each image the run built, if any.
    let bundled = artifact.storage.contains(&StorageBackend::Oci) && !images.is_empty();
    let timestamp = timestamp_envelope(run, tsa.filter(|_| bundled), &envelope_json).await?;
    let mut out = Signed::default();
    if let (Some(entry), Some(tlog)) = (&entry, tlog) {
        out.annotations.insert(
            format!("{ANNOTATION_PREFIX}transparency"),
            tlog.address(entry),
        );
    }
    // A Sigstore bundle in a registry carries the key it verifies with.
    let public_der = match run_key {
        Some(key)
            if artifact.storage.contains(&StorageBackend::Oci)
                && config.storage.oci_encoding != OciEncoding::Dsse =>
        {
            key.public_der(run).await?
        }
        _ => Vec::new(),
    };
    let attestation = Attestation {
        payload: &payload,
        envelope: &envelope_json,
        predicate_type: statement["predicateType"].as_str().unwrap_or_default(),
        public_der: &public_der,
        certificate: run_certificate,
        entry: entry.as_ref(),
        timestamp: timestamp.as_deref(),
        images: &images,
    };
    for backend in backends {
        backend.attestation(run, config, &attestation, &mut out)?;
    }
    if !images.is_empty()
        && !config.oci.storage.is_empty()
        && let Some(key) = signer(config.oci.signer)?
    {
        let certificate = keyless
            .as_ref()
            .filter(|_| config.oci.signer == SignerKind::X509);
        sign_images(
            run,
            config,
            &images,
            (key, certificate, Witnesses { tlog, tsa }),
            &mut out,
        )
        .await?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use signet_config::ArtifactFormat;
    use signet_config::keys::{SigningKey, generate_ecdsa_p256};
    use std::collections::BTreeMap;

    fn run() -> Run {
        Run::from_object(
            RunKind::TaskRun,
            json!({"metadata": {"name": "r", "namespace": "n", "uid": "abc"},
            "status": {"conditions": [{"type": "Succeeded", "status": "True"}]}}),
        )
    }

    fn local(key: &SigningKey) -> Keys<'_> {
        Keys {
            x509: Ok(key),
            kms: None,
            keyless: None,
        }
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

    #[tokio::test]
    async fn pipelinerun_annotations_use_the_pipelinerun_key() {
        let key = key();
        let pipelinerun = Run::from_object(
            RunKind::PipelineRun,
            json!({"metadata": {"name": "p", "namespace": "n", "uid": "u"}}),
        );
        let out = sign_run(
            &pipelinerun,
            &[],
            &SignerConfig::default(),
            &local(&key),
            Witnesses::default(),
        )
        .await
        .unwrap()
        .annotations;
        assert!(out.contains_key("chains.tekton.dev/signature-pipelinerun-u"));
    }

    #[tokio::test]
    async fn default_config_stores_a_signed_envelope_on_the_run() {
        let key = key();
        let out = sign_run(
            &run(),
            &[],
            &SignerConfig::default(),
            &local(&key),
            Witnesses::default(),
        )
        .await
        .unwrap()
        .finish();
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

    #[tokio::test]
    async fn unimplemented_signer_backend_or_missing_key_never_yields_signed() {
        let key = key();
        let mut config = SignerConfig::default();
        config.x509.fulcio_enabled = true;
        // Keyless without a certificate (Fulcio refused, or none was asked for) never signs
        // with the Secret's key instead.
        let refused = Keys {
            x509: Ok(&key),
            kms: None,
            keyless: Some(Err(KeylessError::Token("no token".to_owned()))),
        };
        assert!(matches!(
            sign_run(&run(), &[], &config, &refused, Witnesses::default()).await,
            Err(SignError::Keyless { .. })
        ));
        assert!(matches!(
            sign_run(&run(), &[], &config, &local(&key), Witnesses::default()).await,
            Err(SignError::Other { .. })
        ));
        config = SignerConfig::default();
        config.taskrun.format = ArtifactFormat::SlsaV2Alpha4;
        assert!(
            sign_run(&run(), &[], &config, &local(&key), Witnesses::default())
                .await
                .is_ok(),
            "SLSA v1.0 is implemented for TaskRuns"
        );
        let mut config = SignerConfig::default();
        config.taskrun.storage.insert(StorageBackend::Archivista);
        assert!(matches!(
            sign_run(&run(), &[], &config, &local(&key), Witnesses::default()).await,
            Err(SignError::StorageNotImplemented { .. })
        ));
        let missing = std::sync::Arc::new(SigningKeyError::Missing {
            secret: "n/s".into(),
        });
        assert!(matches!(
            sign_run(
                &run(),
                &[],
                &SignerConfig::default(),
                &Keys {
                    x509: Err(missing),
                    kms: None,
                    keyless: None,
                },
                Witnesses::default(),
            )
            .await,
            Err(SignError::Key { .. })
        ));
    }
}
