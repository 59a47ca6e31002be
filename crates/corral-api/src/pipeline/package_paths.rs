//! `{packageId}` path parameters as Appstrate clients send them: `@scope/name` with
//! a literal slash (`/api/integrations/@acme/crm/auths/api_key/connect/fields`) as
//! well as encoded (`%40acme%2Fcrm`). The literal form is folded into one segment
//! before routing, so both reach the same route.

use axum::extract::Request;
use axum::http::Uri;
use axum::middleware::Next;
use axum::response::Response;

/// Routes whose segment after the prefix is a `{packageId}`.
const PREFIXES: &[&str] = &["/api/integrations/", "/api/realtime/agents/"];

pub async fn layer(mut req: Request, next: Next) -> Response {
    if let Some(path) = folded(req.uri().path()) {
        let mut parts = req.uri().clone().into_parts();
        let pq = match req.uri().query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        if let Ok(pq) = pq.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    next.run(req).await
}

fn folded(path: &str) -> Option<String> {
    PREFIXES.iter().find_map(|prefix| {
        let rest = path.strip_prefix(prefix)?;
        let mut segs = rest.splitn(3, '/');
        let scope = segs.next()?;
        let name = segs.next().filter(|n| !n.is_empty())?;
        let lower = scope.to_ascii_lowercase();
        let scoped = scope.starts_with('@') || lower.starts_with("%40");
        // Already one segment (`%40acme%2Fcrm`): nothing to fold.
        if !scoped || scope.len() < 2 || lower.contains("%2f") {
            return None;
        }
        Some(match segs.next() {
            Some(tail) => format!("{prefix}{scope}%2F{name}/{tail}"),
            None => format!("{prefix}{scope}%2F{name}"),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::folded;

    #[test]
    fn literal_slashes_are_folded() {
        assert_eq!(
            folded("/api/integrations/@acme/crm/auths/api_key/connect/fields").as_deref(),
            Some("/api/integrations/@acme%2Fcrm/auths/api_key/connect/fields")
        );
        assert_eq!(
            folded("/api/integrations/%40acme/crm").as_deref(),
            Some("/api/integrations/%40acme%2Fcrm")
        );
        assert_eq!(
            folded("/api/realtime/agents/@acme/bot/runs").as_deref(),
            Some("/api/realtime/agents/@acme%2Fbot/runs")
        );
        assert_eq!(folded("/api/integrations/%40acme%2Fcrm/connections"), None);
        assert_eq!(folded("/api/integrations/callback"), None);
        assert_eq!(folded("/api/integrations/@acme"), None);
        assert_eq!(folded("/api/runs/@acme/x"), None);
    }
}
