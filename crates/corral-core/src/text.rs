//! Text rules shared by every edge. PostgreSQL refuses the NUL character (U+0000) in
//! `text` values while SQLite stores it, so Corral refuses it wherever text enters
//! (request paths, queries, JSON bodies, package manifests): both backends then
//! answer alike, with a 400 naming the field, and no NUL ever reaches a query.

use serde_json::Value;

/// The JSON path (`a.b[2].c`, or `body` for a top-level string) of the first string
/// or object key in `v` that holds a NUL character.
pub fn nul_path(v: &Value) -> Option<String> {
    fn walk(v: &Value, path: &mut String) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            Value::Object(map) => map.iter().any(|(k, item)| {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&k.replace('\0', "\u{FFFD}"));
                let found = k.contains('\0') || walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            _ => false,
        }
    }
    let mut path = String::new();
    walk(v, &mut path).then(|| {
        if path.is_empty() {
            "body".to_owned()
        } else {
            path
        }
    })
}

/// True when JSON text may hold a NUL: the only way to write one in JSON is the
/// `\u0000` escape (a raw control character is not valid JSON). A cheap pre-check
/// before [`nul_path`]; it can be true for an escaped backslash followed by `u0000`.
pub fn json_may_hold_nul(bytes: &[u8]) -> bool {
    bytes.windows(6).any(|w| w == b"\\u0000")
}

/// `s` with every NUL replaced by U+FFFD, for text that is data rather than input to
/// refuse (an agent's log lines).
pub fn without_nul(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_the_path_of_the_first_nul() {
        assert_eq!(nul_path(&json!({"name": "ok"})), None);
        assert_eq!(
            nul_path(&json!({"name": "n\u{0}"})).as_deref(),
            Some("name")
        );
        assert_eq!(
            nul_path(&json!({"a": {"b": [1, "x", "y\u{0}z"]}})).as_deref(),
            Some("a.b[2]")
        );
        assert_eq!(
            nul_path(&json!({"k\u{0}": 1})).as_deref(),
            Some("k\u{FFFD}")
        );
        assert_eq!(nul_path(&json!("\u{0}")).as_deref(), Some("body"));
        assert_eq!(nul_path(&json!([{"a": "\u{0}"}])).as_deref(), Some("[0].a"));
    }

    #[test]
    fn pre_check_sees_the_escape() {
        assert!(json_may_hold_nul(br#"{"a":"\u0000"}"#));
        assert!(!json_may_hold_nul(br#"{"a":"\u0001"}"#));
        assert!(
            json_may_hold_nul(br#"{"a":"\\u0000"}"#),
            "a false positive is fine"
        );
        assert_eq!(without_nul("a\0b"), "a\u{FFFD}b");
        assert!(matches!(without_nul("ab"), std::borrow::Cow::Borrowed(_)));
    }
}
