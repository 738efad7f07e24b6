//! Events on the SignetConfig, for `kubectl describe signetconfig config` and `kubectl signet
//! explain`: what the operator did (`Applied`, `KeyGenerated`, `KeyCopied`) and each change of
//! the `Ready` and `Degraded` conditions under the condition's own reason (`SignerReady`,
//! `RollingOut`, `InvalidSpec`, `SigningKeyMissing`, …). A failure to record one is logged, never
//! fails a reconcile.

use kube::Resource as _;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use signet_crds::{ConditionStatus, SignetConfig, SignetConfigStatus};

use crate::apply::ApplyReport;

/// The longest note an Event carries (the API server refuses more than 1 kB).
const NOTE_LIMIT: usize = 1000;

/// Records Events about the SignetConfig.
#[derive(Clone)]
pub struct Announcer {
    recorder: Recorder,
}

impl Announcer {
    pub fn new(client: kube::Client) -> Self {
        let reporter = Reporter {
            controller: "signet-operator".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// Records one Event about `config`.
    pub async fn publish(
        &self,
        config: &SignetConfig,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let mut note = note;
        if note.len() > NOTE_LIMIT {
            let mut cut = NOTE_LIMIT - 1;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
            note.push('…');
        }
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &config.object_ref(&())).await {
            tracing::debug!(%error, reason, "failed to record an Event on the SignetConfig");
        }
    }

    /// Records what an apply pass wrote and removed (`Applied`).
    pub async fn applied(&self, config: &SignetConfig, report: &ApplyReport) {
        let mut note = String::new();
        if !report.written.is_empty() {
            note = format!("created or changed {}", report.written.join(", "));
        }
        if !report.pruned.is_empty() {
            let sep = if note.is_empty() { "" } else { "; " };
            note = format!("{note}{sep}removed {}", report.pruned.join(", "));
        }
        self.publish(config, EventType::Normal, "Applied", note)
            .await;
    }

    /// Records that `spec.monitoring` could set up only the dashboard (no Prometheus operator
    /// here), once: when `new.monitoring` says so for the first time.
    pub async fn monitoring_unavailable(&self, config: &SignetConfig, new: &SignetConfigStatus) {
        let was = config.status.as_ref().and_then(|s| s.monitoring.as_ref());
        if was != new.monitoring.as_ref() {
            let note = new.monitoring.clone().unwrap_or_default();
            self.publish(config, EventType::Warning, "MonitoringUnavailable", note)
                .await;
        }
    }

    /// Records the changes of `Ready` and `Degraded` from `previous` to `new`.
    pub async fn transition(
        &self,
        config: &SignetConfig,
        previous: Option<&SignetConfigStatus>,
        new: &SignetConfigStatus,
    ) {
        for (type_, reason, note) in transitions(previous, new) {
            self.publish(config, type_, &reason, note).await;
        }
    }
}

/// `(status, reason, message)` of condition `type_`.
fn condition(
    status: &SignetConfigStatus,
    type_: &str,
) -> Option<(ConditionStatus, String, String)> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status, c.reason.clone(), c.message.clone()))
}

/// The Events for what changed: `Ready` changing (status or reason) under its new reason, a
/// Warning when the installation is Degraded; `Degraded` turning True (or True for another
/// reason) as a Warning under its reason — a spec the operator cannot act on degrades the
/// installation while the signer already running stays Ready. One Event per reason.
pub fn transitions(
    previous: Option<&SignetConfigStatus>,
    new: &SignetConfigStatus,
) -> Vec<(EventType, String, String)> {
    let changed = |type_: &str| {
        let now = condition(new, type_)?;
        let before = previous.and_then(|p| condition(p, type_));
        let same = before
            .as_ref()
            .is_some_and(|(s, r, _)| *s == now.0 && *r == now.1);
        (!same).then_some(now)
    };
    let degraded = condition(new, "Degraded").is_some_and(|d| d.0 == ConditionStatus::True);
    let mut out = Vec::new();
    if let Some((_, reason, message)) = changed("Ready") {
        let type_ = if degraded {
            EventType::Warning
        } else {
            EventType::Normal
        };
        out.push((type_, reason, message));
    }
    if let Some((ConditionStatus::True, reason, message)) = changed("Degraded")
        && !out.iter().any(|(_, r, _)| *r == reason)
    {
        out.push((EventType::Warning, reason, message));
    }
    out
}

#[cfg(test)]
mod tests {
    use signet_crds::Condition;

    use super::*;

    fn status(ready: ConditionStatus, reason: &str, degraded: Option<&str>) -> SignetConfigStatus {
        let condition = |type_: &str, status, reason: &str| Condition {
            type_: type_.to_owned(),
            status,
            reason: reason.to_owned(),
            message: format!("{type_} because {reason}"),
            ..Condition::default()
        };
        let degraded_status = if degraded.is_some() {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        };
        SignetConfigStatus {
            conditions: vec![
                condition("Ready", ready, reason),
                condition(
                    "Degraded",
                    degraded_status,
                    degraded.unwrap_or("AsExpected"),
                ),
            ],
            ..SignetConfigStatus::default()
        }
    }

    fn reasons(events: &[(EventType, String, String)]) -> Vec<(EventType, &str)> {
        events.iter().map(|(t, r, _)| (*t, r.as_str())).collect()
    }

    #[test]
    fn each_change_of_ready_or_degraded_is_one_event_under_its_reason() {
        use ConditionStatus::{False, True};
        use EventType::{Normal, Warning};
        let rolling = status(False, "RollingOut", None);
        let ready = status(True, "SignerReady", None);
        let invalid = status(False, "InvalidSpec", Some("InvalidSpec"));
        assert_eq!(
            reasons(&transitions(None, &rolling)),
            [(Normal, "RollingOut")]
        );
        assert!(
            transitions(Some(&rolling), &rolling).is_empty(),
            "no change, no Event"
        );
        assert_eq!(
            reasons(&transitions(Some(&rolling), &ready)),
            [(Normal, "SignerReady")]
        );
        let bad = transitions(Some(&ready), &invalid);
        assert_eq!(
            reasons(&bad),
            [(Warning, "InvalidSpec")],
            "one Event per reason"
        );
        assert_eq!(bad[0].2, "Ready because InvalidSpec");
        // The running signer stays Ready while a new spec cannot be acted on.
        let degraded_ready = status(True, "SignerReady", Some("InvalidSpec"));
        assert_eq!(
            reasons(&transitions(Some(&ready), &degraded_ready)),
            [(Warning, "InvalidSpec")]
        );
        let missing = status(False, "SigningKeyMissing", Some("SigningKeyMissing"));
        assert_eq!(
            reasons(&transitions(Some(&rolling), &missing)),
            [(Warning, "SigningKeyMissing")],
            "another reason with the same status is a change"
        );
    }
}
