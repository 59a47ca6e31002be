//! Tier 2 (`REDIS_URL`) against a real redis-server: one rate-limit window and one
//! set of idempotency keys shared by two replicas on one PostgreSQL database, and a
//! Redis outage during which the server keeps serving and after which it goes back
//! to Redis by itself.

use std::time::{Duration, Instant};

use corral_api::config::{Config, RateLimitsSetting, Secret};
use corral_api::tier2::Op;
use corral_testkit::services::{redis_url, unique_prefix, PrivateRedis};
use corral_testkit::{Backend, TestApp};
use reqwest::Method;
use serde_json::json;

fn tier2(url: String, prefix: String, limits: &'static str) -> impl Fn(&mut Config) + Clone {
    move |c: &mut Config| {
        c.redis_url = Some(Secret::new(url.clone()));
        c.redis_prefix = prefix.clone();
        c.rate_limits = Some(RateLimitsSetting::Text(limits.into()));
    }
}

/// Two servers on one database and one Redis (`database_url` of the first).
async fn replicas(tweak: impl Fn(&mut Config) + Clone) -> (TestApp, TestApp) {
    let t = tweak.clone();
    let a = TestApp::spawn_with(Backend::Postgres, move |c| t(c)).await;
    let db = a.state.config.database_url.clone();
    let b = TestApp::spawn_with(Backend::Postgres, move |c| {
        tweak(c);
        c.database_url = db;
    })
    .await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_is_one_window_across_replicas() {
    let (a, b) = replicas(tier2(
        redis_url(),
        unique_prefix(),
        "end-users-write=10/60s",
    ))
    .await;
    let alice = a.user_with_org("Alice").await;
    let (_, key) = alice.api_key(None).await;
    let (ca, cb) = (a.client().bearer(&key), b.client().bearer(&key));
    let (mut created, mut limited) = (0, 0);
    for i in 0..16 {
        let c = if i % 2 == 0 { &ca } else { &cb };
        let r = c
            .send(Method::POST, "/api/end-users", Some(json!({})), &[])
            .await;
        assert_eq!(r.header("ratelimit-policy"), Some("10;w=60"), "{i}");
        let rl = r.header("ratelimit").unwrap().to_owned();
        match r.status {
            201 => {
                created += 1;
                assert!(
                    rl.starts_with(&format!("limit=10, remaining={}, reset=", 10 - created)),
                    "hit {i}: {rl}"
                );
            }
            429 => {
                limited += 1;
                assert_eq!(r.code(), "rate_limited");
                let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
                assert!((1..=60).contains(&retry), "{retry}");
            }
            s => panic!("hit {i}: {s} {}", r.text),
        }
    }
    assert_eq!(
        (created, limited),
        (10, 6),
        "the sum over both replicas is held to the limit"
    );
    assert_eq!(a.scalar("SELECT COUNT(*) FROM end_users").await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_request_replays_on_another_replica() {
    let (a, b) = replicas(tier2(
        redis_url(),
        unique_prefix(),
        "end-users-write=100/60s",
    ))
    .await;
    let alice = a.user_with_org("Alice").await;
    let (_, key) = alice.api_key(None).await;
    let (ca, cb) = (a.client().bearer(&key), b.client().bearer(&key));
    let body = json!({"name": "Ada"});
    let first = ca
        .send(
            Method::POST,
            "/api/end-users",
            Some(body.clone()),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    let again = cb
        .send(
            Method::POST,
            "/api/end-users",
            Some(body),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, first.body);
    let other = cb
        .send(
            Method::POST,
            "/api/end-users",
            Some(json!({"name": "Grace"})),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(other.status, 422);
    assert_eq!(other.code(), "idempotency_conflict");
    assert_eq!(a.scalar("SELECT COUNT(*) FROM end_users").await, 1);
    assert_eq!(
        a.scalar("SELECT COUNT(*) FROM idempotency_keys").await,
        0,
        "the claim lives in Redis, not in the database"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_keeps_serving_and_heals_by_itself() {
    let mut redis = PrivateRedis::start();
    let app = TestApp::spawn_with(
        Backend::Postgres,
        tier2(redis.url(), unique_prefix(), "end-users-write=1000/60s"),
    )
    .await;
    let r2 = app.state.redis.clone().expect("tier 2");
    let alice = app.user_with_org("Alice").await;
    let (_, key) = alice.api_key(None).await;
    let c = app.client().bearer(&key);
    let post = |k: &'static str| {
        let c = c.clone();
        async move {
            c.send(
                Method::POST,
                "/api/end-users",
                Some(json!({})),
                &[("idempotency-key", k)],
            )
            .await
        }
    };
    let r = post("before").await;
    assert_eq!(r.status, 201);
    assert!(r.header("ratelimit").unwrap().contains("remaining=999"));
    assert!(r2.is_up());

    redis.kill();
    for k in ["down-1", "down-2", "down-3"] {
        let r = post(k).await;
        assert_eq!(r.status, 201, "{k}: {}", r.text);
        assert!(
            r.header("ratelimit").is_some(),
            "limits still apply, per replica"
        );
    }
    // Idempotency fell back to the database, where a retry finds its response.
    let replay = post("down-1").await;
    assert_eq!(replay.status, 201);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(app.scalar("SELECT COUNT(*) FROM idempotency_keys").await, 3);
    assert!(!r2.is_up());
    assert!(r2.errors(Op::RateLimit) > 0 && r2.errors(Op::Idempotency) > 0);

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    loop {
        n += 1;
        let r = c
            .send(Method::POST, "/api/end-users", Some(json!({})), &[])
            .await;
        assert_eq!(r.status, 201);
        if r2.is_up() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Redis was not used again after {n} requests"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Back in Redis: a new key leaves no row, and the (fresh) window counts again.
    let r = post("after").await;
    assert_eq!(r.status, 201);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM idempotency_keys").await, 3);
    let r = post("after").await;
    assert_eq!(r.header("idempotent-replayed"), Some("true"));
}

/// The per-identity `?wait=` cap is one count across replicas (two clients of one
/// Redis here), and a released slot is free again on every replica.
#[tokio::test]
async fn the_wait_cap_is_counted_across_replicas() {
    use corral_api::tier2::{waits, Redis};
    let prefix = unique_prefix();
    let a = Redis::new(&redis_url(), &prefix).unwrap();
    let b = Redis::new(&redis_url(), &prefix).unwrap();
    assert_eq!(waits::take(&a, "user-1", 2, 60_000).await, Some(true));
    assert_eq!(waits::take(&b, "user-1", 2, 60_000).await, Some(true));
    assert_eq!(
        waits::take(&a, "user-1", 2, 60_000).await,
        Some(false),
        "at the cap"
    );
    assert_eq!(
        waits::take(&b, "user-2", 2, 60_000).await,
        Some(true),
        "per identity"
    );
    waits::release(&a, "user-1").await;
    assert_eq!(waits::take(&b, "user-1", 2, 60_000).await, Some(true));

    // A Redis that does not answer is `None`: the caller counts locally instead.
    let dead = PrivateRedis::start();
    let url = dead.url();
    drop(dead);
    let gone = Redis::new(&url, &prefix).unwrap();
    assert_eq!(waits::take(&gone, "user-1", 2, 60_000).await, None);
    assert_eq!(gone.errors(Op::Waits), 1);
}
