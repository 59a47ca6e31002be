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
        let mut buf = String::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
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
                    return;
                }
            }
        }
    });
    (status, Some(Stream { rx, task }), ct)
}
