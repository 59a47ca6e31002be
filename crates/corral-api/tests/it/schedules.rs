//! Schedules through the API (SPEC §13): every operation with its shapes and
//! errors, fires that become normal runs (`scheduleId`, `schedule_name`), refusals
//! recorded on the schedule, exactly once across three replicas on one PostgreSQL,
//! one catch-up after downtime, and no second fire after a clock jump.

use std::collections::BTreeMap;
use std::time::Duration;

use corral_core::time::now_ms;
use corral_testkit::{both, Backend, TestApp};
use serde_json::{json, Value};

const SCHEDULES: &str = "/api/agents/@corral/hello-world/schedules";

async fn fires(app: &TestApp, schedule: &str) -> Vec<(i64, String, Option<String>)> {
    let mut conn = app.state.db.conn().await.unwrap();
    corral_store::schedules::fires(&mut conn, schedule)
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.fire_at, f.status, f.error_code))
        .collect()
}

async fn crud_and_validation(b: Backend) {
    let app = TestApp::spawn_with(b, |c| c.scheduler = false).await;
    let s = app.user_with_org("Sched").await;
    let c = &s.client;

    // Bad input: each refused with the field named, nothing written.
    for (body, field) in [
        (json!({"cron_expression": "61 * * * *"}), "cron_expression"),
        (json!({"cron_expression": "* * *"}), "cron_expression"),
        (
            json!({"cron_expression": "0 9 * * *", "timezone": "Mars/Base"}),
            "timezone",
        ),
        (
            json!({"cron_expression": "0 9 * * *", "input": {"name": 5}}),
            "input.name",
        ),
        (
            json!({"cron_expression": "0 9 * * *", "input": {}}),
            "input",
        ),
        (
            json!({"cron_expression": "0 9 * * *", "input": {"name": "a"}, "actor": {}}),
            "actor",
        ),
    ] {
        let e = c.post(SCHEDULES, body.clone(), 400).await;
        assert_eq!(e["code"], "validation_failed", "{body}: {e}");
        assert!(
            e["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["field"] == field),
            "{body}: {e}"
        );
    }
    let e = c
        .post(
            "/api/agents/@corral/nope/schedules",
            json!({"cron_expression": "0 9 * * *"}),
            404,
        )
        .await;
    assert_eq!(e["code"], "not_found");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM schedules").await, 0);

    let created = c
        .post(
            SCHEDULES,
            json!({"name": "Morning", "cron_expression": "30 9 * * 1-5",
                   "timezone": "Europe/Paris", "input": {"name": "Ada"}}),
            201,
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["packageId"], "@corral/hello-world");
    assert_eq!(created["enabled"], true);
    assert_eq!(created["actor_type"], "user");
    assert_eq!(created["userId"], s.user_id.as_str());
    assert_eq!(created["running_runs"], 0);
    assert_eq!(created["last_run_number"], 0);
    assert_eq!(created["last_error"], Value::Null);
    assert_eq!(created["input"], json!({"name": "Ada"}));
    let next = created["next_run_at"].as_str().unwrap();
    let next = chrono::DateTime::parse_from_rfc3339(next).unwrap();
    let paris = next.with_timezone(&chrono_tz::Europe::Paris);
    assert_eq!(paris.format("%H:%M:%S").to_string(), "09:30:00");

    // Lists: the application's, the agent's.
    let all = c.get("/api/schedules", 200).await;
    assert_eq!(all["object"], "list");
    assert_eq!(all["data"].as_array().unwrap().len(), 1);
    assert_eq!(all["hasMore"], false);
    let mine = c.get(SCHEDULES, 200).await;
    assert_eq!(mine["data"][0]["id"], id.as_str());
    assert_eq!(
        c.get(&format!("/api/schedules/{id}"), 200).await["name"],
        "Morning"
    );

    // Update: a new timetable moves next_run_at; null clears an override; a bad
    // input is refused and changes nothing.
    let upd = c
        .put(
            &format!("/api/schedules/{id}"),
            json!({"cron_expression": "*/5 * * * * *", "timezone": "UTC",
                   "model_id_override": "m1", "enabled": false}),
            200,
        )
        .await;
    assert_eq!(upd["enabled"], false);
    assert_eq!(upd["model_id_override"], "m1");
    assert_eq!(upd["timezone"], "UTC");
    assert!(
        upd["next_run_at"].is_string(),
        "shown while disabled: {upd}"
    );
    let upd = c
        .put(
            &format!("/api/schedules/{id}"),
            json!({"model_id_override": null}),
            200,
        )
        .await;
    assert_eq!(upd["model_id_override"], Value::Null);
    let e = c
        .put(
            &format!("/api/schedules/{id}"),
            json!({"input": {"language": "de"}}),
            400,
        )
        .await;
    assert_eq!(e["code"], "validation_failed");
    assert_eq!(
        c.get(&format!("/api/schedules/{id}"), 200).await["input"],
        json!({"name": "Ada"})
    );
    c.put(
        "/api/schedules/sched_missing",
        json!({"enabled": true}),
        404,
    )
    .await;

    // Another organization sees none of it.
    let other = app.user_with_org("Other").await;
    other.client.get(&format!("/api/schedules/{id}"), 404).await;
    assert_eq!(
        other.client.get("/api/schedules", 200).await["data"],
        json!([])
    );
    other
        .client
        .delete(&format!("/api/schedules/{id}"), 404)
        .await;

    let runs = c.get(&format!("/api/schedules/{id}/runs"), 200).await;
    assert_eq!(runs["total"], 0);
    c.delete(&format!("/api/schedules/{id}"), 204).await;
    c.get(&format!("/api/schedules/{id}"), 404).await;
    c.delete(&format!("/api/schedules/{id}"), 404).await;
}

/// A schedule every second, against a mock model that answers every run: fires on
/// consecutive seconds, each a run of the schedule that succeeds.
async fn every_second_fires_runs(b: Backend) {
    let mock = corral_mockllm::MockLlm::start_per_conversation(
        "127.0.0.1:0".parse().unwrap(),
        vec![
            corral_mockllm::Turn::tool_call("output", json!({"greeting": "Hi", "length": 2})),
            corral_mockllm::Turn::text("Done."),
        ],
    )
    .await
    .unwrap();
    let app = crate::runs::app_with_model(b, &mock, |_| {}).await;
    let s = app.user_with_org("Ticker").await;
    let c = &s.client;
    let created = c
        .post(
            SCHEDULES,
            json!({"name": "Every second", "cron_expression": "* * * * * *",
                   "input": {"name": "Tick"}}),
            201,
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    c.put(
        &format!("/api/schedules/{id}"),
        json!({"enabled": false}),
        200,
    )
    .await;
    let f = fires(&app, &id).await;
    assert!((3..=6).contains(&f.len()), "fires: {f:?}");
    for w in f.windows(2) {
        assert_eq!(w[1].0 - w[0].0, 1000, "consecutive seconds: {f:?}");
    }
    assert!(f.iter().all(|x| x.1 == "fired"), "{f:?}");
    let runs = c
        .get(&format!("/api/schedules/{id}/runs?limit=100"), 200)
        .await;
    assert_eq!(runs["total"], f.len() as i64, "{runs}");
    for r in runs["data"].as_array().unwrap() {
        assert_eq!(r["scheduleId"], id.as_str());
        assert_eq!(r["schedule_name"], "Every second");
        assert_eq!(r["userId"], s.user_id.as_str());
        let done =
            crate::runs::wait_terminal(&s, r["id"].as_str().unwrap(), Duration::from_secs(60))
                .await;
        assert_eq!(done["status"], "success", "{done}");
    }
    let view = c.get(&format!("/api/schedules/{id}"), 200).await;
    assert_eq!(view["last_run_number"], f.len() as i64);
    assert!(view["last_run_at"].is_string());
    assert_eq!(view["last_error"], Value::Null);
}

/// With no model configured, every fire is refused by the run pipeline: the
/// refusal is recorded on the fire and on the schedule, and no run is left.
async fn refused_fires_are_recorded(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("Refused").await;
    let created = s
        .client
        .post(
            SCHEDULES,
            json!({"cron_expression": "* * * * * *", "input": {"name": "x"}}),
            201,
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let view = s.client.get(&format!("/api/schedules/{id}"), 200).await;
    let err = &view["last_error"];
    assert!(err["code"].is_string(), "{view}");
    assert!(err["message"].as_str().unwrap().contains("model"), "{view}");
    let f = fires(&app, &id).await;
    assert!(!f.is_empty() && f.iter().all(|x| x.1 == "refused"), "{f:?}");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM runs").await, 0);
}

/// Downtime over several fire times gives one catch-up fire; a clock jumping back
/// over an already claimed fire time does not fire it again.
async fn catch_up_once_and_no_double_fire(b: Backend) {
    let app = TestApp::spawn_with(b, |c| c.scheduler = false).await;
    let s = app.user_with_org("Catchup").await;
    let created = s
        .client
        .post(
            SCHEDULES,
            json!({"cron_expression": "*/2 * * * * *", "input": {"name": "x"}}),
            201,
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    // Every server was down for 11 s: five fire times passed.
    let now = now_ms();
    let missed = now - now.rem_euclid(2000) - 10_000;
    app.sql(&format!(
        "UPDATE schedules SET next_run_at = {missed} WHERE id = '{id}'"
    ))
    .await;
    assert_eq!(
        corral_engine::schedules::tick(&app.state, now)
            .await
            .unwrap(),
        1
    );
    let f = fires(&app, &id).await;
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].0, missed, "the catch-up is the first missed time");
    let next: i64 = app
        .scalar(&format!(
            "SELECT next_run_at FROM schedules WHERE id = '{id}'"
        ))
        .await;
    assert!(next > now && next - now <= 2000, "back on the timetable");
    // The clock jumps back 10 s: the schedule is due again at the same instant, but
    // that fire was claimed already.
    app.sql(&format!(
        "UPDATE schedules SET next_run_at = {missed} WHERE id = '{id}'"
    ))
    .await;
    assert_eq!(
        corral_engine::schedules::tick(&app.state, missed)
            .await
            .unwrap(),
        0
    );
    assert_eq!(fires(&app, &id).await.len(), 1);
    // Nothing is due before its time.
    assert_eq!(
        corral_engine::schedules::tick(&app.state, missed - 5_000)
            .await
            .unwrap(),
        0
    );
}

/// Three replicas on one PostgreSQL, 20 schedules every 2 s for 30 s: each fire
/// time of each schedule fires exactly once (fires are refused here — no model — so
/// that 300 fires start no sandbox; a refused fire is a fire all the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_fire_each_time_exactly_once() {
    let first = TestApp::spawn(Backend::Postgres).await;
    let url = first.state.config.effective_database_url();
    let mut replicas = vec![first];
    for _ in 0..2 {
        let url = url.clone();
        replicas.push(
            TestApp::spawn_with(Backend::Postgres, move |c| c.database_url = Some(url)).await,
        );
    }
    let app = &replicas[0];
    let s = app.user_with_org("Replicas").await;
    let mut ids = Vec::new();
    // Schedule creation is limited to 10 a minute per principal: half by the
    // member, half by an API key.
    let (_, key) = s.api_key(None).await;
    let by_key = app.client().bearer(&key);
    for i in 0..20 {
        let client = if i < 10 { &s.client } else { &by_key };
        let created = client
            .post(
                SCHEDULES,
                json!({"name": format!("s{i}"), "cron_expression": "*/2 * * * * *",
                       "input": {"name": "x"}}),
                201,
            )
            .await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let start = now_ms();
    tokio::time::sleep(Duration::from_secs(30)).await;
    for id in &ids {
        s.client
            .put(
                &format!("/api/schedules/{id}"),
                json!({"enabled": false}),
                200,
            )
            .await;
    }
    let end = now_ms();
    let mut by_replica: BTreeMap<String, usize> = BTreeMap::new();
    let rows: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT schedule_id, fire_at, claimed_by FROM schedule_fires ORDER BY schedule_id, fire_at",
    )
    .fetch_all(app.state.db.pool())
    .await
    .unwrap();
    for id in &ids {
        let times: Vec<i64> = rows.iter().filter(|r| &r.0 == id).map(|r| r.1).collect();
        let mut dedup = times.clone();
        dedup.dedup();
        assert_eq!(dedup, times, "no duplicate fire of {id}");
        for w in times.windows(2) {
            assert_eq!(w[1] - w[0], 2000, "no missed fire of {id}: {times:?}");
        }
        // 30 s of a 2 s timetable, first fire within 2 s of creation.
        assert!((14..=16).contains(&times.len()), "{id}: {times:?}");
        assert!(times[0] - start <= 2000 && end - times[times.len() - 1] <= 2000 + 1000);
    }
    for r in &rows {
        *by_replica.entry(r.2.clone()).or_default() += 1;
    }
    eprintln!("fires by replica: {by_replica:?} ({} in all)", rows.len());
    assert!(rows.len() >= 20 * 14, "{} fires", rows.len());
}

both!(
    crud_and_validation,
    every_second_fires_runs,
    refused_fires_are_recorded,
    catch_up_once_and_no_double_fire
);

/// Every server stops, two fire times pass, a server starts again on the same
/// database: exactly one catch-up fire, then the normal timetable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_downtime_catches_up_once() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let url = app.state.config.effective_database_url();
    let s = app.user_with_org("Restart").await;
    let created = s
        .client
        .post(
            SCHEDULES,
            json!({"cron_expression": "*/2 * * * * *", "input": {"name": "x"}}),
            201,
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    app.stop().await.unwrap();
    let stopped = now_ms();
    tokio::time::sleep(Duration::from_millis(5_000)).await;
    let restarted = now_ms();
    let app = TestApp::spawn_with(Backend::Postgres, move |c| c.database_url = Some(url)).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    app.sql(&format!(
        "UPDATE schedules SET enabled = 0 WHERE id = '{id}'"
    ))
    .await;
    let f = fires(&app, &id).await;
    let during: Vec<_> = f
        .iter()
        .filter(|x| x.0 > stopped && x.0 < restarted)
        .collect();
    assert_eq!(during.len(), 1, "one catch-up for the downtime: {f:?}");
    let after: Vec<_> = f.iter().filter(|x| x.0 >= restarted).collect();
    assert!(!after.is_empty(), "back on the timetable: {f:?}");
    for w in after.windows(2) {
        assert_eq!(w[1].0 - w[0].0, 2000, "{f:?}");
    }
}
