//! `make bench` (operator part): CR edit → desired objects applied, API writes per no-op
//! reconcile, and operator memory, measured against the real control plane with the release
//! binary running as its own ServiceAccount. Prints figures; asserts nothing about speed.

// A benchmark program: a failed set-up step aborts it, and ratios are printed as floats.
#![allow(
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::too_many_lines
)]

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use signet_crds::SignetConfig;
use signet_e2e::TestEnv;
use signet_e2e::measure::{percentile, rss_kib};
use signet_e2e::operator::{apply_config, start_operator};

const EDITS: usize = 40;
const POKES: usize = 20;

async fn wait_until<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    false
}

#[tokio::main]
async fn main() {
    let env = TestEnv::get();
    let admin = env.admin_client().expect("admin client");
    let ns = format!("signet-bench-{}", std::process::id());
    let (operator, _cleanup) = start_operator(env, &admin, &ns).await.expect("operator");
    let configs: Api<SignetConfig> = Api::all(admin.clone());
    let apply = |spec: serde_json::Value| {
        let admin = admin.clone();
        async move {
            apply_config(&admin, spec)
                .await
                .expect("apply SignetConfig");
        }
    };
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), &ns);
    let builder = |i: usize| format!("https://bench.example/builder/{i}");

    apply(json!({"targetNamespace": ns, "provenance": {"builderId": builder(0)}})).await;
    let ready = wait_until(|| async {
        configs
            .get("config")
            .await
            .ok()
            .and_then(|c| c.status)
            .is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && format!("{:?}", c.status) == "True")
            })
    })
    .await;
    assert!(
        ready,
        "the signer never became Ready:\n{}",
        operator.log_text()
    );

    let mut latencies = Vec::with_capacity(EDITS);
    for i in 1..=EDITS {
        let started = Instant::now();
        apply(json!({"targetNamespace": ns, "provenance": {"builderId": builder(i)}})).await;
        let want = builder(i);
        let applied = wait_until(|| async {
            cms.get("signet-signer-config")
                .await
                .ok()
                .and_then(|c| c.data)
                .is_some_and(|d| d.get("builder.id") == Some(&want))
        })
        .await;
        assert!(applied, "edit {i} was never applied");
        latencies.push(started.elapsed());
    }
    latencies.sort();

    // Let the last edit's follow-up reconciles (its own writes echo back as watch events) settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log_before = operator.log_text().len();
    let writes_before = operator
        .metric("signet_operator_writes_total")
        .await
        .unwrap_or(0);
    let reconciles_before = operator
        .metric("signet_operator_reconciles_total")
        .await
        .unwrap_or(0);
    for i in 0..POKES {
        configs
            .patch(
                "config",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"bench/poke": i.to_string()}}})),
            )
            .await
            .expect("poke");
    }
    let target = reconciles_before + 1;
    wait_until(|| async {
        operator
            .metric("signet_operator_reconciles_total")
            .await
            .unwrap_or(0)
            >= target
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reconciles = operator
        .metric("signet_operator_reconciles_total")
        .await
        .unwrap_or(0)
        - reconciles_before;
    let writes = operator
        .metric("signet_operator_writes_total")
        .await
        .unwrap_or(0)
        - writes_before;

    for line in operator.log_text()[log_before..]
        .lines()
        .filter(|l| l.contains("applied SignetConfig"))
    {
        println!("  write during no-op phase: {line}");
    }
    let pid = operator.pid();
    println!(
        "operator benchmark ({EDITS} edits, {POKES} no-op pokes, release build, 2-core machine)"
    );
    println!(
        "  CR edit -> ConfigMap applied   p50 {:>7.1} ms   p99 {:>7.1} ms   max {:>7.1} ms",
        percentile(&latencies, 50).as_secs_f64() * 1e3,
        percentile(&latencies, 99).as_secs_f64() * 1e3,
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
    println!(
        "  no-op reconciles               {reconciles} reconciles, {writes} writes ({:.2} writes per reconcile; target 0)",
        if reconciles == 0 {
            0.0
        } else {
            writes as f64 / reconciles as f64
        }
    );
    println!(
        "  operator RSS                   {} KiB now, {} KiB peak (target <= 32768 KiB)",
        rss_kib(pid, "VmRSS:"),
        rss_kib(pid, "VmHWM:")
    );
    // The row in `make bench`'s table: edits stand in for runs.
    signet_e2e::bench::record(&json!({
        "bench": "operator",
        "phase": format!("{EDITS} CR edits -> ConfigMap applied; {POKES} no-op pokes: {writes} writes"),
        "runs": EDITS,
        "p50_ms": percentile(&latencies, 50).as_secs_f64() * 1e3,
        "p99_ms": percentile(&latencies, 99).as_secs_f64() * 1e3,
        "rss_peak_kib": rss_kib(pid, "VmHWM:"),
        "rss_after_kib": rss_kib(pid, "VmRSS:"),
    }));
}
