//! Google credentials as application default credentials find them in a pod:
//! `GOOGLE_APPLICATION_CREDENTIALS` naming an `external_account` configuration (workload
//! identity federation: the projected token, re-read at each exchange, is exchanged at STS,
//! then a service account impersonated if configured — what the operator renders outside
//! GKE), else the metadata server (`GCE_METADATA_HOST`, default `metadata.google.internal`;
//! GKE's workload identity). Service account key files are refused on purpose: a long-lived
//! key is what workload identity exists to avoid.
//!
//! The subject token comes from `credential_source.file` (the projected token) or
//! `credential_source.url` (with its `headers`), as text or JSON (`format`); the
//! impersonated token lives `service_account_impersonation.token_lifetime_seconds` (default
//! 3600) and is renewed by the answer's `expireTime`; `universe_domain` (default
//! `googleapis.com`, or `GOOGLE_CLOUD_UNIVERSE_DOMAIN`) names the endpoints of a sovereign
//! universe ([`GoogleAuth::endpoint`]). google-cloud-auth was weighed and not taken: see
//! docs/kms.md.

use serde_json::{Value, json};

use super::env;
use crate::signing::kms::KmsError;
use crate::signing::kms::common::{Expiring, Named, http_client, renew_at};

/// The OAuth scope every token is asked for (Cloud KMS, Cloud Storage, Firestore, Container
/// Analysis all accept it; what the identity may do is its IAM roles').
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// CRC32C (Castagnoli), as Cloud KMS and Cloud Storage checksum what they are sent and answer.
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

#[derive(Clone, Debug)]
enum Source {
    ExternalAccount(Value),
    Metadata(String),
}

/// Access tokens for Google APIs, renewed before they expire.
pub struct GoogleAuth {
    named: Named,
    source: Source,
    /// `googleapis.com`, or the credential configuration's `universe_domain`.
    universe: String,
    http: reqwest::Client,
    token: Expiring<String>,
    /// Held while a token is obtained, so that concurrent calls (a run's objects are written
    /// at once) wait for one exchange instead of each making their own.
    refreshing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for GoogleAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleAuth")
            .field("named", &self.named.0)
            .finish_non_exhaustive()
    }
}

impl GoogleAuth {
    /// The credentials of the environment; errors name what is wrong with them.
    pub fn from_env(named: Named) -> Result<Self, String> {
        let source = match env("GOOGLE_APPLICATION_CREDENTIALS") {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("GOOGLE_APPLICATION_CREDENTIALS {path}: {e}"))?;
                let file: Value = serde_json::from_str(&text)
                    .map_err(|e| format!("GOOGLE_APPLICATION_CREDENTIALS {path}: {e}"))?;
                match file["type"].as_str() {
                    Some("external_account") => Source::ExternalAccount(file),
                    other => {
                        return Err(format!(
                            "GOOGLE_APPLICATION_CREDENTIALS {path} is of type {other:?}; only external_account (workload identity federation) is supported: a service account key is the long-lived secret workload identity replaces"
                        ));
                    }
                }
            }
            None => Source::Metadata(
                env("GCE_METADATA_HOST").unwrap_or_else(|| "metadata.google.internal".to_owned()),
            ),
        };
        let universe = match &source {
            Source::ExternalAccount(file) => file["universe_domain"].as_str().map(str::to_owned),
            Source::Metadata(_) => None,
        }
        .or_else(|| env("GOOGLE_CLOUD_UNIVERSE_DOMAIN"))
        .unwrap_or_else(|| "googleapis.com".to_owned());
        if universe.is_empty()
            || !universe
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            return Err(format!("universe_domain {universe:?} is not a domain"));
        }
        let http = http_client(&named).map_err(|e| e.to_string())?;
        Ok(Self {
            named,
            source,
            universe,
            http,
            token: Expiring::default(),
            refreshing: tokio::sync::Mutex::default(),
        })
    }

    /// `https://<service>.<universe domain>`: a Google API's endpoint in the credentials'
    /// universe (`cloudkms`, `storage`, `firestore`, `containeranalysis`).
    pub fn endpoint(&self, service: &str) -> String {
        format!("https://{service}.{}", self.universe)
    }

    /// The HTTP client the token was obtained with (TLS verified, timeouts), for the API calls.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Forgets the token (after the API refused it).
    pub fn clear(&self) {
        self.token.clear();
    }

    /// Sends `request` (made with [`Self::http`]) with a token; the status and the JSON answer
    /// (`Null` when it is not JSON or larger than 1 MiB: no answer of these APIs is). A refused
    /// token (401, 403) is forgotten, so the next call gets a new one. `what` names the call in
    /// errors.
    pub async fn send(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, Value), String> {
        let token = self.token().await.map_err(|e| e.to_string())?;
        let response = request
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        let status = response.status();
        let answer = crate::bodies::json_capped(response, crate::bodies::API_ANSWER_LIMIT)
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            self.clear();
        }
        Ok((status, answer))
    }

    /// [`Self::send`] for a call that must succeed: a failure is an error with the API's
    /// `error.message`.
    pub async fn call(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, String> {
        let (status, answer) = self.send(what, request).await?;
        if !status.is_success() {
            return Err(format!(
                "{what}: {status}: {}",
                answer["error"]["message"].as_str().unwrap_or("no details")
            ));
        }
        Ok(answer)
    }

    async fn json(&self, what: &str, request: reqwest::RequestBuilder) -> Result<Value, KmsError> {
        let response = request
            .send()
            .await
            .map_err(|e| self.named.auth(format!("{what}: {e}")))?;
        let status = response.status();
        let body: Value = crate::bodies::json_capped(response, crate::bodies::API_ANSWER_LIMIT)
            .await
            .map_err(|e| self.named.auth(format!("{what}: {e}")))?;
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
    pub async fn token(&self) -> Result<String, KmsError> {
        if let Some(token) = self.token.get() {
            return Ok(token);
        }
        let _one_at_a_time = self.refreshing.lock().await;
        // Another call may have obtained one while this one waited.
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

    /// The subject token named by `credential_source`: a file, or a URL (with headers).
    async fn subject_token(&self, source: &Value) -> Result<String, KmsError> {
        let raw = if let Some(file) = source["file"].as_str() {
            tokio::fs::read_to_string(file).await.map_err(|e| {
                self.named
                    .auth(format!("reading the subject token {file}: {e}"))
            })?
        } else if let Some(url) = source["url"].as_str() {
            let mut request = self.http.get(url);
            for (name, value) in source["headers"].as_object().into_iter().flatten() {
                if let Some(value) = value.as_str() {
                    request = request.header(name.as_str(), value);
                }
            }
            let response = request
                .send()
                .await
                .map_err(|e| self.named.auth(format!("subject token from {url}: {e}")))?;
            let status = response.status();
            if !status.is_success() {
                return Err(self
                    .named
                    .auth(format!("subject token from {url}: {status}")));
            }
            response
                .text()
                .await
                .map_err(|e| self.named.auth(format!("subject token from {url}: {e}")))?
        } else {
            return Err(self
                .named
                .auth("external_account without credential_source.file or credential_source.url"));
        };
        let token = match source["format"]["type"].as_str() {
            Some("json") => {
                let field = source["format"]["subject_token_field_name"]
                    .as_str()
                    .unwrap_or_default();
                serde_json::from_str::<Value>(&raw).unwrap_or_default()[field]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            }
            _ => raw.trim().to_owned(),
        };
        if token.is_empty() {
            return Err(self.named.auth("the subject token is empty"));
        }
        Ok(token)
    }

    async fn exchange(&self, config: &Value) -> Result<(String, u64), KmsError> {
        let subject_token = self.subject_token(&config["credential_source"]).await?;
        let default_sts = format!("{}/v1/token", self.endpoint("sts"));
        let token_url = config["token_url"].as_str().unwrap_or(&default_sts);
        let audience = config["audience"]
            .as_str()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| self.named.auth("external_account without audience"))?;
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
        let federated = sts["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                self.named
                    .auth("STS token exchange: the answer has no access_token")
            })?
            .to_owned();
        let Some(impersonate) = config["service_account_impersonation_url"].as_str() else {
            return Ok((federated, sts["expires_in"].as_u64().unwrap_or(300)));
        };
        let lifetime = config["service_account_impersonation"]["token_lifetime_seconds"]
            .as_u64()
            .unwrap_or(3600);
        let body = self
            .json(
                "service account impersonation",
                self.http
                    .post(impersonate)
                    .bearer_auth(federated)
                    .json(&json!({"scope": [SCOPE], "lifetime": format!("{lifetime}s")})),
            )
            .await?;
        let token = body["accessToken"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                self.named
                    .auth("service account impersonation: the answer has no accessToken")
            })?
            .to_owned();
        Ok((token, expires_in(&body["expireTime"], lifetime)))
    }
}

/// Seconds until an RFC 3339 `expireTime`, else `asked` (an answer without one, or unparsable).
fn expires_in(expire_time: &Value, asked: u64) -> u64 {
    expire_time
        .as_str()
        .and_then(|at| humantime::parse_rfc3339_weak(at.trim_end_matches('Z')).ok())
        .and_then(|at| at.duration_since(std::time::SystemTime::now()).ok())
        .map_or(asked, |left| left.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impersonated_tokens_live_until_their_expire_time() {
        let in_ten_minutes = humantime::format_rfc3339(
            std::time::SystemTime::now() + std::time::Duration::from_secs(600),
        )
        .to_string();
        let left = expires_in(&Value::String(in_ten_minutes), 3600);
        assert!((595..=600).contains(&left), "{left}");
        assert_eq!(expires_in(&Value::Null, 1800), 1800);
        assert_eq!(expires_in(&Value::String("soon".into()), 900), 900);
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // RFC 3720's CRC32C check value of "123456789".
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }
}
