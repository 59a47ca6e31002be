//! Users: identity, profile and password hash.

use corral_core::OrgId;
use sqlx::{AnyConnection, FromRow};

use crate::{Result, SqlxResultExt};

#[derive(Debug, Clone, FromRow)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    pub display_name: Option<String>,
    pub language: String,
    pub password_hash: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLS: &str = "id, email, name, display_name, language, password_hash, created_at, updated_at";

pub struct NewUser<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub name: &'a str,
    pub password_hash: &'a str,
    pub now: i64,
}

/// Inserts a user; a taken email is `Conflict` on the email constraint.
pub async fn insert(conn: &mut AnyConnection, u: &NewUser<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO users (id, email, name, password_hash, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(u.id)
    .bind(u.email)
    .bind(u.name)
    .bind(u.password_hash)
    .bind(u.now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

pub async fn by_email(conn: &mut AnyConnection, email: &str) -> Result<Option<User>> {
    sqlx::query_as(&format!("SELECT {COLS} FROM users WHERE email = $1"))
        .bind(email)
        .fetch_optional(conn)
        .await
        .db()
}

pub async fn by_id(conn: &mut AnyConnection, id: &str) -> Result<Option<User>> {
    sqlx::query_as(&format!("SELECT {COLS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
        .db()
}

pub async fn update_profile(
    conn: &mut AnyConnection,
    id: &str,
    display_name: Option<&str>,
    language: Option<&str>,
    now: i64,
) -> Result<Option<User>> {
    sqlx::query(
        "UPDATE users SET display_name = COALESCE($2, display_name), \
         language = COALESCE($3, language), updated_at = $4 WHERE id = $1",
    )
    .bind(id)
    .bind(display_name)
    .bind(language)
    .bind(now)
    .execute(&mut *conn)
    .await
    .db()?;
    by_id(conn, id).await
}

pub async fn set_password(conn: &mut AnyConnection, id: &str, hash: &str, now: i64) -> Result<()> {
    sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(hash)
        .bind(now)
        .execute(conn)
        .await
        .db()?;
    Ok(())
}

#[derive(Debug, Clone, FromRow)]
pub struct ProfileRef {
    pub id: String,
    pub display_name: Option<String>,
    pub name: String,
}

/// Profiles of the given users that are members of `org_id` (others are left out, so
/// an org cannot look up people outside it).
pub async fn profiles_in_org(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    ids: &[String],
) -> Result<Vec<ProfileRef>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let row: Option<ProfileRef> = sqlx::query_as(
            "SELECT u.id, u.display_name, u.name FROM users u \
             JOIN org_members m ON m.user_id = u.id AND m.org_id = $1 WHERE u.id = $2",
        )
        .bind(org_id)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .db()?;
        out.extend(row);
    }
    Ok(out)
}
