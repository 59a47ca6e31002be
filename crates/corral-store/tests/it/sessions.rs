//! Sessions: expired sessions are invisible and refresh slides the expiry.

use corral_store::{sessions, Db};

use crate::NOW;

async fn lookup_ignores_expired_and_refresh_moves_expiry(db: Db) {
    let user = crate::user(&db, "Sam").await;
    let mut conn = db.conn().await.expect("conn");
    sessions::insert(
        &mut conn,
        &sessions::NewSession {
            id: "s1",
            token_hash: "hash-1",
            user_id: &user,
            expires_at: NOW + 1_000,
            ip: Some("127.0.0.1"),
            user_agent: None,
            now: NOW,
        },
    )
    .await
    .expect("insert session");

    let s = sessions::lookup(&mut conn, "hash-1", NOW + 999)
        .await
        .expect("lookup")
        .expect("live session");
    assert_eq!(s.session_id, "s1");
    assert_eq!(s.user_id, user);
    assert_eq!(s.expires_at, NOW + 1_000);
    assert!(sessions::lookup(&mut conn, "other", NOW)
        .await
        .expect("lookup")
        .is_none());
    // At the expiry instant the session is already gone.
    assert!(sessions::lookup(&mut conn, "hash-1", NOW + 1_000)
        .await
        .expect("lookup")
        .is_none());

    sessions::refresh(&mut conn, "s1", NOW + 10_000, NOW + 500)
        .await
        .expect("refresh");
    let s = sessions::lookup(&mut conn, "hash-1", NOW + 5_000)
        .await
        .expect("lookup")
        .expect("refreshed session is live");
    assert_eq!(s.expires_at, NOW + 10_000);
    assert_eq!(s.refreshed_at, NOW + 500);
    assert_eq!(s.created_at, NOW);
    assert!(sessions::lookup(&mut conn, "hash-1", NOW + 10_000)
        .await
        .expect("lookup")
        .is_none());

    assert_eq!(
        sessions::purge_expired(&mut conn, NOW + 10_000)
            .await
            .expect("purge"),
        1
    );
    assert!(sessions::delete_by_hash(&mut conn, "hash-1")
        .await
        .expect("delete")
        .is_none());
}

crate::db_tests!(lookup_ignores_expired_and_refresh_moves_expiry);
