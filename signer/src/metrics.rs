//! The signer's counters, under Tekton Chains' metric names so existing dashboards work.

use std::sync::Arc;

use crate::run::RunKind;
use signet_runtime::health::{Counter, Histogram, HistogramFamily, Sampled};

/// Counters of one kind of run, under Chains' metric names.
#[derive(Clone, Debug, Default)]
pub struct KindMetrics {
    pub sign_created: Arc<Counter>,
    pub payload_stored: Arc<Counter>,
    pub marked_signed: Arc<Counter>,
    pub signing_failures: Arc<Counter>,
    /// From the signer seeing the run done to a worker taking it.
    pub queue_seconds: Arc<Histogram>,
    /// From a worker taking the run to its outcome being written.
    pub sign_seconds: Arc<Histogram>,
    /// Failed attempts by [`SignError::error_type`](crate::signing::SignError::error_type),
    /// in the order of [`FAILURE_REASONS`].
    pub failures: [Arc<Counter>; 4],
}

/// The reasons a signing attempt fails, as `SignError::error_type` names them.
pub const FAILURE_REASONS: [&str; 4] = ["signer", "storage", "transparency", "other"];

impl KindMetrics {
    /// Counts one failed attempt of `reason` (one of [`FAILURE_REASONS`]).
    pub fn failed(&self, reason: &str) {
        self.signing_failures.inc();
        if let Some(i) = FAILURE_REASONS.iter().position(|r| *r == reason)
            && let Some(counter) = self.failures.get(i)
        {
            counter.inc();
        }
    }
}

/// The Lease the signers elect their leader with, in the signer's namespace.
pub const LEASE_NAME: &str = "signet-signer";

/// The Lease naming the signer of the run with `uid` among `replicas`: [`LEASE_NAME`] with one
/// replica; with more, the Lease of the run's shard (shard 0 when no run is in question).
pub fn lease_for(replicas: i32, uid: Option<&str>) -> String {
    let replicas = usize::try_from(replicas).unwrap_or(1);
    if replicas > 1 {
        let shard = uid.map_or(0, |uid| signet_runtime::shards::shard_of(uid, replicas));
        signet_runtime::shards::lease_name(LEASE_NAME, shard, replicas)
    } else {
        LEASE_NAME.to_owned()
    }
}

/// The annotation on the signer's Lease where the leader reports its counters with every
/// renewal (`kubectl signet status` reads it): JSON, see [`Metrics::lease_annotations`].
pub const COUNTERS_ANNOTATION: &str = "signet.dev/counters";

/// Chains' metric names, so existing dashboards keep working.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub taskrun: KindMetrics,
    pub pipelinerun: KindMetrics,
}

impl Metrics {
    pub fn of(&self, kind: RunKind) -> &KindMetrics {
        match kind {
            RunKind::TaskRun => &self.taskrun,
            RunKind::PipelineRun => &self.pipelinerun,
        }
    }

    /// The counters as the Lease annotation [`COUNTERS_ANNOTATION`]:
    /// `{"since": <this process's start>, "taskrun": {"signed": n, "failed": n}, "pipelinerun": …}`
    /// (`failed` counts failed attempts, retried ones included).
    pub fn lease_annotations(&self, since: &str) -> std::collections::BTreeMap<String, String> {
        let kind = |k: &KindMetrics| serde_json::json!({"signed": k.marked_signed.get(), "failed": k.signing_failures.get()});
        let value = serde_json::json!({
            "since": since,
            "taskrun": kind(&self.taskrun),
            "pipelinerun": kind(&self.pipelinerun),
        });
        std::collections::BTreeMap::from([(COUNTERS_ANNOTATION.to_owned(), value.to_string())])
    }

    /// `signet_signer_failures_total{kind, reason}`: failed attempts by kind and reason.
    pub fn failures_by_reason(&self) -> Sampled {
        let kinds = [
            ("taskrun", self.taskrun.failures.clone()),
            ("pipelinerun", self.pipelinerun.failures.clone()),
        ];
        Sampled {
            name: "signet_signer_failures_total",
            help: "Failed signing attempts, by kind of run and reason (signer, storage, transparency, other).",
            type_: "counter",
            read: Arc::new(move || {
                let mut samples = Vec::new();
                for (kind, counters) in &kinds {
                    for (reason, counter) in FAILURE_REASONS.iter().zip(counters) {
                        #[allow(clippy::cast_precision_loss)] // counts stay far below 2^53
                        samples.push((
                            format!("kind=\"{kind}\",reason=\"{reason}\""),
                            counter.get() as f64,
                        ));
                    }
                }
                samples
            }),
        }
    }

    /// Latency histograms, labelled by kind.
    pub fn histograms(&self) -> Vec<HistogramFamily> {
        let (t, p) = (&self.taskrun, &self.pipelinerun);
        vec![
            HistogramFamily {
                name: "signet_signer_queue_duration_seconds",
                help: "Time from the signer seeing a run done to a worker starting on it.",
                series: vec![
                    ("kind=\"taskrun\"", t.queue_seconds.clone()),
                    ("kind=\"pipelinerun\"", p.queue_seconds.clone()),
                ],
            },
            HistogramFamily {
                name: "signet_signer_sign_duration_seconds",
                help: "Time from a worker starting on a run to its outcome (signed, retry or failed) being written.",
                series: vec![
                    ("kind=\"taskrun\"", t.sign_seconds.clone()),
                    ("kind=\"pipelinerun\"", p.sign_seconds.clone()),
                ],
            },
        ]
    }

    pub fn exported(&self) -> Vec<(&'static str, &'static str, Arc<Counter>)> {
        let (t, p) = (&self.taskrun, &self.pipelinerun);
        vec![
            (
                "watcher_taskrun_sign_created_total",
                "TaskRun signatures created.",
                t.sign_created.clone(),
            ),
            (
                "watcher_taskrun_payload_stored_total",
                "TaskRun payloads stored.",
                t.payload_stored.clone(),
            ),
            (
                "watcher_taskrun_marked_signed_total",
                "TaskRuns marked signed.",
                t.marked_signed.clone(),
            ),
            (
                "watcher_taskrun_signing_failures_total",
                "Failed TaskRun signing attempts.",
                t.signing_failures.clone(),
            ),
            (
                "watcher_pipelinerun_sign_created_total",
                "PipelineRun signatures created.",
                p.sign_created.clone(),
            ),
            (
                "watcher_pipelinerun_payload_stored_total",
                "PipelineRun payloads stored.",
                p.payload_stored.clone(),
            ),
            (
                "watcher_pipelinerun_marked_signed_total",
                "PipelineRuns marked signed.",
                p.marked_signed.clone(),
            ),
            (
                "watcher_pipelinerun_signing_failures_total",
                "Failed PipelineRun signing attempts.",
                p.signing_failures.clone(),
            ),
        ]
    }
}
