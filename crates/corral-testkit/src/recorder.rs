//! A loopback stand-in for any HTTP service a component under test calls (an event
//! sink, the platform's internal API, an integration's API, a model provider): it
//! records every request, whatever its method and path, and answers with a closure.
//!
//! [`crate::receiver`] is the webhook receiver instead: one route, answers from a
//! script, optionally held for a while.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use parking_lot::Mutex;
use tokio::sync::watch;

/// One request a [`Recorder`] received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

type Responder = Arc<dyn Fn(&Seen, usize) -> Response + Send + Sync>;

struct Inner {
    seen: Mutex<Vec<Seen>>,
    changed: watch::Sender<usize>,
    respond: Responder,
}

/// An HTTP server that records every request and answers with a closure, given the
/// request and its index (0 for the first).
pub struct Recorder {
    /// `http://<ip>:<port>`, no trailing slash.
    pub url: String,
    pub port: u16,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let seen = Seen {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
    };
    let index = {
        let mut all = inner.seen.lock();
        all.push(seen.clone());
        all.len() - 1
    };
    inner.changed.send_replace(index + 1);
    (inner.respond)(&seen, index)
}

impl Recorder {
    /// On 127.0.0.1, any free port.
    pub async fn start(
        respond: impl Fn(&Seen, usize) -> Response + Send + Sync + 'static,
    ) -> Recorder {
        Self::start_on(Ipv4Addr::LOCALHOST.into(), respond).await
    }

    /// On `ip`, any free port: e.g. a Docker host gateway address, where a
    /// container reaches the test host.
    pub async fn start_on(
        ip: IpAddr,
        respond: impl Fn(&Seen, usize) -> Response + Send + Sync + 'static,
    ) -> Recorder {
        let inner = Arc::new(Inner {
            seen: Mutex::new(Vec::new()),
            changed: watch::channel(0).0,
            respond: Arc::new(respond),
        });
        let app = Router::new().fallback(record).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Recorder {
            url: format!("http://{addr}"),
            port: addr.port(),
            inner,
            task,
        }
    }

    /// A sink on 127.0.0.1 that accepts everything with 204.
    pub async fn sink() -> Recorder {
        Self::sink_on(Ipv4Addr::LOCALHOST.into()).await
    }

    /// A sink on `ip` that accepts everything with 204.
    pub async fn sink_on(ip: IpAddr) -> Recorder {
        Self::start_on(ip, |_, _| StatusCode::NO_CONTENT.into_response()).await
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.inner.seen.lock().clone()
    }

    /// Waits up to 30 s until `f` holds over the recorded requests; panics with
    /// them otherwise.
    pub async fn wait_until(&self, f: impl FnMut(&[Seen]) -> bool) -> Vec<Seen> {
        self.wait_until_within(Duration::from_secs(30), f).await
    }

    /// [`Recorder::wait_until`] with another bound, e.g. for a sandbox whose
    /// containers start first.
    pub async fn wait_until_within(
        &self,
        within: Duration,
        mut f: impl FnMut(&[Seen]) -> bool,
    ) -> Vec<Seen> {
        let mut rx = self.inner.changed.subscribe();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            {
                let seen = self.inner.seen.lock();
                if f(&seen) {
                    return seen.clone();
                }
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                panic!("condition not met; recorded: {:#?}", self.seen());
            }
        }
    }
}
