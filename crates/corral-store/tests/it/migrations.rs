//! Migrations: they apply on a fresh database and running them again is a no-op.

use corral_store::Db;

async fn migrations_apply_and_are_idempotent(db: Db) {
    // The harness already migrated once; twice more must neither fail nor re-apply.
    db.migrate().await.expect("second migrate");
    db.migrate().await.expect("third migrate");
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(db.pool())
        .await
        .expect("count migrations");
    let files = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../migrations/sqlite"
    ))
    .expect("migrations dir")
    .count();
    assert_eq!(applied, i64::try_from(files).expect("count fits"));
    for table in [
        "users",
        "sessions",
        "organizations",
        "org_members",
        "invitations",
        "applications",
        "end_users",
        "api_keys",
        "idempotency_keys",
    ] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(db.pool())
            .await
            .unwrap_or_else(|e| panic!("table {table} missing: {e}"));
        assert_eq!(n, 0, "{table} starts empty");
    }
}

crate::db_tests!(migrations_apply_and_are_idempotent);
