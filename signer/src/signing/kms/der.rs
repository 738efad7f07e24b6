//! Public keys and signatures from KMS answers, in the forms cosign verifies: SPKI DER from a
//! PEM block, from JWK parts (EC point, RSA modulus and exponent) or from a raw Ed25519 key,
//! and ECDSA signatures from the raw `r || s` form (JOSE, Azure Key Vault) to ASN.1 DER —
//! all through the `der`/`spki` and curve crates' own encoders.

use p256::pkcs8::EncodePublicKey as _;
use p256::pkcs8::der::Encode as _;
use p256::pkcs8::der::asn1::{AnyRef, BitStringRef, ObjectIdentifier, UintRef};
use p256::pkcs8::spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};

const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// `ECDSA-Sig-Value` DER from raw `r || s` on P-256 (64 bytes) or P-384 (96 bytes).
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Result<Vec<u8>, String> {
    let invalid = |e: &dyn std::fmt::Display| format!("an ECDSA signature that is not valid ({e})");
    match raw.len() {
        64 => p256::ecdsa::Signature::from_slice(raw)
            .map(|s| s.to_der().as_bytes().to_vec())
            .map_err(|e| invalid(&e)),
        96 => p384::ecdsa::Signature::from_slice(raw)
            .map(|s| s.to_der().as_bytes().to_vec())
            .map_err(|e| invalid(&e)),
        n => Err(format!(
            "a raw ECDSA signature of {n} bytes (P-256 has 64, P-384 96)"
        )),
    }
}

/// SPKI DER of the uncompressed EC point `(x, y)` on `crv` (`P-256` or `P-384`); a point not
/// on the curve is refused.
pub fn spki_ec(crv: &str, x: &[u8], y: &[u8]) -> Result<Vec<u8>, String> {
    if y.len() != x.len() {
        return Err("EC key coordinates differ in length".to_owned());
    }
    let point = [&[0x04][..], x, y].concat();
    let not_on_curve = |e: &dyn std::fmt::Display| format!("an EC key that is not valid ({e})");
    let der = match (crv, x.len()) {
        ("P-256", 32) => p256::PublicKey::from_sec1_bytes(&point)
            .map_err(|e| not_on_curve(&e))?
            .to_public_key_der(),
        ("P-384", 48) => p384::PublicKey::from_sec1_bytes(&point)
            .map_err(|e| not_on_curve(&e))?
            .to_public_key_der(),
        _ => {
            return Err(format!(
                "EC key on curve {crv} ({} byte coordinates) is not supported",
                x.len()
            ));
        }
    };
    der.map(|d| d.as_bytes().to_vec())
        .map_err(|e| format!("encoding an EC public key: {e}"))
}

/// SPKI DER of an RSA key from its modulus and exponent (big-endian magnitudes).
pub fn spki_rsa(n: &[u8], e: &[u8]) -> Result<Vec<u8>, String> {
    let failed = |e: p256::pkcs8::der::Error| format!("encoding an RSA public key: {e}");
    let key = pkcs1::RsaPublicKey {
        modulus: UintRef::new(n).map_err(failed)?,
        public_exponent: UintRef::new(e).map_err(failed)?,
    }
    .to_der()
    .map_err(failed)?;
    spki(OID_RSA, Some(AnyRef::NULL), &key)
}

/// SPKI DER of a raw 32-byte Ed25519 public key (RFC 8410).
pub fn spki_from_ed25519(raw: &[u8]) -> Result<Vec<u8>, String> {
    if raw.len() != 32 {
        return Err(format!(
            "an Ed25519 public key has 32 bytes, not {}",
            raw.len()
        ));
    }
    spki(OID_ED25519, None, raw)
}

/// SPKI DER from a PEM `PUBLIC KEY` block.
pub fn spki_from_pem(pem: &str) -> Result<Vec<u8>, String> {
    let start = pem
        .find("-----BEGIN ")
        .ok_or_else(|| "not a PEM PUBLIC KEY".to_owned())?;
    match pem_rfc7468::decode_vec(pem[start..].trim_end().as_bytes()) {
        Ok(("PUBLIC KEY", der)) => Ok(der),
        Ok((label, _)) => Err(format!("a PEM {label}, not a PUBLIC KEY")),
        Err(e) => Err(format!("public key PEM: {e}")),
    }
}

fn spki(
    oid: ObjectIdentifier,
    parameters: Option<AnyRef<'_>>,
    key: &[u8],
) -> Result<Vec<u8>, String> {
    let failed = |e: p256::pkcs8::der::Error| format!("encoding a public key: {e}");
    SubjectPublicKeyInfoRef {
        algorithm: AlgorithmIdentifierRef { oid, parameters },
        subject_public_key: BitStringRef::from_bytes(key).map_err(failed)?,
    }
    .to_der()
    .map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P256_GX: &str = "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296";
    const P256_GY: &str = "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5";
    const P384_GX: &str = "aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab7";
    const P384_GY: &str = "3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5f";

    #[test]
    fn ed25519_spki_is_the_rfc8410_encoding() {
        let der = spki_from_ed25519(&[7u8; 32]).unwrap();
        assert_eq!(der.len(), 44);
        assert_eq!(
            &der[..12],
            &[
                0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00
            ]
        );
        assert!(spki_from_ed25519(&[0u8; 31]).is_err());
    }

    #[test]
    fn public_key_pem_blocks_are_read_and_others_refused() {
        let der = spki_from_ed25519(&[7u8; 32]).unwrap();
        let pem =
            pem_rfc7468::encode_string("PUBLIC KEY", pem_rfc7468::LineEnding::LF, &der).unwrap();
        assert_eq!(spki_from_pem(&pem).unwrap(), der);
        assert_eq!(spki_from_pem(&format!("\n{pem}\n")).unwrap(), der);
        let other = pem.replace("PUBLIC KEY", "CERTIFICATE");
        assert!(spki_from_pem(&other).unwrap_err().contains("CERTIFICATE"));
        assert!(spki_from_pem("no pem here").is_err());
    }

    #[test]
    fn raw_signatures_become_der_that_ring_verifies() {
        use ring::rand::SystemRandom;
        use ring::signature::{
            ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
            UnparsedPublicKey,
        };
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        // Many signatures, so that high-bit and leading-zero halves both occur.
        for i in 0..64u8 {
            let message = [i; 16];
            let raw = pair.sign(&rng, &message).unwrap();
            let der = ecdsa_raw_to_der(raw.as_ref()).unwrap();
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, pair.public_key().as_ref())
                .verify(&message, &der)
                .unwrap();
        }
        assert!(ecdsa_raw_to_der(&[1, 2, 3]).is_err());
        assert!(
            ecdsa_raw_to_der(&[0; 64]).is_err(),
            "r = s = 0 is not a signature"
        );
    }

    #[test]
    fn ec_spki_matches_what_ring_and_openssl_expect() {
        // The fixed P-256 SPKI prefix (RFC 5480) followed by the point.
        // Points on the curves: the generators.
        let (x, y) = (hex::decode(P256_GX).unwrap(), hex::decode(P256_GY).unwrap());
        let der = spki_ec("P-256", &x, &y).unwrap();
        assert_eq!(
            hex::encode(&der[..27]),
            "3059301306072a8648ce3d020106082a8648ce3d03010703420004"
        );
        assert_eq!(der.len(), 91);
        let (x, y) = (hex::decode(P384_GX).unwrap(), hex::decode(P384_GY).unwrap());
        let der = spki_ec("P-384", &x, &y).unwrap();
        assert_eq!(
            hex::encode(&der[..24]),
            "3076301006072a8648ce3d020106052b8104002203620004"
        );
        assert!(spki_ec("P-521", &[1; 66], &[2; 66]).is_err());
        let off_curve = spki_ec("P-256", &[1; 32], &[2; 32]).unwrap_err();
        assert!(off_curve.contains("not valid"), "{off_curve}");
    }

    #[test]
    fn rsa_spki_parses_back_with_the_same_modulus() {
        let fixture = include_str!("../../../../config/testdata/keys/rsa2048.pem");
        let key = signet_config::keys::SigningKey::from_private_pem(fixture.as_bytes()).unwrap();
        let spki = key.public_der();
        // Re-encode from the parts found in the SPKI (modulus and exponent).
        let n_start = spki
            .windows(4)
            .position(|w| w == [0x02, 0x82, 0x01, 0x01])
            .unwrap()
            + 4;
        let n = &spki[n_start..n_start + 257];
        let e = &spki[spki.len() - 3..];
        assert_eq!(spki_rsa(n, e).unwrap(), spki);
    }
}
