//! The key a signing Secret holds, ready to sign: `cosign.key` + `cosign.password` (cosign's
//! encrypted format) or `x509.pem` (unencrypted PKCS#8). ECDSA P-256 with SHA-256, as cosign
//! signs by default. Errors never contain key material.

use std::collections::BTreeMap;

use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, SigningKey as P256SigningKey};
use p256::pkcs8::DecodePrivateKey;

use super::{EncryptedKeyError, decrypt_private_key, public_pem_of_pkcs8_der};

/// Why a signing Secret cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error("failed to load the signing key: Secret {secret} has neither cosign.key nor x509.pem")]
    Missing { secret: String },
    #[error(
        "failed to load the signing key from Secret {secret}: cosign.key needs cosign.password"
    )]
    NoPassword { secret: String },
    #[error("failed to load the signing key from Secret {secret}: {source}")]
    Encrypted {
        secret: String,
        source: EncryptedKeyError,
    },
    #[error(
        "failed to load the signing key from Secret {secret}: {key} is not a PKCS#8 ECDSA P-256 key (other key types are not supported by this signer version)"
    )]
    Unsupported { secret: String, key: &'static str },
}

/// An ECDSA P-256 signing key and its public key.
pub struct SigningKey {
    key: P256SigningKey,
    /// PKIX PEM of the public key.
    pub public_pem: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("public_pem", &self.public_pem)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Loads the key from a signing Secret's data (`secret` names it in errors).
    pub fn from_secret_data(
        secret: &str,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Self, SigningKeyError> {
        let owned = || secret.to_owned();
        let der = if let Some(key) = data.get("cosign.key") {
            let password = data
                .get("cosign.password")
                .ok_or_else(|| SigningKeyError::NoPassword { secret: owned() })?;
            let pem = String::from_utf8_lossy(key);
            decrypt_private_key(&pem, password).map_err(|source| SigningKeyError::Encrypted {
                secret: owned(),
                source,
            })?
        } else if let Some(pem) = data.get("x509.pem") {
            let pem = String::from_utf8_lossy(pem);
            let key = p256::SecretKey::from_pkcs8_pem(&pem).map_err(|_| {
                SigningKeyError::Unsupported {
                    secret: owned(),
                    key: "x509.pem",
                }
            })?;
            let der = p256::pkcs8::EncodePrivateKey::to_pkcs8_der(&key).map_err(|_| {
                SigningKeyError::Unsupported {
                    secret: owned(),
                    key: "x509.pem",
                }
            })?;
            zeroize::Zeroizing::new(der.as_bytes().to_vec())
        } else {
            return Err(SigningKeyError::Missing { secret: owned() });
        };
        let key =
            P256SigningKey::from_pkcs8_der(&der).map_err(|_| SigningKeyError::Unsupported {
                secret: owned(),
                key: "cosign.key",
            })?;
        let public_pem =
            public_pem_of_pkcs8_der(&der).map_err(|_| SigningKeyError::Unsupported {
                secret: owned(),
                key: "cosign.key",
            })?;
        Ok(Self { key, public_pem })
    }

    /// An ASN.1 DER ECDSA signature over SHA-256 of `message`, as cosign makes.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let signature: DerSignature = self.key.sign(message);
        signature.as_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::generate_ecdsa_p256;
    use p256::ecdsa::signature::Verifier;
    use p256::pkcs8::DecodePublicKey;

    #[test]
    fn generated_secret_signs_and_the_public_key_verifies() {
        let pair = generate_ecdsa_p256().unwrap();
        let data = BTreeMap::from([
            (
                "cosign.key".to_owned(),
                pair.private_pem.clone().into_bytes(),
            ),
            (
                "cosign.password".to_owned(),
                pair.password.as_bytes().to_vec(),
            ),
        ]);
        let key = SigningKey::from_secret_data("ns/signing-secrets", &data).unwrap();
        let sig = key.sign(b"payload");
        let verifier = p256::ecdsa::VerifyingKey::from_public_key_pem(&pair.public_pem).unwrap();
        let sig = p256::ecdsa::DerSignature::from_bytes(&sig).unwrap();
        verifier.verify(b"payload", &sig).unwrap();
    }

    #[test]
    fn wrong_password_and_missing_key_name_the_secret() {
        let pair = generate_ecdsa_p256().unwrap();
        let data = BTreeMap::from([
            ("cosign.key".to_owned(), pair.private_pem.into_bytes()),
            ("cosign.password".to_owned(), b"nope".to_vec()),
        ]);
        let err = SigningKey::from_secret_data("ns/s", &data)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ns/s") && err.contains("wrong password"),
            "{err}"
        );
        let err = SigningKey::from_secret_data("ns/s", &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("neither cosign.key nor x509.pem"), "{err}");
    }
}
