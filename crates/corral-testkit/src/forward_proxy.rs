//! A recording HTTP forward proxy for tests, on 127.0.0.1: `CONNECT` tunnels and
//! absolute-form requests (`GET http://host/path`), optionally behind basic
//! `Proxy-Authorization`. It records every request that reached it (method, target,
//! the `Proxy-Authorization` it carried and what it answered), so a test can prove
//! which traffic went through it.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// One request that reached the proxy.
#[derive(Debug, Clone)]
pub struct Passed {
    pub method: String,
    /// `host:port` for CONNECT, the absolute URL otherwise.
    pub target: String,
    pub proxy_authorization: Option<String>,
    /// 200 (tunnel open / forwarded), 407 (credentials refused) or 502.
    pub status: u16,
}

struct Inner {
    passed: Mutex<Vec<Passed>>,
    /// The `Proxy-Authorization` value required, if any.
    expected: Option<String>,
}

pub struct ForwardProxy {
    pub addr: SocketAddr,
    credentials: Option<(String, String)>,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ForwardProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const MAX_HEAD: usize = 64 * 1024;

impl ForwardProxy {
    /// Starts a proxy; with `credentials`, requests without the matching basic
    /// `Proxy-Authorization` get 407.
    pub async fn start(credentials: Option<(&str, &str)>) -> ForwardProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind forward proxy");
        let addr = listener.local_addr().expect("addr");
        let credentials = credentials.map(|(u, p)| (u.to_owned(), p.to_owned()));
        let expected = credentials.as_ref().map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        let inner = Arc::new(Inner {
            passed: Mutex::new(Vec::new()),
            expected,
        });
        let shared = inner.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(handle(stream, shared.clone()));
            }
        });
        ForwardProxy {
            addr,
            credentials,
            inner,
            task,
        }
    }

    /// `http://[user:password@]127.0.0.1:port`.
    pub fn url(&self) -> String {
        match &self.credentials {
            Some((u, p)) => format!("http://{u}:{p}@{}", self.addr),
            None => format!("http://{}", self.addr),
        }
    }

    /// Every request that reached the proxy so far.
    pub fn passed(&self) -> Vec<Passed> {
        self.inner.passed.lock().clone()
    }
}

/// Reads a request head; returns it and the bytes read past it.
async fn read_head(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::with_capacity(2048);
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).into_owned();
            return Some((head, buf[i + 4..].to_vec()));
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn handle(mut client: TcpStream, inner: Arc<Inner>) {
    let Some((head, early)) = read_head(&mut client).await else {
        return;
    };
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let auth = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, v)| v.clone());
    let record = |status: u16| {
        inner.passed.lock().push(Passed {
            method: method.clone(),
            target: target.clone(),
            proxy_authorization: auth.clone(),
            status,
        });
    };
    if inner.expected.is_some() && auth != inner.expected {
        record(407);
        let _ = client
            .write_all(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                  Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\
                  Connection: close\r\n\r\n",
            )
            .await;
        return;
    }
    if method.eq_ignore_ascii_case("CONNECT") {
        let Ok(mut upstream) = TcpStream::connect(target.as_str()).await else {
            record(502);
            let _ = client
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                .await;
            return;
        };
        record(200);
        if client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
        if !early.is_empty() && upstream.write_all(&early).await.is_err() {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        return;
    }
    let Ok(url) = url::Url::parse(&target) else {
        record(400);
        let _ = client
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await;
        return;
    };
    let host = url.host_str().unwrap_or_default().to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let Ok(mut upstream) = TcpStream::connect((host.as_str(), port)).await else {
        record(502);
        let _ = client
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            .await;
        return;
    };
    record(200);
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in &headers {
        let lower = k.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "proxy-authorization" | "proxy-connection" | "connection" | "keep-alive"
        ) {
            continue;
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    if upstream.write_all(out.as_bytes()).await.is_err()
        || (!early.is_empty() && upstream.write_all(&early).await.is_err())
    {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}
