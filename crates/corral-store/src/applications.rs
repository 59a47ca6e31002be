//! Applications: workspaces inside an org. Every org has exactly one default.

use corral_core::{AppId, OrgId};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow, Row};

use crate::{Result, SqlxResultExt};

#[derive(Debug, Clone)]
pub struct Application {
    pub id: AppId,
    pub org_id: OrgId,
    pub name: String,
    pub is_default: bool,
    pub settings: String,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl<'r> FromRow<'r, AnyRow> for Application {
    fn from_row(row: &'r AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Application {
            id: row.try_get("id")?,
            org_id: row.try_get("org_id")?,
            name: row.try_get("name")?,
            is_default: row.try_get::<i64, _>("is_default")? != 0,
            settings: row.try_get("settings")?,
            created_by: row.try_get("created_by")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

const COLS: &str = "id, org_id, name, is_default, settings, created_by, created_at, updated_at";

pub struct NewApplication<'a> {
    pub id: &'a AppId,
    pub org_id: &'a OrgId,
    pub name: &'a str,
    pub is_default: bool,
    pub settings: &'a str,
    pub created_by: Option<&'a str>,
    pub now: i64,
}

pub async fn insert(conn: &mut AnyConnection, a: &NewApplication<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO applications (id, org_id, name, is_default, settings, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(a.id)
    .bind(a.org_id)
    .bind(a.name)
    .bind(i64::from(a.is_default))
    .bind(a.settings)
    .bind(a.created_by)
    .bind(a.now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

pub async fn list(conn: &mut AnyConnection, org_id: &OrgId) -> Result<Vec<Application>> {
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM applications WHERE org_id = $1 ORDER BY is_default DESC, created_at, id"
    ))
    .bind(org_id)
    .fetch_all(conn)
    .await
    .db()
}

pub async fn get(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    id: &AppId,
) -> Result<Option<Application>> {
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM applications WHERE org_id = $1 AND id = $2"
    ))
    .bind(org_id)
    .bind(id)
    .fetch_optional(conn)
    .await
    .db()
}

pub async fn default_for(conn: &mut AnyConnection, org_id: &OrgId) -> Result<Option<Application>> {
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM applications WHERE org_id = $1 AND is_default = 1"
    ))
    .bind(org_id)
    .fetch_optional(conn)
    .await
    .db()
}

pub async fn update(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    id: &AppId,
    name: Option<&str>,
    settings: Option<&str>,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE applications SET name = COALESCE($3, name), settings = COALESCE($4, settings), updated_at = $5 \
         WHERE org_id = $1 AND id = $2",
    )
    .bind(org_id)
    .bind(id)
    .bind(name)
    .bind(settings)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() > 0)
}

/// Deletes a non-default application; its keys and end-users cascade.
pub async fn delete(conn: &mut AnyConnection, org_id: &OrgId, id: &AppId) -> Result<bool> {
    let r =
        sqlx::query("DELETE FROM applications WHERE org_id = $1 AND id = $2 AND is_default = 0")
            .bind(org_id)
            .bind(id)
            .execute(conn)
            .await
            .db()?;
    Ok(r.rows_affected() > 0)
}
