//! Signing keys: cosign's encrypted key format and the keys it wraps.
//!
//! Pure: bytes in, bytes out. Reading Secrets from the cluster happens elsewhere.

mod encrypted;
mod signing_key;

pub use signing_key::{SigningKey, SigningKeyError};

/// Errors reading an unencrypted key.
#[derive(Debug, thiserror::Error)]
pub enum PlainKeyError {
    #[error("failed to read x509.pem: not a PKCS#8 ECDSA P-256 private key ({0})")]
    NotPkcs8(String),
}

/// The PKIX public key (PEM) of an unencrypted PKCS#8 P-256 private key (`x509.pem`).
pub fn public_pem_of_pkcs8_pem(pem: &str) -> Result<String, PlainKeyError> {
    use p256::pkcs8::DecodePrivateKey;
    let secret =
        p256::SecretKey::from_pkcs8_pem(pem).map_err(|e| PlainKeyError::NotPkcs8(e.to_string()))?;
    public_pem(&secret)
}

/// The PKIX public key (PEM) of a PKCS#8 DER P-256 private key.
pub fn public_pem_of_pkcs8_der(der: &[u8]) -> Result<String, PlainKeyError> {
    use p256::pkcs8::DecodePrivateKey;
    let secret =
        p256::SecretKey::from_pkcs8_der(der).map_err(|e| PlainKeyError::NotPkcs8(e.to_string()))?;
    public_pem(&secret)
}

fn public_pem(secret: &p256::SecretKey) -> Result<String, PlainKeyError> {
    use p256::pkcs8::{EncodePublicKey, LineEnding};
    secret
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| PlainKeyError::NotPkcs8(e.to_string()))
}

pub use encrypted::{
    EncryptedKeyError, GeneratedKeyPair, decrypt_private_key, encrypt_private_key,
    generate_ecdsa_p256,
};
