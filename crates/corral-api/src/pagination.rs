//! `?limit=&offset=` of the offset-paginated lists, checked once: `limit` from 1 to
//! 100 (default `D`), `offset` 0 or more. A list's query struct still names both
//! parameters for the contract; the handler takes them from [`Page`].

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::ApiError;

/// The most items one page may hold.
pub const MAX_LIMIT: i64 = 100;

/// A checked page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page<const D: i64> {
    pub limit: i64,
    pub offset: i64,
}

impl<const D: i64> Page<D> {
    /// Parses a raw query string.
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let (mut limit, mut offset) = (D, 0);
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "limit" => limit = v.trim().parse().map_err(|_| bad_limit())?,
                "offset" => offset = v.trim().parse().map_err(|_| bad_offset())?,
                _ => {}
            }
        }
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(bad_limit());
        }
        if offset < 0 {
            return Err(bad_offset());
        }
        Ok(Page { limit, offset })
    }

    /// Whether items remain after this page, of `total`.
    pub fn has_more(&self, total: i64) -> bool {
        self.offset.saturating_add(self.limit) < total
    }

    /// This page of a list held in memory.
    pub fn window<I: IntoIterator>(
        &self,
        items: I,
    ) -> std::iter::Take<std::iter::Skip<I::IntoIter>> {
        let offset = usize::try_from(self.offset).unwrap_or(usize::MAX);
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        items.into_iter().skip(offset).take(limit)
    }
}

fn bad_limit() -> ApiError {
    ApiError::invalid_param(
        "limit",
        format!("limit must be an integer between 1 and {MAX_LIMIT}"),
    )
}

fn bad_offset() -> ApiError {
    ApiError::invalid_param("offset", "offset must be an integer, 0 or more")
}

impl<S: Send + Sync, const D: i64> FromRequestParts<S> for Page<D> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Page::parse(parts.uri.query())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_checked_once() {
        assert_eq!(
            Page::<20>::parse(None).unwrap(),
            Page {
                limit: 20,
                offset: 0
            }
        );
        assert_eq!(
            Page::<20>::parse(Some("offset=40&limit=100&x=1")).unwrap(),
            Page {
                limit: 100,
                offset: 40
            }
        );
        for bad in [
            "limit=0",
            "limit=101",
            "limit=abc",
            "offset=-1",
            "offset=9223372036854775808",
        ] {
            let e = Page::<20>::parse(Some(bad)).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}");
        }
        let p = Page::<10> {
            limit: 10,
            offset: 20,
        };
        assert!(p.has_more(31));
        assert!(!p.has_more(30));
        assert_eq!(
            p.window(0..25).collect::<Vec<_>>(),
            (20..25).collect::<Vec<_>>()
        );
        assert_eq!(p.window(0..5).count(), 0);
    }
}
