//! How a watch is doing, for the people running the signer: whether it has listed yet, and
//! whether it is failing. A failing watch is retried with backoff by the caller's stream
//! (kube's `default_backoff`); this logs the first failure and the recovery once each, not
//! once per attempt, and keeps `/readyz` at 503 with the reason until the watch has listed.
//!
//! Must not retry or sleep itself: it only reports.

use std::sync::Arc;

use signet_runtime::health::Health;

/// The standing of one watch (`what`: `watch TaskRuns (all namespaces)`), reported to
/// [`Health`] until dropped.
pub struct WatchStatus {
    health: Arc<Health>,
    what: String,
    listed: bool,
    failing: bool,
}

impl WatchStatus {
    /// A watch that has not listed yet: not ready until it has.
    pub fn new(health: &Arc<Health>, what: impl Into<String>) -> Self {
        let what = what.into();
        health.set_problem(&what, Some("waiting for the first list".to_owned()));
        Self {
            health: health.clone(),
            what,
            listed: false,
            failing: false,
        }
    }

    /// Whether the watch has listed at least once.
    pub fn has_listed(&self) -> bool {
        self.listed
    }

    /// The initial list (or a re-list after an expired watch) completed.
    pub fn listed(&mut self) {
        self.listed = true;
        self.working();
    }

    /// An event arrived: the watch works (again).
    pub fn working(&mut self) {
        if self.failing {
            tracing::info!(watch = %self.what, "watch recovered");
            self.failing = false;
        }
        if self.listed {
            self.health.set_problem(&self.what, None);
        }
    }

    /// The watch failed; the stream retries it after a backoff.
    pub fn failed(&mut self, error: &dyn std::fmt::Display) {
        if self.failing {
            tracing::debug!(watch = %self.what, %error, "watch still failing");
        } else {
            tracing::warn!(watch = %self.what, %error, "watch failed; retrying with backoff (logged again when it recovers)");
            self.failing = true;
        }
        self.health
            .set_problem(&self.what, Some(format!("{error} (retrying with backoff)")));
    }
}

impl Drop for WatchStatus {
    fn drop(&mut self) {
        self.health.set_problem(&self.what, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_is_ready_only_after_its_first_list_and_while_it_works() {
        let health = Health::new("l", Vec::new());
        health.set_ready(true);
        let mut status = WatchStatus::new(&health, "watch TaskRuns");
        assert!(
            health
                .not_ready()
                .unwrap()
                .contains("waiting for the first list")
        );
        status.working();
        assert!(
            health.not_ready().is_some(),
            "an event before the list is not enough"
        );
        status.listed();
        assert_eq!(health.not_ready(), None);
        status.failed(&"403 Forbidden");
        let why = health.not_ready().unwrap();
        assert!(
            why.contains("watch TaskRuns: 403 Forbidden (retrying with backoff)"),
            "{why}"
        );
        status.working();
        assert_eq!(health.not_ready(), None);
        status.failed(&"gone");
        drop(status);
        assert_eq!(
            health.not_ready(),
            None,
            "a watch that stopped reports nothing"
        );
    }
}
