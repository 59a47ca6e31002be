//! A Server-Sent Events parser over a byte stream (the WHATWG rules the realtime
//! endpoints need: `id`, `event`, multi-line `data`, comments, CRLF or LF).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

/// Feeds bytes in, takes complete frames out.
#[derive(Debug, Default)]
pub struct Parser {
    buf: Vec<u8>,
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
}

impl Parser {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Frame> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.is_empty() {
                if let Some(data) = self.data.take() {
                    out.push(Frame {
                        id: self.id.take(),
                        event: self.event.take().unwrap_or_else(|| "message".into()),
                        data,
                    });
                } else {
                    self.id = None;
                    self.event = None;
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (name, value) = match line.split_once(':') {
                Some((n, v)) => (n.to_owned(), v.strip_prefix(' ').unwrap_or(v).to_owned()),
                None => (line.clone(), String::new()),
            };
            match name.as_str() {
                "id" => self.id = Some(value),
                "event" => self.event = Some(value),
                "data" => match &mut self.data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(&value);
                    }
                    None => self.data = Some(value),
                },
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_chunks() {
        let mut p = Parser::default();
        assert!(p.push(b"event: ping\ndata: \n").is_empty());
        let f = p.push(b"\nid: 4");
        assert_eq!(
            f,
            vec![Frame {
                id: None,
                event: "ping".into(),
                data: String::new()
            }]
        );
        let f = p.push(b"2\r\nevent: run_log\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n: comment\n\n");
        assert_eq!(
            f,
            vec![Frame {
                id: Some("42".into()),
                event: "run_log".into(),
                data: "{\"a\":\n1}".into()
            }]
        );
        // Default event name; a block with no data dispatches nothing.
        let f = p.push(b"id: 7\n\ndata: x\n\n");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].event, "message");
        assert_eq!(f[0].id, None);
    }
}
