//! Pending invitations to join an organization.

use corral_core::OrgId;
use sqlx::{AnyConnection, FromRow};

use crate::{orgs, Result, SqlxResultExt};

#[derive(Debug, Clone, FromRow)]
pub struct Invitation {
    pub id: String,
    pub org_id: OrgId,
    pub email: String,
    pub role: String,
    pub token: String,
    pub inviter_id: Option<String>,
    pub expires_at: i64,
    pub accepted_at: Option<i64>,
    pub created_at: i64,
}

const COLS: &str =
    "id, org_id, email, role, token, inviter_id, expires_at, accepted_at, created_at";

pub async fn insert(conn: &mut AnyConnection, inv: &Invitation) -> Result<()> {
    sqlx::query(
        "INSERT INTO invitations (id, org_id, email, role, token, inviter_id, expires_at, accepted_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8)",
    )
    .bind(&inv.id)
    .bind(&inv.org_id)
    .bind(&inv.email)
    .bind(&inv.role)
    .bind(&inv.token)
    .bind(inv.inviter_id.as_deref())
    .bind(inv.expires_at)
    .bind(inv.created_at)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// Pending (not accepted) invitations of an org, expired ones included so admins see them.
pub async fn pending(conn: &mut AnyConnection, org_id: &OrgId) -> Result<Vec<Invitation>> {
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM invitations WHERE org_id = $1 AND accepted_at IS NULL ORDER BY created_at, id"
    ))
    .bind(org_id)
    .fetch_all(conn)
    .await
    .db()
}

pub async fn get(conn: &mut AnyConnection, org_id: &OrgId, id: &str) -> Result<Option<Invitation>> {
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM invitations WHERE org_id = $1 AND id = $2 AND accepted_at IS NULL"
    ))
    .bind(org_id)
    .bind(id)
    .fetch_optional(conn)
    .await
    .db()
}

pub async fn by_token(conn: &mut AnyConnection, token: &str) -> Result<Option<Invitation>> {
    sqlx::query_as(&format!("SELECT {COLS} FROM invitations WHERE token = $1"))
        .bind(token)
        .fetch_optional(conn)
        .await
        .db()
}

pub async fn pending_for_email(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    email: &str,
) -> Result<Option<Invitation>> {
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM invitations WHERE org_id = $1 AND email = $2 AND accepted_at IS NULL"
    ))
    .bind(org_id)
    .bind(email)
    .fetch_optional(conn)
    .await
    .db()
}

pub async fn set_role(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    id: &str,
    role: &str,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE invitations SET role = $3 WHERE org_id = $1 AND id = $2 AND accepted_at IS NULL",
    )
    .bind(org_id)
    .bind(id)
    .bind(role)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() > 0)
}

pub async fn delete(conn: &mut AnyConnection, org_id: &OrgId, id: &str) -> Result<bool> {
    let r = sqlx::query(
        "DELETE FROM invitations WHERE org_id = $1 AND id = $2 AND accepted_at IS NULL",
    )
    .bind(org_id)
    .bind(id)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() > 0)
}

/// Marks the invitation accepted and adds the member. Call inside a transaction; the
/// `accepted_at IS NULL` guard makes a concurrent second accept a no-op (`Ok(false)`).
pub async fn accept(
    conn: &mut AnyConnection,
    inv: &Invitation,
    user_id: &str,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE invitations SET accepted_at = $2 WHERE id = $1 AND accepted_at IS NULL",
    )
    .bind(&inv.id)
    .bind(now)
    .execute(&mut *conn)
    .await
    .db()?;
    if r.rows_affected() == 0 {
        return Ok(false);
    }
    orgs::add_member(conn, &inv.org_id, user_id, &inv.role, now).await?;
    Ok(true)
}
