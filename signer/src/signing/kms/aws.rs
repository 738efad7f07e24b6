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
//! Credentials and the signed call: `crate::cloud::aws` (shared with DynamoDB storage).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::common::{Expiring, Named, key_deadline, required};
use super::{BoxFuture, KmsError, RemoteSigner};
use crate::cloud::aws::{AwsApi, env_endpoint, env_region};
use signet_config::KmsConfig;

#[derive(Clone)]
struct KeyInfo {
    /// The key's ARN, as `GetPublicKey` names it: what signs, even when the URI names an alias
    /// (an alias moved between reading the public key and signing would otherwise yield a
    /// signature that does not verify with the key published).
    arn: String,
    public_der: Vec<u8>,
    algorithm: String,
}

/// An AWS KMS key and a client for its endpoint.
pub struct Aws {
    named: Named,
    key_id: String,
    api: AwsApi,
    key: Expiring<KeyInfo>,
    /// The ARN the URI named at the last read, to notice an alias moved.
    last_arn: std::sync::Mutex<Option<String>>,
}

impl std::fmt::Debug for Aws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aws")
            .field("uri", &self.named.0)
            .field("endpoint", &self.api.endpoint())
            .field("region", &self.api.region())
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
        let bad = |message: String| named.config(message);
        let (host, key_id) = parse_uri(&named.0).map_err(&bad)?;
        let region = key_id
            .strip_prefix("arn:")
            .and_then(|arn| arn.split(':').nth(2))
            .map(str::to_owned)
            .or_else(env_region)
            .ok_or_else(|| bad("no AWS region: use a key ARN or set AWS_REGION".to_owned()))?;
        let endpoint = match host {
            Some(host) => format!("https://{host}"),
            None => env_endpoint("KMS", "kms", &region),
        };
        let api = AwsApi::new(named.clone(), "kms", region, &endpoint).map_err(&bad)?;
        Ok(Self {
            named,
            key_id,
            api,
            key: Expiring::default(),
            last_arn: std::sync::Mutex::default(),
        })
    }

    /// One KMS API call (`TrentService.<action>`), signed.
    async fn call(&self, action: &str, body: &Value) -> Result<Value, KmsError> {
        self.api
            .call(
                "application/x-amz-json-1.1",
                &format!("TrentService.{action}"),
                body,
            )
            .await
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
        let arn = required(&answer, "/KeyId")
            .map_err(|e| self.named.remote(format!("GetPublicKey: {e}")))?
            .to_owned();
        if let Ok(mut last) = self.last_arn.lock() {
            if let Some(before) = last.as_deref().filter(|before| *before != arn) {
                tracing::warn!(
                    kmsref = %self.named.0,
                    before,
                    now = %arn,
                    "the KMS key the URI names has changed: signatures from now on verify with the new key's public key"
                );
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
            let digest = digest(&info.algorithm, message).map_err(|e| self.named.remote(e))?;
            let answer = self
                .call(
                    "Sign",
                    &json!({"KeyId": info.arn, "Message": STANDARD.encode(digest),
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
