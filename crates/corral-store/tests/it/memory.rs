//! Agent memory: full-text recall ranked on both backends, then substring; actor
//! scoping (an end-user never sees another's rows, shared rows are everyone's);
//! pinned slots overwrite by key; deletes narrowed by actor, run and id.

use corral_core::{AppId, OrgId};
use corral_store::memory::{self, Actor, Filter, Scope};
use corral_store::Db;

use crate::NOW;

fn scope(org: &OrgId, app: &AppId, actor: Actor) -> Scope {
    Scope {
        org_id: org.clone(),
        app_id: app.clone(),
        package_id: "@acme/agent".into(),
        actor,
    }
}

async fn recall_is_ranked_and_scoped(db: Db) {
    let owner = crate::user(&db, "Owner").await;
    let (org, app) = crate::org(&db, &owner).await;
    let a = scope(&org, &app, Actor::end_user("eu_a"));
    let b = scope(&org, &app, Actor::end_user("eu_b"));
    let shared = scope(&org, &app, Actor::shared());
    let mut conn = db.conn().await.unwrap();
    for (s, text) in [
        (&a, "The user prefers Python for data tasks"),
        (
            &a,
            "Python, Python and more Python: the user loves python scripts",
        ),
        (&a, "Meetings are on Tuesdays"),
        (&b, "B also prefers Python"),
        (&shared, "Company style guide: write Python with type hints"),
    ] {
        memory::add_memory(&mut conn, s, text, Some("run_1"), NOW)
            .await
            .unwrap();
    }
    let backend = db.backend();
    let hits = memory::recall(&mut conn, backend, &a, Some("python"), 10)
        .await
        .unwrap();
    let texts: Vec<&str> = hits.iter().map(|h| h.content.as_str()).collect();
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(
        !texts.iter().any(|t| t.starts_with("B ")),
        "B's memory leaked: {texts:?}"
    );
    assert!(texts.contains(&"Company style guide: write Python with type hints"));
    // The densest match ranks first (bm25 / ts_rank).
    assert!(texts[0].starts_with("Python, Python"), "{texts:?}");
    // Stemming: "prefer" finds "prefers"; a substring finds what words miss.
    let hits = memory::recall(&mut conn, backend, &a, Some("prefer"), 10)
        .await
        .unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    let hits = memory::recall(&mut conn, backend, &a, Some("uesday"), 10)
        .await
        .unwrap();
    assert_eq!(hits[0].content, "Meetings are on Tuesdays");
    // Query syntax is data, never an error.
    for q in ["\"", "python AND (", "*", "NEAR(", "%_", "'; DROP TABLE x"] {
        memory::recall(&mut conn, backend, &a, Some(q), 10)
            .await
            .unwrap();
    }
    // No query: the most recent, limited.
    let recent = memory::recall(&mut conn, backend, &a, None, 2)
        .await
        .unwrap();
    assert_eq!(recent.len(), 2);
    assert!(recent[0].id > recent[1].id);
}

async fn pinned_slots_and_deletes(db: Db) {
    let owner = crate::user(&db, "Owner").await;
    let (org, app) = crate::org(&db, &owner).await;
    let a = scope(&org, &app, Actor::user(&owner));
    let mut conn = db.conn().await.unwrap();
    memory::set_pinned(&mut conn, &a, "checkpoint", "{\"n\":1}", Some("run_1"), NOW)
        .await
        .unwrap();
    memory::set_pinned(
        &mut conn,
        &a,
        "checkpoint",
        "{\"n\":2}",
        Some("run_2"),
        NOW + 1,
    )
    .await
    .unwrap();
    memory::set_pinned(
        &mut conn,
        &scope(&org, &app, Actor::shared()),
        "checkpoint",
        "0",
        None,
        NOW,
    )
    .await
    .unwrap();
    assert_eq!(memory::count(&mut conn, &a, true).await.unwrap(), 1);
    let slots = memory::pinned_for(&mut conn, &a).await.unwrap();
    assert_eq!(slots.len(), 1, "the actor's slot wins over the shared one");
    assert_eq!(slots[0].content, "{\"n\":2}");
    assert_eq!(slots[0].run_id.as_deref(), Some("run_2"));
    memory::add_memory(&mut conn, &a, "one", Some("run_1"), NOW)
        .await
        .unwrap();
    memory::add_memory(&mut conn, &a, "two", Some("run_2"), NOW)
        .await
        .unwrap();
    let f = Filter {
        org_id: &org,
        app_id: &app,
        package_id: "@acme/agent",
        actor: Some(&a.actor),
        run_id: Some("run_1"),
    };
    assert_eq!(memory::list(&mut conn, &f, false).await.unwrap().len(), 1);
    assert_eq!(
        memory::delete(&mut conn, &f, false, None, None)
            .await
            .unwrap(),
        1
    );
    // Another organization's filter touches nothing.
    let (org2, app2) = crate::org(&db, &owner).await;
    let other = Filter {
        org_id: &org2,
        app_id: &app2,
        package_id: "@acme/agent",
        actor: None,
        run_id: None,
    };
    assert_eq!(
        memory::delete(&mut conn, &other, true, None, None)
            .await
            .unwrap(),
        0
    );
    assert_eq!(memory::count(&mut conn, &a, false).await.unwrap(), 1);
}

crate::db_tests!(recall_is_ranked_and_scoped, pinned_slots_and_deletes);
