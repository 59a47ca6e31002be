//! Members, roles and invitations.

use corral_testkit::{both, Backend, TestApp};
use reqwest::Method;
use serde_json::json;

async fn invitation_flow_and_roles(b: Backend) {
    let app = TestApp::spawn(b).await;
    let owner = app.user_with_org("Owner").await;
    let anon = app.client();
    let org = format!("/api/orgs/{}", owner.org_id);

    let email = format!("vic-{}@example.com", uuid::Uuid::new_v4().simple());
    let inv = owner
        .client
        .post(
            &format!("{org}/members"),
            json!({"email": email, "role": "viewer"}),
            201,
        )
        .await;
    let token = inv["token"].as_str().unwrap();
    assert_eq!(inv["role"], "viewer");

    // Public info about the link.
    let info = anon.get(&format!("/invite/{token}/info"), 200).await;
    assert_eq!(info["org_name"], "Owner Org");
    assert_eq!(info["is_new_user"], true);
    assert_eq!(info["inviter_name"], "Owner");
    let r = anon.send(Method::GET, "/invite/nope/info", None, &[]).await;
    assert_eq!(r.status, 404);

    // Changing the invitation's role, then accepting as the right person.
    owner
        .client
        .put(
            &format!("{org}/invitations/{}", inv["id"].as_str().unwrap()),
            json!({"role": "member"}),
            200,
        )
        .await;
    let wrong = anon
        .sign_up(
            &format!("other-{}@example.com", uuid::Uuid::new_v4().simple()),
            "correct horse battery",
            "Other",
        )
        .await;
    let r = wrong
        .send(Method::POST, &format!("/invite/{token}/accept"), None, &[])
        .await;
    assert_eq!(r.status, 403, "another email cannot accept");
    let vic = anon.sign_up(&email, "correct horse battery", "Vic").await;
    let joined = vic
        .post(&format!("/invite/{token}/accept"), json!({}), 200)
        .await;
    assert_eq!(joined["role"], "member");
    assert_eq!(joined["id"], owner.org_id.as_str());
    let r = vic
        .send(Method::POST, &format!("/invite/{token}/accept"), None, &[])
        .await;
    assert_eq!(r.status, 410, "an invitation is single-use");
    let r = anon
        .send(Method::GET, &format!("/invite/{token}/info"), None, &[])
        .await;
    assert_eq!(r.status, 410);

    let vic_id = vic.get("/api/profile", 200).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let vic = vic.org(&owner.org_id).app(&owner.app_id);
    let detail = vic.get(&org, 200).await;
    assert_eq!(detail["members"].as_array().unwrap().len(), 2);
    assert_eq!(
        detail["invitations"].as_array().unwrap().len(),
        0,
        "members do not see invitation tokens"
    );

    // A member can work with end-users but not manage the org.
    vic.post("/api/end-users", json!({"name": "E"}), 201).await;
    for (m, path, body) in [
        (
            Method::POST,
            format!("{org}/members"),
            Some(json!({"email": "z@example.com"})),
        ),
        (Method::PUT, org.clone(), Some(json!({"name": "Mine"}))),
        (Method::DELETE, org.clone(), None),
        (
            Method::POST,
            "/api/applications".to_owned(),
            Some(json!({"name": "x"})),
        ),
        (
            Method::POST,
            "/api/api-keys".to_owned(),
            Some(json!({"name": "x"})),
        ),
    ] {
        let r = vic.send(m.clone(), &path, body, &[]).await;
        assert_eq!(r.status, 403, "{m} {path}: {}", r.text);
    }

    // Viewer: read-only.
    owner
        .client
        .put(
            &format!("{org}/members/{vic_id}"),
            json!({"role": "viewer"}),
            200,
        )
        .await;
    vic.get("/api/applications", 200).await;
    let r = vic
        .send(Method::POST, "/api/end-users", Some(json!({})), &[])
        .await;
    assert_eq!(r.status, 403);

    // Admin: manages members and viewers, not admins, not the owner.
    owner
        .client
        .put(
            &format!("{org}/members/{vic_id}"),
            json!({"role": "admin"}),
            200,
        )
        .await;
    let r = vic
        .send(
            Method::PUT,
            &format!("{org}/members/{}", owner.user_id),
            Some(json!({"role": "viewer"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 403, "nobody demotes the owner");
    let r = vic
        .send(
            Method::POST,
            &format!("{org}/members"),
            Some(json!({"email": "adm2@example.com", "role": "admin"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 403, "admins cannot mint admins");
    vic.post(
        &format!("{org}/members"),
        json!({"email": "mem@example.com", "role": "member"}),
        201,
    )
    .await;
    let r = owner
        .client
        .send(
            Method::DELETE,
            &format!("{org}/members/{}", owner.user_id),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 403, "the owner cannot leave");
    let r = owner
        .client
        .send(
            Method::PUT,
            &format!("{org}/members/{vic_id}"),
            Some(json!({"role": "owner"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 400, "ownership is not assignable here");

    // Leaving.
    vic.delete(&format!("{org}/members/{vic_id}"), 204).await;
    let r = vic.send(Method::GET, "/api/applications", None, &[]).await;
    assert_eq!(r.status, 403);
    // Updating the org as owner.
    let d = owner
        .client
        .put(&org, json!({"name": "Renamed", "slug": "renamed-org"}), 200)
        .await;
    assert_eq!(d["slug"], "renamed-org");
}

async fn expired_invitation(b: Backend) {
    let app = TestApp::spawn(b).await;
    let owner = app.user_with_org("Owner").await;
    let inv = owner
        .client
        .post(
            &format!("/api/orgs/{}/members", owner.org_id),
            json!({"email": "late@example.com"}),
            201,
        )
        .await;
    app.sql("UPDATE invitations SET expires_at = 1").await;
    let late = app
        .client()
        .sign_up("late@example.com", "correct horse battery", "Late")
        .await;
    let r = late
        .send(
            Method::POST,
            &format!("/invite/{}/accept", inv["token"].as_str().unwrap()),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 410);
    assert_eq!(r.code(), "invitation_expired");
    // Cancelling removes it.
    owner
        .client
        .delete(
            &format!(
                "/api/orgs/{}/invitations/{}",
                owner.org_id,
                inv["id"].as_str().unwrap()
            ),
            204,
        )
        .await;
    let d = owner
        .client
        .get(&format!("/api/orgs/{}", owner.org_id), 200)
        .await;
    assert_eq!(d["invitations"].as_array().unwrap().len(), 0);
    // Inviting someone already in the org is a field error.
    let r = owner
        .client
        .send(
            Method::POST,
            &format!("/api/orgs/{}/members", owner.org_id),
            Some(json!({"email": owner.email})),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["errors"][0]["code"], "already_member");
}

both!(invitation_flow_and_roles, expired_invitation);
