//! Uploads and documents: stage bytes (`POST /api/uploads`, PUT to the signed URL),
//! consume them as a run's `upload://` input (content checked by magic bytes against
//! the field's `contentMediaType`), read them back as the run's document, through the
//! user API and the run's own signed routes; agent outputs; keep, delete, retention
//! (blobs deleted through the storage-deletion outbox).

use std::time::Duration;

use corral_mockllm::{MockLlm, Turn};
use corral_protocol::SigningSecret;
use corral_testkit::{both, Backend, Client, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

use crate::run_events::{running_run, SINK};
use crate::runs::{app_with_model, wait_terminal};

const PDF: &[u8] = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01";

fn manifest() -> Value {
    json!({
        "name": "@inline/reader", "version": "0.0.0", "type": "agent", "schema_version": "2.0",
        "display_name": "Reader",
        "input": {"schema": {"type": "object", "properties": {
            "report": {"type": "string", "format": "uri", "contentMediaType": "application/pdf"}
        }, "required": ["report"]}},
        "output": {"schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}
    })
}

/// Creates an upload and PUTs `bytes` to its URL; returns the descriptor.
async fn stage(app: &TestApp, c: &Client, name: &str, mime: &str, bytes: &[u8]) -> Value {
    let d = c
        .post(
            "/api/uploads",
            json!({"name": name, "size": bytes.len(), "mime": mime}),
            201,
        )
        .await;
    let st = put_content(app, &d, bytes).await;
    assert_eq!(st, 204);
    d
}

async fn put_content(app: &TestApp, d: &Value, bytes: &[u8]) -> u16 {
    let url = d["url"].as_str().unwrap();
    let path = &url[url.find("/api/").unwrap()..];
    let r = app
        .client()
        .send_raw(
            Method::PUT,
            path,
            d["headers"]["Content-Type"].as_str().unwrap(),
            bytes.to_vec(),
        )
        .await;
    r.status
}

/// Blobs are deleted by the storage-deletion worker, woken by the deletion.
pub(crate) async fn wait_blob_gone(app: &TestApp, key: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while app.state.blobs.get(key).await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "blob {key} still stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn signed_get(app: &TestApp, path: &str, secret: &str) -> reqwest::Response {
    let s = SigningSecret::parse(secret).unwrap();
    let h = s.sign_headers(
        &format!("msg_{}", uuid::Uuid::new_v4().simple()),
        corral_core::time::now_ms() / 1000,
        b"",
    );
    let mut req = reqwest::Client::new().get(format!("{}{path}", app.base));
    for (k, v) in h.pairs() {
        req = req.header(k, v);
    }
    req.send().await.unwrap()
}

async fn an_upload_is_consumed_by_a_run(b: Backend) {
    let mock = MockLlm::start(vec![
        Turn::tool_call("output", json!({"ok": true})),
        Turn::text("Done."),
    ])
    .await
    .unwrap();
    let app = app_with_model(b, &mock, |_| {}).await;
    let s = app.user_with_org("Uploader").await;
    let c = &s.client;

    // Bad descriptors change nothing.
    for bad in [
        json!({"name": "", "size": 10, "mime": "application/pdf"}),
        json!({"name": "a.pdf", "size": 0, "mime": "application/pdf"}),
        json!({"name": "a.pdf", "size": 104857601, "mime": "application/pdf"}),
        json!({"name": "a.pdf", "size": 10, "mime": "pdf"}),
        json!({"name": "a.pdf", "size": 10, "mime": "application/pdf", "sha256": "xyz"}),
    ] {
        let r = c
            .send(Method::POST, "/api/uploads", Some(bad.clone()), &[])
            .await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert_eq!(r.code(), "validation_failed");
    }
    assert_eq!(app.scalar("SELECT COUNT(*) FROM uploads").await, 0);

    // The descriptor, then the bytes: exactly the declared size, once.
    let d = c
        .post(
            "/api/uploads",
            json!({"name": "../q3/report.pdf", "size": PDF.len(), "mime": "application/pdf"}),
            201,
        )
        .await;
    assert_eq!(d["object"], "upload");
    assert_eq!(d["method"], "PUT");
    let uri = d["uri"].as_str().unwrap().to_owned();
    assert_eq!(uri, format!("upload://{}", d["id"].as_str().unwrap()));
    // Not written yet: a run refuses it.
    let r = c
        .send(
            Method::POST,
            "/api/runs/inline/validate",
            Some(json!({"manifest": manifest(), "prompt": "Read.", "input": {"report": uri}})),
            &[],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["errors"][0]["code"], "upload_not_written");
    assert_eq!(put_content(&app, &d, &PDF[..10]).await, 400);
    assert_eq!(put_content(&app, &d, &[PDF, b"extra"].concat()).await, 413);
    let bad_token = app
        .client()
        .send_raw(
            Method::PUT,
            "/api/uploads/_content?token=abc.def",
            "application/pdf",
            PDF.to_vec(),
        )
        .await;
    assert_eq!(bad_token.status, 401);
    assert_eq!(put_content(&app, &d, PDF).await, 204);
    assert_eq!(put_content(&app, &d, PDF).await, 409);

    // Magic bytes must match the declared type and the field's contentMediaType.
    let fake = stage(
        &app,
        c,
        "fake.pdf",
        "application/pdf",
        b"just some text, not a pdf",
    )
    .await;
    let png = stage(&app, c, "pic.png", "image/png", PNG).await;
    for (u, code) in [
        (&fake, "content_type_mismatch"),
        (&png, "content_type_mismatch"),
    ] {
        let r = c
            .send(
                Method::POST,
                "/api/runs/inline",
                Some(json!({"manifest": manifest(), "prompt": "Read.", "input": {"report": u["uri"]}})),
                &[],
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(r.body["errors"][0]["code"], code, "{}", r.text);
        assert_eq!(r.body["errors"][0]["field"], "input.report");
    }
    // Another user's upload is not found.
    let other = app.user_with_org("Other").await;
    let theirs = stage(&app, &other.client, "x.pdf", "application/pdf", PDF).await;
    let r = c
        .send(
            Method::POST,
            "/api/runs/inline/validate",
            Some(json!({"manifest": manifest(), "prompt": "Read.", "input": {"report": theirs["uri"]}})),
            &[],
        )
        .await;
    assert_eq!(
        r.body["errors"][0]["code"], "upload_not_found",
        "{}",
        r.text
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM runs").await, 0);

    // The run consumes it: its input now names a durable document.
    let run = c
        .post(
            "/api/runs/inline",
            json!({"manifest": manifest(), "prompt": "Read.", "input": {"report": uri}}),
            201,
        )
        .await;
    let run_id = run["id"].as_str().unwrap().to_owned();
    let doc_uri = run["input"]["report"].as_str().unwrap().to_owned();
    let doc_id = doc_uri
        .strip_prefix("document://")
        .expect("document uri")
        .to_owned();
    wait_terminal(&s, &run_id, Duration::from_secs(60)).await;

    let list = c.get("/api/documents", 200).await;
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    let doc = &list["data"][0];
    assert_eq!(doc["id"], doc_id.as_str());
    assert_eq!(doc["purpose"], "user_upload");
    assert_eq!(doc["run_id"], run_id.as_str());
    // Path separators are stripped from the name.
    assert_eq!(doc["name"], "report.pdf");
    assert_eq!(doc["size"], PDF.len());
    assert_eq!(doc["preview_kind"], "pdf");
    assert_eq!(doc["capabilities"]["delete"], true);
    assert!(doc["expiresAt"].is_string());
    let filtered = c.get("/api/documents?purpose=agent_output", 200).await;
    assert_eq!(filtered["data"].as_array().unwrap().len(), 0);
    let r = c
        .send(Method::GET, "/api/documents?purpose=nope", None, &[])
        .await;
    assert_eq!(r.status, 400);

    let r = c
        .send(
            Method::GET,
            &format!("/api/documents/{doc_id}/content"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/pdf"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.text.as_bytes(), PDF);
    // Another tenant cannot see it.
    let r = other
        .client
        .send(Method::GET, &format!("/api/documents/{doc_id}"), None, &[])
        .await;
    assert_eq!(r.status, 404);

    // The run's runtime reads its inputs with the run's sink secret.
    let run_row = {
        let mut conn = app.state.db.conn().await.unwrap();
        corral_store::runs::get_internal(&mut conn, &corral_core::RunId::new(run_id.clone()))
            .await
            .unwrap()
            .unwrap()
    };
    let secret = corral_engine::runs::open_sink_secret(&app.state, &run_row).unwrap();
    let r = signed_get(&app, &format!("/api/runs/{run_id}/documents"), &secret).await;
    assert_eq!(r.status(), 200);
    let manifest_body: Value = r.json().await.unwrap();
    let ws = manifest_body["documents"][0]["workspace_name"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(manifest_body["documents"][0]["size"], PDF.len());
    let r = signed_get(&app, &format!("/api/runs/{run_id}/documents/{ws}"), &secret).await;
    assert_eq!(r.status(), 200);
    assert_eq!(&r.bytes().await.unwrap()[..], PDF);
    let r = signed_get(&app, &format!("/api/runs/{run_id}/documents"), SINK).await;
    assert_eq!(r.status(), 401);
    // An inline run has no package to provision.
    let r = signed_get(&app, &format!("/api/runs/{run_id}/workspace"), &secret).await;
    assert_eq!(r.status(), 404);

    // The upload stays re-consumable during retention: a second run reuses the document.
    mock.push(Turn::tool_call("output", json!({"ok": true})));
    mock.push(Turn::text("Done."));
    let again = c
        .post(
            "/api/runs/inline",
            json!({"manifest": manifest(), "prompt": "Read.", "input": {"report": uri}}),
            201,
        )
        .await;
    assert_eq!(again["input"]["report"], doc_uri.as_str());
    wait_terminal(&s, again["id"].as_str().unwrap(), Duration::from_secs(60)).await;

    // Carried by runs: not deletable; keep pins it.
    let r = c
        .send(
            Method::DELETE,
            &format!("/api/documents/{doc_id}"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    let kept = c
        .post(&format!("/api/documents/{doc_id}/keep"), json!({}), 200)
        .await;
    assert!(kept["expiresAt"].is_null());

    // Retention: unconsumed uploads and their bytes go; the consumed one's document stays.
    let later = corral_core::time::now_ms() + 25 * 3_600_000;
    let (uploads, _) = corral_engine::documents::sweep(&app.state, later)
        .await
        .unwrap();
    assert_eq!(uploads, 3, "the three never consumed lose their bytes");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM uploads").await, 0);
    let fake_key = format!("uploads/{}/{}", s.org_id, fake["id"].as_str().unwrap());
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM storage_deletion_jobs WHERE reason = 'upload_expired'")
            .await,
        3,
        "queued with the rows' deletion"
    );
    wait_blob_gone(&app, &fake_key).await;
    let r = c
        .send(
            Method::GET,
            &format!("/api/documents/{doc_id}/content"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    let r = c
        .send(
            Method::POST,
            "/api/runs/inline/validate",
            Some(json!({"manifest": manifest(), "prompt": "Read.", "input": {"report": uri}})),
            &[],
        )
        .await;
    assert_eq!(r.body["errors"][0]["code"], "upload_not_found");
    // A document reference still works.
    let ok = c
        .post(
            "/api/runs/inline/validate",
            json!({"manifest": manifest(), "prompt": "Read.", "input": {"report": doc_uri}}),
            200,
        )
        .await;
    assert_eq!(ok["valid"], true);
}

/// A running agent publishes outputs: idempotent on (sha256, name), a webhook-id is
/// single-use, `primary` moves; members see outputs, delete removes the bytes.
async fn agents_publish_outputs(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("Publisher").await;
    let run = running_run(&app, &s).await;
    let path = format!("/api/runs/{run}/documents");
    let publish = |id: &'static str, name: &'static str, body: &'static [u8], primary: bool| {
        let app_base = app.base.clone();
        let path = path.clone();
        async move {
            let secret = SigningSecret::parse(SINK).unwrap();
            let h = secret.sign_headers(id, corral_core::time::now_ms() / 1000, b"");
            let mut req = reqwest::Client::new()
                .post(format!("{app_base}{path}"))
                .header("x-document-name", name)
                .header("content-type", "text/plain")
                .body(body.to_vec());
            if primary {
                req = req.header("x-document-presentation", "primary");
            }
            for (k, v) in h.pairs() {
                req = req.header(k, v);
            }
            let r = req.send().await.unwrap();
            let st = r.status().as_u16();
            (st, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (st, first) = publish("m1", "summary%20%C3%A9t%C3%A9.txt", b"hello", false).await;
    assert_eq!(st, 201, "{first}");
    assert_eq!(first["name"], "summary été.txt");
    assert!(first["presentation"].is_null());
    let (st, same) = publish("m2", "summary%20%C3%A9t%C3%A9.txt", b"hello", true).await;
    assert_eq!(st, 200, "{same}");
    assert_eq!(same["id"], first["id"]);
    assert_eq!(same["presentation"], "primary");
    let (st, second) = publish("m3", "other.txt", b"bye", true).await;
    assert_eq!(st, 201);
    assert_eq!(second["presentation"], "primary");
    // A replayed webhook-id with other bytes is refused.
    let (st, e) = publish("m3", "other.txt", b"evil", false).await;
    assert_eq!(st, 409);
    assert_eq!(e["code"], "message_replayed");
    let (st, e) = publish("m4", "%E0%A4%A", b"x", false).await;
    assert_eq!(st, 400, "{e}");

    let c = &s.client;
    let list = c.get("/api/documents?purpose=agent_output", 200).await;
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let first_now = data.iter().find(|d| d["id"] == first["id"]).unwrap();
    assert!(
        first_now["presentation"].is_null(),
        "primary moved to the last one"
    );
    // Pages of one, newest first.
    let p1 = c.get("/api/documents?limit=1", 200).await;
    assert_eq!(p1["hasMore"], true);
    assert_eq!(p1["data"][0]["id"], second["id"]);
    let p2 = c
        .get(
            &format!(
                "/api/documents?limit=1&startingAfter={}",
                second["id"].as_str().unwrap()
            ),
            200,
        )
        .await;
    assert_eq!(p2["data"][0]["id"], first["id"]);
    assert_eq!(p2["hasMore"], false);

    let id = first["id"].as_str().unwrap();
    let key: String = sqlx::query_scalar("SELECT storage_key FROM documents WHERE id = $1")
        .bind(id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert!(app.state.blobs.get(&key).await.unwrap().is_some());
    let r = c
        .send(Method::DELETE, &format!("/api/documents/{id}"), None, &[])
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    wait_blob_gone(&app, &key).await;
    let r = c
        .send(Method::GET, &format!("/api/documents/{id}"), None, &[])
        .await;
    assert_eq!(r.status, 404);

    // A finished run publishes nothing.
    app.sql(&format!(
        "UPDATE runs SET status = 'success' WHERE id = '{run}'"
    ))
    .await;
    let (st, e) = publish("m5", "late.txt", b"late", false).await;
    assert_eq!(st, 409);
    assert_eq!(e["code"], "run_not_running");
}

both!(an_upload_is_consumed_by_a_run, agents_publish_outputs);
