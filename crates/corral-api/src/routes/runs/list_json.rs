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

use corral_core::{AppId, OrgId};

use super::*;

/// A stored JSON column as [`RunView`] serves it (`raw_json`): the JSON itself, or
/// null when absent or unreadable.
macro_rules! raw {
    ($col:literal) => {
        concat!("CASE WHEN json_valid(", $col, ") THEN json(", $col, ") END")
    };
}

/// A millisecond timestamp column as `to_rfc3339` writes it (`2026-01-02T03:04:05.678Z`).
/// SQLite keeps the time as whole milliseconds (`x / 1000.0` goes back exactly), and
/// `%f` is the seconds with their milliseconds.
macro_rules! time {
    ($col:literal) => {
        concat!(
            "strftime('%Y-%m-%dT%H:%M:%fZ', ",
            $col,
            " / 1000.0, 'unixepoch')"
        )
    };
}

/// `true` or `false` as JSON.
macro_rules! flag {
    ($cond:literal) => {
        concat!(
            "CASE WHEN ",
            $cond,
            " THEN json('true') ELSE json('false') END"
        )
    };
}

/// The run object, field by field in [`RunView`]'s order: (key, SQL over the list's
/// aliases `r` run, `u` user, `e` end-user, `k` API key). `NULL` is a field no
/// listed run has (as in `RunView::from`).
const OBJECT: &[(&str, &str)] = &[
    ("id", "r.id"),
    ("packageId", "r.package_id"),
    ("userId", "r.user_id"),
    ("endUserId", "r.end_user_id"),
    ("apiKeyId", "r.api_key_id"),
    ("orgId", "r.org_id"),
    ("applicationId", "r.application_id"),
    ("scheduleId", "r.schedule_id"),
    ("status", "r.status"),
    ("input", raw!("r.input")),
    ("result", raw!("r.result")),
    ("artifacts", "NULL"),
    ("checkpoint", "NULL"),
    ("error", "r.error"),
    (
        "metadata",
        concat!(
            "CASE WHEN r.error_code IS NOT NULL THEN json_object('error_code', r.error_code, \
             'error_details', ",
            raw!("r.error_details"),
            ") END"
        ),
    ),
    ("generation", raw!("r.generation")),
    ("generation_override", "NULL"),
    // The run's creation, as `RunView::from` has it.
    ("started_at", time!("r.created_at")),
    ("completed_at", time!("r.completed_at")),
    ("duration", "r.duration_ms"),
    ("cost", "NULL"),
    ("cost_pricing_status", "NULL"),
    ("runNumber", "r.run_number"),
    ("token_usage", raw!("r.token_usage")),
    ("version_label", "r.version_label"),
    ("version_ref", "r.version_ref"),
    ("proxy_label", "r.proxy_label"),
    ("model_label", "r.model_label"),
    ("model_source", "r.model_source"),
    ("runner_name", "r.runner_name"),
    ("runner_kind", "r.runner_kind"),
    ("agent_scope", "r.agent_scope"),
    ("agent_name", "r.agent_name"),
    ("runOrigin", "r.origin"),
    // Stored by serde_json (compact, keys sorted), so as a parsed `Value` prints it.
    ("contextSnapshot", raw!("r.context_snapshot")),
    ("modelCredentialId", "NULL"),
    ("connection_overrides", "NULL"),
    ("dependency_overrides", "NULL"),
    ("user_name", "u.name"),
    ("end_user_name", "COALESCE(e.name, e.external_id)"),
    ("api_key_name", "k.name"),
    ("schedule_name", "r.schedule_name"),
    ("connections_used", "NULL"),
    ("package_ephemeral", flag!("r.kind = 'inline'")),
    ("unread", flag!("r.unread <> 0")),
    ("document_counts", r#"json('{"input":0,"output":0}')"#),
    ("primary_document_id", "NULL"),
];

/// [`OBJECT`] as one `json_object(…)` expression.
fn object_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| store::json_object_sql(OBJECT))
}

/// The page `f` selects (`f.limit` is ignored: `limit` is the page's size) as a
/// [`RunList`] response. Takes its own connection: on PostgreSQL from the read pool.
pub(super) async fn run_list(
    state: &AppState,
    org_id: &OrgId,
    app_id: &AppId,
    mut f: store::ListFilter<'_>,
    limit: i64,
) -> ApiResult<Response> {
    let Some(reads) = state.db.reads() else {
        f.limit = limit;
        let mut conn = state.db.conn().await?;
        let page = store::list_json(&mut conn, org_id, app_id, &f, object_sql()).await?;
        let has_more = f.offset.max(0) + page.count < page.total;
        let mut body = String::with_capacity(page.objects.len() + 64);
        body.push_str(r#"{"object":"list","data":["#);
        body.push_str(&page.objects);
        // Writing to a String cannot fail.
        let _ = write!(body, r#"],"total":{},"hasMore":{has_more}}}"#, page.total);
        return Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response());
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
