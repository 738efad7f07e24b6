// Over 450 lines: the distribution protocol a push needs in one client (auth challenges, tokens, blobs, manifests, referrers).
//! A small client for the OCI distribution API: what pushing signatures needs (read a
//! manifest, check and upload blobs, put a manifest), with Docker's token and basic
//! authentication. TLS is verified against the system roots (`SSL_CERT_FILE` and
//! `SSL_CERT_DIR` add others) unless the user set `storage.oci.repository.insecure`.
//! Errors name the registry and repository, never a credential.

use std::sync::Mutex;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, header};

use super::auth::Credential;
use super::layout::{DOCKER_MANIFEST, Descriptor, OCI_INDEX, OCI_MANIFEST, digest_of};
use crate::bodies::{MANIFEST_LIMIT, TOKEN_LIMIT, error_text, read_capped};

/// Why a registry request failed.
#[derive(Debug, thiserror::Error)]
#[error("registry {registry}, repository {repository}: {message}")]
pub struct RegistryError {
    pub registry: String,
    pub repository: String,
    pub message: String,
}

/// HTTP clients: one verifying TLS, one for registries marked insecure; the requests allowed
/// at once per registry; and the registries' answers to authentication, kept across runs.
#[derive(Clone, Debug)]
pub struct Clients {
    verified: reqwest::Client,
    insecure: reqwest::Client,
    limits: std::sync::Arc<crate::peers::PeerLimits>,
    auth: std::sync::Arc<AuthCache>,
    logins: std::sync::Arc<super::LoginCache>,
    tag_locks: std::sync::Arc<TagLocks>,
}

/// Writers of one tag take turns: a tag's manifest is read, appended to and written back, and
/// a registry has no compare-and-swap for tags, so two runs appending to one image's `.sig`
/// at once would each drop the other's layer. Striped (a fixed number of locks, chosen by the
/// tag's hash) so that hostile input cannot grow it.
#[derive(Debug)]
pub(crate) struct TagLocks(Vec<tokio::sync::Mutex<()>>);

const TAG_LOCK_STRIPES: usize = 64;

impl Default for TagLocks {
    fn default() -> Self {
        Self(
            (0..TAG_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        )
    }
}

/// Requests to one registry at once, at first and at most (see [`crate::peers`]).
const REGISTRY_CONCURRENCY: (usize, usize) = (64, 256);
/// A request the registry refused with 429/503 is sent again this many times.
const THROTTLE_RETRIES: u32 = 2;

/// How each registry and repository wanted to be authenticated, per credential, so that a
/// run does not pay the 401 and the token request that the previous run already paid.
/// Tokens are kept for their `expires_in` (less a margin), a basic-auth answer five minutes;
/// a kept answer that is refused is replaced through the normal challenge.
#[derive(Debug, Default)]
struct AuthCache(Mutex<std::collections::HashMap<AuthKey, (Auth, std::time::Instant)>>);

/// `(registry, repository, hash of the credential)`: the credential itself is not kept here.
type AuthKey = (String, String, u64);

/// Kept answers at most; past it the cache starts again (bounds memory under many repos).
const AUTH_CACHE_ENTRIES: usize = 4096;

impl AuthCache {
    fn get(&self, key: &AuthKey) -> Option<Auth> {
        let cache = self.0.lock().ok()?;
        let (auth, until) = cache.get(key)?;
        (std::time::Instant::now() < *until).then(|| auth.clone())
    }

    fn put(&self, key: AuthKey, auth: Auth, ttl: std::time::Duration) {
        if let Ok(mut cache) = self.0.lock() {
            if cache.len() >= AUTH_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(key, (auth, std::time::Instant::now() + ttl));
        }
    }
}

/// How long one request to a registry, Fulcio, Rekor or a timestamp authority may take:
/// `SIGNET_PEER_TIMEOUT` seconds (1 to 600), else 30.
pub fn peer_timeout() -> std::time::Duration {
    let seconds = std::env::var("SIGNET_PEER_TIMEOUT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| (1..=600).contains(s))
        .unwrap_or(30);
    std::time::Duration::from_secs(seconds)
}

impl Clients {
    pub fn new() -> Result<Self, reqwest::Error> {
        Self::trusting(None)
    }

    /// The TLS-verifying client (for other HTTPS services: Fulcio, Rekor).
    pub fn http(&self) -> &reqwest::Client {
        &self.verified
    }

    /// Clients that also trust the CA certificates in `pem` (beyond the system roots).
    pub fn trusting(pem: Option<&[u8]>) -> Result<Self, reqwest::Error> {
        let extra = pem.map(reqwest::Certificate::from_pem_bundle).transpose()?;
        let timeout = peer_timeout();
        let build = |insecure: bool| {
            let mut builder = reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(std::time::Duration::from_secs(5))
                .danger_accept_invalid_certs(insecure);
            for cert in extra.iter().flatten() {
                builder = builder.add_root_certificate(cert.clone());
            }
            builder.build()
        };
        Ok(Self {
            verified: build(false)?,
            insecure: build(true)?,
            limits: std::sync::Arc::new(crate::peers::PeerLimits::new(
                "registry",
                REGISTRY_CONCURRENCY.0,
                REGISTRY_CONCURRENCY.1,
            )),
            auth: std::sync::Arc::default(),
            logins: std::sync::Arc::default(),
            tag_locks: std::sync::Arc::default(),
        })
    }

    /// Pull-secret logins recently read, by ServiceAccount.
    pub fn logins(&self) -> &super::LoginCache {
        &self.logins
    }

    /// The per-registry limits (their metric families).
    pub fn limits(&self) -> &std::sync::Arc<crate::peers::PeerLimits> {
        &self.limits
    }
}

#[derive(Clone, Debug)]
enum Auth {
    None,
    Basic,
    Bearer(String),
}

/// One repository on one registry, with the credential to use there.
#[allow(clippy::struct_field_names)] // `repository` is the registry API's own word
pub struct Repository {
    http: reqwest::Client,
    /// `https://host` (or `http://host` for an insecure registry that speaks no TLS).
    base: Mutex<String>,
    insecure: bool,
    registry: String,
    repository: String,
    credential: Option<Credential>,
    auth: Mutex<Auth>,
    limits: std::sync::Arc<crate::peers::PeerLimits>,
    cache: std::sync::Arc<AuthCache>,
    tag_locks: std::sync::Arc<TagLocks>,
}

fn auth_key(registry: &str, repository: &str, credential: Option<&Credential>) -> AuthKey {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    if let Some(c) = credential {
        (&c.username, &c.password).hash(&mut hasher);
    }
    (registry.to_owned(), repository.to_owned(), hasher.finish())
}

/// `key="value"` pairs of a `WWW-Authenticate` challenge.
fn challenge_params(header: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = header;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq]
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (&quoted[..end], quoted.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        out.push((key, value.to_owned()));
        rest = next;
    }
    out
}

impl Repository {
    pub fn new(
        clients: &Clients,
        registry: &str,
        repository: &str,
        credential: Option<Credential>,
        insecure: bool,
    ) -> Self {
        let key = auth_key(registry, repository, credential.as_ref());
        let auth = clients.auth.get(&key).unwrap_or(Auth::None);
        Self {
            http: if insecure {
                clients.insecure.clone()
            } else {
                clients.verified.clone()
            },
            base: Mutex::new(format!("https://{registry}")),
            insecure,
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            credential,
            auth: Mutex::new(auth),
            limits: clients.limits.clone(),
            cache: clients.auth.clone(),
            tag_locks: clients.tag_locks.clone(),
        }
    }

    /// This process's turn at writing `tag` (see [`TagLocks`]).
    pub async fn lock_tag(&self, tag: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (&self.registry, &self.repository, tag).hash(&mut hasher);
        let stripe = usize::try_from(hasher.finish() % TAG_LOCK_STRIPES as u64).unwrap_or(0);
        self.tag_locks.0[stripe].lock().await
    }

    fn error(&self, message: impl Into<String>) -> RegistryError {
        RegistryError {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            message: message.into(),
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            return path.to_owned();
        }
        let base = self.base.lock().map(|b| b.clone()).unwrap_or_default();
        format!("{base}{path}")
    }

    /// Whether `url` is on the registry the credential was matched for: the same scheme as
    /// the registry is spoken to (https, or http once an insecure registry fell back to it),
    /// host and effective port. A registry may send an upload elsewhere (`Location` on another
    /// host, as storage back ends do); that host gets the request but never the registry's
    /// credential or token — nor does the same host over another scheme.
    fn is_registry(&self, url: &str) -> bool {
        let Ok(parsed) = reqwest::Url::parse(url) else {
            return false;
        };
        // The registry as spoken to now: its scheme, and `host[:port]` as configured.
        let Ok(base) = reqwest::Url::parse(&self.url("/")) else {
            return false;
        };
        let Ok(own) = reqwest::Url::parse(&format!("{}://{}/", base.scheme(), self.registry))
        else {
            return false;
        };
        parsed.scheme() == own.scheme()
            && parsed.username().is_empty()
            && parsed.host_str().is_some()
            && parsed.host_str() == own.host_str()
            && parsed.port_or_known_default() == own.port_or_known_default()
    }

    /// Refuses a plain-HTTP address the registry sent (`Location`) unless it is marked
    /// insecure: what goes there, and what comes back, is readable and changeable on the way.
    fn refuse_cleartext(&self, url: &str) -> Result<(), RegistryError> {
        if self.insecure || !url.starts_with("http://") {
            return Ok(());
        }
        Err(self.error(format!(
            "refused to send to {} over plain HTTP: the registry is not marked insecure (storage.oci.insecure)",
            url.split(['?', '#']).next().unwrap_or_default()
        )))
    }

    /// Sends a request, answering one authentication challenge if the registry asks.
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, RegistryError> {
        // At most one fall-back to plain HTTP (insecure registries) and one answered challenge.
        let (mut fell_back, mut answered) = (false, false);
        let mut throttled = 0;
        loop {
            let url = self.url(path);
            self.refuse_cleartext(&url)?;
            let ours = self.is_registry(&url);
            let mut request = self
                .http
                .request(method.clone(), &url)
                .headers(headers.clone());
            if let Some(body) = &body {
                request = request.body(body.clone());
            }
            if ours {
                request = match (
                    &*self.auth.lock().map_err(|_| self.error("lock"))?,
                    &self.credential,
                ) {
                    (Auth::Bearer(token), _) => request.bearer_auth(token),
                    (Auth::Basic, Some(c)) => request.basic_auth(&c.username, Some(&c.password)),
                    _ => request,
                };
            }
            // A place at the registry for the request only (not for a token request below,
            // which may go to the same host).
            let permit = self.limits.acquire(&self.registry).await;
            let response = match request.send().await {
                Ok(r) => r,
                // An insecure registry may speak plain HTTP: try that once.
                Err(e)
                    if self.insecure
                        && !fell_back
                        && self.url("").starts_with("https://")
                        && (e.is_connect() || e.is_request()) =>
                {
                    fell_back = true;
                    if let Ok(mut base) = self.base.lock() {
                        *base = format!("http://{}", self.registry);
                    }
                    continue;
                }
                Err(e) => return Err(self.error(format!("{method} failed: {}", without_url(&e)))),
            };
            if crate::peers::is_throttling(response.status().as_u16()) {
                permit.throttled();
                drop(permit);
                if throttled < THROTTLE_RETRIES {
                    throttled += 1;
                    let backoff = std::time::Duration::from_millis(500) * 2u32.pow(throttled);
                    let wait = crate::peers::retry_after(
                        response.headers(),
                        backoff,
                        std::time::Duration::from_secs(5),
                    );
                    tracing::debug!(registry = %self.registry, status = %response.status(), ?wait, "registry asked to slow down; asking again");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                return Ok(response);
            }
            permit.answered();
            drop(permit);
            // Another host's challenge is not answered: the credential is the registry's.
            if response.status() != StatusCode::UNAUTHORIZED || answered || !ours {
                return Ok(response);
            }
            answered = true;
            let challenge = response
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let (next, ttl) = self.authenticate(&challenge).await?;
            self.cache.put(
                auth_key(&self.registry, &self.repository, self.credential.as_ref()),
                next.clone(),
                ttl,
            );
            if let Ok(mut auth) = self.auth.lock() {
                *auth = next;
            }
        }
    }

    /// Answers a `WWW-Authenticate` challenge: basic, or a bearer token from the realm.
    /// Returns how long the answer may be kept for the next runs.
    async fn authenticate(
        &self,
        challenge: &str,
    ) -> Result<(Auth, std::time::Duration), RegistryError> {
        let scheme = challenge.split_whitespace().next().unwrap_or_default();
        if scheme.eq_ignore_ascii_case("basic") {
            return if self.credential.is_some() {
                Ok((Auth::Basic, std::time::Duration::from_secs(300)))
            } else {
                Err(self.error("401 Unauthorized: the registry wants credentials and no pull secret matched it"))
            };
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(self.error(format!(
                "401 Unauthorized with an unsupported challenge {scheme:?}"
            )));
        }
        let params = challenge_params(&challenge[scheme.len()..]);
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let realm = get("realm")
            .ok_or_else(|| self.error("401 with a bearer challenge that has no realm"))?;
        // The credential goes to the realm in the clear otherwise.
        if !(realm.starts_with("https://") || self.insecure && realm.starts_with("http://")) {
            return Err(self.error(format!(
                "401 with a token realm that is not https ({}); mark the registry insecure (storage.oci.insecure) to allow it",
                realm.split(['?', '#']).next().unwrap_or_default()
            )));
        }
        let mut query = vec![(
            "scope".to_owned(),
            format!("repository:{}:pull,push", self.repository),
        )];
        if let Some(service) = get("service") {
            query.push(("service".to_owned(), service));
        }
        let mut request = self.http.get(&realm).query(&query);
        if let Some(c) = &self.credential {
            request = request.basic_auth(&c.username, Some(&c.password));
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.error(format!("token request failed: {}", without_url(&e))))?;
        if !response.status().is_success() {
            return Err(self.error(format!("token request refused: {}", response.status())));
        }
        let body = read_capped(response, TOKEN_LIMIT)
            .await
            .map_err(|e| self.error(format!("token response unreadable: {e}")))?;
        let body: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| self.error("token response unreadable: not JSON"))?;
        // Docker's token protocol: 60 s when the answer does not say; kept 10 s less, and
        // never more than five minutes.
        let lifetime = body["expires_in"].as_u64().unwrap_or(60).min(300);
        let ttl = std::time::Duration::from_secs(lifetime.saturating_sub(10));
        body["token"]
            .as_str()
            .or_else(|| body["access_token"].as_str())
            .filter(|t| !t.is_empty())
            .map(|t| (Auth::Bearer(t.to_owned()), ttl))
            .ok_or_else(|| self.error("token response without a token"))
    }

    async fn failure(&self, what: &str, response: reqwest::Response) -> RegistryError {
        let status = response.status();
        let text = error_text(response).await;
        let detail = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let hint = match status {
            StatusCode::UNAUTHORIZED => " (credentials missing or wrong)",
            StatusCode::FORBIDDEN => " (the credentials may not push here)",
            _ => "",
        };
        self.error(format!(
            "{what}: {status}{hint}{}{detail}",
            if detail.is_empty() { "" } else { ": " }
        ))
    }

    /// The manifest under `reference` (tag or digest) and its media type; `None` if absent.
    pub async fn manifest(&self, reference: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            format!("{OCI_MANIFEST}, {DOCKER_MANIFEST}, {OCI_INDEX}")
                .parse()
                .map_err(|_| self.error("header"))?,
        );
        let path = format!("/v2/{}/manifests/{reference}", self.repository);
        let response = self.send(Method::GET, &path, headers, None).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => read_capped(response, MANIFEST_LIMIT)
                .await
                .map(Some)
                .map_err(|e| self.error(format!("reading manifest {reference}: {e}"))),
            _ => Err(self
                .failure(&format!("reading manifest {reference}"), response)
                .await),
        }
    }

    /// The index of `digest`'s referrers: from the referrers API, or where the registry has
    /// none (404), from the fallback tag `fallback_tag`; `None` when neither lists any.
    pub async fn referrers(
        &self,
        digest: &str,
        fallback_tag: &str,
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            OCI_INDEX.parse().map_err(|_| self.error("header"))?,
        );
        let path = format!("/v2/{}/referrers/{digest}", self.repository);
        let response = self.send(Method::GET, &path, headers, None).await?;
        match response.status() {
            StatusCode::NOT_FOUND => self.manifest(fallback_tag).await,
            s if s.is_success() => read_capped(response, MANIFEST_LIMIT)
                .await
                .map(Some)
                .map_err(|e| self.error(format!("reading referrers of {digest}: {e}"))),
            _ => Err(self.failure("reading referrers", response).await),
        }
    }

    /// The blob `digest`, `None` if absent, at most `limit` bytes. Its content is checked
    /// against the digest: a registry that answers with other bytes is an error.
    pub async fn blob(&self, digest: &str, limit: usize) -> Result<Option<Vec<u8>>, RegistryError> {
        let path = format!("/v2/{}/blobs/{digest}", self.repository);
        let mut response = self
            .send(Method::GET, &path, HeaderMap::new(), None)
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => return Ok(None),
            s if s.is_success() => {}
            _ => {
                return Err(self
                    .failure(&format!("reading blob {digest}"), response)
                    .await);
            }
        }
        let mut data = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.error(format!("reading blob {digest}: {}", without_url(&e))))?
        {
            if data.len() + chunk.len() > limit {
                return Err(self.error(format!("blob {digest} is larger than {limit} bytes")));
            }
            data.extend_from_slice(&chunk);
        }
        if digest_of(&data) != digest {
            return Err(self.error(format!("blob {digest}: the registry sent other content")));
        }
        Ok(Some(data))
    }

    /// The descriptor of the manifest under `digest` (an image's own), `None` if absent.
    pub async fn head_manifest(&self, digest: &str) -> Result<Option<Descriptor>, RegistryError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
                .parse()
                .map_err(|_| self.error("header"))?,
        );
        let path = format!("/v2/{}/manifests/{digest}", self.repository);
        let response = self.send(Method::HEAD, &path, headers, None).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let get = |name: header::HeaderName| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                Ok(Some(Descriptor {
                    media_type: get(header::CONTENT_TYPE)
                        .unwrap_or_else(|| OCI_MANIFEST.to_owned()),
                    size: get(header::CONTENT_LENGTH)
                        .and_then(|l| l.parse().ok())
                        .unwrap_or_default(),
                    digest: digest.to_owned(),
                    annotations: None,
                }))
            }
            _ => Err(self
                .failure(&format!("checking image {digest}"), response)
                .await),
        }
    }

    /// Uploads `data` as a blob unless the registry has it already.
    pub async fn push_blob(&self, data: &[u8]) -> Result<(), RegistryError> {
        let digest = digest_of(data);
        let path = format!("/v2/{}/blobs/{digest}", self.repository);
        let head = self
            .send(Method::HEAD, &path, HeaderMap::new(), None)
            .await?;
        if head.status().is_success() {
            return Ok(());
        }
        self.upload_blob(data).await
    }

    /// Uploads `data` as a blob without asking first whether the registry has it: for a
    /// small blob that is new nearly every time (a signature layer, the config listing a
    /// tag's layers), the question costs a round trip more than uploading it again would.
    pub async fn upload_blob(&self, data: &[u8]) -> Result<(), RegistryError> {
        let digest = digest_of(data);
        let start = format!("/v2/{}/blobs/uploads/", self.repository);
        let started = self
            .send(Method::POST, &start, HeaderMap::new(), Some(Bytes::new()))
            .await?;
        if started.status() != StatusCode::ACCEPTED {
            return Err(self.failure("starting a blob upload", started).await);
        }
        let location = started
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.error("blob upload started without a Location"))?
            .to_owned();
        let separator = if location.contains('?') { '&' } else { '?' };
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/octet-stream"),
        );
        let put = self
            .send(
                Method::PUT,
                &format!("{location}{separator}digest={digest}"),
                headers,
                Some(Bytes::copy_from_slice(data)),
            )
            .await?;
        if put.status().is_success() {
            Ok(())
        } else {
            Err(self.failure("uploading a blob", put).await)
        }
    }

    /// Puts an OCI image manifest under `tag`.
    pub async fn put_manifest(&self, tag: &str, manifest: &[u8]) -> Result<(), RegistryError> {
        self.put(tag, manifest, OCI_MANIFEST).await.map(|_| ())
    }

    /// Puts a manifest of `media_type` under `reference` (a tag or its digest). Returns
    /// whether the registry processed its `subject` (the `OCI-Subject` response header of
    /// registries with the referrers API).
    pub async fn put(
        &self,
        reference: &str,
        manifest: &[u8],
        media_type: &'static str,
    ) -> Result<bool, RegistryError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static(media_type),
        );
        let path = format!("/v2/{}/manifests/{reference}", self.repository);
        let body = Some(Bytes::copy_from_slice(manifest));
        let response = self.send(Method::PUT, &path, headers, body).await?;
        if response.status().is_success() {
            Ok(response.headers().contains_key("oci-subject"))
        } else {
            Err(self
                .failure(&format!("writing {reference}"), response)
                .await)
        }
    }
}

/// A reqwest error's text without its URL (upload URLs can carry session state).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repository(registry: &str, insecure: bool) -> Repository {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let credential = Credential {
            username: "u".to_owned(),
            password: "p".to_owned(),
        };
        Repository::new(
            &Clients::new().unwrap(),
            registry,
            "team/app",
            Some(credential),
            insecure,
        )
    }

    #[test]
    fn only_the_registry_itself_is_the_registry() {
        let repo = repository("127.0.0.1:5000", false);
        assert!(repo.is_registry("https://127.0.0.1:5000/v2/team/app/blobs/uploads/x"));
        for other in [
            // The same host and port in the clear is another peer (a credential sent there
            // is readable on the way).
            "http://127.0.0.1:5000/v2/",
            "https://127.0.0.2:5000/upload",
            "https://127.0.0.1:5001/v2/",
            "https://127.0.0.1/v2/",
            "https://127.0.0.1:5000@evil.test/v2/",
            "https://evil.test/?127.0.0.1:5000",
            "not a url",
        ] {
            assert!(!repo.is_registry(other), "{other}");
        }
        let standard = repository("registry.example.com", false);
        assert!(standard.is_registry("https://registry.example.com/v2/"));
        assert!(standard.is_registry("https://REGISTRY.example.com:443/v2/"));
        assert!(!standard.is_registry("https://registry.example.com.evil.test/v2/"));
        assert!(!standard.is_registry("http://registry.example.com/v2/"));
        assert!(!standard.is_registry("https://registry.example.com:8443/v2/"));
        assert!(!standard.is_registry("https://u:p@registry.example.com/v2/"));
    }

    #[test]
    fn a_plain_http_address_is_refused_unless_the_registry_is_insecure() {
        let secure = repository("127.0.0.1:5000", false);
        let err = secure
            .refuse_cleartext("http://127.0.0.1:5000/v2/team/app/blobs/uploads/x?state=s")
            .unwrap_err();
        assert!(
            err.message.contains("plain HTTP") && !err.message.contains("state="),
            "{err}"
        );
        assert!(
            secure
                .refuse_cleartext("https://127.0.0.1:5000/v2/")
                .is_ok()
        );
        let insecure = repository("127.0.0.1:5000", true);
        assert!(
            insecure
                .refuse_cleartext("http://127.0.0.1:5000/v2/")
                .is_ok()
        );
        // Once an insecure registry fell back to plain HTTP, that is how it is spoken to.
        if let Ok(mut base) = insecure.base.lock() {
            *base = "http://127.0.0.1:5000".to_owned();
        }
        assert!(insecure.is_registry("http://127.0.0.1:5000/v2/"));
        assert!(!insecure.is_registry("https://127.0.0.1:5000/v2/"));
    }

    #[tokio::test]
    async fn a_token_realm_in_the_clear_is_refused_unless_the_registry_is_insecure() {
        let challenge = r#"Bearer realm="http://127.0.0.1:1/token",service="r""#;
        let err = repository("127.0.0.1:5000", false)
            .authenticate(challenge)
            .await
            .err()
            .unwrap();
        assert!(err.message.contains("not https"), "{err}");
        // Insecure: the realm is asked (nothing listens on port 1, so the request fails).
        let err = repository("127.0.0.1:5000", true)
            .authenticate(challenge)
            .await
            .err()
            .unwrap();
        assert!(err.message.contains("token request failed"), "{err}");
    }

    #[test]
    fn bearer_challenges_are_parsed() {
        let params = challenge_params(
            r#" realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull""#,
        );
        assert_eq!(
            params,
            [
                (
                    "realm".to_owned(),
                    "https://auth.example.com/token".to_owned()
                ),
                ("service".to_owned(), "registry.example.com".to_owned()),
                ("scope".to_owned(), "repository:a/b:pull".to_owned()),
            ]
        );
    }
}
