//! What the benchmarks share: writing completed TaskRuns at a pace or all at once, and one
//! measured phase (throughput, completion -> `signed=true` latency, the signer's RSS).

// Benchmark support: a failed set-up step aborts the benchmark.
#![allow(
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::missing_panics_doc
)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::json;

use crate::measure::{cpu_ms, percentile, rss_kib};
use crate::operator::OperatorProcess;
use crate::{TestEnv, TestNamespace};

const DIGEST: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
/// Runs created and completed at once by [`burst`] (16 unless a benchmark sets more).
pub static WRITERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(16);

pub fn taskruns(client: &Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("tekton.dev", "v1", "TaskRun"));
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// Whether [`burst`] creates every run first (running, as Tekton's are while their pods run)
/// and then completes them all, so that completions arrive faster than create + complete
/// pairs can be written (the scale bench sets it).
pub static RUNNING_FIRST: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn taskrun_object(name: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "tekton.dev/v1", "kind": "TaskRun", "metadata": {"name": name},
        "spec": {"taskSpec": {"steps": [{"name": "build", "image": "gcr.io/kaniko-project/executor:v1"}]}}
    }))
    .expect("TaskRun JSON")
}

/// Creates `count` TaskRuns and completes each through the status subresource — all at once
/// ([`WRITERS`] in flight), or one every `pace`; returns when each completion was written.
pub async fn burst(
    client: &Client,
    ns: &str,
    prefix: &str,
    count: usize,
    pace: Option<Duration>,
    images: Option<Arc<Vec<(String, String)>>>,
) -> HashMap<String, Instant> {
    let runs = taskruns(client, ns);
    let start = tokio::time::Instant::now();
    let in_flight = if pace.is_some() {
        256
    } else {
        WRITERS.load(std::sync::atomic::Ordering::Relaxed)
    };
    let running_first = pace.is_none() && RUNNING_FIRST.load(std::sync::atomic::Ordering::Relaxed);
    if running_first {
        futures::stream::iter(0..count)
            .map(|i| {
                let runs = runs.clone();
                async move {
                    let run = taskrun_object(&format!("{prefix}-{i}"));
                    runs.create(&PostParams::default(), &run)
                        .await
                        .expect("create TaskRun");
                }
            })
            .buffer_unordered(in_flight)
            .collect::<Vec<()>>()
            .await;
        // Let the signer see them running (it holds each with its finalizer).
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    futures::stream::iter(0..count)
        .map(|i| {
            let runs = runs.clone();
            let name = format!("{prefix}-{i}");
            // A registry image (url, digest) when given, else one that is in no registry.
            let (url, digest) = images.as_ref().map_or_else(
                || (format!("registry.local/team/{name}"), DIGEST.to_owned()),
                |list| list[i % list.len()].clone(),
            );
            async move {
                if let Some(pace) = pace {
                    let nth = u32::try_from(i).expect("run count fits u32");
                    tokio::time::sleep_until(start + pace * nth).await;
                }
                if !running_first {
                    let run = taskrun_object(&name);
                    runs.create(&PostParams::default(), &run).await.expect("create TaskRun");
                }
                let status = json!({"status": {
                    "podName": format!("{name}-pod"),
                    "startTime": "2026-11-26T10:00:00Z", "completionTime": "2026-11-26T10:01:00Z",
                    "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded", "lastTransitionTime": "2026-11-26T10:01:00Z"}],
                    "steps": [{"name": "build", "container": "step-build", "imageID": format!("gcr.io/kaniko-project/executor@{DIGEST}")}],
                    "results": [{"name": "IMAGE_URL", "type": "string", "value": url},
                                {"name": "IMAGE_DIGEST", "type": "string", "value": digest}]
                }});
                runs.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await.expect("complete TaskRun");
                (name, Instant::now())
            }
        })
        .buffer_unordered(in_flight)
        .collect()
        .await
}

/// What one phase measured.
pub struct Phase {
    pub label: String,
    pub count: usize,
    pub written_in: Duration,
    pub signed_in: Duration,
    /// Completion -> signed=true, sorted.
    pub latencies: Vec<Duration>,
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
    /// The signer's CPU time (user + system) over the phase, in milliseconds.
    pub cpu_ms: u64,
    /// The signer's requests to the API server over the phase (reads, writes), from its
    /// `signet_signer_api_requests_total`; `None` for a signer without that counter.
    pub api: Option<(u64, u64)>,
    /// `(seconds since the phase started, RSS KiB)`, every 250 ms.
    pub rss_samples: Vec<(f64, u64)>,
    /// `(seconds since the phase started when signed, completion -> signed ms)` per run.
    pub points: Vec<(f64, f64)>,
}

impl Phase {
    pub fn print(&self) {
        let count = self.count as f64;
        println!("  {}", self.label);
        println!(
            "    written in {:>7.2} s ({:.0} runs/s created+completed); all signed after {:.2} s ({:.0} runs/s)",
            self.written_in.as_secs_f64(),
            count / self.written_in.as_secs_f64(),
            self.signed_in.as_secs_f64(),
            count / self.signed_in.as_secs_f64()
        );
        println!(
            "    completion -> signed=true  p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms; signer RSS peak {} KiB, {} KiB after",
            percentile(&self.latencies, 50).as_secs_f64() * 1e3,
            percentile(&self.latencies, 99).as_secs_f64() * 1e3,
            self.latencies
                .last()
                .copied()
                .unwrap_or_default()
                .as_secs_f64()
                * 1e3,
            self.peak_rss_kib,
            self.rss_kib
        );
        let api = self.api.map_or_else(
            || "API requests per run n/a (signer without the counter)".to_owned(),
            |(reads, writes)| {
                format!(
                    "API requests per run {:.2} ({:.2} reads, {:.2} writes)",
                    (reads + writes) as f64 / count,
                    reads as f64 / count,
                    writes as f64 / count
                )
            },
        );
        println!(
            "    {api}; signer CPU {:.2} ms per run",
            self.cpu_ms as f64 / count
        );
    }

    /// The phase as one JSON object (the row `bench_report` prints and plots).
    pub fn to_json(&self, bench: &str) -> serde_json::Value {
        let count = self.count as f64;
        let ms = |percent| {
            if self.latencies.is_empty() {
                0.0
            } else {
                percentile(&self.latencies, percent).as_secs_f64() * 1e3
            }
        };
        json!({
            "bench": bench,
            "phase": self.label,
            "runs": self.count,
            "runs_per_s": count / self.signed_in.as_secs_f64().max(1e-9),
            "p50_ms": ms(50),
            "p99_ms": ms(99),
            "rss_peak_kib": self.peak_rss_kib,
            "rss_after_kib": self.rss_kib,
            "api_per_run": self.api.map(|(r, w)| (r + w) as f64 / count),
            "api_reads_per_run": self.api.map(|(r, _)| r as f64 / count),
            "api_writes_per_run": self.api.map(|(_, w)| w as f64 / count),
            "cpu_ms_per_run": self.cpu_ms as f64 / count,
            "rss": self.rss_samples,
            "latency": self.points,
        })
    }

    /// Prints the phase and appends it to the benchmark results file ([`record`]).
    pub fn report(&self, bench: &str) {
        self.print();
        record(&self.to_json(bench));
    }
}

/// Where the benchmarks append their phases (one JSON object per line), for `bench_report`:
/// `$SIGNET_BENCH_RESULTS`, else `<target dir>/bench/results.jsonl`.
pub fn results_file() -> std::path::PathBuf {
    std::env::var_os("SIGNET_BENCH_RESULTS").map_or_else(
        || {
            let target: std::path::PathBuf = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| crate::env::repo_root().join("target"), Into::into);
            target.join("bench/results.jsonl")
        },
        Into::into,
    )
}

/// Appends one result to [`results_file`]; a failure to write is reported, not fatal.
pub fn record(result: &serde_json::Value) {
    use std::io::Write;
    let path = results_file();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{result}"));
    if let Err(e) = written {
        eprintln!("could not record the result in {}: {e}", path.display());
    }
}

/// The signer's API requests so far, `(reads, writes)`, when it counts them.
pub async fn api_requests(signer: &OperatorProcess) -> Option<(u64, u64)> {
    let reads = signer
        .metric("signet_signer_api_requests_total{verb=\"read\"}")
        .await?;
    let writes = signer
        .metric("signet_signer_api_requests_total{verb=\"write\"}")
        .await?;
    Some((reads, writes))
}

/// Writes `count` completed TaskRuns into a fresh namespace (at once, or one every `pace`)
/// and waits until the signer marked every one `signed=true`.
pub async fn phase(
    admin: &Client,
    signer: &OperatorProcess,
    label: String,
    count: usize,
    pace: Option<Duration>,
    images: Option<Arc<Vec<(String, String)>>>,
) -> Phase {
    let work = TestNamespace::create(admin, "bench-runs")
        .await
        .expect("namespace");
    if let Some(images) = &images {
        // A login for each registry the images are on (the test registry, or a proxy of it).
        let mut hosts: Vec<String> = images
            .iter()
            .filter_map(|(url, _)| url.split('/').next().map(str::to_owned))
            .collect();
        hosts.sort();
        hosts.dedup();
        crate::registry::give_registry_logins(
            admin,
            TestEnv::get(),
            work.name(),
            "default",
            &hosts,
        )
        .await
        .expect("registry login");
    }
    // Watch for signed=true while the runs are written.
    let (signed_at, watch) = watch_signed(admin, work.name());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let sampler = RssSampler::start(signer.pid(), started);
    let (api_before, cpu_before) = (api_requests(signer).await, cpu_ms(signer.pid()));
    let completed = burst(admin, work.name(), "run", count, pace, images).await;
    let written_in = started.elapsed();
    let finish_deadline = Instant::now() + Duration::from_secs(600);
    while signed_at.lock().expect("lock").len() < count {
        assert!(
            Instant::now() < finish_deadline,
            "only {} of {count} runs signed:\n{}",
            signed_at.lock().expect("lock").len(),
            signer
                .log_text()
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watch.abort();
    let api = match (api_before, api_requests(signer).await) {
        (Some((r0, w0)), Some((r1, w1))) => Some((r1 - r0, w1 - w0)),
        _ => None,
    };
    let cpu = cpu_ms(signer.pid()).saturating_sub(cpu_before);
    let (peak, rss_samples) = sampler.stop();
    let signed_runs = signed_at.lock().expect("lock").clone();
    let last = signed_runs.values().max().copied().unwrap_or(started);
    // Throughput from the first completion (runs created beforehand are not yet work).
    let first = completed.values().min().copied().unwrap_or(started);
    let mut points: Vec<(f64, f64)> = Vec::new();
    let mut latencies: Vec<Duration> = completed
        .iter()
        .filter_map(|(n, done)| {
            let at = signed_runs.get(n)?;
            let latency = at.saturating_duration_since(*done);
            points.push((
                at.saturating_duration_since(started).as_secs_f64(),
                latency.as_secs_f64() * 1e3,
            ));
            Some(latency)
        })
        .collect();
    latencies.sort();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    Phase {
        label,
        count,
        written_in,
        signed_in: last.saturating_duration_since(first),
        latencies,
        rss_kib: rss_kib(signer.pid(), "VmRSS:"),
        peak_rss_kib: peak,
        cpu_ms: cpu,
        api,
        rss_samples,
        points,
    }
}

/// When each TaskRun in `ns` was first seen `signed=true`, kept up to date until the
/// returned task is aborted.
pub fn watch_signed(
    admin: &Client,
    ns: &str,
) -> (
    Arc<Mutex<HashMap<String, Instant>>>,
    tokio::task::JoinHandle<()>,
) {
    let signed_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen = signed_at.clone();
    let runs = taskruns(admin, ns);
    let task = tokio::spawn(async move {
        let mut events = watcher(runs, watcher::Config::default()).boxed();
        while let Ok(Some(event)) = events.try_next().await {
            if let watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) = event {
                let is_signed = obj
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("chains.tekton.dev/signed"))
                    .is_some_and(|v| v == "true");
                if is_signed {
                    seen.lock()
                        .expect("lock")
                        .entry(obj.metadata.name.clone().unwrap_or_default())
                        .or_insert_with(Instant::now);
                }
            }
        }
    });
    (signed_at, task)
}

/// Waits until the operator rendered `value` under `key` in the signer's ConfigMap in `ns`.
pub async fn wait_rendered(
    admin: &Client,
    ns: &str,
    key: &str,
    value: &str,
    operator: &OperatorProcess,
) {
    let cms = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(admin.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rendered = cms
            .get_opt("signet-signer-config")
            .await
            .ok()
            .flatten()
            .and_then(|c| c.data)
            .and_then(|d| d.get(key).cloned());
        if rendered.as_deref() == Some(value) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{key}={value} not rendered:\n{}",
            operator.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the SignetConfig `config` reports the signing key's public key (the
/// operator made the signing Secret).
pub async fn wait_public_key(admin: &Client) {
    let configs: Api<signet_crds::SignetConfig> = Api::all(admin.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while configs
        .get("config")
        .await
        .ok()
        .and_then(|c| c.status)
        .and_then(|s| s.public_key)
        .is_none()
    {
        assert!(Instant::now() < deadline, "no signing key");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A process's RSS sampled every 250 ms until stopped: the peak and the curve.
pub struct RssSampler {
    task: tokio::task::JoinHandle<()>,
    samples: Arc<Mutex<Vec<(f64, u64)>>>,
}

impl RssSampler {
    pub fn start(pid: u32, since: Instant) -> Self {
        let samples: Arc<Mutex<Vec<(f64, u64)>>> = Arc::default();
        let timeline = std::env::var_os("SIGNET_BENCH_RSS_TIMELINE").is_some();
        let task = tokio::spawn({
            let samples = samples.clone();
            async move {
                loop {
                    let kib = rss_kib(pid, "VmRSS:");
                    let at = since.elapsed().as_secs_f64();
                    if timeline {
                        eprintln!("    t={at:>6.1}s rss={kib} KiB");
                    }
                    samples.lock().expect("lock").push((at, kib));
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        });
        Self { task, samples }
    }

    /// Stops sampling: `(peak KiB, samples)`.
    pub fn stop(self) -> (u64, Vec<(f64, u64)>) {
        self.task.abort();
        let samples = self.samples.lock().expect("lock").clone();
        let peak = samples.iter().map(|s| s.1).max().unwrap_or(0);
        (peak, samples)
    }
}

/// Waits until `signer` leads and signs (its log says so), so that a phase measures signing
/// and not the wait for an earlier signer's lease to lapse.
pub async fn wait_leading(signer: &OperatorProcess) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !signer
        .log_text()
        .contains("signing TaskRuns and PipelineRuns")
    {
        assert!(
            Instant::now() < deadline,
            "the signer never led:\n{}",
            signer.log_text()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Requests the API server itself counted (`apiserver_request_total`), by
/// `(verb, resource, subresource)`: client-independent figures, so that a signer without its
/// own counter (an older build) can be measured too.
pub async fn apiserver_requests(
    admin: &Client,
) -> std::collections::BTreeMap<(String, String, String), f64> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("request");
    let text = admin.request_text(request).await.unwrap_or_default();
    let mut counts = std::collections::BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(&format!("{name}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_default()
                .to_owned()
        };
        let key = (label("verb"), label("resource"), label("subresource"));
        *counts.entry(key).or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
    }
    counts
}

/// What the API server counted between two [`apiserver_requests`] readings for the requests
/// a signer makes per run: run patches (not the status subresource the bench writes), run
/// reads (GET of one run, not lists), ServiceAccount and Secret reads, Events, Leases.
pub fn signer_requests_per_run(
    before: &std::collections::BTreeMap<(String, String, String), f64>,
    after: &std::collections::BTreeMap<(String, String, String), f64>,
    runs: usize,
) -> String {
    let delta = |verb: &str, resources: &[&str]| {
        after
            .iter()
            .filter(|((v, r, sub), _)| {
                v == verb && resources.contains(&r.as_str()) && sub.is_empty()
            })
            .map(|(k, n)| n - before.get(k).copied().unwrap_or(0.0))
            .sum::<f64>()
            / runs.max(1) as f64
    };
    format!(
        "API server counted per run: {:.2} run PATCH, {:.2} run GET, {:.2} ServiceAccount/Secret GET, {:.2} Event writes, {:.2} Lease GET+PUT (the bench's own creates and status writes not included)",
        delta("PATCH", &["taskruns", "pipelineruns"]),
        delta("GET", &["taskruns", "pipelineruns"]),
        delta("GET", &["serviceaccounts", "secrets"]),
        delta("POST", &["events"]) + delta("PATCH", &["events"]),
        delta("GET", &["leases"]) + delta("PUT", &["leases"]),
    )
}
