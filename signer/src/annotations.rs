//! Every `chains.tekton.dev/*` name the signer reads or writes on a run, as Tekton Chains
//! names them (see docs/compatibility.md). The per-artifact names are built from
//! [`ANNOTATION_PREFIX`]: `payload-`, `signature-`, `cert-`, `chain-` + `taskrun-<uid>` /
//! `pipelinerun-<uid>` for the attestation (`storage::tekton`), `payload-`/`signature-` +
//! the image digest's first 12 hex digits for image signatures, `transparency` and
//! `transparency-<digest12>` for log entries.

use crate::run::RunKind;

/// Annotation prefix Chains and Signet write under.
pub const ANNOTATION_PREFIX: &str = "chains.tekton.dev/";
/// `true` once signed and stored, `failed` after the last retry.
pub const SIGNED: &str = "chains.tekton.dev/signed";
/// Failed attempts so far.
pub const RETRIES: &str = "chains.tekton.dev/retries";
/// Why the last attempt failed, once `signed` is `failed`.
pub const FAILURE_REASON: &str = "chains.tekton.dev/failure-reason";
/// A run's own request for a Rekor upload when `transparency.enabled` is `manual`.
pub const TRANSPARENCY_UPLOAD: &str = "chains.tekton.dev/transparency-upload";
/// The label that marks a run reproducible in SLSA v0.2 provenance.
pub const REPRODUCIBLE: &str = "chains.tekton.dev/reproducible";

/// The finalizer that keeps a run until it is signed: `chains.tekton.dev/<kind>`.
pub fn finalizer(kind: RunKind) -> String {
    format!("{ANNOTATION_PREFIX}{}", kind.key())
}
