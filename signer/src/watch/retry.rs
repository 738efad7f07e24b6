//! The retry policy, in one place: how often a run is attempted before it is marked `failed`
//! and how long between attempts, and how long the API server may stay away before a run
//! waits for its next watch event. (The watches themselves back off with kube-runtime's
//! default backoff; see `watch_runs`.)

use std::time::Duration;

/// After this many failed attempts a run is marked `failed` (Chains' limit).
pub const MAX_RETRIES: u32 = 3;

/// Times a run is read again at once in one go (a write conflicted, or a retry is due),
/// in case something keeps changing it.
pub(crate) const AGAIN_LIMIT: u32 = 10;

/// Wait before attempt `retries + 1` of a run whose earlier attempts failed: 0.5 s, 1 s, 2 s.
pub fn attempt_delay(retries: u32) -> Duration {
    if retries == 0 {
        Duration::ZERO
    } else {
        Duration::from_millis(250 << retries.min(4))
    }
}

/// The number of the attempt that just failed, after `retries` recorded ones. The recorded
/// count is an annotation the run's author can set too (to `4294967295`, say): it saturates
/// instead of wrapping round to a fresh run with all its retries ahead.
pub fn failed_attempt(retries: u32) -> u32 {
    retries.saturating_add(1)
}

/// What one attempt at a run (`worker::process`) asks its caller to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing: signed, failed for good, or not ours to sign.
    Done,
    /// Read the run again and go on at once (a write conflicted, or a retry is due).
    Again,
    /// The API server did not answer a read or write: try again after a backoff.
    ApiError,
}

/// Times a run is retried when the API server does not answer (about 7½ minutes in all).
pub(crate) const API_RETRIES: u32 = 20;

/// Wait before API retry `n` (1-based): 0.5 s doubling to 30 s.
pub(crate) fn api_backoff(n: u32) -> Duration {
    Duration::from_millis(500u64 << n.saturating_sub(1).min(6)).min(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_retries_back_off_to_thirty_seconds_for_about_seven_minutes() {
        assert_eq!(api_backoff(1), Duration::from_millis(500));
        assert_eq!(api_backoff(2), Duration::from_secs(1));
        assert_eq!(api_backoff(7), Duration::from_secs(30));
        assert_eq!(api_backoff(u32::MAX), Duration::from_secs(30));
        let total: Duration = (1..=API_RETRIES).map(api_backoff).sum();
        assert!(
            total > Duration::from_secs(400) && total < Duration::from_secs(500),
            "{total:?}"
        );
    }

    #[test]
    fn a_failed_attempt_waits_longer_each_time() {
        assert_eq!(failed_attempt(0), 1);
        assert_eq!(failed_attempt(u32::MAX), u32::MAX);
        assert!(failed_attempt(u32::MAX) > MAX_RETRIES);
        assert_eq!(attempt_delay(0), Duration::ZERO);
        assert_eq!(attempt_delay(1), Duration::from_millis(500));
        assert_eq!(attempt_delay(3), Duration::from_secs(2));
    }
}
