//! A deliberately small SSE client — one tokio task and one socket per subscriber, a
//! hand-written HTTP/1.1 GET, a chunked-transfer decoder and a frame splitter that
//! looks only at what the benchmark needs — so thousands of subscribers cost the
//! benchmark little next to the server it measures.
//!
//! The log messages the benchmark writes are `rtb <k> <unix µs just before the
//! INSERT>`; each client records, per `run_log` frame, its receipt time minus that.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};

/// Connect + response headers + snapshot frame.
const SUBSCRIBE_DEADLINE: Duration = Duration::from_secs(30);

pub fn unix_us_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Where every client connects.
pub struct Target {
    pub addr: SocketAddr,
    /// The raw request, sent as is.
    pub request: Vec<u8>,
}

impl Target {
    pub fn new(addr: SocketAddr, path_and_query: &str) -> Target {
        let request = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
             Cache-Control: no-cache\r\nUser-Agent: corral-rtbench\r\n\r\n"
        )
        .into_bytes();
        Target { addr, request }
    }
}

/// Counters all clients share, so the driver can wait on them.
#[derive(Default)]
pub struct Shared {
    /// Clients that have their snapshot frame (so are registered with the hub).
    pub subscribed: AtomicUsize,
    /// Clients that failed before subscribing.
    pub failed: AtomicUsize,
    /// Benchmark log frames received, all clients together (first copies only).
    pub receipts: AtomicUsize,
    /// Poked on every change of the counters above.
    pub changed: Notify,
}

impl Shared {
    fn bump(&self, c: &AtomicUsize) {
        c.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub subscribed: bool,
    /// `(k, receipt − insert)` in µs, per benchmark log frame.
    pub receipts: Vec<(usize, i64)>,
    /// Frames of an event already received.
    pub duplicates: usize,
    /// Log frames that are not the benchmark's, or unparsable.
    pub foreign: usize,
    /// Why the stream ended before the driver stopped it (error, EOF, bad status).
    pub error: Option<String>,
}

/// One subscriber: connects, subscribes, records log frames until `stop` turns true
/// or the stream ends. `events` is how many benchmark events exist at most.
pub async fn client(
    target: Arc<Target>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    events: usize,
) -> Outcome {
    let mut out = Outcome::default();
    let mut state = Parser::new(events);
    let run = async {
        let mut sock = tokio::time::timeout(SUBSCRIBE_DEADLINE, TcpStream::connect(target.addr))
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| format!("connect: {e}"))?;
        let _ = sock.set_nodelay(true);
        sock.write_all(&target.request)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let subscribe_by = tokio::time::Instant::now() + SUBSCRIBE_DEADLINE;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = if out.subscribed {
                sock.read(&mut buf).await
            } else {
                match tokio::time::timeout_at(subscribe_by, sock.read(&mut buf)).await {
                    Ok(r) => r,
                    Err(_) => return Err("no snapshot frame in time".to_owned()),
                }
            }
            .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("stream ended (EOF)".to_owned());
            }
            let now = unix_us_now();
            state.feed(&buf[..n], now, &mut out)?;
            if out.subscribed && !state.announced {
                state.announced = true;
                shared.bump(&shared.subscribed);
            }
            for _ in 0..std::mem::take(&mut state.new_receipts) {
                shared.receipts.fetch_add(1, Ordering::Relaxed);
            }
            if state.ended {
                return Err("stream ended (last chunk)".to_owned());
            }
        }
    };
    let res: Result<(), String> = tokio::select! {
        r = run => r,
        _ = stop.wait_for(|s| *s) => Ok(()),
    };
    if let Err(e) = res {
        out.error = Some(e);
        if !out.subscribed {
            shared.bump(&shared.failed);
        }
    }
    shared.changed.notify_waiters();
    out
}

/// One cleartext HTTP/2 connection (prior knowledge) that subscribers share, one
/// stream each.
pub type H2Sender = hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>;

/// Opens an HTTP/2 connection to `addr` and drives it in the background.
pub async fn h2_connect(addr: SocketAddr) -> Result<H2Sender, String> {
    let tcp = tokio::time::timeout(SUBSCRIBE_DEADLINE, TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (sender, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// [`client`] as one stream of a shared HTTP/2 connection.
pub async fn h2_client(
    sender: H2Sender,
    target: Arc<Target>,
    path_and_query: Arc<String>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    events: usize,
) -> Outcome {
    use http_body_util::BodyExt as _;
    let mut out = Outcome::default();
    let mut state = Parser::body_only(events);
    let run = async {
        let mut sender = sender;
        let req = http::Request::get(format!("http://{}{}", target.addr, path_and_query))
            .header("accept", "text/event-stream")
            .body(http_body_util::Empty::new())
            .map_err(|e| format!("request: {e}"))?;
        let subscribe_by = tokio::time::Instant::now() + SUBSCRIBE_DEADLINE;
        let resp = tokio::time::timeout_at(subscribe_by, async {
            sender.ready().await?;
            sender.send_request(req).await
        })
        .await
        .map_err(|_| "no answer in time".to_owned())?
        .map_err(|e| format!("stream: {e}"))?;
        if resp.status() != 200 {
            return Err(format!("answered {}", resp.status()));
        }
        let mut body = resp.into_body();
        loop {
            let frame = if out.subscribed {
                body.frame().await
            } else {
                tokio::time::timeout_at(subscribe_by, body.frame())
                    .await
                    .map_err(|_| "no snapshot frame in time".to_owned())?
            };
            let data = match frame {
                None => return Err("stream ended (EOF)".to_owned()),
                Some(Err(e)) => return Err(format!("read: {e}")),
                Some(Ok(f)) => match f.into_data() {
                    Ok(d) => d,
                    Err(_) => continue,
                },
            };
            let now = unix_us_now();
            state.feed(&data, now, &mut out)?;
            if out.subscribed && !state.announced {
                state.announced = true;
                shared.bump(&shared.subscribed);
            }
            for _ in 0..std::mem::take(&mut state.new_receipts) {
                shared.receipts.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    let res: Result<(), String> = tokio::select! {
        r = run => r,
        _ = stop.wait_for(|s| *s) => Ok(()),
    };
    if let Err(e) = res {
        out.error = Some(e);
        if !out.subscribed {
            shared.bump(&shared.failed);
        }
    }
    shared.changed.notify_waiters();
    out
}

/// A plain keep-alive HTTP/1.1 connection: one `GET {path}`, its whole answer read,
/// then held idle until `stop` (the per-connection floor the SSE figure sits on).
pub async fn idle_client(
    addr: SocketAddr,
    path: &str,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Outcome {
    let mut out = Outcome::default();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: corral-rtbench\r\n\r\n");
    let run = async {
        let mut sock = tokio::time::timeout(SUBSCRIBE_DEADLINE, TcpStream::connect(addr))
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| format!("connect: {e}"))?;
        sock.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut raw = Vec::new();
        let mut buf = vec![0u8; 4096];
        let answered_by = tokio::time::Instant::now() + SUBSCRIBE_DEADLINE;
        loop {
            let n = if out.subscribed {
                sock.read(&mut buf).await
            } else {
                tokio::time::timeout_at(answered_by, sock.read(&mut buf))
                    .await
                    .map_err(|_| "no answer in time".to_owned())?
            }
            .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed".to_owned());
            }
            if out.subscribed {
                return Err("unexpected bytes on an idle connection".to_owned());
            }
            raw.extend_from_slice(&buf[..n]);
            let Some(end) = find(&raw, b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            if !head.starts_with("http/1.1 200") {
                return Err(format!("answered {:?}", head.lines().next().unwrap_or("")));
            }
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| "no content-length".to_owned())?;
            if raw.len() >= end + 4 + len {
                out.subscribed = true;
                shared.bump(&shared.subscribed);
            }
        }
    };
    let res: Result<(), String> = tokio::select! {
        r = run => r,
        _ = stop.wait_for(|s| *s) => Ok(()),
    };
    if let Err(e) = res {
        out.error = Some(e);
        if !out.subscribed {
            shared.bump(&shared.failed);
        }
    }
    shared.changed.notify_waiters();
    out
}

/// HTTP response → chunked body → SSE frames.
struct Parser {
    raw: Vec<u8>,
    body: Vec<u8>,
    headers_done: bool,
    chunked: bool,
    ended: bool,
    announced: bool,
    new_receipts: usize,
    seen: Vec<bool>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Parser {
    fn new(events: usize) -> Parser {
        Parser {
            raw: Vec::with_capacity(1024),
            body: Vec::with_capacity(1024),
            headers_done: false,
            chunked: false,
            ended: false,
            announced: false,
            new_receipts: 0,
            seen: vec![false; events],
        }
    }

    /// A parser of the body alone (HTTP/2 carries the head and the framing).
    fn body_only(events: usize) -> Parser {
        Parser {
            headers_done: true,
            ..Parser::new(events)
        }
    }

    fn feed(&mut self, data: &[u8], now_us: i64, out: &mut Outcome) -> Result<(), String> {
        self.raw.extend_from_slice(data);
        if !self.headers_done {
            let Some(end) = find(&self.raw, b"\r\n\r\n") else {
                if self.raw.len() > 16 * 1024 {
                    return Err("response headers too long".to_owned());
                }
                return Ok(());
            };
            let head = String::from_utf8_lossy(&self.raw[..end]).to_ascii_lowercase();
            let status = head.lines().next().unwrap_or("").to_owned();
            if !status.starts_with("http/1.1 200") {
                let rest = String::from_utf8_lossy(&self.raw[end + 4..]).into_owned();
                return Err(format!("answered {status:?}: {rest}"));
            }
            if !head.contains("content-type: text/event-stream") {
                return Err("not an event stream".to_owned());
            }
            self.chunked = head.contains("transfer-encoding: chunked");
            self.headers_done = true;
            self.raw.drain(..end + 4);
        }
        if self.chunked {
            self.dechunk()?;
        } else {
            self.body.append(&mut self.raw);
        }
        while let Some(pos) = find(&self.body, b"\n\n") {
            self.frame(pos, now_us, out);
            self.body.drain(..pos + 2);
        }
        Ok(())
    }

    /// Moves every complete chunk from `raw` to `body`.
    fn dechunk(&mut self) -> Result<(), String> {
        let mut at = 0;
        while let Some(line) = find(&self.raw[at..], b"\r\n") {
            let size_txt = std::str::from_utf8(&self.raw[at..at + line])
                .map_err(|_| "bad chunk size".to_owned())?;
            let size_txt = size_txt.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_txt, 16)
                .map_err(|_| format!("bad chunk size {size_txt:?}"))?;
            let start = at + line + 2;
            if size == 0 {
                self.ended = true;
                at = self.raw.len();
                break;
            }
            if self.raw.len() < start + size + 2 {
                break;
            }
            self.body.extend_from_slice(&self.raw[start..start + size]);
            at = start + size + 2;
        }
        self.raw.drain(..at);
        Ok(())
    }

    fn frame(&mut self, len: usize, now_us: i64, out: &mut Outcome) {
        let frame = &self.body[..len];
        let mut event: &[u8] = b"message";
        let mut data: &[u8] = b"";
        for line in frame.split(|b| *b == b'\n') {
            if let Some(v) = line.strip_prefix(b"event: ") {
                event = v;
            } else if let Some(v) = line.strip_prefix(b"data: ") {
                data = v;
            }
        }
        match event {
            b"run_update" if !out.subscribed => out.subscribed = true,
            b"run_log" => {
                let parsed = find(data, b"\"message\":\"rtb ").and_then(|i| {
                    let rest = &data[i + 15..];
                    let end = rest.iter().position(|b| *b == b'"')?;
                    let txt = std::str::from_utf8(&rest[..end]).ok()?;
                    let (k, ts) = txt.split_once(' ')?;
                    Some((k.parse::<usize>().ok()?, ts.parse::<i64>().ok()?))
                });
                match parsed {
                    Some((k, ts)) if k < self.seen.len() => {
                        if self.seen[k] {
                            out.duplicates += 1;
                        } else {
                            self.seen[k] = true;
                            out.receipts.push((k, now_us - ts));
                            self.new_receipts += 1;
                        }
                    }
                    _ => out.foreign += 1,
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chunked_frames_split_anywhere() {
        let body = "event: ping\ndata: \n\nevent: run_update\ndata: {\"id\":\"run_1\"}\n\n\
                    id: 7\nevent: run_log\ndata: {\"id\":1,\"message\":\"rtb 2 1000\",\"seq\":7}\n\n\
                    id: 8\nevent: run_log\ndata: {\"message\":\"rtb 2 1000\"}\n\n\
                    id: 9\nevent: run_log\ndata: {\"message\":\"other\"}\n\n";
        let (a, b) = body.split_at(70);
        let wire = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
             {:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
            a.len(),
            b.len()
        );
        let mut p = Parser::new(5);
        let mut out = Outcome::default();
        for piece in wire.as_bytes().chunks(13) {
            p.feed(piece, 1500, &mut out).unwrap();
        }
        assert!(out.subscribed);
        assert!(p.ended);
        assert_eq!(out.receipts, vec![(2, 500)]);
        assert_eq!((out.duplicates, out.foreign), (1, 1));
    }

    #[test]
    fn rejects_an_error_answer() {
        let mut p = Parser::new(1);
        let mut out = Outcome::default();
        let e = p
            .feed(
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}",
                0,
                &mut out,
            )
            .unwrap_err();
        assert!(e.contains("404"), "{e}");
    }
}
