//! The storage-deletion outbox, on SQLite and PostgreSQL: deleting a document removes
//! its row at once and queues its blob in the same transaction; the worker deletes
//! the blob. A blob that cannot be deleted (a directory stands where its file was)
//! leaves the job pending with its error, attempts and next attempt; an operator's
//! retry makes it due now, and once the blob can go the job completes. The admin
//! routes: platform operators only (API keys refused), filters, keyset pages with a
//! `Link` header, the dead-letter line. Two workers racing over the same jobs
//! process each exactly once (claims with `FOR UPDATE SKIP LOCKED` on PostgreSQL).

use std::time::{Duration, Instant};

use corral_protocol::SigningSecret;
use corral_testkit::{both, Backend, Client, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

use crate::run_events::{running_run, SINK};

const OPS: &str = "ops@example.com";
const JOBS: &str = "/api/admin/storage-deletion-jobs";

async fn operator_app(b: Backend) -> (TestApp, Client) {
    let app = TestApp::spawn_with(b, |c| c.platform_admin_emails = vec![OPS.into()]).await;
    let ops = app
        .client()
        .sign_up(OPS, "correct horse battery", "Ops")
        .await;
    (app, ops)
}

/// Publishes an agent output of a running run; returns the document's id.
async fn publish(app: &TestApp, run: &str, id: &str, body: &'static [u8]) -> String {
    let secret = SigningSecret::parse(SINK).unwrap();
    let h = secret.sign_headers(id, corral_core::time::now_ms() / 1000, b"");
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/runs/{run}/documents", app.base))
        .header("x-document-name", format!("{id}.txt"))
        .header("content-type", "text/plain")
        .body(body.to_vec());
    for (k, v) in h.pairs() {
        req = req.header(k, v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn storage_key(app: &TestApp, doc: &str) -> String {
    sqlx::query_scalar("SELECT storage_key FROM documents WHERE id = $1")
        .bind(doc)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
}

/// Polls the listing until a job for `key` satisfies `ok`.
async fn wait_job(ops: &Client, status: &str, key: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = ops
            .get(&format!("{JOBS}?status={status}&limit=200"), 200)
            .await;
        let found = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| {
                format!(
                    "{}/{}",
                    j["bucket"].as_str().unwrap(),
                    j["storage_key"].as_str().unwrap()
                ) == key
            })
            .cloned();
        if let Some(j) = found.filter(|j| ok(j)) {
            return j;
        }
        assert!(
            Instant::now() < deadline,
            "no {status} job for {key} as expected: {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_failing_deletion_stays_pending_until_retried(b: Backend) {
    let (app, ops) = operator_app(b).await;
    let s = app.user_with_org("Docs").await;
    let run = running_run(&app, &s).await;
    let doc = publish(&app, &run, "d1", b"hello").await;
    let key = storage_key(&app, &doc).await;
    assert_eq!(key, format!("documents/{}/{doc}", s.org_id));
    // The blob cannot be deleted: a directory stands where its file was.
    let file = app.dir.path().join("objects").join(&key);
    assert!(file.is_file(), "{}", file.display());
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir_all(file.join("stuck")).unwrap();

    s.client.delete(&format!("/api/documents/{doc}"), 204).await;
    s.client.get(&format!("/api/documents/{doc}"), 404).await;
    let t0 = corral_core::time::now_ms();
    let job = wait_job(&ops, "pending", &key, |j| j["attempts"] == 1).await;
    assert_eq!(job["bucket"], "documents");
    assert_eq!(job["storage_key"], format!("{}/{doc}", s.org_id));
    assert_eq!(job["reason"], "document_deleted");
    assert!(job["completed_at"].is_null());
    assert!(
        job["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{job}"
    );
    assert!(job["id"].as_str().unwrap().starts_with("sdj_"));
    let next = chrono::DateTime::parse_from_rfc3339(job["next_attempt_at"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    assert!(next >= t0 + 20_000, "retried with backoff: {job}");
    assert!(file.is_dir());
    let id = job["id"].as_str().unwrap().to_owned();

    // A retry makes it due now; it fails again and backs off further.
    let r = ops
        .post(&format!("{JOBS}/{id}/retry"), json!({}), 200)
        .await;
    assert_eq!(r, json!({"id": id, "retried": true}));
    let job = wait_job(&ops, "pending", &key, |j| j["attempts"] == 2).await;
    assert!(job["last_error"].is_string());

    // Deletable again: the next retry completes it and the blob is gone.
    std::fs::remove_dir_all(&file).unwrap();
    std::fs::write(&file, b"hello").unwrap();
    ops.post(&format!("{JOBS}/{id}/retry"), json!({}), 200)
        .await;
    let job = wait_job(&ops, "completed", &key, |j| j["attempts"] == 3).await;
    assert!(job["completed_at"].is_string());
    assert!(job["last_error"].is_null());
    assert!(!file.exists());
    assert!(app.state.blobs.get(&key).await.unwrap().is_none());
    // A completed or unknown job cannot be retried.
    ops.post(&format!("{JOBS}/{id}/retry"), json!({}), 404)
        .await;
    ops.post(&format!("{JOBS}/sdj_nope/retry"), json!({}), 404)
        .await;
    let pending = ops.get(JOBS, 200).await;
    assert!(pending["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|j| j["id"] != id.as_str()));

    // The dead-letter line: past it a job is listed as dead, no longer as pending.
    app.sql(&format!(
        "UPDATE storage_deletion_jobs SET completed_at = NULL, attempts = 8, \
         next_attempt_at = {} WHERE id = '{id}'",
        t0 + 3_600_000
    ))
    .await;
    let dead = ops.get(&format!("{JOBS}?status=dead"), 200).await;
    assert_eq!(dead["data"][0]["id"], id.as_str());
    assert!(ops.get(JOBS, 200).await["data"]
        .as_array()
        .unwrap()
        .is_empty());

    // Operators only.
    let r = s.client.send(Method::GET, JOBS, None, &[]).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = s
        .client
        .send(Method::POST, &format!("{JOBS}/{id}/retry"), None, &[])
        .await;
    assert_eq!(r.status, 403);
    let (_, key) = s.api_key(None).await;
    let r = app
        .client()
        .bearer(&key)
        .send(Method::GET, JOBS, None, &[])
        .await;
    assert_eq!(r.status, 403, "API keys are refused whatever they hold");
    assert_eq!(
        app.client().send(Method::GET, JOBS, None, &[]).await.status,
        401
    );
    for bad in ["status=gone", "limit=0", "limit=201", "limit=x"] {
        let r = ops
            .send(Method::GET, &format!("{JOBS}?{bad}"), None, &[])
            .await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }
}

async fn deletions_are_queued_with_the_rows(b: Backend) {
    let (app, ops) = operator_app(b).await;
    let s = app.user_with_org("Many").await;
    let run = running_run(&app, &s).await;
    let mut keys = Vec::new();
    for (i, body) in [b"one".as_slice(), b"two", b"three"]
        .into_iter()
        .enumerate()
    {
        let bytes: &'static [u8] = Box::leak(body.to_vec().into_boxed_slice());
        let doc = publish(&app, &run, &format!("m{i}"), bytes).await;
        keys.push(storage_key(&app, &doc).await);
    }
    for k in &keys {
        assert!(app.state.blobs.get(k).await.unwrap().is_some());
    }
    // Deleting the run's agent (its finished runs) takes the documents and their blobs.
    app.sql(&format!(
        "UPDATE runs SET status = 'success', package_id = '@corral/hello-world' WHERE id = '{run}'"
    ))
    .await;
    let r = s
        .client
        .delete("/api/agents/@corral/hello-world/runs", 200)
        .await;
    assert_eq!(r["deleted_count"], 1);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM documents").await, 0);
    for k in &keys {
        let job = wait_job(&ops, "completed", k, |_| true).await;
        assert_eq!(job["reason"], "document_deleted");
        assert!(app.state.blobs.get(k).await.unwrap().is_none());
    }
    // Pages of one, newest first, with a Link to the next.
    let r = ops
        .send(
            Method::GET,
            &format!("{JOBS}?status=completed&limit=1"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["hasMore"], true);
    let link = r.header("link").expect("Link header").to_owned();
    assert!(link.ends_with("rel=\"next\""), "{link}");
    let next = &link[1..link.find('>').unwrap()];
    let mut seen = vec![r.body["data"][0]["id"].as_str().unwrap().to_owned()];
    let mut url = next.to_owned();
    loop {
        let r = ops.send(Method::GET, &url, None, &[]).await;
        assert_eq!(r.status, 200, "{url}");
        seen.extend(
            r.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_owned()),
        );
        match r.header("link") {
            Some(l) => url = l[1..l.find('>').unwrap()].to_owned(),
            None => {
                assert_eq!(r.body["hasMore"], false);
                break;
            }
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 3);
}

/// Two workers over the same due jobs: each job is attempted exactly once.
async fn racing_workers_take_each_job_once(b: Backend) {
    let app = TestApp::spawn(b).await;
    let now = corral_core::time::now_ms();
    {
        let mut tx = app.state.db.begin().await.unwrap();
        for i in 0..120 {
            corral_store::storage_deletions::enqueue(
                &mut tx,
                &format!("documents/race/{i}"),
                "document_deleted",
                None,
                now,
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
    }
    let (a, b2) = tokio::join!(
        corral_engine::storage_deletions::pass(&app.state),
        corral_engine::storage_deletions::pass(&app.state),
    );
    let (a, b2) = (a.unwrap(), b2.unwrap());
    // The server's own worker may have taken some too; none twice.
    assert!(a.completed + b2.completed <= 120);
    assert_eq!(a.failed + b2.failed, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while app
        .scalar("SELECT COUNT(*) FROM storage_deletion_jobs WHERE completed_at IS NULL")
        .await
        > 0
    {
        assert!(Instant::now() < deadline, "jobs left pending");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM storage_deletion_jobs WHERE attempts <> 1")
            .await,
        0,
        "a job was attempted twice"
    );
}

both!(
    a_failing_deletion_stays_pending_until_retried,
    deletions_are_queued_with_the_rows,
    racing_workers_take_each_job_once,
);
