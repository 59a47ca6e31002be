//! The idempotency store's state machine: claim, in flight, mismatch, replay, expiry,
//! stale takeover and abandon.

use std::sync::LazyLock;

use corral_core::{AppId, OrgId};
use corral_store::idempotency::{self, Begin, Key};
use corral_store::Db;

use crate::NOW;

const TTL: i64 = 60_000;
const STALE: i64 = 30_000;

static ORG: LazyLock<OrgId> = LazyLock::new(|| OrgId::from("org"));
static APP: LazyLock<AppId> = LazyLock::new(|| AppId::from("app"));
static APP2: LazyLock<AppId> = LazyLock::new(|| AppId::from("app2"));

fn key(k: &str) -> Key<'_> {
    Key {
        org_id: &ORG,
        application_id: &APP,
        key: k,
    }
}

async fn begin(db: &Db, k: &Key<'_>, hash: &str, now: i64) -> Begin {
    let mut conn = db.conn().await.expect("conn");
    idempotency::begin(&mut conn, k, hash, now, TTL, STALE)
        .await
        .expect("begin")
}

async fn claim_in_flight_mismatch_and_replay(db: Db) {
    let k = key("k1");
    assert!(matches!(begin(&db, &k, "h1", NOW).await, Begin::Started));
    assert!(matches!(
        begin(&db, &k, "h1", NOW + 1).await,
        Begin::InFlight
    ));
    assert!(matches!(
        begin(&db, &k, "h2", NOW + 1).await,
        Begin::Mismatch
    ));

    // The same key in another application is a different key.
    let other = Key {
        application_id: &APP2,
        ..key("k1")
    };
    assert!(matches!(
        begin(&db, &other, "h2", NOW).await,
        Begin::Started
    ));

    let headers = r#"[["content-type","application/json"]]"#;
    let body = b"{\"id\":\"x\"}\x00\xff".to_vec();
    let mut conn = db.conn().await.expect("conn");
    idempotency::complete(&mut conn, &k, 201, headers, &body)
        .await
        .expect("complete");
    drop(conn);
    match begin(&db, &k, "h1", NOW + 2).await {
        Begin::Replay {
            status,
            headers: h,
            body: b,
        } => {
            assert_eq!(status, 201);
            assert_eq!(h, headers);
            assert_eq!(b, body, "body bytes are kept exactly");
        }
        other => panic!("expected Replay, got {other:?}"),
    }
    assert!(matches!(
        begin(&db, &k, "h2", NOW + 2).await,
        Begin::Mismatch
    ));
    // A finished request is replayed even after the stale-flight window.
    assert!(matches!(
        begin(&db, &k, "h1", NOW + STALE + 1).await,
        Begin::Replay { .. }
    ));
}

async fn expired_key_is_reclaimable(db: Db) {
    let k = key("k-exp");
    assert!(matches!(begin(&db, &k, "h1", NOW).await, Begin::Started));
    let mut conn = db.conn().await.expect("conn");
    idempotency::complete(&mut conn, &k, 200, "[]", b"old")
        .await
        .expect("complete");
    drop(conn);
    assert!(matches!(
        begin(&db, &k, "h1", NOW + TTL - 1).await,
        Begin::Replay { .. }
    ));
    // At expiry the key is free again, even for another body.
    assert!(matches!(
        begin(&db, &k, "h2", NOW + TTL).await,
        Begin::Started
    ));
    assert!(matches!(
        begin(&db, &k, "h2", NOW + TTL + 1).await,
        Begin::InFlight
    ));
    let mut conn = db.conn().await.expect("conn");
    assert_eq!(
        idempotency::purge_expired(&mut conn, NOW + TTL + TTL)
            .await
            .expect("purge"),
        1
    );
}

async fn stale_in_flight_is_taken_over(db: Db) {
    let k = key("k-stale");
    assert!(matches!(begin(&db, &k, "h1", NOW).await, Begin::Started));
    assert!(matches!(
        begin(&db, &k, "h1", NOW + STALE - 1).await,
        Begin::InFlight
    ));
    // The first request died; after `stale_after` a retry owns the key.
    assert!(matches!(
        begin(&db, &k, "h1", NOW + STALE + 1).await,
        Begin::Started
    ));
    // ...and the new claim is fresh, not stale itself.
    assert!(matches!(
        begin(&db, &k, "h1", NOW + STALE + 2).await,
        Begin::InFlight
    ));
}

async fn abandon_frees_the_key(db: Db) {
    let k = key("k-ab");
    assert!(matches!(begin(&db, &k, "h1", NOW).await, Begin::Started));
    let mut conn = db.conn().await.expect("conn");
    idempotency::abandon(&mut conn, &k).await.expect("abandon");
    drop(conn);
    assert!(matches!(
        begin(&db, &k, "h2", NOW + 1).await,
        Begin::Started
    ));
}

crate::db_tests!(
    claim_in_flight_mismatch_and_replay,
    expired_key_is_reclaimable,
    stale_in_flight_is_taken_over,
    abandon_frees_the_key,
);
