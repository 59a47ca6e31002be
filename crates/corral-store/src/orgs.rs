//! Organizations and their members.

use corral_core::{AppId, OrgId};
use serde_json::Value;
use sqlx::{AnyConnection, FromRow};

use crate::{applications, Result, SqlxResultExt};

#[derive(Debug, Clone, FromRow)]
pub struct Org {
    pub id: OrgId,
    pub name: String,
    pub slug: String,
    pub api_version: String,
    pub settings: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Org {
    pub fn settings_json(&self) -> Value {
        serde_json::from_str(&self.settings).unwrap_or_else(|_| Value::Object(Default::default()))
    }
}

/// An org as one of its members sees it.
#[derive(Debug, Clone, FromRow)]
pub struct OrgWithRole {
    pub id: OrgId,
    pub name: String,
    pub slug: String,
    pub api_version: String,
    pub created_at: i64,
    pub role: String,
}

#[derive(Debug, Clone, FromRow)]
pub struct Member {
    pub user_id: String,
    pub role: String,
    pub joined_at: i64,
    pub email: String,
    pub name: String,
    pub display_name: Option<String>,
}

pub struct NewOrg<'a> {
    pub id: &'a OrgId,
    pub name: &'a str,
    pub slug: &'a str,
    pub api_version: &'a str,
    pub owner_id: &'a str,
    pub default_app_id: &'a AppId,
    pub now: i64,
}

/// Creates the org, makes the creator its owner and creates its default application.
/// Call inside a transaction: the three rows exist together or not at all.
pub async fn insert_with_owner(conn: &mut AnyConnection, o: &NewOrg<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO organizations (id, name, slug, api_version, settings, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, '{}', $5, $6, $6)",
    )
    .bind(o.id)
    .bind(o.name)
    .bind(o.slug)
    .bind(o.api_version)
    .bind(o.owner_id)
    .bind(o.now)
    .execute(&mut *conn)
    .await
    .db()?;
    add_member(conn, o.id, o.owner_id, "owner", o.now).await?;
    applications::insert(
        conn,
        &applications::NewApplication {
            id: o.default_app_id,
            org_id: o.id,
            name: "Default",
            is_default: true,
            settings: "{}",
            created_by: Some(o.owner_id),
            now: o.now,
        },
    )
    .await
}

pub async fn add_member(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    user_id: &str,
    role: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO org_members (org_id, user_id, role, joined_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(org_id)
    .bind(user_id)
    .bind(role)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

pub async fn list_for_user(conn: &mut AnyConnection, user_id: &str) -> Result<Vec<OrgWithRole>> {
    sqlx::query_as(
        "SELECT o.id, o.name, o.slug, o.api_version, o.created_at, m.role \
         FROM organizations o JOIN org_members m ON m.org_id = o.id \
         WHERE m.user_id = $1 ORDER BY o.created_at, o.id",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await
    .db()
}

/// The org and the user's role in it; `None` when the org does not exist or the user
/// is not a member (the two are indistinguishable to the caller on purpose).
pub async fn for_member(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    user_id: &str,
) -> Result<Option<OrgWithRole>> {
    sqlx::query_as(
        "SELECT o.id, o.name, o.slug, o.api_version, o.created_at, m.role \
         FROM organizations o JOIN org_members m ON m.org_id = o.id \
         WHERE o.id = $1 AND m.user_id = $2",
    )
    .bind(org_id)
    .bind(user_id)
    .fetch_optional(conn)
    .await
    .db()
}

pub async fn by_id(conn: &mut AnyConnection, org_id: &OrgId) -> Result<Option<Org>> {
    sqlx::query_as(
        "SELECT id, name, slug, api_version, settings, created_at, updated_at FROM organizations WHERE id = $1",
    )
    .bind(org_id)
    .fetch_optional(conn)
    .await
    .db()
}

pub async fn update(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    name: Option<&str>,
    slug: Option<&str>,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE organizations SET name = COALESCE($2, name), slug = COALESCE($3, slug), updated_at = $4 WHERE id = $1",
    )
    .bind(org_id)
    .bind(name)
    .bind(slug)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

pub async fn set_settings(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    settings: &Value,
    api_version: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE organizations SET settings = $2, api_version = $3, updated_at = $4 WHERE id = $1",
    )
    .bind(org_id)
    .bind(crate::json_text(settings)?)
    .bind(api_version)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// Deletes the org; its members, applications, keys, end-users, invitations go with it
/// (ON DELETE CASCADE).
pub async fn delete(conn: &mut AnyConnection, org_id: &OrgId) -> Result<bool> {
    let r = sqlx::query("DELETE FROM organizations WHERE id = $1")
        .bind(org_id)
        .execute(conn)
        .await
        .db()?;
    Ok(r.rows_affected() > 0)
}

pub async fn members(conn: &mut AnyConnection, org_id: &OrgId) -> Result<Vec<Member>> {
    sqlx::query_as(
        "SELECT m.user_id, m.role, m.joined_at, u.email, u.name, u.display_name \
         FROM org_members m JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 ORDER BY m.joined_at, m.user_id",
    )
    .bind(org_id)
    .fetch_all(conn)
    .await
    .db()
}

pub async fn member(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    user_id: &str,
) -> Result<Option<Member>> {
    sqlx::query_as(
        "SELECT m.user_id, m.role, m.joined_at, u.email, u.name, u.display_name \
         FROM org_members m JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 AND m.user_id = $2",
    )
    .bind(org_id)
    .bind(user_id)
    .fetch_optional(conn)
    .await
    .db()
}

pub async fn set_member_role(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    user_id: &str,
    role: &str,
) -> Result<bool> {
    let r = sqlx::query("UPDATE org_members SET role = $3 WHERE org_id = $1 AND user_id = $2")
        .bind(org_id)
        .bind(user_id)
        .bind(role)
        .execute(conn)
        .await
        .db()?;
    Ok(r.rows_affected() > 0)
}

pub async fn remove_member(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    user_id: &str,
) -> Result<bool> {
    let r = sqlx::query("DELETE FROM org_members WHERE org_id = $1 AND user_id = $2")
        .bind(org_id)
        .bind(user_id)
        .execute(conn)
        .await
        .db()?;
    Ok(r.rows_affected() > 0)
}

pub async fn slug_exists(conn: &mut AnyConnection, slug: &str) -> Result<bool> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM organizations WHERE slug = $1")
        .bind(slug)
        .fetch_one(conn)
        .await
        .db()?;
    Ok(n > 0)
}
