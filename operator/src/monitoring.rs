//! Reconciles `spec.monitoring`: applies the dashboard ConfigMap, and the ServiceMonitor and
//! PrometheusRule when the Prometheus operator's CRDs are served (found by discovery, no
//! CRD read rights needed); deletes all three when monitoring is off. Without those CRDs
//! the two are skipped and the caller records an Event saying so; Ready is not affected.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ApiResource, DeleteParams, DynamicObject};
use kube::{Api, Client};
use signet_crds::SignetConfigSpec;

use crate::apply::{ApplyError, ApplyReport, ensure_with};
use crate::build::BuildInputs;
use crate::build::monitoring::{
    DASHBOARD_CONFIG_MAP, MONITORING_GROUP_VERSION, prometheus_rule_resource,
    render_dashboard_config_map, render_prometheus_rule, render_service_monitor,
    service_monitor_resource,
};
use crate::names::SIGNER;

/// What a monitoring pass found.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Monitoring is off (and nothing of it is left).
    Off,
    /// Applied: dashboard, ServiceMonitor and PrometheusRule.
    Applied,
    /// The dashboard is applied; the Prometheus operator's CRDs are not served here.
    NoPrometheusOperator,
}

impl Outcome {
    /// `status.monitoring`: what is set up, or why part of it is missing.
    pub fn status(&self, ns: &str) -> Option<String> {
        match self {
            Self::Off => None,
            Self::Applied => Some(format!(
                "ServiceMonitor {ns}/{SIGNER}, PrometheusRule {ns}/{SIGNER} and ConfigMap {ns}/{DASHBOARD_CONFIG_MAP} (Grafana dashboard)"
            )),
            Self::NoPrometheusOperator => Some(format!(
                "ConfigMap {ns}/{DASHBOARD_CONFIG_MAP} (Grafana dashboard) only: the Prometheus operator's CRDs ({MONITORING_GROUP_VERSION} ServiceMonitor, PrometheusRule) are not installed; install them and the operator adds both within 5 minutes"
            )),
        }
    }
}

/// Whether the API server serves the ServiceMonitor and PrometheusRule kinds.
async fn prometheus_operator_served(client: &Client) -> Result<bool, kube::Error> {
    match client
        .list_api_group_resources(MONITORING_GROUP_VERSION)
        .await
    {
        Ok(list) => {
            let served = |kind: &str| list.resources.iter().any(|r| r.kind == kind);
            Ok(served("ServiceMonitor") && served("PrometheusRule"))
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

fn read_error(kind: &str, source: kube::Error) -> ApplyError {
    ApplyError {
        action: "discover",
        kind: kind.to_owned(),
        name: MONITORING_GROUP_VERSION.to_owned(),
        source,
    }
}

/// Deletes `name` if it exists (reads first, so that a reconcile with monitoring off and
/// nothing to remove writes nothing).
async fn remove<K>(
    api: &Api<K>,
    kind: &str,
    name: &str,
    report: &mut ApplyReport,
) -> Result<(), ApplyError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let err = |action, source| ApplyError {
        action,
        kind: kind.to_owned(),
        name: name.to_owned(),
        source,
    };
    match api.get_metadata_opt(name).await {
        Ok(Some(_)) => {}
        // A 404 without a Status body: the kind is not served (no Prometheus operator).
        Ok(None) => return Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(err("read", e)),
    }
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(err("delete", e)),
    }
    report.pruned.push(format!("{kind}/{name}"));
    Ok(())
}

/// Applies or removes the monitoring objects in the target namespace as `spec.monitoring`
/// says, and removes the ServiceMonitor and PrometheusRule from `moved_from` (the namespace
/// before a `targetNamespace` change; the dashboard ConfigMap is pruned with the rest).
pub async fn reconcile(
    client: &Client,
    spec: &SignetConfigSpec,
    moved_from: Option<&str>,
    inputs: &BuildInputs,
    report: &mut ApplyReport,
) -> Result<Outcome, ApplyError> {
    let ns = spec.target_namespace.as_str();
    let monitoring = &spec.monitoring;
    let dynamic = |ns: &str, resource: &ApiResource| {
        Api::<DynamicObject>::namespaced_with(client.clone(), ns, resource)
    };
    let (monitors, rules) = (service_monitor_resource(), prometheus_rule_resource());
    // A kind that is not served reads as absent: nothing to remove.
    let off: Vec<&str> = if monitoring.enabled {
        moved_from.into_iter().collect()
    } else {
        [Some(ns), moved_from].into_iter().flatten().collect()
    };
    for old in off {
        remove(&dynamic(old, &monitors), "ServiceMonitor", SIGNER, report).await?;
        remove(&dynamic(old, &rules), "PrometheusRule", SIGNER, report).await?;
    }
    let dashboards = Api::<ConfigMap>::namespaced(client.clone(), ns);
    if !monitoring.enabled {
        remove(&dashboards, "ConfigMap", DASHBOARD_CONFIG_MAP, report).await?;
        return Ok(Outcome::Off);
    }
    let served = prometheus_operator_served(client)
        .await
        .map_err(|e| read_error("ServiceMonitor", e))?;
    ensure_with(
        &dashboards,
        &render_dashboard_config_map(ns, monitoring, inputs),
        &(),
        report,
    )
    .await?;
    if !served {
        return Ok(Outcome::NoPrometheusOperator);
    }
    ensure_with(
        &dynamic(ns, &monitors),
        &render_service_monitor(ns, monitoring, inputs),
        &monitors,
        report,
    )
    .await?;
    ensure_with(
        &dynamic(ns, &rules),
        &render_prometheus_rule(ns, monitoring, inputs),
        &rules,
        report,
    )
    .await?;
    Ok(Outcome::Applied)
}
