//! `make bench` (signer part): completed TaskRuns against the real API server — 500 at a
//! steady 50 runs/s, then bursts of 1,000 and 5,000 (`SIGNET_BENCH_BURSTS`) — signed by the
//! release signer binary running as its ServiceAccount with the Deployment's environment.
//! Prints, per phase, runs signed per second and completion -> `signed=true` latency
//! p50/p99/max; the signer's peak RSS; the API server's own ceiling for the same writes (a
//! tight annotate loop that signs nothing) and the ratio; and how soon a new run is signed
//! while a backlog drains.

// A benchmark program: a failed set-up step aborts it, and ratios are printed as floats.
#![allow(
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::too_many_lines
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
use signet_crds::SignetConfig;
use signet_e2e::measure::{percentile, rss_kib};
use signet_e2e::operator::{
    ConfigCleanup, OperatorProcess, apply_config, install_crd, install_operator_rbac,
};
use signet_e2e::{ServiceAccountIdentity, TestEnv, TestNamespace};

const DIGEST: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
const CONCURRENCY: usize = 16;
const STEADY_RATE: f64 = 50.0;
const STEADY_RUNS: usize = 500;
const OCI_RUNS: usize = 200;

fn taskruns(client: &Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("tekton.dev", "v1", "TaskRun"));
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// Creates `count` TaskRuns and completes each through the status subresource — all at once
/// (16 in flight), or one every `pace`; returns when each completion was written.
async fn burst(
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
struct Phase {
    label: String,
    count: usize,
    written_in: Duration,
    signed_in: Duration,
    /// Completion -> signed=true, sorted.
    latencies: Vec<Duration>,
    rss_kib: u64,
    peak_rss_kib: u64,
}

impl Phase {
    fn print(&self) {
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
async fn phase(
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
        signet_e2e::registry::give_registry_login(admin, TestEnv::get(), work.name(), "default")
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

#[tokio::main]
async fn main() {
    // Burst sizes, e.g. SIGNET_BENCH_BURSTS=1000,5000 (the default).
    let bursts: Vec<usize> = std::env::var("SIGNET_BENCH_BURSTS")
        .unwrap_or_else(|_| "1000,5000".into())
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .expect("SIGNET_BENCH_BURSTS: comma-separated counts")
        })
        .collect();
    let env = TestEnv::get();
    let admin = env.admin_client().expect("admin client");
    install_crd(&admin).await.expect("CRD");
    let operator_identity = install_operator_rbac(&admin).await.expect("operator RBAC");
    let signer_ns = format!("signet-bench-signer-{}", std::process::id());
    let _cleanup = ConfigCleanup {
        env,
        namespaces: vec![signer_ns.clone()],
    };
    let operator = OperatorProcess::start(env, &operator_identity).expect("operator");
    let configs: Api<SignetConfig> = Api::all(admin.clone());
    // TaskRun attestations in `tekton` storage; the runs' images are not in a registry.
    apply_config(
        &admin,
        json!({"targetNamespace": signer_ns, "artifacts": {"oci": {"storage": []}}}),
    )
    .await
    .expect("SignetConfig");
    let deadline = Instant::now() + Duration::from_secs(60);
    while configs
        .get("config")
        .await
        .ok()
        .and_then(|c| c.status)
        .and_then(|s| s.public_key)
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "no signing key:\n{}",
            operator.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let identity = ServiceAccountIdentity::mint(&admin, &signer_ns, "signet-signer", &[], 3600)
        .await
        .expect("token");
    let signer = OperatorProcess::start_signer(env, &admin, &identity)
        .await
        .expect("signer");
    // A steady rate first (the latency target is stated at 50 runs/s), then bursts.
    let steady = Duration::from_secs_f64(1.0 / STEADY_RATE);
    let mut phases = vec![
        phase(
            &admin,
            &signer,
            format!("steady {STEADY_RATE:.0} runs/s for {STEADY_RUNS} runs"),
            STEADY_RUNS,
            Some(steady),
            None,
        )
        .await,
    ];
    for &count in &bursts {
        phases.push(
            phase(
                &admin,
                &signer,
                format!("burst of {count}"),
                count,
                None,
                None,
            )
            .await,
        );
    }
    let peak_rss = rss_kib(signer.pid(), "VmHWM:");
    let count = bursts[0];
    // A backlog at start: runs completed while no signer ran, then one new run.
    drop(signer);
    let backlog_ns = TestNamespace::create(&admin, "bench-backlog")
        .await
        .expect("namespace");
    let _ = burst(&admin, backlog_ns.name(), "old", count, None, None).await;
    let signer = OperatorProcess::start_signer(env, &admin, &identity)
        .await
        .expect("signer");
    let backlog_runs = taskruns(&admin, backlog_ns.name());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !signer
        .log_text()
        .contains("signing TaskRuns and PipelineRuns")
    {
        assert!(
            Instant::now() < deadline,
            "the signer never started:\n{}",
            signer.log_text()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let new_completed = burst(&admin, backlog_ns.name(), "new", 1, None, None).await;
    let new_done = new_completed
        .values()
        .next()
        .copied()
        .unwrap_or_else(Instant::now);
    let new_signed = loop {
        let run = backlog_runs.get("new-0").await.expect("new run");
        let mark = run
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("chains.tekton.dev/signed"));
        if mark.is_some_and(|v| v == "true") {
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "the new run was not signed during the backlog:\n{}",
            signer
                .log_text()
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let backlog_signed_before = signer
        .log_text()
        .lines()
        .filter(|l| l.contains("\"message\":\"signed\"") && l.contains("/old-"))
        .count();
    drop(signer);

    // The API server's ceiling for the same writes: annotate another burst in a tight loop.
    let ceiling_ns = TestNamespace::create(&admin, "bench-ceiling")
        .await
        .expect("namespace");
    let _ = burst(&admin, ceiling_ns.name(), "run", count, None, None).await;
    let runs = taskruns(&admin, ceiling_ns.name());
    let payload = "x".repeat(2400);
    let ceiling_started = Instant::now();
    futures::stream::iter(0..count)
        .map(|i| {
            let runs = runs.clone();
            let payload = payload.clone();
            async move {
                let name = format!("run-{i}");
                let patch = json!({"metadata": {"annotations": {
                    "chains.tekton.dev/payload-taskrun-x": payload, "chains.tekton.dev/signature-taskrun-x": payload,
                    "chains.tekton.dev/signed": "true"}}});
                runs.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("annotate");
            }
        })
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await;
    let ceiling = count as f64 / ceiling_started.elapsed().as_secs_f64();
    // Runs whose images are in the test registry: per run a signature (.sig) and an
    // attestation (.att) pushed there, with the run's ServiceAccount's login.
    // Last, so that the phases above measure tekton storage only.
    apply_config(
        &admin,
        json!({"targetNamespace": signer_ns, "artifacts": {"taskRun": {"storage": ["tekton", "oci"]}, "oci": {"storage": ["oci"]}}}),
    )
    .await
    .expect("SignetConfig");
    let signer = OperatorProcess::start_signer(env, &admin, &identity)
        .await
        .expect("signer");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut images = Vec::new();
    for i in 0..OCI_RUNS {
        let repo = format!("bench/app-{}-{i}", std::process::id());
        let digest = signet_e2e::registry::push_random_image(env, &repo, "latest")
            .await
            .expect("test image");
        images.push((format!("{}/{repo}", env.registry), digest));
    }
    phases.push(
        phase(
            &admin,
            &signer,
            format!(
                "burst of {OCI_RUNS} with their images in the registry (.sig + .att pushed per run)"
            ),
            OCI_RUNS,
            None,
            Some(Arc::new(images)),
        )
        .await,
    );
    drop(signer);
    let throughput = phases
        .iter()
        .find(|p| p.count == count && p.label.starts_with("burst"))
        .map_or(0.0, |p| p.count as f64 / p.signed_in.as_secs_f64());

    println!(
        "signer benchmark (release build, 4 workers, default client limit 150 QPS / burst 300, 2-core machine shared with the API server and etcd)"
    );
    for phase in &phases {
        phase.print();
    }
    println!("  signer peak RSS {peak_rss} KiB over all phases (target <= 65536 KiB)");
    println!(
        "  API server ceiling {ceiling:.0} annotate writes/s ({count} merge patches, 4 concurrent); signer ({throughput:.0} runs/s in the burst of {count}) / ceiling = {:.2}",
        throughput / ceiling
    );
    println!(
        "  backlog of {count} at start: a new run signed {:.0} ms after completion, {backlog_signed_before} of the backlog signed before it (target: within 2 s)",
        new_signed.saturating_duration_since(new_done).as_secs_f64() * 1e3
    );
    drop(operator);
}
