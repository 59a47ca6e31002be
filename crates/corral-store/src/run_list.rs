//! Lists of runs (`GET /api/runs`, an agent's runs, the caller's recent runs): the
//! filter, the page of [`Run`]s ([`list`]; on PostgreSQL's own driver [`list_pg`]),
//! and on SQLite the page as the API's JSON, built by the database in one statement
//! ([`list_json`]).

use std::sync::OnceLock;

use corral_core::{AppId, OrgId};
use sqlx::postgres::PgPool;
use sqlx::{AnyConnection, Database, Encode, FromRow, Row, Type};

use crate::runs::Run;
use crate::{Result, SqlxResultExt};

/// The listed columns, as (field of [`Run`], SQL expression): every column but the
/// frozen `definition` (the agent's prompt, schemas and tools, kilobytes per run that
/// no list shows) and the run's secrets (sink secret, run-token hash), read as `''`.
/// [`list`] on SQLite reads each row as one JSON object built by the database
/// (`json_object`) and deserializes it: one value per row through the `Any` driver
/// instead of 48, whose per-value conversions and allocations cost more. On
/// PostgreSQL the columns come as they are: its `json_build_object` costs ~30 µs a
/// row (argument types looked up per call), 2.7× the plain query (pgbench, 21 rows:
/// 1.43 ms → 0.53 ms); the API reads them through PostgreSQL's own driver instead
/// ([`list_pg`]), which reads a value where it lies in the row's buffer.
const LISTED: &[(&str, &str)] = &[
    ("id", "r.id"),
    ("org_id", "r.org_id"),
    ("application_id", "r.application_id"),
    ("package_id", "r.package_id"),
    ("agent_scope", "r.agent_scope"),
    ("agent_name", "r.agent_name"),
    ("kind", "r.kind"),
    ("run_number", "r.run_number"),
    ("status", "r.status"),
    ("input", "r.input"),
    ("result", "r.result"),
    ("error", "r.error"),
    ("error_code", "r.error_code"),
    ("error_details", "r.error_details"),
    ("version_label", "r.version_label"),
    ("version_ref", "r.version_ref"),
    ("definition", "CAST('' AS TEXT)"),
    ("model_label", "r.model_label"),
    ("model_source", "r.model_source"),
    ("proxy_label", "r.proxy_label"),
    ("generation", "r.generation"),
    ("user_id", "r.user_id"),
    ("end_user_id", "r.end_user_id"),
    ("api_key_id", "r.api_key_id"),
    ("schedule_id", "r.schedule_id"),
    ("schedule_name", "r.schedule_name"),
    ("timeout_secs", "r.timeout_secs"),
    ("runner_kind", "r.runner_kind"),
    ("runner_name", "r.runner_name"),
    ("server_id", "r.server_id"),
    ("sandbox_id", "r.sandbox_id"),
    ("sink_secret", "CAST('' AS TEXT)"),
    ("sink_expires_at", "r.sink_expires_at"),
    ("run_token_hash", "CAST('' AS TEXT)"),
    ("last_sequence", "r.last_sequence"),
    ("token_usage", "r.token_usage"),
    ("duration_ms", "r.duration_ms"),
    ("unread", "r.unread"),
    ("created_at", "r.created_at"),
    ("started_at", "r.started_at"),
    ("first_event_at", "r.first_event_at"),
    ("last_heartbeat_at", "r.last_heartbeat_at"),
    ("completed_at", "r.completed_at"),
    ("origin", "r.origin"),
    ("context_snapshot", "r.context_snapshot"),
    ("user_name", "u.name"),
    ("end_user_name", "COALESCE(e.name, e.external_id)"),
    ("api_key_name", "k.name"),
];

/// The head of a list's `SELECT` over [`LISTED`] and its `FROM`: on SQLite one JSON
/// object per row (`AS j`) over [`SELECT_LISTED_FROM`]'s joins, on PostgreSQL the
/// columns named as [`Run`]'s fields, the three names read by [`PG_NAMES`]' scalar
/// subqueries from the run alone. Built once per backend.
fn listed_head(postgres: bool) -> &'static str {
    static SQLITE: OnceLock<String> = OnceLock::new();
    static POSTGRES: OnceLock<String> = OnceLock::new();
    if postgres {
        return POSTGRES.get_or_init(|| {
            let cols = LISTED
                .iter()
                .map(|&(k, e)| {
                    let e = PG_NAMES.iter().find(|(n, _)| *n == k).map_or(e, |(_, s)| s);
                    format!("{e} AS {k}")
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!("SELECT {cols}")
        });
    }
    SQLITE.get_or_init(|| format!("SELECT {} AS j", json_object_sql(LISTED)))
}

/// On PostgreSQL the names of who caused a run are scalar subqueries (a primary-key
/// lookup each, at most one row, as the joins): evaluated for the page's rows only,
/// after the sort and the limit, where the joins were built over every matching run
/// before. pgbench, a page of 21 from 25 runs: +10–19% statements per second.
const PG_NAMES: &[(&str, &str)] = &[
    (
        "user_name",
        "(SELECT u.name FROM users u WHERE u.id = r.user_id)",
    ),
    (
        "end_user_name",
        "(SELECT COALESCE(e.name, e.external_id) FROM end_users e WHERE e.id = r.end_user_id)",
    ),
    (
        "api_key_name",
        "(SELECT k.name FROM api_keys k WHERE k.id = r.api_key_id)",
    ),
];

/// The `FROM` of a list's page ([`listed_head`]).
fn listed_from(postgres: bool) -> &'static str {
    if postgres {
        "FROM runs r"
    } else {
        SELECT_LISTED_FROM
    }
}

/// `json_object('key', expr, …)` over (key, SQL expression) pairs, in their order.
fn json_object_sql(fields: &[(&str, &str)]) -> String {
    let args = fields
        .iter()
        .map(|(k, e)| format!("'{k}', {e}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("json_object({args})")
}

const SELECT_LISTED_FROM: &str = "FROM runs r \
     LEFT JOIN users u ON u.id = r.user_id \
     LEFT JOIN end_users e ON e.id = r.end_user_id \
     LEFT JOIN api_keys k ON k.id = r.api_key_id";

#[derive(Debug, Default, Clone)]
pub struct ListFilter<'a> {
    pub package_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub end_user_id: Option<&'a str>,
    pub schedule_id: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub status: Option<&'a str>,
    pub created_from: Option<i64>,
    pub created_to: Option<i64>,
    pub limit: i64,
    pub offset: i64,
}

/// A page of the application's runs, newest first, and the total matching. The rows
/// carry no `definition` (empty): read one run for it.
///
/// One round trip: the total rides on every row as an uncorrelated scalar subquery
/// (evaluated once per statement on both backends). Only a page that starts past the
/// end, with no row to carry it, costs a second query for the total.
pub async fn list(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    app_id: &AppId,
    f: &ListFilter<'_>,
) -> Result<(Vec<Run>, i64)> {
    let binds = binds(org_id, app_id, f);
    let postgres = conn.backend_name() == "PostgreSQL";
    let (page_sql, count_sql) = page_sql(f, postgres);
    let rows = bind_all(&page_sql, &binds)
        .fetch_all(&mut *conn)
        .await
        .db()?;
    let total = match known_total(&rows, f)? {
        Some(total) => total,
        None => bind_all(&count_sql, &binds)
            .fetch_one(&mut *conn)
            .await
            .db()?
            .try_get(0)
            .db()?,
    };
    let runs = rows
        .iter()
        .map(|row| {
            if postgres {
                return Run::from_row(row);
            }
            let j: &str = row.try_get("j")?;
            serde_json::from_str::<Run>(j).map_err(|e| sqlx::Error::Decode(e.into()))
        })
        .collect::<sqlx::Result<Vec<_>>>()
        .db()?;
    Ok((runs, total))
}

/// [`list`] through PostgreSQL's own driver (the read pool, [`crate::Db::reads`]): the
/// same statement, each row read straight into a [`Run`] without the `Any` driver's
/// per-row conversion.
pub async fn list_pg(
    pool: &PgPool,
    org_id: &OrgId,
    app_id: &AppId,
    f: &ListFilter<'_>,
) -> Result<(Vec<Run>, i64)> {
    let binds = binds(org_id, app_id, f);
    let (page_sql, count_sql) = page_sql(f, true);
    let mut conn = pool.acquire().await.db()?;
    let rows = bind_all(&page_sql, &binds)
        .fetch_all(&mut *conn)
        .await
        .db()?;
    let total = match known_total(&rows, f)? {
        Some(total) => total,
        None => bind_all(&count_sql, &binds)
            .fetch_one(&mut *conn)
            .await
            .db()?
            .try_get(0)
            .db()?,
    };
    let runs = rows
        .iter()
        .map(Run::from_listed_pg_row)
        .collect::<sqlx::Result<Vec<_>>>()
        .db()?;
    Ok((runs, total))
}

/// The total a page's rows tell: carried by its first row, or 0 for an empty first
/// page of at least one row (nothing matches). `None` when the page is empty for
/// another reason (past the end, or of size 0): the caller asks for it.
fn known_total<R: Row>(rows: &[R], f: &ListFilter<'_>) -> Result<Option<i64>>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    match rows.first() {
        Some(row) => Ok(Some(row.try_get("total_matching").db()?)),
        None if f.offset <= 0 && f.limit > 0 => Ok(Some(0)),
        None => Ok(None),
    }
}

/// The page's statement (the total on every row as `total_matching`) and the total's
/// own statement, over [`binds`].
fn page_sql(f: &ListFilter<'_>, postgres: bool) -> (String, String) {
    let count_sql = format!("SELECT COUNT(*) FROM runs c WHERE {}", conditions(f, "c"));
    let page_sql = format!(
        "{}, ({count_sql}) AS total_matching {} \
         WHERE {} ORDER BY r.created_at DESC, r.id DESC LIMIT {} OFFSET {}",
        listed_head(postgres),
        listed_from(postgres),
        conditions(f, "r"),
        f.limit.max(0),
        f.offset.max(0)
    );
    (page_sql, count_sql)
}

/// The conditions of a list over `runs` aliased `alias`: the tenant (`$1`, `$2`), then
/// each filter that is set, numbered in [`binds`]'s order.
fn conditions(f: &ListFilter<'_>, alias: &str) -> String {
    let mut conds = vec![
        format!("{alias}.org_id = $1"),
        format!("{alias}.application_id = $2"),
    ];
    let mut n = 2;
    for (set, col, op) in [
        (f.package_id.is_some(), "package_id", "="),
        (f.user_id.is_some(), "user_id", "="),
        (f.end_user_id.is_some(), "end_user_id", "="),
        (f.schedule_id.is_some(), "schedule_id", "="),
        (f.kind.is_some(), "kind", "="),
        (f.status.is_some(), "status", "="),
        (f.created_from.is_some(), "created_at", ">="),
        (f.created_to.is_some(), "created_at", "<="),
    ] {
        if set {
            n += 1;
            conds.push(format!("{alias}.{col} {op} ${n}"));
        }
    }
    conds.join(" AND ")
}

/// The values of [`conditions`]' placeholders, in order.
fn binds(org_id: &OrgId, app_id: &AppId, f: &ListFilter<'_>) -> Vec<Bind> {
    let mut binds: Vec<Bind> = vec![Bind::S(org_id.to_string()), Bind::S(app_id.to_string())];
    for v in [
        f.package_id,
        f.user_id,
        f.end_user_id,
        f.schedule_id,
        f.kind,
        f.status,
    ]
    .into_iter()
    .flatten()
    {
        binds.push(Bind::S(v.to_owned()));
    }
    for v in [f.created_from, f.created_to].into_iter().flatten() {
        binds.push(Bind::I(v));
    }
    binds
}

/// A page of runs as JSON text, built by the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPage {
    /// The page's objects, newest first, separated by commas: what goes between a
    /// JSON array's brackets (empty for an empty page).
    pub objects: String,
    /// How many objects `objects` holds.
    pub count: i64,
    /// How many runs match the filter, read in the same statement as the page.
    pub total: i64,
    /// The application's [`list_version`], read in the same statement as the page.
    pub version: i64,
}

/// The version of the application's runs list: it changes whenever a write could
/// change a page of it (a run inserted, deleted or a listed column updated; a name
/// shown beside a run changed), whoever makes the write (SQLite triggers, migration
/// `0016_run_list_versions`). So a page read at version `v` is the page still while
/// the version is `v`. SQLite only; 0 for an application no run was written to.
pub async fn list_version(conn: &mut AnyConnection, app_id: &AppId) -> Result<i64> {
    sqlx::query_scalar(VERSION_SQL)
        .bind(app_id.as_str())
        .fetch_one(&mut *conn)
        .await
        .db()
}

const VERSION_SQL: &str = "SELECT COALESCE(\
     (SELECT version FROM run_list_versions WHERE application_id = $1), 0)";

/// [`list`] with each run rendered by the database as `object`: an SQL expression
/// over the list's aliases (`r` the run, `u` its user, `e` its end-user, `k` its API
/// key) that yields one JSON object. One statement returns one row: the page joined
/// into one text, its size and the total. So the caller writes the page out as it
/// is, without a row per run through the driver, a [`Run`] per row and a serializer.
/// `f.limit` is the page's size (no look-ahead row: more follow when
/// `offset + count < total`).
///
/// SQLite only. On PostgreSQL, [`list_pg`]: building JSON there costs more than it
/// saves (see [`LISTED`]).
pub async fn list_json(
    conn: &mut AnyConnection,
    org_id: &OrgId,
    app_id: &AppId,
    f: &ListFilter<'_>,
    object: &str,
) -> Result<JsonPage> {
    let binds = binds(org_id, app_id, f);
    let row = bind_all(&list_json_sql(f, object), &binds)
        .fetch_one(&mut *conn)
        .await
        .db()?;
    Ok(JsonPage {
        objects: row
            .try_get::<Option<String>, _>("objects")
            .db()?
            .unwrap_or_default(),
        count: row.try_get("n").db()?,
        total: row.try_get("total").db()?,
        version: row.try_get("version").db()?,
    })
}

/// [`list_json`]'s statement: what it reads, for the triggers that keep
/// [`list_version`] (a test checks they cover every column it reads).
pub fn list_json_sql(f: &ListFilter<'_>, object: &str) -> String {
    // The aggregate takes the rows in the order the subquery yields them: SQLite runs a
    // subquery with ORDER BY and LIMIT under an aggregate as a co-routine, row by row in
    // its order. Its documentation calls group_concat's order arbitrary without an
    // ORDER BY of its own, but that ORDER BY sorts the page's objects a second time, in
    // a temporary b-tree, and was 40% of the statement (20 runs: 208 → 128 µs). The
    // bundled SQLite is pinned by Cargo.lock, and the tests read pages in order.
    format!(
        "SELECT group_concat(j, ',') AS objects, COUNT(*) AS n, \
           (SELECT COUNT(*) FROM runs t WHERE {}) AS total, \
           COALESCE((SELECT version FROM run_list_versions WHERE application_id = $2), 0) \
             AS version \
         FROM (SELECT {object} AS j {SELECT_LISTED_FROM} \
           WHERE {} ORDER BY r.created_at DESC, r.id DESC LIMIT {} OFFSET {})",
        conditions(f, "t"),
        conditions(f, "r"),
        f.limit.max(0),
        f.offset.max(0)
    )
}

enum Bind {
    S(String),
    I(i64),
}

/// `sql` with `binds` bound in order, for either driver (`Any`, or PostgreSQL's own).
fn bind_all<'q, DB: Database>(
    sql: &'q str,
    binds: &'q [Bind],
) -> sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>
where
    &'q str: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
{
    let mut q = sqlx::query(sql);
    for b in binds {
        q = match b {
            Bind::S(s) => q.bind(s.as_str()),
            Bind::I(i) => q.bind(*i),
        };
    }
    q
}
