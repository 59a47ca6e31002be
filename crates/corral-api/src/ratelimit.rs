//! Per-route, per-principal rate limits with IETF `RateLimit` / `RateLimit-Policy`
//! headers. The limiter is a trait so tier 2 can share counters through Redis; the
//! in-process implementation is a fixed window per key.

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

/// Fixed windows aligned on the epoch, one counter per (rule, key).
#[derive(Default)]
pub struct InProcessLimiter {
    windows: DashMap<(&'static str, String), (u64, u32)>,
}

const SWEEP_ABOVE: usize = 50_000;

impl InProcessLimiter {
    fn hit_at(&self, rule: Rule, key: &str, now_secs: u64) -> Decision {
        let window = u64::from(rule.window_secs.max(1));
        let start = now_secs - now_secs % window;
        if self.windows.len() > SWEEP_ABOVE {
            self.windows.retain(|_, (s, _)| *s + window > now_secs);
        }
        let mut entry = self
            .windows
            .entry((rule.name, key.to_owned()))
            .or_insert((start, 0));
        if entry.0 != start {
            *entry = (start, 0);
        }
        let allowed = entry.1 < rule.limit;
        if allowed {
            entry.1 += 1;
        }
        Decision {
            allowed,
            limit: rule.limit,
            remaining: rule.limit.saturating_sub(entry.1),
            reset: (start + window).saturating_sub(now_secs).max(1),
            window: rule.window_secs,
        }
    }
}

impl RateLimiter for InProcessLimiter {
    fn hit<'a>(&'a self, rule: Rule, key: &'a str) -> BoxFuture<'a, Decision> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
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
        let t = 1_000_040; // 20 s into a minute window
        assert!(l.hit_at(rule, "a", t).allowed);
        let second = l.hit_at(rule, "a", t);
        assert!(second.allowed);
        assert_eq!(second.remaining, 0);
        let third = l.hit_at(rule, "a", t + 1);
        assert!(!third.allowed);
        assert_eq!(third.reset, 60 - 21);
        assert!(
            l.hit_at(rule, "b", t).allowed,
            "another key has its own budget"
        );
        assert!(l.hit_at(rule, "a", t + 60).allowed, "next window");
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
