//! How many requests go to one peer at once — a registry host, a KMS key — so that hundreds
//! of runs in flight do not become hundreds of simultaneous requests to one server. Each
//! peer's limit adapts as TCP's congestion window does: halved when the peer answers 429 or
//! 503 (at most once a second, so one wave of refusals counts once), and raised while every
//! permit is in use — by one per answer until the peer first refuses (slow start: a far-away
//! peer's limit doubles each round trip), then by one per limit's worth — up to a ceiling.
//!
//! Must not retry or sleep itself: callers decide what a refusal means for their request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Limits per peer of one kind (registries, KMS keys).
pub struct PeerLimits {
    /// For messages and metrics: `registry`, `kms`.
    kind: &'static str,
    start: usize,
    ceiling: usize,
    peers: Mutex<HashMap<String, Arc<Limit>>>,
}

/// Peers tracked at most (a registry per image host is a handful; this bounds hostile input).
const MAX_PEERS: usize = 1024;
/// Refusals closer together than this halve the limit once.
const CUT_SPACING: Duration = Duration::from_secs(1);

impl std::fmt::Debug for PeerLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerLimits")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// One peer's limit.
pub struct Limit {
    permits: Arc<Semaphore>,
    state: Mutex<State>,
}

struct State {
    limit: usize,
    ceiling: usize,
    /// Permits to take out of circulation as they come back (the limit was cut below the
    /// permits in use).
    debt: usize,
    /// Answers since the last change while the peer was saturated.
    saturated_answers: usize,
    /// Until the peer first refuses a request, its limit grows by one per saturated answer
    /// (doubling each round trip, as TCP's slow start), not by one per limit's worth.
    slow_start: bool,
    last_cut: Option<Instant>,
    throttled_total: u64,
}

/// A request's place at a peer; gives it back when dropped.
pub struct PeerPermit {
    limit: Arc<Limit>,
    permit: Option<OwnedSemaphorePermit>,
    /// Whether every permit was in use when this one was taken.
    saturated: bool,
}

impl PeerLimits {
    pub fn new(kind: &'static str, start: usize, ceiling: usize) -> Self {
        Self {
            kind,
            start: start.max(1),
            ceiling: ceiling.max(start).max(1),
            peers: Mutex::new(HashMap::new()),
        }
    }

    fn limit(&self, peer: &str) -> Arc<Limit> {
        let mut peers = match self.peers.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(limit) = peers.get(peer) {
            return limit.clone();
        }
        if peers.len() >= MAX_PEERS {
            // Forget idle peers rather than grow without bound.
            peers.retain(|_, l| Arc::strong_count(l) > 1);
        }
        let limit = Arc::new(Limit {
            permits: Arc::new(Semaphore::new(self.start)),
            state: Mutex::new(State {
                limit: self.start,
                ceiling: self.ceiling,
                debt: 0,
                saturated_answers: 0,
                slow_start: true,
                last_cut: None,
                throttled_total: 0,
            }),
        });
        peers.insert(peer.to_owned(), limit.clone());
        limit
    }

    /// Waits for a place at `peer`.
    pub async fn acquire(&self, peer: &str) -> PeerPermit {
        let limit = self.limit(peer);
        let saturated = limit.permits.available_permits() == 0;
        // The semaphore is never closed.
        let permit = limit.permits.clone().acquire_owned().await.ok();
        PeerPermit {
            limit,
            permit,
            saturated,
        }
    }

    /// `(peer, current limit, refusals so far)` of every peer seen.
    pub fn snapshot(&self) -> Vec<(String, usize, u64)> {
        let peers = match self.peers.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut out: Vec<_> = peers
            .iter()
            .map(|(peer, l)| {
                let s = l.lock();
                (peer.clone(), s.limit, s.throttled_total)
            })
            .collect();
        out.sort();
        out
    }
}

/// The metric families for `/metrics`: each peer's limit and its 429/503 answers, for every
/// kind of peer in `all`.
pub fn sampled(all: &[Arc<PeerLimits>]) -> Vec<signet_runtime::health::Sampled> {
    fn rows(all: &[Arc<PeerLimits>], value: fn(usize, u64) -> f64) -> Vec<(String, f64)> {
        all.iter()
            .flat_map(|limits| {
                limits.snapshot().into_iter().map(|(peer, limit, refused)| {
                    let peer = peer.replace(['"', '\\', '\n'], "_");
                    (
                        format!("kind=\"{}\",peer=\"{peer}\"", limits.kind),
                        value(limit, refused),
                    )
                })
            })
            .collect()
    }
    let (limits, refused) = (all.to_vec(), all.to_vec());
    vec![
        signet_runtime::health::Sampled {
            name: "signet_signer_peer_concurrency_limit",
            help: "Requests allowed at once to one peer (registry host, KMS key); halved on 429/503, raised while saturated.",
            type_: "gauge",
            // Limits and counts fit f64 exactly.
            #[allow(clippy::cast_precision_loss)]
            read: Arc::new(move || rows(&limits, |limit, _| limit as f64)),
        },
        signet_runtime::health::Sampled {
            name: "signet_signer_peer_throttled_total",
            help: "Answers 429 or 503 from one peer (registry host, KMS key).",
            type_: "counter",
            #[allow(clippy::cast_precision_loss)]
            read: Arc::new(move || rows(&refused, |_, refused| refused as f64)),
        },
    ]
}

impl Limit {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl PeerPermit {
    /// The peer answered 429 or 503: halve its limit (once per second at most).
    pub fn throttled(&self) {
        let mut s = self.limit.lock();
        s.throttled_total += 1;
        let now = Instant::now();
        if s.last_cut
            .is_some_and(|at| now.duration_since(at) < CUT_SPACING)
        {
            return;
        }
        s.last_cut = Some(now);
        s.slow_start = false;
        let cut = s.limit - (s.limit / 2).max(1);
        s.limit -= cut;
        s.saturated_answers = 0;
        let forgotten = self.limit.permits.forget_permits(cut);
        s.debt += cut - forgotten;
        tracing::debug!(limit = s.limit, "peer refused a request; fewer at once");
    }

    /// The peer answered (anything but 429/503): while it is saturated, raise its limit by
    /// one after a limit's worth of answers (after each answer until it first refused one).
    pub fn answered(&self) {
        if !self.saturated {
            return;
        }
        let mut s = self.limit.lock();
        s.saturated_answers += 1;
        let step = if s.slow_start { 1 } else { s.limit };
        if s.saturated_answers >= step && s.limit < s.ceiling {
            s.saturated_answers = 0;
            s.limit += 1;
            if s.debt > 0 {
                s.debt -= 1;
            } else {
                self.limit.permits.add_permits(1);
            }
        }
    }
}

impl Drop for PeerPermit {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let mut s = self.limit.lock();
        if s.debt > 0 {
            s.debt -= 1;
            permit.forget();
        }
    }
}

/// Whether an HTTP status asks the client to slow down.
pub fn is_throttling(status: u16) -> bool {
    status == 429 || status == 503
}

/// How long to wait before asking again after a 429/503: the answer's `Retry-After` in
/// seconds (capped at `cap`), else `fallback`.
pub fn retry_after(headers: &http::HeaderMap, fallback: Duration, cap: Duration) -> Duration {
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(fallback, |s| Duration::from_secs(s).min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refusal_halves_the_limit_once_and_saturated_answers_raise_it() {
        let limits = PeerLimits::new("registry", 8, 10);
        let held: Vec<PeerPermit> =
            futures::future::join_all((0..8).map(|_| limits.acquire("r"))).await;
        // Every permit in use: the next waits.
        let waiting = tokio::time::timeout(Duration::from_millis(20), limits.acquire("r")).await;
        assert!(waiting.is_err(), "a ninth request went out at once");
        held[0].throttled();
        held[1].throttled();
        assert_eq!(limits.snapshot(), vec![("r".to_owned(), 4, 2)], "cut once");
        drop(held);
        // Four places now, not eight.
        let four: Vec<PeerPermit> =
            futures::future::join_all((0..4).map(|_| limits.acquire("r"))).await;
        let fifth = tokio::time::timeout(Duration::from_millis(20), limits.acquire("r")).await;
        assert!(fifth.is_err(), "the limit was not cut");
        drop(four);
        // Saturated answers raise it by one per limit's worth (four answers at limit four).
        for _ in 0..4 {
            let mut p = limits.acquire("r").await;
            p.saturated = true;
            p.answered();
        }
        assert_eq!(
            limits.snapshot(),
            vec![("r".to_owned(), 5, 2)],
            "raised by one"
        );
        // Before any refusal, each saturated answer raises the limit (slow start).
        let fresh = PeerLimits::new("registry", 2, 10);
        for _ in 0..3 {
            let mut p = fresh.acquire("s").await;
            p.saturated = true;
            p.answered();
        }
        assert_eq!(fresh.snapshot(), vec![("s".to_owned(), 5, 0)], "slow start");
        // Other peers are not affected.
        let other = limits.acquire("elsewhere").await;
        drop(other);
        assert_eq!(limits.snapshot()[0], ("elsewhere".to_owned(), 8, 0));
    }

    #[test]
    fn retry_after_is_read_and_capped() {
        let mut h = http::HeaderMap::new();
        let (fallback, cap) = (Duration::from_millis(500), Duration::from_secs(5));
        assert_eq!(retry_after(&h, fallback, cap), fallback);
        h.insert(http::header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h, fallback, cap), Duration::from_secs(2));
        h.insert(http::header::RETRY_AFTER, "3600".parse().unwrap());
        assert_eq!(retry_after(&h, fallback, cap), cap);
        h.insert(http::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h, fallback, cap), fallback);
    }
}
