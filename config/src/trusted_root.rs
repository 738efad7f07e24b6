//! A Sigstore trusted root (`trusted_root.json`, media type
//! `application/vnd.dev.sigstore.trustedroot+json`), the file cosign v3 takes with
//! `--trusted-root` and `cosign trusted-root create` writes: the Fulcio CA chains, the
//! transparency logs' public keys and the timestamp authorities' chains one Sigstore instance
//! is trusted by. The signer checks Fulcio, Rekor and TSA answers against it; the operator
//! publishes it beside the public key so verifiers use the very same file.
//!
//! Pure: parsing and lookups only.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

/// Why a trusted root was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the trusted root is not usable: {0}")]
pub struct TrustedRootError(pub String);

/// One certificate chain (DER, in the file's order) with the service it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authority {
    pub uri: String,
    pub chain: Vec<Vec<u8>>,
}

/// One transparency log's key (SPKI DER).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Log {
    pub base_url: String,
    pub public_key: Vec<u8>,
}

/// A parsed trusted root, with the text it came from (what is rendered and published).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedRoot {
    pub text: String,
    pub certificate_authorities: Vec<Authority>,
    pub tlogs: Vec<Log>,
    pub timestamp_authorities: Vec<Authority>,
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

fn base64_field(value: &Value, what: &str) -> Result<Vec<u8>, TrustedRootError> {
    let text = value
        .as_str()
        .ok_or_else(|| TrustedRootError(format!("{what} is missing")))?;
    STANDARD
        .decode(text)
        .map_err(|_| TrustedRootError(format!("{what} is not base64")))
}

fn text_field(value: &Value, what: &str) -> Result<String, TrustedRootError> {
    value
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| TrustedRootError(format!("{what} is missing")))
}

/// A list `field` of certificate authorities. The signer finds a timestamp authority by its
/// `uri`, so there it is required; a Fulcio's is informational.
fn authorities(
    root: &Value,
    field: &str,
    uri_required: bool,
) -> Result<Vec<Authority>, TrustedRootError> {
    let Some(list) = root.get(field) else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| TrustedRootError(format!("{field} is not a list")))?;
    list.iter()
        .enumerate()
        .map(|(i, entry)| {
            let certificates = entry["certChain"]["certificates"]
                .as_array()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| TrustedRootError(format!("{field}[{i}] has no certChain")))?;
            let chain = certificates
                .iter()
                .enumerate()
                .map(|(j, c)| {
                    base64_field(
                        &c["rawBytes"],
                        &format!("{field}[{i}].certChain.certificates[{j}].rawBytes"),
                    )
                })
                .collect::<Result<_, _>>()?;
            let uri = if uri_required {
                text_field(&entry["uri"], &format!("{field}[{i}].uri"))?
            } else {
                entry["uri"].as_str().unwrap_or_default().to_owned()
            };
            Ok(Authority { uri, chain })
        })
        .collect()
}

/// Sigstore's public-good trusted root as built into Signet: the Fulcio CAs, the Rekor v1
/// key and the CT logs of `trusted_root.json` as Sigstore's TUF repository published it
/// (github.com/sigstore/sigstore v1.10.9, `pkg/tuf/repository/targets/trusted_root.json`),
/// without its one timestamp authority, which names no URL. Used only for the public
/// `fulcio.sigstore.dev` and `rekor.sigstore.dev` when nothing else is pinned.
/// `None` only if the built-in file did not parse, which a unit test rules out.
pub fn public_good() -> Option<&'static TrustedRoot> {
    static ROOT: std::sync::LazyLock<Option<TrustedRoot>> = std::sync::LazyLock::new(|| {
        TrustedRoot::parse(include_str!("public-good-trusted-root.json")).ok()
    });
    ROOT.as_ref()
}

impl TrustedRoot {
    /// Parses `text` (JSON); every certificate and key must be base64.
    pub fn parse(text: &str) -> Result<Self, TrustedRootError> {
        let root: Value =
            serde_json::from_str(text).map_err(|e| TrustedRootError(format!("not JSON: {e}")))?;
        let media_type = root["mediaType"].as_str().unwrap_or_default();
        if !media_type.starts_with("application/vnd.dev.sigstore.trustedroot") {
            return Err(TrustedRootError(format!(
                "mediaType {media_type:?} is not application/vnd.dev.sigstore.trustedroot+json"
            )));
        }
        let tlogs = match root.get("tlogs") {
            None => Vec::new(),
            Some(list) => list
                .as_array()
                .ok_or_else(|| TrustedRootError("tlogs is not a list".to_owned()))?
                .iter()
                .enumerate()
                .map(|(i, log)| {
                    Ok(Log {
                        base_url: text_field(&log["baseUrl"], &format!("tlogs[{i}].baseUrl"))?,
                        public_key: base64_field(
                            &log["publicKey"]["rawBytes"],
                            &format!("tlogs[{i}].publicKey.rawBytes"),
                        )?,
                    })
                })
                .collect::<Result<_, TrustedRootError>>()?,
        };
        Ok(Self {
            text: text.to_owned(),
            certificate_authorities: authorities(&root, "certificateAuthorities", false)?,
            tlogs,
            timestamp_authorities: authorities(&root, "timestampAuthorities", true)?,
        })
    }

    /// The key of the log at `url` (SPKI DER).
    pub fn log_key(&self, url: &str) -> Option<&[u8]> {
        self.tlogs
            .iter()
            .find(|l| same_url(&l.base_url, url))
            .map(|l| l.public_key.as_slice())
    }

    /// The chain of the timestamp authority at `url`, as PEM.
    pub fn timestamp_chain_pem(&self, url: &str) -> Option<String> {
        self.timestamp_authorities
            .iter()
            .find(|a| same_url(&a.uri, url))
            .map(|a| pem_certificates(&a.chain))
    }

    /// Every Fulcio CA certificate, as one PEM bundle.
    pub fn fulcio_roots_pem(&self) -> String {
        let all: Vec<Vec<u8>> = self
            .certificate_authorities
            .iter()
            .flat_map(|a| a.chain.iter().cloned())
            .collect();
        pem_certificates(&all)
    }
}

fn pem_certificates(chain: &[Vec<u8>]) -> String {
    chain
        .iter()
        .map(|der| {
            pem_rfc7468::encode_string("CERTIFICATE", pem_rfc7468::LineEnding::LF, der)
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        serde_json::json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [{"baseUrl": "https://rekor.example", "hashAlgorithm": "SHA2_256",
                       "publicKey": {"rawBytes": STANDARD.encode(b"rekor-key"),
                                     "keyDetails": "PKIX_ECDSA_P256_SHA_256"}}],
            "certificateAuthorities": [{"uri": "https://fulcio.example",
                "certChain": {"certificates": [{"rawBytes": STANDARD.encode(b"leaf")},
                                               {"rawBytes": STANDARD.encode(b"root")}]}}],
            "timestampAuthorities": [{"uri": "https://tsa.example/api/v1/timestamp",
                "certChain": {"certificates": [{"rawBytes": STANDARD.encode(b"tsa")}]}}]
        })
        .to_string()
    }

    #[test]
    fn the_built_in_public_good_root_names_the_public_fulcio_and_rekor() {
        let root = public_good().unwrap();
        assert!(root.log_key(crate::DEFAULT_REKOR_URL).is_some());
        assert_eq!(root.certificate_authorities.len(), 2);
        assert!(
            root.certificate_authorities
                .iter()
                .all(|a| a.uri == crate::DEFAULT_FULCIO_URL)
        );
        assert_eq!(
            root.fulcio_roots_pem().matches("BEGIN CERTIFICATE").count(),
            3
        );
    }

    #[test]
    fn logs_and_authorities_are_found_by_their_url() {
        let root = TrustedRoot::parse(&sample()).unwrap();
        assert_eq!(
            root.log_key("https://rekor.example/"),
            Some(&b"rekor-key"[..])
        );
        assert_eq!(root.log_key("https://other.example"), None);
        let tsa = root
            .timestamp_chain_pem("https://tsa.example/api/v1/timestamp")
            .unwrap();
        assert_eq!(tsa.matches("BEGIN CERTIFICATE").count(), 1);
        assert_eq!(
            root.fulcio_roots_pem().matches("BEGIN CERTIFICATE").count(),
            2
        );
        assert_eq!(root.text, sample());
    }

    #[test]
    fn what_is_not_a_trusted_root_is_refused_naming_the_field() {
        assert!(TrustedRoot::parse("{").unwrap_err().0.contains("not JSON"));
        assert!(
            TrustedRoot::parse(r#"{"mediaType": "x"}"#)
                .unwrap_err()
                .0
                .contains("mediaType")
        );
        let bad = sample().replace(&STANDARD.encode(b"rekor-key"), "%%%");
        assert_eq!(
            TrustedRoot::parse(&bad).unwrap_err().0,
            "tlogs[0].publicKey.rawBytes is not base64"
        );
        let no_base_url = sample().replace("\"baseUrl\":\"https://rekor.example\",", "");
        assert_eq!(
            TrustedRoot::parse(&no_base_url).unwrap_err().0,
            "tlogs[0].baseUrl is missing"
        );
        let empty_chain = serde_json::json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "timestampAuthorities": [{"uri": "u", "certChain": {"certificates": []}}]
        });
        assert!(
            TrustedRoot::parse(&empty_chain.to_string())
                .unwrap_err()
                .0
                .contains("timestampAuthorities[0] has no certChain")
        );
    }
}
