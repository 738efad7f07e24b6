//! The `docdb` backend: one document per signed artifact in the go-cloud docstore collection
//! `storage.docdb.url` names, with the fields of Chains' `SignedDocument` — `Name` (the key:
//! `taskrun-<uid>`/`pipelinerun-<uid>`, an image's 12-hex digest prefix), `Signed` (the
//! payload's bytes), `Signature` (base64 of the signature: the DSSE envelope, or the image's
//! raw signature), `Cert`, `Chain` and `Object` (the payload as a JSON document) — encoded as
//! go-cloud encodes them for each store:
//!
//! - `dynamodb://TABLE?partition_key=Name[&sort_key=…][&region=…][&endpoint=…]`: `PutItem`
//!   (empty strings as `NULL`, numbers as `N`, bytes as `B`), with the AWS credentials of the
//!   awskms signer (`crate::cloud::aws`).
//! - `firestore://projects/P/databases/D/documents/COLLECTION?name_field=Name`: the document
//!   named by that field (which is left out of its fields), written through Firestore's REST
//!   API with the Google credentials of the gcpkms signer.
//! - `mongo://DATABASE/COLLECTION?id_field=Name`: replaced (upserted) by `_id` = that field,
//!   plus go-cloud's `DocstoreRevision`, through the official `mongodb` crate; the server's
//!   URL from `storage.docdb.mongo-server-url-path` (a file), `-url-dir` (its
//!   `MONGO_SERVER_URL` file), `-url`, or the `MONGO_SERVER_URL` variable, in that order, read
//!   at each write so that a rotated Secret is followed.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use signet_config::SignerConfig;

use super::{Attestation, Backend, ImageSignature, Signed, Write};
use crate::run::Run;
use crate::signing::SignError;

#[cfg(feature = "docdb")]
mod dynamodb;
#[cfg(feature = "docdb")]
mod firestore;
#[cfg(feature = "docdb")]
mod mongo;
#[cfg(feature = "docdb")]
mod stores;
pub use signet_config::docdb::CollectionUrl;
#[cfg(feature = "docdb")]
pub use stores::Collections;

/// Chains' `SignedDocument`.
#[derive(Clone, Debug, PartialEq)]
pub struct SignedDocument {
    pub name: String,
    pub signed: Vec<u8>,
    pub signature: String,
    pub cert: String,
    pub chain: String,
    pub object: Value,
}

impl SignedDocument {
    /// The string fields a collection may be keyed by (`signet_config::docdb::KEY_FIELDS`), by
    /// their go-cloud names.
    pub fn string_field(&self, field: &str) -> Option<&str> {
        match field {
            "Name" => Some(&self.name),
            "Signature" => Some(&self.signature),
            "Cert" => Some(&self.cert),
            "Chain" => Some(&self.chain),
            _ => None,
        }
    }
}

pub struct DocDb;

fn document(
    run: &Run,
    name: String,
    payload: &[u8],
    signature: String,
    certificate: Option<&crate::signing::key::Certificate<'_>>,
) -> Result<Write, SignError> {
    // Chains stores the payload parsed as well, so that it can be queried.
    let object = serde_json::from_slice(payload).map_err(|e| SignError::Other {
        run: run.id(),
        message: format!("docdb: the payload is not JSON: {e}"),
    })?;
    Ok(Write::Document(SignedDocument {
        name,
        signed: payload.to_vec(),
        signature,
        cert: certificate.map_or_else(String::new, |c| c.leaf.to_owned()),
        chain: certificate.map_or_else(String::new, |c| c.chain.clone()),
        object,
    }))
}

impl Backend for DocDb {
    fn attestation(
        &self,
        run: &Run,
        _: &SignerConfig,
        attestation: &Attestation<'_>,
        out: &mut Signed,
    ) -> Result<(), SignError> {
        out.writes.push(document(
            run,
            run.storage_key(),
            attestation.payload,
            STANDARD.encode(attestation.envelope),
            attestation.certificate,
        )?);
        Ok(())
    }

    fn image_signature(
        &self,
        run: &Run,
        _: &SignerConfig,
        signature: &ImageSignature<'_>,
        out: &mut Signed,
    ) -> Result<(), SignError> {
        // The signature string Chains is given for an image is the raw signature; the
        // document holds its base64, which is what `signature` already is.
        out.writes.push(document(
            run,
            signature.image.short_digest().to_owned(),
            signature.payload,
            signature.signature.to_owned(),
            signature.certificate,
        )?);
        Ok(())
    }
}
