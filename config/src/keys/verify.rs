//! Checks a signature against the public key it claims to belong to. Every signature is
//! checked here before anything is stored, whoever made it: the signing Secret's key, a KMS
//! (whose answer is untrusted input), or a keyless key. A KMS that answers with garbage, an
//! empty signature or a signature by another key (a moved alias) is caught here, never
//! stored as `signed=true`.
//!
//! Pure; must not decide what to do about a bad signature (the caller names the peer).

use p256::pkcs8::der::Decode;
use p256::pkcs8::der::asn1::ObjectIdentifier;
use p256::pkcs8::spki::SubjectPublicKeyInfoRef;
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Why a signature was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the public key is not a PKIX SubjectPublicKeyInfo")]
    PublicKey,
    #[error("the public key's algorithm {0} is not one this signer verifies")]
    Algorithm(String),
    #[error("the signature ({0} bytes) does not verify with the public key")]
    Mismatch(usize),
}

type Algorithms = &'static [&'static dyn VerificationAlgorithm];

static P256: [&dyn VerificationAlgorithm; 1] = [&signature::ECDSA_P256_SHA256_ASN1];
static P384: [&dyn VerificationAlgorithm; 2] = [
    &signature::ECDSA_P384_SHA384_ASN1,
    &signature::ECDSA_P384_SHA256_ASN1,
];
static ED25519: [&dyn VerificationAlgorithm; 1] = [&signature::ED25519];
static RSA: [&dyn VerificationAlgorithm; 6] = [
    &signature::RSA_PKCS1_2048_8192_SHA256,
    &signature::RSA_PKCS1_2048_8192_SHA384,
    &signature::RSA_PKCS1_2048_8192_SHA512,
    &signature::RSA_PSS_2048_8192_SHA256,
    &signature::RSA_PSS_2048_8192_SHA384,
    &signature::RSA_PSS_2048_8192_SHA512,
];

/// The hashes and paddings a signature by this kind of key may use. cosign signs ECDSA over
/// SHA-256 with `--key`, while a KMS signs a P-384 key over SHA-384 and an RSA key with the
/// first algorithm it lists; each is a genuine signature by the key, so each is accepted.
fn algorithms(spki: &SubjectPublicKeyInfoRef<'_>) -> Result<Algorithms, VerifyError> {
    let curve = spki.algorithm.parameters_oid().ok();
    Ok(match (spki.algorithm.oid, curve) {
        (OID_EC_PUBLIC_KEY, Some(OID_P256)) => &P256,
        (OID_EC_PUBLIC_KEY, Some(OID_P384)) => &P384,
        (OID_ED25519, _) => &ED25519,
        (OID_RSA, _) => &RSA,
        (oid, curve) => {
            return Err(VerifyError::Algorithm(match curve {
                Some(curve) => format!("{oid} on curve {curve}"),
                None => oid.to_string(),
            }));
        }
    })
}

/// Checks that `signature` over `message` was made by the key whose SPKI DER is `public_der`.
pub fn verify_signature(
    public_der: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), VerifyError> {
    let spki = SubjectPublicKeyInfoRef::from_der(public_der).map_err(|_| VerifyError::PublicKey)?;
    let raw = spki.subject_public_key.raw_bytes();
    let verifies = algorithms(&spki)?.iter().any(|algorithm| {
        UnparsedPublicKey::new(*algorithm, raw)
            .verify(message, signature)
            .is_ok()
    });
    if verifies {
        Ok(())
    } else {
        Err(VerifyError::Mismatch(signature.len()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::keys::SigningKey;

    fn fixture(name: &str) -> SigningKey {
        let pem = std::fs::read(format!(
            "{}/testdata/keys/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        SigningKey::from_secret_data("n/s", &BTreeMap::from([("x509.pem".to_owned(), pem)]))
            .unwrap()
    }

    #[test]
    fn every_supported_key_types_own_signature_verifies() {
        for file in ["p256.pem", "p384.pem", "ed25519.pem", "rsa2048.pem"] {
            let key = fixture(file);
            let signature = key.sign(b"payload").unwrap();
            verify_signature(key.public_der(), b"payload", &signature)
                .unwrap_or_else(|e| panic!("{file}: {e}"));
        }
    }

    #[test]
    fn empty_random_altered_or_foreign_signatures_are_refused() {
        let key = fixture("p256.pem");
        let other = fixture("p384.pem");
        let public = key.public_der();
        let good = key.sign(b"payload").unwrap();
        let mut altered = good.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        for (what, signature) in [
            ("empty", Vec::new()),
            (
                "70 random bytes",
                (0..70u8).map(|i| i.wrapping_mul(37)).collect(),
            ),
            ("altered", altered),
            ("another key's", other.sign(b"payload").unwrap()),
        ] {
            assert!(
                matches!(
                    verify_signature(public, b"payload", &signature),
                    Err(VerifyError::Mismatch(_))
                ),
                "{what} signature was accepted"
            );
        }
        assert!(verify_signature(public, b"other payload", &good).is_err());
        assert_eq!(
            verify_signature(b"not der", b"payload", &good),
            Err(VerifyError::PublicKey)
        );
    }

    #[test]
    fn unsupported_key_algorithms_are_named() {
        let pem = std::fs::read(format!(
            "{}/testdata/keys/p521.pem",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        // The P-521 fixture is a private key: its public half via the PKCS#8 structure.
        let (_, der) = pem_rfc7468::decode_vec(&pem).unwrap();
        let info = p256::pkcs8::PrivateKeyInfo::from_der(&der).unwrap();
        let spki = p256::pkcs8::spki::SubjectPublicKeyInfoRef {
            algorithm: info.algorithm,
            subject_public_key: p256::pkcs8::der::asn1::BitStringRef::from_bytes(&[4; 133])
                .unwrap(),
        };
        let public = p256::pkcs8::der::Encode::to_der(&spki).unwrap();
        let err = verify_signature(&public, b"m", b"s").unwrap_err();
        assert!(err.to_string().contains("1.3.132.0.35"), "{err}");
    }
}
