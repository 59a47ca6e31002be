//! Schemathesis (PyPI, installed by `scripts/python-test-deps.sh`) over the whole
//! contract against the real binary, on SQLite (its coverage and fuzzing phases) and
//! on PostgreSQL (fuzzing): a bounded number of generated requests per operation,
//! authenticated with an API key. The run fails on any 5xx, any response whose status, headers,
//! content type or body is not the one the contract documents (an error that is not
//! problem+json included), and any SSE event outside the stream's schema.
//!
//! Not checked yet: that every schema-valid request is accepted (ST202) and every
//! schema-violating one refused (ST201). The contract's parameters and bodies are
//! looser than the server's validation (package names, ranges, lengths); see
//! `docs/contract-gaps.md`.

use std::process::Command;
use std::time::Instant;

mod common;

use common::{api_client, free_port, start, wait_healthy};

/// The checks that must pass (`schemathesis run -c`).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

fn schemathesis() -> String {
    std::env::var("CORRAL_SCHEMATHESIS").unwrap_or_else(|_| {
        let venv = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/test-venv/bin/schemathesis"
        );
        assert!(
            std::path::Path::new(venv).exists(),
            "schemathesis is not installed: run the suite with scripts/test.sh, or \
             `eval \"$(scripts/python-test-deps.sh)\"` first"
        );
        venv.to_owned()
    })
}

async fn fuzz(database_url: Option<String>, phases: &'static str) {
    let dir = tempfile::tempdir().unwrap();
    let mut env: Vec<(&str, &str)> = vec![
        ("CORRAL_SANDBOX", "process"),
        ("CORRAL_WARM_POOL_SIZE", "0"),
    ];
    if let Some(url) = &database_url {
        env.push(("DATABASE_URL", url));
    }
    let server = start(dir.path(), free_port(), &env);
    let spec = wait_healthy(&server.base).await;
    let authorization = api_client(&server.base, spec)
        .await
        .header_value("authorization")
        .expect("the client's API key");
    let t0 = Instant::now();
    // Hypothesis, under schemathesis' worker threads, now and then fails inside its
    // own source inspection (CPython's `ast` is not thread-safe: "AST constructor
    // recursion depth mismatch"). That is the tool's crash, not a finding: run again
    // once; any other failure stands.
    // The coverage phase is where it happens (negative values built through
    // `filter` lambdas): it runs on one worker thread.
    let workers = if phases.contains("coverage") {
        "1"
    } else {
        "2"
    };
    let mut attempt = 0;
    let out = loop {
        attempt += 1;
        let out = tokio::task::spawn_blocking({
            let base = server.base.clone();
            let authorization = authorization.clone();
            // Its example database and crash cache go to the test's own directory.
            let cwd = dir.path().to_owned();
            move || {
                Command::new(schemathesis())
                    .current_dir(cwd)
                    .args([
                        "run",
                        &format!("{base}/api/openapi.json"),
                        "-H",
                        &format!("Authorization: {authorization}"),
                        "--checks",
                        CHECKS,
                        "--phases",
                        phases,
                        "--max-examples",
                        "5",
                        "--generation-deterministic",
                        "--workers",
                        workers,
                        "--request-timeout",
                        "10",
                        // Sandbox-facing routes take signed CloudEvents, not what a
                        // client sends; they have their own tests. The OpenRouter
                        // catalog answers 502 by design (no outbound request), as the
                        // reference documents; its own test checks it.
                        "--exclude-path-regex",
                        "^/internal/|/events|^/api/models/openrouter$",
                        // Since the integration governance routes were added, hypothesis
                        // rejects most values it draws for the `{packageId}` path
                        // parameter of ten `/api/integrations/{packageId}…` operations
                        // (its filter_too_much health check; cause not found yet). The
                        // values it keeps are still sent and checked.
                        "--suppress-health-check",
                        "filter_too_much",
                        "--no-color",
                    ])
                    .output()
                    .expect("run schemathesis")
            }
        })
        .await
        .unwrap();
        let crashed = String::from_utf8_lossy(&out.stdout).contains(HYPOTHESIS_THREAD_RACE);
        if out.status.success() || !crashed || attempt == 2 {
            break out;
        }
        eprintln!(
            "schemathesis crashed in hypothesis ({HYPOTHESIS_THREAD_RACE}); running it again"
        );
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text.rsplit("SUMMARY").next().unwrap_or(&text);
    eprintln!(
        "schemathesis ({}) in {:?}:{summary}",
        if database_url.is_some() {
            "postgres"
        } else {
            "sqlite"
        },
        t0.elapsed()
    );
    assert!(
        out.status.success(),
        "schemathesis found contract violations:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The marker of hypothesis' thread race in its own source inspection.
const HYPOTHESIS_THREAD_RACE: &str = "AST constructor recursion depth mismatch";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_over_the_contract_on_sqlite() {
    fuzz(None, "coverage,fuzzing").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// Fuzzing only: the coverage phase's ~3,500 systematic cases (the slow part) check
/// the contract, which does not depend on the backend; generated values (NUL, huge
/// numbers, odd Unicode) are what a database can refuse differently.
async fn schemathesis_over_the_contract_on_postgres() {
    fuzz(
        Some(corral_testkit::fresh_postgres_database().await),
        "fuzzing",
    )
    .await;
}
