//! A page of runs (`GET /api/runs`, an agent's runs). On SQLite the database renders
//! the page as the API's JSON in one statement ([`store::list_json`]) and the server
//! writes it out as it is: no row per run through the driver, no [`store::Run`] per
//! row, no serializer. Reading rows and serializing them was ~70% of the server's
//! time on this route (perf, 20 runs a page). On PostgreSQL the rows are read through
//! its own driver (the read pool, `Db::reads`) and serialized as [`RunView`]s:
//! building JSON there costs more than it saves.
//!
//! [`OBJECT`] must render a run exactly as [`RunView`] serializes it: the same keys
//! in the same order and the same values. `run_list::list_items_are_the_run_objects`
//! compares the two byte for byte over runs whose every listed column is set.

use std::fmt::Write as _;
use std::sync::OnceLock;

use bytes::Bytes;
use corral_core::{AppId, OrgId};

use super::page_cache::PageKey;
use super::*;

/// A stored text column as a JSON string, or `null`.
macro_rules! text {
    ($col:literal) => {
        Json::Sql(concat!("json_quote(", $col, ")"))
    };
}

/// A stored JSON column as [`RunView`] serves it (`raw_json`): the stored text as it
/// is, or null when absent or unreadable.
macro_rules! raw {
    ($col:literal) => {
        concat!(
            "CASE WHEN json_valid(",
            $col,
            ") THEN ",
            $col,
            " ELSE 'null' END"
        )
    };
}

/// A stored JSON column as [`RunView`] serves a parsed `Value`: re-rendered compact
/// (the server stores it compact with its keys sorted, as a `Value` prints them), or
/// null when absent or unreadable.
macro_rules! parsed {
    ($col:literal) => {
        concat!(
            "CASE WHEN json_valid(",
            $col,
            ") THEN json(",
            $col,
            ") ELSE 'null' END"
        )
    };
}

/// A millisecond timestamp column as `to_rfc3339` writes it (`2026-01-02T03:04:05.678Z`),
/// or `null`. SQLite keeps the time as whole milliseconds (`x / 1000.0` goes back
/// exactly), and `%f` is the seconds with their milliseconds.
macro_rules! time {
    ($col:literal) => {
        Json::Sql(concat!(
            "json_quote(strftime('%Y-%m-%dT%H:%M:%fZ', ",
            $col,
            " / 1000.0, 'unixepoch'))"
        ))
    };
}

/// `true` or `false`.
macro_rules! flag {
    ($cond:literal) => {
        Json::Sql(concat!(
            "CASE WHEN ",
            $cond,
            " THEN 'true' ELSE 'false' END"
        ))
    };
}

/// A field's value in [`OBJECT`].
enum Json {
    /// The same JSON text for every run.
    Lit(&'static str),
    /// An SQL expression that yields the JSON text of the value (never SQL `NULL`).
    Sql(&'static str),
}

/// The run object, field by field in [`RunView`]'s order: (key, value over the list's
/// aliases `r` run, `u` user, `e` end-user, `k` API key). `null` is a field no listed
/// run has (as in `RunView::from`).
const OBJECT: &[(&str, Json)] = &[
    ("id", text!("r.id")),
    ("packageId", text!("r.package_id")),
    ("userId", text!("r.user_id")),
    ("endUserId", text!("r.end_user_id")),
    ("apiKeyId", text!("r.api_key_id")),
    ("orgId", text!("r.org_id")),
    ("applicationId", text!("r.application_id")),
    ("scheduleId", text!("r.schedule_id")),
    ("status", text!("r.status")),
    ("input", Json::Sql(raw!("r.input"))),
    ("result", Json::Sql(raw!("r.result"))),
    ("artifacts", Json::Lit("null")),
    ("checkpoint", Json::Lit("null")),
    ("error", text!("r.error")),
    (
        "metadata",
        Json::Sql(concat!(
            "CASE WHEN r.error_code IS NULL THEN 'null' ELSE concat('{\"error_code\":', \
             json_quote(r.error_code), ',\"error_details\":', ",
            raw!("r.error_details"),
            ", '}') END"
        )),
    ),
    ("generation", Json::Sql(raw!("r.generation"))),
    ("generation_override", Json::Lit("null")),
    // The run's creation, as `RunView::from` has it.
    ("started_at", time!("r.created_at")),
    ("completed_at", time!("r.completed_at")),
    ("duration", text!("r.duration_ms")),
    ("cost", Json::Lit("null")),
    ("cost_pricing_status", Json::Lit("null")),
    ("runNumber", text!("r.run_number")),
    ("token_usage", Json::Sql(raw!("r.token_usage"))),
    ("version_label", text!("r.version_label")),
    ("version_ref", text!("r.version_ref")),
    ("proxy_label", text!("r.proxy_label")),
    ("model_label", text!("r.model_label")),
    ("model_source", text!("r.model_source")),
    ("runner_name", text!("r.runner_name")),
    ("runner_kind", text!("r.runner_kind")),
    ("agent_scope", text!("r.agent_scope")),
    ("agent_name", text!("r.agent_name")),
    ("runOrigin", text!("r.origin")),
    ("contextSnapshot", Json::Sql(parsed!("r.context_snapshot"))),
    ("modelCredentialId", Json::Lit("null")),
    ("connection_overrides", Json::Lit("null")),
    ("dependency_overrides", Json::Lit("null")),
    ("user_name", text!("u.name")),
    ("end_user_name", text!("COALESCE(e.name, e.external_id)")),
    ("api_key_name", text!("k.name")),
    ("schedule_name", text!("r.schedule_name")),
    ("connections_used", Json::Lit("null")),
    ("package_ephemeral", flag!("r.kind = 'inline'")),
    ("unread", flag!("r.unread <> 0")),
    ("document_counts", Json::Lit(r#"{"input":0,"output":0}"#)),
    ("primary_document_id", Json::Lit("null")),
];

/// [`OBJECT`] as one SQL expression: `concat(…)` of the object's text, the keys and
/// every [`Json::Lit`] merged into the literals between the values. It serves stored
/// JSON as stored, as [`RunView`] does; `json_object` re-renders it. Both cost the
/// same (perf, 20 runs a page: `json_object` 18% of the server's time, `json_quote`
/// and `concat` 18%).
fn object_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let mut args = Vec::new();
        let mut lit = String::from("{");
        for (i, (key, value)) in OBJECT.iter().enumerate() {
            if i > 0 {
                lit.push(',');
            }
            // The keys are plain ASCII: JSON needs no escape and SQL no doubled quote.
            let _ = write!(lit, "\"{key}\":");
            match value {
                Json::Lit(text) => lit.push_str(text),
                Json::Sql(expr) => {
                    args.push(format!("'{lit}'"));
                    args.push((*expr).to_owned());
                    lit.clear();
                }
            }
        }
        lit.push('}');
        args.push(format!("'{lit}'"));
        format!("concat({})", args.join(", "))
    })
}

/// The page `f` selects (`f.limit` is ignored: `limit` is the page's size) as a
/// [`RunList`] response. Takes its own connection: on PostgreSQL from the read pool.
/// On SQLite a page is served again while its list version holds (`page_cache.rs`).
pub(super) async fn run_list(
    state: &AppState,
    org_id: &OrgId,
    app_id: &AppId,
    mut f: store::ListFilter<'_>,
    limit: i64,
) -> ApiResult<Response> {
    let Some(reads) = state.db.reads() else {
        f.limit = limit;
        let json = |body: Bytes| {
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response()
        };
        let key = PageKey::new(org_id, app_id, &f);
        let mut conn = state.db.conn().await?;
        if let Some(kept) = state.run_pages.get(&key) {
            if store::list_version(&mut conn, app_id).await? == kept.version {
                state.run_pages.hit();
                return Ok(json(kept.body));
            }
        }
        let page = store::list_json(&mut conn, org_id, app_id, &f, object_sql()).await?;
        drop(conn);
        let has_more = f.offset.max(0) + page.count < page.total;
        let mut body = String::with_capacity(page.objects.len() + 64);
        body.push_str(r#"{"object":"list","data":["#);
        body.push_str(&page.objects);
        // Writing to a String cannot fail.
        let _ = write!(body, r#"],"total":{},"hasMore":{has_more}}}"#, page.total);
        let body = Bytes::from(body);
        state.run_pages.insert(key, page.version, body.clone());
        return Ok(json(body));
    };
    // One row past the page tells whether more follow.
    f.limit = limit + 1;
    let (mut rows, total) = store::list_pg(reads, org_id, app_id, &f).await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    Ok(Json(RunList {
        object: "list",
        data: rows.into_iter().map(RunView::from).collect(),
        total,
        has_more,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    /// The `AFTER UPDATE OF` triggers of migration 0016, as table → the columns whose
    /// update bumps the list version.
    fn bumping_columns() -> BTreeMap<String, BTreeSet<String>> {
        let sql = include_str!("../../../../../migrations/sqlite/0016_run_list_versions.sql");
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let flat = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        for part in flat.split("AFTER UPDATE OF ").skip(1) {
            let (cols, rest) = part.split_once(" ON ").expect("ON after the columns");
            let table = rest.split_whitespace().next().expect("a table");
            out.entry(table.to_owned())
                .or_default()
                .extend(cols.split(',').map(|c| c.trim().to_owned()));
        }
        out
    }

    /// Every `alias.column` the SQL names.
    fn columns_read(sql: &str) -> BTreeSet<(char, String)> {
        let bytes = sql.as_bytes();
        let mut out = BTreeSet::new();
        for (i, w) in bytes.windows(2).enumerate() {
            let alias = w[0] as char;
            let starts = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
            if w[1] == b'.' && starts && "ruekt".contains(alias) {
                let col: String = sql[i + 2..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !col.is_empty() {
                    out.insert((alias, col));
                }
            }
        }
        out
    }

    /// A page served from the cache is only as fresh as the triggers are complete: an
    /// update of any column the list statement reads (the object, every filter, the
    /// order) must bump the version.
    #[test]
    fn every_column_a_page_reads_bumps_the_list_version() {
        let every_filter = store::ListFilter {
            package_id: Some("p"),
            user_id: Some("u"),
            end_user_id: Some("e"),
            schedule_id: Some("s"),
            kind: Some("k"),
            status: Some("st"),
            created_from: Some(1),
            created_to: Some(2),
            limit: 20,
            offset: 0,
        };
        let sql = store::list_json_sql(&every_filter, object_sql());
        let read = columns_read(&sql);
        assert!(read.len() > 40, "the parser sees the columns: {read:?}");
        let bumps = bumping_columns();
        for (alias, col) in read {
            let table = match alias {
                'r' | 't' => "runs",
                'u' => "users",
                'e' => "end_users",
                'k' => "api_keys",
                _ => unreachable!(),
            };
            assert!(
                bumps.get(table).is_some_and(|c| c.contains(&col)),
                "{table}.{col} is read by the runs list but an update of it does not bump \
                 run_list_versions (migrations/sqlite/0016_run_list_versions.sql)"
            );
        }
    }
}
