//! Signing keys: cosign's encrypted key format and the keys it wraps.
//!
//! Pure: bytes in, bytes out. Reading Secrets from the cluster happens elsewhere.

mod encrypted;

pub use encrypted::{
    EncryptedKeyError, GeneratedKeyPair, decrypt_private_key, encrypt_private_key,
    generate_ecdsa_p256,
};
