//! Leader election on a `coordination.k8s.io/v1` Lease, shared by both binaries: only the
//! holder works; a standby takes over when the holder stops renewing.
//!
//! Must not do any work of its own: it only says who leads.
//!
//! Time is judged as client-go's leader election judges it, so that clock skew between nodes
//! and a hung API call cannot make two processes lead at once: another holder's claim is aged
//! on the *local* monotonic clock from when this process last saw the record change (never
//! by comparing the holder's `renewTime` with the local wall clock); every lease call has a
//! timeout; and a leader that has not renewed within the renew deadline (two thirds of the
//! lease) stops working before a standby may take over. (kube-lease-manager judges expiry from
//! `renewTime` against the local wall clock with a skew allowance, which is why it is not
//! used here.)

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

/// Settings of one lease.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// Unique per process: pod name (or host) plus pid.
    pub identity: String,
    /// How long a holder's claim lasts without renewal.
    pub duration: Duration,
    /// How often the holder renews (and a standby retries).
    pub renew_every: Duration,
}

/// Errors talking to the API server about the lease.
#[derive(Debug, thiserror::Error)]
#[error("failed to {action} Lease {namespace}/{name}: {source}")]
pub struct LeaseError {
    action: &'static str,
    namespace: String,
    name: String,
    #[source]
    source: kube::Error,
}

/// Where a lease stands after [`LeaseLock::attempt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// This process holds it (took or renewed it).
    Holds,
    /// Another process holds it, and its claim has not expired.
    HeldElsewhere,
    /// Free or expired, and not taken (the caller did not ask to).
    Available,
}

/// Annotations the holder writes on the Lease with each renewal (what it reports about
/// itself, e.g. its counters), at no extra API request.
pub type Annotator = std::sync::Arc<dyn Fn() -> BTreeMap<String, String> + Send + Sync>;

/// A Lease-based lock.
pub struct LeaseLock {
    api: Api<Lease>,
    settings: LeaseSettings,
    observed: std::sync::Mutex<Observer>,
    annotator: Option<Annotator>,
}

/// What identifies one renewal of a lease: holder, `renewTime`, `leaseDurationSeconds`.
type Record = (Option<String>, Option<MicroTime>, Option<i32>);

/// When this process last saw another holder's record change, on the local clock.
#[derive(Debug, Default)]
struct Observer {
    /// `(holder, renewTime, leaseDurationSeconds)` as last read, and when it was first seen.
    record: Option<(Record, tokio::time::Instant)>,
}

impl Observer {
    /// Whether the record in `spec` has gone unrenewed for its whole duration, measured from
    /// when this process first saw it as it is now. A free record (no holder) is expired.
    fn expired(&mut self, spec: &LeaseSpec, now: tokio::time::Instant) -> bool {
        if spec.holder_identity.as_deref().is_none_or(str::is_empty) {
            return true;
        }
        let record = (
            spec.holder_identity.clone(),
            spec.renew_time.clone(),
            spec.lease_duration_seconds,
        );
        let seen_at = match &self.record {
            Some((seen, at)) if *seen == record => *at,
            _ => {
                self.record = Some((record, now));
                now
            }
        };
        let duration = u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0);
        now.duration_since(seen_at) > Duration::from_secs(duration)
    }
}

impl LeaseLock {
    pub fn new(client: Client, settings: LeaseSettings) -> Self {
        Self {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            observed: std::sync::Mutex::default(),
            annotator: None,
        }
    }

    /// Writes `annotator`'s annotations on the Lease whenever this process takes or renews it.
    #[must_use]
    pub fn with_annotations(mut self, annotator: Annotator) -> Self {
        self.annotator = Some(annotator);
        self
    }

    /// `metadata` with the annotator's annotations merged in.
    fn annotate(&self, mut metadata: ObjectMeta) -> ObjectMeta {
        if let Some(annotator) = &self.annotator {
            metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .extend(annotator());
        }
        metadata
    }

    /// How long a leader may go without renewing before it stops: two thirds of the lease,
    /// so that it stops before any standby may take over.
    pub fn renew_deadline(&self) -> Duration {
        self.settings.duration * 2 / 3
    }

    /// Runs one lease call, giving up after the renew deadline (a call that hangs must not
    /// keep a leader leading).
    async fn call<T>(
        &self,
        action: &'static str,
        request: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<Result<T, kube::Error>, LeaseError> {
        tokio::time::timeout(self.renew_deadline(), request)
            .await
            .map_err(|_| LeaseError {
                action,
                namespace: self.settings.namespace.clone(),
                name: self.settings.name.clone(),
                source: kube::Error::Service(
                    format!("no answer within {:?}", self.renew_deadline()).into(),
                ),
            })
    }

    fn err(&self, action: &'static str, source: kube::Error) -> LeaseError {
        LeaseError {
            action,
            namespace: self.settings.namespace.clone(),
            name: self.settings.name.clone(),
            source,
        }
    }

    fn spec(&self, previous: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
        let ours = previous.and_then(|p| p.holder_identity.as_deref())
            == Some(self.settings.identity.as_str());
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.settings.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.settings.duration.as_secs()).unwrap_or(i32::MAX),
            ),
            acquire_time: if ours {
                previous.and_then(|p| p.acquire_time.clone())
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if ours { transitions } else { transitions + 1 }),
            ..LeaseSpec::default()
        }
    }

    /// Takes or renews the lease. `Ok(true)` when this process holds it afterwards.
    /// Optimistic concurrency (resourceVersion) makes two contenders unable to both win.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, LeaseError> {
        Ok(self.attempt(true).await? == Attempt::Holds)
    }

    /// Renews the lease if this process holds it; takes it if it is free or expired and
    /// `take` is set; says which.
    pub async fn attempt(&self, take: bool) -> Result<Attempt, LeaseError> {
        let now = Timestamp::now();
        let name = &self.settings.name;
        let Some(mut lease) = self
            .call("read", self.api.get_opt(name))
            .await?
            .map_err(|e| self.err("read", e))?
        else {
            if !take {
                return Ok(Attempt::Available);
            }
            let lease = Lease {
                metadata: self.annotate(ObjectMeta {
                    name: Some(name.clone()),
                    ..ObjectMeta::default()
                }),
                spec: Some(self.spec(None, now)),
            };
            return match self
                .call("create", self.api.create(&PostParams::default(), &lease))
                .await?
            {
                Ok(_) => Ok(Attempt::Holds),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::HeldElsewhere),
                Err(e) => Err(self.err("create", e)),
            };
        };
        let current = lease.spec.clone().unwrap_or_default();
        let ours = current.holder_identity.as_deref() == Some(self.settings.identity.as_str());
        let expired = match self.observed.lock() {
            Ok(mut observer) => observer.expired(&current, tokio::time::Instant::now()),
            Err(poisoned) => poisoned
                .into_inner()
                .expired(&current, tokio::time::Instant::now()),
        };
        if !ours && !expired {
            return Ok(Attempt::HeldElsewhere);
        }
        if !ours && !take {
            return Ok(Attempt::Available);
        }
        lease.spec = Some(self.spec(Some(&current), now));
        lease.metadata = self.annotate(lease.metadata);
        match self
            .call(
                "update",
                self.api.replace(name, &PostParams::default(), &lease),
            )
            .await?
        {
            Ok(_) => Ok(Attempt::Holds),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::HeldElsewhere),
            Err(e) => Err(self.err("update", e)),
        }
    }

    /// The holder of the lease, while its claim has not expired (as seen from here).
    pub async fn holder(&self) -> Result<Option<String>, LeaseError> {
        let lease = self
            .call("read", self.api.get_opt(&self.settings.name))
            .await?
            .map_err(|e| self.err("read", e))?;
        let current = lease.and_then(|l| l.spec).unwrap_or_default();
        let expired = match self.observed.lock() {
            Ok(mut observer) => observer.expired(&current, tokio::time::Instant::now()),
            Err(poisoned) => poisoned
                .into_inner()
                .expired(&current, tokio::time::Instant::now()),
        };
        Ok(current.holder_identity.filter(|_| !expired))
    }

    /// This process's identity in the lease.
    pub fn identity(&self) -> &str {
        &self.settings.identity
    }

    /// Gives the lease up so a standby can take over at once (on graceful shutdown).
    pub async fn release(&self) -> Result<(), LeaseError> {
        let Some(mut lease) = self
            .call("read", self.api.get_opt(&self.settings.name))
            .await?
            .map_err(|e| self.err("read", e))?
        else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        self.call(
            "release",
            self.api
                .replace(&self.settings.name, &PostParams::default(), &lease),
        )
        .await?
        .map_err(|e| self.err("release", e))?;
        Ok(())
    }

    /// Waits until this process holds the lease.
    pub async fn acquire(&self) -> Result<(), LeaseError> {
        let (mut waiting_logged, mut failing) = (false, false);
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.settings.name, identity = %self.settings.identity, "became leader");
                    return Ok(());
                }
                Ok(false) if !waiting_logged => {
                    tracing::info!(lease = %self.settings.name, "another process leads; standing by");
                    waiting_logged = true;
                }
                Ok(false) => {}
                // The API server may be away for a while: keep trying, say so once.
                Err(error) if !failing => {
                    tracing::warn!(%error, "failed to take the lease; retrying (logged again once it works)");
                    failing = true;
                }
                Err(error) => tracing::debug!(%error, "failed to take the lease"),
            }
            tokio::time::sleep(self.settings.renew_every).await;
        }
    }

    /// Renews until renewal fails or the lease is lost; returns why it stopped leading.
    pub async fn keep(&self) -> String {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.settings.renew_every).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => return "another process took the lease".to_owned(),
                Err(error) => {
                    tracing::warn!(%error, "failed to renew the lease");
                    if last_ok.elapsed() >= self.renew_deadline() {
                        return format!(
                            "could not renew the lease within {:?} (the renew deadline)",
                            self.renew_deadline()
                        );
                    }
                }
            }
        }
    }
}

/// Runs `work` while this process holds `lock`: waits to lead (ready as a standby), runs
/// `work` with a future that resolves when it must stop (shutdown or leadership lost),
/// releases the lease after a clean stop, and returns an error if leadership was lost.
pub async fn lead<W, Fut>(
    lock: &LeaseLock,
    health: &crate::health::Health,
    work: W,
) -> Result<(), LeadError>
where
    W: FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + Sync>>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        crate::process::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    tokio::select! {
        acquired = lock.acquire() => acquired?,
        _ = stop_rx.changed() => return Ok(()),
    }
    health.set_leader(true);
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    let stop = Box::pin(async move {
        tokio::select! {
            _ = stop_rx.changed() => {},
            _ = lost_rx => {},
        }
    });
    let work = work(stop);
    tokio::select! {
        () = work => {
            lock.release().await?;
            tracing::info!("stopped; lease released");
            Ok(())
        }
        reason = lock.keep() => {
            health.set_leader(false);
            let _ = lost_tx.send(());
            // Another process may already act: stop at once rather than race it.
            Err(LeadError::Lost(reason))
        }
    }
}

/// Why leading ended badly.
#[derive(Debug, thiserror::Error)]
pub enum LeadError {
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error("lost leadership: {0}")]
    Lost(String),
}

/// A process identity for the lease: `$POD_NAME` or the host name, plus the pid.
pub fn process_identity() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "local".to_owned());
    format!("{host}_{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::SignedDuration;

    fn held(holder: &str, renewed: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            renew_time: Some(MicroTime(renewed)),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn another_holders_claim_is_aged_on_the_local_clock_from_when_it_was_seen() {
        let start = tokio::time::Instant::now();
        let mut observer = Observer::default();
        // The holder's clock is an hour behind ours: its renewTime looks ancient, but the
        // record was only just seen, so it is not expired.
        let skewed = held("a", Timestamp::now() - SignedDuration::from_hours(1));
        assert!(!observer.expired(&skewed, start));
        assert!(!observer.expired(&skewed, start + Duration::from_secs(14)));
        assert!(observer.expired(&skewed, start + Duration::from_secs(16)));
        // A renewal (a new renewTime) restarts the count.
        let renewed = held("a", Timestamp::now() - SignedDuration::from_mins(59));
        assert!(!observer.expired(&renewed, start + Duration::from_secs(17)));
        assert!(!observer.expired(&renewed, start + Duration::from_secs(31)));
        assert!(observer.expired(&renewed, start + Duration::from_secs(33)));
        assert!(
            Observer::default().expired(&LeaseSpec::default(), start),
            "free"
        );
    }

    #[tokio::test]
    async fn a_lease_call_that_hangs_fails_within_the_renew_deadline() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // An API server that accepts connections and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                open.push(stream);
            }
        });
        let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
        let lock = LeaseLock::new(
            Client::try_from(config).unwrap(),
            LeaseSettings {
                namespace: "ns".to_owned(),
                name: "l".to_owned(),
                identity: "me".to_owned(),
                duration: Duration::from_millis(900),
                renew_every: Duration::from_millis(100),
            },
        );
        let started = std::time::Instant::now();
        let err = lock.try_acquire_or_renew().await.unwrap_err().to_string();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(
            err.contains("failed to read Lease ns/l") && err.contains("no answer"),
            "{err}"
        );
        let reason = tokio::time::timeout(Duration::from_secs(5), lock.keep())
            .await
            .expect("keep() returns once the renew deadline passed");
        assert!(reason.contains("renew deadline"), "{reason}");
        hold.abort();
    }
}
