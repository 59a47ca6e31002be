//! The benchmark's report: one table per backend, each figure next to its target.

use std::time::Duration;

use corral_bench::stats::percentile;

use crate::{Backend, Report};

/// SPEC targets the figures are compared with.
pub const TARGET_BOOT_MS_SQLITE: f64 = 100.0;
pub const TARGET_IDLE_RSS_MB: f64 = 30.0;
pub const TARGET_P99_MS: f64 = 5.0;
/// `GET /api/runs` throughput goals (issue 14).
pub const TARGET_RUNS_RPS_SQLITE: f64 = 6_000.0;
pub const TARGET_RUNS_RPS_POSTGRES: f64 = 3_000.0;

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISS"
    }
}

impl Report {
    pub fn print(&self) {
        let mut boots = self.boots.clone();
        boots.sort_unstable();
        let median = boots[boots.len() / 2];
        let l = &self.load;
        let rps = l.requests as f64 / l.elapsed.as_secs_f64();
        let p99 = percentile(&l.latencies, 99.0).unwrap_or_default();
        let boot_target = match self.backend {
            Backend::Sqlite => format!("< {TARGET_BOOT_MS_SQLITE:.0} ms"),
            Backend::Postgres => "-".to_owned(),
        };
        let boot_verdict = match self.backend {
            Backend::Sqlite => verdict(ms(median) < TARGET_BOOT_MS_SQLITE),
            Backend::Postgres => "",
        };
        println!(
            "+-----------------------------------------------------------------+\n\
             | {:<63} |\n\
             +---------------------------+------------------+-----------+------+",
            format!(
                "{} — GET /api/applications, API key, {} connections",
                self.backend.name(),
                self.concurrency
            )
        );
        let row = |name: &str, value: String, target: &str, v: &str| {
            println!("| {name:<25} | {value:>16} | {target:>9} | {v:>4} |");
        };
        row(
            &format!("boot→healthy median of {}", boots.len()),
            format!("{:.1} ms", ms(median)),
            &boot_target,
            boot_verdict,
        );
        row(
            "boot min / max",
            format!("{:.1}/{:.1} ms", ms(boots[0]), ms(boots[boots.len() - 1])),
            "",
            "",
        );
        row(
            "idle RSS",
            format!("{:.1} MB", mib(self.idle_rss_kib)),
            &format!("< {TARGET_IDLE_RSS_MB:.0} MB"),
            verdict(mib(self.idle_rss_kib) < TARGET_IDLE_RSS_MB),
        );
        row(
            "requests",
            format!("{} in {:.1} s", l.requests, l.elapsed.as_secs_f64()),
            "",
            "",
        );
        row("throughput", format!("{rps:.0} req/s"), "", "");
        for (name, p) in [("p50", 50.0), ("p90", 90.0)] {
            row(
                name,
                format!(
                    "{:.2} ms",
                    ms(percentile(&l.latencies, p).unwrap_or_default())
                ),
                "",
                "",
            );
        }
        row(
            "p99",
            format!("{:.2} ms", ms(p99)),
            &format!("< {TARGET_P99_MS:.0} ms"),
            verdict(ms(p99) < TARGET_P99_MS),
        );
        row(
            "max",
            format!(
                "{:.2} ms",
                ms(l.latencies.last().copied().unwrap_or_default())
            ),
            "",
            "",
        );
        row("errors", l.errors.to_string(), "0", verdict(l.errors == 0));
        row(
            "RSS after load",
            format!("{:.1} MB", mib(self.loaded_rss_kib)),
            "",
            "",
        );
        row(
            "SIGTERM→exit",
            format!("{:.1} ms", ms(self.shutdown)),
            "",
            "",
        );
        let r = &self.runs;
        let runs_rps = r.requests as f64 / r.elapsed.as_secs_f64();
        let runs_p99 = ms(percentile(&r.latencies, 99.0).unwrap_or_default());
        let rps_target = match self.backend {
            Backend::Sqlite => TARGET_RUNS_RPS_SQLITE,
            Backend::Postgres => TARGET_RUNS_RPS_POSTGRES,
        };
        row(
            "GET /api/runs (20/page)",
            format!("{runs_rps:.0} req/s"),
            &format!(">= {rps_target:.0}"),
            verdict(runs_rps >= rps_target),
        );
        row(
            "  p50 / p99",
            format!(
                "{:.2}/{runs_p99:.2} ms",
                ms(percentile(&r.latencies, 50.0).unwrap_or_default())
            ),
            &format!("< {TARGET_P99_MS:.0} ms"),
            verdict(runs_p99 < TARGET_P99_MS),
        );
        row(
            "  errors",
            r.errors.to_string(),
            "0",
            verdict(r.errors == 0),
        );
        // Figures without a goal: throughput, p50 / p99, errors.
        let plain = |name: &str, l: &crate::Load| {
            row(
                name,
                format!("{:.0} req/s", l.requests as f64 / l.elapsed.as_secs_f64()),
                "",
                "",
            );
            row(
                "  p50 / p99",
                format!(
                    "{:.2}/{:.2} ms",
                    ms(percentile(&l.latencies, 50.0).unwrap_or_default()),
                    ms(percentile(&l.latencies, 99.0).unwrap_or_default())
                ),
                "",
                "",
            );
            row(
                "  errors",
                l.errors.to_string(),
                "0",
                verdict(l.errors == 0),
            );
        };
        plain("  each page new", &self.runs_rendered);
        plain("GET /api/end-users (limited)", &self.limited);
        println!("+---------------------------+------------------+-----------+------+");
        let loads = [&self.load, &self.runs, &self.runs_rendered, &self.limited];
        for e in loads.into_iter().filter_map(|l| l.first_error.as_ref()) {
            println!("first error: {e}");
        }
        println!();
    }
}
