//! TUF metadata (specification 1.0, as python-tuf, go-tuf and Sigstore's repository write it):
//! parsing, canonical JSON and signature thresholds. Pure: bytes and a clock in, verified
//! metadata or an error out.
//!
//! Keys: `ecdsa` (`ecdsa-sha2-nistp256`, `ecdsa-sha2-nistp384`, PEM public keys) — what
//! Sigstore's root uses — and `ed25519` (hex). A signature by a key of another type is not
//! counted toward a threshold.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use serde::Deserialize;
use serde_json::Value;

use super::TufError;

/// The outer `{"signatures": [...], "signed": {...}}` of every metadata file.
#[derive(Deserialize)]
struct Envelope {
    signatures: Vec<Signature>,
    signed: Value,
}

#[derive(Deserialize)]
struct Signature {
    keyid: String,
    sig: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Key {
    pub keytype: String,
    pub scheme: String,
    pub keyval: KeyVal,
}

#[derive(Clone, Debug, Deserialize)]
pub struct KeyVal {
    pub public: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Role {
    pub keyids: Vec<String>,
    pub threshold: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Root {
    pub version: u64,
    pub expires: String,
    pub keys: BTreeMap<String, Key>,
    pub roles: BTreeMap<String, Role>,
    #[serde(default)]
    pub consistent_snapshot: bool,
}

/// A `meta` entry of timestamp or snapshot metadata.
#[derive(Clone, Debug, Deserialize)]
pub struct MetaFile {
    pub version: u64,
    pub length: Option<u64>,
    pub hashes: Option<BTreeMap<String, String>>,
}

/// Timestamp and snapshot metadata have the same shape: a version, an expiry, and `meta`.
#[derive(Clone, Debug, Deserialize)]
pub struct Meta {
    pub version: u64,
    pub expires: String,
    pub meta: BTreeMap<String, MetaFile>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct TargetFile {
    pub length: u64,
    pub hashes: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Targets {
    pub version: u64,
    pub expires: String,
    pub targets: BTreeMap<String, TargetFile>,
}

/// Metadata with a version number and an expiry.
pub trait Versioned {
    fn version(&self) -> u64;
    fn expires(&self) -> &str;
}

impl Versioned for Meta {
    fn version(&self) -> u64 {
        self.version
    }
    fn expires(&self) -> &str {
        &self.expires
    }
}

impl Versioned for Targets {
    fn version(&self) -> u64 {
        self.version
    }
    fn expires(&self) -> &str {
        &self.expires
    }
}

fn bad(what: &str, why: impl std::fmt::Display) -> TufError {
    TufError::Invalid(format!("{what}: {why}"))
}

/// OLPC canonical JSON, what TUF signatures are computed over: object keys sorted, no
/// whitespace, strings escaping only `"` and `\`, integers only.
pub fn canonical(value: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            if n.is_f64() {
                return Err(format!("{n} is not an integer"));
            }
            out.extend_from_slice(n.to_string().as_bytes());
        }
        Value::String(s) => canonical_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let sorted: BTreeMap<&String, &Value> = map.iter().collect();
            out.push(b'{');
            for (i, (k, v)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_string(k, out);
                out.push(b':');
                canonical(v, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn canonical_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for byte in s.bytes() {
        if byte == b'"' || byte == b'\\' {
            out.push(b'\\');
        }
        out.push(byte);
    }
    out.push(b'"');
}

/// Whether `key` signed `message` with `sig` (hex).
fn verifies(key: &Key, message: &[u8], sig: &str) -> bool {
    let Ok(sig) = hex::decode(sig) else {
        return false;
    };
    match (key.keytype.as_str(), key.scheme.as_str()) {
        ("ecdsa" | "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256") => {
            use p256::ecdsa::signature::Verifier as _;
            use p256::pkcs8::DecodePublicKey as _;
            let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_pem(&key.keyval.public) else {
                return false;
            };
            p256::ecdsa::Signature::from_der(&sig).is_ok_and(|s| k.verify(message, &s).is_ok())
        }
        ("ecdsa" | "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp384") => {
            use p384::ecdsa::signature::Verifier as _;
            use p384::pkcs8::DecodePublicKey as _;
            let Ok(k) = p384::ecdsa::VerifyingKey::from_public_key_pem(&key.keyval.public) else {
                return false;
            };
            p384::ecdsa::Signature::from_der(&sig).is_ok_and(|s| k.verify(message, &s).is_ok())
        }
        ("ed25519", "ed25519") => hex::decode(&key.keyval.public).is_ok_and(|public| {
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
                .verify(message, &sig)
                .is_ok()
        }),
        _ => false,
    }
}

/// A metadata file parsed, with the canonical form of its `signed` part.
struct Parsed {
    signatures: Vec<Signature>,
    signed: Value,
    message: Vec<u8>,
}

fn parse(bytes: &[u8], kind: &str, what: &str) -> Result<Parsed, TufError> {
    let envelope: Envelope = serde_json::from_slice(bytes).map_err(|e| bad(what, e))?;
    let found = envelope.signed.get("_type").and_then(Value::as_str);
    if found != Some(kind) {
        return Err(bad(what, format!("_type is {found:?}, not {kind:?}")));
    }
    let mut message = Vec::with_capacity(bytes.len());
    canonical(&envelope.signed, &mut message).map_err(|e| bad(what, e))?;
    Ok(Parsed {
        signatures: envelope.signatures,
        signed: envelope.signed,
        message,
    })
}

impl Parsed {
    /// Checks that at least the threshold of `role_name`'s keys, as `delegator` lists them,
    /// signed this (each key counted once).
    fn signed_by(&self, role_name: &str, what: &str, delegator: &Root) -> Result<(), TufError> {
        let role = delegator
            .roles
            .get(role_name)
            .ok_or_else(|| bad(what, format!("the root names no {role_name} role")))?;
        if role.threshold == 0 {
            return Err(bad(what, format!("the {role_name} role's threshold is 0")));
        }
        let authorized: BTreeSet<&str> = role.keyids.iter().map(String::as_str).collect();
        let mut good = BTreeSet::new();
        for s in &self.signatures {
            if s.sig.is_empty() || !authorized.contains(s.keyid.as_str()) || good.contains(&s.keyid)
            {
                continue;
            }
            if let Some(key) = delegator.keys.get(&s.keyid)
                && verifies(key, &self.message, &s.sig)
            {
                good.insert(s.keyid.clone());
            }
        }
        if (good.len() as u64) < role.threshold {
            return Err(TufError::Signature(format!(
                "{what}: {} valid signature(s) by the {role_name} role's keys, {} needed",
                good.len(),
                role.threshold
            )));
        }
        Ok(())
    }
}

/// Parses `bytes` as metadata of role `kind` (`timestamp`, `snapshot`, `targets`) and checks
/// that the threshold of the role's keys, as the trusted `root` lists them, signed it.
pub fn check<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    kind: &str,
    what: &str,
    root: &Root,
) -> Result<T, TufError> {
    let parsed = parse(bytes, kind, what)?;
    parsed.signed_by(kind, what, root)?;
    serde_json::from_value(parsed.signed).map_err(|e| bad(what, e))
}

/// Checks a new root: signed by the threshold of the trusted root's root keys and of its own
/// (so neither the old nor the new key holders alone can move it), and numbered `version`.
pub fn check_root(bytes: &[u8], trusted: &Root, version: u64) -> Result<Root, TufError> {
    let what = format!("{version}.root.json");
    let parsed = parse(bytes, "root", &what)?;
    parsed.signed_by("root", &what, trusted)?;
    let new: Root = serde_json::from_value(parsed.signed.clone()).map_err(|e| bad(&what, e))?;
    parsed.signed_by("root", &what, &new)?;
    if new.version != version {
        return Err(bad(&what, format!("its version is {}", new.version)));
    }
    Ok(new)
}

/// A root trusted as given (pinned by the user or built in), checked to be signed by the
/// threshold of its own root keys.
pub fn self_signed_root(bytes: &[u8], what: &str) -> Result<Root, TufError> {
    let parsed = parse(bytes, "root", what)?;
    let root: Root = serde_json::from_value(parsed.signed.clone()).map_err(|e| bad(what, e))?;
    parsed.signed_by("root", what, &root)?;
    Ok(root)
}

/// The time `expires` (RFC 3339) names.
pub fn expiry(expires: &str, what: &str) -> Result<SystemTime, TufError> {
    humantime::parse_rfc3339(expires).map_err(|e| bad(what, format!("expires {expires:?}: {e}")))
}

/// Refuses metadata that expired before `now` (a mirror replaying old metadata).
pub fn not_expired(expires: &str, what: &str, now: SystemTime) -> Result<SystemTime, TufError> {
    let at = expiry(expires, what)?;
    if at <= now {
        return Err(TufError::Expired(format!("{what} expired at {expires}")));
    }
    Ok(at)
}

/// Checks `bytes` against a length and the hashes (sha256, sha512) metadata gives for them.
/// With `required`, at least one known hash must be given.
pub fn check_hashes(
    bytes: &[u8],
    length: Option<u64>,
    hashes: Option<&BTreeMap<String, String>>,
    what: &str,
    required: bool,
) -> Result<(), TufError> {
    use sha2::Digest as _;
    if let Some(length) = length
        && bytes.len() as u64 != length
    {
        return Err(TufError::Signature(format!(
            "{what}: {} bytes, the metadata says {length}",
            bytes.len()
        )));
    }
    let mut known = 0;
    for (algorithm, expected) in hashes.into_iter().flatten() {
        let actual = match algorithm.as_str() {
            "sha256" => hex::encode(sha2::Sha256::digest(bytes)),
            "sha512" => hex::encode(sha2::Sha512::digest(bytes)),
            _ => continue,
        };
        known += 1;
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(TufError::Signature(format!(
                "{what}: its {algorithm} is {actual}, the metadata says {expected}"
            )));
        }
    }
    if required && known == 0 {
        return Err(bad(what, "the metadata gives no sha256 or sha512 hash"));
    }
    Ok(())
}
