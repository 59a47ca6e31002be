//! Open SSE streams end within a second when what authorised them goes: an API key
//! revoked, a session signed out, a member removed or given another role, the other
//! sessions ended by a password change. Streams of other credentials stay open. On
//! PostgreSQL the revocation also reaches a stream served by another replica.

use std::time::{Duration, Instant};

use corral_testkit::sse::{connect, Stream};
use corral_testkit::{both, Backend, TestApp};
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(1);
const QUIET: Duration = Duration::from_millis(300);

async fn open(base: &str, query: &str, headers: &[(&str, &str)]) -> Stream {
    let url = format!("{base}/api/realtime/runs?{query}");
    let (status, stream, body) = connect(&url, headers).await;
    assert_eq!(status, 200, "{body}");
    stream.expect("stream")
}

async fn open_key(base: &str, key: &str) -> Stream {
    open(base, &format!("token={key}"), &[]).await
}

async fn open_session(base: &str, cookie: &str, org: &str, app: &str) -> Stream {
    open(
        base,
        &format!("orgId={org}&applicationId={app}"),
        &[("cookie", cookie)],
    )
    .await
}

async fn assert_closed(s: &mut Stream, what: &str) {
    let t0 = Instant::now();
    assert!(s.closed(WITHIN).await, "{what}: the stream stayed open");
    eprintln!("{what}: closed {:?} after the revocation", t0.elapsed());
}

async fn assert_open(s: &mut Stream, what: &str) {
    assert!(
        !s.closed(QUIET).await,
        "{what}: closed although still valid"
    );
}

async fn streams_end_when_their_credentials_go(b: Backend) {
    let app = TestApp::spawn(b).await;
    let owner = app.user_with_org("Owner").await;
    let (key_id, key) = owner.api_key(None).await;
    let (_, other_key) = owner.api_key(None).await;
    let mut by_key = open_key(&app.base, &key).await;
    let mut by_other_key = open_key(&app.base, &other_key).await;
    owner
        .client
        .delete(&format!("/api/api-keys/{key_id}"), 204)
        .await;
    assert_closed(&mut by_key, "revoked API key").await;
    assert_open(&mut by_other_key, "another key").await;

    // A member's session: a role change, then removal, each ends its streams.
    let member = app.user_with_org("Member").await;
    let inv = owner
        .client
        .post(
            &format!("/api/orgs/{}/members", owner.org_id),
            json!({"email": member.email, "role": "admin"}),
            201,
        )
        .await;
    let token = inv["token"].as_str().expect("invitation token");
    member
        .client
        .post(&format!("/invite/{token}/accept"), json!({}), 200)
        .await;
    let cookie = member
        .client
        .header_value("cookie")
        .expect("session cookie");
    let owner_cookie = owner.client.header_value("cookie").expect("cookie");
    let mut member_stream = open_session(&app.base, &cookie, &owner.org_id, &owner.app_id).await;
    // A key the member created: its permissions are its scopes ∩ the member's role.
    let member_key = member
        .client
        .org(&owner.org_id)
        .app(&owner.app_id)
        .post("/api/api-keys", json!({"name": "member key"}), 201)
        .await;
    let mut member_key_stream = open_key(&app.base, member_key["key"].as_str().unwrap()).await;
    let mut owner_stream =
        open_session(&app.base, &owner_cookie, &owner.org_id, &owner.app_id).await;
    owner
        .client
        .put(
            &format!("/api/orgs/{}/members/{}", owner.org_id, member.user_id),
            json!({"role": "viewer"}),
            200,
        )
        .await;
    assert_closed(&mut member_stream, "role change").await;
    assert_closed(&mut member_key_stream, "role change of the key's creator").await;
    let mut member_stream = open_session(&app.base, &cookie, &owner.org_id, &owner.app_id).await;
    owner
        .client
        .delete(
            &format!("/api/orgs/{}/members/{}", owner.org_id, member.user_id),
            204,
        )
        .await;
    assert_closed(&mut member_stream, "member removed").await;
    assert_open(&mut owner_stream, "the owner's session").await;

    // Sign-out ends the session's streams.
    owner
        .client
        .post("/api/auth/sign-out", json!({}), 200)
        .await;
    assert_closed(&mut owner_stream, "sign-out").await;
}

/// The revocation is made on replica A; the stream is served by replica B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_other_replicas_on_postgres() {
    let a = TestApp::spawn(Backend::Postgres).await;
    let url = a.state.config.database_url.clone();
    let b = TestApp::spawn_with(Backend::Postgres, |c| c.database_url = url).await;
    let s = a.user_with_org("Replicas").await;
    let (key_id, key) = s.api_key(None).await;
    let mut on_b = open_key(&b.base, &key).await;
    // (Also gives B's LISTEN connection time to be up before the notification.)
    assert_open(&mut on_b, "before the revocation").await;
    s.client
        .delete(&format!("/api/api-keys/{key_id}"), 204)
        .await;
    assert_closed(&mut on_b, "revoked on another replica").await;
}

both!(streams_end_when_their_credentials_go);
