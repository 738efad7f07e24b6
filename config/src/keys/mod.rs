//! Signing keys: cosign's encrypted key format and the keys it wraps.
//!
//! Pure: bytes in, bytes out. Reading Secrets from the cluster happens elsewhere.

mod encrypted;
mod signing_key;
mod verify;

pub use signing_key::{SUPPORTED_KEY_TYPES, SigningKey, SigningKeyError};
pub use verify::{VerifyError, verify_signature};

/// The PKIX public key (PEM) of an unencrypted private key PEM (`x509.pem`) of any supported
/// type; the error says what was found instead.
pub fn public_pem_of_private_pem(pem: &str) -> Result<String, String> {
    SigningKey::from_private_pem(pem.as_bytes()).map(|key| key.public_pem)
}

/// The PKIX public key (PEM) of a PKCS#8 DER private key of any supported type.
pub fn public_pem_of_pkcs8_der(der: &[u8]) -> Result<String, String> {
    SigningKey::from_pkcs8_der(der).map(|key| key.public_pem)
}

pub use encrypted::{
    EncryptedKeyError, GeneratedKeyPair, decrypt_private_key, encrypt_private_key,
    generate_ecdsa_p256,
};
