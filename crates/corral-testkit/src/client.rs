//! An HTTP client for tests: carries the session cookie or API key and the org/app
//! headers, asserts the expected status, and validates every JSON body against the
//! generated contract.

use std::sync::Arc;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Method;
use serde_json::Value;

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    spec: Arc<Value>,
    headers: HeaderMap,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The problem code of an error response.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

impl Client {
    pub fn new(base: &str, spec: Arc<Value>) -> Client {
        Client {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: base.to_owned(),
            spec,
            headers: HeaderMap::new(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// A copy with one more default header.
    pub fn with_header(&self, name: &str, value: &str) -> Client {
        let mut c = self.clone();
        c.headers.insert(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
        c
    }

    pub fn header_value(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    pub fn without_header(&self, name: &str) -> Client {
        let mut c = self.clone();
        c.headers.remove(name);
        c
    }

    pub fn bearer(&self, token: &str) -> Client {
        self.without_header("cookie")
            .with_header("authorization", &format!("Bearer {token}"))
    }

    pub fn cookie(&self, token: &str) -> Client {
        self.without_header("authorization")
            .with_header("cookie", &format!("corral_session={token}"))
    }

    pub fn org(&self, org_id: &str) -> Client {
        self.with_header("x-org-id", org_id)
    }

    pub fn app(&self, app_id: &str) -> Client {
        self.with_header("x-app-id", app_id)
    }

    /// Signs up and returns a client carrying the new session cookie.
    pub async fn sign_up(&self, email: &str, password: &str, name: &str) -> Client {
        let r = self
            .send(
                Method::POST,
                "/api/auth/sign-up/email",
                Some(serde_json::json!({ "email": email, "password": password, "name": name })),
                &[],
            )
            .await;
        assert_eq!(r.status, 200, "sign-up failed: {}", r.text);
        self.cookie(&session_from(&r))
    }

    pub async fn sign_in(&self, email: &str, password: &str) -> Client {
        let r = self
            .send(
                Method::POST,
                "/api/auth/sign-in/email",
                Some(serde_json::json!({ "email": email, "password": password })),
                &[],
            )
            .await;
        assert_eq!(r.status, 200, "sign-in failed: {}", r.text);
        self.cookie(&session_from(&r))
    }

    /// Sends a request and validates the response against the contract.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> Resp {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .headers(self.headers.clone());
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.finish(method, path, req).await
    }

    /// Sends raw bytes with a content type (malformed bodies, size limits).
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Resp {
        let req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .headers(self.headers.clone())
            .header("content-type", content_type)
            .body(bytes);
        self.finish(method, path, req).await
    }

    async fn finish(&self, method: Method, path: &str, req: reqwest::RequestBuilder) -> Resp {
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        let is_json = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.contains("json"));
        assert!(
            headers.contains_key("request-id"),
            "{method} {path}: no Request-Id header"
        );
        if is_json {
            assert!(
                !body.is_null() || text == "null",
                "{method} {path}: invalid JSON body: {text}"
            );
            let api_path = path.split('?').next().unwrap_or(path);
            let routed = body["code"] != "route_not_found" && body["code"] != "method_not_allowed";
            if routed {
                if let Err(e) = crate::contract::check_response(
                    &self.spec,
                    method.as_str(),
                    api_path,
                    status,
                    &body,
                ) {
                    panic!("{e}\nbody: {text}");
                }
                if let Err(e) = crate::contract::check_reference_response(
                    &self.spec,
                    method.as_str(),
                    api_path,
                    status,
                    &body,
                ) {
                    panic!("{e}\nbody: {text}");
                }
            }
            if ct_is_problem(&headers) {
                check_problem(&body, status);
            }
        }
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    async fn expect(&self, method: Method, path: &str, body: Option<Value>, status: u16) -> Value {
        let r = self.send(method.clone(), path, body, &[]).await;
        assert_eq!(
            r.status, status,
            "{method} {path}: expected {status}, got {}: {}",
            r.status, r.text
        );
        r.body
    }

    pub async fn get(&self, path: &str, status: u16) -> Value {
        self.expect(Method::GET, path, None, status).await
    }

    pub async fn post(&self, path: &str, body: Value, status: u16) -> Value {
        self.expect(Method::POST, path, Some(body), status).await
    }

    pub async fn put(&self, path: &str, body: Value, status: u16) -> Value {
        self.expect(Method::PUT, path, Some(body), status).await
    }

    pub async fn patch(&self, path: &str, body: Value, status: u16) -> Value {
        self.expect(Method::PATCH, path, Some(body), status).await
    }

    pub async fn delete(&self, path: &str, status: u16) -> Value {
        self.expect(Method::DELETE, path, None, status).await
    }
}

fn ct_is_problem(headers: &HeaderMap) -> bool {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/problem+json"))
}

/// Every problem body carries exactly the reference fields, consistently.
fn check_problem(body: &Value, status: u16) {
    let obj = body.as_object().expect("problem is an object");
    for k in obj.keys() {
        assert!(
            [
                "type",
                "title",
                "status",
                "detail",
                "instance",
                "code",
                "requestId",
                "param",
                "retryAfter",
                "errors"
            ]
            .contains(&k.as_str()),
            "unexpected problem field {k}: {body}"
        );
    }
    assert_eq!(body["status"], status, "{body}");
    let code = body["code"].as_str().expect("code");
    assert_eq!(
        body["type"].as_str().expect("type"),
        format!("https://docs.corral.dev/errors/{}", code.replace('_', "-"))
    );
    let rid = body["requestId"].as_str().expect("requestId");
    assert!(rid.starts_with("req_"));
    assert_eq!(
        body["instance"].as_str().expect("instance"),
        format!("urn:corral:request:{rid}")
    );
    if status == 500 {
        assert!(
            ["internal_error", "bundle_integrity_mismatch"].contains(&code),
            "{body}"
        );
    }
}

/// The session token from a response's Set-Cookie.
pub fn session_from(r: &Resp) -> String {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            c.strip_prefix("corral_session=")
                .map(|rest| rest.split(';').next().unwrap_or("").to_owned())
        })
        .filter(|t| !t.is_empty())
        .expect("session cookie")
}
