//! The signer's ConfigMap and signing Secret, watched through the API so a change applies to
//! the next run within a second, without a restart. Holds parsed values, never raw keys.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::watch::status::WatchStatus;
use signet_config::keys::{SigningKey, SigningKeyError};
use signet_config::{ConfigError, Pins, SignerConfig};
use signet_runtime::health::Health;

type Shared<T> = Arc<RwLock<T>>;
type KeyResult = Result<Arc<SigningKey>, Arc<SigningKeyError>>;

/// The latest parsed configuration and key.
#[derive(Clone)]
pub struct Sources {
    config: Shared<Result<Arc<SignerConfig>, ConfigError>>,
    key: Shared<KeyResult>,
    config_synced: Arc<AtomicBool>,
    key_synced: Arc<AtomicBool>,
}

/// Watches the object `name` in `api`, calling `update` with it (or `None` once deleted),
/// and sets `synced` after the initial state arrived.
fn watch_one<K, F, Fut>(
    api: Api<K>,
    (name, mut status): (String, WatchStatus),
    synced: Arc<AtomicBool>,
    update: F,
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Clone + Eq + std::hash::Hash,
    F: Fn(Option<K>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let selector = watcher::Config::default().fields(&format!("metadata.name={name}"));
    tokio::spawn(async move {
        let mut events = watcher(api, selector).default_backoff().boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                    status.working();
                    update(Some(obj)).await;
                }
                Ok(watcher::Event::Delete(_)) => {
                    status.working();
                    update(None).await;
                }
                Ok(watcher::Event::InitDone) => {
                    status.listed();
                    synced.store(true, Ordering::Release);
                }
                // A (re)list is starting: neither success nor failure yet.
                Ok(watcher::Event::Init) => {}
                Err(error) => status.failed(&error),
            }
        }
    });
}

fn load_config(cm: Option<ConfigMap>, id: &str) -> Result<Arc<SignerConfig>, ConfigError> {
    // Without a ConfigMap the signer runs on Chains' defaults, as Chains does.
    let parsed = SignerConfig::parse(&cm.and_then(|c| c.data).unwrap_or_default())
        .and_then(|config| config.check_pinned(Pins::from_env()).map(|()| config));
    match &parsed {
        Ok(_) => tracing::info!(config_map = %id, "configuration loaded"),
        Err(error) => {
            tracing::error!(%error, config_map = %id, "configuration rejected; runs fail until it is fixed");
        }
    }
    parsed.map(Arc::new)
}

async fn load_key(secret: Option<Secret>, id: String) -> KeyResult {
    let Some(secret) = secret else {
        tracing::error!(secret = %id, "signing Secret absent; key-based signing fails until it exists");
        return Err(Arc::new(SigningKeyError::Missing { secret: id }));
    };
    let data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    let name = id.clone();
    // scrypt is deliberately slow: keep it off the async workers, on a thread of its own that
    // ends when the key is open, so that the allocator hands the 64 MiB scrypt works in back
    // to the system at once (a pooled blocking thread would keep it for its 10 s idle life).
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("open-signing-key".to_owned())
        .spawn(move || {
            let _ = tx.send(SigningKey::from_secret_data(&name, &data));
        });
    let loaded = match spawned {
        Ok(_) => rx.await.ok(),
        Err(_) => None,
    }
    .unwrap_or_else(|| Err(SigningKeyError::Missing { secret: id.clone() }));
    match &loaded {
        Ok(_) => tracing::info!(secret = %id, "signing key loaded"),
        Err(error) => tracing::error!(%error, "signing key unusable; key-based signing fails"),
    }
    loaded.map(Arc::new).map_err(Arc::new)
}

impl Sources {
    /// Starts watching `namespace/config_map` and `namespace/secret`.
    pub fn watch(
        client: &Client,
        health: &Arc<Health>,
        namespace: &str,
        (config_map, secret): (&str, &str),
    ) -> Self {
        let secret_id = format!("{namespace}/{secret}");
        let sources = Self {
            config: Arc::new(RwLock::new(Ok(Arc::new(SignerConfig::default())))),
            key: Arc::new(RwLock::new(Err(Arc::new(SigningKeyError::Missing {
                secret: secret_id.clone(),
            })))),
            config_synced: Arc::new(AtomicBool::new(false)),
            key_synced: Arc::new(AtomicBool::new(false)),
        };
        let slot = sources.config.clone();
        let cm_id = format!("{namespace}/{config_map}");
        watch_one(
            Api::<ConfigMap>::namespaced(client.clone(), namespace),
            (
                config_map.to_owned(),
                WatchStatus::new(health, format!("watch ConfigMap {namespace}/{config_map}")),
            ),
            sources.config_synced.clone(),
            move |cm| {
                let parsed = load_config(cm, &cm_id);
                if let Ok(mut s) = slot.write() {
                    *s = parsed;
                }
                std::future::ready(())
            },
        );
        let slot = sources.key.clone();
        watch_one(
            Api::<Secret>::namespaced(client.clone(), namespace),
            (
                secret.to_owned(),
                WatchStatus::new(health, format!("watch Secret {namespace}/{secret}")),
            ),
            sources.key_synced.clone(),
            move |s| {
                let slot = slot.clone();
                let id = secret_id.clone();
                async move {
                    let loaded = load_key(s, id).await;
                    if let Ok(mut s) = slot.write() {
                        *s = loaded;
                    }
                }
            },
        );
        sources
    }

    /// Waits until both watches delivered their initial state.
    pub async fn wait_synced(&self) {
        while !(self.config_synced.load(Ordering::Acquire)
            && self.key_synced.load(Ordering::Acquire))
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub fn config(&self) -> Result<Arc<SignerConfig>, ConfigError> {
        self.config
            .read()
            .map_or_else(|_| Ok(Arc::new(SignerConfig::default())), |c| c.clone())
    }

    pub fn key(&self) -> KeyResult {
        self.key.read().map_or_else(
            |_| {
                Err(Arc::new(SigningKeyError::Missing {
                    secret: String::new(),
                }))
            },
            |k| k.clone(),
        )
    }
}
