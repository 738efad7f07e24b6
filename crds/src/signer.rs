//! The signer pod's settings: replicas, scheduling, resources, tuning and escape hatches.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, ResourceRequirements, Toleration, Volume, VolumeMount,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How the signer Deployment runs.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SignerSpec {
    /// Signer image; defaults to the signer built with this operator's version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Pods. One signs, the others stand by (one Lease); more than one share the runs, divided
    /// by UID into one shard per replica, each shard held through its own Lease and taken over
    /// by the others when its holder stops renewing it.
    #[schemars(range(min = 0, max = 10))]
    pub replicas: i32,
    /// CPU and memory requests and limits of the signer container. Unset: requests cpu 50m and
    /// memory 64Mi, limit memory 256Mi (2.5 × the highest use measured, which includes the
    /// one-time scrypt of an encrypted cosign key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Extra labels on the signer pods (the operator's own labels win on conflict).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
    /// Extra annotations on the signer pods.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
    /// Extra environment variables of the signer container.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_env: Vec<EnvVar>,
    /// Extra volumes of the signer pod.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_volumes: Vec<Volume>,
    /// Extra volume mounts of the signer container.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_volume_mounts: Vec<VolumeMount>,
    /// Namespaces whose runs are signed; empty means all namespaces.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Runs in flight at once per replica (most of a run's time is spent waiting on
    /// registries, KMS and logs; requests per registry host and KMS key are limited
    /// separately); the backlog found at start takes at most a quarter of them.
    #[schemars(range(min = 1, max = 1024))]
    pub workers: i32,
    /// Sustained requests per second to the API server.
    #[schemars(range(min = 1, max = 10000))]
    pub kube_api_qps: i32,
    /// Burst of requests to the API server.
    #[schemars(range(min = 1, max = 20000))]
    pub kube_api_burst: i32,
    /// Log filter, e.g. `info` or `signet_signer=debug`.
    #[schemars(length(min = 1))]
    pub log_level: String,
}

impl Default for SignerSpec {
    fn default() -> Self {
        Self {
            image: None,
            replicas: 1,
            resources: None,
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            affinity: None,
            priority_class_name: None,
            pod_labels: BTreeMap::new(),
            pod_annotations: BTreeMap::new(),
            extra_env: Vec::new(),
            extra_volumes: Vec::new(),
            extra_volume_mounts: Vec::new(),
            namespaces: Vec::new(),
            workers: 128,
            kube_api_qps: 150,
            kube_api_burst: 300,
            log_level: "info".to_owned(),
        }
    }
}
