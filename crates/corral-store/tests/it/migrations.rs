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
    // Each backend has its own set (SQLite has tables PostgreSQL does without).
    let files = std::fs::read_dir(format!(
        "{}/../../migrations/{}",
        env!("CARGO_MANIFEST_DIR"),
        db.backend().name()
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

/// Migration 0016 seeds a runs-list version for every application that already has
/// runs. Without one, deleting a run there (or renaming a user) would not move the
/// version off 0, and a page kept at 0 would be served stale.
#[tokio::test]
async fn the_list_versions_start_from_the_runs_already_stored() {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
    let dir = tempfile::tempdir().unwrap();
    let opts = SqliteConnectOptions::new()
        .filename(dir.path().join("corral.db"))
        .create_if_missing(true)
        // A run without its organization and application rows.
        .foreign_keys(false);
    let pool = SqlitePool::connect_with(opts).await.unwrap();
    let set = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../migrations/sqlite"
    ));
    let mut before = sqlx::migrate::Migrator::new(set).await.unwrap();
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < 16)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before.run(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO runs (id, org_id, application_id, kind, run_number, status, version_ref, \
           definition, timeout_secs, sink_secret, sink_expires_at, run_token_hash, created_at) \
         VALUES ('run_1', 'org', 'app_1', 'inline', 1, 'failed', 'draft', '{}', 300, 's', 0, \
           'h', 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::migrate::Migrator::new(set)
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    let version = || {
        sqlx::query_scalar::<_, i64>(
            "SELECT version FROM run_list_versions WHERE application_id = 'app_1'",
        )
        .fetch_one(&pool)
    };
    assert_eq!(version().await.unwrap(), 1);
    sqlx::query("DELETE FROM runs")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(version().await.unwrap(), 2);
}
