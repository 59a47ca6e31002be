//! A minimal Server-Sent Events client for tests: connects with reqwest, parses
//! frames (`id`, `event`, `data`) and hands them over a channel.

use std::time::Duration;

use tokio::sync::mpsc;

#[derive(Debug, Clone)]
pub struct Frame {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl Frame {
    pub fn seq(&self) -> Option<i64> {
        self.id.as_deref().and_then(|i| i.parse().ok())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or(serde_json::Value::Null)
    }
}

/// An open stream; dropping it closes the connection.
pub struct Stream {
    pub rx: mpsc::UnboundedReceiver<Frame>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stream {
    /// The next frame that is not a ping, or None on timeout / end of stream.
    pub async fn next(&mut self, within: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(f)) if f.event == "ping" => continue,
                Ok(f) => return f,
                Err(_) => return None,
            }
        }
    }

    /// Waits until the stream ends (the server closed it).
    pub async fn closed(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(_)) => continue,
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }
}

/// GETs `url` with the given headers; returns the status and, on 200, the stream.
pub async fn connect(url: &str, headers: &[(&str, &str)]) -> (u16, Option<Stream>, String) {
    let mut req = reqwest::Client::new().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.send().await.expect("connect");
    let status = resp.status().as_u16();
    if status != 200 {
        let body = resp.text().await.unwrap_or_default();
        return (status, None, body);
    }
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut frames = Frames::default();
        while let Ok(Some(chunk)) = resp.chunk().await {
            if !frames.push(&chunk, &tx) {
                return;
            }
        }
    });
    (status, Some(Stream { rx, task }), ct)
}

/// Splits a byte stream into SSE frames.
#[derive(Default)]
struct Frames {
    buf: String,
}

impl Frames {
    /// False once the receiver is gone.
    fn push(&mut self, chunk: &[u8], tx: &mpsc::UnboundedSender<Frame>) -> bool {
        self.buf.push_str(&String::from_utf8_lossy(chunk));
        while let Some(end) = self.buf.find("\n\n") {
            let block: String = self.buf.drain(..end + 2).collect();
            let mut f = Frame {
                id: None,
                event: "message".into(),
                data: String::new(),
            };
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    f.id = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("event: ") {
                    f.event = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    f.data.push_str(v);
                }
            }
            if tx.send(f).is_err() {
                return false;
            }
        }
        true
    }
}

/// One cleartext HTTP/2 connection (prior knowledge, no upgrade) to `addr`: requests
/// sent through it are streams of that one connection.
#[derive(Clone)]
pub struct H2 {
    sender: hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    authority: String,
}

impl H2 {
    pub async fn connect(base: &str) -> H2 {
        let authority = base
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let tcp = tokio::net::TcpStream::connect(&authority)
            .await
            .expect("connect");
        let (sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .expect("HTTP/2 handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        H2 { sender, authority }
    }

    /// Whether the connection is still usable.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    /// GETs `path_and_query` as a new stream of this connection and reads the whole
    /// answer: status, HTTP version, body.
    pub async fn get(
        &self,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> (u16, http::Version, String) {
        use http_body_util::BodyExt as _;
        let resp = self.send(path_and_query, headers).await;
        let (status, version) = (resp.status().as_u16(), resp.version());
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (
            status,
            version,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    async fn send(
        &self,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> http::Response<hyper::body::Incoming> {
        let mut req = http::Request::get(format!("http://{}{path_and_query}", self.authority));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(http_body_util::Empty::new()).expect("request");
        let mut sender = self.sender.clone();
        sender.ready().await.expect("connection ready");
        sender.send_request(req).await.expect("stream")
    }

    /// GETs `path_and_query` as a new stream of this connection; returns the status,
    /// the HTTP version of the answer and, on 200, the SSE stream (or the body).
    pub async fn sse(
        &self,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> (u16, http::Version, Result<Stream, String>) {
        use http_body_util::BodyExt as _;
        let resp = self.send(path_and_query, headers).await;
        let (status, version) = (resp.status().as_u16(), resp.version());
        let mut body = resp.into_body();
        if status != 200 {
            let bytes = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return (
                status,
                version,
                Err(String::from_utf8_lossy(&bytes).into_owned()),
            );
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut frames = Frames::default();
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(data) = frame.into_data() {
                    if !frames.push(&data, &tx) {
                        return;
                    }
                }
            }
        });
        (status, version, Ok(Stream { rx, task }))
    }
}
