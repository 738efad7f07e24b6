//! `make bench` (scale part), against the real API server with the release signer:
//!
//! - **latency-bound signing**: runs whose images are in a registry and whose
//!   attestation and image signatures come from Vault transit (OpenBao), with a proxy on
//!   loopback adding 50 ms and then 200 ms to every registry and Vault request
//!   (`SIGNET_BENCH_DELAYS`, default `0,50,200`; `SIGNET_BENCH_SCALE_RUNS` runs, default 300);
//! - **active-active**: the 200 ms phase (`SIGNET_BENCH_REPLICAS_DELAY`) again with 1, 2 and 3
//!   signer replicas sharing the runs (`SIGNET_BENCH_REPLICAS`, default `1,2,3`);
//! - **backlog**: the signer started on 10,000 completed unsigned runs
//!   (`SIGNET_BENCH_BACKLOG`), then again once they are all signed (it must skip them): drain
//!   rate, the RSS curve, API requests, and how soon a run completed meanwhile is signed.
//!
//! `SIGNET_BENCH_SCALE_PHASES=latency,replicas,backlog` picks phases. Every proxy and process
//! stops when the benchmark ends.

// A benchmark program: a failed set-up step aborts it.
#![allow(
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::too_many_lines
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use signet_e2e::bench::{
    Phase, RssSampler, api_requests, apiserver_requests, burst, phase, signer_requests_per_run,
    wait_leading, wait_rendered, watch_signed,
};
use signet_e2e::fault_proxy::{Fault, FaultProxy, Rule};
use signet_e2e::measure::{cpu_ms, rss_kib};
use signet_e2e::operator::{OperatorProcess, apply_config, merged, start_operator};
use signet_e2e::{ServiceAccountIdentity, TestEnv, TestNamespace, kms_fixtures};

fn list(var: &str, default: &str) -> Vec<String> {
    std::env::var(var)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn number(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let phases = list("SIGNET_BENCH_SCALE_PHASES", "latency,replicas,backlog");
    let env = TestEnv::get();
    let admin = env.admin_client().expect("admin client");
    let signer_ns = format!("signet-bench-scale-{}", std::process::id());
    let (operator, _cleanup) = start_operator(env, &admin, &signer_ns)
        .await
        .expect("operator");
    println!(
        "scale benchmark (release build, default in-flight limits and client limit 150 QPS / burst 300; peers on the same 2-core machine)"
    );
    if phases.iter().any(|p| p == "latency" || p == "replicas") {
        latency_bound(env, &admin, &signer_ns, &phases, &operator).await;
    }
    if phases.iter().any(|p| p == "backlog") {
        backlog(env, &admin, &signer_ns).await;
    }
    drop(operator);
}

/// Runs with images, signed through Vault, with every registry and Vault request delayed.
async fn latency_bound(
    env: &'static TestEnv,
    admin: &kube::Client,
    signer_ns: &str,
    phases: &[String],
    operator: &OperatorProcess,
) {
    let runs = number("SIGNET_BENCH_SCALE_RUNS", 300);
    // Runs written 48 at a time, so that the writer is not what caps the signer.
    signet_e2e::bench::WRITERS.store(48, std::sync::atomic::Ordering::Relaxed);
    // Created first, then completed together: completions arrive at ~100/s, faster than the
    // signer's 50 runs/s target.
    signet_e2e::bench::RUNNING_FIRST.store(true, std::sync::atomic::Ordering::Relaxed);
    let vault = kms_fixtures::vault(env).await.expect("Vault");
    let vault_addr = vault.spec["signing"]["kms"]["auth"]["address"]
        .as_str()
        .expect("Vault address")
        .to_owned();
    // The proxy fronts the environment's second registry (go-containerregistry's, in memory,
    // no authentication): Debian's registry checks a bcrypt password on every request and
    // tops out near 170 requests/s on this machine (measured: 60-156 % CPU, 10-13 runs/s
    // with no delay added), which would measure it rather than the signer. Authenticated
    // pushes are covered by the e2e tests and the signer bench's registry phase.
    let registry = FaultProxy::start(
        env,
        "127.0.0.1",
        Some(&format!("https://{}", env.referrers_registry)),
    )
    .await
    .expect("registry proxy");
    let kms = FaultProxy::start(env, "127.0.0.1", Some(&vault_addr))
        .await
        .expect("Vault proxy");
    registry.keep_requests(false);
    kms.keep_requests(false);
    let mut spec = merged(
        &json!({"targetNamespace": signer_ns,
                "artifacts": {"taskRun": {"storage": ["tekton", "oci"], "signer": "kms"},
                              "oci": {"storage": ["oci"], "signer": "kms"}},
                "storage": {"oci": {"insecure": true}}}),
        &vault.spec,
    );
    spec["signing"]["kms"]["auth"]["address"] = json!(kms.url);
    apply_config(admin, spec).await.expect("SignetConfig");
    wait_rendered(
        admin,
        signer_ns,
        "signers.kms.auth.address",
        &kms.url,
        operator,
    )
    .await;
    // One image per run, pushed straight to the registry, reported through the proxy.
    let mut images = Vec::new();
    for i in 0..runs {
        let repo = format!("scale/app-{}-{i}", std::process::id());
        let digest = signet_e2e::registry::push_random_image_to(
            env,
            &env.referrers_registry,
            &repo,
            "latest",
        )
        .await
        .expect("test image");
        images.push((format!("{}/{repo}", registry.authority), digest));
    }
    let images = Arc::new(images);
    let identity = ServiceAccountIdentity::mint(admin, signer_ns, "signet-signer", &[], 3600)
        .await
        .expect("token");
    let delayed = |ms: u64| {
        let rule = Rule::new(Fault::Delay(Duration::from_millis(ms)));
        registry.set(vec![rule.clone()]);
        kms.set(vec![rule]);
    };
    if phases.iter().any(|p| p == "latency") {
        for ms in list("SIGNET_BENCH_DELAYS", "0,50,200") {
            let ms: u64 = ms.parse().expect("SIGNET_BENCH_DELAYS: milliseconds");
            delayed(ms);
            // `SIGNET_BENCH_SIGNER_WORKERS=4`: an earlier signer's default, for a comparison.
            let workers = std::env::var("SIGNET_BENCH_SIGNER_WORKERS").unwrap_or_default();
            let extra: Vec<(&str, &str)> = if workers.is_empty() {
                Vec::new()
            } else {
                vec![("SIGNET_WORKERS", workers.as_str())]
            };
            let signer = OperatorProcess::start_signer_with(env, admin, &identity, &extra)
                .await
                .expect("signer");
            wait_leading(&signer).await;
            let counted = apiserver_requests(admin).await;
            let result = phase(
                admin,
                &signer,
                format!(
                    "+{ms} ms per registry and Vault request: {runs} runs with an image each (.sig + .att, 2 Vault signatures)"
                ),
                runs,
                None,
                Some(images.clone()),
            )
            .await;
            result.report("scale");
            println!("    {}", where_time_went(&signer).await);
            println!(
                "    {}",
                signer_requests_per_run(&counted, &apiserver_requests(admin).await, runs)
            );
        }
    }
    if phases.iter().any(|p| p == "replicas") {
        // At 200 ms one replica is bound by its runs in flight (128): more replicas, more.
        let ms = number("SIGNET_BENCH_REPLICAS_DELAY", 200);
        delayed(u64::try_from(ms).unwrap_or(200));
        for replicas in list("SIGNET_BENCH_REPLICAS", "1,2,3") {
            let replicas: usize = replicas.parse().expect("SIGNET_BENCH_REPLICAS: counts");
            let shards = replicas.to_string();
            let extra = [("SIGNET_REPLICAS", shards.as_str())];
            let signers: Vec<OperatorProcess> = futures::future::join_all(
                (0..replicas)
                    .map(|_| OperatorProcess::start_signer_with(env, admin, &identity, &extra)),
            )
            .await
            .into_iter()
            .map(|s| s.expect("signer"))
            .collect();
            for signer in &signers {
                wait_leading(signer).await;
            }
            // The first replica's figures (RSS, CPU) stand for each; throughput is everyone's.
            let mut result = phase(
                admin,
                &signers[0],
                format!(
                    "{replicas} replica(s), +{ms} ms per request: {runs} runs with an image each"
                ),
                runs,
                None,
                Some(images.clone()),
            )
            .await;
            let mut total = (0, 0);
            for signer in &signers {
                if let Some((r, w)) = api_requests(signer).await {
                    total = (total.0 + r, total.1 + w);
                }
            }
            println!(
                "    all replicas together since their start: {} API reads, {} writes",
                total.0, total.1
            );
            result.label.push_str(" (RSS and CPU of one replica)");
            result.report("scale");
        }
    }
    drop(vault);
}

/// The signer's mean queue time (seen done -> taken) and sign time (taken -> written) over
/// its life, from its histograms: which side of the dispatcher the time was spent on.
async fn where_time_went(signer: &OperatorProcess) -> String {
    let Some((_, body)) = signer.get("/metrics").await else {
        return "no /metrics".to_owned();
    };
    let value = |name: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let mean = |family: &str| {
        let count = value(&format!("{family}_count{{kind=\"taskrun\"}}"));
        value(&format!("{family}_sum{{kind=\"taskrun\"}}")) / count.max(1.0) * 1e3
    };
    format!(
        "mean queue time {:.0} ms, mean sign time {:.0} ms; peer limits: {}",
        mean("signet_signer_queue_duration_seconds"),
        mean("signet_signer_sign_duration_seconds"),
        body.lines()
            .filter(|l| l.starts_with("signet_signer_peer_"))
            .collect::<Vec<_>>()
            .join("; ")
    )
}

/// The signer started on a backlog of completed unsigned runs, then on the same runs signed.
async fn backlog(env: &'static TestEnv, admin: &kube::Client, signer_ns: &str) {
    let count = number("SIGNET_BENCH_BACKLOG", 10_000);
    apply_config(
        admin,
        json!({"targetNamespace": signer_ns, "artifacts": {"oci": {"storage": []}}}),
    )
    .await
    .expect("SignetConfig");
    signet_e2e::bench::wait_public_key(admin).await;
    let identity = ServiceAccountIdentity::mint(admin, signer_ns, "signet-signer", &[], 3600)
        .await
        .expect("token");
    let work = TestNamespace::create(admin, "bench-backlog")
        .await
        .expect("namespace");
    let written = Instant::now();
    let _ = burst(admin, work.name(), "old", count, None, None).await;
    println!(
        "  backlog: {count} completed runs written in {:.0} s",
        written.elapsed().as_secs_f64()
    );
    for (round, what) in [(0, "unsigned"), (1, "already signed")] {
        let (signed_at, watching) = watch_signed(admin, work.name());
        // The watch lists what is signed already: wait until it has.
        tokio::time::sleep(Duration::from_secs(if round == 0 { 1 } else { 5 })).await;
        let already = signed_at.lock().expect("lock").len();
        let counted = apiserver_requests(admin).await;
        let started = Instant::now();
        let signer = OperatorProcess::start_signer(env, admin, &identity)
            .await
            .expect("signer");
        let rss = RssSampler::start(signer.pid(), started);
        wait_leading(&signer).await;
        let led = started.elapsed();
        let api_start = api_requests(&signer).await;
        // A run completed while the backlog drains.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let name = format!("new-{round}");
        let new_done = burst(admin, work.name(), &name, 1, None, None)
            .await
            .into_values()
            .next()
            .expect("new run");
        let deadline = Instant::now() + Duration::from_secs(900);
        let new_name = format!("{name}-0");
        let mut new_signed = None;
        let want = count + round + 1;
        loop {
            let (done, new) = {
                let seen = signed_at.lock().expect("lock");
                (seen.len(), seen.get(&new_name).copied())
            };
            if new_signed.is_none() {
                new_signed = new;
            }
            if done >= want && new_signed.is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "backlog ({what}): {done} of {want} signed:\n{}",
                signer
                    .log_text()
                    .lines()
                    .rev()
                    .take(15)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Skipping signed runs has no end to wait for: give the signer the time the
        // unsigned round took to list, then read its figures.
        if round == 1 {
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        let drained = started.elapsed();
        let api = match (api_start, api_requests(&signer).await) {
            (Some((r0, w0)), Some((r1, w1))) => Some((r1 - r0, w1 - w0)),
            _ => None,
        };
        let cpu = cpu_ms(signer.pid());
        let rss_after = rss_kib(signer.pid(), "VmRSS:");
        let (peak, samples) = rss.stop();
        // The key is opened before the signer leads; the 64 MiB scrypt works in is handed back
        // within a second or so: the drain's figure starts 2 s after it led.
        let after_load = samples
            .iter()
            .filter(|(t, _)| *t > led.as_secs_f64() + 2.0)
            .map(|s| s.1)
            .max()
            .unwrap_or(0);
        watching.abort();
        let new_latency = new_signed
            .expect("new run signed")
            .saturating_duration_since(new_done);
        let signed_now = count + round + 1 - already;
        let label = format!(
            "backlog of {count} {what} at start: {} signed by this signer in {:.1} s; a run completed meanwhile signed {:.0} ms after completion; RSS peak from 2 s after it led {after_load} KiB",
            signed_now,
            drained.as_secs_f64(),
            new_latency.as_secs_f64() * 1e3
        );
        let result = Phase {
            label,
            count: signed_now.max(1),
            written_in: Duration::ZERO,
            signed_in: drained,
            latencies: vec![new_latency],
            rss_kib: rss_after,
            peak_rss_kib: peak,
            cpu_ms: cpu,
            api,
            rss_samples: samples,
            points: vec![(drained.as_secs_f64(), new_latency.as_secs_f64() * 1e3)],
        };
        result.report("scale");
        println!(
            "    {}",
            signer_requests_per_run(&counted, &apiserver_requests(admin).await, signed_now)
        );
        drop(signer);
    }
}
