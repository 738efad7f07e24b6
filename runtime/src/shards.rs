//! Active-active work sharing: the work is divided into `shards` by a stable hash of each
//! item's key (a run's UID), and each shard is owned through a Lease of its own
//! (`<base>-shard-<i>-of-<n>`), as Tekton's controllers own buckets. Every replica renews
//! the shards it holds and takes free or expired ones up to its fair share
//! (`ceil(shards / replicas)`); a shard left free for a second round is taken by anyone, so the
//! shards of a replica that died are taken over once their lease expires.
//!
//! A shard whose renewal fails is given up at the renew deadline (two thirds of the lease),
//! before anyone else may take it, exactly as [`crate::lease`] does for a single leader.
//!
//! Must not do any work of its own: it only says which shards this process owns.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::Client;

use crate::lease::{Annotator, Attempt, LeaseLock, LeaseSettings};

/// How the shards are held.
#[derive(Clone, Debug)]
pub struct ShardSettings {
    pub namespace: String,
    /// Lease names start with this (`signet-signer`).
    pub base: String,
    pub identity: String,
    pub shards: usize,
    /// Replicas expected to share them (for the fair share).
    pub replicas: usize,
    pub duration: Duration,
    pub renew_every: Duration,
}

/// The shard of `key` among `shards`: FNV-1a over its bytes, so every replica and every
/// version agrees.
pub fn shard_of(key: &str, shards: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // The remainder is below `shards`, which is a usize.
    #[allow(clippy::cast_possible_truncation)]
    let shard = (hash % shards.max(1) as u64) as usize;
    shard
}

/// The Lease of shard `index` of `shards`.
pub fn lease_name(base: &str, index: usize, shards: usize) -> String {
    format!("{base}-shard-{index}-of-{shards}")
}

/// Which shards this process owns now; cheap to clone and to ask.
#[derive(Clone, Debug)]
pub struct Owned {
    bits: Arc<Vec<AtomicBool>>,
    /// Woken when a shard is taken (its earlier work must be looked for).
    pub gained: Arc<tokio::sync::Notify>,
    /// Shards taken so far.
    gains: Arc<std::sync::atomic::AtomicU64>,
}

impl Owned {
    pub fn new(shards: usize) -> Self {
        Self {
            bits: Arc::new((0..shards.max(1)).map(|_| AtomicBool::new(false)).collect()),
            gained: Arc::default(),
            gains: Arc::default(),
        }
    }

    /// How many times a shard was taken so far.
    pub fn gains(&self) -> u64 {
        self.gains.load(Ordering::Acquire)
    }

    pub fn shards(&self) -> usize {
        self.bits.len()
    }

    /// Whether the item with `key` is this process's to work on.
    pub fn owns(&self, key: &str) -> bool {
        self.bits[shard_of(key, self.bits.len())].load(Ordering::Acquire)
    }

    pub fn holds(&self, index: usize) -> bool {
        self.bits[index].load(Ordering::Acquire)
    }

    /// Shards owned now.
    pub fn count(&self) -> usize {
        self.bits
            .iter()
            .filter(|b| b.load(Ordering::Acquire))
            .count()
    }

    fn set(&self, index: usize, owned: bool) {
        self.bits[index].store(owned, Ordering::Release);
    }
}

/// Holds shards for this process until dropped or [`ShardHolder::release`]d.
pub struct ShardHolder {
    settings: ShardSettings,
    locks: Vec<LeaseLock>,
    owned: Owned,
}

impl ShardHolder {
    pub fn new(client: &Client, settings: ShardSettings, annotator: Option<&Annotator>) -> Self {
        let locks = (0..settings.shards.max(1))
            .map(|i| {
                let lock = LeaseLock::new(
                    client.clone(),
                    LeaseSettings {
                        namespace: settings.namespace.clone(),
                        name: lease_name(&settings.base, i, settings.shards),
                        identity: settings.identity.clone(),
                        duration: settings.duration,
                        renew_every: settings.renew_every,
                    },
                );
                match annotator {
                    Some(a) => lock.with_annotations(a.clone()),
                    None => lock,
                }
            })
            .collect();
        Self {
            owned: Owned::new(settings.shards),
            settings,
            locks,
        }
    }

    pub fn owned(&self) -> Owned {
        self.owned.clone()
    }

    fn fair_share(&self) -> usize {
        self.settings.shards.div_ceil(self.settings.replicas.max(1))
    }

    /// One round: renew what is held (giving up a shard whose renewal has failed for the renew
    /// deadline), take free shards up to the fair share, and any shard that was free the
    /// round before. `state` carries, per shard, when it was last renewed and whether it was
    /// seen free.
    async fn round(&self, state: &mut [(Option<tokio::time::Instant>, bool)]) {
        let n = self.locks.len();
        // Each replica starts looking at its own place, so replicas starting together mostly
        // try different shards first.
        let offset = shard_of(&self.settings.identity, n);
        for step in 0..n {
            let i = (offset + step) % n;
            let lock = &self.locks[i];
            let (last_ok, seen_free) = &mut state[i];
            if self.owned.holds(i) {
                // The renewal may take only what is left of the renew deadline since the last
                // one: a slow call (or the renewals of the shards before it) must not keep a
                // shard past the moment another replica may take it.
                let deadline = lock.renew_deadline();
                let left = deadline.saturating_sub(last_ok.map_or(deadline, |t| t.elapsed()));
                let renewed = if left.is_zero() {
                    None
                } else {
                    tokio::time::timeout(left, lock.attempt(true)).await.ok()
                };
                let past_deadline = match renewed {
                    Some(Ok(Attempt::Holds)) => {
                        *last_ok = Some(tokio::time::Instant::now());
                        false
                    }
                    Some(Ok(_)) => {
                        tracing::warn!(
                            shard = i,
                            "another process took the shard; its runs are no longer ours"
                        );
                        self.owned.set(i, false);
                        false
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, shard = i, "failed to renew a shard");
                        last_ok.is_none_or(|t| t.elapsed() >= deadline)
                    }
                    None => true,
                };
                if past_deadline {
                    tracing::warn!(
                        shard = i,
                        "shard given up: not renewed within the renew deadline"
                    );
                    self.owned.set(i, false);
                }
                continue;
            }
            let take = self.owned.count() < self.fair_share() || *seen_free;
            match lock.attempt(take).await {
                Ok(Attempt::Holds) => {
                    tracing::info!(shard = i, shards = n, lease = %lease_name(&self.settings.base, i, n), "took a shard");
                    *last_ok = Some(tokio::time::Instant::now());
                    *seen_free = false;
                    self.owned.set(i, true);
                    self.owned.gains.fetch_add(1, Ordering::AcqRel);
                    self.owned.gained.notify_one();
                }
                Ok(Attempt::Available) => *seen_free = true,
                Ok(Attempt::HeldElsewhere) => *seen_free = false,
                Err(error) => tracing::debug!(%error, shard = i, "failed to read a shard's lease"),
            }
        }
    }

    /// Takes a first share of the shards (one round), then keeps holding and balancing them
    /// until `stop` resolves; calls `health` with whether any shard is held after each round.
    pub async fn hold(
        &self,
        first_round_done: tokio::sync::oneshot::Sender<()>,
        health: &crate::health::Health,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let mut state = vec![(None, false); self.locks.len()];
        self.round(&mut state).await;
        health.set_leader(self.owned.count() > 0);
        let _ = first_round_done.send(());
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(self.settings.renew_every) => {}
            }
            self.round(&mut state).await;
            health.set_leader(self.owned.count() > 0);
        }
    }

    /// Gives every held shard up so the other replicas take them at once (clean shutdown).
    pub async fn release(&self) {
        for (i, lock) in self.locks.iter().enumerate() {
            if self.owned.holds(i) {
                self.owned.set(i, false);
                if let Err(error) = lock.release().await {
                    tracing::warn!(%error, shard = i, "failed to release a shard");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spread_over_the_shards_and_always_land_in_the_same_one() {
        let mut counts = [0usize; 3];
        for i in 0..3000 {
            let uid = format!("5f1c9a2e-0000-4000-8000-{i:012}");
            let shard = shard_of(&uid, 3);
            assert_eq!(shard, shard_of(&uid, 3));
            counts[shard] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
        // Fixed values: a change of hash would move runs between replicas of two versions.
        assert_eq!(
            shard_of("", 7),
            usize::try_from(0xcbf2_9ce4_8422_2325_u64 % 7).unwrap()
        );
        assert_eq!(shard_of("abc", 1), 0);
        assert_eq!(
            lease_name("signet-signer", 2, 3),
            "signet-signer-shard-2-of-3"
        );
    }

    #[test]
    fn ownership_is_by_the_keys_shard() {
        let owned = Owned::new(4);
        let key = "run-uid";
        assert!(!owned.owns(key));
        owned.set(shard_of(key, 4), true);
        assert!(owned.owns(key));
        assert_eq!(owned.count(), 1);
    }
}
