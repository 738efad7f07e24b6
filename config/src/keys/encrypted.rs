//! cosign's encrypted private key format (`ENCRYPTED SIGSTORE PRIVATE KEY` /
//! `ENCRYPTED COSIGN PRIVATE KEY`): a PKCS#8 key sealed with `NaCl` secretbox under a key
//! derived from the password by scrypt, wrapped in JSON and then PEM.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use crypto_secretbox::XSalsa20Poly1305;
use crypto_secretbox::aead::{Aead, AeadCore, KeyInit, OsRng};
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rand_core::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// PEM label cosign writes today.
pub const SIGSTORE_PEM_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// PEM label older cosign releases wrote; still read.
pub const COSIGN_PEM_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";

/// scrypt parameters cosign accepts (legacy 2^15, standard 2^16, OWASP 2^17; r=8, p=1).
const ACCEPTED_LOG_N: &[u8] = &[15, 16, 17];
/// What new keys use: cosign's default ("standard").
const NEW_KEY_LOG_N: u8 = 16;

/// Errors reading or writing an encrypted key. Messages never include key material.
#[derive(Debug, thiserror::Error)]
pub enum EncryptedKeyError {
    #[error(
        "failed to read the encrypted key: no PEM block labelled {SIGSTORE_PEM_LABEL} or {COSIGN_PEM_LABEL}"
    )]
    NotEncryptedPem,
    #[error("failed to read the encrypted key: {0}")]
    Malformed(String),
    #[error(
        "failed to read the encrypted key: unsupported {what} {value:?} (cosign writes scrypt and nacl/secretbox)"
    )]
    Unsupported { what: &'static str, value: String },
    #[error("failed to decrypt the private key: wrong password or corrupted key")]
    WrongPassword,
    #[error("failed to derive the key from the password: {0}")]
    Kdf(String),
    #[error("failed to encode the key: {0}")]
    Encode(String),
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    kdf: Kdf,
    cipher: Cipher,
    #[serde(with = "b64")]
    ciphertext: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: KdfParams,
    #[serde(with = "b64")]
    salt: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct KdfParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    #[serde(with = "b64")]
    nonce: Vec<u8>,
}

/// Go's encoding/json writes `[]byte` as standard base64.
mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

fn derive_key(
    password: &[u8],
    salt: &[u8],
    log_n: u8,
) -> Result<Zeroizing<[u8; 32]>, EncryptedKeyError> {
    let params =
        scrypt::Params::new(log_n, 8, 1, 32).map_err(|e| EncryptedKeyError::Kdf(e.to_string()))?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password, salt, &params, key.as_mut())
        .map_err(|e| EncryptedKeyError::Kdf(e.to_string()))?;
    Ok(key)
}

/// Seals `pkcs8_der` under `password` as cosign would, returning the PEM text.
pub fn encrypt_private_key(pkcs8_der: &[u8], password: &[u8]) -> Result<String, EncryptedKeyError> {
    let mut salt = [0u8; 32];
    OsRng.fill_bytes(&mut salt);
    let key = derive_key(password, &salt, NEW_KEY_LOG_N)?;
    let cipher = XSalsa20Poly1305::new(key.as_ref().into());
    let nonce = XSalsa20Poly1305::generate_nonce(&mut OsRng);
    // crypto_secretbox lays out tag || ciphertext, exactly as NaCl's secretbox and cosign do.
    let sealed = cipher
        .encrypt(&nonce, pkcs8_der)
        .map_err(|_| EncryptedKeyError::Encode("secretbox sealing failed".to_owned()))?;
    let envelope = Envelope {
        kdf: Kdf {
            name: "scrypt".to_owned(),
            params: KdfParams {
                n: 1 << NEW_KEY_LOG_N,
                r: 8,
                p: 1,
            },
            salt: salt.to_vec(),
        },
        cipher: Cipher {
            name: "nacl/secretbox".to_owned(),
            nonce: nonce.to_vec(),
        },
        ciphertext: sealed,
    };
    let json =
        serde_json::to_vec(&envelope).map_err(|e| EncryptedKeyError::Encode(e.to_string()))?;
    pem_encode(SIGSTORE_PEM_LABEL, &json)
}

/// Opens an encrypted cosign key, returning the PKCS#8 DER it holds.
pub fn decrypt_private_key(
    pem: &str,
    password: &[u8],
) -> Result<Zeroizing<Vec<u8>>, EncryptedKeyError> {
    let json = pem_decode(pem)?;
    let envelope: Envelope =
        serde_json::from_slice(&json).map_err(|e| EncryptedKeyError::Malformed(e.to_string()))?;
    if envelope.kdf.name != "scrypt" {
        return Err(EncryptedKeyError::Unsupported {
            what: "kdf",
            value: envelope.kdf.name,
        });
    }
    if envelope.cipher.name != "nacl/secretbox" {
        return Err(EncryptedKeyError::Unsupported {
            what: "cipher",
            value: envelope.cipher.name,
        });
    }
    let p = &envelope.kdf.params;
    let log_n = ACCEPTED_LOG_N
        .iter()
        .copied()
        .find(|l| 1u64 << l == p.n)
        .filter(|_| p.r == 8 && p.p == 1)
        .ok_or_else(|| EncryptedKeyError::Unsupported {
            what: "scrypt parameters",
            value: format!("N={} r={} p={}", p.n, p.r, p.p),
        })?;
    if envelope.cipher.nonce.len() != 24 || envelope.ciphertext.len() < 16 {
        return Err(EncryptedKeyError::Malformed(
            "nonce or ciphertext too short".to_owned(),
        ));
    }
    let key = derive_key(password, &envelope.kdf.salt, log_n)?;
    let cipher = XSalsa20Poly1305::new(key.as_ref().into());
    let nonce: [u8; 24] = envelope
        .cipher
        .nonce
        .as_slice()
        .try_into()
        .map_err(|_| EncryptedKeyError::Malformed("nonce is not 24 bytes".to_owned()))?;
    cipher
        .decrypt(&nonce.into(), envelope.ciphertext.as_slice())
        .map(Zeroizing::new)
        .map_err(|_| EncryptedKeyError::WrongPassword)
}

fn pem_encode(label: &str, der: &[u8]) -> Result<String, EncryptedKeyError> {
    pem_rfc7468::encode_string(label, pem_rfc7468::LineEnding::LF, der)
        .map_err(|e| EncryptedKeyError::Encode(e.to_string()))
}

/// The contents of the first encrypted-key PEM block in `pem` (text around it is ignored, as
/// cosign ignores it).
fn pem_decode(pem: &str) -> Result<Vec<u8>, EncryptedKeyError> {
    for label in [SIGSTORE_PEM_LABEL, COSIGN_PEM_LABEL] {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        let Some(start) = pem.find(&begin) else {
            continue;
        };
        let stop = pem[start..]
            .find(&end)
            .ok_or(EncryptedKeyError::NotEncryptedPem)?;
        let block = &pem[start..start + stop + end.len()];
        return pem_rfc7468::decode_vec(block.as_bytes())
            .map(|(_, der)| der)
            .map_err(|e| EncryptedKeyError::Malformed(e.to_string()));
    }
    Err(EncryptedKeyError::NotEncryptedPem)
}

/// A freshly generated key pair in the form of a cosign signing Secret.
pub struct GeneratedKeyPair {
    /// `cosign.key`: the encrypted private key (PEM).
    pub private_pem: String,
    /// `cosign.password`: random, 32 bytes base64.
    pub password: Zeroizing<String>,
    /// `cosign.pub`: the PKIX public key (PEM).
    pub public_pem: String,
}

impl std::fmt::Debug for GeneratedKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKeyPair")
            .field("public_pem", &self.public_pem)
            .finish_non_exhaustive()
    }
}

/// Generates an ECDSA P-256 key pair (cosign's default) with a random password.
pub fn generate_ecdsa_p256() -> Result<GeneratedKeyPair, EncryptedKeyError> {
    let secret = p256::SecretKey::random(&mut OsRng);
    let der = secret
        .to_pkcs8_der()
        .map_err(|e| EncryptedKeyError::Encode(e.to_string()))?;
    let mut raw = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(raw.as_mut());
    let password = Zeroizing::new(STANDARD.encode(raw.as_ref()));
    let private_pem = encrypt_private_key(der.as_bytes(), password.as_bytes())?;
    let public_pem = secret
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| EncryptedKeyError::Encode(e.to_string()))?;
    Ok(GeneratedKeyPair {
        private_pem,
        password,
        public_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::DecodePrivateKey;

    #[test]
    fn generated_key_decrypts_with_its_password_to_the_published_public_key() {
        let pair = generate_ecdsa_p256().unwrap();
        assert!(
            pair.private_pem
                .starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
        );
        let der = decrypt_private_key(&pair.private_pem, pair.password.as_bytes()).unwrap();
        let secret = p256::SecretKey::from_pkcs8_der(&der).unwrap();
        let public = secret
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        assert_eq!(public, pair.public_pem);
    }

    #[test]
    fn wrong_password_is_reported_without_key_material() {
        let pair = generate_ecdsa_p256().unwrap();
        let err = decrypt_private_key(&pair.private_pem, b"not the password").unwrap_err();
        assert!(matches!(err, EncryptedKeyError::WrongPassword));
        assert_eq!(
            err.to_string(),
            "failed to decrypt the private key: wrong password or corrupted key"
        );
    }

    #[test]
    fn plain_pem_is_not_taken_for_an_encrypted_key() {
        let err = decrypt_private_key(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            b"",
        )
        .unwrap_err();
        assert!(matches!(err, EncryptedKeyError::NotEncryptedPem));
    }

    #[test]
    fn tampered_scrypt_parameters_are_refused_before_any_work() {
        let pair = generate_ecdsa_p256().unwrap();
        let json = pem_decode(&pair.private_pem).unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        v["kdf"]["params"]["N"] = serde_json::json!(1u64 << 30);
        let pem = pem_encode(SIGSTORE_PEM_LABEL, &serde_json::to_vec(&v).unwrap()).unwrap();
        assert!(matches!(
            decrypt_private_key(&pem, pair.password.as_bytes()),
            Err(EncryptedKeyError::Unsupported { .. })
        ));
    }
}
