//! Signed timestamps from an RFC 3161 timestamp authority (`signers.tsa.url`): proof that a
//! signature existed at a time the signer's own clock cannot vouch for. A Fulcio certificate
//! lives minutes and Rekor v2 records no time, so with keyless signing and Rekor v2 a verifier
//! needs one to see that the signature was made while the certificate was valid.
//!
//! What is timestamped is what cosign v3 timestamps: the signature bytes (for a DSSE envelope,
//! its signature). The answer (a DER `TimeStampResp`) goes into the Sigstore bundle's
//! `timestampVerificationData`, and only after [`verify`] accepted it: granted, a token for
//! this signature's SHA-256 with this request's nonce, its `TSTInfo` signed by a
//! time-stamping certificate that chains to the pinned TSA root, at a time close to ours.
//!
//! The TSA's chain is pinned with `SIGSTORE_TSA_CERTIFICATE_FILE` (cosign's variable: the
//! PEM chain, leaf first) or, when that is unset, read once from sigstore's
//! `<url>/certchain` and said once in the log (trust on first use).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cmpv2::status::PkiStatus;
use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use p256::pkcs8::der::asn1::{Int, ObjectIdentifier, OctetString};
use p256::pkcs8::der::{Decode, Encode};
use sha2::{Digest, Sha256, Sha384, Sha512};
use x509_cert::Certificate;
use x509_cert::ext::pkix::SubjectKeyIdentifier;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_tsp::{MessageImprint, TimeStampReq, TimeStampResp, TspVersion, TstInfo};

use signet_config::trusted_root::TrustedRoot;

use super::trust::{PeerCache, Pinned, excerpt, pinned_file, read_capped, served};
use crate::signing::keyless::chain::{read_bundle, signed_by, spki_der};
use crate::signing::keyless::path::{self, Purpose};

const ID_SHA_256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ID_SHA_384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const ID_SHA_512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_CT_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");

/// How far the timestamp's time may be from this signer's clock.
const MAX_SKEW: Duration = Duration::from_secs(300);
/// The largest answer read from a TSA (a response with a full chain is a few KiB).
const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// Why a timestamp was not obtained; names the authority.
#[derive(Clone, Debug, thiserror::Error)]
#[error("timestamp authority {url}: {message}")]
pub struct TimestampError {
    pub url: String,
    pub message: String,
}

/// The pinned chains of the authorities in use, by URL, kept for the process's life.
pub type TsaChains = PeerCache<Arc<Vec<Certificate>>>;

/// An RFC 3161 timestamp authority.
#[derive(Clone, Debug)]
pub struct Tsa {
    pub url: String,
    http: reqwest::Client,
    chains: TsaChains,
    /// The chain a trusted root gives this authority (PEM).
    root_chain: Pinned<String>,
}

/// A verified timestamp: the authority's answer (DER `TimeStampResp`) and the time it states.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timestamp {
    pub response: Vec<u8>,
    pub time: SystemTime,
}

impl Tsa {
    pub fn new(http: &reqwest::Client, url: &str, chains: &TsaChains) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            http: http.clone(),
            chains: chains.clone(),
            root_chain: Pinned::NoRoot,
        }
    }

    /// Trusts only the chain `root` gives this authority, when there is a trusted root.
    #[must_use]
    pub fn with_trusted_root(mut self, root: Option<&TrustedRoot>) -> Self {
        self.root_chain = Pinned::of(root, |r| r.timestamp_chain_pem(&self.url));
        self
    }

    fn error(&self, message: impl std::fmt::Display) -> TimestampError {
        TimestampError {
            url: self.url.clone(),
            message: message.to_string(),
        }
    }

    /// A verified timestamp over `signature` (its SHA-256).
    pub async fn timestamp(&self, signature: &[u8]) -> Result<Timestamp, TimestampError> {
        let digest: [u8; 32] = Sha256::digest(signature).into();
        let nonce = nonce().map_err(|e| self.error(e))?;
        let request = request(&digest, &nonce).map_err(|e| self.error(e))?;
        let trusted = self.trusted_chain().await?;
        let response = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/timestamp-query")
            .header(reqwest::header::ACCEPT, "application/timestamp-reply")
            .timeout(Duration::from_secs(30))
            .body(request)
            .send()
            .await
            .map_err(|e| self.error(e))?;
        let status = response.status();
        let body = read_capped(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| self.error(e))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(self.error(format!("{status}: {}", excerpt(&text))));
        }
        let time = verify(&body, &digest, Some(&nonce), &trusted)
            .map_err(|e| self.error(format!("its answer cannot be used: {e}")))?;
        let now = SystemTime::now();
        // Either way: before or after this signer's clock.
        let skew = now
            .duration_since(time)
            .unwrap_or_else(|ahead| ahead.duration());
        if skew > MAX_SKEW {
            return Err(self.error(format!(
                "its time is {} s away from this signer's clock (at most {} s accepted)",
                skew.as_secs(),
                MAX_SKEW.as_secs()
            )));
        }
        Ok(Timestamp {
            response: body,
            time,
        })
    }

    /// The authority's chain: the trusted root's, else `SIGSTORE_TSA_CERTIFICATE_FILE`, else
    /// the one it serves.
    async fn trusted_chain(&self) -> Result<Arc<Vec<Certificate>>, TimestampError> {
        let rooted = self
            .root_chain
            .resolve("timestamp authority")
            .map_err(|e| self.error(e))?;
        if let Some(pem) = rooted {
            return Ok(Arc::new(read_bundle(&pem)));
        }
        if let Some(chain) = self.chains.get(&self.url) {
            return Ok(chain);
        }
        let pem = if let Some(pinned) = pinned_file("SIGSTORE_TSA_CERTIFICATE_FILE").await {
            pinned.map_err(|e| self.error(e))?
        } else {
            tracing::warn!(tsa = %self.url, "SIGSTORE_TSA_CERTIFICATE_FILE is not set: trusting the certificate chain the timestamp authority serves now for as long as this process runs");
            let failed = |e: &dyn std::fmt::Display| {
                self.error(format!(
                    "reading its certificate chain from {}/certchain (set SIGSTORE_TSA_CERTIFICATE_FILE for an authority that does not serve one): {e}",
                    self.url
                ))
            };
            let response = served(&self.http, &format!("{}/certchain", self.url))
                .await
                .map_err(|e| failed(&e))?;
            let body = read_capped(response, MAX_ANSWER_BYTES)
                .await
                .map_err(|e| failed(&e))?;
            String::from_utf8(body).map_err(|_| failed(&"not PEM"))?
        };
        let chain = read_bundle(&pem);
        if !chain.iter().any(|c| signed_by(c, c)) {
            return Err(
                self.error("its pinned certificate chain holds no self-signed root certificate")
            );
        }
        let chain = Arc::new(chain);
        self.chains.insert(&self.url, chain.clone());
        Ok(chain)
    }
}

/// Eight random bytes, a positive minimal INTEGER's content.
fn nonce() -> Result<Vec<u8>, String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "no randomness for the request's nonce".to_owned())?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(bytes.to_vec())
}

/// The DER `TimeStampReq` for a SHA-256 `digest`, asking for the signing certificate.
pub fn request(digest: &[u8; 32], nonce: &[u8]) -> Result<Vec<u8>, String> {
    let request = TimeStampReq {
        version: TspVersion::V1,
        message_imprint: MessageImprint {
            hash_algorithm: AlgorithmIdentifierOwned {
                oid: ID_SHA_256,
                parameters: None,
            },
            hashed_message: OctetString::new(digest.as_slice()).map_err(|e| e.to_string())?,
        },
        req_policy: None,
        nonce: Some(Int::new(nonce).map_err(|e| e.to_string())?),
        cert_req: true,
        extensions: None,
    };
    request.to_der().map_err(|e| e.to_string())
}

fn hash(algorithm: &ObjectIdentifier, data: &[u8]) -> Result<Vec<u8>, String> {
    Ok(match *algorithm {
        ID_SHA_256 => Sha256::digest(data).to_vec(),
        ID_SHA_384 => Sha384::digest(data).to_vec(),
        ID_SHA_512 => Sha512::digest(data).to_vec(),
        other => return Err(format!("its digest algorithm {other} is not SHA-2")),
    })
}

/// The single value of signed attribute `oid`.
fn attribute(signer: &SignerInfo, oid: ObjectIdentifier) -> Option<&p256::pkcs8::der::Any> {
    let attrs = signer.signed_attrs.as_ref()?;
    let attr = attrs.iter().find(|a| a.oid == oid)?;
    (attr.values.len() == 1)
        .then(|| attr.values.get(0))
        .flatten()
}

/// Whether `cert` is the one `sid` names.
fn identifies(sid: &SignerIdentifier, cert: &Certificate) -> bool {
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(id) => {
            cert.tbs_certificate.issuer == id.issuer
                && cert.tbs_certificate.serial_number == id.serial_number
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => {
            matches!(cert.tbs_certificate.get::<SubjectKeyIdentifier>(), Ok(Some((_, own))) if own == *ski)
        }
    }
}

/// Whether `cert` leads, through certificates in `pool` and `trusted`, to a self-signed root
/// in `trusted` by RFC 5280 path validation for time stamping, at time `at`.
fn chains_to(
    cert: &Certificate,
    trusted: &[Certificate],
    pool: &[Certificate],
    at: SystemTime,
) -> Result<(), String> {
    let (roots, others): (Vec<Certificate>, Vec<Certificate>) =
        trusted.iter().cloned().partition(|c| signed_by(c, c));
    let pool: Vec<Certificate> = pool.iter().cloned().chain(others).collect();
    path::validate(cert, &pool, &roots, at, Purpose::TimeStamping).map_err(|e| {
        format!("its signing certificate fails path validation to the pinned TSA root: {e}")
    })
}

/// Checks a timestamp a Sigstore bundle carries: `response` (DER `TimeStampResp`) is for
/// `signature`, signed by the authority whose chain (PEM) is `chain_pem`. The time it states.
pub fn verify_for_signature(
    response: &[u8],
    signature: &[u8],
    chain_pem: &str,
) -> Result<SystemTime, String> {
    let digest: [u8; 32] = Sha256::digest(signature).into();
    verify(response, &digest, None, &read_bundle(chain_pem))
}

/// Checks a DER `TimeStampResp` as described in the module documentation; the time it states.
pub fn verify(
    response: &[u8],
    digest: &[u8; 32],
    nonce: Option<&[u8]>,
    trusted: &[Certificate],
) -> Result<SystemTime, String> {
    let response =
        TimeStampResp::from_der(response).map_err(|_| "it is not a DER TimeStampResp")?;
    match response.status.status {
        PkiStatus::Accepted | PkiStatus::GrantedWithMods => {}
        refused => {
            return Err(format!(
                "it refused the request ({refused:?}{})",
                response
                    .status
                    .status_string
                    .as_ref()
                    .and_then(|s| s.first())
                    .map(|s| format!(": {}", s.as_str()))
                    .unwrap_or_default()
            ));
        }
    }
    let token: ContentInfo = response
        .time_stamp_token
        .ok_or("it holds no timestamp token")?;
    if token.content_type != ID_SIGNED_DATA {
        return Err("its token is not CMS SignedData".to_owned());
    }
    let content = token.content.to_der().map_err(|e| e.to_string())?;
    let signed = SignedData::from_der(&content).map_err(|_| "its token is not CMS SignedData")?;
    if signed.encap_content_info.econtent_type != ID_CT_TST_INFO {
        return Err("its token does not hold a TSTInfo".to_owned());
    }
    let econtent = signed
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or("its token holds no TSTInfo")?;
    let tst_der = econtent
        .decode_as::<OctetString>()
        .map_err(|_| "its TSTInfo is not an OCTET STRING")?;
    let tst = TstInfo::from_der(tst_der.as_bytes()).map_err(|_| "its TSTInfo is not DER")?;
    if tst.message_imprint.hash_algorithm.oid != ID_SHA_256
        || tst.message_imprint.hashed_message.as_bytes() != digest
    {
        return Err("it is a timestamp for another message".to_owned());
    }
    if let Some(nonce) = nonce
        && tst.nonce.as_ref().map(Int::as_bytes) != Some(nonce)
    {
        return Err("its nonce is not this request's (a replayed or misrouted answer)".to_owned());
    }
    let signers: Vec<&SignerInfo> = signed.signer_infos.0.iter().collect();
    let [signer_info] = signers.as_slice() else {
        return Err(format!("its token has {} signers, not one", signers.len()));
    };
    let content_type = attribute(signer_info, ID_CONTENT_TYPE)
        .and_then(|v| v.decode_as::<ObjectIdentifier>().ok())
        .ok_or("its signed attributes hold no content type")?;
    if content_type != ID_CT_TST_INFO {
        return Err("its signed content type is not TSTInfo".to_owned());
    }
    let message_digest = attribute(signer_info, ID_MESSAGE_DIGEST)
        .and_then(|v| v.decode_as::<OctetString>().ok())
        .ok_or("its signed attributes hold no message digest")?;
    if message_digest.as_bytes() != hash(&signer_info.digest_alg.oid, tst_der.as_bytes())? {
        return Err("its signed message digest is not its TSTInfo's".to_owned());
    }
    let embedded: Vec<Certificate> = signed
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .filter_map(|c| match c {
            CertificateChoices::Certificate(cert) => Some(cert.clone()),
            CertificateChoices::Other(_) => None,
        })
        .collect();
    let certificate = embedded
        .iter()
        .chain(trusted)
        .find(|c| identifies(&signer_info.sid, c))
        .ok_or("the certificate that signed it is neither in the answer nor in the pinned chain")?;
    let signed_attributes = signer_info
        .signed_attrs
        .as_ref()
        .ok_or("it has no signed attributes")?
        .to_der()
        .map_err(|e| e.to_string())?;
    signet_config::keys::verify_signature(
        &spki_der(certificate),
        &signed_attributes,
        signer_info.signature.as_bytes(),
    )
    .map_err(|e| format!("its signature does not verify: {e}"))?;
    let time = tst.gen_time.to_system_time();
    chains_to(certificate, trusted, &embedded, time)?;
    Ok(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real answer of sigstore's timestamp-server (tests/env/tools/tsa, in-memory signer) to
    /// `openssl ts -query -data hello.txt -sha256 -cert`, and the chain it served.
    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/testdata/tsa/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn chain() -> Vec<Certificate> {
        read_bundle(&String::from_utf8(fixture("chain.pem")).unwrap())
    }

    fn digest() -> [u8; 32] {
        Sha256::digest(fixture("hello.txt")).into()
    }

    #[test]
    fn a_real_answer_verifies_for_its_message_and_pinned_chain_only() {
        let response = fixture("hello.tsr");
        let time = verify(&response, &digest(), None, &chain()).unwrap();
        assert!(time < SystemTime::now());
        let other: [u8; 32] = Sha256::digest(b"another message").into();
        assert_eq!(
            verify(&response, &other, None, &chain()).unwrap_err(),
            "it is a timestamp for another message"
        );
        assert!(
            verify(&response, &digest(), Some(&[0x40, 1, 2, 3]), &chain())
                .unwrap_err()
                .contains("nonce")
        );
        // Another authority's root: the same answer is refused.
        let other_root = read_bundle(
            &std::fs::read_to_string(format!(
                "{}/testdata/certs/root.pem",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        );
        assert!(
            verify(&response, &digest(), None, &other_root)
                .unwrap_err()
                .contains("pinned"),
        );
    }

    #[test]
    fn a_tampered_or_foreign_answer_is_refused_without_panicking() {
        let response = fixture("hello.tsr");
        // Flip each byte of the signed part in turn: never accepted, never a panic.
        for i in (0..response.len()).step_by(7) {
            let mut bad = response.clone();
            bad[i] ^= 0x01;
            if let Ok(time) = verify(&bad, &digest(), None, &chain()) {
                // A flip in an unsigned field (e.g. the status string) may still verify, but
                // then for the very same time and message.
                assert_eq!(time, verify(&response, &digest(), None, &chain()).unwrap());
            }
        }
        assert!(verify(b"", &digest(), None, &chain()).is_err());
        assert!(verify(b"\x30\x03\x02\x01\x02", &digest(), None, &chain()).is_err());
    }

    #[test]
    fn requests_are_der_for_sha256_with_the_nonce_and_the_certificate_asked_for() {
        let nonce = nonce().unwrap();
        assert_eq!(nonce.len(), 8);
        assert!(nonce[0] >= 0x40 && nonce[0] < 0x80);
        let der = request(&digest(), &nonce).unwrap();
        let parsed = TimeStampReq::from_der(&der).unwrap();
        assert_eq!(parsed.message_imprint.hashed_message.as_bytes(), digest());
        assert_eq!(parsed.nonce.unwrap().as_bytes(), nonce.as_slice());
        assert!(parsed.cert_req);
    }
}
