//! A local webhook receiver: answers 200 at once, counts deliveries, distinct
//! `webhook-id`s and duplicates, and checks the Standard Webhooks signature.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use anyhow::Result;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use corral_protocol::signing::{SigningSecret, WebhookHeaders};
use tokio::sync::Notify;

#[derive(Default)]
pub struct Counts {
    /// Every request.
    pub total: AtomicUsize,
    /// Requests whose `webhook-id` was seen before.
    pub duplicates: AtomicUsize,
    pub bad_signature: AtomicUsize,
    /// Not a `run.success` envelope of a run in status `success` (`data.object`).
    pub unexpected: AtomicUsize,
    /// Arrival of each distinct `webhook-id`, in order.
    pub arrivals: Mutex<Vec<Instant>>,
    ids: Mutex<HashSet<String>>,
    runs: Mutex<HashSet<String>>,
    /// Set once the webhook exists (deliveries before that cannot be checked).
    pub secret: OnceLock<SigningSecret>,
    pub changed: Notify,
}

impl Counts {
    pub fn distinct(&self) -> usize {
        self.arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
    pub fn distinct_runs(&self) -> usize {
        self.runs.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The receiver; stops when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    pub counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hook(State(c): State<Arc<Counts>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let now = Instant::now();
    c.total.fetch_add(1, Ordering::Relaxed);
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let id = get("webhook-id").unwrap_or("").to_owned();
    if let Some(secret) = c.secret.get() {
        let ok = WebhookHeaders::from_lookup(get)
            .ok()
            .is_some_and(|h| secret.verify(&h, &body, unix_now()).is_ok());
        if !ok {
            c.bad_signature.fetch_add(1, Ordering::Relaxed);
        }
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let run = &v["data"]["object"];
    match (
        v["type"].as_str(),
        run["id"].as_str(),
        run["status"].as_str(),
    ) {
        (Some("run.success"), Some(run), Some("success")) => {
            c.runs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(run.to_owned());
        }
        _ => {
            c.unexpected.fetch_add(1, Ordering::Relaxed);
        }
    }
    let fresh = c.ids.lock().unwrap_or_else(|e| e.into_inner()).insert(id);
    if fresh {
        c.arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(now);
    } else {
        c.duplicates.fetch_add(1, Ordering::Relaxed);
    }
    c.changed.notify_waiters();
    StatusCode::OK
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Receiver {
    pub async fn start() -> Result<Receiver> {
        let counts = Arc::new(Counts::default());
        let app = axum::Router::new()
            .route("/hook", post(hook))
            .with_state(counts.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("rtbench: webhook receiver stopped: {e}");
            }
        });
        Ok(Receiver { addr, counts, task })
    }
}
