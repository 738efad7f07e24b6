//! The little DER the KMS clients need: public keys from JWK parts, and ECDSA signatures from
//! the raw `r || s` form (JOSE, Azure Key Vault) to the ASN.1 form cosign verifies.

fn length(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![u8::try_from(len).unwrap_or(0)];
    }
    let bytes: Vec<u8> = len
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    let mut out = vec![0x80 | u8::try_from(bytes.len()).unwrap_or(0)];
    out.extend(bytes);
    out
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(length(content.len()));
    out.extend_from_slice(content);
    out
}

/// A positive INTEGER from big-endian magnitude bytes.
fn integer(magnitude: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = magnitude.iter().copied().skip_while(|b| *b == 0).collect();
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend(trimmed);
    tlv(0x02, &content)
}

/// `ECDSA-Sig-Value` DER from raw `r || s` (both halves the same length).
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Result<Vec<u8>, String> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return Err(format!(
            "a raw ECDSA signature has two equal halves, not {} bytes",
            raw.len()
        ));
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let mut body = integer(r);
    body.extend(integer(s));
    Ok(tlv(0x30, &body))
}

/// SPKI DER of an uncompressed EC point on `crv` (`P-256` or `P-384`).
pub fn spki_ec(crv: &str, x: &[u8], y: &[u8]) -> Result<Vec<u8>, String> {
    // AlgorithmIdentifier { id-ecPublicKey, namedCurve }
    let curve_oid: &[u8] = match (crv, x.len()) {
        ("P-256", 32) => &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
        ("P-384", 48) => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
        _ => {
            return Err(format!(
                "EC key on curve {crv} ({} byte coordinates) is not supported",
                x.len()
            ));
        }
    };
    if y.len() != x.len() {
        return Err("EC key coordinates differ in length".to_owned());
    }
    let mut algorithm = vec![0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    algorithm.extend_from_slice(curve_oid);
    let mut point = vec![0x00, 0x04];
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    let mut body = tlv(0x30, &algorithm);
    body.extend(tlv(0x03, &point));
    Ok(tlv(0x30, &body))
}

/// SPKI DER of an RSA key from its modulus and exponent.
pub fn spki_rsa(n: &[u8], e: &[u8]) -> Vec<u8> {
    let algorithm = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut key = integer(n);
    key.extend(integer(e));
    let mut bits = vec![0x00];
    bits.extend(tlv(0x30, &key));
    let mut body = algorithm.to_vec();
    body.extend(tlv(0x03, &bits));
    tlv(0x30, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn ec_spki_matches_what_ring_and_openssl_expect() {
        // The fixed P-256 SPKI prefix (RFC 5480) followed by the point.
        let der = spki_ec("P-256", &[1; 32], &[2; 32]).unwrap();
        assert_eq!(
            hex::encode(&der[..27]),
            "3059301306072a8648ce3d020106082a8648ce3d03010703420004"
        );
        assert_eq!(der.len(), 91);
        let der = spki_ec("P-384", &[1; 48], &[2; 48]).unwrap();
        assert_eq!(
            hex::encode(&der[..24]),
            "3076301006072a8648ce3d020106052b8104002203620004"
        );
        assert!(spki_ec("P-521", &[1; 66], &[2; 66]).is_err());
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
        assert_eq!(spki_rsa(n, e), spki);
    }
}
