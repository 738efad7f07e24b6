//! `azurekms://<vault host>/<key>[/<version>]`: an Azure Key Vault key, over Key Vault's REST
//! API (`api-version=7.4`) with a Microsoft Entra token (no SDK: see docs/kms.md for why).
//!
//! As sigstore's provider: the vault is `https://<vault host>/`; without a version the latest
//! one signs (its key metadata, and so the version, is re-read after `SIGNET_KMS_KEY_TTL`,
//! default five minutes, so a rotated key is picked up without a restart); EC keys sign with ES256/ES384/ES512 by curve,
//! RSA keys with RS256/384/512 by size, over the matching SHA-2 digest; Key Vault's raw
//! `r || s` becomes the DER cosign verifies.
//!
//! Credentials, as the Azure SDKs' `DefaultAzureCredential` finds them in a pod:
//! - workload identity, when `AZURE_FEDERATED_TOKEN_FILE` is set: `AZURE_CLIENT_ID`,
//!   `AZURE_TENANT_ID`, the token file (re-read at each exchange) and `AZURE_AUTHORITY_HOST`
//!   (default `https://login.microsoftonline.com/`), exchanged for a token with the
//!   client-credentials grant and a JWT client assertion;
//! - otherwise managed identity (the node's, or a user-assigned one by `AZURE_CLIENT_ID`) from
//!   the instance metadata endpoint (`AZURE_POD_IDENTITY_AUTHORITY_HOST`, as azidentity reads
//!   it, default `http://169.254.169.254`), with the `Metadata: true` header.
//!
//! The token's audience follows the vault's host: `https://vault.azure.net` for
//! `*.vault.azure.net`, `https://managedhsm.azure.net` for a Managed HSM, and the sovereign
//! clouds' suffixes alike (`*.vault.azure.cn`, `*.vault.usgovcloudapi.net`, …).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::common::{Expiring, Named, bearer_json, http_client, key_deadline, renew_at, required};
use super::der::{ecdsa_raw_to_der, spki_ec, spki_rsa};
use super::{BoxFuture, KmsError, RemoteSigner};
use signet_config::KmsConfig;

const API_VERSION: &str = "7.4";
/// The audience of public Azure's Key Vault, for a vault host that names no cloud (an IP).
const PUBLIC_VAULT: &str = "https://vault.azure.net";

/// The resource a token for `host`'s vault is for: the host without its first label when the
/// rest is a Key Vault or Managed HSM domain (`signet.vault.azure.cn` → `https://vault.azure.cn`),
/// else public Azure's.
fn resource(host: &str) -> String {
    let host = host.split(':').next().unwrap_or(host);
    match host.split_once('.') {
        Some((_, domain))
            if (domain.starts_with("vault.") || domain.starts_with("managedhsm."))
                && domain.split('.').count() >= 3 =>
        {
            format!("https://{domain}")
        }
        _ => PUBLIC_VAULT.to_owned(),
    }
}

/// Where the pod's Entra token comes from.
#[derive(Debug)]
enum Credential {
    Workload {
        client_id: String,
        tenant_id: String,
        token_file: String,
        authority: String,
    },
    Managed {
        client_id: Option<String>,
        endpoint: String,
    },
}

#[derive(Clone)]
struct KeyInfo {
    /// The version in force (from the key's `kid`).
    version: String,
    public_der: Vec<u8>,
    algorithm: &'static str,
    ec: bool,
}

/// A Key Vault key and a client for its vault.
pub struct Azure {
    named: Named,
    vault: String,
    key: String,
    version: Option<String>,
    /// `https://vault.azure.net` or the vault's cloud's.
    resource: String,
    credential: Credential,
    http: reqwest::Client,
    token: Expiring<String>,
    info: Expiring<KeyInfo>,
    /// The version that signed at the last read, to notice a rotation.
    last_version: std::sync::Mutex<Option<String>>,
}

impl std::fmt::Debug for Azure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Azure")
            .field("uri", &self.named.0)
            .field("vault", &self.vault)
            .finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `(vault host, key, version)` from an `azurekms://` URI.
pub fn parse_uri(uri: &str) -> Result<(String, String, Option<String>), String> {
    let usage = "expected azurekms://<vault host>/<key>[/<version>]";
    let rest = uri.strip_prefix("azurekms://").ok_or(usage)?;
    let parts: Vec<&str> = rest.split('/').collect();
    let valid_name =
        |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    match parts.as_slice() {
        [host, key] if !host.is_empty() && valid_name(key) => {
            Ok(((*host).to_owned(), (*key).to_owned(), None))
        }
        [host, key, version]
            if !host.is_empty()
                && valid_name(key)
                && version
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) =>
        {
            Ok((
                (*host).to_owned(),
                (*key).to_owned(),
                (!version.is_empty()).then(|| (*version).to_owned()),
            ))
        }
        _ => Err(usage.to_owned()),
    }
}

impl Azure {
    pub fn from_config(config: &KmsConfig) -> Result<Self, KmsError> {
        let named = Named(config.kmsref.clone().unwrap_or_default());
        let bad = |message: String| named.config(message);
        let (host, key, version) = parse_uri(&named.0).map_err(&bad)?;
        let need = |name: &str| {
            env(name).ok_or_else(|| {
                bad(format!(
                    "{name} is not set: Azure workload identity needs AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE (spec.identity.azure sets them)"
                ))
            })
        };
        let http = http_client(&named)?;
        let credential = if let Some(token_file) = env("AZURE_FEDERATED_TOKEN_FILE") {
            let mut authority = env("AZURE_AUTHORITY_HOST")
                .unwrap_or_else(|| "https://login.microsoftonline.com/".to_owned());
            if !authority.ends_with('/') {
                authority.push('/');
            }
            Credential::Workload {
                client_id: need("AZURE_CLIENT_ID")?,
                tenant_id: need("AZURE_TENANT_ID")?,
                token_file,
                authority,
            }
        } else {
            Credential::Managed {
                client_id: env("AZURE_CLIENT_ID"),
                endpoint: env("AZURE_POD_IDENTITY_AUTHORITY_HOST")
                    .unwrap_or_else(|| "http://169.254.169.254".to_owned())
                    .trim_end_matches('/')
                    .to_owned(),
            }
        };
        Ok(Self {
            vault: format!("https://{host}"),
            resource: resource(&host),
            key,
            version,
            credential,
            http,
            token: Expiring::default(),
            info: Expiring::default(),
            last_version: std::sync::Mutex::default(),
            named,
        })
    }

    /// An access token for the vault, cached until shortly before it expires.
    async fn token(&self) -> Result<String, KmsError> {
        if let Some(token) = self.token.get() {
            return Ok(token);
        }
        let (token, lifetime) = match &self.credential {
            Credential::Workload {
                client_id,
                tenant_id,
                token_file,
                authority,
            } => {
                self.workload_token(client_id, tenant_id, token_file, authority)
                    .await?
            }
            Credential::Managed {
                client_id,
                endpoint,
            } => self.managed_token(client_id.as_deref(), endpoint).await?,
        };
        self.token.set(token.clone(), Some(renew_at(lifetime)));
        Ok(token)
    }

    /// The federated token exchanged with the client-credentials grant and a JWT client
    /// assertion.
    async fn workload_token(
        &self,
        client_id: &str,
        tenant_id: &str,
        token_file: &str,
        authority: &str,
    ) -> Result<(String, u64), KmsError> {
        let assertion = tokio::fs::read_to_string(token_file).await.map_err(|e| {
            self.named.auth(format!(
                "reading AZURE_FEDERATED_TOKEN_FILE {token_file}: {e}"
            ))
        })?;
        let url = format!("{authority}{tenant_id}/oauth2/v2.0/token");
        let scope = format!("{}/.default", self.resource);
        let response = self
            .http
            .post(&url)
            .form(&[
                ("client_id", client_id),
                ("client_assertion", assertion.trim()),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("grant_type", "client_credentials"),
                ("scope", &scope),
            ])
            .send()
            .await
            .map_err(|e| self.named.auth(format!("token request to {url}: {e}")))?;
        self.token_answer(
            response,
            &format!("Microsoft Entra token for client {client_id}"),
        )
        .await
    }

    /// A managed identity's token from the instance metadata endpoint.
    async fn managed_token(
        &self,
        client_id: Option<&str>,
        endpoint: &str,
    ) -> Result<(String, u64), KmsError> {
        let url = format!("{endpoint}/metadata/identity/oauth2/token");
        let mut query = vec![
            ("api-version", "2018-02-01"),
            ("resource", self.resource.as_str()),
        ];
        if let Some(client_id) = client_id {
            query.push(("client_id", client_id));
        }
        let response = self
            .http
            .get(&url)
            .query(&query)
            .header("Metadata", "true")
            .send()
            .await
            .map_err(|e| {
                self.named
                    .auth(format!("managed identity token from {url}: {e}"))
            })?;
        let what = client_id.map_or_else(
            || "managed identity token (the node's identity)".to_owned(),
            |id| format!("managed identity token for client {id}"),
        );
        self.token_answer(response, &what).await
    }

    /// `(access_token, lifetime in seconds)` from a token endpoint's answer; `expires_in` is a
    /// number from Entra and a string from the metadata endpoint.
    async fn token_answer(
        &self,
        response: reqwest::Response,
        what: &str,
    ) -> Result<(String, u64), KmsError> {
        let status = response.status();
        let body: Value = crate::bodies::json_capped(response, crate::bodies::API_ANSWER_LIMIT)
            .await
            .map_err(|e| self.named.auth(format!("{what}: {e}")))?;
        if !status.is_success() {
            return Err(self.named.auth(format!(
                "{what}: {status}: {}",
                body["error_description"]
                    .as_str()
                    .or_else(|| body["error"].as_str())
                    .unwrap_or("no details")
            )));
        }
        let token = body["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                self.named
                    .auth(format!("{what}: answer without access_token"))
            })?
            .to_owned();
        let lifetime = body["expires_in"]
            .as_u64()
            .or_else(|| body["expires_in"].as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(300);
        Ok((token, lifetime))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, KmsError> {
        let token = self.token().await?;
        let url = format!("{}/{path}?api-version={API_VERSION}", self.vault);
        let answer = bearer_json(&self.named, &self.http, (method, &url, path), &token, body).await;
        if let Err(KmsError::Auth { .. }) = answer {
            self.token.clear();
        }
        answer
    }

    async fn key_info(&self) -> Result<KeyInfo, KmsError> {
        if let Some(info) = self.info.get() {
            return Ok(info);
        }
        let path = match &self.version {
            Some(version) => format!("keys/{}/{version}", self.key),
            None => format!("keys/{}", self.key),
        };
        let answer = self.call(reqwest::Method::GET, &path, None).await?;
        let jwk = &answer["key"];
        let part = |name: &str| {
            URL_SAFE_NO_PAD
                .decode(jwk[name].as_str().unwrap_or_default().trim_end_matches('='))
                .map_err(|e| self.named.remote(format!("key {name}: {e}")))
        };
        let kty = jwk["kty"].as_str().unwrap_or_default();
        let (public_der, algorithm, ec) = match kty {
            "EC" | "EC-HSM" => {
                let crv = jwk["crv"].as_str().unwrap_or_default();
                let der =
                    spki_ec(crv, &part("x")?, &part("y")?).map_err(|e| self.named.remote(e))?;
                let alg = if crv == "P-384" { "ES384" } else { "ES256" };
                (der, alg, true)
            }
            "RSA" | "RSA-HSM" => {
                let n = part("n")?;
                let alg = match n.iter().skip_while(|b| **b == 0).count() {
                    384 => "RS384",
                    512 => "RS512",
                    _ => "RS256",
                };
                let der = spki_rsa(&n, &part("e")?).map_err(|e| self.named.remote(e))?;
                (der, alg, false)
            }
            other => {
                return Err(self
                    .named
                    .remote(format!("key type {other:?} cannot sign for cosign")));
            }
        };
        let version = jwk["kid"]
            .as_str()
            .and_then(|kid| kid.rsplit('/').next())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| self.named.remote("the key has no kid"))?
            .to_owned();
        if self.version.is_none()
            && let Ok(mut last) = self.last_version.lock()
        {
            if let Some(before) = last.as_deref().filter(|before| *before != version) {
                super::key_changed(&self.named.0, before, &version);
            }
            *last = Some(version.clone());
        }
        let info = KeyInfo {
            version,
            public_der,
            algorithm,
            ec,
        };
        self.info.set(info.clone(), Some(key_deadline()));
        Ok(info)
    }
}

fn digest(algorithm: &str, message: &[u8]) -> Vec<u8> {
    match &algorithm[2..] {
        "384" => Sha384::digest(message).to_vec(),
        "512" => Sha512::digest(message).to_vec(),
        _ => Sha256::digest(message).to_vec(),
    }
}

impl RemoteSigner for Azure {
    fn uri(&self) -> &str {
        &self.named.0
    }

    fn sign<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, KmsError>> {
        Box::pin(async move {
            let info = self.key_info().await?;
            let value = URL_SAFE_NO_PAD.encode(digest(info.algorithm, message));
            let answer = self
                .call(
                    reqwest::Method::POST,
                    &format!("keys/{}/{}/sign", self.key, info.version),
                    Some(&json!({"alg": info.algorithm, "value": value})),
                )
                .await?;
            let value =
                required(&answer, "/value").map_err(|e| self.named.remote(format!("sign: {e}")))?;
            let signature = URL_SAFE_NO_PAD
                .decode(value.trim_end_matches('='))
                .map_err(|e| self.named.remote(format!("sign: {e}")))?;
            if info.ec {
                ecdsa_raw_to_der(&signature).map_err(|e| self.named.remote(e))
            } else {
                Ok(signature)
            }
        })
    }

    fn public_der(&self) -> BoxFuture<'_, Result<Vec<u8>, KmsError>> {
        Box::pin(async move { Ok(self.key_info().await?.public_der) })
    }

    fn forget_public_key(&self) {
        self.info.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_for_the_vaults_cloud() {
        assert_eq!(
            resource("signet.vault.azure.net"),
            "https://vault.azure.net"
        );
        assert_eq!(resource("signet.vault.azure.cn"), "https://vault.azure.cn");
        assert_eq!(
            resource("signet.vault.usgovcloudapi.net"),
            "https://vault.usgovcloudapi.net"
        );
        assert_eq!(
            resource("hsm1.managedhsm.azure.net"),
            "https://managedhsm.azure.net"
        );
        assert_eq!(resource("127.0.0.1:8443"), "https://vault.azure.net");
        assert_eq!(resource("vault.example"), "https://vault.azure.net");
    }

    #[test]
    fn uris_name_the_vault_key_and_optional_version() {
        assert_eq!(
            parse_uri("azurekms://signet.vault.azure.net/signing").unwrap(),
            (
                "signet.vault.azure.net".to_owned(),
                "signing".to_owned(),
                None
            )
        );
        assert_eq!(
            parse_uri("azurekms://127.0.0.1:8443/signing/0a1b2c")
                .unwrap()
                .2,
            Some("0a1b2c".to_owned())
        );
        assert!(parse_uri("azurekms://signet.vault.azure.net/").is_err());
        assert!(parse_uri("azurekms://signet.vault.azure.net/a/b/c").is_err());
        assert!(parse_uri("azurekms://v/key/UPPER").is_err());
    }

    #[test]
    fn digests_follow_the_algorithm() {
        assert_eq!(digest("ES256", b"x").len(), 32);
        assert_eq!(digest("RS384", b"x").len(), 48);
        assert_eq!(digest("RS512", b"x").len(), 64);
    }
}
