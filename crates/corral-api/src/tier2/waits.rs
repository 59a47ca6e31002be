//! The per-identity cap on `?wait=` long polls, counted across replicas. A crashed
//! replica's counts cannot leak for long: every take renews the counter's expiry to a
//! bit more than the longest wait, so a counter nobody touched since then is void.

use std::sync::LazyLock;

use super::{Op, Redis};

/// KEYS[1]; ARGV max, ttl ms. 1 = taken, 0 = at the cap.
const TAKE: &str = r"
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if n > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return 0
end
return 1
";
static TAKE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(TAKE));

const RELEASE: &str = r"
local n = redis.call('DECR', KEYS[1])
if n <= 0 then redis.call('DEL', KEYS[1]) end
return n
";
static RELEASE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(RELEASE));

fn key(redis: &Redis, identity: &str) -> String {
    redis.key(&format!("waits:{identity}"))
}

/// `Some(true)` taken, `Some(false)` at the cap, `None` Redis did not answer.
pub async fn take(redis: &Redis, identity: &str, max: usize, ttl_ms: u64) -> Option<bool> {
    let k = key(redis, identity);
    let script = &*TAKE_SCRIPT;
    redis
        .call(Op::Waits, |mut c| async move {
            script
                .key(&k)
                .arg(max)
                .arg(ttl_ms)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await
        .map(|n| n == 1)
}

pub async fn release(redis: &Redis, identity: &str) {
    let k = key(redis, identity);
    let script = &*RELEASE_SCRIPT;
    let _ = redis
        .call(Op::Waits, |mut c| async move {
            script.key(&k).invoke_async::<i64>(&mut c).await
        })
        .await;
}
