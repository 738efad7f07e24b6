//! The HTTP endpoints every Signet process serves: `/healthz` (the process runs), `/readyz`
//! (it is ready to work or to stand by) and `/metrics` (Prometheus text).
//!
//! Must not expose anything else, and never key material.

use std::convert::Infallible;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// State behind the endpoints: readiness, leadership, and named counters.
#[derive(Debug)]
pub struct Health {
    ready: AtomicBool,
    leader: AtomicBool,
    /// Name of the gauge that is 1 while this process leads.
    leader_metric: &'static str,
    /// `(metric name, help, counter)`, rendered in this order.
    counters: Vec<(&'static str, &'static str, Arc<Counter>)>,
}

impl Health {
    pub fn new(
        leader_metric: &'static str,
        counters: Vec<(&'static str, &'static str, Arc<Counter>)>,
    ) -> Arc<Self> {
        Arc::new(Self {
            ready: AtomicBool::new(false),
            leader: AtomicBool::new(false),
            leader_metric,
            counters,
        })
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Relaxed);
    }

    /// Prometheus text exposition of the counters and the leader gauge.
    pub fn render_metrics(&self) -> String {
        let mut out = String::new();
        for (name, help, counter) in &self.counters {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                counter.get()
            );
        }
        let leader = u8::from(self.leader.load(Ordering::Relaxed));
        let gauge = self.leader_metric;
        let _ = write!(
            out,
            "# HELP {gauge} 1 while this process holds the leader lease.\n# TYPE {gauge} gauge\n{gauge} {leader}\n"
        );
        out
    }
}

fn respond(health: &Health, path: &str) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
        "/readyz" if health.ready.load(Ordering::Relaxed) => (StatusCode::OK, "ok\n".to_owned()),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_owned()),
        "/metrics" => (StatusCode::OK, health.render_metrics()),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// Binds `addr` and serves until the process ends. Returns the bound address (useful with
/// port 0) once listening.
pub async fn serve(addr: SocketAddr, health: Arc<Health>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(address = %bound, "serving /healthz, /readyz and /metrics");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let health = health.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let response = respond(&health, req.uri().path());
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_follows_readiness_and_metrics_render_counters() {
        let reconciles = Arc::new(Counter::default());
        let health = Health::new(
            "signet_operator_leader",
            vec![(
                "signet_operator_reconciles_total",
                "Reconciles run.",
                reconciles.clone(),
            )],
        );
        assert_eq!(
            respond(&health, "/readyz").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        health.set_ready(true);
        assert_eq!(respond(&health, "/readyz").status(), StatusCode::OK);
        reconciles.add(3);
        let text = health.render_metrics();
        assert!(
            text.contains("signet_operator_reconciles_total 3\n"),
            "{text}"
        );
        assert!(text.contains("signet_operator_leader 0\n"), "{text}");
    }
}
