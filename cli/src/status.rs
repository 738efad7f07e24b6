//! `status`: the SignetConfig's conditions, the signer's rollout, which signer leads and the
//! counters it reports on its Lease.

use std::fmt::Write as _;

use k8s_openapi::api::coordination::v1::Lease;
use serde::Serialize;
use serde_json::Value;
use signet_crds::{ConditionStatus, SignetConfig};
use signet_signer::metrics::COUNTERS_ANNOTATION;

use crate::explain::fresh_holder;
use crate::report::paint;

/// What `status` shows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Status {
    pub version: Option<String>,
    /// `Type=Status (Reason): message`, in the order the operator writes them.
    pub conditions: Vec<Condition>,
    pub signer_replicas: Option<(i32, i32)>,
    pub leader: Option<String>,
    /// When the leader last renewed its Lease.
    pub renewed: Option<String>,
    /// The counters the leader last reported (`signet.dev/counters`).
    pub counters: Option<Value>,
    pub ready: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

pub fn status(config: &SignetConfig, lease: Option<&Lease>) -> Status {
    let status = config.status.clone().unwrap_or_default();
    let ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == ConditionStatus::True);
    Status {
        version: status.version,
        conditions: status
            .conditions
            .iter()
            .map(|c| Condition {
                type_: c.type_.clone(),
                status: format!("{:?}", c.status),
                reason: c.reason.clone(),
                message: c.message.clone(),
            })
            .collect(),
        signer_replicas: status.signer.map(|s| (s.ready_replicas, s.replicas)),
        leader: lease.and_then(fresh_holder),
        renewed: lease
            .and_then(|l| l.spec.as_ref()?.renew_time.as_ref())
            .map(|t| t.0.to_string()),
        counters: lease
            .and_then(|l| l.metadata.annotations.as_ref()?.get(COUNTERS_ANNOTATION))
            .and_then(|c| serde_json::from_str(c).ok()),
        ready,
    }
}

impl Status {
    pub fn text(&self, colour: bool) -> String {
        let mut out = format!(
            "SignetConfig config (version {})\n",
            self.version.as_deref().unwrap_or("unknown")
        );
        for c in &self.conditions {
            let code = match (c.type_.as_str(), c.status.as_str()) {
                ("Degraded", "True") | ("Ready", "False") => "31",
                ("Ready", "True") => "32",
                _ => "33",
            };
            let _ = writeln!(
                out,
                "  {:<12} {} ({}){}{}",
                c.type_,
                paint(&c.status, code, colour),
                c.reason,
                if c.message.is_empty() { "" } else { ": " },
                c.message
            );
        }
        if let Some((ready, wanted)) = self.signer_replicas {
            let _ = writeln!(out, "signer pods ready: {ready}/{wanted}");
        }
        match &self.leader {
            Some(leader) => {
                let _ = writeln!(
                    out,
                    "leader: {leader} (renewed {})",
                    self.renewed.as_deref().unwrap_or("?")
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "leader: {}",
                    paint("none (no signer holds the Lease)", "31", colour)
                );
            }
        }
        if let Some(counters) = &self.counters {
            let _ = writeln!(
                out,
                "counters at the leader's last renewal, since it started at {}: TaskRuns {} signed, {} failed attempts; PipelineRuns {} signed, {} failed attempts",
                counters["since"].as_str().unwrap_or("?"),
                counters["taskrun"]["signed"],
                counters["taskrun"]["failed"],
                counters["pipelinerun"]["signed"],
                counters["pipelinerun"]["failed"],
            );
        }
        out
    }
}
