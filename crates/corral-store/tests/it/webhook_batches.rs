//! The delivery worker's batched writes (`webhook_batches`): bodies frozen once, records
//! kept only under a live claim, on both backends (PostgreSQL takes a one-statement
//! path, SQLite a transaction).

use corral_core::OrgId;
use corral_store::webhook_batches::{freeze_payloads, record_attempts};
use corral_store::webhooks::{self, AttemptRecord, NewWebhook};
use corral_store::Db;
use sqlx::Row;

use crate::{db_tests, org, user, TestDb, NOW};

db_tests!(bodies_freeze_once_and_records_need_the_claim);

/// An enabled endpoint for `run.success` (its secret is never opened here).
async fn webhook(db: &Db, org_id: &OrgId, id: &str) {
    let mut conn = db.conn().await.expect("conn");
    webhooks::insert(
        &mut conn,
        &NewWebhook {
            id,
            org_id,
            application_id: None,
            url: "http://127.0.0.1:9/hook",
            description: None,
            events: &["run.success".to_owned()],
            payload_mode: "full",
            enabled: true,
            secret: "sealed",
            created_by: None,
            now: NOW,
        },
    )
    .await
    .expect("insert webhook");
}

async fn delivery(db: &Db, hook: &str, org: &str, event: &str) -> i64 {
    sqlx::query(
        "INSERT INTO webhook_deliveries (webhook_id, org_id, event_id, event_type, status, \
           attempts, next_attempt_at, event_created_at, created_at, updated_at) \
         VALUES ($1, $2, $3, 'run.success', 'pending', 0, $4, $4, $4, $4) RETURNING id",
    )
    .bind(hook)
    .bind(org)
    .bind(event)
    .bind(NOW)
    .fetch_one(db.pool())
    .await
    .expect("insert delivery")
    .try_get(0)
    .expect("id")
}

fn record(id: i64, claimed_until: i64, outcome: &str) -> AttemptRecord<'_> {
    AttemptRecord {
        delivery_id: id,
        attempt: 1,
        status_code: Some(200),
        latency_ms: 3,
        error: None,
        response: Some("ok"),
        now: NOW + 10,
        outcome,
        next_attempt_at: 0,
        claimed_until,
    }
}

async fn bodies_freeze_once_and_records_need_the_claim(db: Db) {
    let postgres = db.backend() == corral_store::Backend::Postgres;
    let owner = user(&db, "Owner").await;
    let (org_id, _) = org(&db, &owner).await;
    webhook(&db, &org_id, "wh_1").await;
    let mut conn = db.conn().await.expect("conn");
    let ids = [
        delivery(&db, "wh_1", org_id.as_str(), "evt_a").await,
        delivery(&db, "wh_1", org_id.as_str(), "evt_b").await,
        delivery(&db, "wh_1", org_id.as_str(), "evt_c").await,
    ];

    // The first freeze stores every body; a second (another worker's) keeps the first.
    let first: Vec<(i64, String)> = ids.iter().map(|id| (*id, format!("body-{id}"))).collect();
    let stored = freeze_payloads(&mut conn, postgres, &first)
        .await
        .expect("freeze");
    assert_eq!(stored.len(), 3);
    let again: Vec<(i64, String)> = ids.iter().map(|id| (*id, "late".to_owned())).collect();
    let stored = freeze_payloads(&mut conn, postgres, &again)
        .await
        .expect("freeze again");
    for id in ids {
        assert_eq!(
            stored.get(&id),
            Some(&format!("body-{id}")),
            "delivery {id}"
        );
    }
    assert!(freeze_payloads(&mut conn, postgres, &[])
        .await
        .expect("empty")
        .is_empty());

    // Claim all three; then one claim lapses and is taken again by another worker.
    let claimed = webhooks::claim(&mut conn, postgres, NOW, NOW + 1000, 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 3);
    sqlx::query("UPDATE webhook_deliveries SET claimed_until = $2 WHERE id = $1")
        .bind(ids[1])
        .bind(NOW + 5000)
        .execute(&mut *conn)
        .await
        .expect("re-claim");
    let records = [
        record(ids[0], NOW + 1000, "success"),
        record(ids[1], NOW + 1000, "success"),
        record(ids[2], NOW + 1000, "failed"),
    ];
    let kept = record_attempts(&mut conn, postgres, &records)
        .await
        .expect("record");
    assert_eq!(kept, vec![true, false, true]);
    let rows = sqlx::query(
        "SELECT d.id, d.status, d.attempts, d.claimed_until, \
           (SELECT COUNT(*) FROM webhook_attempts a WHERE a.delivery_id = d.id) \
         FROM webhook_deliveries d ORDER BY d.id",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("read back");
    let got: Vec<(i64, String, i64, Option<i64>, i64)> = rows
        .iter()
        .map(|r| {
            (
                r.try_get(0).unwrap(),
                r.try_get(1).unwrap(),
                r.try_get(2).unwrap(),
                r.try_get(3).unwrap(),
                r.try_get(4).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (ids[0], "success".to_owned(), 1, None, 1),
            (ids[1], "pending".to_owned(), 0, Some(NOW + 5000), 0),
            (ids[2], "failed".to_owned(), 1, None, 1),
        ]
    );
    // A record written twice (a retried batch) is not kept the second time.
    let kept = record_attempts(&mut conn, postgres, &records[..1])
        .await
        .expect("again");
    assert_eq!(kept, vec![false]);
}

/// PostgreSQL: writing deliveries notifies `corral_webhooks` (migration 0015), once
/// per transaction however many rows, so every server's worker wakes at commit.
#[tokio::test]
async fn postgres_deliveries_notify_the_workers_once_per_transaction() {
    let t = TestDb::postgres().await;
    let (admin, name) = t.pg.clone().expect("a PostgreSQL test database");
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    let mut listener = sqlx::postgres::PgListener::connect(&format!("{base}/{name}"))
        .await
        .expect("listen connection");
    listener.listen("corral_webhooks").await.expect("LISTEN");
    let owner = user(&t.db, "Owner").await;
    let (org_id, _) = org(&t.db, &owner).await;
    webhook(&t.db, &org_id, "wh_n").await;
    let mut tx = t.db.begin().await.expect("begin");
    for event in ["evt_1", "evt_2", "evt_3"] {
        sqlx::query(
            "INSERT INTO webhook_deliveries (webhook_id, org_id, event_id, event_type, status, \
               attempts, next_attempt_at, event_created_at, created_at, updated_at) \
             VALUES ('wh_n', $1, $2, 'run.success', 'pending', 0, $3, $3, $3, $3)",
        )
        .bind(org_id.as_str())
        .bind(event)
        .bind(NOW)
        .execute(&mut *tx)
        .await
        .expect("insert delivery");
    }
    // Nothing before the commit.
    let early = tokio::time::timeout(std::time::Duration::from_millis(200), listener.recv()).await;
    assert!(early.is_err(), "notified before the commit: {early:?}");
    tx.commit().await.expect("commit");
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), listener.recv())
        .await
        .expect("no notification within 5 s")
        .expect("listener");
    assert_eq!(n.channel(), "corral_webhooks");
    let again = tokio::time::timeout(std::time::Duration::from_millis(300), listener.recv()).await;
    assert!(again.is_err(), "more than one notification: {again:?}");
    drop(listener);
    t.finish().await;
}
