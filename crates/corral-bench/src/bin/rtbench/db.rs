//! Direct database access: the benchmark writes what the platform's triggers turn
//! into realtime events and webhook deliveries, on the server's own database (its
//! SQLite file, or the PostgreSQL database it was given).

use std::time::Duration;

use anyhow::{Context as _, Result};
use serde_json::json;
use sqlx::{AnyConnection, Connection as _, Executor as _, Row as _};

pub struct Db {
    pub conn: AnyConnection,
}

/// Who the benchmark's rows belong to.
pub struct Tenant {
    pub org_id: String,
    pub app_id: String,
    /// The server instance that owns the inserted running runs (a live owner: the
    /// reconciler leaves them alone).
    pub server_id: String,
}

pub fn unix_ms_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Db {
    pub async fn connect(url: &str) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let mut conn = AnyConnection::connect(url)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        if url.starts_with("sqlite:") {
            // As the server does: WAL (already the file's mode), no fsync per commit.
            conn.execute(
                "PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
            )
                .await?;
        }
        Ok(Db { conn })
    }

    /// The org and application of the (only) API key, and the server's instance id.
    pub async fn tenant(&mut self) -> Result<Tenant> {
        let row = sqlx::query("SELECT org_id, application_id FROM api_keys LIMIT 1")
            .fetch_one(&mut self.conn)
            .await
            .context("reading the API key's org and application")?;
        let (org_id, app_id): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        let conn = &mut self.conn;
        let mut server_id = None;
        // The heartbeat writes the row on its first tick, right after boot.
        for _ in 0..100 {
            server_id = sqlx::query("SELECT id FROM server_instances LIMIT 1")
                .fetch_optional(&mut *conn)
                .await?
                .map(|r| r.try_get::<String, _>(0))
                .transpose()?;
            if server_id.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Tenant {
            org_id,
            app_id,
            server_id: server_id.context("no row in server_instances after 10 s")?,
        })
    }

    /// Inserts `n` runs in status `running` in one transaction; returns their ids.
    pub async fn insert_running_runs(&mut self, t: &Tenant, n: usize) -> Result<Vec<String>> {
        let definition = json!({
            "prompt": "p",
            "output_schema": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
            "model": {"api": "openai", "model": "m", "base_url": "http://127.0.0.1:9"},
            "limits": {}
        })
        .to_string();
        let now = unix_ms_now();
        let mut ids = Vec::with_capacity(n);
        let mut tx = self.conn.begin().await?;
        for i in 0..n {
            let id = format!("run_{}", uuid::Uuid::now_v7());
            sqlx::query(
                "INSERT INTO runs (id, org_id, application_id, kind, run_number, status, version_ref, \
                   definition, timeout_secs, sink_secret, sink_expires_at, run_token_hash, created_at, \
                   started_at, server_id) \
                 VALUES ($1, $2, $3, 'inline', $4, 'running', 'draft', $5, 86400, 'rtbench-not-sealed', \
                   $6, 'x', $7, $7, $8)",
            )
            .bind(&id)
            .bind(&t.org_id)
            .bind(&t.app_id)
            .bind(i as i64 + 1)
            .bind(&definition)
            .bind(now + 86_400_000)
            .bind(now)
            .bind(&t.server_id)
            .execute(&mut *tx)
            .await
            .context("inserting a running run")?;
            ids.push(id);
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// One log row for `run` (the trigger makes it a realtime `run_log` event).
    pub async fn insert_log(&mut self, run: &str, message: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO run_logs (run_id, type, level, message, created_at) \
             VALUES ($1, 'log', 'info', $2, $3)",
        )
        .bind(run)
        .bind(message)
        .bind(unix_ms_now())
        .execute(&mut self.conn)
        .await
        .context("inserting a log row")?;
        Ok(())
    }

    /// Moves every running run of the org to `success` in one statement (one
    /// transaction); returns how many rows changed.
    pub async fn complete_all(&mut self, org: &str) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE runs SET status = 'success', completed_at = $1 \
             WHERE org_id = $2 AND status = 'running'",
        )
        .bind(unix_ms_now())
        .bind(org)
        .execute(&mut self.conn)
        .await
        .context("completing the runs")?;
        Ok(r.rows_affected())
    }

    /// `webhook_deliveries` rows by status, and the highest attempt count.
    pub async fn delivery_counts(&mut self) -> Result<(Vec<(String, i64)>, i64)> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*), MAX(attempts) FROM webhook_deliveries GROUP BY status ORDER BY status",
        )
        .fetch_all(&mut self.conn)
        .await?;
        let mut out = Vec::new();
        let mut max_attempts = 0;
        for r in rows {
            out.push((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?));
            max_attempts = max_attempts.max(r.try_get::<Option<i64>, _>(2)?.unwrap_or(0));
        }
        Ok((out, max_attempts))
    }

    /// Waits until no delivery is pending (the server records each outcome after
    /// the receiver answered), up to `limit`.
    pub async fn wait_deliveries_settled(&mut self, limit: Duration) -> Result<bool> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'",
            )
            .fetch_one(&mut self.conn)
            .await?;
            if n == 0 {
                return Ok(true);
            }
            if std::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn close(self) {
        let _ = self.conn.close().await;
    }
}

/// A PostgreSQL database created for one scenario on the server named by
/// `CORRAL_BENCH_DATABASE_URL`, dropped by [`drop_database`].
pub async fn create_database(admin_url: &str) -> Result<(String, String)> {
    sqlx::any::install_default_drivers();
    let name = format!(
        "corral_rtbench_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut admin = AnyConnection::connect(admin_url)
        .await
        .with_context(|| format!("connecting to {admin_url}"))?;
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .with_context(|| format!("CREATE DATABASE {name}"))?;
    let _ = admin.close().await;
    let mut url = reqwest::Url::parse(admin_url).context("CORRAL_BENCH_DATABASE_URL")?;
    url.set_path(&format!("/{name}"));
    Ok((name, url.to_string()))
}

pub async fn drop_database(admin_url: &str, name: &str) -> Result<()> {
    let mut admin = AnyConnection::connect(admin_url).await?;
    admin
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await?;
    let _ = admin.close().await;
    Ok(())
}
