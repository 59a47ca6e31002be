//! Tier 3 (`CORRAL_STORAGE=s3://…`) against a real S3-protocol server (moto): a
//! published package lands in the bucket and is served back verified, a tampered
//! object is refused, and `corral storage migrate` moves tier-2 blobs there once.

use corral_testkit::services::S3Server;
use corral_testkit::{Backend, Session, TestApp};
use serde_json::{json, Value};

fn agent_manifest(scope: &str, name: &str, version: &str) -> Value {
    json!({
        "name": format!("@{scope}/{name}"), "version": version, "type": "agent", "schema_version": "2.0",
        "display_name": "Test agent", "author": "tests",
        "output": {"schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}
    })
}

async fn publish(s: &Session, name: &str) -> (String, String) {
    let org = s.client.get(&format!("/api/orgs/{}", s.org_id), 200).await;
    let scope = org["slug"].as_str().unwrap().to_owned();
    s.client
        .post(
            "/api/packages/agents",
            json!({"manifest": agent_manifest(&scope, name, "1.0.0"), "content": "Say hi."}),
            201,
        )
        .await;
    let v = s
        .client
        .post(
            &format!("/api/packages/agents/@{scope}/{name}/versions"),
            json!({}),
            201,
        )
        .await;
    (scope, v["integrity"].as_str().unwrap().to_owned())
}

async fn download(app: &TestApp, s: &Session, path: &str) -> (u16, Vec<u8>) {
    let r = reqwest::Client::new()
        .get(format!("{}{path}", app.base))
        .header("cookie", s.client.header_value("cookie").unwrap())
        .header("x-org-id", &s.org_id)
        .header("x-app-id", &s.app_id)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

async fn storage_key(app: &TestApp, package: &str) -> String {
    let mut conn = app.state.db.conn().await.unwrap();
    let v = corral_store::packages::version(&mut conn, package, "1.0.0")
        .await
        .unwrap()
        .unwrap();
    v.storage_key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_are_stored_in_s3_and_verified_on_every_read() {
    let s3 = S3Server::start().await;
    let app = TestApp::spawn_with(Backend::Postgres, |c| s3.configure(c)).await;
    assert_eq!(app.state.blobs.kind(), "s3");
    let alice = app.user_with_org("Alice").await;
    let (scope, integrity) = publish(&alice, "greeter").await;

    let key = storage_key(&app, &format!("@{scope}/greeter")).await;
    let in_bucket = s3.object(&key).await.expect("the archive is in the bucket");
    assert_eq!(corral_afps::integrity(&in_bucket), integrity);
    assert!(
        !app.dir.path().join("objects").join(&key).exists(),
        "nothing under the data dir"
    );

    let path = format!("/api/packages/@{scope}/greeter/1.0.0/download");
    let (status, bytes) = download(&app, &alice, &path).await;
    assert_eq!(status, 200);
    assert_eq!(bytes, in_bucket);

    // Someone with access to the bucket rewrites the object: refused, not served.
    s3.client()
        .put_raw(&key, b"tampered".to_vec())
        .await
        .unwrap();
    let r = alice
        .client
        .send(reqwest::Method::GET, &path, None, &[])
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(r.code(), "bundle_integrity_mismatch");
    assert!(!r.text.contains("tampered"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_migrate_moves_local_blobs_to_s3_once() {
    let s3 = S3Server::start().await;
    // A tier-2 server publishes to its data dir…
    let app = TestApp::spawn(Backend::Sqlite).await;
    let alice = app.user_with_org("Alice").await;
    let (scope, integrity) = publish(&alice, "mover").await;
    let key = storage_key(&app, &format!("@{scope}/mover")).await;
    assert!(app.dir.path().join("objects").join(&key).exists());

    // …then the blobs move to the bucket, idempotently.
    let mut config = app.state.config.clone();
    s3.configure(&mut config);
    let first = corral_engine::storage::migrate_to_configured(&config, None)
        .await
        .unwrap();
    assert!(first.copied >= 1 && first.corrupt.is_empty(), "{first:?}");
    let again = corral_engine::storage::migrate_to_configured(&config, None)
        .await
        .unwrap();
    assert_eq!((again.copied, again.skipped), (0, first.copied));
    let moved = s3.object(&key).await.expect("moved");
    assert_eq!(corral_afps::integrity(&moved), integrity);

    // Without S3 configured there is nothing to migrate to.
    let e = corral_engine::storage::migrate_to_configured(&app.state.config, None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("CORRAL_STORAGE"), "{e}");
}
