//! Rekor v1 uploads (`transparency.enabled`, `transparency.url`): a `dsse` entry for each
//! run's attestation and a `hashedrekord` entry for each image signature, each with the
//! verification material (the Fulcio certificate, or the public key). The entry's signed
//! timestamp becomes cosign's bundle annotation on the OCI layer, so verifiers check the log
//! offline; the entry's address goes into the run's annotations.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

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

    /// Where the entry can be read (Chains' `transparency` annotation).
    pub fn address(&self, log: &str) -> String {
        format!(
            "{}/api/v1/log/entries?logIndex={}",
            log.trim_end_matches('/'),
            self.log_index
        )
    }
}

/// A Rekor v1 log.
#[derive(Clone, Debug)]
pub struct Rekor {
    pub url: String,
    http: reqwest::Client,
}

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
    })
}

impl Rekor {
    pub fn new(http: &reqwest::Client, url: &str) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            http: http.clone(),
        }
    }

    fn error(&self, message: impl std::fmt::Display) -> TransparencyError {
        TransparencyError {
            url: self.url.clone(),
            message: message.to_string(),
        }
    }

    /// Proposes `entry`; an entry that already exists (409) is read back instead.
    async fn propose(&self, entry: &Value) -> Result<Entry, TransparencyError> {
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
        let answer: Value = response.json().await.unwrap_or_default();
        if status == reqwest::StatusCode::CONFLICT {
            let existing = location
                .or_else(|| answer["entryURL"].as_str().map(str::to_owned))
                .ok_or_else(|| self.error("409 without the existing entry's address"))?;
            let existing = if existing.starts_with("http") {
                existing
            } else {
                format!("{}{existing}", self.url)
            };
            let answer: Value = self
                .http
                .get(&existing)
                .send()
                .await
                .map_err(|e| self.error(e))?
                .json()
                .await
                .map_err(|e| self.error(e))?;
            return parse_entry(&answer).map_err(|e| self.error(e));
        }
        if !status.is_success() {
            return Err(self.error(format!(
                "{status}: {}",
                answer["message"].as_str().unwrap_or("no details")
            )));
        }
        parse_entry(&answer).map_err(|e| self.error(e))
    }

    /// A `dsse` entry for an attestation envelope, verified by `verifier` (PEM certificate or
    /// public key).
    pub async fn dsse(
        &self,
        envelope_json: &[u8],
        verifier: &str,
    ) -> Result<Entry, TransparencyError> {
        let envelope = String::from_utf8_lossy(envelope_json).into_owned();
        self.propose(&json!({
            "apiVersion": "0.0.1", "kind": "dsse",
            "spec": {"proposedContent": {"envelope": envelope, "verifiers": [STANDARD.encode(verifier)]}}
        }))
        .await
    }

    /// A `hashedrekord` entry for `signature` over `payload`.
    pub async fn hashedrekord(
        &self,
        payload: &[u8],
        signature: &[u8],
        verifier: &str,
    ) -> Result<Entry, TransparencyError> {
        self.propose(&json!({
            "apiVersion": "0.0.1", "kind": "hashedrekord",
            "spec": {
                "signature": {"content": STANDARD.encode(signature),
                              "publicKey": {"content": STANDARD.encode(verifier)}},
                "data": {"hash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(payload))}}
            }
        }))
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
