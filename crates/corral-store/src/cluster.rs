//! The cluster: this deployment's id, the liveness rows of server instances, and
//! named leader leases (one holder at a time, taken over once expired).

use sqlx::{AnyConnection, Row};

use crate::{Result, SqlxResultExt};

/// This deployment's id: the one stored, or `candidate` when this is the first server
/// to ask (concurrent first servers agree on whichever insert won).
pub async fn deployment_id(conn: &mut AnyConnection, candidate: &str, now: i64) -> Result<String> {
    sqlx::query(
        "INSERT INTO deployment (singleton, id, created_at) VALUES (1, $1, $2) \
         ON CONFLICT (singleton) DO NOTHING",
    )
    .bind(candidate)
    .bind(now)
    .execute(&mut *conn)
    .await
    .db()?;
    sqlx::query_scalar("SELECT id FROM deployment WHERE singleton = 1")
        .fetch_one(conn)
        .await
        .db()
}

/// Registers or refreshes this server instance's liveness row.
pub async fn instance_heartbeat(conn: &mut AnyConnection, id: &str, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO server_instances (id, started_at, heartbeat_at) VALUES ($1, $2, $2) \
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = $2",
    )
    .bind(id)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// Instances whose heartbeat is newer than `since`; older rows are deleted.
pub async fn live_instances(conn: &mut AnyConnection, since: i64) -> Result<Vec<String>> {
    sqlx::query("DELETE FROM server_instances WHERE heartbeat_at < $1")
        .bind(since)
        .execute(&mut *conn)
        .await
        .db()?;
    let rows = sqlx::query("SELECT id FROM server_instances")
        .fetch_all(conn)
        .await
        .db()?;
    rows.iter().map(|r| r.try_get(0).db()).collect()
}

pub async fn remove_instance(conn: &mut AnyConnection, id: &str) -> Result<()> {
    sqlx::query("DELETE FROM server_instances WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await
        .db()?;
    Ok(())
}

/// Takes or renews the lease `name` for `holder` until `now + ttl_ms`; true when
/// `holder` holds it afterwards. A lease held by someone else is taken over only
/// once it expired.
pub async fn acquire_lease(
    conn: &mut AnyConnection,
    name: &str,
    holder: &str,
    ttl_ms: i64,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "INSERT INTO leader_leases (name, holder, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET holder = $2, expires_at = $3 \
         WHERE leader_leases.holder = $2 OR leader_leases.expires_at < $4",
    )
    .bind(name)
    .bind(holder)
    .bind(now + ttl_ms)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() > 0)
}

pub async fn release_lease(conn: &mut AnyConnection, name: &str, holder: &str) -> Result<()> {
    sqlx::query("DELETE FROM leader_leases WHERE name = $1 AND holder = $2")
        .bind(name)
        .bind(holder)
        .execute(conn)
        .await
        .db()?;
    Ok(())
}

/// The current holder of lease `name`, if any.
pub async fn lease_holder(conn: &mut AnyConnection, name: &str) -> Result<Option<String>> {
    let row = sqlx::query("SELECT holder FROM leader_leases WHERE name = $1")
        .bind(name)
        .fetch_optional(conn)
        .await
        .db()?;
    row.map(|r| r.try_get(0).db()).transpose()
}
