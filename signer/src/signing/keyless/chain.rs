//! Checks Fulcio's answer before it is used: the leaf certificate certifies the key this
//! signer sent, and the chain passes RFC 5280 path validation for code signing (`path.rs`:
//! issuers are CAs allowed to sign certificates within their path length, the leaf is not a
//! CA and carries codeSigning, everything valid at the time checked) up to a trusted root —
//! one of the certificates in `SIGSTORE_ROOT_FILE` (the variable cosign reads for a private
//! Sigstore's Fulcio roots) or, when that is unset, the chain's own self-signed CA root (said
//! once in the log: the root is then not pinned).
//!
//! Pure but for reading that file; never decides what to do about a bad chain.

use std::time::SystemTime;

use p256::pkcs8::der::{Decode, Encode};
use x509_cert::Certificate;

use signet_config::keys::verify_signature;

use super::path::{self, Purpose};

/// Why a chain was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("certificate {0} of the chain is not a PEM X.509 certificate")]
    Unreadable(usize),
    #[error("the certificate is for another public key than the one sent")]
    OtherKey,
    #[error("the chain fails path validation: {0}")]
    Path(String),
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
    /// The OIDC issuer Fulcio wrote in it (extension 1.3.6.1.4.1.57264.1.8, else the
    /// deprecated 1.3.6.1.4.1.57264.1.1), when it has one.
    pub issuer: Option<String>,
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
        issuer: oidc_issuer(&leaf),
        not_before: leaf.tbs_certificate.validity.not_before.to_system_time(),
    })
}

/// Fulcio's OIDC issuer extension: v2 (`…57264.1.8`, a DER `UTF8String`) or, on certificates
/// from before it, v1 (`…57264.1.1`, the raw bytes).
fn oidc_issuer(cert: &Certificate) -> Option<String> {
    use p256::pkcs8::der::asn1::{ObjectIdentifier, Utf8StringRef};
    const V2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.8");
    const V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.1");
    let extensions = cert
        .tbs_certificate
        .extensions
        .as_deref()
        .unwrap_or_default();
    let value = |oid| {
        extensions
            .iter()
            .find(|e| e.extn_id == oid)
            .map(|e| e.extn_value.as_bytes())
    };
    if let Some(der) = value(V2) {
        return Utf8StringRef::from_der(der)
            .ok()
            .map(|s| s.as_str().to_owned());
    }
    value(V1).and_then(|raw| String::from_utf8(raw.to_vec()).ok())
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
    let anchors = match roots {
        None => {
            let top = chain.last().ok_or(ChainError::Unreadable(0))?;
            if chain.len() < 2 || !signed_by(top, top) {
                return Err(ChainError::Untrusted(
                    "its last certificate is not a self-signed root".to_owned(),
                ));
            }
            if !path::is_certificate_authority(top) {
                return Err(ChainError::Untrusted(
                    "its self-signed root is not a CA allowed to sign certificates".to_owned(),
                ));
            }
            vec![top.clone()]
        }
        Some(bundle) => {
            let roots = read_bundle(bundle);
            if roots.is_empty() {
                return Err(ChainError::Untrusted(
                    "SIGSTORE_ROOT_FILE holds no certificate".to_owned(),
                ));
            }
            roots
        }
    };
    path::validate(leaf, &chain[1..], &anchors, now, Purpose::CodeSigning).map_err(ChainError::Path)
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
        assert_eq!(
            leaf.identities,
            ["https://kubernetes.io/namespaces/signet-system/serviceaccounts/signet-signer"]
        );
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

    fn checked(names: &[&str], roots: Option<&str>) -> Result<(), ChainError> {
        let chain: Vec<String> = names.iter().map(|n| fixture(n)).collect();
        let roots = roots.map(fixture);
        check_chain(&chain, &leaf_key(), roots.as_deref(), SystemTime::now())
    }

    fn refused_for(names: &[&str], roots: Option<&str>, why: &str) {
        match checked(names, roots) {
            Err(ChainError::Path(message)) => assert!(
                message.contains(why),
                "{names:?}: refused for {message:?}, expected {why:?}"
            ),
            other => panic!("{names:?}: {other:?}, expected a path error naming {why:?}"),
        }
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
        // Through an intermediate as Sigstore's (CA, path length 0, codeSigning).
        let via = ["leaf-via-intermediate.pem", "intermediate.pem"];
        assert_eq!(checked(&via, Some("root.pem")), Ok(()));
        assert_eq!(checked(&[via[0], via[1], "root.pem"], None), Ok(()));
    }

    #[test]
    fn an_end_entity_certificate_never_issues_the_leaf() {
        // A genuine leaf (for another key, from the trusted CA) "issuing" one for ours.
        refused_for(
            &["forged-leaf.pem", "genuine.pem"],
            Some("root.pem"),
            "not a CA",
        );
        refused_for(
            &["forged-leaf.pem", "genuine.pem", "root.pem"],
            None,
            "not a CA",
        );
    }

    #[test]
    fn an_issuer_whose_key_usage_lacks_certificate_signing_is_refused() {
        refused_for(
            &["leaf-via-no-cert-sign.pem", "no-cert-sign.pem"],
            Some("root.pem"),
            "keyCertSign",
        );
    }

    #[test]
    fn a_chain_longer_than_an_issuers_path_length_is_refused() {
        refused_for(
            &[
                "leaf-via-sub-intermediate.pem",
                "sub-intermediate.pem",
                "intermediate.pem",
            ],
            Some("root.pem"),
            "path length",
        );
    }

    #[test]
    fn a_leaf_without_code_signing_or_that_is_a_ca_is_refused() {
        refused_for(
            &["leaf-not-code-signing.pem"],
            Some("root.pem"),
            "codeSigning",
        );
        refused_for(&["leaf-is-ca.pem"], Some("root.pem"), "is a CA");
    }

    #[test]
    fn a_chain_is_checked_at_the_time_given() {
        let chain = [fixture("leaf.pem"), fixture("root.pem")];
        let later = SystemTime::now() + Duration::from_secs(200 * 365 * 24 * 3600);
        let earlier = SystemTime::UNIX_EPOCH + Duration::from_secs(3600);
        for at in [later, earlier] {
            assert!(matches!(
                check_chain(&chain, &leaf_key(), None, at),
                Err(ChainError::Path(m)) if m.contains("validity period")
            ));
        }
    }

    #[test]
    fn another_key_a_forged_link_or_an_untrusted_root_is_refused() {
        let now = SystemTime::now();
        let chain = [fixture("leaf.pem"), fixture("root.pem")];
        let other_key = pem_rfc7468::decode_vec(fixture("other.pub").as_bytes())
            .unwrap()
            .1;
        assert_eq!(
            check_chain(&chain, &other_key, None, now),
            Err(ChainError::OtherKey)
        );
        refused_for(&["leaf.pem", "other-root.pem"], None, "does not chain");
        refused_for(&["leaf.pem"], Some("other-root.pem"), "does not chain");
        assert!(matches!(
            check_chain(&chain[..1], &leaf_key(), None, now),
            Err(ChainError::Untrusted(_))
        ));
        let read = |name: &str| parse(&[fixture(name)]).unwrap().remove(0);
        assert!(path::is_certificate_authority(&read("root.pem")));
        assert!(!path::is_certificate_authority(&read("genuine.pem")));
        assert!(!path::is_certificate_authority(&read("no-cert-sign.pem")));
        assert_eq!(
            check_chain(&["garbage".to_owned()], &leaf_key(), None, now),
            Err(ChainError::Unreadable(0))
        );
    }
}
