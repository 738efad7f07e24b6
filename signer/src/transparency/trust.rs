//! Where trust in a Sigstore service comes from, shared by the transparency logs and the
//! timestamp authorities: a trusted root (`sigstore.trusted-root`), else cosign's
//! environment pins, else what the service serves (trusted on first use, kept per process);
//! and reading a service's answer within a size limit.

use std::time::Duration;

use signet_config::trusted_root::TrustedRoot;

/// What a trusted root (`sigstore.trusted-root`) says about one peer.
#[derive(Clone, Debug, Default)]
pub enum Pinned<T> {
    /// No trusted root: the environment's pins, else trust on first use.
    #[default]
    NoRoot,
    /// The trusted root's material for this peer, the only one trusted.
    Root(T),
    /// The trusted root names no such peer: nothing is trusted.
    NotInRoot,
}

impl<T: Clone> Pinned<T> {
    pub fn of(root: Option<&TrustedRoot>, find: impl FnOnce(&TrustedRoot) -> Option<T>) -> Self {
        match root.map(find) {
            None => Self::NoRoot,
            Some(Some(found)) => Self::Root(found),
            Some(None) => Self::NotInRoot,
        }
    }

    /// The trusted root's material for this peer (`what`: "log", "timestamp authority"), an
    /// error when the root names no such peer, `None` when there is no trusted root.
    pub fn resolve(&self, what: &str) -> Result<Option<T>, String> {
        match self {
            Self::Root(found) => Ok(Some(found.clone())),
            Self::NotInRoot => Err(format!(
                "the trusted root (sigstore.trusted-root) names no {what} at this URL"
            )),
            Self::NoRoot => Ok(None),
        }
    }
}

/// Trust material read once per process, by peer URL (logs' keys, authorities' chains).
#[derive(Debug)]
pub struct PeerCache<T>(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, T>>>);

impl<T> Default for PeerCache<T> {
    fn default() -> Self {
        Self(std::sync::Arc::default())
    }
}

impl<T> Clone for PeerCache<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: Clone> PeerCache<T> {
    pub fn get(&self, url: &str) -> Option<T> {
        self.0.lock().ok().and_then(|m| m.get(url).cloned())
    }

    pub fn insert(&self, url: &str, value: T) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(url.to_owned(), value);
        }
    }
}

/// What a peer serves at `url` for trust on first use (a log's key, an authority's chain):
/// the answer, once it is a success.
pub(crate) async fn served(http: &reqwest::Client, url: &str) -> Result<reqwest::Response, String> {
    let response = http
        .get(url)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if response.status().is_success() {
        Ok(response)
    } else {
        Err(response.status().to_string())
    }
}

pub(crate) use crate::bodies::read_capped;

/// The text of the file the environment variable `variable` names (cosign's pins:
/// `SIGSTORE_REKOR_PUBLIC_KEY`, `SIGSTORE_TSA_CERTIFICATE_FILE`); `None` when it is unset.
pub(crate) async fn pinned_file(variable: &str) -> Option<Result<String, String>> {
    let path = std::env::var_os(variable).filter(|p| !p.is_empty())?;
    Some(
        tokio::fs::read_to_string(&path)
            .await
            .map_err(|e| format!("reading {variable}={}: {e}", path.to_string_lossy())),
    )
}

/// The start of an error answer's text, for a message (at most 200 characters).
pub(crate) fn excerpt(body: &str) -> String {
    body.trim().chars().take(200).collect()
}
