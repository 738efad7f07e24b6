//! Keyless signing (`signers.x509.fulcio.*`): for every run a fresh ECDSA P-256 key and a
//! short-lived certificate for it from Fulcio, requested with an OIDC identity token.
//!
//! The token comes from `signers.x509.identity.token.file` (the operator's projected token at
//! `/var/run/sigstore/cosign/oidc-token`), the `SIGSTORE_ID_TOKEN` variable (`envvar`), in
//! that order unless `signers.x509.fulcio.provider` names one; `spiffe` asks the SPIFFE
//! Workload API at `SPIFFE_ENDPOINT_SOCKET` for a JWT-SVID with audience `sigstore`. It is read again for every run
//! (projected tokens rotate). Proof of possession is the key's signature over the token's
//! `sub` claim, as Fulcio's API (v2 `signingCert`) asks. The private key lives in memory for
//! one run and is never written anywhere.

pub mod spiffe;

pub(crate) mod chain;
pub mod path;

use signet_config::trusted_root::TrustedRoot;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

pub use chain::{ChainError, Leaf, certificate_blocks, check_chain, read_leaf};
use signet_config::keys::SigningKey;
use signet_config::{FulcioProvider, X509Config};

/// Where the operator mounts the projected token (the `filesystem` provider's path).
pub const DEFAULT_TOKEN_FILE: &str = "/var/run/sigstore/cosign/oidc-token";

/// Why no certificate could be had. Never carries the token.
#[derive(Clone, Debug, thiserror::Error)]
pub enum KeylessError {
    #[error("keyless signing: {0}")]
    Token(String),
    #[error("keyless signing: Fulcio {address}: {message}")]
    Fulcio { address: String, message: String },
    #[error("keyless signing: {0}")]
    Key(String),
}

/// A one-run key and the certificate chain Fulcio issued for it (leaf first, PEM).
pub struct Ephemeral {
    pub key: SigningKey,
    pub chain: Vec<String>,
}

impl std::fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ephemeral")
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Ephemeral {
    /// The leaf certificate (PEM).
    pub fn certificate(&self) -> &str {
        self.chain.first().map_or("", String::as_str)
    }

    /// The intermediates and root (PEM, concatenated), as Chains' `chain` annotation holds.
    pub fn chain_pem(&self) -> String {
        self.chain.iter().skip(1).map(String::as_str).collect()
    }
}

/// The `sub` claim of a JWT (not verified here: Fulcio verifies the token).
pub fn subject_of(token: &str) -> Result<String, String> {
    let payload = token
        .split('.')
        .nth(1)
        .ok_or("the identity token is not a JWT")?;
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|e| format!("the identity token's claims are not base64url: {e}"))?,
    )
    .map_err(|e| format!("the identity token's claims are not JSON: {e}"))?;
    claims["sub"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| "the identity token has no sub claim".to_owned())
}

/// The identity token, from the configured or the first available provider.
pub async fn identity_token(config: &X509Config) -> Result<String, KeylessError> {
    let file = config
        .identity_token_file
        .clone()
        .unwrap_or_else(|| DEFAULT_TOKEN_FILE.to_owned());
    let from_file = || async {
        tokio::fs::read_to_string(&file)
            .await
            .map(|t| t.trim().to_owned())
            .map_err(|e| KeylessError::Token(format!("reading the identity token {file}: {e}")))
    };
    let from_env = || {
        std::env::var("SIGSTORE_ID_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| KeylessError::Token("SIGSTORE_ID_TOKEN is not set".to_owned()))
    };
    match config.fulcio_provider {
        Some(FulcioProvider::Filesystem) => from_file().await,
        Some(FulcioProvider::EnvVar) => from_env(),
        // cosign's spiffe provider: a JWT-SVID for audience `sigstore` from the Workload API.
        Some(FulcioProvider::Spiffe) => {
            let socket = std::env::var("SPIFFE_ENDPOINT_SOCKET").map_err(|_| {
                KeylessError::Token(
                    "the spiffe provider needs SPIFFE_ENDPOINT_SOCKET (spec.spiffe)".to_owned(),
                )
            })?;
            crate::signing::keyless::spiffe::fetch_jwt_svid(&socket, "sigstore")
                .await
                .map(|(_, token)| token)
                .map_err(|e| KeylessError::Token(e.to_string()))
        }
        Some(other) => Err(KeylessError::Token(format!(
            "signers.x509.fulcio.provider {} is not implemented by this signer version (use filesystem, envvar or spiffe)",
            other.as_str()
        ))),
        None => match from_file().await {
            Ok(token) => Ok(token),
            Err(file_error) => from_env().map_err(|_| file_error),
        },
    }
}

/// Asks Fulcio for a certificate for a fresh key, proving possession with a signature over the
/// token's subject.
pub async fn certificate(
    http: &reqwest::Client,
    config: &X509Config,
    trusted_root: Option<&TrustedRoot>,
) -> Result<Ephemeral, KeylessError> {
    let token = identity_token(config).await?;
    let subject = subject_of(&token).map_err(KeylessError::Token)?;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &rng,
    )
    .map_err(|_| KeylessError::Key("could not generate a P-256 key".to_owned()))?;
    let key = SigningKey::from_pkcs8_der(pkcs8.as_ref()).map_err(KeylessError::Key)?;
    let proof = key
        .sign(subject.as_bytes())
        .map_err(|e| KeylessError::Key(e.to_string()))?;
    let address = config.fulcio_address.trim_end_matches('/').to_owned();
    let fulcio = |message: String| KeylessError::Fulcio {
        address: address.clone(),
        message,
    };
    let request = json!({
        "credentials": {"oidcIdentityToken": token},
        "publicKeyRequest": {
            "publicKey": {"algorithm": "ECDSA", "content": key.public_pem},
            "proofOfPossession": STANDARD.encode(proof),
        }
    });
    let response = http
        .post(format!("{address}/api/v2/signingCert"))
        .timeout(Duration::from_secs(30))
        .json(&request)
        .send()
        .await
        .map_err(|e| fulcio(e.to_string()))?;
    let status = response.status();
    // A certificate chain is a few KiB; a larger answer is refused, not read.
    let body = crate::transparency::trust::read_capped(response, 1024 * 1024)
        .await
        .map_err(&fulcio)?;
    let body: Value = serde_json::from_slice(&body).unwrap_or_default();
    if !status.is_success() {
        return Err(fulcio(format!(
            "{status}: {}",
            body["message"].as_str().unwrap_or("no details")
        )));
    }
    let certificates = body["signedCertificateEmbeddedSct"]["chain"]["certificates"]
        .as_array()
        .or_else(|| body["signedCertificateDetachedSct"]["chain"]["certificates"].as_array())
        .ok_or_else(|| fulcio("the answer holds no certificate chain".to_owned()))?;
    let chain: Vec<String> = certificates
        .iter()
        .filter_map(Value::as_str)
        .map(|pem| {
            let mut pem = pem.trim_end().to_owned();
            pem.push('\n');
            pem
        })
        .collect();
    if chain.is_empty() {
        return Err(fulcio("the certificate chain is empty".to_owned()));
    }
    let roots = match trusted_root {
        Some(root) if root.certificate_authorities.is_empty() => {
            return Err(fulcio(
                "the trusted root (sigstore.trusted-root) names no Fulcio certificate authority"
                    .to_owned(),
            ));
        }
        Some(root) => Some(root.fulcio_roots_pem()),
        None => fulcio_roots().await.map_err(&fulcio)?,
    };
    check_chain(
        &chain,
        key.public_der(),
        roots.as_deref(),
        std::time::SystemTime::now(),
    )
    .map_err(|e| fulcio(format!("the certificate it issued cannot be used: {e}")))?;
    Ok(Ephemeral { key, chain })
}

/// Without a trusted root: the Fulcio roots in `SIGSTORE_ROOT_FILE` (read for every certificate: a mounted ConfigMap
/// may change), or `None` when it is unset — said once in the log, since the chain's own root
/// is then taken as it comes.
async fn fulcio_roots() -> Result<Option<String>, String> {
    static UNPINNED: std::sync::Once = std::sync::Once::new();
    let Some(path) = std::env::var_os("SIGSTORE_ROOT_FILE").filter(|p| !p.is_empty()) else {
        UNPINNED.call_once(|| {
            tracing::warn!("SIGSTORE_ROOT_FILE is not set: Fulcio certificates are checked against the root Fulcio sends, not a pinned one");
        });
        return Ok(None);
    };
    tokio::fs::read_to_string(&path)
        .await
        .map(Some)
        .map_err(|e| {
            format!(
                "reading the trusted roots SIGSTORE_ROOT_FILE={}: {e}",
                path.to_string_lossy()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &Value) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(b"{\"alg\":\"ES256\"}"),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    #[test]
    fn the_subject_comes_from_the_token_claims() {
        let token = jwt(&json!({"sub": "system:serviceaccount:ns:signet-signer"}));
        assert_eq!(
            subject_of(&token).unwrap(),
            "system:serviceaccount:ns:signet-signer"
        );
        assert!(
            subject_of(&jwt(&json!({"iss": "x"})))
                .unwrap_err()
                .contains("no sub")
        );
        assert!(subject_of("not-a-jwt").is_err());
    }

    #[tokio::test]
    async fn unimplemented_providers_are_named_and_a_missing_file_says_which() {
        let mut config = signet_config::SignerConfig::default().x509;
        config.fulcio_provider = Some(FulcioProvider::GithubActions);
        let err = identity_token(&config).await.unwrap_err().to_string();
        assert!(
            err.contains("github-actions") && err.contains("filesystem"),
            "{err}"
        );
        config.fulcio_provider = Some(FulcioProvider::Filesystem);
        config.identity_token_file = Some("/nonexistent/token".to_owned());
        let err = identity_token(&config).await.unwrap_err().to_string();
        assert!(err.contains("/nonexistent/token"), "{err}");
    }
}
