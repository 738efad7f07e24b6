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

/// Upper bounds (seconds) of the latency histograms' buckets: 5 ms to a minute.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// A Prometheus histogram over [`LATENCY_BUCKETS`], lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative; summed when rendered); the last is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: std::time::Duration) {
        let seconds = elapsed.as_secs_f64();
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Sample lines of `name{labels,le=...}`, `_sum` and `_count`.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = LATENCY_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), ToString::to_string);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        #[allow(clippy::cast_precision_loss)] // microseconds fit f64 exactly for centuries
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(
            out,
            "{name}_count{{{labels}}} {}",
            self.count.load(Ordering::Relaxed)
        );
    }
}

/// One histogram family: a name, its help, and one histogram per label set.
#[derive(Clone, Debug)]
pub struct HistogramFamily {
    pub name: &'static str,
    pub help: &'static str,
    /// `(labels such as kind="taskrun", histogram)`.
    pub series: Vec<(&'static str, Arc<Histogram>)>,
}

/// A metric family read when `/metrics` is scraped: a gauge of state kept elsewhere, or
/// counters with labels.
#[derive(Clone)]
pub struct Sampled {
    pub name: &'static str,
    pub help: &'static str,
    /// `gauge` or `counter`.
    pub type_: &'static str,
    /// The samples: `(labels such as kind="taskrun", or empty, value)`.
    pub read: Arc<dyn Fn() -> Vec<(String, f64)> + Send + Sync>,
}

impl Sampled {
    /// One gauge without labels.
    pub fn gauge(
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) -> Self {
        Self {
            name,
            help,
            type_: "gauge",
            read: Arc::new(move || vec![(String::new(), read())]),
        }
    }
}

impl std::fmt::Debug for Sampled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampled")
            .field("name", &self.name)
            .finish_non_exhaustive()
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
    histograms: Vec<HistogramFamily>,
    /// Families added once the state they read exists ([`Health::add_sampled`]).
    sampled: std::sync::Mutex<Vec<Sampled>>,
    /// What keeps the process from being ready, by who reports it (`watch TaskRuns`): a
    /// watch that has not listed yet or is backing off after errors.
    problems: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
}

impl Health {
    pub fn new(
        leader_metric: &'static str,
        counters: Vec<(&'static str, &'static str, Arc<Counter>)>,
    ) -> Arc<Self> {
        Self::with_histograms(leader_metric, counters, Vec::new())
    }

    /// The same, also exporting `histograms`.
    pub fn with_histograms(
        leader_metric: &'static str,
        counters: Vec<(&'static str, &'static str, Arc<Counter>)>,
        histograms: Vec<HistogramFamily>,
    ) -> Arc<Self> {
        Arc::new(Self {
            ready: AtomicBool::new(false),
            leader: AtomicBool::new(false),
            leader_metric,
            counters,
            histograms,
            sampled: std::sync::Mutex::default(),
            problems: std::sync::Mutex::default(),
        })
    }

    /// Exports `family` from now on.
    pub fn add_sampled(&self, family: Sampled) {
        match self.sampled.lock() {
            Ok(mut all) => all.push(family),
            Err(poisoned) => poisoned.into_inner().push(family),
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Records (`Some`) or clears (`None`) what keeps `what` from working; `/readyz` answers
    /// 503 with every recorded problem until all are cleared.
    pub fn set_problem(&self, what: &str, problem: Option<String>) {
        let mut problems = match self.problems.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        match problem {
            Some(problem) => problems.insert(what.to_owned(), problem),
            None => problems.remove(what),
        };
    }

    /// `None` when ready, else why not (one line per problem).
    pub fn not_ready(&self) -> Option<String> {
        if !self.ready.load(Ordering::Relaxed) {
            return Some("not ready\n".to_owned());
        }
        let problems = self.problems.lock().ok()?;
        if problems.is_empty() {
            return None;
        }
        let mut why = String::new();
        for (what, problem) in problems.iter() {
            let _ = writeln!(why, "not ready: {what}: {problem}");
        }
        Some(why)
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
        for family in &self.histograms {
            let (name, help) = (family.name, family.help);
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} histogram\n");
            for (labels, histogram) in &family.series {
                histogram.render(&mut out, name, labels);
            }
        }
        let sampled = match self.sampled.lock() {
            Ok(all) => all.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        for family in sampled {
            let (name, help, type_) = (family.name, family.help, family.type_);
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {type_}\n");
            for (labels, value) in (family.read)() {
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {value}");
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {value}");
                }
            }
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
        "/readyz" => match health.not_ready() {
            None => (StatusCode::OK, "ok\n".to_owned()),
            Some(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
        },
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
        health.set_problem("watch TaskRuns", Some("403 Forbidden; retrying".to_owned()));
        assert_eq!(
            respond(&health, "/readyz").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            health.not_ready().as_deref(),
            Some("not ready: watch TaskRuns: 403 Forbidden; retrying\n")
        );
        health.set_problem("watch TaskRuns", None);
        assert_eq!(respond(&health, "/readyz").status(), StatusCode::OK);
        reconciles.add(3);
        let text = health.render_metrics();
        assert!(
            text.contains("signet_operator_reconciles_total 3\n"),
            "{text}"
        );
        assert!(text.contains("signet_operator_leader 0\n"), "{text}");
        health.add_sampled(Sampled::gauge(
            "signet_signer_runs_in_flight",
            "Runs in flight.",
            || 7.0,
        ));
        health.add_sampled(Sampled {
            name: "signet_signer_failures_total",
            help: "Failures.",
            type_: "counter",
            read: Arc::new(|| vec![("reason=\"storage\"".to_owned(), 2.0)]),
        });
        let text = health.render_metrics();
        assert!(
            text.contains(
                "# TYPE signet_signer_runs_in_flight gauge\nsignet_signer_runs_in_flight 7\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("signet_signer_failures_total{reason=\"storage\"} 2\n"),
            "{text}"
        );
    }

    #[test]
    fn histograms_render_cumulative_buckets_sum_and_count() {
        let histogram = Arc::new(Histogram::default());
        for ms in [3, 40, 40, 700, 90_000] {
            histogram.observe(std::time::Duration::from_millis(ms));
        }
        let health = Health::with_histograms(
            "l",
            Vec::new(),
            vec![HistogramFamily {
                name: "x_seconds",
                help: "X.",
                series: vec![("kind=\"taskrun\"", histogram)],
            }],
        );
        let text = health.render_metrics();
        for line in [
            "# TYPE x_seconds histogram",
            "x_seconds_bucket{kind=\"taskrun\",le=\"0.005\"} 1\n",
            "x_seconds_bucket{kind=\"taskrun\",le=\"0.05\"} 3\n",
            "x_seconds_bucket{kind=\"taskrun\",le=\"1\"} 4\n",
            "x_seconds_bucket{kind=\"taskrun\",le=\"60\"} 4\n",
            "x_seconds_bucket{kind=\"taskrun\",le=\"+Inf\"} 5\n",
            "x_seconds_sum{kind=\"taskrun\"} 90.783\n",
            "x_seconds_count{kind=\"taskrun\"} 5\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }
}
