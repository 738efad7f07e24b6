//! The key a signing Secret holds, ready to sign: `cosign.key` + `cosign.password` (cosign's
//! encrypted format) or `x509.pem` (PKCS#8, SEC1 `EC PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`).
//!
//! Signatures are the ones `cosign verify* --key <pub>` accepts, which is also what Tekton
//! Chains makes: ECDSA (P-256 or P-384) over SHA-256 in ASN.1 DER, pure Ed25519, and RSA
//! PKCS#1 v1.5 over SHA-256 (2048 to 4096 bits). Errors never contain key material.

use std::collections::BTreeMap;

use p256::pkcs8::der::asn1::{AnyRef, BitStringRef, ObjectIdentifier};
use p256::pkcs8::der::{Decode, Encode};
use p256::pkcs8::spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};
use p256::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding, PrivateKeyInfo};
use ring::signature::KeyPair as _;
use zeroize::Zeroizing;

use super::{EncryptedKeyError, decrypt_private_key};

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// The key types this signer signs with, for error messages and logs.
pub const SUPPORTED_KEY_TYPES: &str = "ECDSA P-256, ECDSA P-384, Ed25519, RSA 2048-4096";

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
        "failed to load the signing key from Secret {secret}: {key} holds {found}, which this signer does not sign with (supported: {SUPPORTED_KEY_TYPES})"
    )]
    Unsupported {
        secret: String,
        key: &'static str,
        found: String,
    },
    #[error("failed to sign with the key from Secret {secret}: {reason}")]
    Sign { secret: String, reason: String },
}

enum Algorithm {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    Ed25519(ring::signature::Ed25519KeyPair),
    Rsa(ring::signature::RsaKeyPair),
}

/// A loaded signing key and its public key.
pub struct SigningKey {
    algorithm: Algorithm,
    /// Which Secret it came from (for errors).
    secret: String,
    /// PKIX PEM of the public key.
    pub public_pem: String,
    /// The same public key as DER (what signatures are checked against before use).
    public_der: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("type", &self.key_type())
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
        if let Some(key) = data.get("cosign.key") {
            let password = data
                .get("cosign.password")
                .ok_or_else(|| SigningKeyError::NoPassword { secret: owned() })?;
            let pem = String::from_utf8_lossy(key);
            let der = decrypt_private_key(&pem, password).map_err(|source| {
                SigningKeyError::Encrypted {
                    secret: owned(),
                    source,
                }
            })?;
            return Self::from_pkcs8_der(&der)
                .map_err(|found| SigningKeyError::Unsupported {
                    secret: owned(),
                    key: "cosign.key",
                    found,
                })
                .map(|k| k.named(secret));
        }
        let Some(pem) = data.get("x509.pem") else {
            return Err(SigningKeyError::Missing { secret: owned() });
        };
        Self::from_private_pem(pem)
            .map_err(|found| SigningKeyError::Unsupported {
                secret: owned(),
                key: "x509.pem",
                found,
            })
            .map(|k| k.named(secret))
    }

    /// Loads an unencrypted private key PEM: `PRIVATE KEY` (PKCS#8), `EC PRIVATE KEY` (SEC1)
    /// or `RSA PRIVATE KEY` (PKCS#1), as Go's `cryptoutils` reads `x509.pem`. The error
    /// describes what was found instead, never the key.
    pub fn from_private_pem(pem: &[u8]) -> Result<Self, String> {
        let (label, der) = pem_rfc7468::decode_vec(pem)
            .map_err(|_| "no PEM private key".to_owned())
            .map(|(label, der)| (label.to_owned(), Zeroizing::new(der)))?;
        match label.as_str() {
            "PRIVATE KEY" => Self::from_pkcs8_der(&der),
            "EC PRIVATE KEY" => {
                if let Ok(key) = p256::SecretKey::from_sec1_der(&der) {
                    Self::with(Algorithm::P256(key.into()))
                } else if let Ok(key) = p384::SecretKey::from_sec1_der(&der) {
                    Self::with(Algorithm::P384(key.into()))
                } else {
                    Err("an EC private key on an unsupported curve".to_owned())
                }
            }
            "RSA PRIVATE KEY" => ring::signature::RsaKeyPair::from_der(&der)
                .map_err(|e| format!("an RSA key that cannot be used ({e})"))
                .and_then(|key| Self::with(Algorithm::Rsa(key))),
            other => Err(format!("a PEM block of type {other:?}")),
        }
    }

    /// Loads a PKCS#8 DER private key, choosing the algorithm from its identifier.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, String> {
        let info = PrivateKeyInfo::from_der(der).map_err(|_| "no PKCS#8 private key".to_owned())?;
        let oid = info.algorithm.oid;
        let curve = info
            .algorithm
            .parameters
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        let algorithm = match (oid, curve) {
            (OID_EC_PUBLIC_KEY, Some(OID_P256)) => p256::ecdsa::SigningKey::from_pkcs8_der(der)
                .map(Algorithm::P256)
                .map_err(|e| format!("a malformed P-256 key ({e})"))?,
            (OID_EC_PUBLIC_KEY, Some(OID_P384)) => p384::ecdsa::SigningKey::from_pkcs8_der(der)
                .map(Algorithm::P384)
                .map_err(|e| format!("a malformed P-384 key ({e})"))?,
            (OID_EC_PUBLIC_KEY, curve) => {
                return Err(format!(
                    "an EC key on curve {}",
                    curve.map_or_else(|| "(none)".to_owned(), |c| c.to_string())
                ));
            }
            (OID_ED25519, _) => ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .map(Algorithm::Ed25519)
                .map_err(|e| format!("a malformed Ed25519 key ({e})"))?,
            (OID_RSA, _) => ring::signature::RsaKeyPair::from_pkcs8(der)
                .map(Algorithm::Rsa)
                .map_err(|e| format!("an RSA key that cannot be used ({e})"))?,
            (other, _) => return Err(format!("a key of algorithm {other}")),
        };
        Self::with(algorithm)
    }

    fn with(algorithm: Algorithm) -> Result<Self, String> {
        let public_pem = public_pem(&algorithm)?;
        let (_, public_der) = pem_rfc7468::decode_vec(public_pem.as_bytes())
            .map_err(|e| format!("a key whose public half does not decode ({e})"))?;
        let key = Self {
            algorithm,
            secret: String::new(),
            public_pem,
            public_der,
        };
        // A damaged key can parse (an RSA key with a broken CRT value does) and then fail
        // every signature: refuse it here, once, rather than on every run.
        let probe = b"signet: does this key sign what its public half verifies?";
        let works = key.sign(probe).is_ok_and(|signature| {
            super::verify_signature(&key.public_der, probe, &signature).is_ok()
        });
        if !works {
            return Err("a damaged key: it does not sign what its public half verifies".into());
        }
        Ok(key)
    }

    fn named(mut self, secret: &str) -> Self {
        secret.clone_into(&mut self.secret);
        self
    }

    /// The public key as DER (`SubjectPublicKeyInfo`).
    pub fn public_der(&self) -> &[u8] {
        &self.public_der
    }

    /// The Secret the key came from (`namespace/name`), for messages; empty for keys made here.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// `ecdsa-p256`, `ecdsa-p384`, `ed25519` or `rsa-<bits>`, for logs.
    pub fn key_type(&self) -> String {
        match &self.algorithm {
            Algorithm::P256(_) => "ecdsa-p256".into(),
            Algorithm::P384(_) => "ecdsa-p384".into(),
            Algorithm::Ed25519(_) => "ed25519".into(),
            Algorithm::Rsa(k) => format!("rsa-{}", k.public().modulus_len() * 8),
        }
    }

    /// The signature over `message` that `cosign verify* --key <public_pem>` accepts.
    /// Deterministic (RFC 6979 for ECDSA): signing the same content twice gives the same
    /// signature, so an image signed again is not signed twice in its registry, and Rekor v1
    /// gives the entry it holds back.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SigningKeyError> {
        self.sign_with(message, false)
    }

    /// Like [`Self::sign`], with ECDSA signatures hedged (RFC 6979 nonces with fresh randomness
    /// mixed in, as Go's and so cosign's are): each signature differs, so the same content
    /// signed again gets an entry of its own in a log that refuses a signature it holds and
    /// gives none back (Rekor v2). Ed25519 and RSA PKCS#1 v1.5 stay deterministic.
    pub fn sign_hedged(&self, message: &[u8]) -> Result<Vec<u8>, SigningKeyError> {
        self.sign_with(message, true)
    }

    fn sign_with(&self, message: &[u8], hedged: bool) -> Result<Vec<u8>, SigningKeyError> {
        use p256::ecdsa::signature::hazmat::{PrehashSigner as _, RandomizedPrehashSigner as _};
        use p256::ecdsa::signature::{RandomizedSigner as _, Signer as _};
        use sha2::Digest as _;
        let mut rng = rand_core::OsRng;
        match &self.algorithm {
            Algorithm::P256(key) => {
                let signature: p256::ecdsa::DerSignature = if hedged {
                    key.sign_with_rng(&mut rng, message)
                } else {
                    key.sign(message)
                };
                Ok(signature.as_bytes().to_vec())
            }
            Algorithm::P384(key) => {
                // cosign verifies ECDSA keys over SHA-256 whatever the curve (`--key`
                // verifiers default to SHA-256), so P-384 signs a SHA-256 prehash too.
                let digest = sha2::Sha256::digest(message);
                let signed = if hedged {
                    key.sign_prehash_with_rng(&mut rng, &digest)
                } else {
                    key.sign_prehash(&digest)
                };
                let signature: p384::ecdsa::Signature =
                    signed.map_err(|e| SigningKeyError::Sign {
                        secret: self.secret.clone(),
                        reason: e.to_string(),
                    })?;
                Ok(signature.to_der().as_bytes().to_vec())
            }
            Algorithm::Ed25519(key) => Ok(key.sign(message).as_ref().to_vec()),
            Algorithm::Rsa(key) => {
                let mut out = vec![0; key.public().modulus_len()];
                key.sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &ring::rand::SystemRandom::new(),
                    message,
                    &mut out,
                )
                .map_err(|_| SigningKeyError::Sign {
                    secret: self.secret.clone(),
                    reason: "RSA signing failed".into(),
                })?;
                Ok(out)
            }
        }
    }
}

fn public_pem(algorithm: &Algorithm) -> Result<String, String> {
    let encode_failed =
        |e: &dyn std::fmt::Display| format!("a key whose public half fails to encode ({e})");
    let (oid, parameters, key): (_, Option<AnyRef<'_>>, &[u8]) = match algorithm {
        Algorithm::P256(key) => {
            return key
                .verifying_key()
                .to_public_key_pem(LineEnding::LF)
                .map_err(|e| encode_failed(&e));
        }
        Algorithm::P384(key) => {
            return key
                .verifying_key()
                .to_public_key_pem(LineEnding::LF)
                .map_err(|e| encode_failed(&e));
        }
        Algorithm::Ed25519(key) => (OID_ED25519, None, key.public_key().as_ref()),
        Algorithm::Rsa(key) => (OID_RSA, Some(AnyRef::NULL), key.public().as_ref()),
    };
    let spki = SubjectPublicKeyInfoRef {
        algorithm: AlgorithmIdentifierRef { oid, parameters },
        subject_public_key: BitStringRef::from_bytes(key).map_err(|e| encode_failed(&e))?,
    };
    let der = spki.to_der().map_err(|e| encode_failed(&e))?;
    pem_rfc7468::encode_string("PUBLIC KEY", pem_rfc7468::LineEnding::LF, &der)
        .map_err(|e| encode_failed(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::generate_ecdsa_p256;

    /// Test-only keys made with `openssl genpkey` (see signer/testdata/keys/README.md).
    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/testdata/keys/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn x509(pem: Vec<u8>) -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([("x509.pem".to_owned(), pem)])
    }

    #[test]
    fn generated_secret_signs_and_the_public_key_verifies() {
        use p256::ecdsa::signature::Verifier;
        use p256::pkcs8::DecodePublicKey;
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
        assert_eq!(key.public_pem, pair.public_pem);
        let sig = key.sign(b"payload").unwrap();
        let verifier = p256::ecdsa::VerifyingKey::from_public_key_pem(&pair.public_pem).unwrap();
        let sig = p256::ecdsa::DerSignature::from_bytes(&sig).unwrap();
        verifier.verify(b"payload", &sig).unwrap();
    }

    /// Every supported key type signs, and the signature verifies against the published
    /// public key the way cosign verifies with `--key` (SHA-256 for ECDSA and RSA).
    #[test]
    fn every_supported_key_type_signs_what_its_public_key_verifies() {
        for (file, key_type) in [
            ("p256.pem", "ecdsa-p256"),
            ("p256-sec1.pem", "ecdsa-p256"),
            ("p384.pem", "ecdsa-p384"),
            ("ed25519.pem", "ed25519"),
            ("rsa2048.pem", "rsa-2048"),
            ("rsa2048-pkcs1.pem", "rsa-2048"),
        ] {
            let key = SigningKey::from_secret_data("n/s", &x509(fixture(file)))
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(key.key_type(), key_type, "{file}");
            let message = b"DSSEv1 28 application/vnd.in-toto+json 2 {}";
            let sig = key.sign(message).unwrap();
            let (_, spki) = pem_rfc7468::decode_vec(key.public_pem.as_bytes()).unwrap();
            let spki = SubjectPublicKeyInfoRef::from_der(&spki).unwrap();
            let raw = spki.subject_public_key.raw_bytes();
            let verify = |alg: &'static dyn ring::signature::VerificationAlgorithm| {
                ring::signature::UnparsedPublicKey::new(alg, raw)
                    .verify(message, &sig)
                    .is_ok()
            };
            let ok = match key_type {
                "ecdsa-p256" => verify(&ring::signature::ECDSA_P256_SHA256_ASN1),
                "ecdsa-p384" => verify(&ring::signature::ECDSA_P384_SHA256_ASN1),
                "ed25519" => verify(&ring::signature::ED25519),
                _ => verify(&ring::signature::RSA_PKCS1_2048_8192_SHA256),
            };
            assert!(ok, "{file}: signature does not verify");
        }
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

    #[test]
    fn unsupported_keys_say_what_they_are_without_key_material() {
        for (file, found) in [
            ("p521.pem", "curve 1.3.132.0.35"),
            ("rsa1024.pem", "RSA key that cannot be used"),
        ] {
            let pem = fixture(file);
            let err = SigningKey::from_secret_data("ns/s", &x509(pem.clone()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(found) && err.contains("supported:"), "{err}");
            let body: String = String::from_utf8(pem)
                .unwrap()
                .lines()
                .nth(1)
                .unwrap()
                .into();
            assert!(!err.contains(&body[..16]), "{err}");
        }
        let err = SigningKey::from_secret_data(
            "ns/s",
            &x509(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec()),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("\"CERTIFICATE\""), "{err}");
    }
}
