//! Servers on the test host that the sidecar reaches through the Docker host
//! gateway: a recorder (event sink, integration API) and a TCP relay in front of
//! the mock LLM, which binds loopback only.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One request a [`Recorder`] received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

type Responder = Arc<dyn Fn(&Seen) -> Response + Send + Sync>;

struct Inner {
    seen: Mutex<Vec<Seen>>,
    changed: watch::Sender<usize>,
    respond: Responder,
}

/// An HTTP server that records every request and answers with a closure.
pub struct Recorder {
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
        path: parts.uri.path().to_owned(),
        headers: parts.headers,
        body,
    };
    let count = {
        let mut all = inner.seen.lock();
        all.push(seen.clone());
        all.len()
    };
    inner.changed.send_replace(count);
    (inner.respond)(&seen)
}

impl Recorder {
    pub async fn start(
        ip: IpAddr,
        respond: impl Fn(&Seen) -> Response + Send + Sync + 'static,
    ) -> Recorder {
        let inner = Arc::new(Inner {
            seen: Mutex::new(Vec::new()),
            changed: watch::channel(0).0,
            respond: Arc::new(respond),
        });
        let app = Router::new().fallback(record).with_state(inner.clone());
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Recorder { port, inner, task }
    }

    /// A sink that accepts everything with 204.
    pub async fn sink(ip: IpAddr) -> Recorder {
        Self::start(ip, |_| StatusCode::NO_CONTENT.into_response()).await
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.inner.seen.lock().clone()
    }

    /// Waits (bounded) until `f` holds over the recorded requests.
    pub async fn wait_until(&self, mut f: impl FnMut(&[Seen]) -> bool) -> Vec<Seen> {
        let mut rx = self.inner.changed.subscribe();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
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

/// Forwards every TCP connection accepted on `ip:<port>` to `to`.
pub struct Relay {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    pub async fn start(ip: IpAddr, to: SocketAddr) -> Relay {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Relay { port, task }
    }
}
