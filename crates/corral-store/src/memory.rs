//! Agent memory (SPEC §13): archive memories written by `note` and pinned slots
//! written by `pin`, per agent, application and actor (`user`, `end_user` or
//! `shared`; a shared row has the actor id `''`). Archive memories are searched
//! with full-text (FTS5 on SQLite, `tsvector` on PostgreSQL), ranked, then by
//! case-insensitive substring.

use corral_core::{AppId, OrgId};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow, Row};

use crate::{Backend, Result, SqlxResultExt};

/// Whose memory: an agent of an application, and an actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub org_id: OrgId,
    pub app_id: AppId,
    pub package_id: String,
    pub actor: Actor,
}

/// `user` / `end_user` with an id, or `shared` (id `''`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub kind: String,
    pub id: String,
}

impl Actor {
    pub fn user(id: &str) -> Actor {
        Actor {
            kind: "user".into(),
            id: id.into(),
        }
    }
    pub fn end_user(id: &str) -> Actor {
        Actor {
            kind: "end_user".into(),
            id: id.into(),
        }
    }
    pub fn shared() -> Actor {
        Actor {
            kind: "shared".into(),
            id: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub id: i64,
    /// Pinned slots only.
    pub key: Option<String>,
    /// Text for a memory, JSON for a pinned slot.
    pub content: String,
    pub actor_type: String,
    /// `None` for shared rows.
    pub actor_id: Option<String>,
    pub run_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl<'r> FromRow<'r, AnyRow> for Item {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        let actor_id: String = row.try_get("actor_id")?;
        let created_at: i64 = row.try_get("created_at")?;
        Ok(Item {
            id: row.try_get("id")?,
            key: row.try_get("key").ok().flatten(),
            content: row.try_get("content")?,
            actor_type: row.try_get("actor_type")?,
            actor_id: Some(actor_id).filter(|a| !a.is_empty()),
            run_id: row.try_get("run_id")?,
            created_at,
            updated_at: row
                .try_get::<Option<i64>, _>("updated_at")
                .ok()
                .flatten()
                .unwrap_or(created_at),
        })
    }
}

pub async fn add_memory(
    conn: &mut AnyConnection,
    s: &Scope,
    content: &str,
    run_id: Option<&str>,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO agent_memories (org_id, application_id, package_id, actor_type, actor_id, \
           content, run_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&s.org_id)
    .bind(&s.app_id)
    .bind(&s.package_id)
    .bind(&s.actor.kind)
    .bind(&s.actor.id)
    .bind(content)
    .bind(run_id)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// Memories (`table` = `agent_memories`) or slots (`agent_pinned`) of one scope.
pub async fn count(conn: &mut AnyConnection, s: &Scope, pinned: bool) -> Result<i64> {
    let table = if pinned {
        "agent_pinned"
    } else {
        "agent_memories"
    };
    sqlx::query(&format!(
        "SELECT COUNT(*) FROM {table} WHERE org_id = $1 AND application_id = $2 \
           AND package_id = $3 AND actor_type = $4 AND actor_id = $5"
    ))
    .bind(&s.org_id)
    .bind(&s.app_id)
    .bind(&s.package_id)
    .bind(&s.actor.kind)
    .bind(&s.actor.id)
    .fetch_one(conn)
    .await
    .db()?
    .try_get(0)
    .db()
}

/// Whether the slot `key` exists in the scope (an overwrite does not count against
/// the slot limit).
pub async fn has_pinned(conn: &mut AnyConnection, s: &Scope, key: &str) -> Result<bool> {
    let row = sqlx::query(
        "SELECT 1 FROM agent_pinned WHERE org_id = $1 AND application_id = $2 \
           AND package_id = $3 AND actor_type = $4 AND actor_id = $5 AND key = $6",
    )
    .bind(&s.org_id)
    .bind(&s.app_id)
    .bind(&s.package_id)
    .bind(&s.actor.kind)
    .bind(&s.actor.id)
    .bind(key)
    .fetch_optional(conn)
    .await
    .db()?;
    Ok(row.is_some())
}

/// Sets the slot `key` (latest wins).
pub async fn set_pinned(
    conn: &mut AnyConnection,
    s: &Scope,
    key: &str,
    json: &str,
    run_id: Option<&str>,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO agent_pinned (org_id, application_id, package_id, actor_type, actor_id, key, \
           content, run_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
         ON CONFLICT (org_id, application_id, package_id, actor_type, actor_id, key) \
         DO UPDATE SET content = excluded.content, run_id = excluded.run_id, \
           updated_at = excluded.updated_at",
    )
    .bind(&s.org_id)
    .bind(&s.app_id)
    .bind(&s.package_id)
    .bind(&s.actor.kind)
    .bind(&s.actor.id)
    .bind(key)
    .bind(json)
    .bind(run_id)
    .bind(now)
    .execute(conn)
    .await
    .db()?;
    Ok(())
}

/// Which rows a list or delete touches: the agent of the application, one actor
/// (or every actor when `None`), one run.
pub struct Filter<'a> {
    pub org_id: &'a OrgId,
    pub app_id: &'a AppId,
    pub package_id: &'a str,
    pub actor: Option<&'a Actor>,
    pub run_id: Option<&'a str>,
}

fn filter_sql(f: &Filter<'_>) -> String {
    let mut sql = "org_id = $1 AND application_id = $2 AND package_id = $3".to_owned();
    if f.actor.is_some() {
        sql.push_str(" AND actor_type = $4 AND actor_id = $5");
    } else {
        sql.push_str(" AND $4 IS NULL AND $5 IS NULL");
    }
    sql.push_str(" AND ($6 IS NULL OR run_id = $6)");
    sql
}

fn bind_filter<'q>(
    sql: &'q str,
    f: &'q Filter<'q>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    sqlx::query(sql)
        .bind(f.org_id)
        .bind(f.app_id)
        .bind(f.package_id)
        .bind(f.actor.map(|a| a.kind.as_str()))
        .bind(f.actor.map(|a| a.id.as_str()))
        .bind(f.run_id)
}

/// Archive memories (newest first) or pinned slots (by key).
pub async fn list(conn: &mut AnyConnection, f: &Filter<'_>, pinned: bool) -> Result<Vec<Item>> {
    let sql = if pinned {
        format!(
            "SELECT * FROM agent_pinned WHERE {} ORDER BY key, id",
            filter_sql(f)
        )
    } else {
        format!(
            "SELECT id, actor_type, actor_id, content, run_id, created_at, NULL AS key, \
               created_at AS updated_at FROM agent_memories WHERE {} \
             ORDER BY id DESC",
            filter_sql(f)
        )
    };
    let rows = bind_filter(&sql, f).fetch_all(conn).await.db()?;
    rows.iter()
        .map(Item::from_row)
        .collect::<sqlx::Result<Vec<_>>>()
        .db()
}

/// Deletes the matching rows; `id` narrows to one. Returns how many went.
pub async fn delete(
    conn: &mut AnyConnection,
    f: &Filter<'_>,
    pinned: bool,
    id: Option<i64>,
    key: Option<&str>,
) -> Result<u64> {
    let table = if pinned {
        "agent_pinned"
    } else {
        "agent_memories"
    };
    let mut sql = format!("DELETE FROM {table} WHERE {}", filter_sql(f));
    if id.is_some() {
        sql.push_str(" AND id = $7");
    }
    if key.is_some() {
        sql.push_str(if id.is_some() {
            " AND key = $8"
        } else {
            " AND key = $7"
        });
    }
    let mut q = bind_filter(&sql, f);
    if let Some(id) = id {
        q = q.bind(id);
    }
    if let Some(key) = key {
        q = q.bind(key);
    }
    Ok(q.execute(conn).await.db()?.rows_affected())
}

/// The pinned slots a run of `s` sees: the actor's and the shared ones (the actor's
/// win on the same key), by key.
pub async fn pinned_for(conn: &mut AnyConnection, s: &Scope) -> Result<Vec<Item>> {
    let rows = sqlx::query(
        "SELECT * FROM agent_pinned WHERE org_id = $1 AND application_id = $2 \
           AND package_id = $3 AND ((actor_type = $4 AND actor_id = $5) OR actor_type = 'shared') \
         ORDER BY key, CASE WHEN actor_type = 'shared' THEN 1 ELSE 0 END",
    )
    .bind(&s.org_id)
    .bind(&s.app_id)
    .bind(&s.package_id)
    .bind(&s.actor.kind)
    .bind(&s.actor.id)
    .fetch_all(conn)
    .await
    .db()?;
    let mut out: Vec<Item> = Vec::new();
    for r in &rows {
        let item = Item::from_row(r).db()?;
        if out.last().and_then(|l| l.key.as_ref()) != item.key.as_ref() {
            out.push(item);
        }
    }
    Ok(out)
}

/// Words of a search, for the full-text query: letters and digits only, at most 16.
fn words(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(16)
        .map(str::to_lowercase)
        .collect()
}

/// Archive memories of `s` (the actor's and shared ones) matching `q`: full-text
/// matches by rank, then substring matches, then — with no `q` — the most recent.
pub async fn recall(
    conn: &mut AnyConnection,
    backend: Backend,
    s: &Scope,
    q: Option<&str>,
    limit: i64,
) -> Result<Vec<Item>> {
    let bind = |sql: &'static str, arg: String| {
        sqlx::query(sql)
            .bind(arg)
            .bind(s.org_id.as_str().to_owned())
            .bind(s.app_id.as_str().to_owned())
            .bind(s.package_id.clone())
            .bind(s.actor.kind.clone())
            .bind(s.actor.id.clone())
    };
    let q = q.map(str::trim).filter(|q| !q.is_empty());
    let Some(q) = q else {
        let sql = "SELECT m.id, m.actor_type, m.actor_id, m.content, m.run_id, m.created_at, NULL AS key, \
               m.created_at AS updated_at FROM agent_memories m \
             WHERE $1 = '' AND m.org_id = $2 AND m.application_id = $3 AND m.package_id = $4 \
               AND ((m.actor_type = $5 AND m.actor_id = $6) OR m.actor_type = 'shared') \
             ORDER BY m.id DESC LIMIT 50";
        let rows = bind(sql, String::new()).fetch_all(&mut *conn).await.db()?;
        return rows
            .iter()
            .take(limit as usize)
            .map(Item::from_row)
            .collect::<sqlx::Result<Vec<_>>>()
            .db();
    };
    let mut out: Vec<Item> = Vec::new();
    let words = words(q);
    if !words.is_empty() {
        let (sql, arg) = match backend {
            Backend::Sqlite => (
                "SELECT m.id, m.actor_type, m.actor_id, m.content, m.run_id, m.created_at, NULL AS key, \
               m.created_at AS updated_at FROM agent_memories_fts \
                 JOIN agent_memories m ON m.id = agent_memories_fts.rowid \
                 WHERE agent_memories_fts MATCH $1 AND m.org_id = $2 AND m.application_id = $3 \
                   AND m.package_id = $4 \
                   AND ((m.actor_type = $5 AND m.actor_id = $6) OR m.actor_type = 'shared') \
                 ORDER BY agent_memories_fts.rank, m.id DESC LIMIT 50",
                words
                    .iter()
                    .map(|w| format!("\"{w}\""))
                    .collect::<Vec<_>>()
                    .join(" OR "),
            ),
            Backend::Postgres => (
                "SELECT m.id, m.actor_type, m.actor_id, m.content, m.run_id, m.created_at, NULL AS key, \
               m.created_at AS updated_at FROM agent_memories m \
                 WHERE m.tsv @@ to_tsquery('english', $1) AND m.org_id = $2 \
                   AND m.application_id = $3 AND m.package_id = $4 \
                   AND ((m.actor_type = $5 AND m.actor_id = $6) OR m.actor_type = 'shared') \
                 ORDER BY ts_rank(m.tsv, to_tsquery('english', $1)) DESC, m.id DESC LIMIT 50",
                words.join(" | "),
            ),
        };
        for r in bind(sql, arg).fetch_all(&mut *conn).await.db()? {
            out.push(Item::from_row(&r).db()?);
        }
    }
    if (out.len() as i64) < limit {
        let pattern = format!(
            "%{}%",
            q.to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let sql = "SELECT m.id, m.actor_type, m.actor_id, m.content, m.run_id, m.created_at, NULL AS key, \
               m.created_at AS updated_at FROM agent_memories m \
             WHERE LOWER(m.content) LIKE $1 ESCAPE '\\' AND m.org_id = $2 \
               AND m.application_id = $3 AND m.package_id = $4 \
               AND ((m.actor_type = $5 AND m.actor_id = $6) OR m.actor_type = 'shared') \
             ORDER BY m.id DESC LIMIT 50";
        for r in bind(sql, pattern).fetch_all(&mut *conn).await.db()? {
            let item = Item::from_row(&r).db()?;
            if !out.iter().any(|o| o.id == item.id) {
                out.push(item);
            }
        }
    }
    out.truncate(limit.max(0) as usize);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::words;

    #[test]
    fn search_words_drop_query_syntax() {
        assert_eq!(
            words("User \"prefers\" py-thon; DROP*"),
            ["user", "prefers", "py", "thon", "drop"]
        );
        assert!(words("  ** ").is_empty());
    }
}
