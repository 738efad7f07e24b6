//! The `tekton` backend: Chains' annotations on the run itself — `payload-<key>`,
//! `signature-<key>`, `cert-<key>`, `chain-<key>` for the attestation (key
//! `taskrun-<uid>`/`pipelinerun-<uid>`) and `payload-<digest12>`, `signature-<digest12>` for
//! each image.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use signet_config::SignerConfig;

use super::{Attestation, Backend, ImageSignature, Signed};
use crate::annotations::ANNOTATION_PREFIX;
use crate::run::Run;
use crate::signing::SignError;

pub struct Tekton;

impl Backend for Tekton {
    fn attestation(
        &self,
        run: &Run,
        _: &SignerConfig,
        attestation: &Attestation<'_>,
        out: &mut Signed,
    ) -> Result<(), SignError> {
        let key = run.storage_key();
        let certificate = attestation.certificate;
        let values = [
            ("payload", STANDARD.encode(attestation.payload)),
            ("signature", STANDARD.encode(attestation.envelope)),
            (
                "cert",
                certificate.map_or_else(String::new, |c| c.leaf.to_owned()),
            ),
            (
                "chain",
                certificate.map_or_else(String::new, |c| c.chain.clone()),
            ),
        ];
        for (name, value) in values {
            out.annotations
                .insert(format!("{ANNOTATION_PREFIX}{name}-{key}"), value);
        }
        Ok(())
    }

    fn image_signature(
        &self,
        _: &Run,
        _: &SignerConfig,
        signature: &ImageSignature<'_>,
        out: &mut Signed,
    ) -> Result<(), SignError> {
        let short = signature.image.short_digest();
        out.annotations.insert(
            format!("{ANNOTATION_PREFIX}payload-{short}"),
            STANDARD.encode(signature.payload),
        );
        out.annotations.insert(
            format!("{ANNOTATION_PREFIX}signature-{short}"),
            signature.signature.to_owned(),
        );
        Ok(())
    }
}
