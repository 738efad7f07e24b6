//! Transparency-log uploads (`transparency.enabled`, `transparency.url`,
//! `transparency.version`; Rekor v2 in [`v2`]). Rekor v1: a `dsse` entry for each
//! run's attestation and a `hashedrekord` entry for each image signature, each with the
//! verification material (the Fulcio certificate, or the public key). The entry's signed
//! timestamp becomes cosign's bundle annotation on the OCI layer, so verifiers check the log
//! offline; the entry's address goes into the run's annotations.
//!
//! Every answer is checked before it is used (`verify`): against the log's public key from
//! `SIGSTORE_REKOR_PUBLIC_KEY` (cosign's variable: a PEM file) or, when that is unset, the
//! key the log itself serves, read once and said once in the log (trust on first use).

pub mod timestamp;
pub mod trust;
pub mod v2;
pub mod verify;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use signet_config::trusted_root::TrustedRoot;
use signet_config::{RekorVersion, SignerConfig, TransparencyMode};

use crate::annotations::TRANSPARENCY_UPLOAD;
use crate::run::Run;
pub use trust::{PeerCache, Pinned};
use trust::{excerpt, pinned_file, read_capped, served};

/// Why an upload failed; names the log.
#[derive(Clone, Debug, thiserror::Error)]
#[error("transparency log {url}: {message}")]
pub struct TransparencyError {
    pub url: String,
    pub message: String,
}

/// One entry as Rekor returned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub uuid: String,
    pub log_index: u64,
    pub integrated_time: i64,
    pub log_id: String,
    /// Base64 of the canonical entry body.
    pub body: String,
    /// Base64 of the signed entry timestamp.
    pub signed_entry_timestamp: String,
    /// The body's `kind` and `apiVersion` (e.g. `dsse`, `0.0.1`), once checked.
    pub kind: String,
    pub kind_version: String,
    /// The inclusion proof and checkpoint the log answered with, once checked.
    pub proof: Option<InclusionProof>,
}

/// A verified inclusion proof: the entry's leaf leads through `hashes` to `root_hash`, which
/// the log signed in `checkpoint` for a tree of `tree_size`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InclusionProof {
    pub log_index: u64,
    pub tree_size: u64,
    pub root_hash: [u8; 32],
    pub hashes: Vec<[u8; 32]>,
    pub checkpoint: String,
}

impl Entry {
    /// cosign's `dev.sigstore.cosign/bundle` annotation value.
    pub fn bundle(&self) -> String {
        json!({
            "SignedEntryTimestamp": self.signed_entry_timestamp,
            "Payload": {
                "body": self.body,
                "integratedTime": self.integrated_time,
                "logIndex": self.log_index,
                "logID": self.log_id,
            }
        })
        .to_string()
    }

    /// The entry as a Sigstore bundle's `TransparencyLogEntry` (protobuf JSON: 64-bit numbers
    /// as strings, bytes as base64), with the signed entry timestamp as its inclusion promise
    /// and, when the log gave one, its inclusion proof and checkpoint.
    pub fn tlog_entry(&self) -> Value {
        let mut entry = json!({
            "logIndex": self.log_index.to_string(),
            "logId": {"keyId": STANDARD.encode(hex::decode(&self.log_id).unwrap_or_default())},
            "kindVersion": {"kind": self.kind, "version": self.kind_version},
            "integratedTime": self.integrated_time.to_string(),
            "canonicalizedBody": self.body,
        });
        // Rekor v2 gives no signed entry timestamp (and no integrated time).
        if !self.signed_entry_timestamp.is_empty() {
            entry["inclusionPromise"] =
                json!({"signedEntryTimestamp": self.signed_entry_timestamp});
        }
        if let Some(p) = &self.proof {
            entry["inclusionProof"] = json!({
                "logIndex": p.log_index.to_string(),
                "rootHash": STANDARD.encode(p.root_hash),
                "treeSize": p.tree_size.to_string(),
                "hashes": p.hashes.iter().map(|h| STANDARD.encode(h)).collect::<Vec<_>>(),
                "checkpoint": {"envelope": p.checkpoint},
            });
        }
        entry
    }

    /// Where the entry can be read (Chains' `transparency` annotation).
    pub fn address(&self, log: &str) -> String {
        format!(
            "{}/api/v1/log/entries?logIndex={}",
            log.trim_end_matches('/'),
            self.log_index
        )
    }
}

/// The largest answer read from a transparency log (an entry with its proof is a few KiB).
const MAX_LOG_ANSWER_BYTES: usize = 1024 * 1024;

/// A log's answer, at most [`MAX_LOG_ANSWER_BYTES`], as JSON (`Null` when it is not JSON).
async fn log_json(response: reqwest::Response) -> Result<Value, String> {
    let body = read_capped(response, MAX_LOG_ANSWER_BYTES).await?;
    Ok(serde_json::from_slice(&body).unwrap_or_default())
}

/// A Rekor log, v1 or v2 (`transparency.version`).
#[derive(Clone, Debug)]
pub struct Rekor {
    pub url: String,
    pub version: RekorVersion,
    http: reqwest::Client,
    keys: LogKeys,
    /// The key a trusted root gives this log (SPKI DER).
    root_key: Pinned<Vec<u8>>,
}

/// The public keys (SPKI DER) of the logs in use, by URL, kept for the process's life.
pub type LogKeys = PeerCache<Vec<u8>>;

/// `{"<uuid>": {...}}` → the entry.
pub fn parse_entry(answer: &Value) -> Result<Entry, String> {
    let (uuid, entry) = answer
        .as_object()
        .and_then(|m| m.iter().next())
        .ok_or("the answer holds no entry")?;
    let field = |name: &str| {
        entry[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("the entry has no {name}"))
    };
    Ok(Entry {
        uuid: uuid.clone(),
        log_index: entry["logIndex"]
            .as_u64()
            .ok_or("the entry has no logIndex")?,
        integrated_time: entry["integratedTime"]
            .as_i64()
            .ok_or("the entry has no integratedTime")?,
        log_id: field("logID")?,
        body: field("body")?,
        signed_entry_timestamp: entry["verification"]["signedEntryTimestamp"]
            .as_str()
            .map(str::to_owned)
            .ok_or("the entry has no signedEntryTimestamp")?,
        kind: String::new(),
        kind_version: String::new(),
        proof: None,
    })
}

impl Rekor {
    pub fn new(http: &reqwest::Client, url: &str, version: RekorVersion, keys: &LogKeys) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            version,
            http: http.clone(),
            keys: keys.clone(),
            root_key: Pinned::NoRoot,
        }
    }

    /// Trusts only the key `root` gives this log, when there is a trusted root.
    #[must_use]
    pub fn with_trusted_root(mut self, root: Option<&TrustedRoot>) -> Self {
        self.root_key = Pinned::of(root, |r| r.log_key(&self.url).map(<[u8]>::to_vec));
        self
    }

    /// Where `entry` can be found (Chains' `transparency` annotations): Rekor v1's entry
    /// address, or for Rekor v2, which has no per-entry API, the log with the entry's index
    /// as the fragment (`<url>#logIndex=<n>`; the entry itself is in the bundles).
    pub fn address(&self, entry: &Entry) -> String {
        match self.version {
            RekorVersion::V1 => entry.address(&self.url),
            RekorVersion::V2 => format!("{}#logIndex={}", self.url, entry.log_index),
        }
    }

    /// The PEM public key the log serves (trusted on first use, said once per process).
    async fn served_public_key(&self) -> Result<String, TransparencyError> {
        tracing::warn!(log = %self.url, "SIGSTORE_REKOR_PUBLIC_KEY is not set: trusting the public key the log serves now for as long as this process runs");
        let failed = |e: &dyn std::fmt::Display| self.error(format!("reading its public key: {e}"));
        let response = served(&self.http, &format!("{}/api/v1/log/publicKey", self.url))
            .await
            .map_err(|e| failed(&e))?;
        let body = read_capped(response, MAX_LOG_ANSWER_BYTES)
            .await
            .map_err(|e| failed(&e))?;
        String::from_utf8(body).map_err(|_| failed(&"not PEM"))
    }

    /// The log's public key (SPKI DER): the trusted root's, else `SIGSTORE_REKOR_PUBLIC_KEY`,
    /// else the log's own.
    async fn public_key(&self) -> Result<Vec<u8>, TransparencyError> {
        if let Some(der) = self.root_key.resolve("log").map_err(|e| self.error(e))? {
            return Ok(der);
        }
        if let Some(der) = self.keys.get(&self.url) {
            return Ok(der);
        }
        let pem = if let Some(pinned) = pinned_file("SIGSTORE_REKOR_PUBLIC_KEY").await {
            pinned.map_err(|e| self.error(e))?
        } else if self.version == RekorVersion::V2 {
            return Err(self.error(
                "Rekor v2 serves no public key to check its answers with: set SIGSTORE_REKOR_PUBLIC_KEY to the log's PEM public key",
            ));
        } else {
            self.served_public_key().await?
        };
        let der = crate::signing::kms::spki_from_pem(&pem)
            .map_err(|e| self.error(format!("the log's public key: {e}")))?;
        self.keys.insert(&self.url, der.clone());
        Ok(der)
    }

    fn error(&self, message: impl std::fmt::Display) -> TransparencyError {
        TransparencyError {
            url: self.url.clone(),
            message: message.to_string(),
        }
    }

    /// Proposes `entry`; an entry that already exists (409) is read back instead. Either way
    /// the answer is checked against the log's key and `expected` before it is returned.
    async fn propose(
        &self,
        entry: &Value,
        expected: &(dyn Fn(&Value) -> Result<(), String> + Sync),
    ) -> Result<Entry, TransparencyError> {
        let log_key = self.public_key().await?;
        let answer = self.propose_unchecked(entry).await?;
        verify::check_entry(&answer, &log_key, expected)
            .map_err(|e| self.error(format!("its answer cannot be used: {e}")))
    }

    async fn propose_unchecked(&self, entry: &Value) -> Result<Value, TransparencyError> {
        let url = format!("{}/api/v1/log/entries", self.url);
        let response = self
            .http
            .post(&url)
            .timeout(Duration::from_secs(30))
            .json(entry)
            .send()
            .await
            .map_err(|e| self.error(e))?;
        let status = response.status();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let answer = log_json(response).await.map_err(|e| self.error(e))?;
        if status == reqwest::StatusCode::CONFLICT {
            let existing = location
                .or_else(|| answer["entryURL"].as_str().map(str::to_owned))
                .ok_or_else(|| self.error("409 without the existing entry's address"))?;
            let existing = if existing.starts_with("http") {
                existing
            } else {
                format!("{}{existing}", self.url)
            };
            let response = self
                .http
                .get(&existing)
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .map_err(|e| self.error(e))?;
            return log_json(response).await.map_err(|e| self.error(e));
        }
        if !status.is_success() {
            return Err(self.error(format!(
                "{status}: {}",
                answer["message"].as_str().unwrap_or("no details")
            )));
        }
        Ok(answer)
    }

    /// Proposes a Rekor v2 `hashedrekord` entry for `signature` over a message whose SHA-256
    /// is `digest`, and checks the answer before returning it.
    async fn propose_v2(
        &self,
        digest: &[u8; 32],
        signature: &[u8],
        verifier: &str,
    ) -> Result<Entry, TransparencyError> {
        let request =
            v2::hashedrekord_request(digest, signature, verifier).map_err(|e| self.error(e))?;
        let log_key = self.public_key().await?;
        let url = format!("{}/api/v2/log/entries", self.url);
        let response = self
            .http
            .post(&url)
            .timeout(Duration::from_secs(30))
            .json(&request)
            .send()
            .await
            .map_err(|e| self.error(e))?;
        let status = response.status();
        let body = read_capped(response, MAX_LOG_ANSWER_BYTES)
            .await
            .map_err(|e| self.error(e))?;
        let text = String::from_utf8_lossy(&body);
        if status == reqwest::StatusCode::CONFLICT {
            // Rekor v2 keeps one entry per signature and has no API to read it back with its
            // proof: only a key that signs deterministically (Ed25519, RSA PKCS#1 v1.5) meets
            // this, signing the same content again.
            return Err(self.error(format!(
                "409: it already holds this very signature ({}) and Rekor v2 gives no entry back to put in the bundle; sign with an ECDSA key or a KMS, whose signatures differ each time",
                excerpt(&text)
            )));
        }
        if !status.is_success() {
            let message: Value = serde_json::from_str(&text).unwrap_or_default();
            return Err(self.error(format!(
                "{status}: {}",
                message["message"].as_str().unwrap_or("no details")
            )));
        }
        let answer: Value =
            serde_json::from_str(&text).map_err(|_| self.error("its answer is not JSON"))?;
        v2::check_entry(&answer, &log_key, &v2::expected_body(&request))
            .map_err(|e| self.error(format!("its answer cannot be used: {e}")))
    }

    /// An entry for an attestation envelope, verified by `verifier` (PEM certificate or public
    /// key): `dsse` in Rekor v1, `hashedrekord` of the envelope's pre-authentication encoding
    /// in Rekor v2.
    pub async fn dsse(
        &self,
        envelope_json: &[u8],
        verifier: &str,
    ) -> Result<Entry, TransparencyError> {
        let envelope = String::from_utf8_lossy(envelope_json).into_owned();
        let envelope_value: crate::signing::dsse::Envelope = serde_json::from_slice(envelope_json)
            .map_err(|e| self.error(format!("the envelope is not a DSSE envelope: {e}")))?;
        let payload = STANDARD
            .decode(&envelope_value.payload)
            .map_err(|e| self.error(format!("the envelope's payload is not base64: {e}")))?;
        if self.version == RekorVersion::V2 {
            let signature = envelope_value
                .signatures
                .first()
                .and_then(|s| STANDARD.decode(&s.sig).ok())
                .ok_or_else(|| self.error("the envelope has no signature to record"))?;
            let pae = crate::signing::dsse::pae(&envelope_value.payload_type, &payload);
            let digest: [u8; 32] = Sha256::digest(pae).into();
            return self.propose_v2(&digest, &signature, verifier).await;
        }
        let payload_hash = hex::encode(Sha256::digest(payload));
        let signature = envelope_value
            .signatures
            .first()
            .map(|s| Value::String(s.sig.clone()))
            .ok_or_else(|| self.error("the envelope has no signature to record"))?;
        let verifier_b64 = STANDARD.encode(verifier);
        let expected = |body: &Value| {
            let spec = &body["spec"];
            let signed = spec["signatures"].as_array().is_some_and(|all| {
                all.iter()
                    .any(|s| s["signature"] == signature && s["verifier"] == verifier_b64.as_str())
            });
            if body["kind"] != "dsse" {
                Err("its kind is not dsse".to_owned())
            } else if spec["payloadHash"]["value"] != payload_hash.as_str() {
                Err("its payload hash differs".to_owned())
            } else if !signed {
                Err("it does not hold the signature and verifier sent".to_owned())
            } else {
                Ok(())
            }
        };
        self.propose(
            &json!({
                "apiVersion": "0.0.1", "kind": "dsse",
                "spec": {"proposedContent": {"envelope": envelope, "verifiers": [verifier_b64]}}
            }),
            &expected,
        )
        .await
    }

    /// A `hashedrekord` entry for `signature` over `payload`.
    pub async fn hashedrekord(
        &self,
        payload: &[u8],
        signature: &[u8],
        verifier: &str,
    ) -> Result<Entry, TransparencyError> {
        if self.version == RekorVersion::V2 {
            let digest: [u8; 32] = Sha256::digest(payload).into();
            return self.propose_v2(&digest, signature, verifier).await;
        }
        let spec = json!({
            "signature": {"content": STANDARD.encode(signature),
                          "publicKey": {"content": STANDARD.encode(verifier)}},
            "data": {"hash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(payload))}}
        });
        let expected = |body: &Value| {
            let got = &body["spec"];
            if body["kind"] != "hashedrekord" {
                Err("its kind is not hashedrekord".to_owned())
            } else if got["data"]["hash"]["value"] != spec["data"]["hash"]["value"] {
                Err("its hash differs".to_owned())
            } else if got["signature"] != spec["signature"] {
                Err("its signature or public key differs".to_owned())
            } else {
                Ok(())
            }
        };
        self.propose(
            &json!({"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": spec}),
            &expected,
        )
        .await
    }
}

/// Whether `run` goes to the transparency log: every run, or (manual) only those annotated
/// `chains.tekton.dev/transparency-upload: "true"`.
pub fn uploads(config: &SignerConfig, run: &Run) -> bool {
    match config.transparency.mode {
        TransparencyMode::Enabled => true,
        TransparencyMode::Manual => run.annotation(TRANSPARENCY_UPLOAD) == Some("true"),
        TransparencyMode::Disabled => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::RunKind;

    #[test]
    fn entries_become_cosign_bundles_and_addresses() {
        let answer = json!({"24296fb24b8ad77a": {
            "body": "eyJraW5kIjoiZHNzZSJ9", "integratedTime": 1_795_680_000_i64,
            "logID": "c0d23d6a", "logIndex": 42,
            "verification": {"signedEntryTimestamp": "MEUCIQ=="}}});
        let entry = parse_entry(&answer).unwrap();
        assert_eq!(entry.uuid, "24296fb24b8ad77a");
        assert_eq!(
            entry.address("http://rekor:3000/"),
            "http://rekor:3000/api/v1/log/entries?logIndex=42"
        );
        let bundle: Value = serde_json::from_str(&entry.bundle()).unwrap();
        assert_eq!(bundle["SignedEntryTimestamp"], "MEUCIQ==");
        assert_eq!(bundle["Payload"]["logIndex"], 42);
        assert_eq!(bundle["Payload"]["body"], "eyJraW5kIjoiZHNzZSJ9");
        assert!(parse_entry(&json!({})).is_err());
        assert!(parse_entry(&json!({"x": {"logIndex": 1}})).is_err());
    }

    #[test]
    fn manual_transparency_uploads_only_annotated_runs() {
        let plain = Run::from_object(RunKind::TaskRun, json!({"metadata": {"name": "a"}}));
        let asked = Run::from_object(
            RunKind::TaskRun,
            json!({"metadata": {"name": "b", "annotations": {TRANSPARENCY_UPLOAD: "true"}}}),
        );
        let mut config = SignerConfig::default();
        assert!(!uploads(&config, &asked), "disabled by default");
        config.transparency.mode = TransparencyMode::Manual;
        assert!(!uploads(&config, &plain));
        assert!(uploads(&config, &asked));
        config.transparency.mode = TransparencyMode::Enabled;
        assert!(uploads(&config, &plain));
    }
}
