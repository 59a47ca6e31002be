//! Tier 2: what replicas share through Redis (`REDIS_URL`): the rate-limit windows,
//! idempotency claims and stored responses, and the per-identity `?wait=` cap.
//!
//! Redis is an optimization of correctness across replicas, never a dependency of
//! serving: every operation has a bounded time, and when Redis fails (down, slow,
//! unreachable at boot) the caller falls back to what a single server does without
//! it (in-process limits and wait counts, idempotency in the database), with a
//! logged warning and `corral_redis_errors_total`. A short breaker keeps a dead Redis
//! from costing each request a timeout; the `ConnectionManager` reconnects by
//! itself, so service through Redis resumes without a restart.

pub mod idempotency;
pub mod limiter;
pub mod waits;

use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use corral_core::time::now_ms;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// What a Redis call was for (metric label).
#[derive(Debug, Clone, Copy)]
pub enum Op {
    RateLimit = 0,
    Idempotency = 1,
    Waits = 2,
}

const OPS: [&str; 3] = ["ratelimit", "idempotency", "waits"];

/// One Redis call may take this long before the caller falls back.
const OP_TIMEOUT: Duration = Duration::from_millis(500);
/// After a failure, calls skip Redis for this long (then one tries again).
const BREAKER_MS: i64 = 1_000;
/// At most one warning per this interval, per operation kind.
const WARN_EVERY_MS: i64 = 10_000;

pub struct Redis {
    conn: ConnectionManager,
    prefix: String,
    down_until_ms: AtomicI64,
    last_warn_ms: [AtomicI64; 3],
    errors: [AtomicU64; 3],
    up: AtomicBool,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Redis {
    /// A lazily connected client: boot never waits on Redis. `prefix` starts every
    /// key (`corral:` by default).
    pub fn new(url: &str, prefix: &str) -> anyhow::Result<Redis> {
        let client = redis::Client::open(url)
            .map_err(|e| anyhow::anyhow!("REDIS_URL is not a usable Redis URL: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(1_000)))
            .set_response_timeout(Some(OP_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
        Ok(Redis {
            conn,
            prefix: prefix.to_owned(),
            down_until_ms: AtomicI64::new(0),
            last_warn_ms: Default::default(),
            errors: Default::default(),
            up: AtomicBool::new(false),
        })
    }

    /// `<prefix><rest>`.
    pub fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// Whether the last call succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Checks the connection (boot log, `/health`).
    pub async fn ping(&self) -> bool {
        self.call(Op::RateLimit, |mut c| async move {
            redis::cmd("PING").query_async::<String>(&mut c).await
        })
        .await
        .is_some()
    }

    /// Runs `f` on the shared connection within [`OP_TIMEOUT`]. `None` means Redis
    /// could not answer (counted, logged, breaker opened): the caller falls back.
    pub async fn call<T, F, Fut>(&self, op: Op, f: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let now = now_ms();
        if now < self.down_until_ms.load(Ordering::Relaxed) {
            self.errors[op as usize].fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let err = match tokio::time::timeout(OP_TIMEOUT, f(self.conn.clone())).await {
            Ok(Ok(v)) => {
                if !self.up.swap(true, Ordering::Relaxed) {
                    tracing::info!("Redis answers: shared rate limits, idempotency and wait caps go through it");
                }
                return Some(v);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} ms", OP_TIMEOUT.as_millis()),
        };
        self.errors[op as usize].fetch_add(1, Ordering::Relaxed);
        self.up.store(false, Ordering::Relaxed);
        self.down_until_ms
            .store(now + BREAKER_MS, Ordering::Relaxed);
        let last = &self.last_warn_ms[op as usize];
        let prev = last.load(Ordering::Relaxed);
        if now - prev >= WARN_EVERY_MS
            && last
                .compare_exchange(prev, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                op = OPS[op as usize],
                error = %err,
                "Redis unavailable: falling back to this server's own state (rate limits per replica, idempotency in the database) until it answers"
            );
        }
        None
    }

    /// Prometheus lines for the metrics listener.
    pub fn render_metrics(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP corral_redis_up Whether the last Redis call succeeded.\n# TYPE corral_redis_up gauge\ncorral_redis_up {}",
            u8::from(self.is_up())
        );
        let _ = writeln!(
            out,
            "# HELP corral_redis_errors_total Redis calls that failed, timed out or were skipped while it was down (the request fell back), by use.\n# TYPE corral_redis_errors_total counter"
        );
        for (i, op) in OPS.iter().enumerate() {
            let _ = writeln!(
                out,
                "corral_redis_errors_total{{op=\"{op}\"}} {}",
                self.errors[i].load(Ordering::Relaxed)
            );
        }
    }

    pub fn errors(&self, op: Op) -> u64 {
        self.errors[op as usize].load(Ordering::Relaxed)
    }
}
