//! What the CLI reads from the cluster, with the user's kubeconfig: a run, the SignetConfig,
//! the Events about a run and the signer's Lease. Read-only: the CLI never writes.

use std::path::Path;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Event;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use signet_crds::{SINGLETON_NAME, SignetConfig};
use signet_signer::run::{Run, RunKind};

/// Why the CLI could not read what it needs.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("failed to load the kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("{kind} {namespace}/{name} not found")]
    NoRun {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("failed to read {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: kube::Error,
    },
}

/// A connection to the cluster the kubeconfig names.
pub struct Cluster {
    pub client: Client,
    /// The namespace of the kubeconfig's context (`default` when it names none).
    pub namespace: String,
}

impl Cluster {
    /// Connects as the kubeconfig says: `path` or `$KUBECONFIG` or `~/.kube/config`, then
    /// the in-cluster ServiceAccount; `context` picks another context.
    pub async fn connect(path: Option<&Path>, context: Option<&str>) -> Result<Self, ClusterError> {
        let options = KubeConfigOptions {
            context: context.map(str::to_owned),
            ..KubeConfigOptions::default()
        };
        let config = match path {
            Some(path) => {
                let file = Kubeconfig::read_from(path)
                    .map_err(|e| ClusterError::Kubeconfig(format!("{}: {e}", path.display())))?;
                Config::from_custom_kubeconfig(file, &options).await
            }
            None => match Config::from_kubeconfig(&options).await {
                Ok(config) => Ok(config),
                Err(error) => Config::incluster().map_err(|_| error),
            },
        }
        .map_err(|e| ClusterError::Kubeconfig(e.to_string()))?;
        let namespace = config.default_namespace.clone();
        let client =
            Client::try_from(config).map_err(|e| ClusterError::Kubeconfig(e.to_string()))?;
        Ok(Self { client, namespace })
    }

    /// The run, as the signer sees it.
    pub async fn run(
        &self,
        kind: RunKind,
        namespace: &str,
        name: &str,
    ) -> Result<Run, ClusterError> {
        let resource =
            ApiResource::from_gvk(&GroupVersionKind::gvk("tekton.dev", "v1", kind.kind()));
        let api = Api::<DynamicObject>::namespaced_with(self.client.clone(), namespace, &resource);
        let object = api
            .get_opt(name)
            .await
            .map_err(|source| ClusterError::Read {
                what: format!("{} {namespace}/{name}", kind.kind()),
                source,
            })?
            .ok_or_else(|| ClusterError::NoRun {
                kind: kind.kind(),
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })?;
        let value = serde_json::to_value(object).unwrap_or_default();
        Ok(Run::from_object(kind, value))
    }

    /// The cluster's SignetConfig, `None` when Signet is not installed or it is absent.
    pub async fn config(&self) -> Result<Option<SignetConfig>, ClusterError> {
        match Api::<SignetConfig>::all(self.client.clone())
            .get_opt(SINGLETON_NAME)
            .await
        {
            Ok(config) => Ok(config),
            // No CRD: Signet is not installed here.
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(source) => Err(ClusterError::Read {
                what: format!("SignetConfig {SINGLETON_NAME}"),
                source,
            }),
        }
    }

    /// Events about the object with `uid` in `namespace`, oldest first.
    pub async fn events(&self, namespace: &str, uid: &str) -> Result<Vec<Event>, ClusterError> {
        let params = ListParams::default().fields(&format!("involvedObject.uid={uid}"));
        let mut events = Api::<Event>::namespaced(self.client.clone(), namespace)
            .list(&params)
            .await
            .map_err(|source| ClusterError::Read {
                what: format!("Events in {namespace}"),
                source,
            })?
            .items;
        events.sort_by_key(last_seen);
        Ok(events)
    }

    /// The Lease `name` in `namespace`, `None` when absent.
    pub async fn lease(&self, namespace: &str, name: &str) -> Result<Option<Lease>, ClusterError> {
        Api::<Lease>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|source| ClusterError::Read {
                what: format!("Lease {namespace}/{name}"),
                source,
            })
    }
}

/// When an Event last happened (RFC 3339), whichever field its reporter filled in.
pub fn last_seen(event: &Event) -> String {
    event
        .last_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
        .or_else(|| event.event_time.as_ref().map(|t| t.0.to_string()))
        .or_else(|| {
            event
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
        })
        .unwrap_or_default()
}
