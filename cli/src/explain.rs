//! `explain`: why a run is (not) signed, in plain words, with the fix. Pure: the caller reads
//! the run, the SignetConfig, the Events about the run and the signer's Lease.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Event;
use serde::Serialize;
use signet_crds::{ConditionStatus, SignetConfig};
use signet_signer::annotations::{FAILURE_REASON, SIGNED};
use signet_signer::run::Run;

use crate::cluster::last_seen;

/// What `explain` found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// `signed`, `failed`, `running`, `not-ours`, `not-watched`, `signer-down`, `retrying`,
    /// `waiting` or `not-installed`.
    pub state: &'static str,
    /// What is the case, in plain words.
    pub why: String,
    /// What to do about it, when anything is to be done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Failed attempts so far.
    pub retries: u32,
    /// The Events about the run, oldest first: `Type Reason (count×, last seen): message`.
    pub events: Vec<String>,
}

impl Explanation {
    /// The explanation for a person.
    pub fn text(&self, run: &Run) -> String {
        use std::fmt::Write as _;
        let mut text = format!(
            "{} {}/{}: {}\n  {}\n",
            run.kind.kind(),
            run.namespace,
            run.name,
            self.state,
            self.why
        );
        if let Some(fix) = &self.fix {
            let _ = writeln!(text, "  fix: {fix}");
        }
        if !self.events.is_empty() {
            text.push_str("  events:\n");
            for event in &self.events {
                let _ = writeln!(text, "    {event}");
            }
        }
        text
    }
}

/// The command that names this run for kubectl.
fn kubectl_ref(run: &Run) -> String {
    format!("{} {} -n {}", run.kind.key(), run.name, run.namespace)
}

/// One decision list, read top to bottom: the first that applies is the answer.
#[allow(clippy::too_many_lines)]
/// Explains `run` given the cluster's SignetConfig, the Events about the run and whether a
/// signer holds its Lease (`leader`: holder identity while the lease is fresh).
pub fn explain(
    run: &Run,
    config: Option<&SignetConfig>,
    events: &[Event],
    leader: Option<&str>,
) -> Explanation {
    let events: Vec<String> = events.iter().map(event_line).collect();
    let retries = run.retries();
    let explanation = |state, why: String, fix: Option<String>| Explanation {
        state,
        why,
        fix,
        retries,
        events: events.clone(),
    };
    let reason = run
        .annotation(FAILURE_REASON)
        .unwrap_or("no reason recorded");
    match run.annotation(SIGNED) {
        Some("true") => {
            return explanation(
                "signed",
                "the run is signed and its record is stored.".to_owned(),
                Some(format!(
                    "check it end to end: kubectl signet verify {}",
                    kubectl_ref(run)
                )),
            );
        }
        Some("failed") => {
            return explanation(
                "failed",
                format!(
                    "signing failed {retries} times and the signer gave up; the last failure: {reason}"
                ),
                Some(format!(
                    "fix the cause above, then let the signer try again: kubectl annotate {} {SIGNED}- chains.tekton.dev/retries- chains.tekton.dev/failure-reason-",
                    kubectl_ref(run)
                )),
            );
        }
        _ => {}
    }
    let Some(config) = config else {
        return explanation(
            "not-installed",
            "there is no SignetConfig named config in this cluster, so nothing signs runs."
                .to_owned(),
            Some("install Signet (docs/install.md) and apply a SignetConfig".to_owned()),
        );
    };
    if !run.is_done() {
        return explanation(
            "running",
            "the run has not finished (its Succeeded condition is neither True nor False); runs are signed once they finish, failed ones too.".to_owned(),
            None,
        );
    }
    let spec = &config.spec;
    let extra = spec.filter.managed_by.iter().cloned().collect();
    if !run.is_ours(&extra) {
        let by = run.object["spec"]["managedBy"].as_str().unwrap_or_default();
        return explanation(
            "not-ours",
            format!("spec.managedBy is {by:?}: runs another controller manages are left alone."),
            Some(format!(
                "to sign them, add {by:?} to spec.filter.managedBy of the SignetConfig"
            )),
        );
    }
    let watched = &spec.signer.namespaces;
    if !watched.is_empty() && !watched.contains(&run.namespace) {
        return explanation(
            "not-watched",
            format!(
                "the signer watches only the namespaces {watched:?}, not {}.",
                run.namespace
            ),
            Some(format!(
                "add {} to spec.signer.namespaces of the SignetConfig",
                run.namespace
            )),
        );
    }
    let not_ready = config.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "Ready" && c.status != ConditionStatus::True)
    });
    if let Some(condition) = not_ready {
        return explanation(
            "signer-down",
            format!(
                "the SignetConfig is not Ready ({}): {}",
                condition.reason, condition.message
            ),
            Some("see kubectl signet status, and fix what the condition names".to_owned()),
        );
    }
    if leader.is_none() {
        return explanation(
            "signer-down",
            "no signer holds the signer's Lease: none is running, or it cannot reach the API server.".to_owned(),
            Some(format!(
                "check the signer's pods: kubectl get pods -n {} -l app.kubernetes.io/name=signet-signer",
                spec.target_namespace
            )),
        );
    }
    if retries > 0 {
        return explanation(
            "retrying",
            format!(
                "{retries} attempts failed so far and the signer retries with backoff; the last failure: {}",
                last_warning(run, &events)
            ),
            Some("fix the cause above; the next attempt picks it up".to_owned()),
        );
    }
    explanation(
        "waiting",
        "the run is finished and Signet's to sign, and no attempt has failed: the signer has not reached it yet (a backlog, or it was just finished).".to_owned(),
        Some("wait a little; kubectl signet status shows what the signer has done".to_owned()),
    )
}

/// The failure reason annotation, else the newest Warning Event's message.
fn last_warning(run: &Run, events: &[String]) -> String {
    run.annotation(FAILURE_REASON)
        .map(str::to_owned)
        .or_else(|| {
            events
                .iter()
                .rev()
                .find(|e| e.starts_with("Warning"))
                .cloned()
        })
        .unwrap_or_else(|| "not recorded".to_owned())
}

fn event_line(event: &Event) -> String {
    format!(
        "{} {} ({}×, last {}): {}",
        event.type_.as_deref().unwrap_or("Normal"),
        event.reason.as_deref().unwrap_or_default(),
        event.count.unwrap_or(1),
        last_seen(event),
        event.message.as_deref().unwrap_or_default()
    )
}

/// The Lease's holder while its claim is fresh (renewed within its duration, on this
/// machine's clock), `None` when nobody holds it.
pub fn fresh_holder(lease: &Lease) -> Option<String> {
    let spec = lease.spec.as_ref()?;
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty())?;
    let renewed = spec.renew_time.as_ref()?.0;
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    let age = k8s_openapi::jiff::Timestamp::now().as_second() - renewed.as_second();
    (age <= duration).then_some(holder)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use signet_crds::{Condition, SignetConfigSpec, SignetConfigStatus};
    use signet_signer::run::RunKind;

    use super::*;

    #[allow(clippy::needless_pass_by_value)]
    fn run(annotations: serde_json::Value, succeeded: &str, managed_by: Option<&str>) -> Run {
        Run::from_object(
            RunKind::TaskRun,
            json!({
                "metadata": {"name": "build", "namespace": "ci", "uid": "u1", "annotations": annotations},
                "spec": {"managedBy": managed_by},
                "status": {"conditions": [{"type": "Succeeded", "status": succeeded}]}
            }),
        )
    }

    fn config(ready: bool) -> SignetConfig {
        let mut config = SignetConfig::new("config", SignetConfigSpec::default());
        config.status = Some(SignetConfigStatus {
            conditions: vec![Condition {
                type_: "Ready".to_owned(),
                status: if ready {
                    ConditionStatus::True
                } else {
                    ConditionStatus::False
                },
                reason: if ready { "Ready" } else { "InvalidSpec" }.to_owned(),
                message: "the signing Secret is missing".to_owned(),
                ..Condition::default()
            }],
            ..SignetConfigStatus::default()
        });
        config
    }

    #[test]
    fn each_reason_a_run_is_unsigned_is_named_with_its_fix() {
        let ready = config(true);
        let leader = Some("signer-0");
        let state = |run: &Run, config: Option<&SignetConfig>, leader: Option<&str>| {
            explain(run, config, &[], leader).state
        };
        assert_eq!(
            state(&run(json!({}), "True", None), None, leader),
            "not-installed"
        );
        assert_eq!(
            state(&run(json!({}), "Unknown", None), Some(&ready), leader),
            "running"
        );
        assert_eq!(
            state(
                &run(json!({}), "True", Some("kueue.x-k8s.io/multikueue")),
                Some(&ready),
                leader
            ),
            "not-ours"
        );
        assert_eq!(
            state(&run(json!({}), "False", None), Some(&config(false)), leader),
            "signer-down"
        );
        assert_eq!(
            state(&run(json!({}), "True", None), Some(&ready), None),
            "signer-down"
        );
        assert_eq!(
            state(&run(json!({}), "True", None), Some(&ready), leader),
            "waiting"
        );
        let retrying = run(
            json!({"chains.tekton.dev/retries": "2", "chains.tekton.dev/failure-reason": "registry said 401"}),
            "True",
            None,
        );
        let explained = explain(&retrying, Some(&ready), &[], leader);
        assert_eq!((explained.state, explained.retries), ("retrying", 2));
        assert!(
            explained.why.contains("registry said 401"),
            "{}",
            explained.why
        );
        let failed = run(
            json!({"chains.tekton.dev/signed": "failed", "chains.tekton.dev/retries": "4", "chains.tekton.dev/failure-reason": "KMS denied"}),
            "True",
            None,
        );
        let explained = explain(&failed, Some(&ready), &[], leader);
        assert_eq!(explained.state, "failed");
        assert!(explained.fix.is_some_and(|f| {
            f.contains("kubectl annotate taskrun build -n ci chains.tekton.dev/signed-")
        }));
        let mut narrow = ready.clone();
        narrow.spec.signer.namespaces = vec!["prod".to_owned()];
        assert_eq!(
            state(&run(json!({}), "True", None), Some(&narrow), leader),
            "not-watched"
        );
    }
}
