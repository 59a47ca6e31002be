//! Users: a taken email is a conflict the API can name.

use corral_store::{users, Db};

async fn duplicate_email_is_conflict_on_email(db: Db) {
    let mut conn = db.conn().await.expect("conn");
    let new = |id: &'static str| users::NewUser {
        id,
        email: "alice@example.com",
        name: "Alice",
        password_hash: "h",
        now: crate::NOW,
    };
    users::insert(&mut conn, &new("u1"))
        .await
        .expect("first insert");
    let err = users::insert(&mut conn, &new("u2"))
        .await
        .expect_err("second insert with the same email");
    assert!(
        matches!(err, corral_store::StoreError::Conflict { .. }),
        "expected Conflict, got {err:?}"
    );
    assert!(
        err.is_conflict_on("email"),
        "constraint should name email: {err:?}"
    );
    assert!(!err.is_conflict_on("slug"));
    assert!(users::by_id(&mut conn, "u2")
        .await
        .expect("by_id")
        .is_none());
    let u = users::by_email(&mut conn, "alice@example.com")
        .await
        .expect("by_email")
        .expect("alice exists");
    assert_eq!(u.id, "u1");
    assert_eq!(u.language, "en");
}

async fn update_profile_keeps_unset_fields(db: Db) {
    let id = crate::user(&db, "Bob").await;
    let mut conn = db.conn().await.expect("conn");
    let u = users::update_profile(&mut conn, &id, Some("Bobby"), None, crate::NOW + 1)
        .await
        .expect("update")
        .expect("user");
    assert_eq!(u.display_name.as_deref(), Some("Bobby"));
    assert_eq!(u.language, "en");
    let u = users::update_profile(&mut conn, &id, None, Some("fr"), crate::NOW + 2)
        .await
        .expect("update")
        .expect("user");
    assert_eq!(u.display_name.as_deref(), Some("Bobby"));
    assert_eq!(u.language, "fr");
    assert_eq!(u.updated_at, crate::NOW + 2);
}

crate::db_tests!(
    duplicate_email_is_conflict_on_email,
    update_profile_keeps_unset_fields
);
