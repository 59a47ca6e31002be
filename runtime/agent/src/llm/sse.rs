//! An incremental Server-Sent Events parser: bytes in (split anywhere, even inside a
//! UTF-8 sequence), complete events out.

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// The `event:` field, empty when absent.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    current: Event,
    has_data: bool,
    /// The last line ended in `\r`: a `\n` right after it is the rest of a `\r\n`.
    pending_cr: bool,
}

impl SseParser {
    /// Feeds bytes, returning every event completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Event> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        // Lines end in \n, \r\n or \r; only complete lines are consumed so a chunk
        // boundary inside a line (or a multi-byte character) is harmless.
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n' || *b == b'\r') {
            let terminator = self.buf[pos];
            let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
            line.pop();
            if self.pending_cr && line.is_empty() && terminator == b'\n' {
                self.pending_cr = false;
                continue;
            }
            self.pending_cr = terminator == b'\r';
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.is_empty() {
                if self.has_data || !self.current.event.is_empty() {
                    out.push(std::mem::take(&mut self.current));
                }
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f.to_owned(), v.strip_prefix(' ').unwrap_or(v).to_owned()),
                None => (line.clone(), String::new()),
            };
            match field.as_str() {
                "event" => self.current.event = value,
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(&value);
                    self.has_data = true;
                }
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
    fn events_split_across_chunks() {
        let text = "event: message_start\ndata: {\"a\":\n\n: comment\ndata: é1\ndata: 2\n\n";
        let bytes = text.as_bytes();
        // Feed one byte at a time: the worst case for boundaries.
        let mut p = SseParser::default();
        let mut events = Vec::new();
        for b in bytes {
            events.extend(p.push(std::slice::from_ref(b)));
        }
        assert_eq!(
            events,
            vec![
                Event {
                    event: "message_start".into(),
                    data: "{\"a\":".into()
                },
                Event {
                    event: String::new(),
                    data: "é1\n2".into()
                },
            ]
        );
    }

    #[test]
    fn crlf_line_endings() {
        let mut p = SseParser::default();
        let mut events = Vec::new();
        for b in b"data: x\r\n\r\ndata: y\r\rdata: z\n\n" {
            events.extend(p.push(std::slice::from_ref(b)));
        }
        let data: Vec<_> = events.into_iter().map(|e| e.data).collect();
        assert_eq!(data, ["x", "y", "z"]);
    }
}
