//! Runs: lock ordering between event ingestion and status changes.

use std::time::Duration;

use corral_core::{AppId, OrgId, RunId};
use corral_store::run_logs::{self, NewLog};
use corral_store::runs::{self, Finish, ListFilter, NewRun};
use corral_store::Db;

use crate::NOW;

async fn pending_run(db: &Db) -> RunId {
    let owner = crate::user(db, "Owner").await;
    let (org_id, app_id) = crate::org(db, &owner).await;
    run_at(db, &org_id, &app_id, &owner, NOW).await
}

/// A pending inline run of `owner` in the application, created at `now`.
async fn run_at(db: &Db, org_id: &OrgId, app_id: &AppId, owner: &str, now: i64) -> RunId {
    let id = RunId::generate();
    let mut conn = db.conn().await.expect("conn");
    runs::insert(
        &mut conn,
        &NewRun {
            id: &id,
            org_id,
            application_id: app_id,
            package_id: None,
            agent_scope: None,
            agent_name: None,
            kind: "inline",
            input: None,
            version_label: None,
            version_ref: "inline",
            definition: "{}",
            model_label: None,
            model_source: None,
            proxy_label: None,
            generation: None,
            user_id: Some(owner),
            end_user_id: None,
            api_key_id: None,
            schedule_id: None,
            schedule_name: None,
            timeout_secs: 60,
            runner_kind: None,
            runner_name: None,
            server_id: None,
            sink_secret: "x",
            sink_expires_at: NOW + 60_000,
            run_token_hash: id.as_str(),
            origin: "platform",
            context_snapshot: None,
            now,
        },
    )
    .await
    .expect("insert run");
    id
}

/// An event transaction (log row, then the sequence) racing a cancel (one status
/// update). Both touch the run row and, through the realtime triggers, the org's
/// event counter; unless both take them in the same order PostgreSQL aborts one as
/// a deadlock (the cancel then answered 500). Both must succeed, the cancel after.
async fn an_event_and_a_cancel_do_not_deadlock(db: Db) {
    let id = pending_run(&db).await;
    let mut tx = db.begin().await.expect("begin");
    let (last, _) = runs::lock_progress(&mut tx, &id)
        .await
        .expect("lock")
        .expect("the run exists");
    assert_eq!(last, 0);
    run_logs::insert_log(
        &mut tx,
        &NewLog {
            run_id: &id,
            sequence: Some(1),
            log_type: "progress",
            level: "info",
            message: Some("step"),
            data: None,
            now: NOW,
        },
    )
    .await
    .expect("insert log");
    let cancel = tokio::spawn({
        let db = db.clone();
        let id = id.clone();
        async move {
            let mut conn = db.conn().await.expect("conn");
            runs::finish(
                &mut conn,
                &id,
                &Finish {
                    error: Some("Cancelled by user"),
                    ..Finish::new(runs::RunStatus::Cancelled, NOW + 1)
                },
            )
            .await
        }
    });
    // Let the cancel reach its lock wait (PostgreSQL's deadlock check runs after 1 s
    // of waiting, so the event transaction holds on past that).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !cancel.is_finished(),
        "the cancel waits for the event transaction"
    );
    assert!(runs::advance_sequence(&mut tx, &id, 0, 1)
        .await
        .expect("advance the sequence"));
    tx.commit().await.expect("commit the event");
    let won = cancel.await.expect("join").expect("the cancel succeeds");
    assert!(won, "the run was still active");
    let mut conn = db.conn().await.expect("conn");
    let (last, _) = runs::progress(&mut conn, &id).await.unwrap().unwrap();
    assert_eq!(last, 1, "the event is kept");
    let statuses = runs::statuses(&mut conn, std::slice::from_ref(&id))
        .await
        .unwrap();
    assert_eq!(statuses, vec![(id, "cancelled".to_owned())]);
}

/// On PostgreSQL run lists are read through the read pool on its own driver: every
/// page (filtered, offset, past the end, empty) holds what the `Any` pool reads, in
/// the same order, with the same total. SQLite has no read pool.
async fn the_read_pool_lists_what_the_main_pool_lists(db: Db) {
    let Some(reads) = db.reads().cloned() else {
        assert_eq!(db.backend(), corral_store::Backend::Sqlite);
        return;
    };
    let owner = crate::user(&db, "Owner").await;
    let (org_id, app_id) = crate::org(&db, &owner).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(run_at(&db, &org_id, &app_id, &owner, NOW + i * 1_000).await);
    }
    let mut conn = db.conn().await.expect("conn");
    let failed = Finish {
        result: Some(r#"{"output":{"n":1}}"#),
        error: Some("the model said \"no\""),
        error_code: Some("llm_error"),
        error_details: Some(r#"{"status":429}"#),
        token_usage: Some(r#"{"input":3,"output":4}"#),
        duration_ms: Some(1_234),
        ..Finish::new(corral_core::RunStatus::Failed, NOW + 9_000)
    };
    assert!(runs::finish(&mut conn, &ids[1], &failed)
        .await
        .expect("finish"));
    let filters = [
        ListFilter {
            limit: 10,
            ..Default::default()
        },
        ListFilter {
            limit: 2,
            offset: 1,
            ..Default::default()
        },
        ListFilter {
            limit: 2,
            offset: 10,
            ..Default::default()
        },
        ListFilter {
            limit: 0,
            ..Default::default()
        },
        ListFilter {
            limit: 10,
            status: Some("failed"),
            ..Default::default()
        },
        ListFilter {
            limit: 10,
            created_from: Some(NOW + 2_000),
            created_to: Some(NOW + 3_000),
            ..Default::default()
        },
        ListFilter {
            limit: 10,
            user_id: Some("nobody"),
            ..Default::default()
        },
    ];
    for f in &filters {
        let (main, main_total) = runs::list(&mut conn, &org_id, &app_id, f)
            .await
            .expect("list");
        let (read, read_total) = runs::list_pg(&reads, &org_id, &app_id, f)
            .await
            .expect("list_pg");
        assert_eq!(read_total, main_total, "{f:?}");
        assert_eq!(format!("{read:?}"), format!("{main:?}"), "{f:?}");
    }
    let (all, total) = runs::list_pg(&reads, &org_id, &app_id, &filters[0])
        .await
        .unwrap();
    assert_eq!(total, 5);
    let newest_first: Vec<_> = ids.iter().rev().cloned().collect();
    assert_eq!(
        all.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        newest_first
    );
    // The names come from the run's user (a scalar subquery on PostgreSQL).
    assert!(all.iter().all(|r| r.user_name.as_deref() == Some("Owner")));
    assert!(all
        .iter()
        .all(|r| r.api_key_name.is_none() && r.end_user_name.is_none()));
    assert_eq!(
        runs::list_pg(&reads, &org_id, &app_id, &filters[2])
            .await
            .unwrap()
            .1,
        5
    );
    assert_eq!(
        runs::list_pg(&reads, &org_id, &app_id, &filters[4])
            .await
            .unwrap()
            .1,
        1
    );
    assert_eq!(
        runs::list_pg(&reads, &org_id, &app_id, &filters[5])
            .await
            .unwrap()
            .1,
        2
    );
}

crate::db_tests!(
    an_event_and_a_cancel_do_not_deadlock,
    the_read_pool_lists_what_the_main_pool_lists
);
