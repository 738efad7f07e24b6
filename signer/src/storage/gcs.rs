//! The `gcs` backend: Chains' objects in `storage.gcs.bucket`, under
//! `<taskrun|pipelinerun>-<namespace>-<name>/<key>` — the run's attestation with key
//! `taskrun-<uid>`/`pipelinerun-<uid>`, each image's signature with its digest's first 12 hex
//! digits — as `.signature` (the DSSE envelope; for an image, the raw signature), `.payload`
//! (the statement; the simple-signing payload), `.cert` and `.chain` (empty without a
//! certificate, as Chains writes them).
//!
//! The client (feature `gcs`) is Cloud Storage's JSON API — one media upload per object — with
//! the Google credentials the gcpkms signer uses (`crate::cloud::google`). The endpoint is
//! `https://storage.googleapis.com`, or `CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE` (gcloud's
//! override), or `STORAGE_EMULATOR_HOST` (Google's libraries' emulator variable; plain HTTP
//! unless it names a scheme). Every answer is checked: it must name the object written, its
//! size and CRC32C.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use signet_config::SignerConfig;

use super::{Attestation, Backend, ImageSignature, Signed, Write};
use crate::run::Run;
use crate::signing::SignError;

pub struct Gcs;

/// `taskrun-<namespace>-<name>/<key>`: where a run's objects go.
fn prefix(run: &Run, key: &str) -> String {
    format!("{}-{}-{}/{key}", run.kind.key(), run.namespace, run.name)
}

fn objects(out: &mut Signed, prefix: &str, parts: [(&str, Vec<u8>); 4]) {
    for (suffix, content) in parts {
        out.writes.push(Write::Gcs {
            name: format!("{prefix}.{suffix}"),
            content,
        });
    }
}

impl Backend for Gcs {
    fn attestation(
        &self,
        run: &Run,
        _: &SignerConfig,
        attestation: &Attestation<'_>,
        out: &mut Signed,
    ) -> Result<(), SignError> {
        let certificate = attestation.certificate;
        objects(
            out,
            &prefix(run, &run.storage_key()),
            [
                ("signature", attestation.envelope.to_vec()),
                ("payload", attestation.payload.to_vec()),
                ("cert", certificate.map_or_else(Vec::new, |c| c.leaf.into())),
                (
                    "chain",
                    certificate.map_or_else(Vec::new, |c| c.chain.clone().into()),
                ),
            ],
        );
        Ok(())
    }

    fn image_signature(
        &self,
        run: &Run,
        _: &SignerConfig,
        signature: &ImageSignature<'_>,
        out: &mut Signed,
    ) -> Result<(), SignError> {
        let raw = STANDARD
            .decode(signature.signature)
            .map_err(|e| SignError::Other {
                run: run.id(),
                message: format!("image signature: {e}"),
            })?;
        let certificate = signature.certificate;
        objects(
            out,
            &prefix(run, signature.image.short_digest()),
            [
                ("signature", raw),
                ("payload", signature.payload.to_vec()),
                ("cert", certificate.map_or_else(Vec::new, |c| c.leaf.into())),
                (
                    "chain",
                    certificate.map_or_else(Vec::new, |c| c.chain.clone().into()),
                ),
            ],
        );
        Ok(())
    }
}

#[cfg(feature = "gcs")]
pub use client::GcsClient;

#[cfg(feature = "gcs")]
mod client {
    use serde_json::Value;

    use crate::cloud::env;
    use crate::cloud::google::{GoogleAuth, crc32c};
    use crate::signing::kms::common::Named;

    /// Cloud Storage's JSON API with the pod's Google credentials.
    #[derive(Debug)]
    pub struct GcsClient {
        auth: GoogleAuth,
        endpoint: String,
    }

    /// Percent-encoding of an object name or bucket in a URL's path or query.
    fn encode(value: &str) -> String {
        use std::fmt::Write as _;
        let mut out = String::with_capacity(value.len());
        for byte in value.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
                out.push(char::from(byte));
            } else {
                let _ = write!(out, "%{byte:02X}");
            }
        }
        out
    }

    impl GcsClient {
        pub fn from_env() -> Result<Self, String> {
            let endpoint = match (
                env("CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE"),
                env("STORAGE_EMULATOR_HOST"),
            ) {
                (Some(url), _) => Some(url),
                (None, Some(host)) if host.contains("://") => Some(host),
                (None, Some(host)) => Some(format!("http://{host}")),
                (None, None) => None,
            };
            let auth = GoogleAuth::from_env(Named(format!(
                "gcs {}",
                endpoint.as_deref().unwrap_or("storage")
            )))?;
            let endpoint = endpoint
                .unwrap_or_else(|| auth.endpoint("storage"))
                .trim_end_matches('/')
                .trim_end_matches("/storage/v1")
                .to_owned();
            Ok(Self { auth, endpoint })
        }

        /// Writes `content` as `bucket/name` (replacing what is there) and checks the answer.
        pub async fn put(&self, bucket: &str, name: &str, content: &[u8]) -> Result<(), String> {
            let url = format!(
                "{}/upload/storage/v1/b/{}/o?uploadType=media&name={}",
                self.endpoint,
                encode(bucket),
                encode(name)
            );
            let request = self
                .auth
                .http()
                .post(&url)
                .header("content-type", "application/octet-stream")
                .body(content.to_vec());
            let answer = self
                .auth
                .call(&format!("writing gs://{bucket}/{name}"), request)
                .await?;
            check_answer(&answer, bucket, name, content)
                .map_err(|e| format!("writing gs://{bucket}/{name}: the answer {e}"))
        }
    }

    /// The object resource Cloud Storage answers an upload with must be the object sent.
    pub(super) fn check_answer(
        answer: &Value,
        bucket: &str,
        name: &str,
        content: &[u8],
    ) -> Result<(), String> {
        if answer["name"].as_str() != Some(name) || answer["bucket"].as_str() != Some(bucket) {
            return Err(format!(
                "names {:?} in {:?}",
                answer["name"].as_str().unwrap_or_default(),
                answer["bucket"].as_str().unwrap_or_default()
            ));
        }
        let size = answer["size"]
            .as_str()
            .and_then(|s| s.parse::<usize>().ok());
        if size != Some(content.len()) {
            return Err(format!("says {size:?} bytes, {} were sent", content.len()));
        }
        let crc = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            crc32c(content).to_be_bytes(),
        );
        match answer["crc32c"].as_str() {
            Some(got) if got == crc => Ok(()),
            Some(got) => Err(format!("has CRC32C {got}, the content sent {crc}")),
            None => Err("has no crc32c".to_owned()),
        }
    }
}

#[cfg(all(test, feature = "gcs"))]
mod tests {
    use super::client::check_answer;
    use serde_json::json;

    #[test]
    fn an_upload_answer_must_describe_the_object_sent() {
        // CRC32C of "signed" is 0x9A1A0D35 → base64 of its big-endian bytes.
        let crc = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            crate::cloud::google::crc32c(b"signed").to_be_bytes(),
        );
        let good = json!({"name": "o", "bucket": "b", "size": "6", "crc32c": crc});
        assert_eq!(check_answer(&good, "b", "o", b"signed"), Ok(()));
        let mut other = good.clone();
        other["name"] = json!("p");
        assert!(check_answer(&other, "b", "o", b"signed").is_err());
        let mut short = good.clone();
        short["size"] = json!("5");
        assert!(
            check_answer(&short, "b", "o", b"signed")
                .unwrap_err()
                .contains('5')
        );
        let mut corrupt = good.clone();
        corrupt["crc32c"] = json!("AAAAAA==");
        assert!(
            check_answer(&corrupt, "b", "o", b"signed")
                .unwrap_err()
                .contains("CRC32C")
        );
        assert!(check_answer(&json!({}), "b", "o", b"signed").is_err());
    }
}
