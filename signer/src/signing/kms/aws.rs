//! `awskms://[endpoint]/<key id | alias/name | key or alias ARN>`: an AWS KMS asymmetric key,
//! through the official SDK (`aws-sdk-kms`, credentials from `aws-config`'s default chain).
//!
//! As sigstore's provider: an endpoint in the URI means `https://<endpoint>`; otherwise
//! `AWS_ENDPOINT_URL_KMS` or `AWS_ENDPOINT_URL` (the SDKs' variables), else
//! `https://kms.<region>.amazonaws.com`. The region comes from a key ARN, else the chain's
//! (`AWS_REGION`, the profile, instance metadata). The key signs a SHA-256 (or SHA-384/512, per its first signing
//! algorithm) digest (`MessageType: DIGEST`) with the first algorithm `GetPublicKey` lists —
//! what cosign does with the same key. Key metadata is cached for `SIGNET_KMS_KEY_TTL` (default
//! five minutes), so an alias moved to a new key is followed — the key ARN read signs, and a
//! move is reported ([`super::key_changed`]).
//!
//! Credentials: `crate::cloud::aws` (shared with DynamoDB storage).

use aws_sdk_kms::Client;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::common::{Expiring, Named, key_deadline};
use super::{BoxFuture, KmsError, RemoteSigner};
use crate::cloud::aws::{CREDENTIALS, is_credentials_refused, load, one_line};
use signet_config::KmsConfig;

#[derive(Clone)]
struct KeyInfo {
    /// The key's ARN, as `GetPublicKey` names it: what signs, even when the URI names an alias
    /// (an alias moved between reading the public key and signing would otherwise yield a
    /// signature that does not verify with the key published).
    arn: String,
    public_der: Vec<u8>,
    algorithm: SigningAlgorithmSpec,
}

/// An AWS KMS key and the SDK's client for it, made at the first call.
pub struct Aws {
    named: Named,
    key_id: String,
    /// From a key ARN; else the chain's (`AWS_REGION`, profile, IMDS).
    region: Option<String>,
    /// From the URI; else the SDK's (`AWS_ENDPOINT_URL_KMS`, `AWS_ENDPOINT_URL`, AWS's).
    endpoint: Option<String>,
    /// Made once it could be (a failure — no region yet, instance metadata not answering — is
    /// tried again at the next call, not kept).
    client: tokio::sync::OnceCell<Client>,
    key: Expiring<KeyInfo>,
    /// The ARN the URI named at the last read, to notice an alias moved.
    last_arn: std::sync::Mutex<Option<String>>,
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
        let (host, key_id) = parse_uri(&named.0).map_err(|e| named.config(e))?;
        let region = key_id
            .strip_prefix("arn:")
            .and_then(|arn| arn.split(':').nth(2))
            .map(str::to_owned);
        Ok(Self {
            named,
            key_id,
            region,
            endpoint: host.map(|host| format!("https://{host}")),
            client: tokio::sync::OnceCell::new(),
            key: Expiring::default(),
            last_arn: std::sync::Mutex::default(),
        })
    }

    async fn client(&self) -> Result<&Client, KmsError> {
        self.client
            .get_or_try_init(|| async {
                let (config, credentials) = load(self.region.clone())
                    .await
                    .map_err(|e| self.named.config(e))?;
                let mut builder =
                    aws_sdk_kms::config::Builder::from(&config).credentials_provider(credentials);
                if let Some(endpoint) = &self.endpoint {
                    builder = builder.endpoint_url(endpoint);
                }
                Ok(Client::from_conf(builder.build()))
            })
            .await
    }

    /// A failed call as `Auth` (the chain could not give credentials, or KMS refused them) or
    /// `Remote` (KMS's error code and message, or the transport's failure).
    fn error<E>(
        &self,
        action: &str,
        error: &SdkError<E, aws_sdk_kms::config::http::HttpResponse>,
    ) -> KmsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        if let SdkError::ServiceError(service) = error {
            let code = service.err().code().unwrap_or("error");
            let text = format!(
                "{action}: {} {code}: {}",
                service.raw().status().as_u16(),
                service.err().message().unwrap_or("no details")
            );
            return if is_credentials_refused(code) {
                self.named.auth(text)
            } else {
                self.named.remote(text)
            };
        }
        let text = format!("{action}: {}", one_line(error));
        if text.contains(CREDENTIALS) {
            self.named.auth(text)
        } else {
            self.named.remote(text)
        }
    }

    async fn key_info(&self) -> Result<KeyInfo, KmsError> {
        if let Some(info) = self.key.get() {
            return Ok(info);
        }
        let answer = self
            .client()
            .await?
            .get_public_key()
            .key_id(&self.key_id)
            .send()
            .await
            .map_err(|e| self.error("GetPublicKey", &e))?;
        let missing = |field: &str| {
            self.named
                .remote(format!("GetPublicKey: the answer has no {field}"))
        };
        let public_der = answer
            .public_key()
            .map(|blob| blob.as_ref().to_vec())
            .filter(|der| !der.is_empty())
            .ok_or_else(|| missing("PublicKey"))?;
        let algorithm = answer
            .signing_algorithms()
            .first()
            .cloned()
            .ok_or_else(|| {
                self.named.remote(format!(
                    "key {} ({}) cannot sign: it lists no signing algorithm",
                    self.key_id,
                    answer
                        .key_spec()
                        .map_or("unknown spec", |spec| spec.as_str())
                ))
            })?;
        let arn = answer
            .key_id()
            .filter(|arn| !arn.is_empty())
            .ok_or_else(|| missing("KeyId"))?
            .to_owned();
        if let Ok(mut last) = self.last_arn.lock() {
            if let Some(before) = last.as_deref().filter(|before| *before != arn) {
                super::key_changed(&self.named.0, before, &arn);
            }
            *last = Some(arn.clone());
        }
        let info = KeyInfo {
            arn,
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
            let digest =
                digest(info.algorithm.as_str(), message).map_err(|e| self.named.remote(e))?;
            let answer = self
                .client()
                .await?
                .sign()
                .key_id(&info.arn)
                .message(Blob::new(digest))
                .message_type(MessageType::Digest)
                .signing_algorithm(info.algorithm.clone())
                .send()
                .await
                .map_err(|e| self.error("Sign", &e))?;
            answer
                .signature()
                .map(|blob| blob.as_ref().to_vec())
                .filter(|signature| !signature.is_empty())
                .ok_or_else(|| self.named.remote("Sign: the answer has no Signature"))
        })
    }

    fn public_der(&self) -> BoxFuture<'_, Result<Vec<u8>, KmsError>> {
        Box::pin(async move { Ok(self.key_info().await?.public_der) })
    }

    fn forget_public_key(&self) {
        self.key.clear();
    }
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
    fn digests_follow_the_keys_algorithm() {
        assert_eq!(digest("ECDSA_SHA_256", b"x").unwrap().len(), 32);
        assert_eq!(digest("RSASSA_PKCS1_V1_5_SHA_384", b"x").unwrap().len(), 48);
        assert_eq!(digest("ECDSA_SHA_512", b"x").unwrap().len(), 64);
        assert!(digest("SM2DSA", b"x").is_err());
    }
}
