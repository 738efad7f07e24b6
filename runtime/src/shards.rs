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
//! A change of replica count changes the sharding (`-of-3` instead of `-of-2`): the runs a
//! replica of one sharding owns are spread over other replicas in the other. The two must never
//! sign at once, so every signer also holds one shared Lease, `<base>-sharding`, whose holder
//! names its replica count (`replicas-<n>`): all replicas of one count renew it together, and
//! it passes to another count only once it has expired — when no replica of the old count has
//! renewed it for a whole lease duration, so each of them has given its shards up at its renew
//! deadline before. A replica owns a shard only while it also holds the sharding.
//!
//! Must not do any work of its own: it only says which shards this process owns.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// The Lease every replica of one replica count holds together (see the module's docs).
pub fn sharding_lease(base: &str) -> String {
    format!("{base}-sharding")
}

/// The sharding Lease's holder for `replicas` replicas.
pub fn sharding_holder(replicas: usize) -> String {
    format!("replicas-{replicas}")
}

/// The sharding Lease, held in common by the replicas of one replica count.
pub struct Sharding {
    lock: LeaseLock,
    /// Held until this many milliseconds after `epoch` (0: not held).
    until: Arc<AtomicU64>,
    epoch: tokio::time::Instant,
    waiting_logged: std::sync::atomic::AtomicBool,
}

impl Sharding {
    /// The sharding Lease `<base>-sharding` of `replicas` replicas, in the namespace and with
    /// the timing of `settings` (its name and identity are the sharding's own).
    pub fn new(client: &Client, settings: &LeaseSettings, base: &str, replicas: usize) -> Self {
        Self {
            lock: LeaseLock::new(
                client.clone(),
                LeaseSettings {
                    name: sharding_lease(base),
                    identity: sharding_holder(replicas),
                    ..settings.clone()
                },
            ),
            until: Arc::default(),
            epoch: tokio::time::Instant::now(),
            waiting_logged: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether this replica count holds the sharding now: renewed (by this replica) within the
    /// renew deadline.
    pub fn held(&self) -> bool {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.until.load(Ordering::Acquire) > now
    }

    /// Takes or renews the sharding Lease for this replica count. Another replica of the same
    /// count renewing at the same moment makes the write conflict: the Lease, read again,
    /// then names this count, renewed just now, which is as good.
    pub async fn renew(&self) -> bool {
        let started = tokio::time::Instant::now();
        let ours = match self.lock.attempt(true).await {
            Ok(Attempt::Holds) => true,
            Ok(_) => self
                .lock
                .holder()
                .await
                .is_ok_and(|h| h.as_deref() == Some(self.lock.identity())),
            Err(error) => {
                tracing::warn!(%error, "failed to renew the sharding lease");
                return self.held();
            }
        };
        if ours {
            let until = (started + self.lock.renew_deadline())
                .saturating_duration_since(self.epoch)
                .as_millis();
            self.until
                .store(u64::try_from(until).unwrap_or(u64::MAX), Ordering::Release);
            if self.waiting_logged.swap(false, Ordering::AcqRel) {
                tracing::info!("the signers of the earlier replica count have stopped; signing");
            }
            return true;
        }
        if !self.waiting_logged.swap(true, Ordering::AcqRel) {
            tracing::info!(
                "signers of another replica count still hold the sharding lease; waiting for it to expire before signing"
            );
        }
        self.until.store(0, Ordering::Release);
        false
    }

    /// Renews every `every`; returns once the sharding is no longer held (not renewed within
    /// the renew deadline, or taken by another replica count).
    pub async fn keep(&self, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            if !self.renew().await && !self.held() {
                return;
            }
        }
    }
}

/// Which shards this process owns now; cheap to clone and to ask. A shard is owned until a
/// moment (its last renewal's start plus the renew deadline), not until someone clears a
/// flag: however late the round that would renew it, or give it up, ownership ends on time,
/// before another replica may take the shard.
#[derive(Clone, Debug)]
pub struct Owned {
    /// Per shard: owned until this many milliseconds after `epoch` (0: not owned).
    until: Arc<Vec<AtomicU64>>,
    epoch: tokio::time::Instant,
    /// Woken when a shard is taken (its earlier work must be looked for).
    pub gained: Arc<tokio::sync::Notify>,
    /// Shards taken so far.
    gains: Arc<AtomicU64>,
    /// The sharding Lease's hold (see [`Sharding`]); no shard is owned without it.
    sharding: Option<Arc<AtomicU64>>,
}

impl Owned {
    pub fn new(shards: usize) -> Self {
        Self {
            until: Arc::new((0..shards.max(1)).map(|_| AtomicU64::new(0)).collect()),
            epoch: tokio::time::Instant::now(),
            gained: Arc::default(),
            gains: Arc::default(),
            sharding: None,
        }
    }

    /// How many times a shard was taken so far.
    pub fn gains(&self) -> u64 {
        self.gains.load(Ordering::Acquire)
    }

    pub fn shards(&self) -> usize {
        self.until.len()
    }

    /// Whether the item with `key` is this process's to work on.
    pub fn owns(&self, key: &str) -> bool {
        self.holds(shard_of(key, self.until.len()))
    }

    pub fn holds(&self, index: usize) -> bool {
        let now = self.now();
        let sharding = self
            .sharding
            .as_ref()
            .is_none_or(|s| s.load(Ordering::Acquire) > now);
        sharding && self.until[index].load(Ordering::Acquire) > now
    }

    /// Shards owned now.
    pub fn count(&self) -> usize {
        (0..self.until.len()).filter(|&i| self.holds(i)).count()
    }

    /// Milliseconds since `epoch` (at least 1, so that 0 means "not owned").
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Shard `index` is owned until `until` (a renewal that started then plus the deadline).
    fn own_until(&self, index: usize, until: tokio::time::Instant) {
        let at = until.saturating_duration_since(self.epoch).as_millis();
        self.until[index].store(u64::try_from(at).unwrap_or(u64::MAX), Ordering::Release);
    }

    fn give_up(&self, index: usize) {
        self.until[index].store(0, Ordering::Release);
    }
}

/// Holds shards for this process until dropped or [`ShardHolder::release`]d.
pub struct ShardHolder {
    settings: ShardSettings,
    locks: Vec<LeaseLock>,
    owned: Owned,
    sharding: Sharding,
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
        let lease = LeaseSettings {
            namespace: settings.namespace.clone(),
            name: settings.base.clone(),
            identity: settings.identity.clone(),
            duration: settings.duration,
            renew_every: settings.renew_every,
        };
        let sharding = Sharding::new(client, &lease, &settings.base, settings.shards);
        let mut owned = Owned::new(settings.shards);
        // The sharding's hold is measured from its own epoch: share both.
        owned.epoch = sharding.epoch;
        owned.sharding = Some(sharding.until.clone());
        Self {
            settings,
            locks,
            owned,
            sharding,
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
        // Without the sharding, no shard is this replica's: none is taken, and those held
        // stop being owned by themselves (`Owned::holds`) and lapse.
        if !self.sharding.renew().await {
            for (i, (last_ok, seen_free)) in state.iter_mut().enumerate() {
                self.owned.give_up(i);
                *last_ok = None;
                *seen_free = false;
            }
            return;
        }
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
                let started = tokio::time::Instant::now();
                let renewed = if left.is_zero() {
                    None
                } else {
                    tokio::time::timeout(left, lock.attempt(true)).await.ok()
                };
                let past_deadline = match renewed {
                    Some(Ok(Attempt::Holds)) => {
                        // Counted from when the renewal was sent: the lease may have been
                        // written at any moment after that.
                        *last_ok = Some(started);
                        self.owned.own_until(i, started + deadline);
                        false
                    }
                    Some(Ok(_)) => {
                        tracing::warn!(
                            shard = i,
                            "another process took the shard; its runs are no longer ours"
                        );
                        self.owned.give_up(i);
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
                    self.owned.give_up(i);
                }
                continue;
            }
            let take = self.owned.count() < self.fair_share() || *seen_free;
            let started = tokio::time::Instant::now();
            match lock.attempt(take).await {
                Ok(Attempt::Holds) => {
                    tracing::info!(shard = i, shards = n, lease = %lease_name(&self.settings.base, i, n), "took a shard");
                    *last_ok = Some(started);
                    *seen_free = false;
                    self.owned.own_until(i, started + lock.renew_deadline());
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
                self.owned.give_up(i);
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

    #[tokio::test(start_paused = true)]
    async fn ownership_is_by_the_keys_shard_and_ends_at_the_renew_deadline_by_itself() {
        let owned = Owned::new(4);
        let key = "run-uid";
        assert!(!owned.owns(key));
        let deadline = Duration::from_secs(10);
        owned.own_until(shard_of(key, 4), tokio::time::Instant::now() + deadline);
        assert!(owned.owns(key));
        assert_eq!(owned.count(), 1);
        // No round comes to renew or give it up (a slow Lease call on another shard, say):
        // the shard is still not ours past the deadline another replica waits for.
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert!(owned.owns(key));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!owned.owns(key));
        assert_eq!(owned.count(), 0);
        owned.own_until(shard_of(key, 4), tokio::time::Instant::now() + deadline);
        owned.give_up(shard_of(key, 4));
        assert!(!owned.owns(key));
    }

    #[tokio::test(start_paused = true)]
    async fn no_shard_is_owned_without_the_sharding() {
        let mut owned = Owned::new(2);
        let sharding = Arc::new(AtomicU64::new(0));
        owned.sharding = Some(sharding.clone());
        tokio::time::advance(Duration::from_secs(1)).await;
        owned.own_until(0, tokio::time::Instant::now() + Duration::from_secs(10));
        assert!(!owned.holds(0), "a shard held without the sharding");
        sharding.store(5_000, Ordering::Release);
        assert!(owned.holds(0));
        // The sharding's hold lapses before the shard's: the shard is not owned past it.
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(!owned.holds(0));
        assert_eq!(sharding_holder(3), "replicas-3");
        assert_eq!(sharding_lease("signet-signer"), "signet-signer-sharding");
    }
}
