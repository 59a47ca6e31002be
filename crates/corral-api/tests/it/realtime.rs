//! Realtime SSE (SPEC §10): live run events through the database triggers, tenancy
//! and auth, `Last-Event-ID` replay racing a concurrent writer, slow clients dropped
//! without slowing the others, closed connections freed at once, and two replicas
//! sharing one PostgreSQL.

use std::time::Duration;

use corral_testkit::sse::{connect, Stream};
use corral_testkit::{both, Backend, Session, TestApp};

use crate::run_events::{log_event, post_signed, running_run, SINK};

const WAIT: Duration = Duration::from_secs(10);

async fn open(app: &TestApp, path: &str, key: &str, last: Option<i64>) -> Stream {
    let sep = if path.contains('?') { '&' } else { '?' };
    let url = format!("{}{path}{sep}token={key}", app.base);
    let last = last.map(|l| l.to_string());
    let mut headers = Vec::new();
    if let Some(l) = &last {
        headers.push(("last-event-id", l.as_str()));
    }
    let (status, stream, ct) = connect(&url, &headers).await;
    assert_eq!(status, 200, "{path}: {ct}");
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    stream.expect("stream")
}

/// Inserts `n` log entries for `run` straight into the table (the trigger numbers
/// them), `writers` at a time.
async fn write_logs(app: &TestApp, run: &str, writers: usize, n: usize) {
    let mut tasks = Vec::new();
    for w in 0..writers {
        let pool = app.state.db.pool().clone();
        let run = run.to_owned();
        tasks.push(tokio::spawn(async move {
            for i in 0..n {
                sqlx::query(
                    "INSERT INTO run_logs (run_id, type, level, message, created_at) \
                     VALUES ($1, 'log', 'info', $2, $3)",
                )
                .bind(&run)
                .bind(format!("w{w}-{i}"))
                .bind(corral_core::time::now_ms())
                .execute(&pool)
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

async fn log_seqs_in_db(app: &TestApp, run: &str) -> Vec<i64> {
    sqlx::query_scalar::<_, i64>(
        "SELECT seq FROM realtime_events WHERE run_id = $1 AND kind = 'run_log' ORDER BY seq",
    )
    .bind(run)
    .fetch_all(app.state.db.pool())
    .await
    .unwrap()
}

async fn streams_are_live_scoped_and_authenticated(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("Live").await;
    let (_, key) = s.api_key(None).await;
    let other = app.user_with_org("Spy").await;
    let (_, spy_key) = other.api_key(None).await;

    let mut all = open(&app, "/api/realtime/runs", &key, None).await;
    let mut spy = open(&app, "/api/realtime/runs", &spy_key, None).await;

    let run = running_run(&app, &s).await;
    let f = all.next(WAIT).await.expect("run_update for the new run");
    assert_eq!(f.event, "run_update");
    assert_eq!(f.json()["id"], run.as_str());
    assert_eq!(f.json()["status"], "running");
    let first_seq = f.seq().expect("numbered");

    // The per-run stream starts with a snapshot of the run (unnumbered).
    let mut one = open(&app, &format!("/api/realtime/runs/{run}"), &key, None).await;
    let snap = one.next(WAIT).await.expect("snapshot");
    assert_eq!(snap.event, "run_update");
    assert_eq!(snap.id, None);
    assert_eq!(snap.json()["id"], run.as_str());
    assert_eq!(snap.json()["status"], "running");

    // Events sent by the sandbox reach both streams, numbered in order.
    let events = format!("/api/runs/{run}/events");
    for (i, msg) in ["one", "two", "three"].iter().enumerate() {
        let (st, _) = post_signed(
            &app,
            &events,
            &log_event(&run, i as u64 + 1, msg),
            SINK,
            msg,
        )
        .await;
        assert_eq!(st, 200);
    }
    let mut last = first_seq;
    for msg in ["one", "two", "three"] {
        let f = one.next(WAIT).await.expect("run_log");
        assert_eq!(f.event, "run_log");
        assert_eq!(f.json()["message"], msg);
        assert_eq!(f.json()["runId"], run.as_str());
        assert!(f.json().get("data").is_none(), "not verbose: {}", f.data);
        let seq = f.seq().unwrap();
        assert!(seq > last, "{seq} after {last}");
        last = seq;
        let g = all.next(WAIT).await.expect("run_log on the app stream");
        assert_eq!(g.seq(), Some(seq));
    }
    // Nothing of this org reaches another org's stream.
    assert!(spy.next(Duration::from_millis(500)).await.is_none());

    // `channels=` filters server-side; verbose adds the log's data.
    let mut updates = open(&app, "/api/realtime/runs?channels=run_update", &key, None).await;
    let mut verbose = open(
        &app,
        &format!("/api/realtime/runs/{run}?verbose=true"),
        &key,
        None,
    )
    .await;
    assert_eq!(verbose.next(WAIT).await.unwrap().id, None, "snapshot first");
    let (st, _) = post_signed(&app, &events, &log_event(&run, 4, "four"), SINK, "four").await;
    assert_eq!(st, 200);
    let v = verbose.next(WAIT).await.expect("verbose log");
    assert!(v.json().get("data").is_some(), "{}", v.data);
    app.sql(&format!(
        "UPDATE runs SET status = 'cancelled' WHERE id = '{run}'"
    ))
    .await;
    app.state
        .runs
        .bus
        .publish(&run.as_str().into(), corral_core::RunStatus::Cancelled)
        .await;
    let u = updates.next(WAIT).await.expect("the status change only");
    assert_eq!(
        (u.event.as_str(), u.json()["status"].as_str()),
        ("run_update", Some("cancelled"))
    );

    // Session auth takes the org and application from the query.
    let cookie = s.client.header_value("cookie").expect("session cookie");
    let url = format!(
        "{}/api/realtime/runs/{run}?orgId={}&applicationId={}",
        app.base, s.org_id, s.app_id
    );
    let (st, stream, _) = connect(&url, &[("cookie", cookie.as_str())]).await;
    assert_eq!(st, 200);
    drop(stream);
    // No credentials: 401. A key without runs:read: 403. Another org's run: 404.
    let (st, _, _) = connect(&format!("{}/api/realtime/runs", app.base), &[]).await;
    assert_eq!(st, 401);
    let (_, narrow) = s.api_key(Some(vec!["agents:read"])).await;
    let (st, _, body) = connect(
        &format!("{}/api/realtime/runs?token={narrow}", app.base),
        &[],
    )
    .await;
    assert_eq!(st, 403, "{body}");
    let (st, _, _) = connect(
        &format!("{}/api/realtime/runs/{run}?token={spy_key}", app.base),
        &[],
    )
    .await;
    assert_eq!(st, 404);
    let (st, _, body) = connect(
        &format!("{}/api/realtime/runs?token={key}&verbose=maybe", app.base),
        &[],
    )
    .await;
    assert_eq!(st, 400, "{body}");
}

/// A reader that keeps disconnecting and reconnecting with `Last-Event-ID` while
/// three writers append concurrently ends up with every event exactly once, in order.
async fn replay_races_a_concurrent_writer(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("Replay").await;
    let (_, key) = s.api_key(None).await;
    let run = running_run(&app, &s).await;
    const WRITERS: usize = 3;
    const EACH: usize = 100;
    let total = WRITERS * EACH;

    let writer = write_logs(&app, &run, WRITERS, EACH);
    let reader = async {
        let path = format!("/api/realtime/runs/{run}?channels=run_log");
        let mut seen: Vec<i64> = Vec::new();
        let mut round = 0usize;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while seen.len() < total {
            if tokio::time::Instant::now() > deadline {
                let all = log_seqs_in_db(&app, &run).await;
                let missing: Vec<i64> = all.iter().filter(|s| !seen.contains(s)).copied().collect();
                panic!(
                    "only {} of {total}; missing {missing:?}; seen {seen:?}",
                    seen.len()
                );
            }
            round += 1;
            // The first connection asks for everything from the start (0).
            let mut st = open(&app, &path, &key, Some(seen.last().copied().unwrap_or(0))).await;
            // Take a few frames (a different number each round), then hang up.
            let take = 1 + (round * 7) % 23;
            for _ in 0..take {
                match st.next(Duration::from_millis(800)).await {
                    Some(f) if f.event == "run_log" => seen.push(f.seq().expect("numbered")),
                    Some(_) => {}
                    None => break,
                }
            }
        }
        (seen, round)
    };
    let ((), (seen, rounds)) = tokio::join!(writer, reader);
    assert!(rounds > 5, "the reader reconnected {rounds} times");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing: {seen:?}"
    );
    assert_eq!(
        seen,
        log_seqs_in_db(&app, &run).await,
        "complete, no duplicate"
    );
    assert_eq!(seen.len(), total);
}

/// A client that stops reading is dropped when its queue fills; a fast client on the
/// same run gets every event, and closed connections free their subscriptions.
async fn slow_clients_are_dropped_and_closed_ones_freed(b: Backend) {
    let app = TestApp::spawn_with(b, |c| c.realtime_queue_size = 1000).await;
    let s = app.user_with_org("Slow").await;
    let (_, key) = s.api_key(None).await;
    let run = running_run(&app, &s).await;

    // The slow client: a raw socket with a tiny receive buffer that never reads.
    let addr = app.base.trim_start_matches("http://").to_owned();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut slow = sock.connect(addr.parse().unwrap()).await.unwrap();
    use tokio::io::AsyncWriteExt as _;
    slow.write_all(
        format!("GET /api/realtime/runs/{run}?token={key} HTTP/1.1\r\nhost: {addr}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut fast = open(
        &app,
        &format!("/api/realtime/runs/{run}?channels=run_log"),
        &key,
        None,
    )
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.state.realtime.subscribers() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "both subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Big entries, far more than the slow socket's buffers hold.
    // The queue (1000 frames) must fill behind the kernel's socket buffers (a few MiB).
    let big = "x".repeat(8000);
    let n = 2000usize;
    let pool = app.state.db.pool().clone();
    let run2 = run.clone();
    let writer = tokio::spawn(async move {
        for i in 0..n {
            sqlx::query(
                "INSERT INTO run_logs (run_id, type, level, message, created_at) \
                 VALUES ($1, 'log', 'info', $2, $3)",
            )
            .bind(&run2)
            .bind(format!("{i}:{big}"))
            .bind(corral_core::time::now_ms())
            .execute(&pool)
            .await
            .unwrap();
        }
    });
    let mut got = 0usize;
    let mut last = 0i64;
    while got < n {
        let f = fast
            .next(WAIT)
            .await
            .unwrap_or_else(|| panic!("fast client stuck at {got}"));
        let Some(seq) = f.seq() else {
            assert_eq!(f.event, "run_update", "only the snapshot is unnumbered");
            continue;
        };
        assert!(seq > last);
        last = seq;
        got += 1;
    }
    writer.await.unwrap();
    assert!(
        app.state.realtime.dropped_slow() >= 1,
        "the slow client was dropped"
    );
    assert_eq!(
        app.state.realtime.subscribers(),
        1,
        "only the fast client remains"
    );
    drop(slow);

    // Closing the HTTP connection frees the subscription at once.
    drop(fast);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while app.state.realtime.subscribers() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscription not freed after the client hung up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A stream's snapshot is read once its subscription exists: an event committed while
/// the snapshot is read (a run finishing as its page opens) still arrives, live. Read
/// the other way round, that event fell between the two and the page kept the run's
/// older state.
async fn an_event_committed_during_the_snapshot_arrives(b: Backend) {
    use futures::StreamExt as _;
    let app = TestApp::spawn(b).await;
    let s = app.user_with_org("Snapshot").await;
    let run = running_run(&app, &s).await;
    let org = corral_core::OrgId::from(s.org_id.clone());
    let filter = corral_realtime::Filter {
        application_id: corral_core::AppId::from(s.app_id.clone()),
        end_user_id: None,
        run_id: Some(corral_core::RunId::from(run.clone())),
        package_id: None,
        channels: corral_realtime::parse_channels(Some("run_log")),
    };
    let snapshot = async {
        write_logs(&app, &run, 1, 1).await;
        app.state.runs.bus.events_written(&org);
        Ok(vec![bytes::Bytes::from_static(
            b"event: snapshot\ndata: {}\n\n",
        )])
    };
    let stream = app
        .state
        .realtime
        .stream(&org, filter, false, None, snapshot)
        .await
        .expect("stream");
    let mut stream = std::pin::pin!(stream);
    let mut frames = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        while let Some(f) = stream.next().await {
            let text = String::from_utf8_lossy(&f).into_owned();
            let log = text.contains("event: run_log");
            frames.push(text);
            if log {
                return;
            }
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "the event written during the snapshot never came: {frames:?}"
    );
    assert!(
        frames.iter().any(|f| f.contains("event: snapshot")),
        "{frames:?}"
    );
}

both!(
    streams_are_live_scoped_and_authenticated,
    replay_races_a_concurrent_writer,
    slow_clients_are_dropped_and_closed_ones_freed,
    an_event_committed_during_the_snapshot_arrives
);

/// Two servers on one PostgreSQL: an event written through one reaches an SSE client
/// of the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_cross_replicas_on_postgres() {
    let a = TestApp::spawn(Backend::Postgres).await;
    let url = a.state.config.database_url.clone();
    let b = TestApp::spawn_with(Backend::Postgres, |c| c.database_url = url).await;
    let s: Session = a.user_with_org("Replicas").await;
    let (_, key) = s.api_key(None).await;
    let run = running_run(&a, &s).await;
    let mut on_b = open(&b, &format!("/api/realtime/runs/{run}"), &key, None).await;
    assert_eq!(on_b.next(WAIT).await.expect("snapshot").id, None);
    let (st, _) = post_signed(
        &a,
        &format!("/api/runs/{run}/events"),
        &log_event(&run, 1, "from a"),
        SINK,
        "x1",
    )
    .await;
    assert_eq!(st, 200);
    let f = on_b.next(WAIT).await.expect("the event crossed replicas");
    assert_eq!(f.event, "run_log");
    assert_eq!(f.json()["message"], "from a");
}

/// The `LISTEN` connection dies (PostgreSQL restarted, a proxy cut it): the server
/// reconnects and re-reads what was written meanwhile, so a live client misses
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_reconnect_catches_up_on_postgres() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let s = app.user_with_org("Reconnect").await;
    let (_, key) = s.api_key(None).await;
    let run = running_run(&app, &s).await;
    let mut st = open(
        &app,
        &format!("/api/realtime/runs/{run}?channels=run_log"),
        &key,
        None,
    )
    .await;
    assert_eq!(st.next(WAIT).await.expect("snapshot").id, None);
    let kill_listeners = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
    };
    // Wait until the listener is up, then cut it and write while it is down.
    let deadline = tokio::time::Instant::now() + WAIT;
    while kill_listeners().await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no LISTEN connection found"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    write_logs(&app, &run, 1, 20).await;
    let want = log_seqs_in_db(&app, &run).await;
    let mut got = Vec::new();
    while got.len() < want.len() {
        let f = st
            .next(WAIT)
            .await
            .unwrap_or_else(|| panic!("got {} of {} after the reconnect", got.len(), want.len()));
        got.push(f.seq().unwrap());
    }
    assert_eq!(got, want);
}
