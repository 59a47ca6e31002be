//! Packages installed in an application, with the application's settings for them
//! (input values and locked fields, version pin, model, generation settings).

use corral_core::{AppId, OrgId};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow, Row};

use crate::{Result, SqlxResultExt};

#[derive(Debug, Clone)]
pub struct Installed {
    pub application_id: AppId,
    pub package_id: String,
    pub package_type: String,
    pub package_org_id: Option<OrgId>,
    pub draft_manifest: String,
    pub input_settings: String,
    pub enabled: bool,
    pub version_id: Option<i64>,
    pub model_id: Option<String>,
    pub proxy_id: Option<String>,
    pub generation_config: Option<String>,
    pub installed_at: i64,
    pub updated_at: i64,
}

impl<'r> FromRow<'r, AnyRow> for Installed {
    fn from_row(row: &'r AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Installed {
            application_id: row.try_get("application_id")?,
            package_id: row.try_get("package_id")?,
            package_type: row.try_get("package_type")?,
            package_org_id: row.try_get("package_org_id")?,
            draft_manifest: row.try_get("draft_manifest")?,
            input_settings: row.try_get("input_settings")?,
            enabled: row.try_get::<i64, _>("enabled")? != 0,
            version_id: row.try_get("version_id")?,
            model_id: row.try_get("model_id")?,
            proxy_id: row.try_get("proxy_id")?,
            generation_config: row.try_get("generation_config")?,
            installed_at: row.try_get("installed_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

const SELECT: &str = "SELECT a.application_id, a.package_id, p.type AS package_type, p.org_id AS package_org_id, \
     p.draft_manifest, a.input_settings, a.enabled, a.version_id, a.model_id, a.proxy_id, a.generation_config, \
     a.installed_at, a.updated_at FROM application_packages a JOIN packages p ON p.id = a.package_id";

pub async fn list(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    app_id: &AppId,
    ptype: Option<&str>,
) -> Result<Vec<Installed>> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE a.org_id = $1 AND a.application_id = $2 AND ($3 IS NULL OR p.type = $3) ORDER BY a.package_id"
    ))
    .bind(org_id)
    .bind(app_id)
    .bind(ptype)
    .fetch_all(conn)
    .await
    .db()
}

/// Every (package id, application id) installation in the organization's applications.
pub async fn installations(
    conn: &mut AnyConnection,
    org_id: &OrgId,
) -> Result<Vec<(String, AppId)>> {
    sqlx::query_as(
        "SELECT package_id, application_id FROM application_packages WHERE org_id = $1 \
         ORDER BY package_id, application_id",
    )
    .bind(org_id)
    .fetch_all(conn)
    .await
    .db()
}

pub async fn get(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    app_id: &AppId,
    package_id: &str,
) -> Result<Option<Installed>> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE a.org_id = $1 AND a.application_id = $2 AND a.package_id = $3"
    ))
    .bind(org_id)
    .bind(app_id)
    .bind(package_id)
    .fetch_optional(conn)
    .await
    .db()
}

/// Installs a package; a second install of the same package is `Conflict`.
pub async fn install(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    app_id: &AppId,
    package_id: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO application_packages (application_id, org_id, package_id, input_settings, enabled, installed_at, updated_at) \
         VALUES ($1, $2, $3, '{}', 1, $4, $4)",
    )
    .bind(app_id)
    .bind(org_id)
    .bind(package_id)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// The install of a package in an application, installing it first when missing.
pub async fn get_or_install(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    app_id: &AppId,
    package_id: &str,
    now: i64,
) -> Result<Installed> {
    if let Some(row) = get(conn, org_id, app_id, package_id).await? {
        return Ok(row);
    }
    sqlx::query(
        "INSERT INTO application_packages (application_id, org_id, package_id, input_settings, enabled, installed_at, updated_at) \
         VALUES ($1, $2, $3, '{}', 1, $4, $4) ON CONFLICT DO NOTHING",
    )
    .bind(app_id)
    .bind(org_id)
    .bind(package_id)
    .bind(now)
    .execute(&mut *conn)
    .await
    .db()?;
    get(conn, org_id, app_id, package_id)
        .await?
        .ok_or(crate::StoreError::NotFound)
}

pub struct Settings<'a> {
    pub enabled: bool,
    pub version_id: Option<i64>,
    pub model_id: Option<&'a str>,
    pub proxy_id: Option<&'a str>,
    pub generation_config: Option<&'a str>,
    pub input_settings: &'a str,
    pub now: i64,
}

/// Writes every setting (the caller merged the patch).
pub async fn update(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    app_id: &AppId,
    package_id: &str,
    s: &Settings<'_>,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE application_packages SET enabled = $4, version_id = $5, model_id = $6, proxy_id = $7, \
         generation_config = $8, input_settings = $9, updated_at = $10 \
         WHERE org_id = $1 AND application_id = $2 AND package_id = $3",
    )
    .bind(org_id)
    .bind(app_id)
    .bind(package_id)
    .bind(i64::from(s.enabled))
    .bind(s.version_id)
    .bind(s.model_id)
    .bind(s.proxy_id)
    .bind(s.generation_config)
    .bind(s.input_settings)
    .bind(s.now)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() > 0)
}

pub async fn uninstall(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    app_id: &AppId,
    package_id: &str,
) -> Result<bool> {
    let r = sqlx::query("DELETE FROM application_packages WHERE org_id = $1 AND application_id = $2 AND package_id = $3")
        .bind(org_id)
        .bind(app_id)
        .bind(package_id)
        .execute(conn)
        .await
        .db()?;
    Ok(r.rows_affected() > 0)
}

/// A version of a package by its id (for version pins).
pub async fn version_by_id(
    conn: &mut AnyConnection,
    package_id: &str,
    id: i64,
) -> Result<Option<String>> {
    sqlx::query_scalar("SELECT version FROM package_versions WHERE package_id = $1 AND id = $2")
        .bind(package_id)
        .bind(id)
        .fetch_optional(conn)
        .await
        .db()
}
