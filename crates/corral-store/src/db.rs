//! The database handle: an `Any` pool, the backend it talks to, and migrations. On
//! PostgreSQL also a small pool on its own driver for the hottest reads (run lists).

use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::pool::PoolOptions;
use sqlx::postgres::PgPool;
use sqlx::{AnyPool, Database, Executor, Postgres};

use crate::{Result, SqlxResultExt, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    /// PostgreSQL only: see [`Db::reads`].
    reads: Option<PgPool>,
}

/// A pooled connection idle for this long is pinged before it is handed out.
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

impl Db {
    /// Connects to `url` (`sqlite:…` or `postgres://…`). SQLite gets WAL, a busy
    /// timeout and foreign keys on every connection.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let mut opts: AnyPoolOptions = pool_options(max_connections).min_connections(1);
        if backend == Backend::Sqlite {
            opts = opts.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
                    )
                    .await?;
                    Ok(())
                })
            });
        }
        let pool = opts.connect(url).await.db()?;
        let reads = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(
                pool_options::<Postgres>(reads_pool_size(max_connections))
                    .min_connections(0)
                    // Opened on the first read: the URL already answered above.
                    .connect_lazy(url)
                    .db()?,
            ),
        };
        Ok(Db {
            pool,
            backend,
            reads,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// On PostgreSQL, a pool on its own driver for reads whose rows cost more to
    /// convert than to fetch: the `Any` driver turns every PostgreSQL row into an
    /// `AnyRow` (each value copied, the column list and its name index rebuilt per
    /// row), which was the largest cost of a run list (perf: ~20% of the server's CPU
    /// on `GET /api/runs`). Up to a quarter of `max_connections` (at least one, at
    /// most four) opened lazily, in addition to the main pool. `None` on SQLite.
    pub fn reads(&self) -> Option<&PgPool> {
        self.reads.as_ref()
    }

    /// Applies pending migrations of this backend's set (forward only).
    pub async fn migrate(&self) -> Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        };
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Other(sqlx::Error::Migrate(Box::new(e))))
    }

    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        self.pool.begin().await.db()
    }

    pub async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>> {
        self.pool.acquire().await.db()
    }

    /// A cheap round trip for health checks.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.db()?;
        Ok(())
    }

    /// (connections open, idle) for metrics.
    pub fn pool_usage(&self) -> (u32, usize) {
        let (reads_open, reads_idle) = self
            .reads
            .as_ref()
            .map_or((0, 0), |r| (r.size(), r.num_idle()));
        (
            self.pool.size() + reads_open,
            self.pool.num_idle() + reads_idle,
        )
    }

    pub async fn close(&self) {
        self.pool.close().await;
        if let Some(reads) = &self.reads {
            reads.close().await;
        }
    }
}

/// A pool of up to `max_connections` as both pools are set up. sqlx pings every
/// connection it hands out by default: one more round trip (to PostgreSQL, or to
/// SQLite's worker thread) per request. A connection used within the last second is
/// known to work; only one idle longer is pinged (and replaced when the ping fails).
fn pool_options<DB: Database>(max_connections: u32) -> PoolOptions<DB> {
    PoolOptions::<DB>::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IDLE_AFTER {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

/// The size of the PostgreSQL read pool beside a main pool of `max_connections`.
fn reads_pool_size(max_connections: u32) -> u32 {
    (max_connections / 4).clamp(1, 4)
}
