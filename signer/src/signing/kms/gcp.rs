//! `gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K[/cryptoKeyVersions/V]`: a Cloud
//! KMS asymmetric signing key, over Cloud KMS's REST API (no SDK).
//!
//! As sigstore's provider: without a version, the newest enabled version signs (listed again
//! after `SIGNET_KMS_KEY_TTL`, default five minutes, so a new version is picked up without a
//! restart); the digest and the signature carry CRC32C checksums that are checked both ways.
//! The endpoint is `https://cloudkms.googleapis.com/`, or gcloud's override
//! `CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDKMS`.
//!
//! Credentials: `crate::cloud::google` (shared with the gcs and Firestore storage backends).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::cloud::env;
use crate::cloud::google::{GoogleAuth, crc32c};
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::common::{Expiring, Named, bearer_json, key_deadline, required};
use super::{BoxFuture, KmsError, RemoteSigner, spki_from_pem};
use signet_config::KmsConfig;

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
    auth: GoogleAuth,
    info: Expiring<KeyInfo>,
    /// The version that signed at the last read, to notice a new one.
    last_version: std::sync::Mutex<Option<String>>,
}

impl std::fmt::Debug for Gcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gcp")
            .field("uri", &self.named.0)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
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

impl Gcp {
    pub fn from_config(config: &KmsConfig) -> Result<Self, KmsError> {
        let named = Named(config.kmsref.clone().unwrap_or_default());
        let bad = |message: String| named.config(message);
        let (key, version) = parse_uri(&named.0).map_err(&bad)?;
        let auth = GoogleAuth::from_env(named.clone()).map_err(&bad)?;
        Ok(Self {
            endpoint: env("CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDKMS")
                .unwrap_or_else(|| auth.endpoint("cloudkms"))
                .trim_end_matches('/')
                .trim_end_matches("/v1")
                .to_owned(),
            named,
            key,
            version,
            auth,
            info: Expiring::default(),
            last_version: std::sync::Mutex::default(),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, KmsError> {
        let token = self.auth.token().await?;
        let url = format!("{}/v1/{path}", self.endpoint);
        let answer = bearer_json(
            &self.named,
            self.auth.http(),
            (method, &url, path),
            &token,
            body,
        )
        .await;
        if let Err(KmsError::Auth { .. }) = answer {
            self.auth.clear();
        }
        answer
    }

    /// The newest enabled version's name, from every page of the key's version list (the API
    /// orders names as strings, so version 10 comes after 9 in `name desc`: the number decides).
    async fn newest_enabled_version(&self) -> Result<String, KmsError> {
        let mut newest: Option<(u64, String)> = None;
        let mut token = String::new();
        for _ in 0..MAX_VERSION_PAGES {
            let mut path = format!(
                "{}/cryptoKeyVersions?filter=state%3DENABLED&orderBy=name%20desc&pageSize=100",
                self.key
            );
            if !token.is_empty() {
                path.push_str("&pageToken=");
                path.push_str(&crate::cloud::percent_encoded(&token));
            }
            let page = self.call(reqwest::Method::GET, &path, None).await?;
            for name in page["cryptoKeyVersions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|v| v["state"].as_str().is_none_or(|s| s == "ENABLED"))
                .filter_map(|v| v["name"].as_str())
                .filter(|n| n.starts_with(&format!("{}/cryptoKeyVersions/", self.key)))
            {
                let number = name
                    .rsplit('/')
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                if newest.as_ref().is_none_or(|(n, _)| number > *n) {
                    newest = Some((number, name.to_owned()));
                }
            }
            match page["nextPageToken"].as_str() {
                Some(next) if !next.is_empty() => next.clone_into(&mut token),
                _ => {
                    return newest
                        .map(|(_, name)| name)
                        .ok_or_else(|| self.named.remote("the key has no enabled version"));
                }
            }
        }
        Err(self.named.remote(format!(
            "the key's version list has more than {MAX_VERSION_PAGES} pages"
        )))
    }

    async fn key_info(&self) -> Result<KeyInfo, KmsError> {
        if let Some(info) = self.info.get() {
            return Ok(info);
        }
        let name = if let Some(version) = &self.version {
            format!("{}/cryptoKeyVersions/{version}", self.key)
        } else {
            self.newest_enabled_version().await?
        };
        let answer = self
            .call(reqwest::Method::GET, &format!("{name}/publicKey"), None)
            .await?;
        let field = |pointer| {
            required(&answer, pointer).map_err(|e| self.named.remote(format!("publicKey: {e}")))
        };
        let pem = field("/pem")?;
        if crc32c_of(&answer["pemCrc32c"]) != Some(crc32c(pem.as_bytes())) {
            return Err(self
                .named
                .remote("the public key was corrupted in transit (pemCrc32c)"));
        }
        let public_der = spki_from_pem(pem).map_err(|e| self.named.remote(e))?;
        if self.version.is_none()
            && let Ok(mut last) = self.last_version.lock()
        {
            if let Some(before) = last.as_deref().filter(|before| *before != name) {
                super::key_changed(&self.named.0, before, &name);
            }
            *last = Some(name.clone());
        }
        let info = KeyInfo {
            name,
            public_der,
            algorithm: field("/algorithm")?.to_owned(),
        };
        self.info.set(info.clone(), Some(key_deadline()));
        Ok(info)
    }
}

/// Pages of a key's version list read at most (100 versions each).
const MAX_VERSION_PAGES: usize = 50;

/// A CRC32C the API sends as an int64 in JSON: a decimal string (or, leniently, a number).
fn crc32c_of(value: &Value) -> Option<u32> {
    value
        .as_str()
        .and_then(|v| v.parse::<u32>().ok())
        .or_else(|| value.as_u64().and_then(|v| u32::try_from(v).ok()))
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
            if crc32c_of(&answer["signatureCrc32c"]) != Some(crc32c(&signature)) {
                return Err(self
                    .named
                    .remote("the signature was corrupted in transit (signatureCrc32c)"));
            }
            if answer["name"].as_str() != Some(info.name.as_str()) {
                return Err(self.named.remote(format!(
                    "asymmetricSign answered for {}, not the version asked ({})",
                    answer["name"], info.name
                )));
            }
            Ok(signature)
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
