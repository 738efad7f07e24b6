//! Rekor v2 (rekor-tiles, `transparency.version: v2`): every signature is recorded as a
//! `hashedrekord` v0.0.2 entry — the log takes no other kind. A DSSE envelope's entry covers
//! the digest of its pre-authentication encoding (what the signature signs), as cosign v3 and
//! sigstore-go record it. The log answers with a `TransparencyLogEntry` (protobuf JSON) holding
//! the inclusion proof and the checkpoint; it has no signed entry timestamp and serves no
//! public key, so its key must be pinned (`SIGSTORE_REKOR_PUBLIC_KEY`).
//!
//! The request builders and the answer check are pure; the upload is [`super::Rekor`]'s.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::verify::{check_inclusion, hex32_b64};
use super::{Entry, InclusionProof};

/// The SPKI DER prefix of every ECDSA P-256 public key.
const P256_SPKI_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The `keyDetails` Rekor v2 checks a signature with, for the public key `spki` (DER).
pub fn key_details(spki: &[u8]) -> Result<&'static str, String> {
    if spki.starts_with(P256_SPKI_PREFIX) {
        Ok("PKIX_ECDSA_P256_SHA_256")
    } else {
        Err(
            "Rekor v2 takes only ECDSA P-256 keys from Signet so far (it checks other \
             curves and Ed25519 with their own prehash, which cosign's key signatures do not use)"
                .to_owned(),
        )
    }
}

/// The `hashedRekordRequestV002` for `signature` over a message whose SHA-256 is `digest`,
/// verified by `verifier_pem` (a public key or a Fulcio certificate).
pub fn hashedrekord_request(
    digest: &[u8; 32],
    signature: &[u8],
    verifier_pem: &str,
) -> Result<Value, String> {
    let (label, der) = pem_rfc7468::decode_vec(verifier_pem.trim().as_bytes())
        .map_err(|e| format!("the verifier is not PEM: {e}"))?;
    let (material, spki) = match label {
        "PUBLIC KEY" => (
            json!({"publicKey": {"rawBytes": STANDARD.encode(&der)}}),
            der,
        ),
        "CERTIFICATE" => {
            let leaf = crate::signing::keyless::read_leaf(verifier_pem)
                .map_err(|e| format!("the certificate: {e}"))?;
            (
                json!({"x509Certificate": {"rawBytes": STANDARD.encode(&der)}}),
                leaf.key,
            )
        }
        other => {
            return Err(format!(
                "the verifier is a PEM {other}, not a key or certificate"
            ));
        }
    };
    let mut verifier = material;
    verifier["keyDetails"] = key_details(&spki)?.into();
    Ok(json!({"hashedRekordRequestV002": {
        "digest": STANDARD.encode(digest),
        "signature": {"content": STANDARD.encode(signature), "verifier": verifier},
    }}))
}

/// What the log must have recorded for [`hashedrekord_request`]: its digest and signature.
pub fn expected_body(request: &Value) -> impl Fn(&Value) -> Result<(), String> + Sync + '_ {
    move |body: &Value| {
        let sent = &request["hashedRekordRequestV002"];
        let spec = &body["spec"]["hashedRekordV002"];
        if body["kind"] != "hashedrekord" {
            Err(format!("its kind is {}, not hashedrekord", body["kind"]))
        } else if spec["data"]["digest"] != sent["digest"] {
            Err("its digest differs".to_owned())
        } else if spec["signature"]["content"] != sent["signature"]["content"] {
            Err("its signature differs".to_owned())
        } else {
            Ok(())
        }
    }
}

/// The SPKI DER prefix of every Ed25519 public key (the raw 32-byte key follows).
const ED25519_SPKI_PREFIX: &[u8] = &[
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The log IDs an entry of the log with key `spki` and checkpoint origin `origin` may carry:
/// the SHA-256 of the key's DER (Rekor v1, and rekor-tiles for ECDSA keys) and, for an Ed25519
/// key, rekor-tiles' note key hash — SHA-256 of the origin, a newline, the algorithm byte 0x01
/// and the raw key (C2SP signed-note).
fn log_ids_of(spki: &[u8], origin: &str) -> Vec<Vec<u8>> {
    let mut ids = vec![Sha256::digest(spki).to_vec()];
    if let Some(raw) = spki.strip_prefix(ED25519_SPKI_PREFIX) {
        let mut hash = Sha256::new();
        hash.update(origin.as_bytes());
        hash.update(b"\n\x01");
        hash.update(raw);
        ids.push(hash.finalize().to_vec());
    }
    ids
}

fn number(value: &Value, what: &str) -> Result<u64, String> {
    // protobuf JSON writes 64-bit numbers as strings; either is taken.
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .ok_or_else(|| format!("the entry has no {what}"))
}

/// Checks Rekor v2's answer (a `TransparencyLogEntry`) against the log's key (SPKI DER): the
/// inclusion proof leads from the body to the root of a checkpoint the log signed, and
/// `expected` accepts the body. Returns the entry, its proof kept for the bundle.
pub fn check_entry(
    answer: &Value,
    log_key: &[u8],
    expected: &(dyn Fn(&Value) -> Result<(), String> + Sync),
) -> Result<Entry, String> {
    let body_b64 = answer["canonicalizedBody"]
        .as_str()
        .ok_or("the entry has no canonicalizedBody")?;
    let body = STANDARD
        .decode(body_b64)
        .map_err(|_| "the entry body is not base64".to_owned())?;
    let proof = &answer["inclusionProof"];
    if !proof.is_object() {
        return Err("the entry has no inclusion proof".to_owned());
    }
    let (index, size) = (
        number(&proof["logIndex"], "proof logIndex")?,
        number(&proof["treeSize"], "treeSize")?,
    );
    let proof = InclusionProof {
        log_index: index,
        tree_size: size,
        root_hash: hex32_b64(&proof["rootHash"], "rootHash")?,
        hashes: proof["hashes"]
            .as_array()
            .ok_or("the inclusion proof has no hashes")?
            .iter()
            .map(|h| hex32_b64(h, "hashes"))
            .collect::<Result<Vec<_>, _>>()?,
        checkpoint: proof["checkpoint"]["envelope"]
            .as_str()
            .ok_or("the inclusion proof has no checkpoint")?
            .to_owned(),
    };
    check_inclusion(&body, &proof, log_key)?;
    let record: Value =
        serde_json::from_slice(&body).map_err(|_| "the entry body is not JSON".to_owned())?;
    expected(&record).map_err(|e| format!("the entry is not what was sent: {e}"))?;
    let log_id = answer["logId"]["keyId"]
        .as_str()
        .and_then(|k| STANDARD.decode(k).ok())
        .ok_or("the entry has no logId")?;
    let origin = proof.checkpoint.lines().next().unwrap_or_default();
    if !log_ids_of(log_key, origin).contains(&log_id) {
        return Err("the entry names another log (its logId is not this log's key)".to_owned());
    }
    let log_index = number(&answer["logIndex"], "logIndex")?;
    if log_index != proof.log_index {
        return Err("the entry's logIndex is not the one its inclusion proof is for".to_owned());
    }
    Ok(Entry {
        uuid: String::new(),
        log_index,
        integrated_time: 0,
        log_id: hex::encode(log_id),
        body: body_b64.to_owned(),
        signed_entry_timestamp: String::new(),
        kind: record["kind"].as_str().unwrap_or_default().to_owned(),
        kind_version: record["apiVersion"].as_str().unwrap_or_default().to_owned(),
        proof: Some(proof),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use signet_config::keys::SigningKey;

    fn key(file: &str) -> SigningKey {
        let path = format!(
            "{}/../config/testdata/keys/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        SigningKey::from_private_pem(&std::fs::read(path).unwrap()).unwrap()
    }

    /// A one-entry log's answer for `request`, signed with `log`.
    fn answer(log: &SigningKey, request: &Value) -> Value {
        let sent = &request["hashedRekordRequestV002"];
        let body = json!({"apiVersion": "0.0.2", "kind": "hashedrekord", "spec": {"hashedRekordV002": {
            "data": {"algorithm": "SHA2_256", "digest": sent["digest"]},
            "signature": sent["signature"]}}});
        let body = serde_json::to_vec(&body).unwrap();
        let mut leaf = Sha256::new();
        leaf.update([0u8]);
        leaf.update(&body);
        let root: [u8; 32] = leaf.finalize().into();
        let text = format!("log.test\n1\n{}\n", STANDARD.encode(root));
        let mut signature = vec![0u8; 4];
        signature.extend(log.sign(text.as_bytes()).unwrap());
        json!({
            "logIndex": "0",
            "logId": {"keyId": STANDARD.encode(Sha256::digest(log.public_der()))},
            "kindVersion": {"kind": "hashedrekord", "version": "0.0.2"},
            "inclusionProof": {"logIndex": "0", "rootHash": STANDARD.encode(root), "treeSize": "1",
                "hashes": [], "checkpoint": {"envelope": format!("{text}\n\u{2014} log.test {}\n", STANDARD.encode(signature))}},
            "canonicalizedBody": STANDARD.encode(&body),
        })
    }

    #[test]
    fn a_v2_entry_is_accepted_only_when_proof_checkpoint_and_body_hold() {
        let (signer, log) = (key("p256.pem"), key("p256-sec1.pem"));
        let request = hashedrekord_request(&[1u8; 32], b"signature", &signer.public_pem).unwrap();
        assert_eq!(
            request["hashedRekordRequestV002"]["signature"]["verifier"]["keyDetails"],
            "PKIX_ECDSA_P256_SHA_256"
        );
        let good = answer(&log, &request);
        let expected = expected_body(&request);
        let entry = check_entry(&good, log.public_der(), &expected).unwrap();
        assert_eq!(entry.kind_version, "0.0.2");
        assert_eq!(entry.tlog_entry()["inclusionProof"]["treeSize"], "1");
        assert!(entry.tlog_entry().get("inclusionPromise").is_none());
        let mut tampered = good.clone();
        tampered["inclusionProof"]["treeSize"] = "2".into();
        assert!(check_entry(&tampered, log.public_der(), &expected).is_err());
        let mut other_log = good.clone();
        other_log["logId"]["keyId"] = STANDARD.encode([7u8; 32]).into();
        let err = check_entry(&other_log, log.public_der(), &expected).unwrap_err();
        assert!(err.contains("another log"), "{err}");
        let mut other_index = good.clone();
        other_index["logIndex"] = "5".into();
        assert!(check_entry(&other_index, log.public_der(), &expected).is_err());
        let other = hashedrekord_request(&[2u8; 32], b"signature", &signer.public_pem).unwrap();
        let err = check_entry(&good, log.public_der(), &expected_body(&other)).unwrap_err();
        assert!(err.contains("digest differs"), "{err}");
        // Rekor v2 checks other curves and Ed25519 with their own prehash: refused here.
        for file in ["ed25519.pem", "p384.pem"] {
            let other = key(file);
            assert!(hashedrekord_request(&[1u8; 32], b"s", &other.public_pem).is_err());
        }
    }
}
