//! On SQLite the server keeps the runs-list pages it rendered and serves one again
//! while its application's list version holds (`routes/runs/page_cache.rs`, migration
//! `0016_run_list_versions`). A kept page must never be stale: every write that
//! changes what a list shows, made straight in the database as another connection or
//! process would, is seen by the next read. On PostgreSQL nothing is kept; the same
//! checks pass there too.

use corral_testkit::{both, Backend, TestApp};
use reqwest::Method;

use crate::run_list::{insert_full_run, Full, TRICKY};

/// The two lists read after every change.
const QUERIES: [&str; 2] = ["limit=20", "status=failed&limit=20"];

/// What a list must be now: its runs' single objects (never kept), newest first.
async fn expected(app: &TestApp, keyed: &corral_testkit::Client, query: &str) -> String {
    let status = query.contains("status=failed");
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM runs WHERE ($1 = 0 OR status = 'failed') \
         ORDER BY created_at DESC, id DESC",
    )
    .bind(i64::from(status))
    .fetch_all(app.state.db.pool())
    .await
    .unwrap();
    let mut objects = Vec::new();
    for id in &ids {
        let one = keyed
            .send(Method::GET, &format!("/api/runs/{id}"), None, &[])
            .await;
        assert_eq!(one.status, 200, "{}", one.text);
        objects.push(one.text);
    }
    format!(
        r#"{{"object":"list","data":[{}],"total":{},"hasMore":false}}"#,
        objects.join(","),
        ids.len()
    )
}

/// Reads each list twice and checks both reads against [`expected`]. On SQLite the
/// first read must render the page afresh when `changed` (a kept page would be the
/// old one) and be served from the cache when not; the second read is always kept.
async fn check(
    app: &TestApp,
    keyed: &corral_testkit::Client,
    b: Backend,
    what: &str,
    changed: bool,
) {
    for query in QUERIES {
        let want = expected(app, keyed, query).await;
        for read in 0..2 {
            let hits = app.state.run_pages.hits();
            let page = keyed
                .send(Method::GET, &format!("/api/runs?{query}"), None, &[])
                .await;
            assert_eq!(page.status, 200, "{}", page.text);
            assert_eq!(
                page.text, want,
                "after {what}: GET /api/runs?{query}, read {read}"
            );
            let kept = app.state.run_pages.hits() - hits;
            let should = b == Backend::Sqlite && (read == 1 || !changed);
            assert_eq!(
                kept,
                u64::from(should),
                "after {what}: ?{query} read {read} kept"
            );
        }
    }
}

async fn a_kept_page_follows_every_change(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("Kept").await;
    let (key_id, key) = s.api_key(None).await;
    let keyed = app.client().bearer(&key);
    let db = app.state.db.pool();
    let end_user = format!("eu_{}", uuid::Uuid::now_v7());
    sqlx::query(
        "INSERT INTO end_users (id, org_id, application_id, name, external_id, created_at, \
           updated_at) VALUES ($1, $2, $3, $4, 'ext-1', 0, 0)",
    )
    .bind(&end_user)
    .bind(&s.org_id)
    .bind(&s.app_id)
    .bind(TRICKY)
    .execute(db)
    .await
    .unwrap();
    let base = 1_767_323_045_000;
    let mut runs = Vec::new();
    for n in 0..3 {
        let full = Full {
            user: Some(&s.user_id),
            end_user: Some(&end_user),
            api_key: Some(&key_id),
            created: base + n * 1_000,
            json: Some(r#"{"n":1}"#),
            error_code: Some("llm_error"),
            ..Full::default()
        };
        runs.push(insert_full_run(&app, &s, n + 1, &full).await);
    }
    check(&app, &keyed, b, "the first reads", true).await;
    check(&app, &keyed, b, "nothing", false).await;

    // Columns no list shows: the page is kept.
    sqlx::query(
        "UPDATE runs SET last_sequence = last_sequence + 1, last_heartbeat_at = 5 WHERE id = $1",
    )
    .bind(&runs[0])
    .execute(db)
    .await
    .unwrap();
    check(&app, &keyed, b, "an unlisted column", false).await;

    let run_changes: [(&str, &'static str); 6] = [
        (
            "a status (and the filtered list)",
            "UPDATE runs SET status = 'success' WHERE id = $1",
        ),
        (
            "a result and usage",
            r#"UPDATE runs SET result = '{"r":2}', token_usage = '{"t":1}' WHERE id = $1"#,
        ),
        (
            "read",
            "UPDATE runs SET unread = 0, completed_at = 1767323999000 WHERE id = $1",
        ),
        (
            "an agent's name",
            "UPDATE runs SET agent_name = 'renamed' WHERE id = $1",
        ),
        (
            "an error code",
            "UPDATE runs SET error_code = NULL, error_details = NULL WHERE id = $1",
        ),
        (
            "a creation time (the order)",
            "UPDATE runs SET created_at = 1 WHERE id = $1",
        ),
    ];
    // What is shown beside a run comes from other tables.
    let others: [(&str, &str, &str); 5] = [
        (
            "a user's name",
            "UPDATE users SET name = 'Renamed user' WHERE id = $1",
            &s.user_id,
        ),
        (
            "an end-user's name",
            "UPDATE end_users SET name = NULL WHERE id = $1",
            &end_user,
        ),
        (
            "an end-user's external id",
            "UPDATE end_users SET external_id = 'ext-2' WHERE id = $1",
            &end_user,
        ),
        (
            "an API key's name",
            "UPDATE api_keys SET name = 'renamed key' WHERE id = $1",
            &key_id,
        ),
        (
            "an end-user deleted",
            "DELETE FROM end_users WHERE id = $1",
            &end_user,
        ),
    ];
    let on_runs = run_changes
        .into_iter()
        .enumerate()
        .map(|(i, (what, q))| (what, q, runs[i % runs.len()].as_str()));
    let deleted = (
        "a run deleted",
        "DELETE FROM runs WHERE id = $1",
        runs[1].as_str(),
    );
    for (what, q, id) in on_runs.chain(others).chain([deleted]) {
        sqlx::query(q).bind(id).execute(db).await.unwrap();
        check(&app, &keyed, b, what, true).await;
    }
    let full = Full {
        created: base + 9_000,
        json: Some("{}"),
        error_code: Some("x"),
        ..Full::default()
    };
    insert_full_run(&app, &s, 9, &full).await;
    check(&app, &keyed, b, "a new run", true).await;
}

both!(a_kept_page_follows_every_change);
