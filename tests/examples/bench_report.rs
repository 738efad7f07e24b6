//! The end of `make bench`: every phase the benchmarks recorded (`target/bench/results.jsonl`,
//! see `signet_e2e::bench::record`) as one table — runs/s, completion -> signed p50/p99, the
//! signer's RSS peak and after, API requests and CPU per run — written as
//! `target/bench/bench.json` beside `target/bench/bench.svg` (latency of each run and RSS over
//! time, a panel per phase). With `BASELINE=<an earlier bench.json>` each figure is followed
//! by its ratio to the baseline's same phase, so two runs compare side by side.
//!
//! `cargo run -p signet-e2e --example bench_report [-- <results.jsonl>]`; needs no cluster.

#![allow(clippy::print_stdout, clippy::expect_used, clippy::cast_precision_loss)]

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::{Value, json};
use signet_e2e::plot::{Panel, draw};

/// The table's figures: (JSON field, heading, digits).
const FIGURES: [(&str, &str, usize); 8] = [
    ("runs_per_s", "runs/s", 1),
    ("p50_ms", "p50 ms", 0),
    ("p99_ms", "p99 ms", 0),
    ("rss_peak_kib", "RSS peak MiB", 1),
    ("rss_after_kib", "RSS after MiB", 1),
    ("api_per_run", "API req/run", 2),
    ("cpu_ms_per_run", "CPU ms/run", 2),
    ("runs", "runs", 0),
];

fn figure(row: &Value, field: &str) -> Option<f64> {
    let v = row[field].as_f64()?;
    Some(if field.ends_with("_kib") {
        v / 1024.0
    } else {
        v
    })
}

fn key(row: &Value) -> (String, String) {
    (
        row["bench"].as_str().unwrap_or_default().to_owned(),
        row["phase"].as_str().unwrap_or_default().to_owned(),
    )
}

fn main() {
    let results = std::env::args()
        .nth(1)
        .map_or_else(signet_e2e::bench::results_file, std::path::PathBuf::from);
    let text = std::fs::read_to_string(&results).unwrap_or_else(|e| {
        eprintln!(
            "bench_report: no results in {} ({e}); run `make bench` first",
            results.display()
        );
        std::process::exit(2)
    });
    let rows: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| match serde_json::from_str(l) {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!(
                    "bench_report: skipping a line of {}: {e}",
                    results.display()
                );
                None
            }
        })
        .collect();
    let baseline: Option<HashMap<(String, String), Value>> = std::env::var("BASELINE")
        .ok()
        .filter(|b| !b.is_empty())
        .map(|path| {
            let text =
                std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("BASELINE {path}: {e}"));
            let doc: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("BASELINE {path}: {e}"));
            doc["phases"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| (key(r), r.clone()))
                .collect()
        });
    print!("{}", table(&rows, baseline.as_ref()));
    let dir = results
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let json_path = dir.join("bench.json");
    let svg_path = dir.join("bench.svg");
    let doc = json!({
        "written": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default(),
        "commit": std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()),
        "phases": rows,
    });
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&doc).expect("JSON"),
    )
    .expect("write bench.json");
    std::fs::write(&svg_path, picture(&rows)).expect("write bench.svg");
    println!(
        "wrote {} and {} (compare a later run with `make bench BASELINE={}`)",
        json_path.display(),
        svg_path.display(),
        json_path.display()
    );
}

/// The table, one line per phase; with a baseline, `(x1.23)` after each figure it has.
fn table(rows: &[Value], baseline: Option<&HashMap<(String, String), Value>>) -> String {
    let mut out = String::new();
    let _ = write!(out, "{:<7} {:<64}", "bench", "phase");
    for (_, heading, _) in FIGURES {
        let _ = write!(
            out,
            " {heading:>w$}",
            w = if baseline.is_some() { 22 } else { 13 }
        );
    }
    out.push('\n');
    for row in rows {
        let (bench, phase) = key(row);
        let short: String = phase.chars().take(64).collect();
        let _ = write!(out, "{bench:<7} {short:<64}");
        let before = baseline.and_then(|b| b.get(&(bench.clone(), phase.clone())));
        for (field, _, digits) in FIGURES {
            let cell = figure(row, field).map_or_else(
                || "n/a".to_owned(),
                |v| {
                    let ratio = before
                        .and_then(|b| figure(b, field))
                        .filter(|b| *b > 0.0)
                        .map(|b| format!(" (x{:.2})", v / b))
                        .unwrap_or_default();
                    format!("{v:.digits$}{ratio}")
                },
            );
            let _ = write!(
                out,
                " {cell:>w$}",
                w = if baseline.is_some() { 22 } else { 13 }
            );
        }
        out.push('\n');
        if phase.chars().count() > 64 {
            let _ = writeln!(
                out,
                "        … {}",
                phase.chars().skip(64).collect::<String>()
            );
        }
    }
    out
}

fn series(row: &Value, field: &str, scale: f64) -> Vec<(f64, f64)> {
    row[field]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()? * scale)))
        .collect()
}

/// A panel per phase, two per line: each run's completion -> signed latency at the moment it
/// was signed, and the signer's RSS.
fn picture(rows: &[Value]) -> String {
    let (columns, panel_w, panel_h) = (2.0, 450.0, 240.0);
    let lines = (rows.len() as f64 / columns).ceil().max(1.0);
    let (width, height) = (columns * panel_w + 10.0, lines * 2.0 * panel_h + 50.0);
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif"><rect width="100%" height="100%" fill="#111217"/><text x="10" y="28" fill="#ccccdc" font-size="16" font-weight="bold">make bench: completion → signed latency per run, and the signer's RSS, over each phase</text>"##
    );
    for (i, row) in rows.iter().enumerate() {
        let (bench, phase) = key(row);
        let title: String = format!("{bench}: {phase}").chars().take(48).collect();
        let latency = series(row, "latency", 1.0);
        let rss = series(row, "rss", 1.0 / 1024.0);
        let duration = latency
            .iter()
            .chain(rss.iter())
            .map(|p| p.0)
            .fold(1.0, f64::max);
        let (col, line) = ((i % 2) as f64, (i / 2) as f64);
        let (x, y) = (10.0 + col * panel_w, 40.0 + line * 2.0 * panel_h);
        let panels = [
            Panel {
                title: format!("{title} — latency"),
                unit: "ms",
                series: vec![("completion → signed, per run".to_owned(), latency)],
            },
            Panel {
                title: format!("{title} — RSS"),
                unit: "MiB",
                series: vec![("signer RSS".to_owned(), rss)],
            },
        ];
        for (j, panel) in panels.iter().enumerate() {
            draw(&mut svg, panel, (x, y + j as f64 * panel_h), duration);
        }
    }
    svg.push_str("</svg>\n");
    svg
}
