//! Integration governance per application: the `block_user_connections` setting, the
//! org default connection of an integration, and pins of a connection to an
//! (agent, integration) — an admin pin for every member, or a member's own.

use corral_core::AppId;
use sqlx::{AnyConnection, FromRow, Row};

use crate::{Result, SqlxResultExt};

/// The owner of an admin pin (it applies to every member).
pub const ADMIN: &str = "admin";

#[derive(Debug, Clone)]
pub struct OrgDefault {
    pub package_id: String,
    pub connection_id: String,
    /// The auth of the chosen connection (joined, not a key).
    pub auth_key: String,
    pub enforce: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl<'r> FromRow<'r, sqlx::any::AnyRow> for OrgDefault {
    fn from_row(row: &'r sqlx::any::AnyRow) -> std::result::Result<Self, sqlx::Error> {
        Ok(OrgDefault {
            package_id: row.try_get("package_id")?,
            connection_id: row.try_get("connection_id")?,
            auth_key: row.try_get("auth_key")?,
            enforce: row.try_get::<i64, _>("enforce")? != 0,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Pin {
    pub agent_id: String,
    pub package_id: String,
    pub owner_type: String,
    pub owner_id: String,
    pub connection_id: String,
    pub auth_key: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl<'r> FromRow<'r, sqlx::any::AnyRow> for Pin {
    fn from_row(row: &'r sqlx::any::AnyRow) -> std::result::Result<Self, sqlx::Error> {
        Ok(Pin {
            agent_id: row.try_get("agent_id")?,
            package_id: row.try_get("package_id")?,
            owner_type: row.try_get("owner_type")?,
            owner_id: row.try_get("owner_id")?,
            connection_id: row.try_get("connection_id")?,
            auth_key: row.try_get("auth_key")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

// ---- settings -------------------------------------------------------------------

pub async fn block_user_connections(
    conn: &mut AnyConnection,
    app: &AppId,
    package_id: &str,
) -> Result<bool> {
    let v: Option<i64> = sqlx::query_scalar(
        "SELECT block_user_connections FROM integration_settings \
         WHERE application_id = $1 AND package_id = $2",
    )
    .bind(app)
    .bind(package_id)
    .fetch_optional(conn)
    .await
    .db()?;
    Ok(v.unwrap_or(0) != 0)
}

pub async fn set_block_user_connections(
    conn: &mut AnyConnection,
    app: &AppId,
    package_id: &str,
    block: bool,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO integration_settings (application_id, package_id, block_user_connections, updated_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (application_id, package_id) \
         DO UPDATE SET block_user_connections = excluded.block_user_connections, updated_at = excluded.updated_at",
    )
    .bind(app)
    .bind(package_id)
    .bind(i64::from(block))
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// Turns an installed integration on or off in its application (non-destructive:
/// the row and its settings stay). False when it is not installed.
pub async fn set_enabled(
    conn: &mut AnyConnection,
    app: &AppId,
    package_id: &str,
    enabled: bool,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE application_packages SET enabled = $3, updated_at = $4 \
         WHERE application_id = $1 AND package_id = $2",
    )
    .bind(app)
    .bind(package_id)
    .bind(i64::from(enabled))
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() > 0)
}

// ---- org default ----------------------------------------------------------------

pub async fn org_default(
    conn: &mut AnyConnection,
    app: &AppId,
    package_id: &str,
) -> Result<Option<OrgDefault>> {
    sqlx::query_as(
        "SELECT d.package_id, d.connection_id, c.auth_key, d.enforce, d.created_at, d.updated_at \
         FROM integration_defaults d JOIN integration_connections c ON c.id = d.connection_id \
         WHERE d.application_id = $1 AND d.package_id = $2",
    )
    .bind(app)
    .bind(package_id)
    .fetch_optional(conn)
    .await
    .db()
}

pub async fn set_org_default(
    conn: &mut AnyConnection,
    app: &AppId,
    package_id: &str,
    connection_id: &str,
    enforce: bool,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO integration_defaults (application_id, package_id, connection_id, enforce, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (application_id, package_id) \
         DO UPDATE SET connection_id = excluded.connection_id, enforce = excluded.enforce, updated_at = excluded.updated_at",
    )
    .bind(app)
    .bind(package_id)
    .bind(connection_id)
    .bind(i64::from(enforce))
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

pub async fn delete_org_default(
    conn: &mut AnyConnection,
    app: &AppId,
    package_id: &str,
) -> Result<()> {
    sqlx::query("DELETE FROM integration_defaults WHERE application_id = $1 AND package_id = $2")
        .bind(app)
        .bind(package_id)
        .execute(conn)
        .await
        .db()?;
    Ok(())
}

// ---- pins -----------------------------------------------------------------------

const PIN_SELECT: &str =
    "SELECT p.agent_id, p.package_id, p.owner_type, p.owner_id, p.connection_id, \
     c.auth_key, p.created_at, p.updated_at \
     FROM integration_pins p JOIN integration_connections c ON c.id = p.connection_id";

/// The pins of an application, narrowed by integration, agent and owner.
pub async fn pins(
    conn: &mut AnyConnection,
    app: &AppId,
    package_id: Option<&str>,
    agent_id: Option<&str>,
    owner: Option<(&str, &str)>,
) -> Result<Vec<Pin>> {
    sqlx::query_as(&format!(
        "{PIN_SELECT} WHERE p.application_id = $1 AND ($2 IS NULL OR p.package_id = $2) \
         AND ($3 IS NULL OR p.agent_id = $3) AND ($4 IS NULL OR (p.owner_type = $4 AND p.owner_id = $5)) \
         ORDER BY p.agent_id, p.package_id"
    ))
    .bind(app)
    .bind(package_id)
    .bind(agent_id)
    .bind(owner.map(|o| o.0))
    .bind(owner.map(|o| o.1).unwrap_or(""))
    .fetch_all(conn)
    .await
    .db()
}

pub struct PinKey<'a> {
    pub app: &'a AppId,
    pub agent_id: &'a str,
    pub package_id: &'a str,
    pub owner_type: &'a str,
    pub owner_id: &'a str,
}

pub async fn pin(conn: &mut AnyConnection, k: &PinKey<'_>) -> Result<Option<Pin>> {
    sqlx::query_as(&format!(
        "{PIN_SELECT} WHERE p.application_id = $1 AND p.agent_id = $2 AND p.package_id = $3 \
         AND p.owner_type = $4 AND p.owner_id = $5"
    ))
    .bind(k.app)
    .bind(k.agent_id)
    .bind(k.package_id)
    .bind(k.owner_type)
    .bind(k.owner_id)
    .fetch_optional(conn)
    .await
    .db()
}

pub async fn set_pin(
    conn: &mut AnyConnection,
    k: &PinKey<'_>,
    connection_id: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO integration_pins (application_id, agent_id, package_id, owner_type, owner_id, \
           connection_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
         ON CONFLICT (application_id, agent_id, package_id, owner_type, owner_id) \
         DO UPDATE SET connection_id = excluded.connection_id, updated_at = excluded.updated_at",
    )
    .bind(k.app)
    .bind(k.agent_id)
    .bind(k.package_id)
    .bind(k.owner_type)
    .bind(k.owner_id)
    .bind(connection_id)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

pub async fn delete_pin(conn: &mut AnyConnection, k: &PinKey<'_>) -> Result<()> {
    sqlx::query(
        "DELETE FROM integration_pins WHERE application_id = $1 AND agent_id = $2 AND package_id = $3 \
         AND owner_type = $4 AND owner_id = $5",
    )
    .bind(k.app)
    .bind(k.agent_id)
    .bind(k.package_id)
    .bind(k.owner_type)
    .bind(k.owner_id)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}
