//! Checks Fulcio's answer before it is used: the leaf certificate certifies the key this
//! signer sent, every certificate is within its validity period, each is signed by the next,
//! and the chain ends at a trusted root — one of the certificates in `SIGSTORE_ROOT_FILE`
//! (the variable cosign reads for a private Sigstore's Fulcio roots) or, when that is unset,
//! the chain's own self-signed root (said once in the log: the root is then not pinned).
//!
//! Pure but for reading that file; never decides what to do about a bad chain.

use std::time::SystemTime;

use p256::pkcs8::der::{Decode, Encode};
use x509_cert::Certificate;

use signet_config::keys::verify_signature;

/// Why a chain was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("certificate {0} of the chain is not a PEM X.509 certificate")]
    Unreadable(usize),
    #[error("the certificate is for another public key than the one sent")]
    OtherKey,
    #[error("certificate {0} of the chain is not valid now (outside its validity period)")]
    Expired(usize),
    #[error("certificate {0} of the chain is not signed by the certificate after it")]
    BadSignature(usize),
    #[error("the chain does not end at a trusted root ({0})")]
    Untrusted(String),
}

/// The chain (leaf first) as DER, or which certificate is unreadable.
fn parse(chain_pem: &[String]) -> Result<Vec<Certificate>, ChainError> {
    chain_pem
        .iter()
        .enumerate()
        .map(|(i, pem)| {
            let (label, der) =
                pem_rfc7468::decode_vec(pem.as_bytes()).map_err(|_| ChainError::Unreadable(i))?;
            if label != "CERTIFICATE" {
                return Err(ChainError::Unreadable(i));
            }
            Certificate::from_der(&der).map_err(|_| ChainError::Unreadable(i))
        })
        .collect()
}

pub(crate) fn spki_der(cert: &Certificate) -> Vec<u8> {
    cert.tbs_certificate
        .subject_public_key_info
        .to_der()
        .unwrap_or_default()
}

/// Every certificate in a PEM bundle (other blocks and unreadable ones are skipped).
pub(crate) fn read_bundle(bundle: &str) -> Vec<Certificate> {
    const END: &str = "-----END CERTIFICATE-----";
    bundle
        .split_inclusive(END)
        .filter_map(|block| {
            let start = block.find("-----BEGIN CERTIFICATE-----")?;
            let (_, der) = pem_rfc7468::decode_vec(&block.as_bytes()[start..]).ok()?;
            Certificate::from_der(&der).ok()
        })
        .collect()
}

/// The PEM blocks of certificates in `bundle`, in order (Chains' `chain` annotation holds the
/// intermediates and root concatenated).
pub fn certificate_blocks(bundle: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    bundle
        .split_inclusive(END)
        .filter_map(|block| {
            let start = block.find("-----BEGIN CERTIFICATE-----")?;
            block.ends_with(END).then(|| block[start..].to_owned())
        })
        .collect()
}

/// What a verifier reads from a leaf certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Its public key (SPKI DER).
    pub key: Vec<u8>,
    /// The identities in its subject alternative names (URIs and e-mail addresses).
    pub identities: Vec<String>,
    /// The start of its validity period.
    pub not_before: SystemTime,
}

/// Reads a leaf certificate (PEM): what a verifier checks against the expected identity.
pub fn read_leaf(leaf_pem: &str) -> Result<Leaf, ChainError> {
    use x509_cert::ext::pkix::SubjectAltName;
    use x509_cert::ext::pkix::name::GeneralName;
    let leaf = parse(&[leaf_pem.to_owned()])?
        .pop()
        .ok_or(ChainError::Unreadable(0))?;
    let identities = match leaf.tbs_certificate.get::<SubjectAltName>() {
        Ok(Some((_, SubjectAltName(names)))) => names
            .into_iter()
            .filter_map(|name| match name {
                GeneralName::UniformResourceIdentifier(uri) => Some(uri.to_string()),
                GeneralName::Rfc822Name(mail) => Some(mail.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(Leaf {
        key: spki_der(&leaf),
        identities,
        not_before: leaf.tbs_certificate.validity.not_before.to_system_time(),
    })
}

/// Whether `cert` is signed by the key of `issuer`.
pub(crate) fn signed_by(cert: &Certificate, issuer: &Certificate) -> bool {
    let Ok(tbs) = cert.tbs_certificate.to_der() else {
        return false;
    };
    let Some(signature) = cert.signature.as_bytes() else {
        return false;
    };
    verify_signature(&spki_der(issuer), &tbs, signature).is_ok()
}

pub(crate) fn valid_at(cert: &Certificate, now: SystemTime) -> bool {
    let validity = &cert.tbs_certificate.validity;
    validity.not_before.to_system_time() <= now && now <= validity.not_after.to_system_time()
}

/// Checks `chain_pem` (leaf first) as described in the module documentation. `roots` are the
/// trusted root certificates (PEM bundle); `None` accepts the chain's own self-signed root.
pub fn check_chain(
    chain_pem: &[String],
    public_der: &[u8],
    roots: Option<&str>,
    now: SystemTime,
) -> Result<(), ChainError> {
    let chain = parse(chain_pem)?;
    let leaf = chain.first().ok_or(ChainError::Unreadable(0))?;
    if spki_der(leaf) != public_der {
        return Err(ChainError::OtherKey);
    }
    for (i, cert) in chain.iter().enumerate() {
        if !valid_at(cert, now) {
            return Err(ChainError::Expired(i));
        }
        if let Some(issuer) = chain.get(i + 1)
            && !signed_by(cert, issuer)
        {
            return Err(ChainError::BadSignature(i));
        }
    }
    let top = chain.last().ok_or(ChainError::Unreadable(0))?;
    match roots {
        None if signed_by(top, top) => Ok(()),
        None => Err(ChainError::Untrusted(
            "its last certificate is not self-signed".to_owned(),
        )),
        Some(bundle) => {
            let roots = read_bundle(bundle);
            if roots.is_empty() {
                return Err(ChainError::Untrusted(
                    "SIGSTORE_ROOT_FILE holds no certificate".to_owned(),
                ));
            }
            let trusted = roots
                .iter()
                .any(|root| root == top || (valid_at(root, now) && signed_by(top, root)));
            if trusted {
                Ok(())
            } else {
                Err(ChainError::Untrusted(
                    "no certificate in SIGSTORE_ROOT_FILE issued it".to_owned(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Test-only certificates made with openssl (see signer/testdata/certs/README.md).
    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/testdata/certs/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn leaf_key() -> Vec<u8> {
        pem_rfc7468::decode_vec(fixture("leaf.pub").as_bytes())
            .unwrap()
            .1
    }

    #[test]
    fn a_leaf_reads_as_its_key_and_a_bundle_splits_into_its_certificates() {
        let leaf = read_leaf(&fixture("leaf.pem")).unwrap();
        assert_eq!(leaf.key, leaf_key());
        assert!(leaf.identities.is_empty(), "the fixture has no SAN");
        assert!(leaf.not_before < SystemTime::now());
        let bundle = format!("{}\n{}", fixture("root.pem"), fixture("other-root.pem"));
        let blocks = certificate_blocks(&bundle);
        assert_eq!(blocks.len(), 2);
        assert_eq!(
            read_leaf(&blocks[1]).unwrap().key,
            read_leaf(&fixture("other-root.pem")).unwrap().key
        );
        assert_eq!(
            certificate_blocks("no certificate here"),
            Vec::<String>::new()
        );
        assert_eq!(read_leaf("garbage"), Err(ChainError::Unreadable(0)));
    }

    #[test]
    fn a_chain_for_the_sent_key_ending_at_a_trusted_root_is_accepted() {
        let chain = [fixture("leaf.pem"), fixture("root.pem")];
        let now = SystemTime::now();
        assert_eq!(check_chain(&chain, &leaf_key(), None, now), Ok(()));
        let roots = fixture("other-root.pem") + &fixture("root.pem");
        assert_eq!(check_chain(&chain, &leaf_key(), Some(&roots), now), Ok(()));
        // The root need not be in the chain when the file has it.
        assert_eq!(
            check_chain(&chain[..1], &leaf_key(), Some(&roots), now),
            Ok(())
        );
    }

    #[test]
    fn another_key_a_forged_link_an_untrusted_root_or_expiry_is_refused() {
        let now = SystemTime::now();
        let chain = [fixture("leaf.pem"), fixture("root.pem")];
        let other_key = pem_rfc7468::decode_vec(fixture("other.pub").as_bytes())
            .unwrap()
            .1;
        assert_eq!(
            check_chain(&chain, &other_key, None, now),
            Err(ChainError::OtherKey)
        );
        let forged = [fixture("leaf.pem"), fixture("other-root.pem")];
        assert_eq!(
            check_chain(&forged, &leaf_key(), None, now),
            Err(ChainError::BadSignature(0))
        );
        assert!(matches!(
            check_chain(&chain, &leaf_key(), Some(&fixture("other-root.pem")), now),
            Err(ChainError::Untrusted(_))
        ));
        assert!(matches!(
            check_chain(&chain[..1], &leaf_key(), None, now),
            Err(ChainError::Untrusted(_))
        ));
        let later = now + Duration::from_secs(200 * 365 * 24 * 3600);
        assert_eq!(
            check_chain(&chain, &leaf_key(), None, later),
            Err(ChainError::Expired(0))
        );
        assert_eq!(
            check_chain(&["garbage".to_owned()], &leaf_key(), None, now),
            Err(ChainError::Unreadable(0))
        );
    }
}
