//! Google credentials as application default credentials find them in a pod:
//! `GOOGLE_APPLICATION_CREDENTIALS` naming an `external_account` configuration (workload
//! identity federation: the projected token, re-read at each exchange, is exchanged at STS,
//! then a service account impersonated if configured — what the operator renders outside
//! GKE), else the metadata server (`GCE_METADATA_HOST`, default `metadata.google.internal`;
//! GKE's workload identity). Service account key files are refused on purpose: a long-lived
//! key is what workload identity exists to avoid. Issue 18 replaces this with google-cloud-auth.

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
        let http = http_client(&named).map_err(|e| e.to_string())?;
        Ok(Self {
            named,
            source,
            http,
            token: Expiring::default(),
            refreshing: tokio::sync::Mutex::default(),
        })
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
        let body = response.bytes().await.unwrap_or_default();
        let answer = if body.len() <= 1024 * 1024 {
            serde_json::from_slice(&body).unwrap_or_default()
        } else {
            Value::Null
        };
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
}
