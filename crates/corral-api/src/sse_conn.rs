//! Idle live viewers cost little memory: an HTTP/1.1 connection whose first request
//! opens a live stream (`GET /api/realtime/…`) is answered here, without hyper.
//!
//! hyper keeps about 24 KiB per HTTP/1.1 connection for as long as it is open: a read
//! buffer of at least 8 KiB (16 KiB once the request head still holds the first one)
//! and an 8 KiB buffer for response heads. None of that can be set smaller in hyper 1.
//! An SSE stream is one request and then hours of a few small writes. So the acceptor
//! here reads the start of each new connection itself (into a buffer it frees before
//! the stream starts), and its whole first head only if that can be a stream. A
//! stream request goes through the same router (every auth, limit and logging layer)
//! and its response is written here: the head once, then each frame as one HTTP/1.1
//! chunk, with `Connection: close`, and nothing kept between frames but the socket
//! and the stream. Every other connection (any
//! other first request, HTTP/2, HTTP/1.0, a request with a body or anything pipelined
//! after the head, a head this cannot parse) goes to hyper through [`SplitListener`]
//! with the bytes already read put back in front.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use bytes::{Buf, Bytes};
use http::{header, HeaderName, HeaderValue, Method, Request, Version};
use http_body_util::BodyExt as _;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// The longest first request head read here; a longer one goes to hyper as it is.
const MAX_HEAD: usize = 16 * 1024;
/// Header fields parsed at most; more goes to hyper.
const MAX_HEADERS: usize = 64;
/// The largest non-stream answer (an error) this writes; it is a problem+json body.
const MAX_PLAIN_BODY: usize = 1 << 20;
/// How every request served here starts; a connection that starts otherwise is
/// handed to hyper as soon as that shows, without waiting for its whole head.
const STREAM_START: &[u8] = b"GET /api/realtime/";

/// A TCP connection handed to hyper, with the bytes read from it so far in front.
pub struct Rewound {
    head: Bytes,
    tcp: TcpStream,
}

impl AsyncRead for Rewound {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.head.is_empty() {
            let n = self.head.len().min(buf.remaining());
            buf.put_slice(&self.head[..n]);
            self.head.advance(n);
            if self.head.is_empty() {
                // Free the buffer; what follows comes straight from the socket.
                self.head = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewound {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// The connections hyper serves (everything that does not open with a stream).
pub struct SplitListener {
    rx: mpsc::Receiver<(Rewound, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for SplitListener {
    type Io = Rewound;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Rewound, SocketAddr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The acceptor stopped: so does serving (axum stops on its own signal).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Accepts on `listener` until `stop`: stream connections are served with `app`,
/// the others come out of the returned listener for `axum::serve`. `tap` sees every
/// accepted socket first.
pub fn split(
    listener: TcpListener,
    app: Router,
    stop: CancellationToken,
    tap: impl Fn(&TcpStream) + Send + 'static,
) -> io::Result<SplitListener> {
    let local = listener.local_addr()?;
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        let mut listener = listener;
        loop {
            let (tcp, peer) = tokio::select! {
                _ = stop.cancelled() => return,
                c = axum::serve::Listener::accept(&mut listener) => c,
            };
            tap(&tcp);
            let (tx, app, stop) = (tx.clone(), app.clone(), stop.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = first_request(tcp, peer, tx, app, stop.clone()) => {}
                }
            });
        }
    });
    Ok(SplitListener { rx, local })
}

/// Reads the connection's first request head and serves it here or hands it on.
async fn first_request(
    tcp: TcpStream,
    peer: SocketAddr,
    tx: mpsc::Sender<(Rewound, SocketAddr)>,
    app: Router,
    stop: CancellationToken,
) {
    // No buffer until the client sends something (browsers open spare connections).
    if tcp.readable().await.is_err() {
        return;
    }
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    let req = loop {
        match tcp.try_read_buf(&mut buf) {
            Ok(0) if buf.is_empty() => return,
            Ok(0) => break None,
            Ok(_) => match stream_request(&buf, peer) {
                Head::Stream(req) => break Some(req),
                Head::Partial if buf.len() < MAX_HEAD => {}
                Head::Partial | Head::Other => break None,
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
        if buf.len() == buf.capacity() {
            buf.reserve(buf.len());
        }
        if tcp.readable().await.is_err() {
            return;
        }
    };
    match req {
        Some(req) => {
            drop(buf);
            serve_stream(tcp, *req, app, stop).await;
        }
        None => {
            let head = Bytes::from(buf);
            let _ = tx.send((Rewound { head, tcp }, peer)).await;
        }
    }
}

enum Head {
    /// A whole stream request and nothing after it.
    Stream(Box<Request<Body>>),
    /// Not a whole head yet.
    Partial,
    /// For hyper.
    Other,
}

/// Whether `buf` is exactly one request this module serves, and that request.
fn stream_request(buf: &[u8], peer: SocketAddr) -> Head {
    let seen = buf.len().min(STREAM_START.len());
    if buf[..seen] != STREAM_START[..seen] {
        return Head::Other;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Other,
    };
    // The method and path are `STREAM_START`'s.
    let (Some(path), Some(1)) = (parsed.path, parsed.version) else {
        return Head::Other;
    };
    if len != buf.len() {
        return Head::Other;
    }
    let mut req = Request::new(Body::empty());
    *req.method_mut() = Method::GET;
    *req.version_mut() = Version::HTTP_11;
    match path.parse() {
        Ok(uri) => *req.uri_mut() = uri,
        Err(_) => return Head::Other,
    }
    for h in parsed.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return Head::Other;
        };
        // A body, an upgrade or an expectation is hyper's to handle.
        let plain = match name {
            header::CONTENT_LENGTH => value.as_bytes() == b"0",
            header::TRANSFER_ENCODING | header::UPGRADE | header::EXPECT => false,
            _ => true,
        };
        if !plain {
            return Head::Other;
        }
        req.headers_mut().append(name, value);
    }
    req.extensions_mut().insert(ConnectInfo(peer));
    Head::Stream(Box::new(req))
}

/// Runs `req` through the router and writes its answer: a whole one, or the head of
/// a stream and then its frames as they come.
async fn serve_stream(
    mut tcp: TcpStream,
    req: Request<Body>,
    app: Router,
    stop: CancellationToken,
) {
    let Ok(res) = app.oneshot(req).await;
    let (parts, body) = res.into_parts();
    let streaming = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !streaming {
        let bytes = match http_body_util::Limited::new(body, MAX_PLAIN_BODY)
            .collect()
            .await
        {
            Ok(c) => c.to_bytes(),
            Err(_) => return,
        };
        let mut out = head(&parts, Some(bytes.len()));
        out.extend_from_slice(&bytes);
        let _ = tcp.write_all(&out).await;
        let _ = tcp.shutdown().await;
        return;
    }
    if tcp.write_all(&head(&parts, None)).await.is_err() {
        return;
    }
    // The stream lives on in a task of its own, sized for the loop below alone: this
    // one (sized for the request's whole set-up) ends here.
    tokio::spawn(write_frames(tcp, body, stop));
}

/// Writes each frame of `body` as a chunk until it ends, the client goes or the
/// server stops.
async fn write_frames(mut tcp: TcpStream, mut body: Body, stop: CancellationToken) {
    let mut scratch = [0u8; 16];
    loop {
        tokio::select! {
            frame = body.frame() => match frame {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else { continue };
                    if data.is_empty() {
                        continue;
                    }
                    let mut chunk = Vec::with_capacity(data.len() + 12);
                    chunk.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                    chunk.extend_from_slice(&data);
                    chunk.extend_from_slice(b"\r\n");
                    if tcp.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
                // A failed stream ends without the last chunk: the client sees it cut.
                Some(Err(_)) => return,
                None => break,
            },
            ready = tcp.readable() => {
                if ready.is_err() {
                    return;
                }
                // The client sends nothing more on a stream; anything it does send is
                // dropped, and end of file means it is gone.
                match tcp.try_read(&mut scratch) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
            _ = stop.cancelled() => break,
        }
    }
    let _ = tcp.write_all(b"0\r\n\r\n").await;
    let _ = tcp.shutdown().await;
}

/// The response head as hyper would write it, with `Connection: close`, and either
/// a length or chunked transfer.
fn head(parts: &http::response::Parts, len: Option<usize>) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let status = parts.status;
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_str(),
            status.canonical_reason().unwrap_or("")
        )
        .as_bytes(),
    );
    for (name, value) in &parts.headers {
        if matches!(
            *name,
            header::CONNECTION | header::CONTENT_LENGTH | header::TRANSFER_ENCODING
        ) || name.as_str() == "keep-alive"
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !parts.headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match len {
        Some(n) => out.extend_from_slice(format!("content-length: {n}\r\n").as_bytes()),
        None => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Response;

    fn peer() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    #[test]
    fn only_a_lone_stream_get_is_taken() {
        let take = |raw: &str| matches!(stream_request(raw.as_bytes(), peer()), Head::Stream(_));
        assert!(take(
            "GET /api/realtime/runs?x=1 HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n"
        ));
        assert!(take(
            "GET /api/realtime/runs HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
        ));
        for other in [
            "GET /api/runs HTTP/1.1\r\nHost: a\r\n\r\n",
            "POST /api/realtime/runs HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /api/realtime/runs HTTP/1.0\r\nHost: a\r\n\r\n",
            "GET /api/realtime/runs HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
            "GET /api/realtime/runs HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /api/realtime/runs HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "GET /api/realtime/runs HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            // Pipelined: the second request is hyper's, so the whole connection is.
            "GET /api/realtime/runs HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\n\r\n",
            "GET http://a/api/realtime/runs HTTP/1.1\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "garbage\r\n\r\n",
        ] {
            assert!(
                matches!(stream_request(other.as_bytes(), peer()), Head::Other),
                "{other:?}"
            );
        }
        for partial in ["GET /api/re", "GET /api/realtime/runs HTTP/1.1\r\nHost:"] {
            assert!(
                matches!(stream_request(partial.as_bytes(), peer()), Head::Partial),
                "{partial:?}"
            );
        }
        // Another request goes to hyper before its head is whole.
        for other in ["P", "GET /health", "POST /api/runs HTTP/1.1\r\nHo"] {
            assert!(
                matches!(stream_request(other.as_bytes(), peer()), Head::Other),
                "{other:?}"
            );
        }
    }

    #[test]
    fn a_taken_request_keeps_its_headers_and_peer() {
        let Head::Stream(req) = stream_request(
            b"GET /api/realtime/runs/run_1?verbose=true HTTP/1.1\r\nX-Org-Id: o\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n",
            peer(),
        ) else {
            panic!("not taken");
        };
        assert_eq!(req.uri().path(), "/api/realtime/runs/run_1");
        assert_eq!(req.uri().query(), Some("verbose=true"));
        assert_eq!(req.headers()["x-org-id"], "o");
        assert_eq!(req.headers().get_all("cookie").iter().count(), 2);
        assert_eq!(
            req.extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
            Some(peer())
        );
    }

    #[test]
    fn heads_close_and_frame_the_body() {
        let res = Response::builder()
            .status(404)
            .header("content-type", "application/problem+json")
            .header("content-length", "999")
            .header("connection", "keep-alive")
            .body(())
            .unwrap();
        let (parts, ()) = res.into_parts();
        let text = String::from_utf8(head(&parts, Some(12))).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.contains("content-type: application/problem+json\r\n"));
        assert!(text.contains("content-length: 12\r\n"));
        assert!(!text.contains("999") && !text.contains("keep-alive"));
        assert!(text.contains("\r\ndate: "));
        assert!(text.ends_with("connection: close\r\n\r\n"));
        let text = String::from_utf8(head(&parts, None)).unwrap();
        assert!(text.contains("transfer-encoding: chunked\r\n"));
    }
}
