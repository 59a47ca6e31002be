//! Organizations: atomic creation with owner and default app, one default app per
//! org, and cascading delete.

use corral_core::{AppId, OrgId};
use corral_store::{api_keys, applications, end_users, invitations, orgs, Db, StoreError};

use crate::{count, NOW};

fn new_org<'a>(id: &'a OrgId, slug: &'a str, owner: &'a str, app: &'a AppId) -> orgs::NewOrg<'a> {
    orgs::NewOrg {
        id,
        name: "Acme",
        slug,
        api_version: "2025-01-01",
        owner_id: owner,
        default_app_id: app,
        now: NOW,
    }
}

async fn org_with_owner_and_default_app(db: Db) {
    let owner = crate::user(&db, "Olga").await;
    let (org_id, app_id) = crate::org(&db, &owner).await;
    let mut conn = db.conn().await.expect("conn");
    let m = orgs::member(&mut conn, &org_id, &owner)
        .await
        .expect("member")
        .expect("owner is a member");
    assert_eq!(m.role, "owner");
    let d = applications::default_for(&mut conn, &org_id)
        .await
        .expect("default_for")
        .expect("default app");
    assert_eq!(d.id, app_id);
    assert!(d.is_default);
    let mine = orgs::list_for_user(&mut conn, &owner).await.expect("list");
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].role, "owner");
}

async fn org_creation_is_atomic(db: Db) {
    let owner = crate::user(&db, "Olga").await;
    let mut tx = db.begin().await.expect("begin");
    orgs::insert_with_owner(
        &mut tx,
        &new_org(&OrgId::from("o1"), "acme", &owner, &AppId::from("app_1")),
    )
    .await
    .expect("first org");
    tx.commit().await.expect("commit");

    // Duplicate slug: the very first insert fails and is named.
    let mut tx = db.begin().await.expect("begin");
    let err = orgs::insert_with_owner(
        &mut tx,
        &new_org(&OrgId::from("o2"), "acme", &owner, &AppId::from("app_2")),
    )
    .await
    .expect_err("duplicate slug");
    assert!(
        err.is_conflict_on("slug"),
        "expected slug conflict: {err:?}"
    );
    drop(tx);

    // Duplicate default-app id: the org and member rows were written before the
    // application insert failed; the rollback must take them away too.
    let mut tx = db.begin().await.expect("begin");
    let err = orgs::insert_with_owner(
        &mut tx,
        &new_org(&OrgId::from("o3"), "other", &owner, &AppId::from("app_1")),
    )
    .await
    .expect_err("duplicate application id");
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    tx.rollback().await.expect("rollback");

    for id in ["o2", "o3"] {
        assert_eq!(count(&db, "organizations", "id", id).await, 0, "org {id}");
        assert_eq!(
            count(&db, "org_members", "org_id", id).await,
            0,
            "members {id}"
        );
        assert_eq!(
            count(&db, "applications", "org_id", id).await,
            0,
            "apps {id}"
        );
    }
    assert_eq!(count(&db, "organizations", "slug", "other").await, 0);
    // The first org is untouched.
    assert_eq!(count(&db, "org_members", "org_id", "o1").await, 1);
    assert_eq!(count(&db, "applications", "org_id", "o1").await, 1);
    let mut conn = db.conn().await.expect("conn");
    assert!(orgs::slug_exists(&mut conn, "acme").await.expect("slug"));
    assert!(!orgs::slug_exists(&mut conn, "other").await.expect("slug"));
}

async fn only_one_default_application_per_org(db: Db) {
    let owner = crate::user(&db, "Olga").await;
    let (org_id, default_app) = crate::org(&db, &owner).await;
    let (other_org, _) = crate::org(&db, &owner).await;
    let mut conn = db.conn().await.expect("conn");
    let second_default = applications::NewApplication {
        id: &AppId::from("app_second"),
        org_id: &org_id,
        name: "Second",
        is_default: true,
        settings: "{}",
        created_by: None,
        now: NOW,
    };
    let err = applications::insert(&mut conn, &second_default)
        .await
        .expect_err("second default app");
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    // Non-default apps are unlimited, and each org has its own default.
    crate::app(&db, &org_id, "A").await;
    crate::app(&db, &org_id, "B").await;
    let apps = applications::list(&mut conn, &org_id).await.expect("list");
    assert_eq!(apps.len(), 3);
    assert_eq!(apps[0].id, default_app, "default app is listed first");
    assert_eq!(apps.iter().filter(|a| a.is_default).count(), 1);
    assert!(applications::default_for(&mut conn, &other_org)
        .await
        .expect("default_for")
        .is_some());
    // The default application cannot be deleted.
    assert!(!applications::delete(&mut conn, &org_id, &default_app)
        .await
        .expect("delete"));
}

async fn deleting_an_org_cascades(db: Db) {
    let owner = crate::user(&db, "Olga").await;
    let member = crate::user(&db, "Max").await;
    let (org_id, default_app) = crate::org(&db, &owner).await;
    let (kept_org, kept_app) = crate::org(&db, &owner).await;
    let extra_app = crate::app(&db, &org_id, "Extra").await;
    let mut conn = db.conn().await.expect("conn");
    orgs::add_member(&mut conn, &org_id, &member, "member", NOW)
        .await
        .expect("add member");
    for (i, app) in [&default_app, &extra_app, &kept_app]
        .into_iter()
        .enumerate()
    {
        let org = if app == &kept_app { &kept_org } else { &org_id };
        end_users::insert(&mut conn, &crate::end_users::new_end_user(org, app, None))
            .await
            .expect("end user");
        api_keys::insert(
            &mut conn,
            &api_keys::NewApiKey {
                id: &format!("key{i}"),
                org_id: org,
                application_id: app,
                name: "k",
                key_prefix: "pfx",
                key_hash: &format!("hash{i}"),
                scopes: "[]",
                created_by: &owner,
                expires_at: None,
                now: NOW,
            },
        )
        .await
        .expect("api key");
    }
    invitations::insert(
        &mut conn,
        &invitations::Invitation {
            id: "inv1".into(),
            org_id: org_id.clone(),
            email: "new@example.com".into(),
            role: "member".into(),
            token: "tok".into(),
            inviter_id: Some(owner.clone()),
            expires_at: NOW + 1_000,
            accepted_at: None,
            created_at: NOW,
        },
    )
    .await
    .expect("invitation");

    assert!(orgs::delete(&mut conn, &org_id).await.expect("delete"));
    assert!(!orgs::delete(&mut conn, &org_id)
        .await
        .expect("delete again"));
    drop(conn);
    for table in [
        "organizations",
        "org_members",
        "applications",
        "end_users",
        "api_keys",
        "invitations",
    ] {
        let column = if table == "organizations" {
            "id"
        } else {
            "org_id"
        };
        assert_eq!(
            count(&db, table, column, org_id.as_str()).await,
            0,
            "{table} cascaded"
        );
    }
    // Users survive, and the other org keeps everything.
    assert_eq!(count(&db, "users", "id", &member).await, 1);
    assert_eq!(
        count(&db, "org_members", "org_id", kept_org.as_str()).await,
        1
    );
    assert_eq!(
        count(&db, "end_users", "org_id", kept_org.as_str()).await,
        1
    );
    assert_eq!(count(&db, "api_keys", "org_id", kept_org.as_str()).await, 1);
}

crate::db_tests!(
    org_with_owner_and_default_app,
    org_creation_is_atomic,
    only_one_default_application_per_org,
    deleting_an_org_cascades,
);
