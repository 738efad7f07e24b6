//! Figures for the benchmarks: process memory and latency percentiles.

use std::time::Duration;

/// A `/proc/<pid>/status` field in KiB (`VmRSS:` now, `VmHWM:` peak); 0 if unreadable.
pub fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .trim_end_matches(" kB")
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// The `percent`th percentile of `sorted` (nearest rank, rounding down).
///
/// # Panics
/// When `sorted` is empty: there is no percentile of nothing.
pub fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    sorted[(sorted.len() - 1) * percent / 100]
}
