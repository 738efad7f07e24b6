//! AWS credentials through `aws-config`'s default chain — what every AWS SDK finds in a pod:
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, a profile (`AWS_PROFILE`, `~/.aws/config`,
//! SSO), web identity (`AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`: EKS IRSA), container
//! credentials (`AWS_CONTAINER_CREDENTIALS_FULL_URI` + `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`:
//! EKS Pod Identity, ECS), and instance metadata (`IMDSv2`) — over rustls with ring, with the
//! chain's own caching, retries and expiry handling; and one JSON API call signed with
//! `aws-sigv4` for DynamoDB (the KMS signer uses `aws-sdk-kms`).

use std::time::Duration;
#[cfg(feature = "docdb")]
use std::time::SystemTime;

use aws_config::{BehaviorVersion, Region, SdkConfig, timeout::TimeoutConfig};
#[cfg(feature = "docdb")]
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use aws_smithy_http_client::tls;
#[cfg(feature = "docdb")]
use serde_json::Value;

use super::env;
#[cfg(feature = "docdb")]
use crate::signing::kms::{
    KmsError,
    common::{Expiring, Named, http_client},
};

/// What every credential error of the chain starts with (and how errors are told apart as
/// credential errors, whatever the SDK wraps them in).
pub const CREDENTIALS: &str = "AWS credentials";

/// Which source of the chain the environment selects, in the chain's order — said in errors so
/// that "STS refused the token" and "no credentials at all" read differently.
pub fn source() -> String {
    if env("AWS_ACCESS_KEY_ID").is_some() {
        "environment keys (AWS_ACCESS_KEY_ID)".to_owned()
    } else if let Some(profile) = env("AWS_PROFILE") {
        format!("profile {profile}")
    } else if env("AWS_WEB_IDENTITY_TOKEN_FILE").is_some() {
        "web identity (STS AssumeRoleWithWebIdentity)".to_owned()
    } else if env("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some()
        || env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_some()
    {
        "container credentials (EKS Pod Identity or ECS)".to_owned()
    } else {
        "the default chain (profile files, then instance metadata IMDSv2)".to_owned()
    }
}

/// An SDK error as one line: the `Display` of each error in its chain, joined by `: `, a part
/// that repeats the one before left out (the SDK's own `DisplayErrorContext` adds `Debug` dumps
/// of raw responses — too long for an Event's note and for a run's failure reason).
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// The chain's credentials, errors prefixed with [`CREDENTIALS`] and the selected source.
#[derive(Debug)]
struct Labeled {
    inner: SharedCredentialsProvider,
    source: String,
}

impl ProvideCredentials for Labeled {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.inner.provide_credentials().await.map_err(|e| {
                CredentialsError::provider_error(format!(
                    "{CREDENTIALS} from {}: {}",
                    self.source,
                    one_line(&e)
                ))
            })
        })
    }
}

/// The shared configuration of the AWS clients: region (`region`, else `AWS_REGION`, the
/// profile, or IMDS), the default credential chain, TLS through rustls + ring verified against
/// the system's roots (`SSL_CERT_FILE`), 5 s to connect, 30 s per attempt, the SDK's standard
/// retries (throttling included). `AWS_ENDPOINT_URL[_<SERVICE>]` is the SDK's own.
pub async fn load(
    region: Option<String>,
) -> Result<(SdkConfig, SharedCredentialsProvider), String> {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        );
    if let Some(region) = region {
        loader = loader.region(Region::new(region));
    }
    let config = loader.load().await;
    if config.region().is_none() {
        return Err(
            "no AWS region: use a key ARN, set AWS_REGION, or run where a profile or instance metadata names one"
                .to_owned(),
        );
    }
    let inner = config
        .credentials_provider()
        .ok_or_else(|| format!("{CREDENTIALS}: the SDK found no credential chain"))?;
    let labeled = SharedCredentialsProvider::new(Labeled {
        inner,
        source: source(),
    });
    Ok((config, labeled))
}

#[cfg(feature = "docdb")]
/// A service's endpoint as the SDKs choose it: `AWS_ENDPOINT_URL_<SERVICE>`, else
/// `AWS_ENDPOINT_URL`, else `https://<service>.<region>.amazonaws.com`.
pub fn env_endpoint(service_variable: &str, service: &str, region: &str) -> String {
    env(&format!("AWS_ENDPOINT_URL_{service_variable}"))
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|| format!("https://{service}.{region}.amazonaws.com"))
        .trim_end_matches('/')
        .to_owned()
}

#[cfg(feature = "docdb")]
/// One AWS service's JSON API at `endpoint` (DynamoDB), signed with SigV4 with the chain's
/// credentials.
pub struct AwsApi {
    named: Named,
    service: &'static str,
    region: Option<String>,
    endpoint: Option<String>,
    http: reqwest::Client,
    /// Region, endpoint and credentials, loaded at the first call that can (a failure is
    /// tried again at the next call).
    loaded: tokio::sync::OnceCell<(String, String, SharedCredentialsProvider)>,
    credentials: Expiring<Credentials>,
}

#[cfg(feature = "docdb")]
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

#[cfg(feature = "docdb")]
impl AwsApi {
    /// A client of `service` (the SigV4 signing name and endpoint prefix: `dynamodb`) with its
    /// endpoint variable's suffix (`DYNAMODB`); `region` and `endpoint` override the chain's.
    pub fn new(
        named: Named,
        service: &'static str,
        region: Option<String>,
        endpoint: Option<String>,
    ) -> Result<Self, String> {
        let http = http_client(&named).map_err(|e| e.to_string())?;
        Ok(Self {
            named,
            service,
            region,
            endpoint,
            http,
            loaded: tokio::sync::OnceCell::new(),
            credentials: Expiring::default(),
        })
    }

    async fn loaded(&self) -> Result<&(String, String, SharedCredentialsProvider), KmsError> {
        self.loaded
            .get_or_try_init(|| async {
                let (config, provider) = load(self.region.clone())
                    .await
                    .map_err(|e| self.named.config(e))?;
                let region = config.region().map(ToString::to_string).unwrap_or_default();
                let endpoint = self.endpoint.clone().unwrap_or_else(|| {
                    env_endpoint(&self.service.to_uppercase(), self.service, &region)
                });
                Ok((region, endpoint, provider))
            })
            .await
    }

    async fn credentials(
        &self,
        provider: &SharedCredentialsProvider,
    ) -> Result<Credentials, KmsError> {
        if let Some(credentials) = self.credentials.get() {
            return Ok(credentials);
        }
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| self.named.auth(one_line(&e)))?;
        // Renewed five minutes before the chain's expiry (none: keys that do not expire).
        let until = credentials.expiry().map(|at| {
            let left = at
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .saturating_sub(Duration::from_secs(300));
            std::time::Instant::now() + left
        });
        self.credentials.set(credentials.clone(), until);
        Ok(credentials)
    }

    /// One JSON API call (`X-Amz-Target: <target>`), signed. Credentials the service refuses
    /// are `Auth` (and dropped, so the next call asks the chain again); other failures `Remote`
    /// with the service's error type and message.
    pub async fn call(
        &self,
        content_type: &str,
        target: &str,
        body: &Value,
    ) -> Result<Value, KmsError> {
        let (region, endpoint, provider) = self.loaded().await?;
        let credentials = self.credentials(provider).await?;
        let payload = serde_json::to_vec(body).map_err(|e| self.named.remote(e))?;
        let url = format!("{}/", endpoint.trim_end_matches('/'));
        let headers = [("content-type", content_type), ("x-amz-target", target)];
        let signed = sign(
            &credentials,
            (region, self.service, SystemTime::now()),
            &url,
            &headers,
            &payload,
        )
        .map_err(|e| self.named.auth(format!("{CREDENTIALS}: signing: {e}")))?;
        let mut request = self.http.post(&url).body(payload);
        for (name, value) in headers
            .iter()
            .map(|(n, v)| (*n, (*v).to_owned()))
            .chain(signed)
        {
            request = request.header(name, value);
        }
        let action = target.rsplit('.').next().unwrap_or(target);
        let response = request
            .send()
            .await
            .map_err(|e| self.named.remote(format!("{action}: {e}")))?;
        let status = response.status();
        let answer: Value = crate::bodies::json_capped(response, crate::bodies::API_ANSWER_LIMIT)
            .await
            .map_err(|e| self.named.remote(format!("{action}: {e}")))?;
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
        if is_credentials_refused(kind) {
            self.credentials.clear();
            Err(self.named.auth(text))
        } else {
            Err(self.named.remote(text))
        }
    }
}

/// The error codes with which AWS services refuse the caller's credentials.
pub fn is_credentials_refused(code: &str) -> bool {
    matches!(
        code,
        "AccessDeniedException"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "ExpiredTokenException"
            | "MissingAuthenticationTokenException"
    )
}

#[cfg(feature = "docdb")]
/// The SigV4 headers (`authorization`, `x-amz-date`, `x-amz-security-token`) of a POST of
/// `payload` with `headers` to `url`, for `(region, service, time)`.
fn sign(
    credentials: &Credentials,
    (region, service, time): (&str, &str, SystemTime),
    url: &str,
    headers: &[(&str, &str)],
    payload: &[u8],
) -> Result<Vec<(&'static str, String)>, String> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings};
    let identity = credentials.clone().into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let request = SignableRequest::new(
        "POST",
        url,
        headers.iter().copied(),
        SignableBody::Bytes(payload),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _) = aws_sigv4::http_request::sign(request, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    let (signed, _) = instructions.into_parts();
    Ok(signed
        .into_iter()
        .map(|h| (h.name(), h.value().to_owned()))
        .collect())
}

#[cfg(test)]
mod chain_tests {
    use super::one_line;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn sdk_errors_become_one_line_of_their_causes() {
        let error = Layer(
            "dispatch failure",
            Some(Box::new(Layer(
                "io error",
                Some(Box::new(Layer("connection refused", None))),
            ))),
        );
        assert_eq!(
            one_line(&error),
            "dispatch failure: io error: connection refused"
        );
        let repeated = Layer("timeout: 5s", Some(Box::new(Layer("5s", None))));
        assert_eq!(one_line(&repeated), "timeout: 5s");
    }
}

#[cfg(all(test, feature = "docdb"))]
mod tests {
    use super::*;

    fn header(headers: &[(&str, String)], name: &str) -> Option<String> {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    }

    /// AWS's Signature Version 4 test suite, post-vanilla: the signature is the suite's.
    #[test]
    fn signatures_match_the_aws_test_suite() {
        let credentials = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        );
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let headers = sign(
            &credentials,
            ("us-east-1", "service", at),
            "https://example.amazonaws.com/",
            &[],
            b"",
        )
        .unwrap();
        assert_eq!(
            header(&headers, "authorization").as_deref(),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
            )
        );
        assert_eq!(
            header(&headers, "x-amz-date").as_deref(),
            Some("20150830T123600Z")
        );
    }

    #[test]
    fn the_session_token_and_target_are_signed() {
        let credentials = Credentials::new("AKID", "secret", Some("tok".to_owned()), None, "test");
        let headers = sign(
            &credentials,
            ("eu-west-1", "dynamodb", SystemTime::now()),
            "https://dynamodb.eu-west-1.amazonaws.com/",
            &[("x-amz-target", "DynamoDB_20120810.PutItem")],
            b"{}",
        )
        .unwrap();
        let authorization = header(&headers, "authorization").unwrap();
        assert!(
            authorization.contains("/eu-west-1/dynamodb/aws4_request"),
            "{authorization}"
        );
        assert!(
            authorization.contains("x-amz-security-token;x-amz-target"),
            "{authorization}"
        );
        assert_eq!(
            header(&headers, "x-amz-security-token").as_deref(),
            Some("tok")
        );
    }

    #[test]
    fn refused_credentials_are_told_from_other_errors() {
        assert!(is_credentials_refused("ExpiredTokenException"));
        assert!(!is_credentials_refused("ThrottlingException"));
    }
}
