//! Packages: the package row (with its editable draft), immutable versions whose
//! archive bytes live in object storage, dist-tags and recorded dependencies. An org
//! sees its own packages and the system packages (`org_id IS NULL`), never another
//! org's; only its own are writable.

use corral_core::OrgId;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow, Row};

use crate::{Result, SqlxResultExt};

#[derive(Debug, Clone, FromRow)]
pub struct Package {
    pub id: String,
    pub org_id: Option<OrgId>,
    #[sqlx(rename = "type")]
    pub ptype: String,
    pub scope: String,
    pub name: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub draft_manifest: String,
    pub draft_files: String,
    pub draft_integrity: String,
    pub lock_version: i64,
    pub forked_from: Option<String>,
    pub created_by: Option<String>,
    pub created_by_name: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Latest published (non-yanked) version by dist-tag `latest`, if any.
    pub latest_version: Option<String>,
    pub version_count: i64,
}

const SELECT: &str = "SELECT p.id, p.org_id, p.type, p.scope, p.name, p.display_name, p.description, \
     p.draft_manifest, p.draft_files, p.draft_integrity, p.lock_version, p.forked_from, p.created_by, \
     COALESCE(u.display_name, u.name) AS created_by_name, p.created_at, p.updated_at, \
     (SELECT t.version FROM package_dist_tags t WHERE t.package_id = p.id AND t.tag = 'latest') AS latest_version, \
     (SELECT COUNT(*) FROM package_versions v WHERE v.package_id = p.id) AS version_count \
     FROM packages p LEFT JOIN users u ON u.id = p.created_by";

pub struct NewPackage<'a> {
    pub id: &'a str,
    pub org_id: Option<&'a OrgId>,
    pub ptype: &'a str,
    pub scope: &'a str,
    pub name: &'a str,
    pub display_name: Option<&'a str>,
    pub description: Option<&'a str>,
    pub draft_manifest: &'a str,
    pub draft_files: &'a str,
    pub draft_integrity: &'a str,
    pub forked_from: Option<&'a str>,
    pub created_by: Option<&'a str>,
    pub now: i64,
}

pub async fn insert(conn: &mut AnyConnection, p: &NewPackage<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO packages (id, org_id, type, scope, name, display_name, description, draft_manifest, draft_files, \
         draft_integrity, lock_version, forked_from, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11, $12, $13, $13)",
    )
    .bind(p.id)
    .bind(p.org_id)
    .bind(p.ptype)
    .bind(p.scope)
    .bind(p.name)
    .bind(p.display_name)
    .bind(p.description)
    .bind(p.draft_manifest)
    .bind(p.draft_files)
    .bind(p.draft_integrity)
    .bind(p.forked_from)
    .bind(p.created_by)
    .bind(p.now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// A package visible to `org_id` (its own or a system one), optionally of one type.
pub async fn get_visible(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    id: &str,
    ptype: Option<&str>,
) -> Result<Option<Package>> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE p.id = $1 AND (p.org_id = $2 OR p.org_id IS NULL) AND ($3 IS NULL OR p.type = $3)"
    ))
    .bind(id)
    .bind(org_id)
    .bind(ptype)
    .fetch_optional(conn)
    .await
    .db()
}

/// A system package (for boot-time loading).
pub async fn get_system(conn: &mut AnyConnection, id: &str) -> Result<Option<Package>> {
    sqlx::query_as(&format!("{SELECT} WHERE p.id = $1 AND p.org_id IS NULL"))
        .bind(id)
        .fetch_optional(conn)
        .await
        .db()
}

/// Packages visible to the org, system ones included, optionally of one type.
pub async fn list_visible(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    ptype: Option<&str>,
) -> Result<Vec<Package>> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE (p.org_id = $1 OR p.org_id IS NULL) AND ($2 IS NULL OR p.type = $2) \
         ORDER BY p.org_id IS NULL, p.id"
    ))
    .bind(org_id)
    .bind(ptype)
    .fetch_all(conn)
    .await
    .db()
}

pub struct DraftUpdate<'a> {
    pub manifest: &'a str,
    pub files: &'a str,
    pub integrity: &'a str,
    pub display_name: Option<&'a str>,
    pub description: Option<&'a str>,
    pub now: i64,
}

/// Replaces the draft of an org-owned package. With `expected_lock` it is a
/// compare-and-swap: `Ok(false)` when another write got there first.
pub async fn update_draft(
    conn: &mut AnyConnection,
    org_id: Option<&OrgId>,
    id: &str,
    d: &DraftUpdate<'_>,
    expected_lock: Option<i64>,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE packages SET draft_manifest = $3, draft_files = $4, draft_integrity = $5, display_name = $6, \
         description = $7, updated_at = $8, lock_version = lock_version + 1 \
         WHERE id = $1 AND ((org_id IS NULL AND $2 IS NULL) OR org_id = $2) AND ($9 IS NULL OR lock_version = $9)",
    )
    .bind(id)
    .bind(org_id)
    .bind(d.manifest)
    .bind(d.files)
    .bind(d.integrity)
    .bind(d.display_name)
    .bind(d.description)
    .bind(d.now)
    .bind(expected_lock)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() > 0)
}

/// Deletes an org-owned package (system packages are never deleted through an org).
pub async fn delete(conn: &mut AnyConnection, org_id: &OrgId, id: &str) -> Result<bool> {
    let r = sqlx::query("DELETE FROM packages WHERE id = $1 AND org_id = $2")
        .bind(id)
        .bind(org_id)
        .execute(conn)
        .await
        .db()?;
    Ok(r.rows_affected() > 0)
}

#[derive(Debug, Clone)]
pub struct Version {
    pub id: i64,
    pub package_id: String,
    pub version: String,
    pub manifest: String,
    pub integrity: String,
    pub record: String,
    pub artifact_size: i64,
    pub storage_key: String,
    pub yanked: bool,
    pub yanked_reason: Option<String>,
    pub created_by: Option<String>,
    pub created_at: i64,
}

impl<'r> FromRow<'r, AnyRow> for Version {
    fn from_row(row: &'r AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Version {
            id: row.try_get("id")?,
            package_id: row.try_get("package_id")?,
            version: row.try_get("version")?,
            manifest: row.try_get("manifest")?,
            integrity: row.try_get("integrity")?,
            record: row.try_get("record")?,
            artifact_size: row.try_get("artifact_size")?,
            storage_key: row.try_get("storage_key")?,
            yanked: row.try_get::<i64, _>("yanked")? != 0,
            yanked_reason: row.try_get("yanked_reason")?,
            created_by: row.try_get("created_by")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

const VCOLS: &str =
    "id, package_id, version, manifest, integrity, record, artifact_size, storage_key, yanked, \
                     yanked_reason, created_by, created_at";

pub struct NewVersion<'a> {
    pub package_id: &'a str,
    pub version: &'a str,
    pub manifest: &'a str,
    pub integrity: &'a str,
    pub record: &'a str,
    pub artifact_size: i64,
    pub storage_key: &'a str,
    pub created_by: Option<&'a str>,
    pub now: i64,
}

/// Inserts a version; a duplicate version is `Conflict`. Returns its id.
pub async fn insert_version(conn: &mut AnyConnection, v: &NewVersion<'_>) -> Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO package_versions (package_id, version, manifest, integrity, record, artifact_size, storage_key, \
         yanked, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9) RETURNING id",
    )
    .bind(v.package_id)
    .bind(v.version)
    .bind(v.manifest)
    .bind(v.integrity)
    .bind(v.record)
    .bind(v.artifact_size)
    .bind(v.storage_key)
    .bind(v.created_by)
    .bind(v.now)
    .fetch_one(conn)
    .await
    .db()
}

pub async fn versions(conn: &mut AnyConnection, package_id: &str) -> Result<Vec<Version>> {
    sqlx::query_as(&format!(
        "SELECT {VCOLS} FROM package_versions WHERE package_id = $1 ORDER BY id DESC"
    ))
    .bind(package_id)
    .fetch_all(conn)
    .await
    .db()
}

pub async fn version(
    conn: &mut AnyConnection,
    package_id: &str,
    version: &str,
) -> Result<Option<Version>> {
    sqlx::query_as(&format!(
        "SELECT {VCOLS} FROM package_versions WHERE package_id = $1 AND version = $2"
    ))
    .bind(package_id)
    .bind(version)
    .fetch_optional(conn)
    .await
    .db()
}

pub async fn set_yanked(
    conn: &mut AnyConnection,
    package_id: &str,
    version: &str,
    yanked: bool,
    reason: Option<&str>,
) -> Result<bool> {
    let r = sqlx::query("UPDATE package_versions SET yanked = $3, yanked_reason = $4 WHERE package_id = $1 AND version = $2")
        .bind(package_id)
        .bind(version)
        .bind(i64::from(yanked))
        .bind(reason)
        .execute(conn)
        .await
        .db()?;
    Ok(r.rows_affected() > 0)
}

#[derive(Debug, Clone, FromRow)]
pub struct DistTag {
    pub tag: String,
    pub version: String,
}

pub async fn dist_tags(conn: &mut AnyConnection, package_id: &str) -> Result<Vec<DistTag>> {
    sqlx::query_as("SELECT tag, version FROM package_dist_tags WHERE package_id = $1 ORDER BY tag")
        .bind(package_id)
        .fetch_all(conn)
        .await
        .db()
}

pub async fn set_dist_tag(
    conn: &mut AnyConnection,
    package_id: &str,
    tag: &str,
    version: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO package_dist_tags (package_id, tag, version, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (package_id, tag) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at",
    )
    .bind(package_id)
    .bind(tag)
    .bind(version)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

pub async fn delete_dist_tag(
    conn: &mut AnyConnection,
    package_id: &str,
    tag: &str,
) -> Result<bool> {
    let r = sqlx::query("DELETE FROM package_dist_tags WHERE package_id = $1 AND tag = $2")
        .bind(package_id)
        .bind(tag)
        .execute(conn)
        .await
        .db()?;
    Ok(r.rows_affected() > 0)
}

pub async fn insert_dependency(
    conn: &mut AnyConnection,
    package_id: &str,
    version: &str,
    dep_type: &str,
    dep_id: &str,
    dep_range: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO package_dependencies (package_id, version, dep_type, dep_id, dep_range) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT DO NOTHING",
    )
    .bind(package_id)
    .bind(version)
    .bind(dep_type)
    .bind(dep_id)
    .bind(dep_range)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

#[derive(Debug, Clone, FromRow)]
pub struct Dependency {
    pub dep_type: String,
    pub dep_id: String,
    pub dep_range: String,
}

pub async fn dependencies(
    conn: &mut AnyConnection,
    package_id: &str,
    version: &str,
) -> Result<Vec<Dependency>> {
    sqlx::query_as(
        "SELECT dep_type, dep_id, dep_range FROM package_dependencies WHERE package_id = $1 AND version = $2 ORDER BY dep_id",
    )
    .bind(package_id)
    .bind(version)
    .fetch_all(conn)
    .await
    .db()
}

/// How many of the org's agents' drafts mention a package id (for `used_by_agents`).
pub async fn count_dependents(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    dep_id: &str,
) -> Result<i64> {
    sqlx::query_scalar(
        "SELECT COUNT(DISTINCT d.package_id) FROM package_dependencies d JOIN packages p ON p.id = d.package_id \
         WHERE d.dep_id = $1 AND (p.org_id = $2 OR p.org_id IS NULL)",
    )
    .bind(dep_id)
    .bind(org_id)
    .fetch_one(conn)
    .await
    .db()
}
