//! An organization's outbound proxies (migration 0013). The URL is stored sealed;
//! this module never opens it. Every function takes the org id and puts it in the
//! WHERE clause. The per-agent choice lives in `application_packages.proxy_id`
//! ([`crate::app_packages`]).

use corral_core::OrgId;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow, Row};

use crate::{Result, SqlxResultExt};

#[derive(Debug, Clone)]
pub struct Proxy {
    pub id: String,
    pub org_id: OrgId,
    pub label: String,
    /// Sealed envelope of the full URL.
    pub url: String,
    /// The URL with its credentials masked.
    pub url_prefix: String,
    pub enabled: bool,
    pub is_default: bool,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str =
    "id, org_id, label, url, url_prefix, enabled, is_default, created_by, created_at, updated_at";

impl<'r> FromRow<'r, AnyRow> for Proxy {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        Ok(Proxy {
            id: row.try_get("id")?,
            org_id: row.try_get("org_id")?,
            label: row.try_get("label")?,
            url: row.try_get("url")?,
            url_prefix: row.try_get("url_prefix")?,
            enabled: row.try_get::<i64, _>("enabled")? != 0,
            is_default: row.try_get::<i64, _>("is_default")? != 0,
            created_by: row.try_get("created_by")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

pub struct NewProxy<'a> {
    pub id: &'a str,
    pub org_id: &'a OrgId,
    pub label: &'a str,
    pub url: &'a str,
    pub url_prefix: &'a str,
    pub created_by: Option<&'a str>,
    pub now: i64,
}

pub async fn insert(conn: &mut AnyConnection, p: &NewProxy<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO org_proxies (id, org_id, label, url, url_prefix, enabled, is_default, \
           created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 1, 0, $6, $7, $7)",
    )
    .bind(p.id)
    .bind(p.org_id)
    .bind(p.label)
    .bind(p.url)
    .bind(p.url_prefix)
    .bind(p.created_by)
    .bind(p.now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// The organization's proxies, oldest first.
pub async fn list(conn: &mut AnyConnection, org_id: &OrgId) -> Result<Vec<Proxy>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM org_proxies WHERE org_id = $1 ORDER BY created_at, id"
    ))
    .bind(org_id)
    .fetch_all(conn)
    .await
    .db()
}

pub async fn get(conn: &mut AnyConnection, org_id: &OrgId, id: &str) -> Result<Option<Proxy>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM org_proxies WHERE org_id = $1 AND id = $2"
    ))
    .bind(org_id)
    .bind(id)
    .fetch_optional(conn)
    .await
    .db()
}

/// The organization's default proxy, if one is flagged and enabled.
pub async fn default_of(conn: &mut AnyConnection, org_id: &OrgId) -> Result<Option<Proxy>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM org_proxies WHERE org_id = $1 AND is_default = 1 AND enabled = 1"
    ))
    .bind(org_id)
    .fetch_optional(conn)
    .await
    .db()
}

/// What an update changes; `None` keeps the current value. Disabling a proxy also
/// takes its default flag away.
pub struct Change<'a> {
    pub label: Option<&'a str>,
    pub url: Option<(&'a str, &'a str)>,
    pub enabled: Option<bool>,
    pub now: i64,
}

pub async fn update(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    id: &str,
    c: &Change<'_>,
) -> Result<bool> {
    let (url, prefix) = c.url.unzip();
    let r = sqlx::query(
        "UPDATE org_proxies SET label = COALESCE($3, label), url = COALESCE($4, url), \
           url_prefix = COALESCE($5, url_prefix), enabled = COALESCE($6, enabled), \
           is_default = CASE WHEN $6 = 0 THEN 0 ELSE is_default END, updated_at = $7 \
         WHERE org_id = $1 AND id = $2",
    )
    .bind(org_id)
    .bind(id)
    .bind(c.label)
    .bind(url)
    .bind(prefix)
    .bind(c.enabled.map(i64::from))
    .bind(c.now)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() == 1)
}

/// Makes `id` the organization's default (`None`: no custom default). Run it in a
/// transaction: the previous default is cleared first.
pub async fn set_default(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    id: Option<&str>,
    now: i64,
) -> Result<bool> {
    sqlx::query(
        "UPDATE org_proxies SET is_default = 0, updated_at = $2 WHERE org_id = $1 AND is_default = 1",
    )
    .bind(org_id)
    .bind(now)
    .execute(&mut *conn)
    .await
    .db()?;
    let Some(id) = id else {
        return Ok(true);
    };
    let r = sqlx::query(
        "UPDATE org_proxies SET is_default = 1, updated_at = $3 \
         WHERE org_id = $1 AND id = $2 AND enabled = 1",
    )
    .bind(org_id)
    .bind(id)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() == 1)
}

/// Deletes a proxy and forgets it as any agent's or schedule's choice (they fall
/// back to the organization's default). Run it in a transaction.
pub async fn delete(conn: &mut AnyConnection, org_id: &OrgId, id: &str) -> Result<bool> {
    sqlx::query(
        "UPDATE application_packages SET proxy_id = NULL WHERE org_id = $1 AND proxy_id = $2",
    )
    .bind(org_id)
    .bind(id)
    .execute(&mut *conn)
    .await
    .db()?;
    sqlx::query(
        "UPDATE schedules SET proxy_id_override = NULL WHERE org_id = $1 AND proxy_id_override = $2",
    )
    .bind(org_id)
    .bind(id)
    .execute(&mut *conn)
    .await
    .db()?;
    let r = sqlx::query("DELETE FROM org_proxies WHERE org_id = $1 AND id = $2")
        .bind(org_id)
        .bind(id)
        .execute(conn)
        .await
        .db()?;
    Ok(r.rows_affected() == 1)
}
