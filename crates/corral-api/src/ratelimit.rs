//! Per-route, per-principal rate limits with IETF `RateLimit` / `RateLimit-Policy`
//! headers. The limiter is a trait so tier 2 can share counters through Redis; the
//! in-process implementation is a sliding window per key, like tier 2's.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue, Method};
use corral_config::{LimitOverride, RateLimits};
use dashmap::DashMap;
use futures::future::BoxFuture;

/// A limit that applies to one group of operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub name: &'static str,
    pub limit: u32,
    pub window_secs: u32,
}

const fn per_minute(name: &'static str, limit: u32) -> Rule {
    Rule {
        name,
        limit,
        window_secs: 60,
    }
}

/// Every rule with its default (SPEC §3; the names are what `CORRAL_RATE_LIMITS`
/// overrides). `login` and `sign-up` are per client IP and apply in production only.
pub const DEFAULTS: &[Rule] = &[
    per_minute("login", 10),
    per_minute("sign-up", 10),
    per_minute("run", 20),
    per_minute("logs", 120),
    per_minute("end-users-read", 300),
    per_minute("end-users-write", 60),
    per_minute("schedule-create", 10),
    per_minute("package-import", 10),
    per_minute("webhook-write", 10),
    // Each test is a real (billed) request to the provider.
    per_minute("model-test", 5),
    per_minute("model-discovery", 6),
    // Each test is a real request through the proxy.
    per_minute("proxy-test", 5),
    per_minute("storage-jobs-read", 60),
    per_minute("storage-jobs-retry", 30),
    // A pairing token is a bearer: minting many is pointless.
    per_minute("model-pairing", 10),
];

/// The rule name of an operation, by method and route template.
pub fn rule_name_for(method: &Method, route: &str) -> Option<&'static str> {
    let write = !method.is_safe();
    Some(match route {
        "/api/auth/sign-in/email" if write => "login",
        "/api/auth/sign-up/email" if write => "sign-up",
        "/api/end-users" | "/api/end-users/{id}" if write => "end-users-write",
        "/api/end-users" | "/api/end-users/{id}" => "end-users-read",
        "/api/agents/{scope}/{name}/run" | "/api/runs/remote" if write => "run",
        "/api/runs/{id}/logs" => "logs",
        "/api/schedules" | "/api/agents/{scope}/{name}/schedules" if *method == Method::POST => {
            "schedule-create"
        }
        "/api/packages/import" | "/api/packages/import-bundle" if write => "package-import",
        "/api/webhooks"
        | "/api/webhooks/{id}"
        | "/api/webhooks/{id}/rotate"
        | "/api/webhooks/{id}/test"
            if write =>
        {
            "webhook-write"
        }
        "/api/models/test"
        | "/api/models/{id}/test"
        | "/api/model-provider-credentials/test"
        | "/api/model-provider-credentials/{id}/test"
            if write =>
        {
            "model-test"
        }
        "/api/model-provider-credentials/{id}/refresh-models" if write => "model-discovery",
        "/api/proxies/{id}/test" if write => "proxy-test",
        "/api/admin/storage-deletion-jobs" => "storage-jobs-read",
        "/api/admin/storage-deletion-jobs/{id}/retry" if write => "storage-jobs-retry",
        "/api/model-providers-oauth/pairing" if write => "model-pairing",
        _ => return None,
    })
}

/// The default rule of an operation (what the contract documents).
pub fn rule_for(method: &Method, route: &str) -> Option<Rule> {
    let name = rule_name_for(method, route)?;
    DEFAULTS.iter().find(|r| r.name == name).copied()
}

/// `sign-up`, `signup` and `sign_up` name the same rule.
fn same_name(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| *c != '-' && *c != '_')
            .map(|c| c.to_ascii_lowercase())
            .collect::<String>()
    };
    norm(a) == norm(b)
}

/// The rules in effect: the defaults with the configured overrides applied.
#[derive(Debug, Clone)]
pub struct Rules {
    /// `None`: that limit is off.
    rules: Vec<(&'static str, Option<Rule>)>,
    all_off: bool,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            rules: DEFAULTS.iter().map(|r| (r.name, Some(*r))).collect(),
            all_off: false,
        }
    }
}

impl Rules {
    /// Applies `CORRAL_RATE_LIMITS`; an unknown name is an error that lists the known
    /// ones.
    pub fn from_config(limits: &RateLimits) -> Result<Rules, String> {
        let mut rules = Rules {
            all_off: limits.all_off,
            ..Rules::default()
        };
        if limits.all_off {
            rules.rules.iter_mut().for_each(|(_, r)| *r = None);
        }
        for (name, o) in &limits.overrides {
            let Some(slot) = rules.rules.iter_mut().find(|(n, _)| same_name(n, name)) else {
                let known: Vec<&str> = DEFAULTS.iter().map(|r| r.name).collect();
                return Err(format!(
                    "CORRAL_RATE_LIMITS: unknown limit {name:?}; known limits: {}",
                    known.join(", ")
                ));
            };
            slot.1 = match *o {
                LimitOverride::Off => None,
                LimitOverride::Limit { limit, window_secs } => Some(Rule {
                    name: slot.0,
                    limit,
                    window_secs,
                }),
            };
        }
        Ok(rules)
    }

    pub fn all_off(&self) -> bool {
        self.all_off
    }

    /// The rule named `name`, unless it is off.
    pub fn get(&self, name: &str) -> Option<Rule> {
        self.rules
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, r)| *r)
    }

    pub fn for_route(&self, method: &Method, route: &str) -> Option<Rule> {
        self.get(rule_name_for(method, route)?)
    }

    /// The rules that differ from the defaults, for the boot log.
    pub fn changed(&self) -> Vec<String> {
        self.rules
            .iter()
            .zip(DEFAULTS)
            .filter(|((_, r), d)| *r != Some(**d))
            .map(|((n, r), _)| match r {
                Some(r) => format!("{n}={}/{}s", r.limit, r.window_secs),
                None => format!("{n}=off"),
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the window resets.
    pub reset: u64,
    pub window: u32,
}

impl Decision {
    pub fn apply_headers(&self, headers: &mut HeaderMap) {
        let rl = format!(
            "limit={}, remaining={}, reset={}",
            self.limit, self.remaining, self.reset
        );
        let policy = format!("{};w={}", self.limit, self.window);
        if let (Ok(a), Ok(b)) = (HeaderValue::from_str(&rl), HeaderValue::from_str(&policy)) {
            headers.insert("ratelimit", a);
            headers.insert("ratelimit-policy", b);
        }
    }
}

pub trait RateLimiter: Send + Sync {
    /// Counts one hit for `key` under `rule` and says whether it is allowed.
    fn hit<'a>(&'a self, rule: Rule, key: &'a str) -> BoxFuture<'a, Decision>;
}

/// A sliding window per (rule, key), as tier 2's Redis script keeps one: each hit
/// allowed within the last window, held as the time it leaves the window. No more than
/// `limit` hits pass in any window-long span, so a burst cannot straddle a boundary to
/// pass twice the limit (a fixed window allowed 20 sign-in attempts within two seconds
/// under a limit of 10). A key holds at most `limit` times. Past `SWEEP_ABOVE` keys,
/// those whose hits have all left are swept, at most once a second (a sweep visits
/// every key, whatever its rule's window).
#[derive(Default)]
pub struct InProcessLimiter {
    /// Per (rule, key), when each allowed hit leaves its window (ms), oldest first.
    windows: DashMap<(&'static str, String), VecDeque<u64>>,
    last_sweep_ms: AtomicU64,
}

const SWEEP_ABOVE: usize = 50_000;

impl InProcessLimiter {
    fn hit_at(&self, rule: Rule, key: &str, now_ms: u64) -> Decision {
        let window = u64::from(rule.window_secs.max(1)) * 1000;
        // A hit leaves once it is a whole window old (Redis's script removes scores up
        // to `now - window` inclusive).
        let live = |leaves: u64| leaves > now_ms;
        if self.windows.len() > SWEEP_ABOVE && self.sweep_due(now_ms) {
            self.windows
                .retain(|_, hits| hits.back().is_some_and(|t| live(*t)));
        }
        let mut hits = self.windows.entry((rule.name, key.to_owned())).or_default();
        while hits.front().is_some_and(|t| !live(*t)) {
            hits.pop_front();
        }
        let allowed = hits.len() < rule.limit as usize;
        if allowed {
            hits.push_back(now_ms + window);
        }
        let count = u32::try_from(hits.len()).unwrap_or(u32::MAX);
        // Seconds until the oldest hit leaves, so a slot frees (a whole window when
        // none is held, as when the limit is 0).
        let reset_ms = hits.front().map_or(window, |leaves| leaves - now_ms);
        Decision {
            allowed,
            limit: rule.limit,
            remaining: rule.limit.saturating_sub(count),
            reset: reset_ms.div_ceil(1000).max(1),
            window: rule.window_secs,
        }
    }

    /// Whether a sweep may start now; claims it when so.
    fn sweep_due(&self, now_ms: u64) -> bool {
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        now_ms >= last + 1_000
            && self
                .last_sweep_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

impl RateLimiter for InProcessLimiter {
    fn hit<'a>(&'a self, rule: Rule, key: &'a str) -> BoxFuture<'a, Decision> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let d = self.hit_at(rule, key, now);
        Box::pin(async move { d })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counts_and_resets_per_key() {
        let l = InProcessLimiter::default();
        let rule = per_minute("t", 2);
        let t = 1_000_040_000; // ms, 20 s into a minute of the epoch
        assert!(l.hit_at(rule, "a", t).allowed);
        let second = l.hit_at(rule, "a", t + 500);
        assert!(second.allowed);
        assert_eq!(second.remaining, 0);
        assert_eq!(second.reset, 60, "the first hit leaves in 59.5 s");
        let third = l.hit_at(rule, "a", t + 1_000);
        assert!(!third.allowed);
        assert_eq!((third.remaining, third.reset), (0, 59));
        assert!(
            l.hit_at(rule, "b", t).allowed,
            "another key has its own budget"
        );
        // The first hit leaves a window after it was made; the second, half a second on.
        let fourth = l.hit_at(rule, "a", t + 60_000);
        assert!(
            fourth.allowed,
            "one slot is free a window after the first hit"
        );
        assert_eq!((fourth.remaining, fourth.reset), (0, 1));
        assert!(!l.hit_at(rule, "a", t + 60_100).allowed);
        assert!(l.hit_at(rule, "a", t + 60_500).allowed);
    }

    #[test]
    fn a_burst_across_a_minute_boundary_passes_the_limit_once() {
        let l = InProcessLimiter::default();
        let rule = per_minute("login", 10);
        // Ten hits in the last second of a minute, ten more in the first of the next.
        let boundary = 1_000_020_000u64;
        let mut allowed = 0;
        for i in 0..20u64 {
            let at = boundary - 1_000 + i * 100;
            if l.hit_at(rule, "ip", at).allowed {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 10);
        let refused = l.hit_at(rule, "ip", boundary + 1_000);
        assert!(!refused.allowed);
        assert_eq!(refused.reset, 58, "until the first hit is a minute old");
    }

    #[test]
    fn a_sweep_keeps_the_hits_of_longer_windows() {
        let l = InProcessLimiter::default();
        let hour = Rule {
            name: "run",
            limit: 1,
            window_secs: 3600,
        };
        let minute = per_minute("t", 1);
        let t = 5_000_000_000u64;
        assert!(l.hit_at(hour, "k", t).allowed);
        for k in 0..SWEEP_ABOVE {
            l.hit_at(minute, &k.to_string(), t);
        }
        // Two minutes on, a minute rule's hit sweeps: its keys go, the hour's stays.
        l.hit_at(minute, "later", t + 120_000);
        assert_eq!(l.windows.len(), 2);
        assert!(
            !l.hit_at(hour, "k", t + 120_000).allowed,
            "the hour's hit was swept with the minute's window"
        );
    }

    #[test]
    fn idle_keys_are_swept_past_the_bound() {
        let l = InProcessLimiter::default();
        let rule = per_minute("t", 1);
        let t = 5_000_000_000u64;
        for k in 0..=SWEEP_ABOVE {
            l.hit_at(rule, &k.to_string(), t);
        }
        l.hit_at(rule, "late", t + 30_000);
        assert_eq!(
            l.windows.len(),
            SWEEP_ABOVE + 2,
            "all still in their window"
        );
        l.hit_at(rule, "soon", t + 89_500);
        assert_eq!(
            l.windows.len(),
            2,
            "only the keys hit within the window remain"
        );
        for k in 0..SWEEP_ABOVE {
            l.hit_at(rule, &format!("b{k}"), t + 89_500);
        }
        // "late" has left its window, but the last sweep was 0.7 s ago.
        l.hit_at(rule, "again", t + 90_200);
        assert_eq!(
            l.windows.len(),
            SWEEP_ABOVE + 3,
            "no second sweep within a second"
        );
    }

    #[test]
    fn rules_follow_the_spec_defaults() {
        assert_eq!(
            rule_for(&Method::GET, "/api/end-users").map(|r| r.limit),
            Some(300)
        );
        assert_eq!(
            rule_for(&Method::POST, "/api/end-users").map(|r| r.limit),
            Some(60)
        );
        assert_eq!(
            rule_for(&Method::POST, "/api/agents/{scope}/{name}/run").map(|r| r.limit),
            Some(20)
        );
        assert_eq!(rule_for(&Method::GET, "/api/applications"), None);
    }

    #[test]
    fn overrides_apply_by_name_and_unknown_names_are_refused() {
        let limits =
            corral_config::RateLimitsSetting::Text("signup=100/60s,run=50/2m,logs=off".into())
                .parse()
                .unwrap();
        let rules = Rules::from_config(&limits).unwrap();
        assert_eq!(rules.get("sign-up").map(|r| r.limit), Some(100));
        let run = rules
            .for_route(&Method::POST, "/api/agents/{scope}/{name}/run")
            .unwrap();
        assert_eq!((run.limit, run.window_secs), (50, 120));
        assert_eq!(rules.for_route(&Method::GET, "/api/runs/{id}/logs"), None);
        assert_eq!(rules.get("login").map(|r| r.limit), Some(10));
        assert_eq!(rules.changed().len(), 3);

        let bad = corral_config::RateLimitsSetting::Text("runs=1/1s".into())
            .parse()
            .unwrap();
        let e = Rules::from_config(&bad).unwrap_err();
        assert!(
            e.contains("\"runs\"") && e.contains("end-users-write"),
            "{e}"
        );

        let off = corral_config::RateLimitsSetting::Text("off".into())
            .parse()
            .unwrap();
        let rules = Rules::from_config(&off).unwrap();
        assert!(rules.all_off());
        assert!(DEFAULTS.iter().all(|d| rules.get(d.name).is_none()));
    }
}
