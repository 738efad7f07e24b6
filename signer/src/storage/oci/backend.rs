//! The `oci` backend: which layers a run's attestation and its images' signatures become
//! (cosign's `.sig`/`.att` tags, or Sigstore bundles as referrers with
//! `storage.oci.encoding-format: sigstore-bundle`, image signatures then being cosign v3's
//! `cosign/sign/v1` statements) and which repository they go to.

use std::collections::BTreeMap;

use signet_config::{OciEncoding, SignerConfig};

use super::layout::{
    BUNDLE_ANNOTATION, BUNDLE_CONTENT_ANNOTATION, BUNDLE_PREDICATE_TYPE_ANNOTATION,
    CERTIFICATE_ANNOTATION, CHAIN_ANNOTATION, DSSE_ENVELOPE, Layer, PREDICATE_TYPE_ANNOTATION,
    SIGNATURE_ANNOTATION, SIGSTORE_BUNDLE_V03, SIMPLE_SIGNING, Verifier, dsse_bundle,
};
use super::reference::ImageRef;
use super::{Attachment, Push};
use crate::run::Run;
use crate::signing::key::Certificate;
use crate::signing::{COSIGN_SIGN_PREDICATE_TYPE, SignError};
use crate::storage::{Attestation, Backend, ImageSignature, Signed};
use crate::transparency::Entry;

pub struct Oci;

impl Backend for Oci {
    /// One attestation per image subject, in the image's `.att` (or as a referrer).
    fn attestation(
        &self,
        run: &Run,
        config: &SignerConfig,
        attestation: &Attestation<'_>,
        out: &mut Signed,
    ) -> Result<(), SignError> {
        let layer = attestation_layer(run, config, attestation)?;
        let kind = if layer.media_type == DSSE_ENVELOPE {
            Attachment::Attestation
        } else {
            Attachment::Referrer
        };
        for image in attestation.images {
            out.pushes.push(Push {
                image: image.clone(),
                target: stored_at(run, config, image)?,
                kind,
                layer: layer.clone(),
            });
        }
        Ok(())
    }

    fn image_signature(
        &self,
        run: &Run,
        config: &SignerConfig,
        signature: &ImageSignature<'_>,
        out: &mut Signed,
    ) -> Result<(), SignError> {
        // With bundles: cosign v3's image signature, a DSSE bundle as a referrer.
        if let (OciEncoding::SigstoreBundle, Some(envelope)) =
            (config.storage.oci_encoding, signature.envelope)
        {
            out.pushes.push(Push {
                image: signature.image.clone(),
                target: stored_at(run, config, signature.image)?,
                kind: Attachment::Referrer,
                layer: bundle_layer(
                    run,
                    envelope,
                    signature.public_der,
                    COSIGN_SIGN_PREDICATE_TYPE,
                    (signature.certificate, signature.entry, signature.timestamp),
                )?,
            });
            return Ok(());
        }
        let annotations = BTreeMap::from([(
            SIGNATURE_ANNOTATION.to_owned(),
            signature.signature.to_owned(),
        )]);
        out.pushes.push(Push {
            image: signature.image.clone(),
            target: stored_at(run, config, signature.image)?,
            kind: Attachment::Signature,
            layer: Layer {
                media_type: SIMPLE_SIGNING,
                data: signature.payload.to_vec(),
                annotations: with_bundle(
                    with_certificate(annotations, signature.certificate),
                    signature.entry,
                ),
            },
        });
        Ok(())
    }
}

/// The attestation as an OCI layer: the DSSE envelope for the `.att` tag (`dsse` encoding),
/// or a Sigstore bundle around it for a referrer (`sigstore-bundle`).
fn attestation_layer(
    run: &Run,
    config: &SignerConfig,
    attestation: &Attestation<'_>,
) -> Result<Layer, SignError> {
    if config.storage.oci_encoding == OciEncoding::Dsse {
        let annotations = BTreeMap::from([
            (SIGNATURE_ANNOTATION.to_owned(), String::new()),
            (
                PREDICATE_TYPE_ANNOTATION.to_owned(),
                attestation.predicate_type.to_owned(),
            ),
        ]);
        return Ok(Layer {
            media_type: DSSE_ENVELOPE,
            data: attestation.envelope.to_vec(),
            annotations: with_bundle(
                with_certificate(annotations, attestation.certificate),
                attestation.entry,
            ),
        });
    }
    bundle_layer(
        run,
        attestation.envelope,
        attestation.public_der,
        attestation.predicate_type,
        (
            attestation.certificate,
            attestation.entry,
            attestation.timestamp,
        ),
    )
}

/// A Sigstore bundle (v0.3) around a DSSE envelope, as the layer of an OCI 1.1 referrer with
/// the annotations cosign v3 selects bundles by.
fn bundle_layer(
    run: &Run,
    envelope: &[u8],
    public_der: &[u8],
    predicate_type: &str,
    (certificate, entry, timestamp): (Option<&Certificate<'_>>, Option<&Entry>, Option<&[u8]>),
) -> Result<Layer, SignError> {
    let leaf = certificate
        .map(|c| {
            pem_rfc7468::decode_vec(c.leaf.as_bytes())
                .map(|(_, der)| der)
                .map_err(|e| SignError::Other {
                    run: run.id(),
                    message: format!("the signing certificate is not PEM: {e}"),
                })
        })
        .transpose()?;
    let verifier = match &leaf {
        Some(der) => Verifier::Certificate(der),
        None => Verifier::PublicKey(public_der),
    };
    let tlog_entry = entry.map(Entry::tlog_entry);
    let bundle = dsse_bundle(envelope, &verifier, tlog_entry, timestamp).map_err(|message| {
        SignError::Other {
            run: run.id(),
            message,
        }
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

/// `annotations` plus cosign's bundle annotation when the signature is in a transparency log.
fn with_bundle(
    mut annotations: BTreeMap<String, String>,
    entry: Option<&Entry>,
) -> BTreeMap<String, String> {
    // Rekor v2 gives no signed entry timestamp: its entries travel in Sigstore bundles only.
    if let Some(entry) = entry.filter(|e| !e.signed_entry_timestamp.is_empty()) {
        annotations.insert(BUNDLE_ANNOTATION.to_owned(), entry.bundle());
    }
    annotations
}

/// `annotations` plus cosign's certificate and chain annotations when signed keyless.
fn with_certificate(
    mut annotations: BTreeMap<String, String>,
    certificate: Option<&Certificate<'_>>,
) -> BTreeMap<String, String> {
    if let Some(certificate) = certificate {
        annotations.insert(
            CERTIFICATE_ANNOTATION.to_owned(),
            certificate.leaf.to_owned(),
        );
        annotations.insert(CHAIN_ANNOTATION.to_owned(), certificate.chain.clone());
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
