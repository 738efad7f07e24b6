//! Remote signers: keys that never leave a KMS or Vault (`signers.kms.kmsref`). Each provider
//! is a small client for its HTTP API behind a cargo feature; all of them sign the way
//! cosign's KMS providers do for the same key — ECDSA over SHA-256 (DER), RSA PKCS#1 v1.5
//! over SHA-256, pure Ed25519 — so `cosign verify* --key <kmsref>` accepts the result.
//!
//! Errors name the KMS URI and what went wrong, never a token or key material.

use std::future::Future;
use std::pin::Pin;

use signet_config::KmsConfig;

#[cfg(feature = "awskms")]
pub mod aws;
#[cfg(feature = "azurekms")]
pub mod azure;
#[cfg(any(
    feature = "awskms",
    feature = "azurekms",
    feature = "gcpkms",
    feature = "hashivault",
    feature = "gcs",
    feature = "docdb",
    feature = "grafeas"
))]
pub(crate) mod common;
pub mod der;
#[cfg(feature = "gcpkms")]
pub mod gcp;
#[cfg(feature = "hashivault")]
pub mod vault;

/// A boxed future, for the object-safe [`RemoteSigner`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a KMS could not sign.
#[derive(Clone, Debug, thiserror::Error)]
pub enum KmsError {
    #[error("signers.kms.kmsref {uri:?}: {message}")]
    Config { uri: String, message: String },
    #[error("{uri}: {provider} support is not built into this signer (cargo feature {feature})")]
    NotBuilt {
        uri: String,
        provider: &'static str,
        feature: &'static str,
    },
    #[error("{uri}: {message}")]
    Remote { uri: String, message: String },
    #[error("{uri}: authentication failed: {message}")]
    Auth { uri: String, message: String },
}

/// A key held by a KMS.
pub trait RemoteSigner: Send + Sync + std::fmt::Debug {
    /// The `kmsref` this signer was made from (for messages).
    fn uri(&self) -> &str;
    /// Signs `message` (the KMS hashes it with SHA-256 where the key type calls for it) with
    /// the key version in force; returns the signature cosign expects.
    fn sign<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, KmsError>>;
    /// The PKIX (SPKI DER) public key of the version that signs now.
    fn public_der(&self) -> BoxFuture<'_, Result<Vec<u8>, KmsError>>;
    /// Drops any public key the client keeps: a signature did not verify with it, so it may
    /// have come from a forged or corrupted answer, and the next run reads it again.
    fn forget_public_key(&self) {}
}

/// The providers sigstore knows, by URI scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Aws,
    Gcp,
    Azure,
    Vault,
}

impl Provider {
    /// The provider of `uri`, from its scheme.
    pub fn of(uri: &str) -> Result<Self, KmsError> {
        let scheme = uri.split_once("://").map(|(s, _)| s).unwrap_or_default();
        match scheme {
            "awskms" => Ok(Self::Aws),
            "gcpkms" => Ok(Self::Gcp),
            "azurekms" => Ok(Self::Azure),
            "hashivault" => Ok(Self::Vault),
            _ => Err(KmsError::Config {
                uri: uri.to_owned(),
                message: "unknown scheme: use awskms://, gcpkms://, azurekms:// or hashivault://"
                    .to_owned(),
            }),
        }
    }
}

/// The remote signer for `config.kmsref`.
pub fn from_config(config: &KmsConfig) -> Made {
    let uri = config.kmsref.clone().ok_or_else(|| KmsError::Config {
        uri: String::new(),
        message: "the kms signer needs signers.kms.kmsref".to_owned(),
    })?;
    // Used only by providers whose feature is off.
    #[allow(unused_variables)]
    let not_built = |provider, feature| KmsError::NotBuilt {
        uri: uri.clone(),
        provider,
        feature,
    };
    match Provider::of(&uri)? {
        #[cfg(feature = "hashivault")]
        Provider::Vault => Ok(std::sync::Arc::new(vault::Vault::from_config(config)?)),
        #[cfg(not(feature = "hashivault"))]
        Provider::Vault => Err(not_built("Vault transit", "hashivault")),
        #[cfg(feature = "awskms")]
        Provider::Aws => Ok(std::sync::Arc::new(aws::Aws::from_config(config)?)),
        #[cfg(not(feature = "awskms"))]
        Provider::Aws => Err(not_built("AWS KMS", "awskms")),
        #[cfg(feature = "gcpkms")]
        Provider::Gcp => Ok(std::sync::Arc::new(gcp::Gcp::from_config(config)?)),
        #[cfg(not(feature = "gcpkms"))]
        Provider::Gcp => Err(not_built("Google Cloud KMS", "gcpkms")),
        #[cfg(feature = "azurekms")]
        Provider::Azure => Ok(std::sync::Arc::new(azure::Azure::from_config(config)?)),
        #[cfg(not(feature = "azurekms"))]
        Provider::Azure => Err(not_built("Azure Key Vault", "azurekms")),
    }
}

/// The KMS signer for the `signers.kms.*` in force, made once per distinct configuration (so
/// a cached token or public key lives as long as the configuration does), its signing
/// requests limited per key (see [`crate::peers`]).
pub struct KmsSigners {
    current: std::sync::Mutex<Option<(KmsConfig, Made)>>,
    limits: std::sync::Arc<crate::peers::PeerLimits>,
}

/// Signing requests to one KMS key at once, at first and at most.
const KMS_CONCURRENCY: (usize, usize) = (64, 256);

impl Default for KmsSigners {
    fn default() -> Self {
        Self {
            current: std::sync::Mutex::default(),
            limits: std::sync::Arc::new(crate::peers::PeerLimits::new(
                "kms",
                KMS_CONCURRENCY.0,
                KMS_CONCURRENCY.1,
            )),
        }
    }
}

/// A KMS key's signer behind its key's concurrency limit.
#[derive(Debug)]
struct Limited {
    inner: std::sync::Arc<dyn RemoteSigner>,
    limits: std::sync::Arc<crate::peers::PeerLimits>,
}

/// Whether a KMS error says the service is throttling or overloaded (each provider words
/// it differently; all include the status or the provider's name for it).
fn is_throttled(error: &KmsError) -> bool {
    let text = error.to_string();
    [
        "429",
        "503",
        "Throttl",
        "TooManyRequests",
        "RESOURCE_EXHAUSTED",
        "SlowDown",
    ]
    .iter()
    .any(|sign| text.contains(sign))
}

impl RemoteSigner for Limited {
    fn uri(&self) -> &str {
        self.inner.uri()
    }

    fn sign<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, KmsError>> {
        Box::pin(async move {
            let permit = self.limits.acquire(self.inner.uri()).await;
            let signed = self.inner.sign(message).await;
            match &signed {
                Err(e) if is_throttled(e) => permit.throttled(),
                _ => permit.answered(),
            }
            signed
        })
    }

    fn public_der(&self) -> BoxFuture<'_, Result<Vec<u8>, KmsError>> {
        self.inner.public_der()
    }

    fn forget_public_key(&self) {
        self.inner.forget_public_key();
    }
}

type Made = Result<std::sync::Arc<dyn RemoteSigner>, KmsError>;

impl KmsSigners {
    /// `None` when `config` names no KMS key.
    pub fn signer(&self, config: &KmsConfig) -> Option<Made> {
        config.kmsref.as_ref()?;
        let mut slot = match self.current.lock() {
            Ok(slot) => slot,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((made_for, made)) = slot.as_ref()
            && made_for == config
        {
            return Some(made.clone());
        }
        let made = from_config(config).map(|inner| {
            std::sync::Arc::new(Limited {
                inner,
                limits: self.limits.clone(),
            }) as std::sync::Arc<dyn RemoteSigner>
        });
        *slot = Some((config.clone(), made.clone()));
        Some(made)
    }
}

impl KmsSigners {
    /// The per-key limits (their metric families).
    pub fn limits(&self) -> &std::sync::Arc<crate::peers::PeerLimits> {
        &self.limits
    }
}

/// A key that a `kmsref` names and that changed between two reads: an alias moved to another
/// key, a new key version made the one that signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyChange {
    pub uri: String,
    pub before: String,
    pub now: String,
}

/// Changes not yet published as Events (bounded: the oldest are dropped past 32), and their
/// count for `signet_signer_kms_key_changes_total`.
static KEY_CHANGES: std::sync::Mutex<Vec<KeyChange>> = std::sync::Mutex::new(Vec::new());
static KEY_CHANGES_TOTAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Reports that `uri` now names key `now` where it named `before`: logged, counted, and queued
/// for the next signed run's Event ([`take_key_changes`]). Signatures from now on verify with
/// the new key's public key; nothing signs with one key while publishing another's.
pub fn key_changed(uri: &str, before: &str, now: &str) {
    tracing::warn!(
        kmsref = %uri,
        before,
        now,
        "the KMS key the URI names has changed: signatures from now on verify with the new key's public key"
    );
    KEY_CHANGES_TOTAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut queued = match KEY_CHANGES.lock() {
        Ok(queued) => queued,
        Err(poisoned) => poisoned.into_inner(),
    };
    if queued.len() >= 32 {
        queued.remove(0);
    }
    queued.push(KeyChange {
        uri: uri.to_owned(),
        before: before.to_owned(),
        now: now.to_owned(),
    });
}

/// The key changes reported since the last call.
pub fn take_key_changes() -> Vec<KeyChange> {
    match KEY_CHANGES.lock() {
        Ok(mut queued) => std::mem::take(&mut *queued),
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
    }
}

/// `signet_signer_kms_key_changes_total`.
pub fn key_changes_total() -> signet_runtime::health::Sampled {
    signet_runtime::health::Sampled {
        name: "signet_signer_kms_key_changes_total",
        help: "Times the KMS key that signers.kms.kmsref names changed (an alias moved, a new version became the signing one).",
        type_: "counter",
        read: std::sync::Arc::new(|| {
            // Counts stay far below 2^53.
            #[allow(clippy::cast_precision_loss)]
            let value = KEY_CHANGES_TOTAL.load(std::sync::atomic::Ordering::Relaxed) as f64;
            vec![(String::new(), value)]
        }),
    }
}

/// How long key metadata (public key, version, algorithm) is cached before it is read again,
/// so that a rotated key or a moved alias is followed: `SIGNET_KMS_KEY_TTL` seconds, default
/// 300 (as sigstore's providers cache it).
pub fn key_ttl() -> std::time::Duration {
    let seconds = std::env::var("SIGNET_KMS_KEY_TTL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    std::time::Duration::from_secs(seconds)
}

pub use der::{spki_from_ed25519, spki_from_pem};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_come_from_the_scheme_and_unknown_ones_are_named() {
        assert_eq!(
            Provider::of("hashivault://signing").unwrap(),
            Provider::Vault
        );
        assert_eq!(Provider::of("awskms:///alias/x").unwrap(), Provider::Aws);
        assert_eq!(
            Provider::of(
                "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1"
            )
            .unwrap(),
            Provider::Gcp
        );
        assert_eq!(
            Provider::of("azurekms://v.vault.azure.net/k").unwrap(),
            Provider::Azure
        );
        let err = Provider::of("k8s://ns/secret").unwrap_err().to_string();
        assert!(
            err.contains("unknown scheme") && err.contains("k8s://ns/secret"),
            "{err}"
        );
    }
}
