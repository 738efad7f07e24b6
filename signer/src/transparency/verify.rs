//! Checks a Rekor v1 entry before it is stored anywhere: it is in the log whose key we hold
//! (`logID` is that key's SHA-256), the signed entry timestamp verifies with that key, the
//! inclusion proof leads from the entry to the root hash of a checkpoint the log signed, and
//! the body is the entry that was sent (the caller says what to compare).
//!
//! Pure: the log's key comes from the caller.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Entry, parse_entry};
use signet_config::keys::verify_signature;

/// The canonical JSON the signed entry timestamp covers (keys in lexical order, no spaces).
fn set_payload(entry: &Entry) -> String {
    format!(
        "{{\"body\":{},\"integratedTime\":{},\"logID\":{},\"logIndex\":{}}}",
        Value::String(entry.body.clone()),
        entry.integrated_time,
        Value::String(entry.log_id.clone()),
        entry.log_index
    )
}

/// The entry is in the log whose key this is (`logID`), and its signed entry timestamp —
/// the log's promise to include it — verifies with that key.
fn check_promised(entry: &Entry, log_key: &[u8]) -> Result<(), String> {
    if entry.log_id != hex::encode(Sha256::digest(log_key)) {
        return Err("the entry is from another log (its logID is not this log's key)".to_owned());
    }
    let set = STANDARD
        .decode(&entry.signed_entry_timestamp)
        .map_err(|_| "the signed entry timestamp is not base64".to_owned())?;
    verify_signature(log_key, set_payload(entry).as_bytes(), &set)
        .map_err(|e| format!("the signed entry timestamp does not verify: {e}"))
}

/// Checks cosign's tag-schema log bundle (`dev.sigstore.cosign/bundle`: the signed entry
/// timestamp and the entry it covers) against the log's key: the entry is in that log and the
/// log promised it. Returns the integrated time and the decoded entry body, for the caller to
/// compare with what the layer signs. (The promise alone: such bundles carry no inclusion
/// proof, as cosign's offline verification accepts.)
pub fn check_promise(bundle: &Value, log_key: &[u8]) -> Result<(i64, Value), String> {
    let payload = &bundle["Payload"];
    let text = |name: &str| {
        payload[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("the log bundle has no {name}"))
    };
    let entry = Entry {
        uuid: String::new(),
        log_index: payload["logIndex"]
            .as_u64()
            .ok_or("the log bundle has no logIndex")?,
        integrated_time: payload["integratedTime"]
            .as_i64()
            .ok_or("the log bundle has no integratedTime")?,
        log_id: text("logID")?,
        body: text("body")?,
        signed_entry_timestamp: bundle["SignedEntryTimestamp"]
            .as_str()
            .ok_or("the log bundle has no SignedEntryTimestamp")?
            .to_owned(),
        kind: String::new(),
        kind_version: String::new(),
        proof: None,
    };
    check_promised(&entry, log_key)?;
    let body = STANDARD
        .decode(&entry.body)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("the log bundle's body is not base64 JSON")?;
    Ok((entry.integrated_time, body))
}

fn hash_children(left: &[u8], right: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root hash an inclusion proof leads to (RFC 9162, 2.1.3.2), or `None` when the proof
/// does not fit the tree.
pub fn root_from_inclusion(
    index: u64,
    size: u64,
    leaf: [u8; 32],
    proof: &[[u8; 32]],
) -> Option<[u8; 32]> {
    if index >= size {
        return None;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut root = leaf;
    for sibling in proof {
        if sn == 0 {
            return None;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            root = hash_children(sibling, &root);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            root = hash_children(&root, sibling);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    (sn == 0).then_some(root)
}

fn hex32(value: &Value, what: &str) -> Result<[u8; 32], String> {
    value
        .as_str()
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| format!("the inclusion proof's {what} is not a SHA-256 hash"))
}

/// A base64 SHA-256 hash (protobuf JSON's bytes), as Rekor v2 writes them.
pub(super) fn hex32_b64(value: &Value, what: &str) -> Result<[u8; 32], String> {
    value
        .as_str()
        .and_then(|h| STANDARD.decode(h).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| format!("the inclusion proof's {what} is not a SHA-256 hash"))
}

/// Checks a checkpoint (a signed note: origin, tree size, base64 root hash, then a blank line
/// and `— <name> <base64 key hint + signature>` lines) against the log's key, and that it
/// commits to `size` and `root`.
pub(super) fn check_checkpoint(
    note: &str,
    key: &[u8],
    size: u64,
    root: &[u8; 32],
) -> Result<(), String> {
    let (text, signatures) = note
        .split_once("\n\n")
        .ok_or("the checkpoint is not a signed note")?;
    let signed = format!("{text}\n");
    let mut lines = text.lines().skip(1);
    let note_size: Option<u64> = lines.next().and_then(|l| l.parse().ok());
    let note_root = lines.next().and_then(|l| STANDARD.decode(l).ok());
    if note_size != Some(size) || note_root.as_deref() != Some(root.as_slice()) {
        return Err("the checkpoint is for another tree than the inclusion proof".to_owned());
    }
    let verified = signatures
        .lines()
        .filter_map(|line| line.strip_prefix("\u{2014} "))
        .filter_map(|line| line.rsplit_once(' '))
        .filter_map(|(_, b64)| STANDARD.decode(b64).ok())
        .any(|raw| raw.len() > 4 && verify_signature(key, signed.as_bytes(), &raw[4..]).is_ok());
    if verified {
        Ok(())
    } else {
        Err("the checkpoint's signature does not verify with the log's key".to_owned())
    }
}

/// The entry `body` is in the log: its leaf leads through the proof to the root hash, which
/// a checkpoint signed with `log_key` commits to for the same tree size.
pub(super) fn check_inclusion(
    body: &[u8],
    proof: &super::InclusionProof,
    log_key: &[u8],
) -> Result<(), String> {
    let mut leaf = Sha256::new();
    leaf.update([0u8]);
    leaf.update(body);
    let root = root_from_inclusion(
        proof.log_index,
        proof.tree_size,
        leaf.finalize().into(),
        &proof.hashes,
    );
    if root != Some(proof.root_hash) {
        return Err("the inclusion proof does not lead to the root hash".to_owned());
    }
    check_checkpoint(
        &proof.checkpoint,
        log_key,
        proof.tree_size,
        &proof.root_hash,
    )
}

/// Checks Rekor's answer for one entry (`{"<uuid>": {...}}`) against the log's public key
/// (SPKI DER) and, through `expected`, that its body is the entry that was sent.
pub fn check_entry(
    answer: &Value,
    log_key: &[u8],
    expected: &(dyn Fn(&Value) -> Result<(), String> + Sync),
) -> Result<Entry, String> {
    let mut entry = parse_entry(answer)?;
    check_promised(&entry, log_key)?;
    let body = STANDARD
        .decode(&entry.body)
        .map_err(|_| "the entry body is not base64".to_owned())?;
    let record = answer
        .as_object()
        .and_then(|m| m.values().next())
        .ok_or("the answer holds no entry")?;
    let proof = &record["verification"]["inclusionProof"];
    if !proof.is_object() {
        return Err("the entry has no inclusion proof".to_owned());
    }
    let number = |name: &str| {
        proof[name]
            .as_u64()
            .ok_or_else(|| format!("the inclusion proof has no {name}"))
    };
    let (index, size) = (number("logIndex")?, number("treeSize")?);
    let proof = super::InclusionProof {
        log_index: index,
        tree_size: size,
        root_hash: hex32(&proof["rootHash"], "rootHash")?,
        hashes: proof["hashes"]
            .as_array()
            .ok_or("the inclusion proof has no hashes")?
            .iter()
            .map(|h| hex32(h, "hashes"))
            .collect::<Result<Vec<_>, _>>()?,
        checkpoint: proof["checkpoint"]
            .as_str()
            .ok_or("the inclusion proof has no checkpoint")?
            .to_owned(),
    };
    check_inclusion(&body, &proof, log_key)?;
    let body: Value =
        serde_json::from_slice(&body).map_err(|_| "the entry body is not JSON".to_owned())?;
    expected(&body).map_err(|e| format!("the entry is not what was sent: {e}"))?;
    body["kind"]
        .as_str()
        .unwrap_or_default()
        .clone_into(&mut entry.kind);
    body["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .clone_into(&mut entry.kind_version);
    entry.proof = Some(proof);
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(n: u8) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update([0u8, n]);
        h.finalize().into()
    }

    /// The RFC 9162 tree hash of `leaves`, for checking proofs.
    fn tree(leaves: &[[u8; 32]]) -> [u8; 32] {
        if leaves.len() == 1 {
            return leaves[0];
        }
        let k = leaves.len().next_power_of_two() / 2;
        hash_children(&tree(&leaves[..k]), &tree(&leaves[k..]))
    }

    /// The audit path of leaf `m` in `leaves` (RFC 9162 PATH).
    fn path(m: usize, leaves: &[[u8; 32]]) -> Vec<[u8; 32]> {
        if leaves.len() == 1 {
            return Vec::new();
        }
        let k = leaves.len().next_power_of_two() / 2;
        if m < k {
            let mut p = path(m, &leaves[..k]);
            p.push(tree(&leaves[k..]));
            p
        } else {
            let mut p = path(m - k, &leaves[k..]);
            p.push(tree(&leaves[..k]));
            p
        }
    }

    #[test]
    fn every_leaf_of_every_small_tree_proves_its_inclusion_and_nothing_else_does() {
        for size in 1..=17u8 {
            let leaves: Vec<_> = (0..size).map(leaf).collect();
            let root = tree(&leaves);
            for m in 0..size {
                let proof = path(m.into(), &leaves);
                let (i, n) = (u64::from(m), u64::from(size));
                assert_eq!(root_from_inclusion(i, n, leaf(m), &proof), Some(root));
                assert_ne!(root_from_inclusion(i, n, leaf(m + 100), &proof), Some(root));
                if size > 1 {
                    let other = (m + 1) % size;
                    assert_ne!(
                        root_from_inclusion(u64::from(other), n, leaf(m), &proof),
                        Some(root),
                        "leaf {m} proven at {other} of {size}"
                    );
                    assert_ne!(root_from_inclusion(i, n, leaf(m), &proof[1..]), Some(root));
                }
            }
        }
        assert_eq!(root_from_inclusion(3, 3, leaf(0), &[]), None);
    }

    fn test_key() -> signet_config::keys::SigningKey {
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        signet_config::keys::SigningKey::from_pkcs8_der(pkcs8.as_ref()).unwrap()
    }

    /// A Rekor answer for `body` at index 1 of a 3-entry log, signed by `key`.
    fn answer(key: &signet_config::keys::SigningKey, body: &Value) -> Value {
        let body = STANDARD.encode(body.to_string());
        let mut leaf_hash = Sha256::new();
        leaf_hash.update([0u8]);
        leaf_hash.update(STANDARD.decode(&body).unwrap());
        let leaves = [leaf(0), leaf_hash.finalize().into(), leaf(2)];
        let root = tree(&leaves);
        let log_id = hex::encode(Sha256::digest(key.public_der()));
        let mut entry = Entry {
            uuid: "u".into(),
            log_index: 1,
            integrated_time: 1_700_000_000,
            log_id: log_id.clone(),
            body: body.clone(),
            signed_entry_timestamp: String::new(),
            kind: String::new(),
            kind_version: String::new(),
            proof: None,
        };
        entry.signed_entry_timestamp =
            STANDARD.encode(key.sign(set_payload(&entry).as_bytes()).unwrap());
        let text = format!("test log - 1\n3\n{}\n", STANDARD.encode(root));
        let mut signature = vec![0u8; 4];
        signature.extend(key.sign(text.as_bytes()).unwrap());
        let checkpoint = format!("{text}\n\u{2014} test {}\n", STANDARD.encode(signature));
        serde_json::json!({"u": {
            "body": body, "integratedTime": 1_700_000_000, "logID": log_id, "logIndex": 1,
            "verification": {
                "signedEntryTimestamp": entry.signed_entry_timestamp,
                "inclusionProof": {
                    "logIndex": 1, "treeSize": 3, "rootHash": hex::encode(root),
                    "hashes": path(1, &leaves).iter().map(hex::encode).collect::<Vec<_>>(),
                    "checkpoint": checkpoint,
                }
            }
        }})
    }

    #[test]
    fn an_entry_is_accepted_only_when_every_part_verifies() {
        let key = test_key();
        let sent = serde_json::json!({"kind": "hashedrekord", "spec": {"x": 1}});
        let same = |body: &Value| {
            (body == &serde_json::json!({"kind": "hashedrekord", "spec": {"x": 1}}))
                .then_some(())
                .ok_or_else(|| "another body".to_owned())
        };
        let good = answer(&key, &sent);
        let log_key = key.public_der();
        let checked = check_entry(&good, log_key, &same).unwrap();
        assert_eq!(checked.log_index, 1);
        // What a Sigstore bundle carries of it: protobuf JSON, the proof in base64.
        let tlog = checked.tlog_entry();
        assert_eq!(tlog["logIndex"], "1");
        assert_eq!(tlog["kindVersion"]["kind"], "hashedrekord");
        assert_eq!(
            STANDARD
                .decode(tlog["logId"]["keyId"].as_str().unwrap())
                .unwrap(),
            Sha256::digest(log_key).to_vec()
        );
        let proof = &good["u"]["verification"]["inclusionProof"];
        assert_eq!(tlog["inclusionProof"]["treeSize"], "3");
        assert_eq!(
            tlog["inclusionProof"]["rootHash"],
            STANDARD.encode(hex::decode(proof["rootHash"].as_str().unwrap()).unwrap())
        );
        assert_eq!(
            tlog["inclusionProof"]["checkpoint"]["envelope"],
            proof["checkpoint"]
        );
        assert_eq!(tlog["canonicalizedBody"], good["u"]["body"]);
        let mut tampered: Vec<(&str, Value)> = Vec::new();
        let mut with = |what, change: &dyn Fn(&mut Value)| {
            let mut a = good.clone();
            change(&mut a["u"]);
            tampered.push((what, a));
        };
        with("body", &|e| {
            e["body"] = STANDARD.encode(b"{\"kind\":\"other\"}").into();
        });
        with("integratedTime", &|e| e["integratedTime"] = 1.into());
        with("SET", &|e| {
            e["verification"]["signedEntryTimestamp"] = "MEUCIQ==".into();
        });
        with("proof", &|e| {
            e["verification"]["inclusionProof"]["hashes"][0] = hex::encode([7u8; 32]).into();
        });
        with("size", &|e| {
            e["verification"]["inclusionProof"]["treeSize"] = 4.into();
        });
        with("no proof", &|e| {
            e["verification"]["inclusionProof"] = Value::Null;
        });
        with("checkpoint", &|e| {
            let c = e["verification"]["inclusionProof"]["checkpoint"]
                .as_str()
                .unwrap();
            e["verification"]["inclusionProof"]["checkpoint"] =
                c.replacen("\n3\n", "\n4\n", 1).into();
        });
        for (what, a) in tampered {
            assert!(
                check_entry(&a, log_key, &same).is_err(),
                "{what} was accepted"
            );
        }
        let other_key = test_key();
        let err = check_entry(&good, other_key.public_der(), &same).unwrap_err();
        assert!(err.contains("another log"), "{err}");
        let faked = answer(
            &key,
            &serde_json::json!({"kind": "hashedrekord", "spec": {"x": 2}}),
        );
        let err = check_entry(&faked, log_key, &same).unwrap_err();
        assert!(err.contains("not what was sent"), "{err}");
    }

    #[test]
    fn the_signed_entry_timestamp_covers_canonical_json() {
        let entry = Entry {
            uuid: "u".into(),
            log_index: 7,
            integrated_time: 1_700_000_000,
            log_id: "ab".into(),
            body: "eyJ9".into(),
            signed_entry_timestamp: String::new(),
            kind: String::new(),
            kind_version: String::new(),
            proof: None,
        };
        assert_eq!(
            set_payload(&entry),
            r#"{"body":"eyJ9","integratedTime":1700000000,"logID":"ab","logIndex":7}"#
        );
    }

    #[test]
    fn a_log_bundle_counts_only_when_its_promise_verifies_with_the_logs_key() {
        let key = test_key();
        let body = serde_json::json!({"kind": "hashedrekord", "spec": {"x": 1}});
        let mut entry = Entry {
            uuid: String::new(),
            log_index: 3,
            integrated_time: 1_765_000_000,
            log_id: hex::encode(Sha256::digest(key.public_der())),
            body: STANDARD.encode(body.to_string()),
            signed_entry_timestamp: String::new(),
            kind: String::new(),
            kind_version: String::new(),
            proof: None,
        };
        entry.signed_entry_timestamp =
            STANDARD.encode(key.sign(set_payload(&entry).as_bytes()).unwrap());
        let bundle = |entry: &Entry| {
            serde_json::json!({"SignedEntryTimestamp": entry.signed_entry_timestamp, "Payload": {
                "body": entry.body, "integratedTime": entry.integrated_time,
                "logIndex": entry.log_index, "logID": entry.log_id}})
        };
        assert_eq!(
            check_promise(&bundle(&entry), key.public_der()),
            Ok((1_765_000_000, body))
        );
        // Another log's key, a moved time, a missing field: refused.
        assert!(check_promise(&bundle(&entry), test_key().public_der()).is_err());
        let mut later = entry.clone();
        later.integrated_time += 3600;
        assert!(
            check_promise(&bundle(&later), key.public_der())
                .is_err_and(|e| e.contains("does not verify"))
        );
        let mut partial = bundle(&entry);
        partial["Payload"]["integratedTime"] = Value::Null;
        assert!(check_promise(&partial, key.public_der()).is_err());
    }
}
