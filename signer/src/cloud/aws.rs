//! AWS credentials as the SDKs' default chain finds them in a pod — `AWS_ROLE_ARN` with
//! `AWS_WEB_IDENTITY_TOKEN_FILE` (EKS IRSA and Pod Identity webhooks inject these; the token is
//! re-read at each exchange) through STS `AssumeRoleWithWebIdentity`, else
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN` — and one JSON API call
//! signed with Signature Version 4 (KMS, DynamoDB). Issue 18 replaces this with `aws-config`.

use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::env;
use crate::signing::kms::KmsError;
use crate::signing::kms::common::{Expiring, Named, http_client};
use crate::signing::kms::sigv4::{Credentials, amz_timestamp, sign_v4, uri_encode};

#[derive(Clone, Debug)]
enum Source {
    Static,
    WebIdentity {
        role_arn: String,
        token_file: String,
        session_name: String,
        sts_endpoint: String,
    },
}

/// One AWS service's JSON API at `endpoint`, with the pod's credentials.
pub struct AwsApi {
    named: Named,
    service: &'static str,
    region: String,
    endpoint: String,
    source: Source,
    http: reqwest::Client,
    credentials: Expiring<Credentials>,
}

impl std::fmt::Debug for AwsApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsApi")
            .field("named", &self.named.0)
            .field("service", &self.service)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// The region of the environment: `AWS_REGION`, else `AWS_DEFAULT_REGION`.
pub fn env_region() -> Option<String> {
    env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION"))
}

/// A service's endpoint as the SDKs choose it: `AWS_ENDPOINT_URL_<SERVICE>`, else
/// `AWS_ENDPOINT_URL`, else `https://<service>.<region>.amazonaws.com`.
pub fn env_endpoint(service_variable: &str, service: &str, region: &str) -> String {
    env(&format!("AWS_ENDPOINT_URL_{service_variable}"))
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|| format!("https://{service}.{region}.amazonaws.com"))
        .trim_end_matches('/')
        .to_owned()
}

impl AwsApi {
    /// A client of `service` (the SigV4 signing name: `kms`, `dynamodb`) in `region` at
    /// `endpoint`; errors name what is missing from the environment.
    pub fn new(
        named: Named,
        service: &'static str,
        region: String,
        endpoint: &str,
    ) -> Result<Self, String> {
        let source = match (env("AWS_ROLE_ARN"), env("AWS_WEB_IDENTITY_TOKEN_FILE")) {
            (Some(role_arn), Some(token_file)) => Source::WebIdentity {
                role_arn,
                token_file,
                session_name: env("AWS_ROLE_SESSION_NAME")
                    .unwrap_or_else(|| "signet-signer".to_owned()),
                sts_endpoint: env_endpoint("STS", "sts", &region),
            },
            _ if env("AWS_ACCESS_KEY_ID").is_some() && env("AWS_SECRET_ACCESS_KEY").is_some() => {
                Source::Static
            }
            _ => {
                return Err(
                    "no AWS credentials: set AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE (workload identity), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                        .to_owned(),
                );
            }
        };
        let http = http_client(&named).map_err(|e| e.to_string())?;
        Ok(Self {
            named,
            service,
            region,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            source,
            http,
            credentials: Expiring::default(),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    async fn credentials(&self) -> Result<Credentials, KmsError> {
        if let Some(credentials) = self.credentials.get() {
            return Ok(credentials);
        }
        let (credentials, expires) = match &self.source {
            Source::Static => (
                Credentials {
                    access_key_id: env("AWS_ACCESS_KEY_ID").unwrap_or_default(),
                    secret_access_key: env("AWS_SECRET_ACCESS_KEY").unwrap_or_default(),
                    session_token: env("AWS_SESSION_TOKEN"),
                },
                // Re-read the environment now and then is pointless; it cannot change.
                None,
            ),
            Source::WebIdentity {
                role_arn,
                token_file,
                session_name,
                sts_endpoint,
            } => {
                let (credentials, lifetime) = self
                    .assume_role(sts_endpoint, role_arn, token_file, session_name)
                    .await?;
                // Exchange again well before STS's expiry.
                (credentials, Some(Instant::now() + lifetime.mul_f32(0.8)))
            }
        };
        self.credentials.set(credentials.clone(), expires);
        Ok(credentials)
    }

    /// STS `AssumeRoleWithWebIdentity` (unsigned; the web identity token is the proof).
    async fn assume_role(
        &self,
        sts: &str,
        role_arn: &str,
        token_file: &str,
        session_name: &str,
    ) -> Result<(Credentials, Duration), KmsError> {
        let token = tokio::fs::read_to_string(token_file).await.map_err(|e| {
            self.named.auth(format!(
                "reading AWS_WEB_IDENTITY_TOKEN_FILE {token_file}: {e}"
            ))
        })?;
        let form = [
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", role_arn),
            ("RoleSessionName", session_name),
            ("WebIdentityToken", token.trim()),
            ("DurationSeconds", "3600"),
        ];
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", uri_encode(v, true)))
            .collect::<Vec<_>>()
            .join("&");
        let response = self
            .http
            .post(format!("{sts}/"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| self.named.auth(format!("STS {sts}: {e}")))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(self.named.auth(format!(
                "STS AssumeRoleWithWebIdentity for {role_arn}: {status}: {}",
                xml_field(&text, "Message").unwrap_or("no details")
            )));
        }
        let field = |name| {
            xml_field(&text, name)
                .map(str::to_owned)
                .ok_or_else(|| self.named.auth(format!("STS answer without {name}")))
        };
        Ok((
            Credentials {
                access_key_id: field("AccessKeyId")?,
                secret_access_key: field("SecretAccessKey")?,
                session_token: Some(field("SessionToken")?),
            },
            lifetime(&text, SystemTime::now()),
        ))
    }

    /// One JSON API call (`X-Amz-Target: <target>`), signed. Credentials the service refuses
    /// are `Auth` (and dropped, so the next call exchanges again); other failures `Remote`
    /// with the service's error type and message.
    pub async fn call(
        &self,
        content_type: &str,
        target: &str,
        body: &Value,
    ) -> Result<Value, KmsError> {
        let credentials = self.credentials().await?;
        let payload = serde_json::to_vec(body).map_err(|e| self.named.remote(e))?;
        let url = format!("{}/", self.endpoint);
        let host = reqwest::Url::parse(&url)
            .ok()
            .and_then(|u| {
                u.host_str().map(|h| {
                    u.port()
                        .map_or_else(|| h.to_owned(), |p| format!("{h}:{p}"))
                })
            })
            .ok_or_else(|| self.named.remote(format!("endpoint {url} has no host")))?;
        let (amz_date, _) = amz_timestamp(SystemTime::now());
        let mut headers = vec![
            ("content-type".to_owned(), content_type.to_owned()),
            ("host".to_owned(), host),
            ("x-amz-date".to_owned(), amz_date.clone()),
            ("x-amz-target".to_owned(), target.to_owned()),
        ];
        if let Some(token) = &credentials.session_token {
            headers.push(("x-amz-security-token".to_owned(), token.clone()));
        }
        let authorization = sign_v4(
            &credentials,
            &self.region,
            self.service,
            "POST",
            "/",
            &headers,
            &payload,
            &amz_date,
        );
        let mut request = self.http.post(&url).body(payload);
        for (name, value) in &headers {
            if name != "host" {
                request = request.header(name.as_str(), value.as_str());
            }
        }
        let action = target.rsplit('.').next().unwrap_or(target);
        let response = request
            .header("authorization", authorization)
            .send()
            .await
            .map_err(|e| self.named.remote(format!("{action}: {e}")))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or_default();
        if status.is_success() {
            return Ok(answer);
        }
        let kind = answer["__type"]
            .as_str()
            .map_or("error", |t| t.rsplit('#').next().unwrap_or(t));
        let message = answer["message"]
            .as_str()
            .or_else(|| answer["Message"].as_str())
            .unwrap_or("no details");
        let text = format!("{action}: {status} {kind}: {message}");
        if matches!(
            kind,
            "AccessDeniedException"
                | "UnrecognizedClientException"
                | "InvalidSignatureException"
                | "ExpiredTokenException"
                | "MissingAuthenticationTokenException"
        ) {
            self.credentials.clear();
            Err(self.named.auth(text))
        } else {
            Err(self.named.remote(text))
        }
    }
}

/// How long STS's credentials live, from the answer's `Expiration` (an account may cap role
/// sessions below the hour asked for); an hour when it has none or it does not parse.
fn lifetime(answer: &str, now: SystemTime) -> Duration {
    xml_field(answer, "Expiration")
        .and_then(|at| humantime::parse_rfc3339_weak(at.trim()).ok())
        .and_then(|at| at.duration_since(now).ok())
        .unwrap_or(Duration::from_secs(3600))
}

/// The text of the first `<name>…</name>` element (STS answers are small and flat).
fn xml_field<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(&xml[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_answers_yield_their_credentials() {
        let xml = "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
                   <AccessKeyId>ASIA1</AccessKeyId><SecretAccessKey>s3cr3t</SecretAccessKey>\
                   <SessionToken>tok</SessionToken></Credentials></AssumeRoleWithWebIdentityResult>\
                   </AssumeRoleWithWebIdentityResponse>";
        assert_eq!(xml_field(xml, "AccessKeyId"), Some("ASIA1"));
        assert_eq!(xml_field(xml, "SessionToken"), Some("tok"));
        assert_eq!(xml_field(xml, "Expiration"), None);
    }

    #[test]
    fn credentials_live_as_long_as_sts_says() {
        let now = humantime::parse_rfc3339("2026-11-29T10:00:00Z").unwrap();
        let answer = "<Credentials><Expiration>2026-11-29T10:15:00Z</Expiration></Credentials>";
        assert_eq!(lifetime(answer, now), Duration::from_secs(900));
        assert_eq!(
            lifetime("<Credentials></Credentials>", now),
            Duration::from_secs(3600)
        );
        assert_eq!(
            lifetime("<Expiration>yesterday</Expiration>", now),
            Duration::from_secs(3600)
        );
    }
}
