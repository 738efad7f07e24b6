//! `make bench` (signer part): completed TaskRuns against the real API server — 500 at a
//! steady 50 runs/s, then bursts of 1,000 and 5,000 (`SIGNET_BENCH_BURSTS`) — signed by the
//! release signer binary running as its ServiceAccount with the Deployment's environment.
//! Prints, per phase, runs signed per second and completion -> `signed=true` latency
//! p50/p99/max; the signer's peak RSS; and the API server's own ceiling for the same writes (a
//! tight annotate loop that signs nothing) and the ratio. (The backlog at start is measured
//! by the scale bench, with 10,000 runs.)

// A benchmark program: a failed set-up step aborts it, and ratios are printed as floats.
#![allow(
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::too_many_lines
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use signet_e2e::bench::{burst, phase, taskruns, wait_public_key};
use signet_e2e::measure::rss_kib;
use signet_e2e::operator::{OperatorProcess, apply_config, start_operator};
use signet_e2e::{ServiceAccountIdentity, TestEnv, TestNamespace};

const STEADY_RATE: f64 = 50.0;
const STEADY_RUNS: usize = 500;
const OCI_RUNS: usize = 200;

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
    let signer_ns = format!("signet-bench-signer-{}", std::process::id());
    let (operator, _cleanup) = start_operator(env, &admin, &signer_ns)
        .await
        .expect("operator");
    // TaskRun attestations in `tekton` storage; the runs' images are not in a registry.
    apply_config(
        &admin,
        json!({"targetNamespace": signer_ns, "artifacts": {"oci": {"storage": []}}}),
    )
    .await
    .expect("SignetConfig");
    wait_public_key(&admin).await;
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
        phase.report("signer");
    }
    println!("  signer peak RSS {peak_rss} KiB over all phases (target <= 65536 KiB)");
    println!(
        "  API server ceiling {ceiling:.0} annotate writes/s ({count} merge patches, 4 concurrent); signer ({throughput:.0} runs/s in the burst of {count}) / ceiling = {:.2}",
        throughput / ceiling
    );
    drop(operator);
}
