//! One run through the signing pipeline: format → sign → store. Pure but for the signing
//! itself (a KMS signs over the network): the caller supplies the config and keys, pushes the
//! returned OCI layers, then writes the returned annotations.
//!
//! Must never report success for something it did not do: an unimplemented format, signer
//! or backend is an error, so the run is retried and then marked `failed`, never `true`.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::config::{OciEncoding, SignerConfig, SignerKind, StorageBackend};
use crate::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE, pae};
use crate::extract::extract;
use crate::formats::statement;
use crate::keyless::{Ephemeral, KeylessError};
use crate::keys::{SigningKey, SigningKeyError, verify_signature};
use crate::kms::{KmsError, RemoteSigner};
use crate::oci::layout::{
    BUNDLE_ANNOTATION, BUNDLE_CONTENT_ANNOTATION, BUNDLE_PREDICATE_TYPE_ANNOTATION,
    CERTIFICATE_ANNOTATION, CHAIN_ANNOTATION, DSSE_ENVELOPE, Layer, PREDICATE_TYPE_ANNOTATION,
    SIGNATURE_ANNOTATION, SIGSTORE_BUNDLE_V03, SIMPLE_SIGNING, dsse_bundle, simple_signing_payload,
};
use crate::oci::reference::ImageRef;
use crate::oci::{Kind, Push};
use crate::run::{ANNOTATION_PREFIX, Run, RunKind, SIGNED};
use crate::transparency::{Rekor, TransparencyError};

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
    #[error("failed to sign {run}: signer {signer} is not implemented by this signer version")]
    SignerNotImplemented { run: String, signer: &'static str },
    #[error(
        "failed to store {run}: storage backend {backend} is not implemented by this signer version"
    )]
    StorageNotImplemented { run: String, backend: &'static str },
    #[error("failed to store {run} in an OCI registry: {message}")]
    Registry { run: String, message: String },
    #[error("failed to sign {run}: {message}")]
    Other { run: String, message: String },
}

/// What signing a run produced: OCI layers to push, then the annotations to write (which
/// include `signed: "true"`, so they are written only after every push succeeded).
#[derive(Debug)]
pub struct Signed {
    pub annotations: BTreeMap<String, String>,
    pub pushes: Vec<Push>,
}

impl SignError {
    /// Short machine-readable kind, for the `error_type` metric label.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Key { .. }
            | Self::Kms { .. }
            | Self::Keyless { .. }
            | Self::SignerNotImplemented { .. } => "signer",
            Self::StorageNotImplemented { .. } | Self::Registry { .. } => "storage",
            Self::Transparency { .. } => "transparency",
            Self::Other { .. } => "other",
        }
    }
}

/// The images a run reports (and, for a PipelineRun with deep inspection, its children's),
/// each checked as a reference.
fn images_of(run: &Run, children: &[Run], deep: bool) -> Result<Vec<ImageRef>, SignError> {
    let mut found: Vec<_> = extract(run, false).images;
    if deep {
        for child in children {
            found.extend(extract(child, false).images);
        }
    }
    let mut images = found
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

/// The attestation as an OCI layer: the DSSE envelope for the `.att` tag (`dsse` encoding),
/// or a Sigstore bundle around it for a referrer (`sigstore-bundle`).
fn attestation_layer(
    run: &Run,
    config: &SignerConfig,
    envelope_json: &[u8],
    (public_der, certificate, entry): (
        &[u8],
        Option<&(&str, String)>,
        Option<&crate::transparency::Entry>,
    ),
    predicate_type: &str,
) -> Result<Layer, SignError> {
    if config.storage.oci_encoding == OciEncoding::Dsse {
        return Ok(Layer {
            media_type: DSSE_ENVELOPE,
            data: envelope_json.to_vec(),
            annotations: with_bundle(
                with_certificate(
                    BTreeMap::from([
                        (SIGNATURE_ANNOTATION.to_owned(), String::new()),
                        (
                            PREDICATE_TYPE_ANNOTATION.to_owned(),
                            predicate_type.to_owned(),
                        ),
                    ]),
                    certificate,
                ),
                entry,
            ),
        });
    }
    if certificate.is_some() || entry.is_some() {
        return Err(SignError::SignerNotImplemented {
            run: run.id(),
            signer: "keyless or transparency with storage.oci.encoding sigstore-bundle",
        });
    }
    let bundle = dsse_bundle(envelope_json, public_der).map_err(|message| SignError::Other {
        run: run.id(),
        message,
    })?;
    Ok(Layer {
        media_type: SIGSTORE_BUNDLE_V03,
        data: bundle,
        annotations: BTreeMap::from([
            (
                BUNDLE_CONTENT_ANNOTATION.to_owned(),
                "dsse-envelope".to_owned(),
            ),
            (
                BUNDLE_PREDICATE_TYPE_ANNOTATION.to_owned(),
                predicate_type.to_owned(),
            ),
        ]),
    })
}

/// Chains' annotations for a run's attestation in `tekton` storage: payload, signature, and
/// the certificate and chain when signed keyless.
fn tekton_annotations(
    run: &Run,
    payload: &[u8],
    envelope_json: &[u8],
    certificate: Option<&(&str, String)>,
) -> Vec<(String, String)> {
    let key = run.storage_key();
    [
        ("payload", STANDARD.encode(payload)),
        ("signature", STANDARD.encode(envelope_json)),
        (
            "cert",
            certificate.map_or_else(String::new, |(c, _)| (*c).to_owned()),
        ),
        (
            "chain",
            certificate.map_or_else(String::new, |(_, c)| c.clone()),
        ),
    ]
    .into_iter()
    .map(|(name, value)| (format!("{ANNOTATION_PREFIX}{name}-{key}"), value))
    .collect()
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
    certificate: Option<&(&str, String)>,
    envelope_json: &[u8],
) -> Result<Option<crate::transparency::Entry>, SignError> {
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

/// `annotations` plus cosign's bundle annotation when the signature is in a transparency log.
fn with_bundle(
    mut annotations: BTreeMap<String, String>,
    entry: Option<&crate::transparency::Entry>,
) -> BTreeMap<String, String> {
    if let Some(entry) = entry {
        annotations.insert(BUNDLE_ANNOTATION.to_owned(), entry.bundle());
    }
    annotations
}

/// `annotations` plus cosign's certificate and chain annotations when signed keyless.
fn with_certificate(
    mut annotations: BTreeMap<String, String>,
    certificate: Option<&(&str, String)>,
) -> BTreeMap<String, String> {
    if let Some((leaf, chain)) = certificate {
        annotations.insert(CERTIFICATE_ANNOTATION.to_owned(), (*leaf).to_owned());
        annotations.insert(CHAIN_ANNOTATION.to_owned(), chain.clone());
    }
    annotations
}

/// Where `image`'s `.sig` and `.att` go: next to it, or in `storage.oci.repository`.
fn stored_at(run: &Run, config: &SignerConfig, image: &ImageRef) -> Result<ImageRef, SignError> {
    match &config.storage.oci_repository {
        Some(repository) => image.stored_in(repository).map_err(|e| SignError::Other {
            run: run.id(),
            message: format!("storage.oci.repository: {e}"),
        }),
        None => Ok(image.clone()),
    }
}

/// Image signatures (`artifacts.oci`): cosign's simple-signing payload for each image,
/// signed unwrapped, into each configured backend.
async fn sign_images(
    run: &Run,
    config: &SignerConfig,
    images: &[ImageRef],
    (key, certificate, tlog): (Key<'_>, Option<&(&str, String)>, Option<&Rekor>),
    out: &mut Signed,
) -> Result<(), SignError> {
    for image in images {
        let payload = simple_signing_payload(image);
        let raw_signature = key.sign(run, &payload).await?;
        let signature = STANDARD.encode(&raw_signature);
        let hex = image.digest.trim_start_matches("sha256:");
        let short = &hex[..12.min(hex.len())];
        // Recorded per image, so that a run's entries do not overwrite each other.
        let entry = match tlog {
            Some(tlog) => {
                let verifier = key.verifier_pem(run, certificate).await?;
                let entry = tlog
                    .hashedrekord(&payload, &raw_signature, &verifier)
                    .await
                    .map_err(|source| SignError::Transparency {
                        run: run.id(),
                        source,
                    })?;
                out.annotations.insert(
                    format!("{ANNOTATION_PREFIX}transparency-{short}"),
                    entry.address(&tlog.url),
                );
                Some(entry)
            }
            None => None,
        };
        for backend in &config.oci.storage {
            match backend {
                StorageBackend::Oci => out.pushes.push(Push {
                    image: image.clone(),
                    target: stored_at(run, config, image)?,
                    kind: Kind::Signature,
                    layer: Layer {
                        media_type: SIMPLE_SIGNING,
                        data: payload.clone(),
                        annotations: with_bundle(
                            with_certificate(
                                BTreeMap::from([(
                                    SIGNATURE_ANNOTATION.to_owned(),
                                    signature.clone(),
                                )]),
                                certificate,
                            ),
                            entry.as_ref(),
                        ),
                    },
                }),
                StorageBackend::Tekton => {
                    out.annotations.insert(
                        format!("{ANNOTATION_PREFIX}payload-{short}"),
                        STANDARD.encode(&payload),
                    );
                    out.annotations.insert(
                        format!("{ANNOTATION_PREFIX}signature-{short}"),
                        signature.clone(),
                    );
                }
                other => {
                    return Err(SignError::StorageNotImplemented {
                        run: run.id(),
                        backend: other.as_str(),
                    });
                }
            }
        }
    }
    Ok(())
}

/// What a signer signs with: a key from the signing Secret, or a key in a KMS.
#[derive(Clone, Copy, Debug)]
pub enum Key<'a> {
    Local(&'a SigningKey),
    Remote(&'a dyn RemoteSigner),
}

impl Key<'_> {
    /// Signs `message` and checks the signature against the key's public key before it is
    /// used: a KMS's answer is untrusted input, and a signature that does not verify must
    /// never be stored (a retryable failure naming the key instead).
    async fn sign(self, run: &Run, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let signature = match self {
            Key::Local(key) => key.sign(message).map_err(|source| SignError::Key {
                run: run.id(),
                source: std::sync::Arc::new(source),
            })?,
            Key::Remote(kms) => kms.sign(message).await.map_err(|source| SignError::Kms {
                run: run.id(),
                source,
            })?,
        };
        // A local key's public half is at hand; a KMS's is cached by its client.
        let checked = match self {
            Key::Local(key) => verify_signature(key.public_der(), message, &signature),
            Key::Remote(_) => verify_signature(&self.public_der(run).await?, message, &signature),
        };
        match checked {
            Ok(()) => Ok(signature),
            Err(e) => Err(match self {
                Key::Local(key) => SignError::Key {
                    run: run.id(),
                    source: std::sync::Arc::new(SigningKeyError::Sign {
                        secret: key.secret().to_owned(),
                        reason: e.to_string(),
                    }),
                },
                Key::Remote(kms) => SignError::Kms {
                    run: run.id(),
                    source: KmsError::Remote {
                        uri: kms.uri().to_owned(),
                        message: format!("answered a signature that cannot be used: {e}"),
                    },
                },
            }),
        }
    }

    /// What a verifier (Rekor) checks this key's signatures with: the certificate when keyless,
    /// else the public key (PEM).
    async fn verifier_pem(
        self,
        run: &Run,
        certificate: Option<&(&str, String)>,
    ) -> Result<String, SignError> {
        if let Some((leaf, _)) = certificate {
            return Ok((*leaf).to_owned());
        }
        match self {
            Key::Local(key) => Ok(key.public_pem.clone()),
            Key::Remote(_) => {
                let der = self.public_der(run).await?;
                let b64 = STANDARD.encode(der);
                let lines: Vec<&str> = b64
                    .as_bytes()
                    .chunks(64)
                    .filter_map(|c| std::str::from_utf8(c).ok())
                    .collect();
                Ok(format!(
                    "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
                    lines.join("\n")
                ))
            }
        }
    }

    async fn public_der(self, run: &Run) -> Result<Vec<u8>, SignError> {
        match self {
            Key::Local(key) => Ok(key.public_der().to_vec()),
            Key::Remote(kms) => kms.public_der().await.map_err(|source| SignError::Kms {
                run: run.id(),
                source,
            }),
        }
    }
}

/// The keys a run may be signed with: the signing Secret's (or why it is unusable) and, when
/// `signers.kms.kmsref` is set, the KMS key (or why it cannot be used).
#[derive(Clone, Debug)]
pub struct Keys<'a> {
    pub x509: Result<&'a SigningKey, std::sync::Arc<SigningKeyError>>,
    pub kms: Option<Result<&'a dyn RemoteSigner, KmsError>>,
    /// With `signers.x509.fulcio.enabled`: this run's key and certificate (or why not).
    pub keyless: Option<Result<&'a Ephemeral, KeylessError>>,
}

impl Keys<'_> {
    /// The certificate and chain (PEM) that go with `x509` signatures: Fulcio's, when keyless.
    fn certificate(&self, config: &SignerConfig) -> Option<(&str, String)> {
        match &self.keyless {
            Some(Ok(e)) if config.x509.fulcio_enabled => Some((e.certificate(), e.chain_pem())),
            _ => None,
        }
    }
}

/// The key `kind` signs with: `None` for `none`; an error for signers not implemented yet
/// or a key that could not be loaded.
fn signer_of<'k>(
    run: &Run,
    config: &SignerConfig,
    kind: SignerKind,
    keys: &Keys<'k>,
) -> Result<Option<Key<'k>>, SignError> {
    match kind {
        SignerKind::X509 if config.x509.fulcio_enabled => match &keys.keyless {
            Some(Ok(ephemeral)) => Ok(Some(Key::Local(&ephemeral.key))),
            Some(Err(source)) => Err(SignError::Keyless {
                run: run.id(),
                source: source.clone(),
            }),
            None => Err(SignError::Other {
                run: run.id(),
                message: "keyless signing has no certificate".to_owned(),
            }),
        },
        SignerKind::X509 => keys
            .x509
            .clone()
            .map(|k| Some(Key::Local(k)))
            .map_err(|source| SignError::Key {
                run: run.id(),
                source,
            }),
        SignerKind::Kms => match &keys.kms {
            Some(Ok(kms)) => Ok(Some(Key::Remote(*kms))),
            Some(Err(source)) => Err(SignError::Kms {
                run: run.id(),
                source: source.clone(),
            }),
            None => Err(SignError::Other {
                run: run.id(),
                message: "the kms signer needs signers.kms.kmsref".to_owned(),
            }),
        },
        SignerKind::None => Ok(None),
    }
}

/// Signs `run`: its attestation into every configured backend and, for the images it
/// built, cosign image signatures (`artifacts.oci`). `signed: "true"` is in the result only
/// because every configured format, signer and backend got this far.
pub async fn sign_run(
    run: &Run,
    children: &[Run],
    config: &SignerConfig,
    keys: &Keys<'_>,
    tlog: Option<&Rekor>,
) -> Result<Signed, SignError> {
    let artifact = match run.kind {
        RunKind::TaskRun => &config.taskrun,
        RunKind::PipelineRun => &config.pipelinerun,
    };
    let statement = statement(run, children, config);
    let payload = serde_json::to_vec(&statement).map_err(|e| SignError::Other {
        run: run.id(),
        message: e.to_string(),
    })?;
    let signer = |kind: SignerKind| signer_of(run, config, kind, keys);
    let run_key = signer(artifact.signer)?;
    let keyless = keys.certificate(config);
    let run_certificate = keyless
        .as_ref()
        .filter(|_| artifact.signer == SignerKind::X509);
    let envelope_json = signed_envelope(run, run_key, &payload).await?;
    let entry = record_attestation(run, tlog, run_key, run_certificate, &envelope_json).await?;
    let deep = run.kind == RunKind::PipelineRun && config.pipelinerun_deep_inspection;
    let images = images_of(run, children, deep)?;
    let stored_at = |image: &ImageRef| stored_at(run, config, image);
    let mut out = Signed {
        annotations: entry
            .as_ref()
            .zip(tlog)
            .map(|(e, tlog)| {
                BTreeMap::from([(
                    format!("{ANNOTATION_PREFIX}transparency"),
                    e.address(&tlog.url),
                )])
            })
            .unwrap_or_default(),
        pushes: Vec::new(),
    };
    for backend in &artifact.storage {
        match backend {
            StorageBackend::Tekton => {
                out.annotations.extend(tekton_annotations(
                    run,
                    &payload,
                    &envelope_json,
                    run_certificate,
                ));
            }
            // One attestation per image subject, in the image's `.att`.
            StorageBackend::Oci => {
                let predicate_type = statement["predicateType"].as_str().unwrap_or_default();
                let public_der = match run_key {
                    Some(key) if config.storage.oci_encoding != OciEncoding::Dsse => {
                        key.public_der(run).await?
                    }
                    _ => Vec::new(),
                };
                let layer = attestation_layer(
                    run,
                    config,
                    &envelope_json,
                    (&public_der, run_certificate, entry.as_ref()),
                    predicate_type,
                )?;
                for image in &images {
                    out.pushes.push(Push {
                        image: image.clone(),
                        target: stored_at(image)?,
                        kind: if layer.media_type == DSSE_ENVELOPE {
                            Kind::Attestation
                        } else {
                            Kind::Referrer
                        },
                        layer: layer.clone(),
                    });
                }
            }
            other => {
                return Err(SignError::StorageNotImplemented {
                    run: run.id(),
                    backend: other.as_str(),
                });
            }
        }
    }
    if !images.is_empty()
        && !config.oci.storage.is_empty()
        && let Some(key) = signer(config.oci.signer)?
    {
        let certificate = keyless
            .as_ref()
            .filter(|_| config.oci.signer == SignerKind::X509);
        sign_images(run, config, &images, (key, certificate, tlog), &mut out).await?;
    }
    out.annotations.insert(SIGNED.to_owned(), "true".to_owned());
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
            None,
        )
        .await
        .unwrap()
        .annotations;
        assert!(out.contains_key("chains.tekton.dev/signature-pipelinerun-u"));
    }

    #[tokio::test]
    async fn default_config_stores_a_signed_envelope_on_the_run() {
        let key = key();
        let out = sign_run(&run(), &[], &SignerConfig::default(), &local(&key), None)
            .await
            .unwrap()
            .annotations;
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
            sign_run(&run(), &[], &config, &refused, None).await,
            Err(SignError::Keyless { .. })
        ));
        assert!(matches!(
            sign_run(&run(), &[], &config, &local(&key), None).await,
            Err(SignError::Other { .. })
        ));
        config = SignerConfig::default();
        config.taskrun.format = ArtifactFormat::SlsaV2Alpha4;
        assert!(
            sign_run(&run(), &[], &config, &local(&key), None)
                .await
                .is_ok(),
            "SLSA v1.0 is implemented for TaskRuns"
        );
        let mut config = SignerConfig::default();
        config.taskrun.storage.insert(StorageBackend::Gcs);
        assert!(matches!(
            sign_run(&run(), &[], &config, &local(&key), None).await,
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
                None,
            )
            .await,
            Err(SignError::Key { .. })
        ));
    }
}
