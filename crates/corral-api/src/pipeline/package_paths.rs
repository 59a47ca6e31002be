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
        let (first, tail) = match rest.split_once('/') {
            Some((f, t)) => (f, Some(t)),
            None => (rest, None),
        };
        let lower = first.to_ascii_lowercase();
        let scoped = first.starts_with('@') || lower.starts_with("%40");
        if !scoped || first.len() < 2 {
            return None;
        }
        let out = if lower.contains("%2f") {
            // Already one segment (`%40acme%2Fcrm`): only a pin target may need folding.
            let tail = tail?;
            let t = fold_pin_target(tail);
            (t != tail).then(|| format!("{prefix}{first}/{t}"))?
        } else {
            let mut segs = tail?.splitn(2, '/');
            let name = segs.next().filter(|n| !n.is_empty())?;
            match segs.next() {
                Some(tail) => format!("{prefix}{first}%2F{name}/{}", fold_pin_target(tail)),
                None => format!("{prefix}{first}%2F{name}"),
            }
        };
        Some(out)
    })
}

/// `pins/@scope/name` (the agent of a pin, a second package id) → `pins/@scope%2Fname`.
fn fold_pin_target(tail: &str) -> String {
    let Some(rest) = tail.strip_prefix("pins/") else {
        return tail.to_owned();
    };
    let mut segs = rest.splitn(2, '/');
    match (segs.next(), segs.next()) {
        (Some(scope), Some(name))
            if (scope.starts_with('@') || scope.to_ascii_lowercase().starts_with("%40"))
                && !scope.to_ascii_lowercase().contains("%2f")
                && !name.is_empty()
                && !name.contains('/') =>
        {
            format!("pins/{scope}%2F{name}")
        }
        _ => tail.to_owned(),
    }
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
        assert_eq!(
            folded("/api/integrations/%40acme%2Fcrm/pins/@acme/bot").as_deref(),
            Some("/api/integrations/%40acme%2Fcrm/pins/@acme%2Fbot")
        );
        assert_eq!(
            folded("/api/integrations/@acme/crm/pins/@acme/bot").as_deref(),
            Some("/api/integrations/@acme%2Fcrm/pins/@acme%2Fbot")
        );
        assert_eq!(folded("/api/integrations/callback"), None);
        assert_eq!(folded("/api/integrations/@acme"), None);
        assert_eq!(folded("/api/runs/@acme/x"), None);
    }
}
