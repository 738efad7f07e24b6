//! The signer's work queues: runs that complete while it watches, and the backlog found at
//! start, which is drained newest first. Holds run references for the backlog, never whole
//! objects, so memory stays small however long the backlog.

use std::sync::Mutex;

use kube::api::DynamicObject;

use crate::run::Run;

/// A run to sign: the watched object for live runs, only its reference for the backlog.
pub struct Work {
    pub run: Run,
    pub cached: Option<DynamicObject>,
    /// When the signer saw the run done (for the queue-time histogram).
    pub queued: std::time::Instant,
}

/// Runs found at start, newest first.
#[derive(Default)]
pub struct Backlog {
    heap: Mutex<std::collections::BinaryHeap<Backlogged>>,
    pub added: tokio::sync::Notify,
}

/// Ordered by creation time (then arrival), so the heap yields the newest first.
struct Backlogged {
    created: Option<k8s_openapi::jiff::Timestamp>,
    seq: usize,
    run: Run,
    queued: std::time::Instant,
}

impl PartialEq for Backlogged {
    fn eq(&self, other: &Self) -> bool {
        (self.created, self.seq) == (other.created, other.seq)
    }
}

impl Eq for Backlogged {}

impl PartialOrd for Backlogged {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Backlogged {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.created, self.seq).cmp(&(other.created, other.seq))
    }
}

impl Backlog {
    pub fn push(&self, created: Option<k8s_openapi::jiff::Timestamp>, run: Run) {
        if let Ok(mut heap) = self.heap.lock() {
            let seq = heap.len();
            heap.push(Backlogged {
                created,
                seq,
                run,
                queued: std::time::Instant::now(),
            });
        }
        self.added.notify_one();
    }

    /// The newest run still waiting, as work.
    pub fn pop_newest(&self) -> Option<Work> {
        self.heap.lock().ok()?.pop().map(|b| Work {
            run: b.run,
            cached: None,
            queued: b.queued,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::RunKind;

    #[test]
    fn backlog_yields_the_newest_run_first() {
        let backlog = Backlog::default();
        let run = |name: &str| {
            Run::from_object(
                RunKind::TaskRun,
                serde_json::json!({"metadata": {"name": name}}),
            )
        };
        let at = |s: &str| Some(s.parse::<k8s_openapi::jiff::Timestamp>().unwrap());
        backlog.push(at("2026-01-01T00:00:00Z"), run("old"));
        backlog.push(at("2026-03-01T00:00:00Z"), run("new"));
        backlog.push(at("2026-02-01T00:00:00Z"), run("mid"));
        let order: Vec<String> = std::iter::from_fn(|| backlog.pop_newest().map(|w| w.run))
            .map(|r| r.name)
            .collect();
        assert_eq!(order, ["new", "mid", "old"]);
    }
}
