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

both!(pages_totals_filters_and_json_columns);
