//! The repository test suite: one integration-test binary that runs every repository
//! test against a fresh SQLite file and a fresh PostgreSQL database, so the portable
//! SQL is proven on both backends. This file owns the per-test database harness, the
//! `db_tests!` macro and small fixtures; each module owns one repository's tests.
//!
//! The PostgreSQL server comes from `CORRAL_TEST_DATABASE_URL` (an admin URL, see
//! `scripts/test-services.sh`). corral-store cannot use corral-testkit (that would
//! pull a second copy of this crate), hence the small harness here.

mod api_keys;
mod end_users;
mod idempotency;
mod memory;
mod migrations;
mod orgs;
mod runs;
mod sessions;
mod tenancy;
mod users;
mod webhook_batches;

use corral_core::{AppId, OrgId};
use corral_store::{applications, orgs as org_repo, users as user_repo, Db};
use sqlx::Connection;

/// Expands each `async fn name(db: Db)` of the calling module into two tests,
/// `sqlite::name` and `postgres::name`, each with its own fresh, migrated database.
macro_rules! db_tests {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let t = $crate::TestDb::sqlite().await;
                    super::$name(t.db.clone()).await;
                    t.finish().await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let t = $crate::TestDb::postgres().await;
                    super::$name(t.db.clone()).await;
                    t.finish().await;
                }
            )+
        }
    };
}
pub(crate) use db_tests;

/// A migrated database that lives as long as this value: the SQLite file's temp dir,
/// or the PostgreSQL database (dropped by [`TestDb::finish`] after a passing test; a
/// failing test leaves it for inspection, and `scripts/test-services.sh` sweeps
/// `corral_t_%` databases).
pub struct TestDb {
    pub db: Db,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}?mode=rwc", dir.path().join("corral.db").display());
        let db = Db::connect(&url, 4).await.expect("connect sqlite");
        db.migrate().await.expect("migrate sqlite");
        TestDb {
            db,
            _dir: Some(dir),
            pg: None,
        }
    }

    pub async fn postgres() -> TestDb {
        let admin = postgres_admin_url();
        let name = format!("corral_t_store_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot reach the test PostgreSQL at {admin} ({e}); \
                     run `eval \"$(scripts/test-services.sh)\"` first"
                )
            });
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        conn.close().await.expect("close admin connection");
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let db = Db::connect(&format!("{base}/{name}"), 4)
            .await
            .expect("connect postgres");
        db.migrate().await.expect("migrate postgres");
        TestDb {
            db,
            _dir: None,
            pg: Some((admin, name)),
        }
    }

    /// Closes the pool and drops the PostgreSQL database, so a full run does not
    /// leave hundreds of databases behind. Best effort: a background process (e.g.
    /// autovacuum) still attached to the database makes the drop fail, and cleanup
    /// must not fail a test that passed; `scripts/test-services.sh` sweeps leftovers.
    pub async fn finish(self) {
        self.db.close().await;
        if let Some((admin, name)) = &self.pg {
            if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                    .execute(&mut conn)
                    .await;
            }
        }
    }
}

fn postgres_admin_url() -> String {
    std::env::var("CORRAL_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://corral:corral@127.0.0.1:5432/postgres".to_owned())
}

/// A fixed clock for tests: repository functions take `now`, so tests never sleep.
pub const NOW: i64 = 1_700_000_000_000;

/// Creates a user with a unique email and returns its id.
pub async fn user(db: &Db, name: &str) -> String {
    let id = corral_core::ids::uuid();
    let email = format!("{}-{id}@example.com", name.to_lowercase());
    let mut conn = db.conn().await.expect("conn");
    user_repo::insert(
        &mut conn,
        &user_repo::NewUser {
            id: &id,
            email: &email,
            name,
            password_hash: "x",
            now: NOW,
        },
    )
    .await
    .expect("insert user");
    id
}

/// Creates an org owned by `owner` (with its default application) in a transaction,
/// as the API does, and returns `(org_id, default_app_id)`.
pub async fn org(db: &Db, owner: &str) -> (OrgId, AppId) {
    let org_id = OrgId::generate();
    let app_id = AppId::generate();
    let slug = format!("org-{org_id}");
    let mut tx = db.begin().await.expect("begin");
    org_repo::insert_with_owner(
        &mut tx,
        &org_repo::NewOrg {
            id: &org_id,
            name: "Org",
            slug: &slug,
            api_version: "2025-01-01",
            owner_id: owner,
            default_app_id: &app_id,
            now: NOW,
        },
    )
    .await
    .expect("insert org");
    tx.commit().await.expect("commit");
    (org_id, app_id)
}

/// Creates a non-default application in `org_id` and returns its id.
pub async fn app(db: &Db, org_id: &OrgId, name: &str) -> AppId {
    let id = AppId::generate();
    let mut conn = db.conn().await.expect("conn");
    applications::insert(
        &mut conn,
        &applications::NewApplication {
            id: &id,
            org_id,
            name,
            is_default: false,
            settings: "{}",
            created_by: None,
            now: NOW,
        },
    )
    .await
    .expect("insert application");
    id
}

/// Number of rows in `table` matching `column = value` (table and column are test
/// literals, never input).
pub async fn count(db: &Db, table: &str, column: &str, value: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} WHERE {column} = $1"))
        .bind(value)
        .fetch_one(db.pool())
        .await
        .expect("count")
}
