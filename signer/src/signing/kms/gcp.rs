//! `gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K[/cryptoKeyVersions/V]`: a Cloud
//! KMS asymmetric signing key, over Cloud KMS's REST API (no SDK).
//!
//! As sigstore's provider: without a version, the newest enabled version signs (listed again
//! after `SIGNET_KMS_KEY_TTL`, default five minutes, so a new version is picked up without a
//! restart); the digest and the signature carry CRC32C checksums that are checked both ways.
//! The endpoint is `https://cloudkms.googleapis.com/`, or gcloud's override
//! `CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDKMS`.
//!
//! Credentials, as Google's application default credentials find them in a pod:
//! `GOOGLE_APPLICATION_CREDENTIALS` naming an `external_account` configuration (workload
//! identity federation: the projected token, re-read at each exchange, is exchanged at STS,
//! then a service account impersonated if configured — what the operator renders outside
//! GKE), else the metadata server (`GCE_METADATA_HOST`, default `metadata.google.internal`;
//! GKE's workload identity). Service account key files are refused on purpose: a long-lived key
//! is what workload identity exists to avoid.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::common::{Expiring, Named, bearer_json, http_client, key_deadline, renew_at, required};
use super::{BoxFuture, KmsError, RemoteSigner, spki_from_pem};
use signet_config::KmsConfig;

const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

#[derive(Clone, Debug)]
enum Source {
    ExternalAccount(Value),
    Metadata(String),
}

#[derive(Clone)]
struct KeyInfo {
    /// Full resource name of the version that signs.
    name: String,
    public_der: Vec<u8>,
    algorithm: String,
}

/// A Cloud KMS key and a client for the API.
pub struct Gcp {
    named: Named,
    key: String,
    version: Option<String>,
    endpoint: String,
    source: Source,
    http: reqwest::Client,
    token: Expiring<String>,
    info: Expiring<KeyInfo>,
}

impl std::fmt::Debug for Gcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gcp")
            .field("uri", &self.named.0)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `(projects/…/cryptoKeys/K, version)` from a `gcpkms://` URI.
pub fn parse_uri(uri: &str) -> Result<(String, Option<String>), String> {
    let usage =
        "expected gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K[/cryptoKeyVersions/V]";
    let rest = uri.strip_prefix("gcpkms://").ok_or(usage)?;
    let parts: Vec<&str> = rest.split('/').collect();
    let named = |i: usize, word: &str| {
        parts.get(i) == Some(&word) && parts.get(i + 1).is_some_and(|v| !v.is_empty())
    };
    if !(named(0, "projects")
        && named(2, "locations")
        && named(4, "keyRings")
        && named(6, "cryptoKeys"))
    {
        return Err(usage.to_owned());
    }
    let key = parts[..8].join("/");
    match parts.len() {
        8 => Ok((key, None)),
        10 if matches!(parts[8], "cryptoKeyVersions" | "versions") && !parts[9].is_empty() => {
            Ok((key, Some(parts[9].to_owned())))
        }
        _ => Err(usage.to_owned()),
    }
}

/// CRC32C (Castagnoli), as Cloud KMS checksums requests and answers.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0x82F6_3B78 & mask);
        }
    }
    !crc
}

impl Gcp {
    pub fn from_config(config: &KmsConfig) -> Result<Self, KmsError> {
        let named = Named(config.kmsref.clone().unwrap_or_default());
        let bad = |message: String| named.config(message);
        let (key, version) = parse_uri(&named.0).map_err(&bad)?;
        let source = match env("GOOGLE_APPLICATION_CREDENTIALS") {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| bad(format!("GOOGLE_APPLICATION_CREDENTIALS {path}: {e}")))?;
                let file: Value = serde_json::from_str(&text)
                    .map_err(|e| bad(format!("GOOGLE_APPLICATION_CREDENTIALS {path}: {e}")))?;
                match file["type"].as_str() {
                    Some("external_account") => Source::ExternalAccount(file),
                    other => {
                        return Err(bad(format!(
                            "GOOGLE_APPLICATION_CREDENTIALS {path} is of type {other:?}; only external_account (workload identity federation) is supported: a service account key is the long-lived secret workload identity replaces"
                        )));
                    }
                }
            }
            None => Source::Metadata(
                env("GCE_METADATA_HOST").unwrap_or_else(|| "metadata.google.internal".to_owned()),
            ),
        };
        let http = http_client(&named)?;
        Ok(Self {
            endpoint: env("CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDKMS")
                .unwrap_or_else(|| "https://cloudkms.googleapis.com/".to_owned())
                .trim_end_matches('/')
                .trim_end_matches("/v1")
                .to_owned(),
            named,
            key,
            version,
            source,
            http,
            token: Expiring::default(),
            info: Expiring::default(),
        })
    }

    async fn json(&self, what: &str, request: reqwest::RequestBuilder) -> Result<Value, KmsError> {
        let response = request
            .send()
            .await
            .map_err(|e| self.named.auth(format!("{what}: {e}")))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            let message = body["error_description"]
                .as_str()
                .or_else(|| body["error"]["message"].as_str())
                .or_else(|| body["error"].as_str())
                .unwrap_or("no details");
            return Err(self.named.auth(format!("{what}: {status}: {message}")));
        }
        Ok(body)
    }

    /// An access token: STS exchange (+ impersonation) or the metadata server.
    async fn token(&self) -> Result<String, KmsError> {
        if let Some(token) = self.token.get() {
            return Ok(token);
        }
        let (token, lifetime) = match &self.source {
            Source::Metadata(host) => {
                let url = format!(
                    "http://{host}/computeMetadata/v1/instance/service-accounts/default/token"
                );
                let body = self
                    .json(
                        "metadata server token",
                        self.http.get(&url).header("Metadata-Flavor", "Google"),
                    )
                    .await?;
                (
                    body["access_token"].as_str().unwrap_or_default().to_owned(),
                    body["expires_in"].as_u64().unwrap_or(300),
                )
            }
            Source::ExternalAccount(config) => self.exchange(config).await?,
        };
        if token.is_empty() {
            return Err(self.named.auth("no access token in the answer"));
        }
        self.token.set(token.clone(), Some(renew_at(lifetime)));
        Ok(token)
    }

    async fn exchange(&self, config: &Value) -> Result<(String, u64), KmsError> {
        let file = config["credential_source"]["file"]
            .as_str()
            .ok_or_else(|| {
                self.named
                    .auth("external_account without credential_source.file")
            })?;
        let raw = tokio::fs::read_to_string(file).await.map_err(|e| {
            self.named
                .auth(format!("reading the subject token {file}: {e}"))
        })?;
        let subject_token = match config["credential_source"]["format"]["type"].as_str() {
            Some("json") => {
                let field = config["credential_source"]["format"]["subject_token_field_name"]
                    .as_str()
                    .unwrap_or_default();
                serde_json::from_str::<Value>(&raw).unwrap_or_default()[field]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            }
            _ => raw.trim().to_owned(),
        };
        let token_url = config["token_url"]
            .as_str()
            .unwrap_or("https://sts.googleapis.com/v1/token");
        let audience = config["audience"].as_str().unwrap_or_default();
        let subject_type = config["subject_token_type"]
            .as_str()
            .unwrap_or("urn:ietf:params:oauth:token-type:jwt");
        let sts = self
            .json(
                "STS token exchange",
                self.http.post(token_url).form(&[
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:token-exchange",
                    ),
                    ("audience", audience),
                    ("scope", SCOPE),
                    (
                        "requested_token_type",
                        "urn:ietf:params:oauth:token-type:access_token",
                    ),
                    ("subject_token", subject_token.as_str()),
                    ("subject_token_type", subject_type),
                ]),
            )
            .await?;
        let federated = sts["access_token"].as_str().unwrap_or_default().to_owned();
        let Some(impersonate) = config["service_account_impersonation_url"].as_str() else {
            return Ok((federated, sts["expires_in"].as_u64().unwrap_or(300)));
        };
        let body = self
            .json(
                "service account impersonation",
                self.http
                    .post(impersonate)
                    .bearer_auth(federated)
                    .json(&json!({"scope": [SCOPE], "lifetime": "3600s"})),
            )
            .await?;
        Ok((
            body["accessToken"].as_str().unwrap_or_default().to_owned(),
            3600,
        ))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, KmsError> {
        let token = self.token().await?;
        let url = format!("{}/v1/{path}", self.endpoint);
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
        let name = if let Some(version) = &self.version {
            format!("{}/cryptoKeyVersions/{version}", self.key)
        } else {
            let list = self
                .call(
                    reqwest::Method::GET,
                    &format!(
                        "{}/cryptoKeyVersions?filter=state%3DENABLED&orderBy=name%20desc",
                        self.key
                    ),
                    None,
                )
                .await?;
            // Newest first by number (the API orders names as strings).
            list["cryptoKeyVersions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v["name"].as_str())
                .max_by_key(|n| {
                    n.rsplit('/')
                        .next()
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                })
                .ok_or_else(|| self.named.remote("the key has no enabled version"))?
                .to_owned()
        };
        let answer = self
            .call(reqwest::Method::GET, &format!("{name}/publicKey"), None)
            .await?;
        let field = |pointer| {
            required(&answer, pointer).map_err(|e| self.named.remote(format!("publicKey: {e}")))
        };
        let public_der = spki_from_pem(field("/pem")?).map_err(|e| self.named.remote(e))?;
        let info = KeyInfo {
            name,
            public_der,
            algorithm: field("/algorithm")?.to_owned(),
        };
        self.info.set(info.clone(), Some(key_deadline()));
        Ok(info)
    }
}

/// `(field, digest)` for a Cloud KMS algorithm such as `EC_SIGN_P256_SHA256`.
fn digest(algorithm: &str, message: &[u8]) -> Result<(&'static str, Vec<u8>), String> {
    if algorithm.ends_with("SHA256") {
        Ok(("sha256", Sha256::digest(message).to_vec()))
    } else if algorithm.ends_with("SHA384") {
        Ok(("sha384", Sha384::digest(message).to_vec()))
    } else if algorithm.ends_with("SHA512") {
        Ok(("sha512", Sha512::digest(message).to_vec()))
    } else {
        Err(format!("algorithm {algorithm:?} cannot sign for cosign"))
    }
}

impl RemoteSigner for Gcp {
    fn uri(&self) -> &str {
        &self.named.0
    }

    fn sign<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, KmsError>> {
        Box::pin(async move {
            let info = self.key_info().await?;
            let (field, digest) =
                digest(&info.algorithm, message).map_err(|e| self.named.remote(e))?;
            let answer = self
                .call(
                    reqwest::Method::POST,
                    &format!("{}:asymmetricSign", info.name),
                    Some(&json!({"digest": {field: STANDARD.encode(&digest)},
                                 "digestCrc32c": crc32c(&digest).to_string()})),
                )
                .await?;
            if answer["verifiedDigestCrc32c"] != json!(true) {
                return Err(self.named.remote(
                    "the digest was corrupted in transit (verifiedDigestCrc32c is not true)",
                ));
            }
            let signature = required(&answer, "/signature")
                .map_err(|e| self.named.remote(format!("asymmetricSign: {e}")))?;
            let signature = STANDARD
                .decode(signature)
                .map_err(|e| self.named.remote(format!("asymmetricSign: {e}")))?;
            let want = answer["signatureCrc32c"]
                .as_str()
                .and_then(|v| v.parse::<u32>().ok())
                .or_else(|| {
                    answer["signatureCrc32c"]
                        .as_u64()
                        .and_then(|v| u32::try_from(v).ok())
                });
            if want != Some(crc32c(&signature)) {
                return Err(self
                    .named
                    .remote("the signature was corrupted in transit (signatureCrc32c)"));
            }
            Ok(signature)
        })
    }

    fn public_der(&self) -> BoxFuture<'_, Result<Vec<u8>, KmsError>> {
        Box::pin(async move { Ok(self.key_info().await?.public_der) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // RFC 3720's CRC32C check value of "123456789".
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn uris_name_a_key_and_an_optional_version() {
        let key = "projects/p/locations/global/keyRings/r/cryptoKeys/k";
        assert_eq!(
            parse_uri(&format!("gcpkms://{key}")).unwrap(),
            (key.to_owned(), None)
        );
        assert_eq!(
            parse_uri(&format!("gcpkms://{key}/cryptoKeyVersions/3"))
                .unwrap()
                .1,
            Some("3".to_owned())
        );
        assert_eq!(
            parse_uri(&format!("gcpkms://{key}/versions/2")).unwrap().1,
            Some("2".to_owned())
        );
        assert!(parse_uri("gcpkms://projects/p/keyRings/r/cryptoKeys/k").is_err());
        assert!(parse_uri(&format!("gcpkms://{key}/cryptoKeyVersions/")).is_err());
    }

    #[test]
    fn digests_follow_the_algorithm() {
        assert_eq!(digest("EC_SIGN_P256_SHA256", b"x").unwrap().0, "sha256");
        assert_eq!(digest("EC_SIGN_P384_SHA384", b"x").unwrap().1.len(), 48);
        assert_eq!(
            digest("RSA_SIGN_PKCS1_4096_SHA512", b"x").unwrap().0,
            "sha512"
        );
        assert!(digest("EC_SIGN_ED25519", b"x").is_err());
    }
}
