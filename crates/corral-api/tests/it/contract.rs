//! The contract: `/api/openapi.json` is generated from the code, matches the committed
//! snapshot, documents every route the server answers, and stays compatible with the
//! reference (Appstrate) contract for every operation Corral implements.

use std::collections::BTreeSet;

use corral_testkit::{Backend, TestApp};
use serde_json::Value;

fn reference() -> Value {
    corral_testkit::contract::reference().clone()
}

const METHODS: &[&str] = &["get", "post", "put", "patch", "delete"];

/// Corral's own routes, absent from the reference contract: webhooks (SPEC §11 defines
/// them; the reference documents none) and the cluster's workers (scale-out).
const CORRAL_ONLY: &[&str] = &["/api/webhooks", "/api/admin/workers"];

fn operations(spec: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for m in METHODS {
            if let Some(op) = item.get(*m) {
                out.push((m.to_string(), path.clone(), op.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn snapshot_matches_the_committed_contract() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let served = app.spec().clone();
    assert_eq!(
        served,
        serde_json::from_str::<Value>(&corral_api::openapi().to_json().unwrap()).unwrap()
    );
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let pretty = serde_json::to_string_pretty(&served).unwrap() + "\n";
    if std::env::var("UPDATE_SNAPSHOTS").is_ok() {
        std::fs::write(path, &pretty).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == pretty,
        "docs/openapi.json is out of date: the API changed. Review the change and run \
         `UPDATE_SNAPSHOTS=1 cargo nextest run -p corral-api snapshot` to accept it."
    );
}

#[tokio::test]
async fn operations_match_the_reference() {
    let reference = reference();
    let ours = corral_api::openapi();
    let ours: Value = serde_json::from_str(&ours.to_json().unwrap()).unwrap();
    assert_eq!(
        ours["openapi"].as_str().map(|v| v.starts_with("3.1")),
        Some(true)
    );
    let mut checked = 0;
    for (method, path, op) in operations(&ours) {
        if CORRAL_ONLY.iter().any(|p| path.starts_with(p)) {
            continue;
        }
        let Some(theirs) = reference["paths"][&path].get(&method) else {
            panic!("{method} {path} is not in the reference contract; Corral-only routes must be listed here");
        };
        assert_eq!(
            op["operationId"], theirs["operationId"],
            "{method} {path}: operationId"
        );
        let success = |o: &Value| -> BTreeSet<String> {
            o["responses"]
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| k.starts_with('2'))
                .cloned()
                .collect()
        };
        assert_eq!(
            success(&op),
            success(theirs),
            "{method} {path}: success statuses"
        );
        // Every field the reference requires in the success body, we document too.
        for status in success(theirs) {
            let t = resolve(
                &reference,
                &theirs["responses"][&status]["content"]["application/json"]["schema"],
            );
            let o = resolve(
                &ours,
                &op["responses"][&status]["content"]["application/json"]["schema"],
            );
            for field in t["required"].as_array().into_iter().flatten() {
                let f = field.as_str().unwrap();
                assert!(
                    o["properties"].get(f).is_some(),
                    "{method} {path} {status}: field {f} missing from our schema"
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 35, "only {checked} operations checked");
}

fn resolve(spec: &Value, schema: &Value) -> Value {
    if let Some(r) = schema["$ref"].as_str() {
        let mut cur = spec;
        for part in r.trim_start_matches("#/").split('/') {
            cur = &cur[part];
        }
        return resolve(spec, cur);
    }
    schema.clone()
}

/// Every operation of the reference contract is requested; whatever the server routes
/// (anything but `route_not_found` / 405) must be in our generated contract.
#[tokio::test]
async fn every_served_route_is_documented() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let reference = reference();
    let http = reqwest::Client::new();
    let mut served = 0;
    for (method, path, _) in operations(&reference) {
        let concrete: String = path
            .split('/')
            .map(|s| if s.starts_with('{') { "x1" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let r = http
            .request(
                method.to_uppercase().parse().unwrap(),
                format!("{}{concrete}", app.base),
            )
            .send()
            .await
            .unwrap();
        if corral_api::UNDOCUMENTED_ROUTES.contains(&path.as_str()) {
            continue;
        }
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if status == 405 || body["code"] == "route_not_found" {
            continue;
        }
        served += 1;
        let documented = corral_testkit::contract::find_template(app.spec(), &concrete)
            .is_some_and(|t| app.spec()["paths"][t].get(&method).is_some());
        assert!(
            documented,
            "{method} {path} is served but not documented (got {status})"
        );
    }
    assert!(served >= 35, "only {served} routes answered");

    // Routes added outside the documented routers must be on the allow-list.
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut stack = vec![std::path::PathBuf::from(src)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for (i, line) in text.lines().enumerate() {
                    if let Some(rest) = line.trim().strip_prefix(".route(\"") {
                        let route = rest.split('"').next().unwrap();
                        assert!(
                            corral_api::UNDOCUMENTED_ROUTES.contains(&route),
                            "{}:{}: {route} is added with .route() and is not in the contract",
                            p.display(),
                            i + 1
                        );
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn docs_page_works_offline() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let http = reqwest::Client::new();
    let page = http
        .get(format!("{}/api/docs", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("/api/docs/docs.js"));
    let external: Vec<&str> = html
        .split(['"', '\''])
        .filter(|s| s.starts_with("http"))
        .collect();
    assert!(
        external.is_empty(),
        "the docs page loads {external:?} from outside Corral"
    );
    let js = http
        .get(format!("{}/api/docs/docs.js", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.text().await.unwrap().contains("/api/openapi.json"));
}

/// The contract and its docs page are operations of the contract too (the reference
/// lists them); the contract revalidates with its strong ETag.
#[tokio::test]
async fn the_contract_is_listed_and_revalidates() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for (path, id) in [
        ("/api/openapi.json", "getOpenApiSpec"),
        ("/api/docs", "getSwaggerUI"),
    ] {
        assert_eq!(app.spec()["paths"][path]["get"]["operationId"], id);
    }
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/api/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.len() == 66, "{etag}");
    let r = http
        .get(format!("{}/api/openapi.json", app.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = http
        .get(format!("{}/api/openapi.json", app.base))
        .header("if-none-match", "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// The reference validation of the testkit is real: a body of the old `/api/agents`
/// shape (dependencies as arrays) fails it, the reference's shape passes, and every
/// exemption names an operation of the reference.
#[tokio::test]
async fn reference_shapes_are_enforced() {
    use corral_testkit::contract::{check_reference_response, REFERENCE_SHAPE_EXEMPT};
    let app = TestApp::spawn(Backend::Sqlite).await;
    let item = |deps: Value| {
        serde_json::json!({"object": "list", "hasMore": false, "data": [{
            "id": "@a/b", "source": "local", "type": "agent", "running_runs": 0,
            "scope": "@a", "keywords": [], "version": null, "dependencies": deps
        }]})
    };
    let arrays = item(
        serde_json::json!({"skills": [{"id": "@a/s", "version": "^1"}], "mcp_servers": [], "integrations": []}),
    );
    let maps =
        item(serde_json::json!({"skills": {"@a/s": "^1"}, "mcp_servers": {}, "integrations": {}}));
    assert!(check_reference_response(app.spec(), "GET", "/api/agents", 200, &arrays).is_err());
    check_reference_response(app.spec(), "GET", "/api/agents", 200, &maps).unwrap();
    let reference = reference();
    for (method, path, why) in REFERENCE_SHAPE_EXEMPT {
        assert!(!why.is_empty());
        assert!(
            reference["paths"][path]
                .get(method.to_lowercase())
                .is_some(),
            "exempt {method} {path} is not a reference operation"
        );
    }
}
