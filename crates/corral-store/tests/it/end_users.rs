//! End-users: cursor pagination in both directions and the list filters.

use corral_core::{AppId, OrgId};
use corral_store::end_users::{self, EndUser, ListFilter};
use corral_store::Db;

use crate::NOW;

/// An end-user with a fresh time-ordered id (creation order is id order).
pub fn new_end_user(org_id: &OrgId, app_id: &AppId, external_id: Option<&str>) -> EndUser {
    EndUser {
        id: corral_core::ids::prefixed(corral_core::ids::END_USER),
        org_id: org_id.clone(),
        application_id: app_id.clone(),
        name: None,
        email: None,
        external_id: external_id.map(str::to_owned),
        metadata: None,
        created_at: NOW,
        updated_at: NOW,
    }
}

/// The sorted names of the end-users `f` lists (with a limit large enough for all).
async fn names(
    conn: &mut corral_store::Conn,
    org_id: &OrgId,
    app_id: &AppId,
    f: ListFilter<'_>,
) -> Vec<String> {
    let page = end_users::list(conn, org_id, app_id, &ListFilter { limit: 50, ..f })
        .await
        .expect("list");
    let mut out: Vec<String> = page.items.into_iter().filter_map(|e| e.name).collect();
    out.sort_unstable();
    out
}

fn ids(items: &[EndUser]) -> Vec<&str> {
    items.iter().map(|e| e.id.as_str()).collect()
}

async fn cursor_pagination_forward_and_backward(db: Db) {
    let owner = crate::user(&db, "Olga").await;
    let (org_id, app_id) = crate::org(&db, &owner).await;
    let other_app = crate::app(&db, &org_id, "Other").await;
    let mut conn = db.conn().await.expect("conn");
    let mut created = Vec::new();
    for i in 0..25 {
        let e = new_end_user(&org_id, &app_id, Some(&format!("ext-{i}")));
        end_users::insert(&mut conn, &e).await.expect("insert");
        created.push(e.id);
        // Another app's end-users interleave and must never show up.
        end_users::insert(&mut conn, &new_end_user(&org_id, &other_app, None))
            .await
            .expect("insert other");
    }
    let newest_first: Vec<&str> = created.iter().rev().map(String::as_str).collect();
    let page = |starting_after, ending_before| ListFilter {
        limit: 10,
        starting_after,
        ending_before,
        ..ListFilter::default()
    };

    let p1 = end_users::list(&mut conn, &org_id, &app_id, &page(None, None))
        .await
        .expect("page 1");
    assert_eq!(ids(&p1.items), newest_first[0..10]);
    assert!(p1.has_more);
    let p2 = end_users::list(
        &mut conn,
        &org_id,
        &app_id,
        &page(Some(&p1.items[9].id), None),
    )
    .await
    .expect("page 2");
    assert_eq!(ids(&p2.items), newest_first[10..20]);
    assert!(p2.has_more);
    let p3 = end_users::list(
        &mut conn,
        &org_id,
        &app_id,
        &page(Some(&p2.items[9].id), None),
    )
    .await
    .expect("page 3");
    assert_eq!(ids(&p3.items), newest_first[20..25]);
    assert!(!p3.has_more);

    // Backwards from page 3 gives page 2 again, still newest first.
    let b2 = end_users::list(
        &mut conn,
        &org_id,
        &app_id,
        &page(None, Some(&p3.items[0].id)),
    )
    .await
    .expect("back to page 2");
    assert_eq!(ids(&b2.items), newest_first[10..20]);
    assert!(b2.has_more);
    let b1 = end_users::list(
        &mut conn,
        &org_id,
        &app_id,
        &page(None, Some(&b2.items[0].id)),
    )
    .await
    .expect("back to page 1");
    assert_eq!(ids(&b1.items), newest_first[0..10]);
    assert!(!b1.has_more);

    // Exactly `limit` items left: no phantom next page.
    let all = end_users::list(
        &mut conn,
        &org_id,
        &app_id,
        &ListFilter {
            limit: 25,
            ..ListFilter::default()
        },
    )
    .await
    .expect("all");
    assert_eq!(all.items.len(), 25);
    assert!(!all.has_more);
}

async fn list_filters(db: Db) {
    let owner = crate::user(&db, "Olga").await;
    let (org_id, app_id) = crate::org(&db, &owner).await;
    let mut conn = db.conn().await.expect("conn");
    let people = [
        ("Alice Smith", "Alice@Example.com", "a-1"),
        ("Bob", "bob@example.com", "b-2"),
        ("100% real", "pct@example.com", "p-3"),
        ("100 real", "nopct@example.com", "p-4"),
        ("a_b", "under@example.com", "u-5"),
        ("axb", "nounder@example.com", "u-6"),
    ];
    for (name, email, ext) in people {
        let mut e = new_end_user(&org_id, &app_id, Some(ext));
        e.name = Some(name.to_owned());
        e.email = Some(email.to_owned());
        end_users::insert(&mut conn, &e).await.expect("insert");
    }
    // A lookalike in another org must never match.
    let (other_org, other_app) = crate::org(&db, &owner).await;
    let mut e = new_end_user(&other_org, &other_app, Some("b-2"));
    e.name = Some("Bob".to_owned());
    end_users::insert(&mut conn, &e)
        .await
        .expect("insert other");

    let f = |external_id, email, search| ListFilter {
        external_id,
        email,
        search,
        ..ListFilter::default()
    };
    assert_eq!(
        names(&mut conn, &org_id, &app_id, f(Some("b-2"), None, None)).await,
        ["Bob"]
    );
    assert!(
        names(&mut conn, &org_id, &app_id, f(Some("B-2"), None, None))
            .await
            .is_empty(),
        "external_id is exact"
    );
    assert_eq!(
        names(
            &mut conn,
            &org_id,
            &app_id,
            f(None, Some("alice@EXAMPLE.com"), None)
        )
        .await,
        ["Alice Smith"],
        "email matches case-insensitively"
    );
    assert_eq!(
        names(&mut conn, &org_id, &app_id, f(None, None, Some("SMITH"))).await,
        ["Alice Smith"]
    );
    assert_eq!(
        names(&mut conn, &org_id, &app_id, f(None, None, Some("BOB@"))).await,
        ["Bob"],
        "search covers email"
    );
    assert_eq!(
        names(&mut conn, &org_id, &app_id, f(None, None, Some("U-5"))).await,
        ["a_b"],
        "search covers external_id"
    );
    assert_eq!(
        names(&mut conn, &org_id, &app_id, f(None, None, Some("100%"))).await,
        ["100% real"],
        "% is a literal, not a wildcard"
    );
    assert_eq!(
        names(&mut conn, &org_id, &app_id, f(None, None, Some("a_b"))).await,
        ["a_b"],
        "_ is a literal, not a wildcard"
    );
    assert_eq!(
        names(&mut conn, &org_id, &app_id, f(None, None, Some("100"))).await,
        ["100 real", "100% real"]
    );
    assert!(
        names(&mut conn, &org_id, &app_id, f(None, None, Some("zzz")))
            .await
            .is_empty()
    );
    assert_eq!(
        names(
            &mut conn,
            &org_id,
            &app_id,
            f(Some("a-1"), None, Some("bob"))
        )
        .await
        .len(),
        0,
        "filters combine with AND"
    );
}

crate::db_tests!(cursor_pagination_forward_and_backward, list_filters);
