//! Identifiers. Prefixed ids are `<prefix>_<uuid v7>` so they sort by creation time.

use uuid::Uuid;

/// A fresh UUID v7 (time ordered), as used for un-prefixed ids (users, orgs, keys).
pub fn uuid() -> String {
    Uuid::now_v7().to_string()
}

/// A fresh prefixed id such as `app_0193…`.
pub fn prefixed(prefix: &str) -> String {
    format!("{prefix}_{}", Uuid::now_v7())
}

pub const APPLICATION: &str = "app";
pub const END_USER: &str = "eu";
pub const RUN: &str = "run";
pub const WEBHOOK: &str = "wh";
pub const REQUEST: &str = "req";
pub const INVITATION: &str = "inv";

/// True when `id` has the given prefix followed by a UUID.
pub fn has_prefix(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|rest| Uuid::parse_str(rest).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_ids_are_time_ordered_and_recognised() {
        let a = prefixed(APPLICATION);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = prefixed(APPLICATION);
        assert!(a < b, "{a} should sort before {b}");
        assert!(has_prefix(&a, APPLICATION));
        assert!(!has_prefix(&a, END_USER));
        assert!(!has_prefix("app_nope", APPLICATION));
    }
}
