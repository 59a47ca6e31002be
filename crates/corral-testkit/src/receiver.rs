//! A webhook receiver for tests: a real HTTP server on 127.0.0.1 that records every
//! request (headers and exact body) and answers from a script (status, optional
//! `Retry-After`, optional delay), then a default answer.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            retry_after: None,
            delay: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub headers: HashMap<String, String>,
    pub body: String,
    /// What the receiver answered (or was about to, for a held request).
    pub status: u16,
    pub at: std::time::Instant,
}

impl Delivery {
    pub fn id(&self) -> &str {
        self.headers
            .get("webhook-id")
            .map(String::as_str)
            .unwrap_or("")
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Default)]
struct Inner {
    got: Mutex<Vec<Delivery>>,
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Option<Reply>>,
    arrived: Notify,
}

pub struct Receiver {
    pub url: String,
    pub port: u16,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hook(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let reply = inner
        .script
        .lock()
        .pop_front()
        .or_else(|| inner.default.lock().clone())
        .unwrap_or(Reply::status(200));
    let headers = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    inner.got.lock().push(Delivery {
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        status: reply.status,
        at: std::time::Instant::now(),
    });
    inner.arrived.notify_waiters();
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut res = StatusCode::from_u16(reply.status)
        .unwrap_or(StatusCode::OK)
        .into_response();
    if let Some(ra) = reply.retry_after {
        if let Ok(v) = ra.parse() {
            res.headers_mut().insert("retry-after", v);
        }
    }
    res
}

impl Receiver {
    pub async fn start() -> Receiver {
        Receiver::start_on(0).await
    }

    /// Listens on a given port (0: any), e.g. to come up where a webhook already
    /// points after it was down.
    pub async fn start_on(port: u16) -> Receiver {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind receiver");
        let port = listener.local_addr().expect("addr").port();
        let inner = Arc::new(Inner::default());
        let app = axum::Router::new()
            .route("/hook", axum::routing::any(hook))
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url: format!("http://127.0.0.1:{port}/hook"),
            port,
            inner,
            task,
        }
    }

    /// Answers for the next requests, in order; afterwards the default (200).
    pub fn script(&self, replies: Vec<Reply>) {
        self.inner.script.lock().extend(replies);
    }

    pub fn set_default(&self, reply: Reply) {
        *self.inner.default.lock() = Some(reply);
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner.got.lock().clone()
    }

    /// Waits until `n` requests arrived (panics after `within`).
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let arrived = self.inner.arrived.notified();
            let got = self.deliveries();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                let got = self.deliveries();
                assert!(
                    got.len() >= n,
                    "receiver got {} of {n} deliveries: {:?}",
                    got.len(),
                    got.iter()
                        .map(|d| (d.id().to_owned(), d.status))
                        .collect::<Vec<_>>()
                );
                return got;
            }
        }
    }
}
