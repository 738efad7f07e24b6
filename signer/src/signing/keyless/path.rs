//! RFC 5280 path validation for the certificates Sigstore's peers hand the signer and the
//! CLI: a Fulcio leaf (extended key usage codeSigning) and a timestamp authority's signing
//! certificate (timeStamping). The path is built and checked by rustls-webpki — every issuer
//! a CA (basicConstraints cA), path lengths kept, the leaf not a CA, every issuer that lists
//! EKUs listing the purpose's, each certificate valid at the given
//! time and signed by the next — and this module adds what webpki leaves out: an issuer that
//! has a keyUsage extension must allow keyCertSign, and the leaf must list the EKU (webpki
//! would demand it of every issuer too, which Go's x509 and sigstore-go do not).
//!
//! Pure; which anchors to trust is the caller's decision.

use std::time::{SystemTime, UNIX_EPOCH};

use p256::pkcs8::der::Encode;
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_cert::Certificate;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages};

/// DER of id-kp-codeSigning (1.3.6.1.5.5.7.3.3), the EKU Fulcio puts on every leaf.
const EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
/// DER of id-kp-timeStamping (1.3.6.1.5.5.7.3.8), which RFC 3161 requires of a TSA's leaf.
const EKU_TIME_STAMPING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08];

/// What the leaf is to be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A Fulcio signing certificate.
    CodeSigning,
    /// A timestamp authority's signing certificate.
    TimeStamping,
}

impl Purpose {
    fn eku(self) -> (&'static [u8], &'static str) {
        match self {
            Self::CodeSigning => (EKU_CODE_SIGNING, "codeSigning"),
            Self::TimeStamping => (EKU_TIME_STAMPING, "timeStamping"),
        }
    }
}

/// Checks that `leaf` leads, through certificates in `pool`, to one of `anchors`, by the
/// rules in the module documentation, at time `at`. The error says which rule failed.
pub fn validate(
    leaf: &Certificate,
    pool: &[Certificate],
    anchors: &[Certificate],
    at: SystemTime,
    purpose: Purpose,
) -> Result<(), String> {
    let der = |cert: &Certificate| {
        cert.to_der()
            .map(CertificateDer::from)
            .map_err(|e| format!("a certificate does not encode as DER: {e}"))
    };
    let leaf_der = der(leaf)?;
    let pool_der = pool.iter().map(der).collect::<Result<Vec<_>, _>>()?;
    let anchor_der = anchors.iter().map(der).collect::<Result<Vec<_>, _>>()?;
    let trust_anchors = anchor_der
        .iter()
        .map(|a| webpki::anchor_from_trusted_cert(a).map(|a| a.to_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("a trusted root is unreadable ({e:?})"))?;
    let end_entity = webpki::EndEntityCert::try_from(&leaf_der)
        .map_err(|e| format!("the leaf is unreadable ({e:?})"))?;
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (eku, eku_name) = purpose.eku();
    let path = end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &trust_anchors,
            &pool_der,
            UnixTime::since_unix_epoch(since_epoch),
            // Issuers that list EKUs must list it (as Go's x509 and sigstore-go check); one
            // that lists none is unrestricted. The leaf must carry it: checked below.
            webpki::KeyUsage::required_if_present(eku),
            None,
            None,
        )
        .map_err(|e| explain(&e, eku_name))?;
    if !has_eku(leaf, eku) {
        return Err(format!(
            "the leaf is not for {eku_name} (extended key usage)"
        ));
    }
    if path
        .intermediate_certificates()
        .all(|cert| may_sign_certificates(&cert.der()))
    {
        Ok(())
    } else {
        Err(
            "a certificate that issued another may not sign certificates (keyUsage lacks keyCertSign)"
                .to_owned(),
        )
    }
}

/// Whether `cert` lists `eku` (DER of the OID) among its extended key usages.
fn has_eku(cert: &Certificate, eku: &[u8]) -> bool {
    matches!(cert.tbs_certificate.get::<ExtendedKeyUsage>(),
        Ok(Some((_, usages))) if usages.0.iter().any(|oid| oid.as_bytes() == eku))
}

/// Whether `cert` (DER) may issue certificates: its keyUsage, when present, has keyCertSign.
fn may_sign_certificates(cert: &[u8]) -> bool {
    use p256::pkcs8::der::Decode;
    Certificate::from_der(cert).is_ok_and(|cert| match cert.tbs_certificate.get::<KeyUsage>() {
        Ok(Some((_, usage))) => usage.0.contains(KeyUsages::KeyCertSign),
        Ok(None) => true,
        Err(_) => false,
    })
}

/// Whether `cert` is a CA certificate allowed to sign certificates: what a root taken from
/// a peer's own answer must be before it anchors anything.
pub fn is_certificate_authority(cert: &Certificate) -> bool {
    let ca = matches!(cert.tbs_certificate.get::<BasicConstraints>(), Ok(Some((_, bc))) if bc.ca);
    ca && cert.to_der().is_ok_and(|der| may_sign_certificates(&der))
}

/// A user's words for what webpki refused.
fn explain(error: &webpki::Error, eku: &str) -> String {
    use webpki::Error as E;
    match error {
        E::CertExpired { .. } | E::CertNotValidYet { .. } => {
            "a certificate of the chain is outside its validity period at the time checked"
                .to_owned()
        }
        E::CaUsedAsEndEntity => "the leaf is a CA certificate".to_owned(),
        E::EndEntityUsedAsCa => {
            "a certificate that issued another is not a CA (basicConstraints cA is not set)"
                .to_owned()
        }
        E::PathLenConstraintViolated => {
            "the chain is longer than an issuer's path length constraint allows".to_owned()
        }
        E::RequiredEkuNotFoundContext(_) => {
            format!("an issuer in the chain lists extended key usages without {eku}")
        }
        E::UnknownIssuer => "it does not chain to a trusted root".to_owned(),
        E::InvalidSignatureForPublicKey
        | E::SignatureAlgorithmMismatch
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            "a certificate of the chain is not signed by its issuer".to_owned()
        }
        other => format!("path validation failed ({other:?})"),
    }
}
