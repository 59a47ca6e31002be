//! End-users: external users of an application, listed with cursor pagination.

use corral_core::{AppId, OrgId};
use sqlx::{AnyConnection, FromRow};

use crate::{Result, SqlxResultExt};

#[derive(Debug, Clone, FromRow)]
pub struct EndUser {
    pub id: String,
    pub org_id: OrgId,
    pub application_id: AppId,
    pub name: Option<String>,
    pub email: Option<String>,
    pub external_id: Option<String>,
    pub metadata: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLS: &str =
    "id, org_id, application_id, name, email, external_id, metadata, created_at, updated_at";

pub async fn insert(conn: &mut AnyConnection, e: &EndUser) -> Result<()> {
    sqlx::query(
        "INSERT INTO end_users (id, org_id, application_id, name, email, external_id, metadata, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
    )
    .bind(&e.id)
    .bind(&e.org_id)
    .bind(&e.application_id)
    .bind(e.name.as_deref())
    .bind(e.email.as_deref())
    .bind(e.external_id.as_deref())
    .bind(e.metadata.as_deref())
    .bind(e.created_at)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

pub async fn get(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    app_id: &AppId,
    id: &str,
) -> Result<Option<EndUser>> {
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM end_users WHERE org_id = $1 AND application_id = $2 AND id = $3"
    ))
    .bind(org_id)
    .bind(app_id)
    .bind(id)
    .fetch_optional(conn)
    .await
    .db()
}

/// Writes every column of `e` (the caller merged the patch); scoped by org and app.
pub async fn update(conn: &mut AnyConnection, e: &EndUser) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE end_users SET name = $4, email = $5, external_id = $6, metadata = $7, updated_at = $8 \
         WHERE org_id = $1 AND application_id = $2 AND id = $3",
    )
    .bind(&e.org_id)
    .bind(&e.application_id)
    .bind(&e.id)
    .bind(e.name.as_deref())
    .bind(e.email.as_deref())
    .bind(e.external_id.as_deref())
    .bind(e.metadata.as_deref())
    .bind(e.updated_at)
    .execute(conn)
    .await
    .db()?;
    Ok(r.rows_affected() > 0)
}

pub async fn delete(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    app_id: &AppId,
    id: &str,
) -> Result<bool> {
    let r =
        sqlx::query("DELETE FROM end_users WHERE org_id = $1 AND application_id = $2 AND id = $3")
            .bind(org_id)
            .bind(app_id)
            .bind(id)
            .execute(conn)
            .await
            .db()?;
    Ok(r.rows_affected() > 0)
}

#[derive(Debug, Default)]
pub struct ListFilter<'a> {
    pub external_id: Option<&'a str>,
    pub email: Option<&'a str>,
    pub search: Option<&'a str>,
    pub limit: i64,
    pub starting_after: Option<&'a str>,
    pub ending_before: Option<&'a str>,
}

pub struct Page {
    pub items: Vec<EndUser>,
    pub has_more: bool,
}

fn like_pattern(s: &str) -> String {
    let escaped: String = s
        .to_lowercase()
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            _ => vec![c],
        })
        .collect();
    format!("%{escaped}%")
}

/// Newest first. `starting_after` pages towards older items, `ending_before` towards
/// newer ones; ids are UUID v7 so id order is creation order.
pub async fn list(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    app_id: &AppId,
    f: &ListFilter<'_>,
) -> Result<Page> {
    let mut sql = format!("SELECT {COLS} FROM end_users WHERE org_id = $1 AND application_id = $2");
    let mut n = 2;
    let mut binds: Vec<String> = Vec::new();
    let mut push = |clause: &str, value: String, sql: &mut String| {
        n += 1;
        sql.push_str(&clause.replace("{}", &format!("${n}")));
        binds.push(value);
    };
    if let Some(x) = f.external_id {
        push(" AND external_id = {}", x.to_owned(), &mut sql);
    }
    if let Some(x) = f.email {
        push(" AND LOWER(email) = {}", x.to_lowercase(), &mut sql);
    }
    if let Some(x) = f.search {
        push(
            " AND (LOWER(COALESCE(name, '')) LIKE {p} ESCAPE '\\' OR LOWER(COALESCE(email, '')) LIKE {p} ESCAPE '\\' \
             OR LOWER(COALESCE(external_id, '')) LIKE {p} ESCAPE '\\')"
                .replace("{p}", "{}")
                .as_str(),
            like_pattern(x),
            &mut sql,
        );
    }
    let backwards = f.ending_before.is_some();
    if let Some(x) = f.starting_after {
        push(" AND id < {}", x.to_owned(), &mut sql);
    }
    if let Some(x) = f.ending_before {
        push(" AND id > {}", x.to_owned(), &mut sql);
    }
    sql.push_str(if backwards {
        " ORDER BY id ASC"
    } else {
        " ORDER BY id DESC"
    });
    sql.push_str(&format!(" LIMIT {}", f.limit + 1));

    let mut q = sqlx::query_as::<_, EndUser>(&sql).bind(org_id).bind(app_id);
    for b in binds {
        q = q.bind(b);
    }
    let mut items = q.fetch_all(conn).await.db()?;
    let has_more = items.len() as i64 > f.limit;
    items.truncate(f.limit as usize);
    if backwards {
        items.reverse();
    }
    Ok(Page { items, has_more })
}

pub async fn exists_in_app(conn: &mut AnyConnection, app_id: &AppId, id: &str) -> Result<bool> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM end_users WHERE application_id = $1 AND id = $2")
            .bind(app_id)
            .bind(id)
            .fetch_one(conn)
            .await
            .db()?;
    Ok(n > 0)
}
