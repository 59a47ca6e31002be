//! Rate limits shared by every replica: one sliding window per (rule, principal) in a
//! Redis sorted set, checked and counted atomically by a script on Redis's clock (so
//! replicas with skewed clocks agree). When Redis cannot answer, this server's
//! in-process windows decide: the limit then holds per replica, not in total.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::{Op, Redis};
use crate::ratelimit::{Decision, InProcessLimiter, RateLimiter, Rule};

/// KEYS[1] the window; ARGV window ms, limit, a unique member.
/// Returns {allowed, count, seconds until the oldest hit leaves the window}.
const SLIDING_WINDOW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
local allowed = 0
if n < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  n = n + 1
  allowed = 1
end
local reset = window
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if oldest[2] then reset = tonumber(oldest[2]) + window - now end
redis.call('PEXPIRE', KEYS[1], window)
return {allowed, n, math.ceil(reset / 1000)}
";

pub struct RedisLimiter {
    redis: Arc<Redis>,
    script: redis::Script,
    fallback: InProcessLimiter,
}

impl RedisLimiter {
    pub fn new(redis: Arc<Redis>) -> RedisLimiter {
        RedisLimiter {
            redis,
            script: redis::Script::new(SLIDING_WINDOW),
            fallback: InProcessLimiter::default(),
        }
    }
}

impl RateLimiter for RedisLimiter {
    fn hit<'a>(&'a self, rule: Rule, key: &'a str) -> BoxFuture<'a, Decision> {
        Box::pin(async move {
            let redis_key = self.redis.key(&format!("rl:{}:{key}", rule.name));
            let window_ms = u64::from(rule.window_secs.max(1)) * 1000;
            let member = uuid::Uuid::new_v4().simple().to_string();
            let script = &self.script;
            let answer = self
                .redis
                .call(Op::RateLimit, |mut c| async move {
                    script
                        .key(&redis_key)
                        .arg(window_ms)
                        .arg(rule.limit)
                        .arg(&member)
                        .invoke_async::<(i64, i64, i64)>(&mut c)
                        .await
                })
                .await;
            match answer {
                Some((allowed, count, reset)) => Decision {
                    allowed: allowed == 1,
                    limit: rule.limit,
                    remaining: rule
                        .limit
                        .saturating_sub(u32::try_from(count).unwrap_or(u32::MAX)),
                    reset: u64::try_from(reset).unwrap_or(1).max(1),
                    window: rule.window_secs,
                },
                None => self.fallback.hit(rule, key).await,
            }
        })
    }
}
