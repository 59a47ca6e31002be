//! Idempotency claims and stored responses in Redis: one hash per (org, application,
//! key) with the body hash, the claim's token and, once done, the response. The same
//! semantics as the database store (`corral_store::idempotency`): a claim in flight
//! expires after the stale period, a finished one after the retention.

use corral_store::idempotency::{Begin, Key};

use std::sync::LazyLock;

use super::{Op, Redis};

/// KEYS[1]; ARGV hash, token, in-flight ttl ms.
const BEGIN: &str = r"
local cur = redis.call('HMGET', KEYS[1], 'hash', 'state')
if not cur[1] then
  redis.call('HSET', KEYS[1], 'hash', ARGV[1], 'state', 'in_flight', 'token', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'started'}
end
if cur[1] ~= ARGV[1] then return {'mismatch'} end
if cur[2] == 'in_flight' then return {'in_flight'} end
local r = redis.call('HMGET', KEYS[1], 'status', 'headers', 'body')
return {'replay', r[1] or '200', r[2] or '[]', r[3] or ''}
";
static BEGIN_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(BEGIN));

/// KEYS[1]; ARGV token, status, headers, body, ttl ms. Only the claim's owner stores.
const COMPLETE: &str = r"
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'status', ARGV[2], 'headers', ARGV[3], 'body', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
";
static COMPLETE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(COMPLETE));

/// KEYS[1]; ARGV token. Releases an unfinished claim of this owner.
const ABANDON: &str = r"
local cur = redis.call('HMGET', KEYS[1], 'token', 'state')
if cur[1] == ARGV[1] and cur[2] == 'in_flight' then redis.call('DEL', KEYS[1]) end
return 1
";
static ABANDON_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(ABANDON));

fn redis_key(redis: &Redis, k: &Key<'_>) -> String {
    redis.key(&format!(
        "idem:{}:{}:{}",
        k.org_id.as_str(),
        k.application_id.as_str(),
        k.key
    ))
}

/// Claims the key; `None` when Redis could not answer (use the database).
pub async fn begin(
    redis: &Redis,
    k: &Key<'_>,
    request_hash: &str,
    token: &str,
    stale_after_ms: i64,
) -> Option<Begin> {
    let key = redis_key(redis, k);
    let script = &*BEGIN_SCRIPT;
    let reply: Vec<Vec<u8>> = redis
        .call(Op::Idempotency, |mut c| async move {
            script
                .key(&key)
                .arg(request_hash)
                .arg(token)
                .arg(stale_after_ms)
                .invoke_async(&mut c)
                .await
        })
        .await?;
    let mut it = reply.into_iter();
    let kind = it.next().unwrap_or_default();
    Some(match kind.as_slice() {
        b"started" => Begin::Started,
        b"mismatch" => Begin::Mismatch,
        b"in_flight" => Begin::InFlight,
        _ => {
            let status = it
                .next()
                .and_then(|s| String::from_utf8(s).ok())
                .and_then(|s| s.parse().ok())
                .unwrap_or(200);
            let headers = it
                .next()
                .and_then(|s| String::from_utf8(s).ok())
                .unwrap_or_else(|| "[]".into());
            Begin::Replay {
                status,
                headers,
                body: it.next().unwrap_or_default(),
            }
        }
    })
}

/// Stores the response of the claim `token`; false when Redis could not answer.
pub async fn complete(
    redis: &Redis,
    k: &Key<'_>,
    token: &str,
    status: u16,
    headers: &str,
    body: &[u8],
    ttl_ms: i64,
) -> bool {
    let key = redis_key(redis, k);
    let script = &*COMPLETE_SCRIPT;
    redis
        .call(Op::Idempotency, |mut c| async move {
            script
                .key(&key)
                .arg(token)
                .arg(status)
                .arg(headers)
                .arg(body)
                .arg(ttl_ms)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await
        .is_some()
}

pub async fn abandon(redis: &Redis, k: &Key<'_>, token: &str) {
    let key = redis_key(redis, k);
    let script = &*ABANDON_SCRIPT;
    let _ = redis
        .call(Op::Idempotency, |mut c| async move {
            script
                .key(&key)
                .arg(token)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await;
}
