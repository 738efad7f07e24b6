//! Monitoring the operator sets up for the signer when asked: a Prometheus-operator
//! ServiceMonitor and PrometheusRule, and a Grafana dashboard in a ConfigMap.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Prometheus and Grafana objects for the signer.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct MonitoringSpec {
    /// Create a ServiceMonitor and a PrometheusRule for the signer in its namespace (when the
    /// Prometheus operator's CRDs are installed; without them both are skipped and an Event
    /// says so) and a ConfigMap holding the Grafana dashboard (label `grafana_dashboard: "1"`,
    /// what Grafana's dashboard sidecar looks for).
    pub enabled: bool,
    /// Labels on the ServiceMonitor, the PrometheusRule and the dashboard ConfigMap: what your
    /// Prometheus selects them by (e.g. `release: prometheus`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Minutes a completed run may wait unsigned before the `SignetRunsWaiting` alert fires.
    #[schemars(range(min = 1, max = 1440))]
    pub waiting_minutes: u32,
}

impl Default for MonitoringSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            labels: BTreeMap::new(),
            waiting_minutes: 10,
        }
    }
}
