//! API key lookup for authentication: candidates by prefix carry the creator's current
//! role and the org's pinned API version.

use corral_core::{AppId, OrgId};
use corral_store::{api_keys, orgs, Db};

use crate::NOW;

async fn insert_key(db: &Db, id: &str, org: &OrgId, app: &AppId, prefix: &str, creator: &str) {
    let mut conn = db.conn().await.expect("conn");
    api_keys::insert(
        &mut conn,
        &api_keys::NewApiKey {
            id,
            org_id: org,
            application_id: app,
            name: id,
            key_prefix: prefix,
            key_hash: &format!("hash-{id}"),
            scopes: r#"["runs:read"]"#,
            created_by: creator,
            expires_at: Some(NOW + 1_000),
            now: NOW,
        },
    )
    .await
    .expect("insert key");
}

async fn candidates_carry_creator_role_and_api_version(db: Db) {
    let owner = crate::user(&db, "Olga").await;
    let admin = crate::user(&db, "Ada").await;
    let (org_id, app_id) = crate::org(&db, &owner).await;
    let mut conn = db.conn().await.expect("conn");
    orgs::add_member(&mut conn, &org_id, &admin, "admin", NOW)
        .await
        .expect("add admin");
    orgs::set_settings(
        &mut conn,
        &org_id,
        &serde_json::json!({}),
        "2025-06-01",
        NOW,
    )
    .await
    .expect("pin version");
    insert_key(&db, "k-admin", &org_id, &app_id, "pfx_aaa", &admin).await;
    insert_key(&db, "k-owner", &org_id, &app_id, "pfx_aaa", &owner).await;
    insert_key(&db, "k-other", &org_id, &app_id, "pfx_bbb", &owner).await;

    let mut c = api_keys::candidates_by_prefix(db.pool(), "pfx_aaa")
        .await
        .expect("candidates");
    c.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(c.len(), 2, "only keys with that prefix");
    assert_eq!(c[0].id, "k-admin");
    assert_eq!(c[0].creator_role.as_deref(), Some("admin"));
    assert_eq!(c[0].api_version, "2025-06-01");
    assert_eq!(c[0].key_hash, "hash-k-admin");
    assert_eq!(c[0].expires_at, Some(NOW + 1_000));
    assert_eq!(c[1].creator_role.as_deref(), Some("owner"));

    // The creator leaves: the key stays, but it no longer carries a role.
    assert!(orgs::remove_member(&mut conn, &org_id, &admin)
        .await
        .expect("remove"));
    let c = api_keys::candidates_by_prefix(db.pool(), "pfx_aaa")
        .await
        .expect("candidates");
    let k = c
        .iter()
        .find(|k| k.id == "k-admin")
        .expect("key still listed");
    assert_eq!(k.creator_role, None);
    assert_eq!(k.created_by.as_deref(), Some(admin.as_str()));

    assert!(api_keys::candidates_by_prefix(db.pool(), "pfx_zzz")
        .await
        .expect("candidates")
        .is_empty());

    api_keys::touch_last_used(db.pool(), "k-owner", NOW + 7)
        .await
        .expect("touch");
    let c = api_keys::candidates_by_prefix(db.pool(), "pfx_aaa")
        .await
        .expect("candidates");
    let k = c.iter().find(|k| k.id == "k-owner").expect("owner key");
    assert_eq!(k.last_used_at, Some(NOW + 7));
}

crate::db_tests!(candidates_carry_creator_role_and_api_version);
