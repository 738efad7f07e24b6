//! Sigstore bundles among an image's OCI 1.1 referrers (`storage.oci.encoding:
//! sigstore-bundle`): each verifies with the trusted key or the certificate it carries, is
//! about the image's digest, and its transparency-log entry is proven included.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use signet_crds::TransparencyMode;
use signet_signer::signing::COSIGN_SIGN_PREDICATE_TYPE;
use signet_signer::storage::oci::layout::{
    BUNDLE_PREDICATE_TYPE_ANNOTATION, Manifest, SIGSTORE_BUNDLE_V03,
};
use signet_signer::storage::oci::reference::ImageRef;
use signet_signer::storage::oci::registry::Repository;
use signet_signer::transparency::timestamp::verify_for_signature;
use signet_signer::transparency::verify::check_promise;

use super::{BLOB_LIMIT, Problem, Verifier, open_envelope};

/// The most referrers of one image looked at.
const MAX_REFERRERS: usize = 64;

impl Verifier {
    /// The transparency-log entry a bundle carries, checked: its inclusion proof leads to a
    /// checkpoint the trusted log signed, and it records this envelope's signature. `None`
    /// when the bundle carries none.
    fn bundle_entry(&self, bundle: &Value) -> Result<Option<(u64, Option<i64>)>, String> {
        let Some(entry) = bundle["verificationMaterial"]["tlogEntries"].get(0) else {
            let required = self
                .spec
                .as_ref()
                .is_some_and(|spec| spec.transparency.mode == TransparencyMode::Enabled);
            return if required {
                Err("transparency is on, and the bundle carries no log entry".to_owned())
            } else {
                Ok(None)
            };
        };
        let key = match self.log_key() {
            Ok(key) => key,
            Err(super::Problem::Undecided(why) | super::Problem::Failed(why)) => {
                return Err(format!("the bundle's log entry cannot be checked: {why}"));
            }
        };
        let signatures: Vec<&str> = bundle["dsseEnvelope"]["signatures"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["sig"].as_str())
            .collect();
        // A dsse entry (Rekor v1) lists the signatures; a hashedrekord (v1 or v2) has one.
        let expected = |body: &Value| {
            let spec = &body["spec"];
            let recorded = spec["signatures"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| &s["signature"])
                .chain([
                    &spec["signature"]["content"],
                    &spec["hashedRekordV002"]["signature"]["content"],
                ]);
            let ours = recorded
                .filter_map(Value::as_str)
                .any(|r| signatures.contains(&r));
            ours.then_some(())
                .ok_or_else(|| "the entry records another signature".to_owned())
        };
        let checked = signet_signer::transparency::v2::check_entry(entry, &key, &expected)
            .map_err(|e| format!("the bundle's log entry: {e}"))?;
        Ok(Some((checked.log_index, promised_time(entry, &key)?)))
    }

    /// The signed timestamps a bundle carries, each checked against the TSA chain: the time
    /// of the first, `None` when it carries none and none is asked for.
    fn bundle_timestamp(&self, bundle: &Value) -> Result<Option<std::time::SystemTime>, String> {
        let stamps =
            bundle["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"]
                .as_array()
                .cloned()
                .unwrap_or_default();
        if stamps.is_empty() {
            let wanted = self
                .spec
                .as_ref()
                .is_some_and(|s| s.transparency.timestamp_url.is_some());
            return if wanted {
                Err("the SignetConfig asks for signed timestamps (transparency.timestampUrl) and the bundle carries none".to_owned())
            } else {
                Ok(None)
            };
        }
        let chain = self.trust.tsa_chain.as_deref().ok_or(
            "the bundle carries a signed timestamp and no timestamp authority chain is given: pass --trusted-root or --timestamp-certificate-chain",
        )?;
        let signature = bundle["dsseEnvelope"]["signatures"][0]["sig"]
            .as_str()
            .and_then(|s| STANDARD.decode(s).ok())
            .ok_or("the bundle's envelope has no base64 signature")?;
        let mut first = None;
        for stamp in &stamps {
            let der = stamp["signedTimestamp"]
                .as_str()
                .and_then(|s| STANDARD.decode(s).ok())
                .ok_or("a signed timestamp is not base64")?;
            let time = verify_for_signature(&der, &signature, chain)
                .map_err(|e| format!("the bundle's signed timestamp: {e}"))?;
            first.get_or_insert(time);
        }
        Ok(first)
    }

    /// A Sigstore bundle among the image's referrers (`storage.oci.encoding:
    /// sigstore-bundle`) verifies and is about this digest: cosign v3's image signature
    /// (predicate type `cosign/sign/v1`) when `signature`, else an attestation.
    pub(super) async fn bundle(
        &self,
        repository: &Repository,
        stored: &ImageRef,
        image: &ImageRef,
        signature: bool,
    ) -> Result<String, Problem> {
        let index = repository
            .referrers(&stored.digest, &stored.referrers_tag())
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no referrers of {}", stored.digest))?;
        let index: Value = serde_json::from_slice(&index)
            .map_err(|_| "the referrers index is not JSON".to_owned())?;
        let hex = image.digest.trim_start_matches("sha256:");
        let mut last = Problem::Failed(format!(
            "no Sigstore bundle among its referrers is {}",
            if signature {
                "an image signature (cosign/sign/v1)"
            } else {
                "an attestation"
            }
        ));
        let manifests = index["manifests"].as_array().into_iter().flatten();
        for referrer in manifests.take(MAX_REFERRERS) {
            // Registries differ in what the index says of a referrer (some give neither its
            // artifactType nor its annotations): the referrer's own manifest is read instead.
            let Some(digest) = referrer["digest"].as_str() else {
                last = last.or("a referrer in the index has no digest".into());
                continue;
            };
            let opened = self
                .open_bundle(repository, digest, signature)
                .await
                .and_then(|found| {
                    let Some((statement, by)) = found else {
                        return Ok(None);
                    };
                    let about = statement["subject"]
                        .as_array()
                        .is_some_and(|s| s.iter().any(|s| s["digest"]["sha256"] == hex));
                    about
                        .then_some(Some(by))
                        .ok_or_else(|| "a bundle is about other digests".into())
                });
            match opened {
                Ok(Some(by)) => return Ok(by),
                Ok(None) => {}
                Err(why) => last = last.or(why),
            }
        }
        Err(last)
    }

    /// The statement in the bundle that referrer `digest` holds, once its envelope verifies
    /// with the trusted key or the certificate it carries (for the expected identity);
    /// `None` when the referrer is not a Sigstore bundle of the kind asked for (an image
    /// signature when `signature`, else an attestation).
    async fn open_bundle(
        &self,
        repository: &Repository,
        digest: &str,
        signature: bool,
    ) -> Result<Option<(Value, String)>, Problem> {
        let manifest = repository
            .manifest(digest)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("the referrer {digest} is missing"))?;
        let manifest: Manifest = serde_json::from_slice(&manifest)
            .map_err(|_| format!("the referrer {digest} is not an image manifest"))?;
        let Some(layer) = manifest.layers.first() else {
            return Ok(None);
        };
        let predicate = manifest
            .annotations
            .as_ref()
            .and_then(|a| a.get(BUNDLE_PREDICATE_TYPE_ANNOTATION))
            .map(String::as_str)
            .unwrap_or_default();
        if layer.media_type != SIGSTORE_BUNDLE_V03
            || (predicate == COSIGN_SIGN_PREDICATE_TYPE) != signature
        {
            return Ok(None);
        }
        let blob = repository
            .blob(&layer.digest, BLOB_LIMIT)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("the bundle blob {} is missing", layer.digest))?;
        let bundle: Value =
            serde_json::from_slice(&blob).map_err(|_| "a bundle is not JSON".to_owned())?;
        let certificate = match bundle["verificationMaterial"]["certificate"]["rawBytes"].as_str() {
            Some(raw) => {
                let der = STANDARD
                    .decode(raw)
                    .map_err(|_| "a bundle's certificate is not base64".to_owned())?;
                Some(certificate_pem(&der))
            }
            None => None,
        };
        let timestamp = self
            .bundle_timestamp(&bundle)?
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_secs()).ok());
        let entry = self.bundle_entry(&bundle)?;
        // A keyless certificate is checked at the time the authority vouches for, else the
        // time the log promised.
        let signed_at = timestamp.or(entry.and_then(|(_, promised)| promised));
        let (key, by) = self.verifying_key(certificate.as_deref(), None, signed_at)?;
        let by = match timestamp {
            Some(at) => format!("{by}; signed timestamp {} verified", super::humanish(at)),
            None => by,
        };
        let envelope = serde_json::to_vec(&bundle["dsseEnvelope"]).unwrap_or_default();
        let payload = open_envelope(&envelope, &key)?;
        if let (Some(at), Some(signature), Ok(mut vouched)) = (
            signed_at,
            bundle["dsseEnvelope"]["signatures"][0]["sig"].as_str(),
            self.vouched.lock(),
        ) {
            vouched.push((signature.to_owned(), at));
        }
        let statement = serde_json::from_slice(&payload)
            .map_err(|_| "a bundle's statement is not JSON".to_owned())?;
        let by = match entry {
            Some((index, _)) => format!("{by}; log entry {index} proven included"),
            None => by,
        };
        Ok(Some((statement, by)))
    }
}

/// When a Rekor v1 entry in a bundle was integrated, as its inclusion promise (the signed
/// entry timestamp over body, time, index and log) vouches; `None` without a promise (Rekor
/// v2 gives none: a signed timestamp says when instead).
fn promised_time(entry: &Value, key: &[u8]) -> Result<Option<i64>, String> {
    let Some(promise) = entry["inclusionPromise"]["signedEntryTimestamp"].as_str() else {
        return Ok(None);
    };
    // protobuf JSON: 64-bit numbers as strings, the log id as base64 bytes.
    let number = |v: &Value| {
        v.as_str()
            .and_then(|s| s.parse::<i64>().ok())
            .or(v.as_i64())
    };
    let log_id = entry["logId"]["keyId"]
        .as_str()
        .and_then(|k| STANDARD.decode(k).ok())
        .map(hex::encode);
    let as_cosign_bundle = serde_json::json!({
        "SignedEntryTimestamp": promise,
        "Payload": {
            "body": entry["canonicalizedBody"],
            "integratedTime": number(&entry["integratedTime"]),
            "logIndex": number(&entry["logIndex"]),
            "logID": log_id,
        }
    });
    check_promise(&as_cosign_bundle, key)
        .map(|(time, _)| Some(time))
        .map_err(|e| format!("the bundle's log entry: its inclusion promise: {e}"))
}

/// DER as a PEM `CERTIFICATE` block.
fn certificate_pem(der: &[u8]) -> String {
    let text = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in text.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}
