//! The realtime tables' cells: p99 instead of min, since thousands of samples make
//! the tail worth showing. The statistics are `corral_bench::stats`.

use corral_bench::stats::Summary;

/// `p50 / p95 / p99 / max` cells, or dashes.
pub fn cells(s: Option<Summary>) -> String {
    match s {
        Some(s) => format!(
            "{:>7.1} {:>7.1} {:>7.1} {:>7.1}",
            s.p50, s.p95, s.p99, s.max
        ),
        None => format!("{:>7} {:>7} {:>7} {:>7}", "-", "-", "-", "-"),
    }
}
