//! Tenant scoping: a row addressed with the wrong org or application id is not found,
//! not updated and not deleted.

use corral_store::{api_keys, applications, end_users, Db};

use crate::NOW;

async fn applications_are_scoped_by_org(db: Db) {
    let owner = crate::user(&db, "Olga").await;
    let (org_a, _) = crate::org(&db, &owner).await;
    let (org_b, _) = crate::org(&db, &owner).await;
    let app = crate::app(&db, &org_a, "Mine").await;
    let mut conn = db.conn().await.expect("conn");

    assert!(applications::get(&mut conn, &org_b, &app)
        .await
        .expect("get")
        .is_none());
    assert!(
        !applications::update(&mut conn, &org_b, &app, Some("Stolen"), None, NOW + 1)
            .await
            .expect("update")
    );
    assert!(!applications::delete(&mut conn, &org_b, &app)
        .await
        .expect("delete"));
    let a = applications::get(&mut conn, &org_a, &app)
        .await
        .expect("get")
        .expect("still there");
    assert_eq!(a.name, "Mine", "wrong-org update changed nothing");
    assert!(applications::list(&mut conn, &org_b)
        .await
        .expect("list")
        .iter()
        .all(|x| x.id != app));

    assert!(
        applications::update(&mut conn, &org_a, &app, Some("Renamed"), None, NOW + 1)
            .await
            .expect("update")
    );
    assert!(applications::delete(&mut conn, &org_a, &app)
        .await
        .expect("delete"));
    assert!(applications::get(&mut conn, &org_a, &app)
        .await
        .expect("get")
        .is_none());
}

async fn end_users_are_scoped_by_org_and_app(db: Db) {
    let owner = crate::user(&db, "Olga").await;
    let (org_a, app_a) = crate::org(&db, &owner).await;
    let (org_b, app_b) = crate::org(&db, &owner).await;
    let sibling = crate::app(&db, &org_a, "Sibling").await;
    let mut conn = db.conn().await.expect("conn");
    let mut e = crate::end_users::new_end_user(&org_a, &app_a, Some("x"));
    e.name = Some("Original".into());
    end_users::insert(&mut conn, &e).await.expect("insert");

    for (org, app) in [(&org_b, &app_a), (&org_a, &sibling), (&org_b, &app_b)] {
        assert!(end_users::get(&mut conn, org, app, &e.id)
            .await
            .expect("get")
            .is_none());
        let mut patched = e.clone();
        patched.org_id = org.clone();
        patched.application_id = app.clone();
        patched.name = Some("Stolen".into());
        assert!(!end_users::update(&mut conn, &patched)
            .await
            .expect("update"));
        assert!(!end_users::delete(&mut conn, org, app, &e.id)
            .await
            .expect("delete"));
    }
    assert!(!end_users::exists_in_app(&mut conn, &sibling, &e.id)
        .await
        .expect("exists"));
    let got = end_users::get(&mut conn, &org_a, &app_a, &e.id)
        .await
        .expect("get")
        .expect("still there");
    assert_eq!(got.name.as_deref(), Some("Original"));
    assert!(end_users::delete(&mut conn, &org_a, &app_a, &e.id)
        .await
        .expect("delete"));
    assert!(!end_users::exists_in_app(&mut conn, &app_a, &e.id)
        .await
        .expect("exists"));
}

async fn api_keys_are_scoped_by_org_and_app(db: Db) {
    let owner = crate::user(&db, "Olga").await;
    let (org_a, app_a) = crate::org(&db, &owner).await;
    let (org_b, app_b) = crate::org(&db, &owner).await;
    let sibling = crate::app(&db, &org_a, "Sibling").await;
    let mut conn = db.conn().await.expect("conn");
    api_keys::insert(
        &mut conn,
        &api_keys::NewApiKey {
            id: "k1",
            org_id: &org_a,
            application_id: &app_a,
            name: "ci",
            key_prefix: "pfx",
            key_hash: "hash",
            scopes: "[]",
            created_by: &owner,
            expires_at: None,
            now: NOW,
        },
    )
    .await
    .expect("insert");

    for (org, app) in [(&org_b, &app_a), (&org_a, &sibling), (&org_b, &app_b)] {
        assert!(api_keys::get(&mut conn, org, app, "k1")
            .await
            .expect("get")
            .is_none());
        assert!(!api_keys::revoke(&mut conn, org, app, "k1", NOW)
            .await
            .expect("revoke"));
        assert!(api_keys::list(&mut conn, org, app)
            .await
            .expect("list")
            .is_empty());
    }
    let k = api_keys::get(&mut conn, &org_a, &app_a, "k1")
        .await
        .expect("get")
        .expect("still there");
    assert_eq!(k.revoked_at, None, "wrong-scope revoke changed nothing");
    assert_eq!(k.created_by_name.as_deref(), Some("Olga"));

    assert!(api_keys::revoke(&mut conn, &org_a, &app_a, "k1", NOW + 5)
        .await
        .expect("revoke"));
    assert!(api_keys::revoke(&mut conn, &org_a, &app_a, "k1", NOW + 9)
        .await
        .expect("revoke"));
    let k = api_keys::get(&mut conn, &org_a, &app_a, "k1")
        .await
        .expect("get")
        .expect("key");
    assert_eq!(
        k.revoked_at,
        Some(NOW + 5),
        "second revoke keeps the first time"
    );
}

crate::db_tests!(
    applications_are_scoped_by_org,
    end_users_are_scoped_by_org_and_app,
    api_keys_are_scoped_by_org_and_app,
);
