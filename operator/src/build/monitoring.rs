//! `spec.monitoring`: the ServiceMonitor that scrapes the signer's metrics Service, the
//! PrometheusRule with Signet's alerts, and the Grafana dashboard (a ConfigMap Grafana's
//! dashboard sidecar loads; the same JSON is in docs/monitoring). Pure.
//!
//! Every metric the alerts and the dashboard query is the signer's own; the end-to-end test
//! scrapes a real signer and checks each one exists ([`metric_names`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};
use signet_crds::MonitoringSpec;

use super::{BuildInputs, metadata};
use crate::names::{self, SIGNER};

/// The ConfigMap holding the dashboard.
pub const DASHBOARD_CONFIG_MAP: &str = "signet-dashboard";
/// The file inside it.
pub const DASHBOARD_FILE: &str = "signet-signer.json";

/// The Prometheus operator's group and version.
pub const MONITORING_GROUP_VERSION: &str = "monitoring.coreos.com/v1";

pub fn service_monitor_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "monitoring.coreos.com",
        "v1",
        "ServiceMonitor",
    ))
}

pub fn prometheus_rule_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "monitoring.coreos.com",
        "v1",
        "PrometheusRule",
    ))
}

/// Managed labels plus the user's (theirs win: they are what a Prometheus selects by).
fn labels(spec: &MonitoringSpec) -> BTreeMap<String, String> {
    let mut labels = names::managed_labels();
    labels.extend(spec.labels.clone());
    labels
}

fn dynamic(
    resource: &ApiResource,
    ns: &str,
    spec: &MonitoringSpec,
    body: Value,
    inputs: &BuildInputs,
) -> DynamicObject {
    let mut meta = metadata(SIGNER, Some(ns), inputs);
    meta.labels = Some(labels(spec));
    let mut object = DynamicObject::new(SIGNER, resource).within(ns);
    object.metadata = meta;
    object.data = body;
    object
}

/// Scrapes the signer's metrics Service (its `metrics` port) every 30 seconds.
pub fn render_service_monitor(
    ns: &str,
    spec: &MonitoringSpec,
    inputs: &BuildInputs,
) -> DynamicObject {
    dynamic(
        &service_monitor_resource(),
        ns,
        spec,
        json!({"spec": {
            "selector": {"matchLabels": names::managed_labels()},
            "namespaceSelector": {"matchNames": [ns]},
            "endpoints": [{"port": "metrics", "interval": "30s", "path": "/metrics"}]
        }}),
        inputs,
    )
}

/// The alerts: signing failing, runs waiting longer than `waitingMinutes`, no leader, and a
/// signing key that cannot be loaded.
pub fn alert_rules(ns: &str, spec: &MonitoringSpec) -> Value {
    let sel = format!("{{namespace=\"{ns}\"}}");
    let wait = u64::from(spec.waiting_minutes) * 60;
    let rule = |alert: &str,
                expr: String,
                for_: &str,
                severity: &str,
                summary: &str,
                description: String| {
        json!({
            "alert": alert, "expr": expr, "for": for_,
            "labels": {"severity": severity},
            "annotations": {"summary": summary, "description": description}
        })
    };
    json!([{
        "name": "signet-signer",
        "rules": [
            rule(
                "SignetSigningFailures",
                format!("sum(rate(signet_signer_failures_total{sel}[10m])) > 0"),
                "10m", "warning",
                "Signet keeps failing to sign runs",
                format!("Signing attempts in {ns} have failed for 10 minutes ({{{{ $value | humanize }}}} per second). `kubectl signet explain taskrun NAME` says why a run is not signed."),
            ),
            rule(
                "SignetRunsWaiting",
                format!("max(signet_signer_oldest_in_flight_seconds{sel}) > {wait}"),
                "2m", "warning",
                "Completed runs wait to be signed",
                format!("A completed run in {ns} has waited more than {} minutes to be signed (retries or a backlog).", spec.waiting_minutes),
            ),
            rule(
                "SignetNoLeader",
                format!("(sum(signet_signer_leader{sel}) or vector(0)) < 1"),
                "5m", "critical",
                "No Signet signer is leading",
                format!("No signer in {ns} holds the leader Lease: no run is being signed. `kubectl signet status` shows the SignetConfig's conditions."),
            ),
            rule(
                "SignetSigningKeyNotLoadable",
                format!("min(signet_signer_signing_key_loaded{sel}) == 0"),
                "5m", "critical",
                "Signet cannot load its signing key",
                format!("The signer in {ns} cannot load the signing Secret's key (or its configuration): every run fails. Check the SignetConfig's Events."),
            ),
        ]
    }])
}

pub fn render_prometheus_rule(
    ns: &str,
    spec: &MonitoringSpec,
    inputs: &BuildInputs,
) -> DynamicObject {
    dynamic(
        &prometheus_rule_resource(),
        ns,
        spec,
        json!({"spec": {"groups": alert_rules(ns, spec)}}),
        inputs,
    )
}

pub fn render_dashboard_config_map(
    ns: &str,
    spec: &MonitoringSpec,
    inputs: &BuildInputs,
) -> ConfigMap {
    let mut meta = metadata(DASHBOARD_CONFIG_MAP, Some(ns), inputs);
    let mut labels = labels(spec);
    labels.insert("grafana_dashboard".to_owned(), "1".to_owned());
    meta.labels = Some(labels);
    ConfigMap {
        metadata: meta,
        data: Some(BTreeMap::from([(
            DASHBOARD_FILE.to_owned(),
            serde_json::to_string_pretty(&dashboard()).unwrap_or_default(),
        )])),
        ..ConfigMap::default()
    }
}

/// A time-series panel at grid position `(x, y)` (24 columns), its queries `(expr, legend)`.
fn panel(
    id: u32,
    title: &str,
    unit: &str,
    (x, y): (u32, u32),
    targets: &[(String, &str)],
) -> Value {
    json!({
        "id": id, "type": "timeseries", "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"x": x, "y": y, "w": 12, "h": 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": targets.iter().enumerate().map(|(i, (expr, legend))| json!({
            "refId": char::from(b'A' + u8::try_from(i).unwrap_or(0)).to_string(),
            "expr": expr, "legendFormat": legend
        })).collect::<Vec<_>>()
    })
}

/// A single-value panel with thresholds: red below `good`.
fn stat(id: u32, title: &str, (x, y): (u32, u32), expr: &str, good: f64) -> Value {
    json!({
        "id": id, "type": "stat", "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"x": x, "y": y, "w": 6, "h": 4},
        "fieldConfig": {"defaults": {"thresholds": {"mode": "absolute", "steps": [
            {"color": "red", "value": null}, {"color": "green", "value": good}
        ]}}, "overrides": []},
        "targets": [{"refId": "A", "expr": expr}]
    })
}

/// The Grafana dashboard: runs signed and failed per second, failures by reason, queue and
/// sign latency, runs in flight and the longest wait, leader and signing key.
pub fn dashboard() -> Value {
    const NS: &str = "{namespace=\"$namespace\"}";
    let q = |template: &str| template.replace("{ns}", NS);
    let quantiles = |metric: &str| {
        [
            (
                q(&format!(
                    "histogram_quantile(0.5, sum by (le) (rate({metric}_bucket{{ns}}[5m])))"
                )),
                "p50",
            ),
            (
                q(&format!(
                    "histogram_quantile(0.99, sum by (le) (rate({metric}_bucket{{ns}}[5m])))"
                )),
                "p99",
            ),
        ]
    };

    let signed = [
        (
            q("sum(rate(watcher_taskrun_marked_signed_total{ns}[5m]))"),
            "TaskRuns signed",
        ),
        (
            q("sum(rate(watcher_pipelinerun_marked_signed_total{ns}[5m]))"),
            "PipelineRuns signed",
        ),
        (
            q(
                "sum(rate(watcher_taskrun_signing_failures_total{ns}[5m])) + sum(rate(watcher_pipelinerun_signing_failures_total{ns}[5m]))",
            ),
            "failed attempts",
        ),
    ];
    let reasons = [(
        q("sum by (reason) (rate(signet_signer_failures_total{ns}[5m]))"),
        "{{reason}}",
    )];
    let waiting = [
        (q("sum(signet_signer_runs_in_flight{ns})"), "runs in flight"),
        (
            q("max(signet_signer_oldest_in_flight_seconds{ns})"),
            "longest wait (s)",
        ),
    ];
    json!({
        "title": "Signet signer",
        "uid": "signet-signer",
        "description": "Tekton runs signed by Signet: throughput, failures by reason, latency, backlog, leader and signing key.",
        "tags": ["signet", "tekton", "supply-chain"],
        "schemaVersion": 39,
        "version": 1,
        "editable": true,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus"},
            {"name": "namespace", "label": "Namespace", "type": "query",
             "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": "label_values(signet_signer_leader, namespace)", "refresh": 2}
        ]},
        "panels": [
            stat(1, "Leader", (0, 0), &q("sum(signet_signer_leader{ns})"), 1.0),
            stat(2, "Signing key loaded", (6, 0), &q("min(signet_signer_signing_key_loaded{ns})"), 1.0),
            stat(3, "Runs in flight", (12, 0), &q("sum(signet_signer_runs_in_flight{ns})"), 0.0),
            stat(4, "Runs signed (1h)", (18, 0), &q("sum(increase(watcher_taskrun_marked_signed_total{ns}[1h])) + sum(increase(watcher_pipelinerun_marked_signed_total{ns}[1h]))"), 0.0),
            panel(5, "Runs signed and failed attempts per second", "ops", (0, 4), &signed),
            panel(6, "Failed attempts per second by reason (retried, then marked failed)", "ops", (12, 4), &reasons),
            panel(7, "Queue latency: seen done → a worker takes it", "s", (0, 12), &quantiles("signet_signer_queue_duration_seconds")),
            panel(8, "Sign latency: taken → outcome written", "s", (12, 12), &quantiles("signet_signer_sign_duration_seconds")),
            panel(9, "Backlog: runs in flight and the longest wait", "short", (0, 20), &waiting),
        ]
    })
}

/// The metric names a PromQL expression selects: the identifiers directly followed by a `{`
/// label matcher (every selector here has one). Histogram series end in `_bucket`.
pub fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut start = None;
    for (i, &b) in bytes.iter().enumerate() {
        let ident = b.is_ascii_alphanumeric() || b == b'_' || b == b':';
        match (start, ident) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                if b == b'{' && !bytes[s].is_ascii_digit() {
                    names.push(expr[s..i].to_owned());
                }
                start = None;
            }
            _ => {}
        }
    }
    names.sort();
    names.dedup();
    names
}

/// Every expression the dashboard and the alerts evaluate.
pub fn expressions(spec: &MonitoringSpec) -> Vec<String> {
    let mut out = Vec::new();
    collect_exprs(&dashboard(), &mut out);
    collect_exprs(&alert_rules("signet-system", spec), &mut out);
    out
}

fn collect_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_are_the_selected_series() {
        assert_eq!(
            metric_names(
                "histogram_quantile(0.99, sum by (le) (rate(signet_signer_queue_duration_seconds_bucket{namespace=\"x\"}[5m])))"
            ),
            ["signet_signer_queue_duration_seconds_bucket"]
        );
        assert_eq!(
            metric_names("(sum(signet_signer_leader{namespace=\"x\"}) or vector(0)) < 1"),
            ["signet_signer_leader"]
        );
    }

    #[test]
    fn every_query_selects_by_namespace_and_names_a_metric() {
        let spec = MonitoringSpec::default();
        let exprs = expressions(&spec);
        assert!(exprs.len() >= 12, "{exprs:?}");
        for expr in &exprs {
            assert!(!metric_names(expr).is_empty(), "no metric in {expr}");
            assert!(
                expr.contains("namespace=\""),
                "not scoped to a namespace: {expr}"
            );
        }
        let rules = alert_rules(
            "signet-system",
            &MonitoringSpec {
                waiting_minutes: 15,
                ..spec
            },
        );
        let waiting = rules[0]["rules"]
            .as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .find(|r| r["alert"] == "SignetRunsWaiting")
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            waiting["expr"],
            "max(signet_signer_oldest_in_flight_seconds{namespace=\"signet-system\"}) > 900"
        );
    }
}
