//! The NUL character (U+0000) through every string the contract accepts: each path
//! parameter, each query parameter and each string field of each JSON request body
//! (nested ones and free-form objects included), one at a time, on both backends.
//! PostgreSQL cannot store NUL in text, so without the edge check these were 500s
//! there and 2xx on SQLite; now every one is the same 400 naming what held it.

use corral_testkit::{both, Backend, Resp, TestApp};
use reqwest::Method;
use serde_json::{json, Map, Value};

const NUL: &str = "a\u{0}b";

/// Operations whose checks before the body legitimately answer first: the sandbox
/// routes authenticate a signed request (401), the connect helper's redeem its
/// pairing token (401), and the API-key-only route refuses a session (403). They see
/// the NUL in their path and query like every other route.
fn body_checked_before(path: &str) -> bool {
    path.starts_with("/api/runs/{runId}/events")
        || path.starts_with("/internal/")
        || path == "/api/model-providers-oauth/pair/redeem"
}

fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap_or_default();
            resolve(spec, &spec["components"]["schemas"][name])
        }
        None => schema,
    }
}

fn is_type(schema: &Value, t: &str) -> bool {
    match &schema["type"] {
        Value::String(s) => s == t,
        Value::Array(a) => a.iter().any(|x| x == t),
        _ => false,
    }
}

/// A plausible instance of `schema` whose string leaves are listed in `leaves` (as
/// JSON pointers) so each can be replaced by a NUL string in turn.
fn sample(
    spec: &Value,
    schema: &Value,
    ptr: &str,
    leaves: &mut Vec<String>,
    depth: usize,
) -> Value {
    let schema = resolve(spec, schema);
    if depth > 6 {
        return Value::Null;
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        if let Some(first) = schema[key].as_array().and_then(|a| {
            a.iter()
                .find(|s| !is_type(resolve(spec, s), "null"))
                .or(a.first())
        }) {
            return sample(spec, first, ptr, leaves, depth + 1);
        }
    }
    if let Some(e) = schema["enum"].as_array().and_then(|a| a.first()) {
        if e.is_string() {
            leaves.push(ptr.to_owned());
        }
        return e.clone();
    }
    if is_type(schema, "object") || schema.get("properties").is_some() {
        let mut out = Map::new();
        if let Some(props) = schema["properties"].as_object() {
            for (k, s) in props {
                let child = format!("{ptr}/{k}");
                out.insert(k.clone(), sample(spec, s, &child, leaves, depth + 1));
            }
        } else {
            // A free-form object (run input, metadata, settings): one string entry.
            leaves.push(format!("{ptr}/k"));
            out.insert("k".into(), json!("x"));
        }
        return Value::Object(out);
    }
    if is_type(schema, "array") {
        let item = sample(
            spec,
            &schema["items"],
            &format!("{ptr}/0"),
            leaves,
            depth + 1,
        );
        return json!([item]);
    }
    if is_type(schema, "string") {
        leaves.push(ptr.to_owned());
        return json!(match schema["format"].as_str() {
            Some("email") => "a@example.com",
            Some("uri") | Some("url") => "https://example.com",
            _ => "x",
        });
    }
    if is_type(schema, "integer") || is_type(schema, "number") {
        return json!(1);
    }
    if is_type(schema, "boolean") {
        return json!(true);
    }
    Value::Null
}

/// `a/b/0/c` → `a.b[0].c`, as the server names fields.
fn field_name(ptr: &str) -> String {
    let mut out = String::new();
    for seg in ptr.trim_start_matches('/').split('/') {
        if seg.parse::<usize>().is_ok() {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    if out.is_empty() {
        "body".into()
    } else {
        out
    }
}

fn fill_path(path: &str, org_id: &str, nul_param: Option<&str>) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closing brace") + start;
        let name = &rest[start + 1..end];
        out.push_str(if Some(name) == nul_param {
            "a%00b"
        } else if name == "orgId" {
            org_id
        } else {
            "x"
        });
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn assert_refused(r: &Resp, what: &str, param: Option<&str>, field: Option<&str>) {
    assert_eq!(
        r.status, 400,
        "{what}: expected 400, got {}: {}",
        r.status, r.text
    );
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("application/problem+json"), "{what}: {ct}");
    if let Some(p) = param {
        assert_eq!(r.body["param"], p, "{what}: {}", r.text);
    }
    if let Some(f) = field {
        let fields: Vec<&str> = r.body["errors"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["field"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(fields, vec![f], "{what}: {}", r.text);
        assert_eq!(r.body["errors"][0]["code"], "invalid_characters", "{what}");
    }
}

async fn nul_is_refused_in_every_string_of_the_contract(b: Backend) {
    let app = TestApp::spawn(b).await;
    let alice = app.user_with_org("Alice").await;
    let c = &alice.client;
    let spec = app.spec().clone();
    let (mut paths, mut queries, mut fields, mut limited) = (0, 0, 0, 0);
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let Ok(m) = Method::from_bytes(method.to_uppercase().as_bytes()) else {
                continue;
            };
            let what = format!("{method} {path}");
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let plain = fill_path(path, &alice.org_id, None);
            for p in &params {
                let name = p["name"].as_str().unwrap_or_default();
                match p["in"].as_str() {
                    Some("path") => {
                        let url = fill_path(path, &alice.org_id, Some(name));
                        let r = c.send(m.clone(), &url, None, &[]).await;
                        assert_refused(&r, &format!("{what} path {name}"), Some("path"), None);
                        paths += 1;
                    }
                    Some("query") => {
                        let url = format!("{plain}?{name}=a%00b");
                        let r = c.send(m.clone(), &url, None, &[]).await;
                        assert_refused(&r, &format!("{what} ?{name}"), Some(name), None);
                        queries += 1;
                    }
                    _ => {}
                }
            }
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            if schema.is_null() || body_checked_before(path) {
                continue;
            }
            let mut leaves = Vec::new();
            let body = sample(&spec, schema, "", &mut leaves, 0);
            for leaf in leaves {
                let mut b = body.clone();
                *b.pointer_mut(&leaf).expect("leaf") = json!(NUL);
                let r = c.send(m.clone(), &plain, Some(b), &[]).await;
                let name = field_name(&leaf);
                // Rate limits answer before the body is read (model tests: 5 a minute).
                if r.status == 429 && op["responses"].get("429").is_some() {
                    limited += 1;
                    continue;
                }
                assert_refused(&r, &format!("{what} body {name}"), None, Some(&name));
                fields += 1;
            }
        }
    }
    eprintln!("NUL refused in {paths} path, {queries} query and {fields} body strings ({limited} rate limited)");
    assert!(
        paths > 50 && queries > 20 && fields > 100 && limited < fields / 10,
        "the walk covered too little: {paths} path, {queries} query, {fields} body strings \
         ({limited} rate limited)"
    );

    // Unauthenticated sign-up, the first report: refused and nothing created.
    let anon = app.client();
    let r = anon
        .send(
            Method::POST,
            "/api/auth/sign-up/email",
            Some(json!({"email": "nul@example.com", "password": "correct horse battery", "name": "n\u{0}"})),
            &[],
        )
        .await;
    assert_refused(&r, "sign-up", None, Some("name"));
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM users WHERE email = 'nul@example.com'")
            .await,
        0
    );
}

both!(nul_is_refused_in_every_string_of_the_contract);
