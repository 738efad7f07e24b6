// Over 450 lines: Vault transit with its four ways to a token (token, token file, JWT login, SPIFFE JWT-SVID) in one provider.
//! `hashivault://<key>`: a Vault (or OpenBao) transit key.
//!
//! Address from `signers.kms.auth.address`, else `VAULT_ADDR`; the transit mount from
//! `TRANSIT_SECRET_ENGINE_PATH` (default `transit`), as sigstore's provider reads it.
//! Authentication, first that applies: `signers.kms.auth.spire.sock` (JWT login, as below, with a
//! JWT-SVID for `signers.kms.auth.spire.audience` from the SPIFFE Workload API),
//! `signers.kms.auth.token-path` (read at each login, so
//! a rotated file is picked up), `signers.kms.auth.token`, JWT login at
//! `auth/<signers.kms.auth.oidc.path>/login` with `signers.kms.auth.oidc.role` and the JWT in
//! `signers.kms.auth.oidc.token-path` (default: the pod's ServiceAccount token), else
//! `VAULT_TOKEN`. A token Vault refuses (403) is dropped and, for JWT login, obtained again.
//!
//! Signing uses the key's latest version (`vault:vN:` in the answer names it), so a rotated
//! key is used at once; the public key of each version is fetched once and cached.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::common::{Expiring, Named, http_client, renew_at, required};
use super::{BoxFuture, KmsError, RemoteSigner, spki_from_ed25519, spki_from_pem};
use signet_config::KmsConfig;
use signet_config::redacted::Redacted;

/// Where the pod's ServiceAccount token is mounted.
pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Whether `address` names this machine (`127.0.0.0/8`, `::1` or `localhost`).
fn on_loopback(address: &str) -> bool {
    let Some(host) = reqwest::Url::parse(address)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
    else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[derive(Clone, Debug)]
enum Auth {
    TokenFile(PathBuf),
    Token(Redacted),
    Jwt {
        path: String,
        role: String,
        jwt_file: PathBuf,
    },
    /// JWT login with a JWT-SVID from the SPIFFE Workload API.
    Spiffe {
        path: String,
        role: String,
        socket: String,
        audience: String,
    },
}

/// A transit key and a client for the Vault that holds it.
pub struct Vault {
    named: Named,
    address: String,
    mount: String,
    key: String,
    auth: Auth,
    http: reqwest::Client,
    token: Expiring<String>,
    public_keys: Mutex<HashMap<u64, Vec<u8>>>,
    /// The version that signed last, to notice a rotation.
    last_signed: Mutex<Option<u64>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("uri", &self.named.0)
            .field("address", &self.address)
            .field("mount", &self.mount)
            .finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Vault {
    pub fn from_config(config: &KmsConfig) -> Result<Self, KmsError> {
        let named = Named(config.kmsref.clone().unwrap_or_default());
        let bad = |message: String| named.config(message);
        let key = named
            .0
            .strip_prefix("hashivault://")
            .filter(|k| !k.is_empty() && !k.contains('/'))
            .ok_or_else(|| bad("expected hashivault://<key name>".to_owned()))?
            .to_owned();
        let address = config
            .auth_address
            .clone()
            .or_else(|| env("VAULT_ADDR"))
            .ok_or_else(|| {
                bad("no Vault address: set signers.kms.auth.address (or VAULT_ADDR)".to_owned())
            })?
            .trim_end_matches('/')
            .to_owned();
        if !(address.starts_with("https://") || address.starts_with("http://")) {
            return Err(bad(format!(
                "Vault address {address:?} is not an http(s) URL"
            )));
        }
        if address.starts_with("http://") && !config.auth_insecure && !on_loopback(&address) {
            return Err(bad(format!(
                "Vault address {address} is plain HTTP and not on this machine: the login and every signature would cross the network in the clear; use https, or set signers.kms.auth.insecure (spec.signing.kms.auth.insecure) to allow it"
            )));
        }
        let auth = if let Some(socket) = &config.auth_spire_sock {
            let (Some(path), Some(role)) = (&config.auth_oidc_path, &config.auth_oidc_role) else {
                return Err(bad(
                    "signers.kms.auth.spire needs signers.kms.auth.oidc.path and .role (the JWT auth method and role that accept the SVID)"
                        .to_owned(),
                ));
            };
            Auth::Spiffe {
                path: path.trim_matches('/').to_owned(),
                role: role.clone(),
                socket: socket.clone(),
                audience: config
                    .auth_spire_audience
                    .clone()
                    .unwrap_or_else(|| "vault".to_owned()),
            }
        } else if let Some(path) = &config.auth_token_path {
            Auth::TokenFile(PathBuf::from(path))
        } else if let Some(token) = &config.auth_token {
            Auth::Token(token.clone())
        } else if let (Some(path), Some(role)) = (&config.auth_oidc_path, &config.auth_oidc_role) {
            Auth::Jwt {
                path: path.trim_matches('/').to_owned(),
                role: role.clone(),
                jwt_file: PathBuf::from(
                    config
                        .auth_oidc_token_path
                        .clone()
                        .unwrap_or_else(|| SERVICE_ACCOUNT_TOKEN.to_owned()),
                ),
            }
        } else if let Some(token) = env("VAULT_TOKEN") {
            Auth::Token(Redacted::new(token))
        } else {
            return Err(bad(
                "no Vault credentials: set signers.kms.auth.token-path, .token, .oidc.path and .oidc.role, or VAULT_TOKEN"
                    .to_owned(),
            ));
        };
        let http = http_client(&named)?;
        Ok(Self {
            named,
            address,
            mount: env("TRANSIT_SECRET_ENGINE_PATH")
                .unwrap_or_else(|| "transit".to_owned())
                .trim_matches('/')
                .to_owned(),
            key,
            auth,
            http,
            token: Expiring::default(),
            public_keys: Mutex::new(HashMap::new()),
            last_signed: Mutex::new(None),
        })
    }

    /// A token: the cached one while it is valid, else a fresh one.
    async fn token(&self) -> Result<String, KmsError> {
        if let Some(token) = self.token.get() {
            return Ok(token);
        }
        let (token, expires) = match &self.auth {
            Auth::Token(token) => (token.expose().to_owned(), None),
            Auth::TokenFile(path) => {
                let token = tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| self.named.auth(format!("reading {}: {e}", path.display())))?;
                // Read again in a minute: the file may be rotated.
                (
                    token.trim().to_owned(),
                    Some(Instant::now() + Duration::from_secs(60)),
                )
            }
            Auth::Jwt {
                path,
                role,
                jwt_file,
            } => {
                let jwt = tokio::fs::read_to_string(jwt_file).await.map_err(|e| {
                    self.named
                        .auth(format!("reading the JWT {}: {e}", jwt_file.display()))
                })?;
                self.login(path, role, jwt.trim()).await?
            }
            Auth::Spiffe {
                path,
                role,
                socket,
                audience,
            } => {
                let (_, svid) = crate::signing::keyless::spiffe::fetch_jwt_svid(socket, audience)
                    .await
                    .map_err(|e| self.named.auth(e))?;
                self.login(path, role, &svid).await?
            }
        };
        self.token.set(token.clone(), expires);
        Ok(token)
    }

    fn forget_token(&self) {
        self.token.clear();
    }

    /// JWT login with `jwt` (read fresh for every login: projected tokens and SVIDs rotate).
    async fn login(
        &self,
        path: &str,
        role: &str,
        jwt: &str,
    ) -> Result<(String, Option<Instant>), KmsError> {
        let url = format!("{}/v1/auth/{path}/login", self.address);
        let response = self
            .http
            .post(&url)
            .json(&json!({"role": role, "jwt": jwt}))
            .send()
            .await
            .map_err(|e| self.named.auth(format!("POST {url}: {e}")))?;
        let status = response.status();
        let body: Value = crate::bodies::json_capped(response, crate::bodies::API_ANSWER_LIMIT)
            .await
            .map_err(|e| self.named.auth(format!("POST {url}: {e}")))?;
        if !status.is_success() {
            return Err(self.named.auth(format!(
                "JWT login at auth/{path} as role {role:?}: {status}: {}",
                errors_of(&body)
            )));
        }
        let token = body["auth"]["client_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                self.named
                    .auth(format!("JWT login at auth/{path}: no client_token"))
            })?
            .to_owned();
        // Log in again a little before the token's lease ends.
        let lease = body["auth"]["lease_duration"].as_u64().unwrap_or(300);
        Ok((token, Some(renew_at(lease))))
    }

    /// One request with the token; on 403 the token is dropped and the request made once more
    /// with a fresh one.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, KmsError> {
        let url = format!("{}/v1/{path}", self.address);
        for attempt in 0..2 {
            let token = self.token().await?;
            let mut request = self
                .http
                .request(method.clone(), &url)
                .header("X-Vault-Token", token);
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request
                .send()
                .await
                .map_err(|e| self.named.remote(format!("{method} {url}: {e}")))?;
            let status = response.status();
            let answer: Value =
                crate::bodies::json_capped(response, crate::bodies::API_ANSWER_LIMIT)
                    .await
                    .map_err(|e| self.named.remote(format!("{method} {url}: {e}")))?;
            if status == reqwest::StatusCode::FORBIDDEN && attempt == 0 {
                self.forget_token();
                continue;
            }
            if status == reqwest::StatusCode::FORBIDDEN {
                return Err(self.named.auth(format!(
                    "{method} {path}: permission denied: {}",
                    errors_of(&answer)
                )));
            }
            if !status.is_success() {
                return Err(self
                    .named
                    .remote(format!("{method} {path}: {status}: {}", errors_of(&answer))));
            }
            return Ok(answer);
        }
        Err(self.named.remote(format!("{method} {path}: refused")))
    }

    /// The SPKI DER of key version `version`, fetched once.
    async fn public_key(&self, version: u64) -> Result<Vec<u8>, KmsError> {
        if let Some(der) = self
            .public_keys
            .lock()
            .ok()
            .and_then(|keys| keys.get(&version).cloned())
        {
            return Ok(der);
        }
        let answer = self
            .call(
                reqwest::Method::GET,
                &format!("{}/keys/{}", self.mount, self.key),
                None,
            )
            .await?;
        let data = &answer["data"];
        let kind = data["type"].as_str().unwrap_or_default();
        let mut found = None;
        for (v, entry) in data["keys"].as_object().into_iter().flatten() {
            let Ok(v) = v.parse::<u64>() else { continue };
            let Some(public) = entry["public_key"].as_str() else {
                continue;
            };
            let der = if kind == "ed25519" {
                STANDARD
                    .decode(public)
                    .map_err(|e| e.to_string())
                    .and_then(|raw| spki_from_ed25519(&raw))
            } else {
                spki_from_pem(public)
            }
            .map_err(|e| self.named.remote(format!("key version {v}: {e}")))?;
            if let Ok(mut keys) = self.public_keys.lock() {
                keys.insert(v, der.clone());
            }
            if v == version {
                found = Some(der);
            }
        }
        found.ok_or_else(|| {
            self.named.remote(format!(
                "transit key {:?} ({}) has no public key for version {version}: a signing key type (ecdsa-p256, ecdsa-p384, ed25519, rsa-*) is needed",
                self.key,
                if kind.is_empty() { "unknown type" } else { kind }
            ))
        })
    }

    async fn latest_version(&self) -> Result<u64, KmsError> {
        let answer = self
            .call(
                reqwest::Method::GET,
                &format!("{}/keys/{}", self.mount, self.key),
                None,
            )
            .await?;
        answer["data"]["latest_version"]
            .as_u64()
            .ok_or_else(|| self.named.remote("the key has no latest_version"))
    }
}

/// Vault's `errors` list, joined.
fn errors_of(body: &Value) -> String {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "no details".to_owned())
}

/// `vault:v3:BASE64` → (3, signature bytes).
pub fn parse_signature(value: &str) -> Result<(u64, Vec<u8>), String> {
    let mut parts = value.splitn(3, ':');
    let (Some("vault"), Some(version), Some(sig)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("unexpected signature format {value:?}"));
    };
    let version = version
        .strip_prefix('v')
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("unexpected key version in {value:?}"))?;
    let sig = STANDARD
        .decode(sig)
        .map_err(|e| format!("signature is not base64: {e}"))?;
    Ok((version, sig))
}

impl RemoteSigner for Vault {
    fn uri(&self) -> &str {
        &self.named.0
    }

    fn sign<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, KmsError>> {
        Box::pin(async move {
            // RSA keys sign with PKCS#1 v1.5 (Vault's default is PSS), as cosign verifies;
            // Vault ignores the field for ECDSA and Ed25519 keys.
            let body =
                json!({"input": STANDARD.encode(message), "signature_algorithm": "pkcs1v15"});
            let answer = self
                .call(
                    reqwest::Method::POST,
                    &format!("{}/sign/{}/sha2-256", self.mount, self.key),
                    Some(&body),
                )
                .await?;
            let value = required(&answer, "/data/signature")
                .map_err(|e| self.named.remote(format!("sign: {e}")))?;
            let (version, signature) = parse_signature(value).map_err(|e| self.named.remote(e))?;
            // Make sure the version that signed has a public key verifiers can fetch.
            self.public_key(version).await?;
            if let Ok(mut last) = self.last_signed.lock() {
                if let Some(before) = last.filter(|before| *before != version) {
                    super::key_changed(
                        &self.named.0,
                        &format!("version {before}"),
                        &format!("version {version}"),
                    );
                }
                *last = Some(version);
            }
            Ok(signature)
        })
    }

    fn public_der(&self) -> BoxFuture<'_, Result<Vec<u8>, KmsError>> {
        Box::pin(async move {
            let version = self.latest_version().await?;
            self.public_key(version).await
        })
    }

    fn forget_public_key(&self) {
        if let Ok(mut keys) = self.public_keys.lock() {
            keys.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> KmsConfig {
        let mut c = KmsConfig::default();
        for (k, v) in pairs {
            let v = Some((*v).to_owned());
            match *k {
                "kmsref" => c.kmsref = v,
                "address" => c.auth_address = v,
                "token" => c.auth_token = v.map(Redacted::new),
                "token-path" => c.auth_token_path = v,
                "oidc.path" => c.auth_oidc_path = v,
                "oidc.role" => c.auth_oidc_role = v,
                other => panic!("{other}"),
            }
        }
        c
    }

    #[test]
    fn plain_http_vault_is_refused_off_this_machine_unless_marked_insecure() {
        let at = |address: &str| {
            Vault::from_config(&config(&[
                ("kmsref", "hashivault://signing"),
                ("address", address),
                ("token", "t"),
            ]))
        };
        for local in [
            "http://127.0.0.1:8200",
            "http://localhost:8200",
            "http://[::1]:8200",
        ] {
            assert!(at(local).is_ok(), "{local}");
        }
        assert!(at("https://vault.example:8200").is_ok());
        let err = at("http://vault.vault.svc:8200").unwrap_err().to_string();
        assert!(
            err.contains("plain HTTP") && err.contains("signers.kms.auth.insecure"),
            "{err}"
        );
        let mut insecure = config(&[
            ("kmsref", "hashivault://signing"),
            ("address", "http://vault.vault.svc:8200"),
            ("token", "t"),
        ]);
        insecure.auth_insecure = true;
        assert!(Vault::from_config(&insecure).is_ok());
    }

    #[test]
    fn the_vault_token_never_appears_in_debug_output() {
        let config = config(&[
            ("kmsref", "hashivault://signing"),
            ("address", "http://127.0.0.1:8200"),
            ("token", "hvs.inline-s3cr3t"),
        ]);
        let vault = Vault::from_config(&config).unwrap();
        for shown in [
            format!("{config:?}"),
            format!("{vault:?}"),
            format!("{:?}", vault.auth),
        ] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
        }
    }

    #[test]
    fn signatures_name_their_key_version() {
        let (v, sig) = parse_signature("vault:v12:AQID").unwrap();
        assert_eq!((v, sig), (12, vec![1, 2, 3]));
        assert!(parse_signature("vault:x:AQID").is_err());
        assert!(parse_signature("AQID").is_err());
    }

    #[test]
    fn configuration_errors_name_the_uri_and_never_the_token() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let err = Vault::from_config(&config(&[
            ("kmsref", "hashivault://"),
            ("address", "https://v:8200"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("hashivault://<key name>"), "{err}");
        let err = Vault::from_config(&config(&[
            ("kmsref", "hashivault://k"),
            ("address", "v:8200"),
            ("token", "s.secret-token"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("not an http(s) URL") && !err.contains("s.secret-token"),
            "{err}"
        );
        let ok = Vault::from_config(&config(&[
            ("kmsref", "hashivault://k"),
            ("address", "https://v:8200/"),
            ("oidc.path", "/jwt/"),
            ("oidc.role", "signer"),
        ]))
        .unwrap();
        assert_eq!(ok.address, "https://v:8200");
        assert!(matches!(ok.auth, Auth::Jwt { ref path, .. } if path == "jwt"));
        assert!(!format!("{ok:?}").contains("signer\""));
    }
}
