//! A read-only view of a completed Tekton run (`tekton.dev/v1` TaskRun or PipelineRun) as
//! the signer needs it, taken from the object's JSON. Pure.

pub mod children;
pub mod extract;

use serde_json::Value;

use crate::annotations::{RETRIES, SIGNED};

/// TaskRun or PipelineRun.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunKind {
    TaskRun,
    PipelineRun,
}

impl RunKind {
    pub fn kind(self) -> &'static str {
        match self {
            Self::TaskRun => "TaskRun",
            Self::PipelineRun => "PipelineRun",
        }
    }

    /// `taskrun` / `pipelinerun`, as in annotation keys and config keys.
    pub fn key(self) -> &'static str {
        match self {
            Self::TaskRun => "taskrun",
            Self::PipelineRun => "pipelinerun",
        }
    }
}

/// One named result of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunResult {
    pub name: String,
    pub value: Value,
}

/// The parts of a run the signer reads.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub kind: RunKind,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub object: Value,
}

impl Run {
    pub fn from_object(kind: RunKind, object: Value) -> Self {
        let meta = &object["metadata"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        Self {
            kind,
            namespace: text(&meta["namespace"]),
            name: text(&meta["name"]),
            uid: text(&meta["uid"]),
            object,
        }
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.object["metadata"]["annotations"][key].as_str()
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.object["metadata"]["labels"][key].as_str()
    }

    /// Done: the `Succeeded` condition is `True` or `False` (failed and cancelled runs are
    /// signed too, as Chains does).
    pub fn is_done(&self) -> bool {
        self.object["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Succeeded" && (c["status"] == "True" || c["status"] == "False"))
    }

    /// Whether this signer is to sign the run (`filter.managed-by`): `spec.managedBy` unset,
    /// empty, Tekton's own `tekton.dev/pipeline`, or one of `extra`. A run another controller
    /// manages is left alone: no finalizer, no signature, no mark.
    pub fn is_ours(&self, extra: &std::collections::BTreeSet<String>) -> bool {
        match self.object["spec"]["managedBy"].as_str() {
            None | Some("" | "tekton.dev/pipeline") => true,
            Some(other) => extra.contains(other),
        }
    }

    /// `signed` is `true` or `failed`: nothing more to do.
    pub fn is_finished(&self) -> bool {
        matches!(self.annotation(SIGNED), Some("true" | "failed"))
    }

    /// Failed attempts so far (`chains.tekton.dev/retries`), 0 when absent or unreadable.
    pub fn retries(&self) -> u32 {
        self.annotation(RETRIES)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0)
    }

    /// `status.results` in order (TaskRuns and PipelineRuns alike in `tekton.dev/v1`).
    pub fn results(&self) -> Vec<RunResult> {
        self.object["status"]["results"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| RunResult {
                name: r["name"].as_str().unwrap_or_default().to_owned(),
                value: r["value"].clone(),
            })
            .collect()
    }

    /// Each step's results (`status.steps[].results`, Tekton's step results), with the
    /// step's name, in status order.
    pub fn step_results(&self) -> Vec<(String, RunResult)> {
        let steps = self.object["status"]["steps"]
            .as_array()
            .into_iter()
            .flatten();
        steps
            .flat_map(|step| {
                let step_name = step["name"].as_str().unwrap_or_default();
                step["results"].as_array().into_iter().flatten().map(|r| {
                    let result = RunResult {
                        name: r["name"].as_str().unwrap_or_default().to_owned(),
                        value: r["value"].clone(),
                    };
                    (step_name.to_owned(), result)
                })
            })
            .collect()
    }

    /// The run's identity without its object: what queues and pending writes keep, so that
    /// memory does not grow with the size of runs waiting for their turn.
    #[must_use]
    pub fn reference(&self) -> Self {
        Self {
            kind: self.kind,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            object: Value::Null,
        }
    }

    /// The ServiceAccount the run's pods ran as (`default` when unset), whose pull secrets
    /// give registry credentials.
    pub fn service_account(&self) -> String {
        let spec = &self.object["spec"];
        spec["serviceAccountName"]
            .as_str()
            .or_else(|| spec["taskRunTemplate"]["serviceAccountName"].as_str())
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_owned()
    }

    /// The finalizer that keeps this run until it is signed: `chains.tekton.dev/<kind>`.
    pub fn finalizer(&self) -> String {
        crate::annotations::finalizer(self.kind)
    }

    pub fn finalizers(&self) -> Vec<String> {
        self.object["metadata"]["finalizers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str().map(str::to_owned))
            .collect()
    }

    pub fn has_finalizer(&self) -> bool {
        self.finalizers().contains(&self.finalizer())
    }

    pub fn is_being_deleted(&self) -> bool {
        !self.object["metadata"]["deletionTimestamp"].is_null()
    }

    /// `<kind>-<uid>`: the key of this run's own annotations (`signature-taskrun-<uid>`).
    pub fn storage_key(&self) -> String {
        format!("{}-{}", self.kind.key(), self.uid)
    }

    /// `namespace/name` for logs and messages.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_managed_by_another_controller_are_not_ours_unless_listed() {
        let with = |managed_by: serde_json::Value| {
            Run::from_object(
                RunKind::TaskRun,
                serde_json::json!({"metadata": {"name": "r"}, "spec": {"managedBy": managed_by}}),
            )
        };
        let none = std::collections::BTreeSet::new();
        let listed = std::collections::BTreeSet::from(["kueue.x-k8s.io/multikueue".to_owned()]);
        assert!(with(serde_json::Value::Null).is_ours(&none));
        assert!(with("".into()).is_ours(&none));
        assert!(with("tekton.dev/pipeline".into()).is_ours(&none));
        assert!(!with("kueue.x-k8s.io/multikueue".into()).is_ours(&none));
        assert!(with("kueue.x-k8s.io/multikueue".into()).is_ours(&listed));
        assert!(!with("other.example/controller".into()).is_ours(&listed));
    }
}
