//! Terminal output: colours (only on a terminal, never with `NO_COLOR`), aligned
//! tables, JSON, and small value formatters.

use std::io::IsTerminal as _;

use serde_json::Value;

pub fn stdout_tty() -> bool {
    std::io::stdout().is_terminal()
}

pub fn stderr_tty() -> bool {
    std::io::stderr().is_terminal()
}

pub fn stdin_tty() -> bool {
    std::io::stdin().is_terminal()
}

fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Which stream a piece of text goes to (colours depend on that stream being a tty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Out,
    Err,
}

pub fn color_on(s: Stream) -> bool {
    !no_color()
        && match s {
            Stream::Out => stdout_tty(),
            Stream::Err => stderr_tty(),
        }
}

#[derive(Debug, Clone, Copy)]
pub enum Color {
    Red,
    Green,
    Yellow,
    Blue,
    Dim,
    Bold,
}

pub fn paint(s: Stream, c: Color, text: &str) -> String {
    if !color_on(s) {
        return text.to_owned();
    }
    let code = match c {
        Color::Red => "31",
        Color::Green => "32",
        Color::Yellow => "33",
        Color::Blue => "34",
        Color::Dim => "2",
        Color::Bold => "1",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// The colour of a run status.
pub fn status_color(status: &str) -> Color {
    match status {
        "success" => Color::Green,
        "failed" | "timeout" => Color::Red,
        "cancelled" => Color::Yellow,
        _ => Color::Blue,
    }
}

/// Prints JSON on stdout: pretty on a terminal or when asked, compact otherwise.
pub fn print_json(v: &Value) {
    println!("{}", json_text(v, true));
}

pub fn json_text(v: &Value, pretty: bool) -> String {
    if pretty {
        serde_json::to_string_pretty(v).unwrap_or_default()
    } else {
        serde_json::to_string(v).unwrap_or_default()
    }
}

/// A string field of an object, `-` when absent or null.
pub fn field(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Milliseconds as `1.2s` / `3m04s`.
pub fn duration_ms(ms: Option<i64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 1000 => format!("{ms}ms"),
        Some(ms) if ms < 60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        Some(ms) => format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// An RFC 3339 timestamp shortened to `YYYY-MM-DD HH:MM:SS`.
pub fn short_time(s: &str) -> String {
    if s.len() >= 19 && s.as_bytes().get(10) == Some(&b'T') {
        format!("{} {}", &s[..10], &s[11..19])
    } else {
        s.to_owned()
    }
}

/// An aligned table on stdout; `(no rows)` hint when empty.
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self, colored: bool) -> String {
        let n = self.headers.len();
        let mut width: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate().take(n) {
                if i + 1 == n {
                    s.push_str(c);
                } else {
                    s.push_str(c);
                    s.push_str(&" ".repeat(width[i] - c.chars().count() + 2));
                }
            }
            s.trim_end().to_owned()
        };
        let mut out = String::new();
        let head = line(&self.headers);
        if colored {
            out.push_str(&format!("\x1b[1m{head}\x1b[0m\n"));
        } else {
            out.push_str(&head);
            out.push('\n');
        }
        for r in &self.rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        out
    }

    pub fn print(&self, empty_hint: &str) {
        if self.is_empty() {
            eprintln!("{empty_hint}");
            return;
        }
        print!("{}", self.render(color_on(Stream::Out)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["ID", "STATUS"]);
        t.row(vec!["run_1".into(), "success".into()]);
        t.row(vec!["run_long_id".into(), "failed".into()]);
        assert_eq!(
            t.render(false),
            "ID           STATUS\nrun_1        success\nrun_long_id  failed\n"
        );
    }

    #[test]
    fn formatters() {
        assert_eq!(duration_ms(Some(950)), "950ms");
        assert_eq!(duration_ms(Some(1250)), "1.2s");
        assert_eq!(duration_ms(Some(184_000)), "3m04s");
        assert_eq!(duration_ms(None), "-");
        assert_eq!(
            short_time("2026-12-04T17:09:00.123Z"),
            "2026-12-04 17:09:00"
        );
        assert_eq!(field(&serde_json::json!({"a": null}), "a"), "-");
        assert_eq!(field(&serde_json::json!({"a": 3}), "a"), "3");
    }
}
