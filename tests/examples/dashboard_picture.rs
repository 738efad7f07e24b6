//! `make dashboard-picture`: the picture of the Grafana dashboard in docs/monitoring.md, plotted
//! from real series. No Grafana runs here, so this drives a real signer (release build, as its
//! ServiceAccount, against the test control plane) through a steady load, a spell of failing
//! storage and a burst, scrapes its `/metrics` every second, evaluates the dashboard panels'
//! queries over the samples (rates over 5 s, `histogram_quantile` as Prometheus interpolates
//! it) and draws them as SVG into docs/monitoring/dashboard.svg.

// Plotting is coordinate arithmetic: short names (x, y, w, h) read best.
#![allow(
    clippy::print_stdout,
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::too_many_lines,
    clippy::many_single_char_names
)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Api;
use serde_json::json;
use signet_crds::SignetConfig;
use signet_e2e::bench::{burst, wait_leading};
use signet_e2e::operator::{OperatorProcess, apply_config, start_operator};
use signet_e2e::plot::{Panel, draw};
use signet_e2e::{ServiceAccountIdentity, TestEnv, TestNamespace};

/// One scrape: seconds since the start, and every sample line as `name{labels}` → value.
type Scrape = (f64, BTreeMap<String, f64>);

const WINDOW: f64 = 5.0;

fn parse(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The sum of every series of `name` whose labels contain all of `labels`.
fn sum(sample: &BTreeMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    sample
        .iter()
        .filter(|(series, _)| {
            let (n, rest) = series.split_once('{').unwrap_or((series.as_str(), ""));
            n == name && labels.iter().all(|l| rest.contains(l))
        })
        .map(|(_, v)| v)
        .sum()
}

/// The scrape `WINDOW` seconds before scrape `i` (the first one, early on).
fn before(scrapes: &[Scrape], i: usize) -> &Scrape {
    let t = scrapes[i].0 - WINDOW;
    scrapes[..i]
        .iter()
        .rev()
        .find(|s| s.0 <= t)
        .unwrap_or(&scrapes[0])
}

/// `rate()` of the sum of a counter's series, per scrape.
fn rate(scrapes: &[Scrape], name: &str, labels: &[&str]) -> Vec<(f64, f64)> {
    (1..scrapes.len())
        .map(|i| {
            let (t0, s0) = before(scrapes, i);
            let (t1, s1) = &scrapes[i];
            let dv = (sum(s1, name, labels) - sum(s0, name, labels)).max(0.0);
            (*t1, dv / (t1 - t0).max(1e-9))
        })
        .collect()
}

/// `histogram_quantile(q, sum by (le) (rate(name_bucket[5s])))`, as Prometheus interpolates
/// within the bucket; `None` where nothing was observed in the window.
fn quantile(scrapes: &[Scrape], name: &str, q: f64) -> Vec<(f64, f64)> {
    let bucket = format!("{name}_bucket");
    (1..scrapes.len())
        .filter_map(|i| {
            let (_, s0) = before(scrapes, i);
            let (t1, s1) = &scrapes[i];
            let mut bounds: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
            for (series, v1) in s1.iter().filter(|(s, _)| s.starts_with(&bucket)) {
                let le = series.split("le=\"").nth(1)?.split('"').next()?;
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                let delta = v1 - s0.get(series).copied().unwrap_or(0.0);
                let entry = bounds.entry(bound.to_bits()).or_insert((bound, 0.0));
                entry.1 += delta;
            }
            let mut cumulative: Vec<(f64, f64)> = bounds.into_values().collect();
            cumulative.sort_by(|a, b| a.0.total_cmp(&b.0));
            let total = cumulative.last()?.1;
            if total <= 0.0 {
                return None;
            }
            let rank = q * total;
            let (mut lower, mut below) = (0.0, 0.0);
            for (bound, count) in cumulative {
                if count >= rank {
                    if bound.is_infinite() {
                        return Some((*t1, lower));
                    }
                    let within = (rank - below) / (count - below).max(1e-9);
                    return Some((*t1, lower + (bound - lower) * within));
                }
                (lower, below) = (bound, count);
            }
            None
        })
        .collect()
}

fn gauge(scrapes: &[Scrape], name: &str) -> Vec<(f64, f64)> {
    scrapes
        .iter()
        .map(|(t, s)| (*t, sum(s, name, &[])))
        .collect()
}

#[tokio::main]
async fn main() {
    let env = TestEnv::get();
    let admin = env.admin_client().expect("admin client");
    let signer_ns = format!("signet-picture-{}", std::process::id());
    let (operator, _cleanup) = start_operator(env, &admin, &signer_ns)
        .await
        .expect("operator");
    let quiet = json!({"targetNamespace": signer_ns, "artifacts": {"oci": {"storage": []}}});
    apply_config(&admin, quiet.clone())
        .await
        .expect("SignetConfig");
    let configs: Api<SignetConfig> = Api::all(admin.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while configs
        .get("config")
        .await
        .ok()
        .and_then(|c| c.status?.public_key)
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "no key:\n{}",
            operator.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let identity = ServiceAccountIdentity::mint(&admin, &signer_ns, "signet-signer", &[], 3600)
        .await
        .expect("token");
    let signer = Arc::new(
        OperatorProcess::start_signer(env, &admin, &identity)
            .await
            .expect("signer"),
    );
    wait_leading(&signer).await;
    let work = TestNamespace::create(&admin, "picture")
        .await
        .expect("namespace");

    // Scrape every second while the load runs.
    let scrapes: Arc<Mutex<Vec<Scrape>>> = Arc::default();
    let started = Instant::now();
    let scraping = tokio::spawn({
        let (scrapes, signer) = (scrapes.clone(), signer.clone());
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Some((_, body)) = signer.get("/metrics").await {
                    let sample = (started.elapsed().as_secs_f64(), parse(&body));
                    scrapes.lock().expect("scrapes").push(sample);
                }
            }
        }
    });
    println!("[dashboard-picture] 30 s at 20 runs/s");
    burst(
        &admin,
        work.name(),
        "steady",
        600,
        Some(Duration::from_millis(50)),
        None,
    )
    .await;
    // Failing storage: image signing on, for runs that report an image on a registry port
    // nothing listens on (each attempt is refused at once; 3 retries, then `failed`).
    println!("[dashboard-picture] 12 s of runs whose image registry refuses connections");
    apply_config(
        &admin,
        json!({"targetNamespace": signer_ns, "artifacts": {"oci": {"storage": ["oci"]}}}),
    )
    .await
    .expect("SignetConfig");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let refused = Arc::new(vec![(
        "127.0.0.1:9/team/app:latest".to_owned(),
        format!("sha256:{}", "4".repeat(64)),
    )]);
    burst(
        &admin,
        work.name(),
        "failing",
        12,
        Some(Duration::from_secs(1)),
        Some(refused),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    apply_config(&admin, quiet).await.expect("SignetConfig");
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!("[dashboard-picture] a burst of 1,000");
    burst(&admin, work.name(), "burst", 1000, None, None).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    scraping.abort();
    let scrapes = scrapes.lock().expect("scrapes").clone();
    let duration = scrapes.last().map_or(1.0, |s| s.0);

    let reasons = ["signer", "storage", "transparency", "other"]
        .iter()
        .map(|r| {
            let label = format!("reason=\"{r}\"");
            (
                (*r).to_owned(),
                rate(&scrapes, "signet_signer_failures_total", &[label.as_str()]),
            )
        })
        .filter(|(_, points)| points.iter().any(|(_, v)| *v > 0.0))
        .collect();
    let panels = [
        Panel {
            title: "Runs signed and failed attempts per second".to_owned(),
            unit: "/s",
            series: vec![
                (
                    "TaskRuns signed".to_owned(),
                    rate(&scrapes, "watcher_taskrun_marked_signed_total", &[]),
                ),
                (
                    "failed attempts".to_owned(),
                    rate(&scrapes, "watcher_taskrun_signing_failures_total", &[]),
                ),
            ],
        },
        Panel {
            title: "Failed attempts per second by reason".to_owned(),
            unit: "/s",
            series: reasons,
        },
        Panel {
            title: "Queue latency: seen done → a worker takes it".to_owned(),
            unit: "s",
            series: vec![
                (
                    "p50".to_owned(),
                    quantile(&scrapes, "signet_signer_queue_duration_seconds", 0.5),
                ),
                (
                    "p99".to_owned(),
                    quantile(&scrapes, "signet_signer_queue_duration_seconds", 0.99),
                ),
            ],
        },
        Panel {
            title: "Sign latency: taken → outcome written".to_owned(),
            unit: "s",
            series: vec![
                (
                    "p50".to_owned(),
                    quantile(&scrapes, "signet_signer_sign_duration_seconds", 0.5),
                ),
                (
                    "p99".to_owned(),
                    quantile(&scrapes, "signet_signer_sign_duration_seconds", 0.99),
                ),
            ],
        },
        Panel {
            title: "Runs in flight".to_owned(),
            unit: "",
            series: vec![(
                "runs in flight".to_owned(),
                gauge(&scrapes, "signet_signer_runs_in_flight"),
            )],
        },
        Panel {
            title: "Longest wait of a run in flight".to_owned(),
            unit: "s",
            series: vec![(
                "longest wait".to_owned(),
                gauge(&scrapes, "signet_signer_oldest_in_flight_seconds"),
            )],
        },
    ];
    let last = scrapes.last().map(|s| s.1.clone()).unwrap_or_default();
    let stats = format!(
        "Leader {:.0} · Signing key loaded {:.0} · Runs in flight {:.0} · TaskRuns signed {:.0} · failed attempts {:.0}",
        sum(&last, "signet_signer_leader", &[]),
        sum(&last, "signet_signer_signing_key_loaded", &[]),
        sum(&last, "signet_signer_runs_in_flight", &[]),
        sum(&last, "watcher_taskrun_marked_signed_total", &[]),
        sum(&last, "watcher_taskrun_signing_failures_total", &[]),
    );
    let (width, height) = (2.0 * 440.0 + 30.0, 3.0 * 240.0 + 80.0);
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif"><rect width="100%" height="100%" fill="#111217"/><text x="10" y="24" fill="#ccccdc" font-size="16" font-weight="bold">Signet signer — {} scrapes of a real signer's /metrics over {duration:.0} s</text><text x="10" y="48" fill="#8e8e8e" font-size="12">{stats}</text>"##,
        scrapes.len()
    );
    for (i, panel) in panels.iter().enumerate() {
        let (col, row) = ((i % 2) as f64, (i / 2) as f64);
        draw(
            &mut svg,
            panel,
            (10.0 + col * 450.0, 64.0 + row * 240.0),
            duration,
        );
    }
    svg.push_str("</svg>\n");
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/monitoring/dashboard.svg");
    std::fs::write(&path, svg).expect("write the picture");
    println!(
        "[dashboard-picture] {} scrapes over {duration:.0} s; {stats}; wrote {}",
        scrapes.len(),
        path.display()
    );
    // Why attempts failed, from the signer's log: what the picture's failure panel shows.
    let mut why: BTreeMap<String, usize> = BTreeMap::new();
    for line in signer
        .log_text()
        .lines()
        .filter(|l| l.contains("\"signing failed\""))
    {
        let error = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| {
                v["error"]
                    .as_str()
                    .map(|e| e.chars().take(120).collect::<String>())
            })
            .unwrap_or_default();
        *why.entry(error).or_default() += 1;
    }
    for (error, count) in &why {
        println!("[dashboard-picture] {count} failed attempts: {error}");
    }
    drop(signer);
    drop(operator);
}
