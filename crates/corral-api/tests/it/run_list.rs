//! `GET /api/runs` read in one round trip: pages and their total (also past the end,
//! where no row carries it), filters, the display names of who caused each run, and
//! the stored JSON columns served as they are (objects, the error metadata, absent or
//! unreadable values as null).

use corral_testkit::{both, Backend, Session, TestApp};
use serde_json::{json, Value};

/// Inserts a finished run straight into the table.
#[allow(clippy::too_many_arguments)]
async fn insert_run(
    app: &TestApp,
    s: &Session,
    n: i64,
    status: &str,
    api_key_id: Option<&str>,
    input: Option<&str>,
    error_code: Option<&str>,
    error_details: Option<&str>,
) -> String {
    let id = format!("run_{}", uuid::Uuid::now_v7());
    sqlx::query(
        "INSERT INTO runs (id, org_id, application_id, kind, run_number, status, version_ref, \
           definition, timeout_secs, sink_secret, sink_expires_at, run_token_hash, created_at, \
           completed_at, api_key_id, input, result, error, error_code, error_details, token_usage) \
         VALUES ($1, $2, $3, 'inline', $4, $5, 'draft', '{}', 300, 'sealed', 0, 'hash', $6, $6, \
           $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&id)
    .bind(&s.org_id)
    .bind(&s.app_id)
    .bind(n)
    .bind(status)
    .bind(1_700_000_000_000 + n * 1000)
    .bind(api_key_id)
    .bind(input)
    .bind((status == "success").then_some(r#"{"output":{"n":1}}"#))
    .bind(error_code.map(|_| "it broke"))
    .bind(error_code)
    .bind(error_details)
    .bind((status == "success").then_some(r#"{"input_tokens":3,"output_tokens":4}"#))
    .execute(app.state.db.pool())
    .await
    .unwrap();
    id
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn pages_totals_filters_and_json_columns(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("Lists").await;
    let (key_id, key) = s.api_key(None).await;
    let keyed = app.client().bearer(&key);

    let mut all = Vec::new();
    for n in 1..=7 {
        let (status, code, details) = match n % 3 {
            0 => (
                "failed",
                Some("llm_error"),
                Some(r#"{"attempts":2,"status":502}"#),
            ),
            1 => ("success", None, None),
            // Unreadable stored JSON reads as null, as it always did.
            _ => ("failed", Some("stalled"), Some("not json")),
        };
        let input = format!(r#"{{"n":{n},"nested":{{"a":[1,2,{{"b":null}}]}}}}"#);
        all.push(
            insert_run(
                &app,
                &s,
                n,
                status,
                Some(&key_id),
                Some(&input),
                code,
                details,
            )
            .await,
        );
    }
    all.reverse(); // newest first

    // Pages: the total is the number matching, whatever the page.
    let first = keyed.get("/api/runs?limit=3", 200).await;
    assert_eq!(ids(&first), all[..3].to_vec());
    assert_eq!(
        (first["total"].as_i64(), first["hasMore"].as_bool()),
        (Some(7), Some(true))
    );
    let last = keyed.get("/api/runs?limit=3&offset=6", 200).await;
    assert_eq!(ids(&last), all[6..].to_vec());
    assert_eq!(
        (last["total"].as_i64(), last["hasMore"].as_bool()),
        (Some(7), Some(false))
    );
    // Past the end no row carries the total: it is still right.
    let past = keyed.get("/api/runs?limit=3&offset=50", 200).await;
    assert!(ids(&past).is_empty());
    assert_eq!(
        (past["total"].as_i64(), past["hasMore"].as_bool()),
        (Some(7), Some(false))
    );

    // Filters apply to the page and to the total alike.
    let failed = keyed.get("/api/runs?status=failed&limit=2", 200).await;
    assert_eq!(failed["total"], 4);
    assert_eq!(failed["data"].as_array().unwrap().len(), 2);
    assert!(failed["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["status"] == "failed"));
    let none = keyed.get("/api/runs?status=running", 200).await;
    assert_eq!((none["total"].as_i64(), ids(&none).len()), (Some(0), 0));
    let none = keyed.get("/api/runs?status=running&offset=5", 200).await;
    assert_eq!((none["total"].as_i64(), ids(&none).len()), (Some(0), 0));

    // The JSON columns, as stored.
    let page = keyed.get("/api/runs?limit=7", 200).await;
    let by_n = |n: i64| {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["runNumber"] == n)
            .unwrap()
            .clone()
    };
    let ok = by_n(7);
    assert_eq!(
        ok["input"],
        json!({"n": 7, "nested": {"a": [1, 2, {"b": null}]}})
    );
    assert_eq!(ok["result"], json!({"output": {"n": 1}}));
    assert_eq!(
        ok["token_usage"],
        json!({"input_tokens": 3, "output_tokens": 4})
    );
    assert_eq!(ok["metadata"], Value::Null);
    assert_eq!(ok["apiKeyId"], key_id.as_str());
    assert_eq!(ok["api_key_name"], "test key");
    let broken = by_n(6);
    assert_eq!(
        broken["metadata"],
        json!({"error_code": "llm_error", "error_details": {"attempts": 2, "status": 502}})
    );
    assert_eq!(broken["result"], Value::Null);
    assert_eq!(broken["error"], "it broke");
    let unreadable = by_n(5);
    assert_eq!(
        unreadable["metadata"],
        json!({"error_code": "stalled", "error_details": null})
    );
    // No secret of the run is part of its object.
    let text = page.to_string();
    assert!(
        !text.contains("sealed") && !text.contains("\"hash\""),
        "{text}"
    );

    // The single run reads the same object.
    let one = keyed.get(&format!("/api/runs/{}", all[1]), 200).await;
    assert_eq!(one, by_n(6));
}

/// Text a serializer must escape: quotes, backslashes, a slash, control characters,
/// DEL, line separators, accents, CJK and an emoji.
pub(crate) const TRICKY: &str =
    "q\"uote \\ back/slash \u{1}\u{8}\u{c}\t\n\r\u{1f} del\u{7f} ls\u{2028} é 日本 😀";

/// The columns that differ between the runs of [`list_items_are_the_run_objects`].
#[derive(Default)]
pub(crate) struct Full<'a> {
    pub(crate) user: Option<&'a str>,
    pub(crate) end_user: Option<&'a str>,
    pub(crate) api_key: Option<&'a str>,
    pub(crate) created: i64,
    pub(crate) completed: Option<i64>,
    /// Every JSON column (input, result, error details, usage, snapshot; the generation
    /// settings when this is not an object).
    pub(crate) json: Option<&'a str>,
    pub(crate) error_code: Option<&'a str>,
    pub(crate) package: bool,
    pub(crate) unread: bool,
}

/// A run with every listed column set, straight into the table; the text columns
/// hold [`TRICKY`] and `n`.
pub(crate) async fn insert_full_run(app: &TestApp, s: &Session, n: i64, f: &Full<'_>) -> String {
    let id = format!("run_{}", uuid::Uuid::now_v7());
    let text = format!("{TRICKY} {n}");
    // The generation settings have a shape of their own in the contract.
    let generation = f.json.map(|j| {
        if j.starts_with('{') {
            r#"{"reasoningLevel":"low","temperature":0.25}"#
        } else {
            j
        }
    });
    sqlx::query(
        "INSERT INTO runs (id, org_id, application_id, package_id, agent_scope, agent_name, \
           kind, run_number, status, input, result, error, error_code, error_details, \
           version_label, version_ref, definition, model_label, model_source, generation, \
           user_id, end_user_id, api_key_id, schedule_id, timeout_secs, runner_kind, \
           runner_name, server_id, sandbox_id, sink_secret, sink_expires_at, run_token_hash, \
           last_sequence, token_usage, duration_ms, unread, created_at, started_at, \
           first_event_at, last_heartbeat_at, completed_at, schedule_name, proxy_label, \
           origin, context_snapshot) \
         VALUES ($1, $2, $3, NULL, $4, $4, $5, $6, 'failed', $7, $7, $4, $8, $7, $4, $4, \
           '{\"prompt\":\"secret definition\"}', $4, $4, $15, $9, $10, $11, $4, 300, $4, $4, \
           $4, $4, 'sealed', 0, 'hash', 42, $7, 1234, $12, $13, $13, $13, $13, $14, $4, $4, \
           CASE WHEN $6 % 2 = 0 THEN 'remote' ELSE 'platform' END, $7)",
    )
    .bind(&id)
    .bind(&s.org_id)
    .bind(&s.app_id)
    .bind(&text)
    .bind(if f.package { "package" } else { "inline" })
    .bind(n)
    .bind(f.json)
    .bind(f.error_code)
    .bind(f.user)
    .bind(f.end_user)
    .bind(f.api_key)
    .bind(i64::from(f.unread))
    .bind(f.created)
    .bind(f.completed)
    .bind(generation)
    .execute(app.state.db.pool())
    .await
    .unwrap();
    id
}

/// A list is its runs' objects, byte for byte as the single run reads them, whatever
/// the columns hold (on SQLite the database writes the list's JSON, see
/// `routes/runs/list_json.rs`).
async fn list_items_are_the_run_objects(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("Parity").await;
    let (key_id, key) = s.api_key(None).await;
    let keyed = app.client().bearer(&key);
    let db = app.state.db.pool();
    for (table, id) in [("users", &s.user_id), ("api_keys", &key_id)] {
        sqlx::query(&format!("UPDATE {table} SET name = $1 WHERE id = $2"))
            .bind(format!("{TRICKY} {table}"))
            .bind(id)
            .execute(db)
            .await
            .unwrap();
    }
    // One end-user with a name, one known only by its external id.
    let mut end_users = Vec::new();
    for (name, external) in [(Some(TRICKY), Some("ext-1")), (None, Some("ext \"2\""))] {
        let id = format!("eu_{}", uuid::Uuid::now_v7());
        sqlx::query(
            "INSERT INTO end_users (id, org_id, application_id, name, external_id, \
               created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 0, 0)",
        )
        .bind(&id)
        .bind(&s.org_id)
        .bind(&s.app_id)
        .bind(name)
        .bind(external)
        .execute(db)
        .await
        .unwrap();
        end_users.push(id);
    }
    // JSON objects as the server stores them (serde_json: compact, keys sorted), and text
    // that is not JSON (served as null).
    let nested = r#"{"a":"é \"q\" \\ \u0001 😀","b":[1,-2.5,1e+30,true,null,{}],"c":{"d":[]}}"#;
    let base = 1_767_323_045_000; // 2026-01-02T03:04:05.000Z
    let cases = [
        Full {
            user: Some(&s.user_id),
            api_key: Some(&key_id),
            created: base + 5,
            completed: Some(base + 60_999),
            json: Some(nested),
            error_code: Some("llm_error"),
            unread: true,
            ..Full::default()
        },
        Full {
            end_user: Some(&end_users[0]),
            created: base + 1_000,
            json: Some("not json"),
            error_code: Some("stalled"),
            package: true,
            ..Full::default()
        },
        Full {
            end_user: Some(&end_users[1]),
            api_key: Some(&key_id),
            created: base + 86_400_123,
            completed: Some(base + 86_400_124),
            json: Some(r#"{"n":7}"#),
            ..Full::default()
        },
        Full {
            created: base + 2_000,
            completed: Some(base + 3_000),
            json: Some(r#"{"k":"text","z":[]}"#),
            package: true,
            unread: true,
            ..Full::default()
        },
        // An error code without details, no JSON at all.
        Full {
            created: base + 3_999,
            error_code: Some("x"),
            ..Full::default()
        },
        // JSON stored with spaces (written by hand or by an older server): served as
        // stored, as the single run serves it.
        Full {
            created: base + 4_000,
            json: Some("{ \"spaced\" : [ 1 , 2 ] }"),
            error_code: Some("spaced"),
            ..Full::default()
        },
        // The first second of 1970.
        Full {
            created: 999,
            completed: Some(1_000),
            json: Some("{}"),
            unread: true,
            ..Full::default()
        },
    ];
    let mut ids = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let id = insert_full_run(&app, &s, n as i64 + 1, case).await;
        ids.push((case.created, id));
    }
    ids.sort_by(|a, b| b.cmp(a)); // newest first
    let mut objects = Vec::new();
    for (_, id) in &ids {
        let one = keyed
            .send(reqwest::Method::GET, &format!("/api/runs/{id}"), None, &[])
            .await;
        assert_eq!(one.status, 200, "{}", one.text);
        objects.push(one.text);
    }
    for (query, from, to, more) in [
        ("limit=7", 0, 7, false),
        ("limit=4", 0, 4, true),
        ("limit=4&offset=4", 4, 7, false),
        ("limit=2&offset=9", 0, 0, false),
    ] {
        let page = keyed
            .send(
                reqwest::Method::GET,
                &format!("/api/runs?{query}"),
                None,
                &[],
            )
            .await;
        assert_eq!(page.status, 200, "{}", page.text);
        assert_eq!(page.header("content-type"), Some("application/json"));
        let expected = format!(
            r#"{{"object":"list","data":[{}],"total":7,"hasMore":{more}}}"#,
            objects[from..to].join(",")
        );
        assert_eq!(page.text, expected, "GET /api/runs?{query}");
    }
    // An empty list.
    let empty = keyed
        .send(reqwest::Method::GET, "/api/runs?status=running", None, &[])
        .await;
    assert_eq!(
        empty.text,
        r#"{"object":"list","data":[],"total":0,"hasMore":false}"#
    );
}

both!(
    pages_totals_filters_and_json_columns,
    list_items_are_the_run_objects
);
