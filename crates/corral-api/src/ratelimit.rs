//! Per-route, per-principal rate limits with IETF `RateLimit` / `RateLimit-Policy`
//! headers. The limiter is a trait so tier 2 can share counters through Redis; the
//! in-process implementation is a fixed window per key.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue, Method};
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

pub const LOGIN: Rule = per_minute("login", 10);
pub const SIGN_UP: Rule = per_minute("sign-up", 10);

/// The rule of an operation, by method and route template (SPEC §3 defaults).
pub fn rule_for(method: &Method, route: &str) -> Option<Rule> {
    let write = !method.is_safe();
    Some(match route {
        "/api/end-users" | "/api/end-users/{id}" if write => per_minute("end-users-write", 60),
        "/api/end-users" | "/api/end-users/{id}" => per_minute("end-users-read", 300),
        "/api/agents/{scope}/{name}/run" if write => per_minute("run", 20),
        "/api/runs/{id}/logs" => per_minute("logs", 120),
        "/api/schedules" | "/api/agents/{scope}/{name}/schedules" if *method == Method::POST => {
            per_minute("schedule-create", 10)
        }
        "/api/packages/import" | "/api/packages/import-bundle" if write => {
            per_minute("package-import", 10)
        }
        "/api/webhooks"
        | "/api/webhooks/{id}"
        | "/api/webhooks/{id}/rotate"
        | "/api/webhooks/{id}/test"
            if write =>
        {
            per_minute("webhook-write", 10)
        }
        // Each test is a real (billed) request to the provider.
        "/api/models/test"
        | "/api/models/{id}/test"
        | "/api/model-provider-credentials/test"
        | "/api/model-provider-credentials/{id}/test"
            if write =>
        {
            per_minute("model-test", 5)
        }
        "/api/model-provider-credentials/{id}/refresh-models" if write => {
            per_minute("model-discovery", 6)
        }
        _ => return None,
    })
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
}
