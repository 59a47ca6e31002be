//! The run-start tables' cells; the statistics are `corral_bench::stats`.

use corral_bench::stats::Summary;

/// `"  p50   p95   min   max"` cells of a summary, or dashes.
pub fn cells(s: Option<Summary>) -> String {
    match s {
        Some(s) => format!(
            "{:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            s.p50, s.p95, s.min, s.max
        ),
        None => format!("{:>8} {:>8} {:>8} {:>8}", "-", "-", "-", "-"),
    }
}
