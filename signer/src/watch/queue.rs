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

/// The runs queued or being signed (retries included), by uid, with when each was queued: a
/// run is queued once however many watch events it gets. A [`Claim`] takes it out again when
/// dropped, also when signing panicked, so that no input can strand a run until a restart.
#[derive(Clone, Default)]
pub struct InFlight(std::sync::Arc<Mutex<std::collections::HashMap<String, std::time::Instant>>>);

/// A run held in [`InFlight`] until this is dropped.
pub struct Claim {
    set: InFlight,
    uid: String,
}

impl InFlight {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut std::collections::HashMap<String, std::time::Instant>) -> T,
    ) -> T {
        match self.0.lock() {
            Ok(mut set) => f(&mut set),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Adds `uid`; returns how many are in flight, or `None` if it already was.
    pub fn insert(&self, uid: &str) -> Option<usize> {
        self.with(|set| match set.entry(uid.to_owned()) {
            std::collections::hash_map::Entry::Occupied(_) => None,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(std::time::Instant::now());
                Some(set.len())
            }
        })
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.with(|set| set.contains_key(uid))
    }

    /// How many runs are in flight, and how long the one queued longest has waited.
    pub fn waiting(&self) -> (usize, std::time::Duration) {
        self.with(|set| {
            let oldest = set.values().min().map(std::time::Instant::elapsed);
            (set.len(), oldest.unwrap_or_default())
        })
    }

    /// Holds `uid` (already inserted) until the returned claim is dropped.
    pub fn claim(&self, uid: &str) -> Claim {
        Claim {
            set: self.clone(),
            uid: uid.to_owned(),
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.set.with(|set| set.remove(&self.uid));
    }
}

/// Runs found at start, newest first. Handed out only once every watch has listed (or after
/// 30 s, should one never list): while the lists page in, signing the backlog would put its
/// API requests in the client's rate limiter ahead of the next pages, and delay the watch
/// that brings new runs.
#[derive(Default)]
pub struct Backlog {
    heap: Mutex<std::collections::BinaryHeap<Backlogged>>,
    pub added: tokio::sync::Notify,
    open: std::sync::atomic::AtomicBool,
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

    /// Every watch has listed: the backlog may be handed out.
    pub fn open(&self) {
        if !self.open.swap(true, std::sync::atomic::Ordering::AcqRel) {
            self.added.notify_one();
        }
    }

    /// The newest run still waiting, as work; none before [`Backlog::open`].
    pub fn pop_newest(&self) -> Option<Work> {
        if !self.open.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        self.heap.lock().ok()?.pop().map(|b| Work {
            run: b.run,
            cached: None,
            queued: b.queued,
        })
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_run_whose_signing_panicked_is_released() {
        let in_flight = InFlight::default();
        assert_eq!(in_flight.insert("uid-1"), Some(1));
        assert_eq!(in_flight.insert("uid-1"), None, "queued once");
        let claim = in_flight.claim("uid-1");
        let task = tokio::spawn(async move {
            let _claim = claim;
            panic!("a hostile input");
        });
        assert!(task.await.is_err());
        assert!(!in_flight.contains("uid-1"));
        assert_eq!(in_flight.insert("uid-1"), Some(1), "it can be queued again");
    }

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
        assert!(
            backlog.pop_newest().is_none(),
            "not before the lists are done"
        );
        backlog.open();
        let order: Vec<String> = std::iter::from_fn(|| backlog.pop_newest().map(|w| w.run))
            .map(|r| r.name)
            .collect();
        assert_eq!(order, ["new", "mid", "old"]);
    }
}
