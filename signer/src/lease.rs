//! Leader election on a `coordination.k8s.io/v1` Lease, shared by both binaries: only the
//! holder works; a standby takes over when the holder stops renewing.
//!
//! Must not do any work of its own: it only says who leads.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
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

/// A Lease-based lock.
pub struct LeaseLock {
    api: Api<Lease>,
    settings: LeaseSettings,
}

fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref() else {
        return true;
    };
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    renewed.0 + SignedDuration::from_secs(seconds) < now
}

impl LeaseLock {
    pub fn new(client: Client, settings: LeaseSettings) -> Self {
        Self {
            api: Api::namespaced(client, &settings.namespace),
            settings,
        }
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
        let now = Timestamp::now();
        let name = &self.settings.name;
        let Some(mut lease) = self
            .api
            .get_opt(name)
            .await
            .map_err(|e| self.err("read", e))?
        else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(None, now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(self.err("create", e)),
            };
        };
        let current = lease.spec.clone().unwrap_or_default();
        let ours = current.holder_identity.as_deref() == Some(self.settings.identity.as_str());
        let free = current.holder_identity.as_deref().is_none_or(str::is_empty);
        if !ours && !free && !expired(&current, now) {
            return Ok(false);
        }
        lease.spec = Some(self.spec(Some(&current), now));
        match self.api.replace(name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self.err("update", e)),
        }
    }

    /// Gives the lease up so a standby can take over at once (on graceful shutdown).
    pub async fn release(&self) -> Result<(), LeaseError> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.settings.name)
            .await
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
        self.api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
            .map_err(|e| self.err("release", e))?;
        Ok(())
    }

    /// Waits until this process holds the lease.
    pub async fn acquire(&self) -> Result<(), LeaseError> {
        let mut waiting_logged = false;
        loop {
            if self.try_acquire_or_renew().await? {
                tracing::info!(lease = %self.settings.name, identity = %self.settings.identity, "became leader");
                return Ok(());
            }
            if !waiting_logged {
                tracing::info!(lease = %self.settings.name, "another process leads; standing by");
                waiting_logged = true;
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
                    if last_ok.elapsed() >= self.settings.duration {
                        return format!(
                            "could not renew the lease for {:?}",
                            self.settings.duration
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

    #[test]
    fn a_lease_not_renewed_within_its_duration_is_expired() {
        let now = Timestamp::now();
        let spec = |ago: i64| LeaseSpec {
            renew_time: Some(MicroTime(now - SignedDuration::from_secs(ago))),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        };
        assert!(!expired(&spec(5), now));
        assert!(expired(&spec(16), now));
        assert!(expired(&LeaseSpec::default(), now));
    }
}
