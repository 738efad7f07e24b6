// Over 450 lines: SigV4, STS web identity and KMS in one client; issue 18 replaces it with aws-config + aws-sdk-kms.
//! `awskms://[endpoint]/<key id | alias/name | key or alias ARN>`: an AWS KMS asymmetric key,
//! over KMS's JSON API signed with Signature Version 4 (no SDK).
//!
//! As sigstore's provider: an endpoint in the URI means `https://<endpoint>`; otherwise
//! `AWS_ENDPOINT_URL_KMS` or `AWS_ENDPOINT_URL` (the SDKs' variables), else
//! `https://kms.<region>.amazonaws.com`. The region comes from a key ARN, else `AWS_REGION` /
//! `AWS_DEFAULT_REGION`. The key signs a SHA-256 (or SHA-384/512, per its first signing
//! algorithm) digest (`MessageType: DIGEST`) with the first algorithm `GetPublicKey` lists —
//! what cosign does with the same key. Key metadata is cached for `SIGNET_KMS_KEY_TTL` (default
//! five minutes), so an alias moved to a new key is followed.
//!
//! Credentials, as the SDKs' default chain does in a pod: `AWS_ROLE_ARN` with
//! `AWS_WEB_IDENTITY_TOKEN_FILE` (EKS IRSA and Pod Identity webhooks inject these; the token is
//! re-read at each exchange) through STS `AssumeRoleWithWebIdentity`, else
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`.

use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::common::{Expiring, Named, http_client, key_deadline, required};
use super::sigv4::{Credentials, amz_timestamp, sign_v4, uri_encode};
use super::{BoxFuture, KmsError, RemoteSigner};
use signet_config::KmsConfig;

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

#[derive(Clone)]
struct KeyInfo {
    public_der: Vec<u8>,
    algorithm: String,
}

/// An AWS KMS key and a client for its endpoint.
pub struct Aws {
    named: Named,
    key_id: String,
    region: String,
    endpoint: String,
    source: Source,
    http: reqwest::Client,
    credentials: Expiring<Credentials>,
    key: Expiring<KeyInfo>,
}

impl std::fmt::Debug for Aws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aws")
            .field("uri", &self.named.0)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `(endpoint, key id)` from an `awskms://` URI, with sigstore's four key forms.
pub fn parse_uri(uri: &str) -> Result<(Option<String>, String), String> {
    let rest = uri
        .strip_prefix("awskms://")
        .ok_or("expected awskms://[ENDPOINT]/<key id | alias/NAME | ARN>")?;
    let (host, key) = rest
        .split_once('/')
        .ok_or("expected awskms://[ENDPOINT]/<key id | alias/NAME | ARN>")?;
    let is_uuid = |s: &str| {
        let s = s.strip_prefix("mrk-").unwrap_or(s);
        s.len() >= 32 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
    };
    let arn_ok = |s: &str| {
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        parts.len() == 6
            && parts[0] == "arn"
            && parts[2] == "kms"
            && !parts[3].is_empty()
            && parts[4].len() == 12
            && (parts[5].strip_prefix("key/").is_some_and(is_uuid)
                || parts[5]
                    .strip_prefix("alias/")
                    .is_some_and(|a| !a.is_empty()))
    };
    let valid = is_uuid(key)
        || key.strip_prefix("alias/").is_some_and(|a| !a.is_empty())
        || (key.starts_with("arn:") && arn_ok(key));
    if !valid {
        return Err(format!(
            "{key:?} is not a key id, alias/NAME, or key or alias ARN"
        ));
    }
    Ok(((!host.is_empty()).then(|| host.to_owned()), key.to_owned()))
}

impl Aws {
    pub fn from_config(config: &KmsConfig) -> Result<Self, KmsError> {
        let named = Named(config.kmsref.clone().unwrap_or_default());
        let bad = |message: String| named.config(message);
        let (host, key_id) = parse_uri(&named.0).map_err(&bad)?;
        let region = key_id
            .strip_prefix("arn:")
            .and_then(|arn| arn.split(':').nth(2))
            .map(str::to_owned)
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .ok_or_else(|| bad("no AWS region: use a key ARN or set AWS_REGION".to_owned()))?;
        let endpoint = match host {
            Some(host) => format!("https://{host}"),
            None => env("AWS_ENDPOINT_URL_KMS")
                .or_else(|| env("AWS_ENDPOINT_URL"))
                .unwrap_or_else(|| format!("https://kms.{region}.amazonaws.com")),
        }
        .trim_end_matches('/')
        .to_owned();
        let source = match (env("AWS_ROLE_ARN"), env("AWS_WEB_IDENTITY_TOKEN_FILE")) {
            (Some(role_arn), Some(token_file)) => Source::WebIdentity {
                role_arn,
                token_file,
                session_name: env("AWS_ROLE_SESSION_NAME")
                    .unwrap_or_else(|| "signet-signer".to_owned()),
                sts_endpoint: env("AWS_ENDPOINT_URL_STS")
                    .or_else(|| env("AWS_ENDPOINT_URL"))
                    .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"))
                    .trim_end_matches('/')
                    .to_owned(),
            },
            _ if env("AWS_ACCESS_KEY_ID").is_some() && env("AWS_SECRET_ACCESS_KEY").is_some() => {
                Source::Static
            }
            _ => {
                return Err(bad(
                    "no AWS credentials: set AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE (workload identity), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                        .to_owned(),
                ));
            }
        };
        let http = http_client(&named)?;
        Ok(Self {
            named,
            key_id,
            region,
            endpoint,
            source,
            http,
            credentials: Expiring::default(),
            key: Expiring::default(),
        })
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
            Duration::from_secs(3600),
        ))
    }

    /// One KMS API call (`TrentService.<action>`), signed.
    async fn call(&self, action: &str, body: &Value) -> Result<Value, KmsError> {
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
        let target = format!("TrentService.{action}");
        let mut headers = vec![
            (
                "content-type".to_owned(),
                "application/x-amz-json-1.1".to_owned(),
            ),
            ("host".to_owned(), host),
            ("x-amz-date".to_owned(), amz_date.clone()),
            ("x-amz-target".to_owned(), target),
        ];
        if let Some(token) = &credentials.session_token {
            headers.push(("x-amz-security-token".to_owned(), token.clone()));
        }
        let authorization = sign_v4(
            &credentials,
            &self.region,
            "kms",
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
        let response = request
            .header("authorization", authorization)
            .send()
            .await
            .map_err(|e| self.named.remote(format!("{action}: {e}")))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            let kind = answer["__type"]
                .as_str()
                .map_or("error", |t| t.rsplit('#').next().unwrap_or(t));
            let message = answer["message"]
                .as_str()
                .or_else(|| answer["Message"].as_str())
                .unwrap_or("no details");
            let text = format!("{action}: {status} {kind}: {message}");
            return Err(
                if matches!(
                    kind,
                    "AccessDeniedException"
                        | "UnrecognizedClientException"
                        | "InvalidSignatureException"
                        | "ExpiredTokenException"
                ) {
                    self.named.auth(text)
                } else {
                    self.named.remote(text)
                },
            );
        }
        Ok(answer)
    }

    async fn key_info(&self) -> Result<KeyInfo, KmsError> {
        if let Some(info) = self.key.get() {
            return Ok(info);
        }
        let answer = self
            .call("GetPublicKey", &json!({"KeyId": self.key_id}))
            .await?;
        let public_der = required(&answer, "/PublicKey")
            .map_err(|e| self.named.remote(format!("GetPublicKey: {e}")))?;
        let public_der = STANDARD
            .decode(public_der)
            .map_err(|e| self.named.remote(format!("GetPublicKey: {e}")))?;
        let algorithm = answer["SigningAlgorithms"][0]
            .as_str()
            .ok_or_else(|| {
                self.named.remote(format!(
                    "key {} ({}) cannot sign: it lists no signing algorithm",
                    self.key_id,
                    answer["KeySpec"].as_str().unwrap_or("unknown spec")
                ))
            })?
            .to_owned();
        let info = KeyInfo {
            public_der,
            algorithm,
        };
        self.key.set(info.clone(), Some(key_deadline()));
        Ok(info)
    }
}

/// The digest KMS's `algorithm` signs.
fn digest(algorithm: &str, message: &[u8]) -> Result<Vec<u8>, String> {
    if algorithm.ends_with("SHA_256") {
        Ok(Sha256::digest(message).to_vec())
    } else if algorithm.ends_with("SHA_384") {
        Ok(Sha384::digest(message).to_vec())
    } else if algorithm.ends_with("SHA_512") {
        Ok(Sha512::digest(message).to_vec())
    } else {
        Err(format!("signing algorithm {algorithm} is not supported"))
    }
}

impl RemoteSigner for Aws {
    fn uri(&self) -> &str {
        &self.named.0
    }

    fn sign<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, KmsError>> {
        Box::pin(async move {
            let info = self.key_info().await?;
            let digest = digest(&info.algorithm, message).map_err(|e| self.named.remote(e))?;
            let answer = self
                .call(
                    "Sign",
                    &json!({"KeyId": self.key_id, "Message": STANDARD.encode(digest),
                            "MessageType": "DIGEST", "SigningAlgorithm": info.algorithm}),
                )
                .await?;
            let signature = required(&answer, "/Signature")
                .map_err(|e| self.named.remote(format!("Sign: {e}")))?;
            STANDARD
                .decode(signature)
                .map_err(|e| self.named.remote(format!("Sign: {e}")))
        })
    }

    fn public_der(&self) -> BoxFuture<'_, Result<Vec<u8>, KmsError>> {
        Box::pin(async move { Ok(self.key_info().await?.public_der) })
    }
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
    fn uris_take_sigstores_four_key_forms_and_an_optional_endpoint() {
        let id = "1234abcd-12ab-34cd-56ef-1234567890ab";
        assert_eq!(
            parse_uri(&format!("awskms:///{id}")).unwrap(),
            (None, id.to_owned())
        );
        assert_eq!(
            parse_uri(&format!("awskms://localhost:4566/{id}")).unwrap(),
            (Some("localhost:4566".to_owned()), id.to_owned())
        );
        assert!(parse_uri("awskms:///alias/signing").is_ok());
        assert!(
            parse_uri(&format!(
                "awskms:///arn:aws:kms:us-east-2:111122223333:key/{id}"
            ))
            .is_ok()
        );
        assert!(parse_uri("awskms:///arn:aws:kms:us-east-2:111122223333:alias/signing").is_ok());
        assert!(parse_uri("awskms:///not-a-key").is_err());
        assert!(parse_uri("awskms:///arn:aws:s3:::bucket").is_err());
        assert!(parse_uri("awskms://only-host").is_err());
    }

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
    fn digests_follow_the_keys_algorithm() {
        assert_eq!(digest("ECDSA_SHA_256", b"x").unwrap().len(), 32);
        assert_eq!(digest("RSASSA_PKCS1_V1_5_SHA_384", b"x").unwrap().len(), 48);
        assert_eq!(digest("ECDSA_SHA_512", b"x").unwrap().len(), 64);
        assert!(digest("SM2DSA", b"x").is_err());
    }
}
