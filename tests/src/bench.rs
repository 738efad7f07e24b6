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

use crate::measure::{percentile, rss_kib};
use crate::operator::OperatorProcess;
use crate::{TestEnv, TestNamespace};

const DIGEST: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
const CONCURRENCY: usize = 16;

pub fn taskruns(client: &Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("tekton.dev", "v1", "TaskRun"));
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// Creates `count` TaskRuns and completes each through the status subresource — all at once
/// (16 in flight), or one every `pace`; returns when each completion was written.
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
    let in_flight = if pace.is_some() { 256 } else { CONCURRENCY };
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
                let run: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": "tekton.dev/v1", "kind": "TaskRun", "metadata": {"name": name},
                    "spec": {"taskSpec": {"steps": [{"name": "build", "image": "gcr.io/kaniko-project/executor:v1"}]}}
                }))
                .expect("TaskRun JSON");
                runs.create(&PostParams::default(), &run).await.expect("create TaskRun");
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
    }
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
    if images.is_some() {
        crate::registry::give_registry_login(admin, TestEnv::get(), work.name(), "default")
            .await
            .expect("registry login");
    }
    // Watch for signed=true while the runs are written.
    let signed_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen = signed_at.clone();
    let watch = tokio::spawn({
        let runs = taskruns(admin, work.name());
        async move {
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
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    // The signer's RSS through the phase: its peak here, and a timeline when asked for.
    let pid = signer.pid();
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = tokio::spawn({
        let peak = peak.clone();
        let timeline = std::env::var_os("SIGNET_BENCH_RSS_TIMELINE").is_some();
        async move {
            loop {
                let kib = rss_kib(pid, "VmRSS:");
                peak.fetch_max(kib, std::sync::atomic::Ordering::Relaxed);
                if timeline {
                    eprintln!(
                        "    t={:>6.1}s rss={kib} KiB",
                        started.elapsed().as_secs_f64()
                    );
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    });
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
    sampler.abort();
    let signed_runs = signed_at.lock().expect("lock").clone();
    let last = signed_runs.values().max().copied().unwrap_or(started);
    let mut latencies: Vec<Duration> = completed
        .iter()
        .filter_map(|(n, done)| {
            signed_runs
                .get(n)
                .map(|s| s.saturating_duration_since(*done))
        })
        .collect();
    latencies.sort();
    Phase {
        label,
        count,
        written_in,
        signed_in: last - started,
        latencies,
        rss_kib: rss_kib(signer.pid(), "VmRSS:"),
        peak_rss_kib: peak.load(std::sync::atomic::Ordering::Relaxed),
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
