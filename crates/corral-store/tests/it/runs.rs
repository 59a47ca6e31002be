//! Runs: lock ordering between event ingestion and status changes.

use std::time::Duration;

use corral_core::RunId;
use corral_store::run_logs::{self, NewLog};
use corral_store::runs::{self, Finish, NewRun};
use corral_store::Db;

use crate::NOW;

async fn pending_run(db: &Db) -> RunId {
    let owner = crate::user(db, "Owner").await;
    let (org_id, app_id) = crate::org(db, &owner).await;
    let id = RunId::generate();
    let mut conn = db.conn().await.expect("conn");
    runs::insert(
        &mut conn,
        &NewRun {
            id: &id,
            org_id: &org_id,
            application_id: &app_id,
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
            user_id: Some(&owner),
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
            now: NOW,
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

crate::db_tests!(an_event_and_a_cancel_do_not_deadlock);
