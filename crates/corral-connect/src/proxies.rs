//! Outbound proxies: an organization's custom proxies (URL sealed at rest, shown
//! masked), the built-in one from configuration (`CORRAL_PROXY_URL`), the choice of
//! the proxy a run's traffic goes through, and the test call through a proxy.
//!
//! A run's proxy, most specific first: the trigger's `proxyId`, the schedule's
//! override, the agent's setting in the application, the organization's default, the
//! built-in proxy; `none` at any level stops the search with no proxy. A proxy named
//! explicitly that is gone or disabled refuses the trigger (`proxy_unavailable`):
//! traffic meant to go through a proxy never silently goes out directly.

use std::time::{Duration, Instant};

use corral_core::{ErrorCode, OrgId, Problem, ProblemResult};
use corral_store::proxies::{self as store, Proxy};
use serde::{Deserialize, Serialize};

use crate::models::Probe;
use crate::Connect;

/// The id of the built-in proxy (configuration, not a row).
pub const SYSTEM_ID: &str = "system";
/// The label of the built-in proxy.
pub const SYSTEM_LABEL: &str = "System proxy";
/// The value that opts out of proxying.
pub const NONE: &str = "none";

const PROBE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Associated data of a proxy's sealed URL: the envelope opens only on its row.
pub fn url_aad(id: &str) -> String {
    format!("org_proxy:{id}")
}

pub fn seal_url(state: &Connect, id: &str, url: &str) -> String {
    state.keyring.seal(url.as_bytes(), &url_aad(id))
}

pub fn open_url(
    state: &Connect,
    id: &str,
    sealed: &str,
) -> Result<String, corral_config::crypto::CryptoError> {
    state.keyring.open_str(sealed, &url_aad(id))
}

/// A proxy URL as stored: `http://[user[:password]@]host[:port]`, nothing after the
/// authority. Only plain-HTTP proxies are spoken to (CONNECT for https targets).
pub fn check_url(raw: &str) -> Result<String, String> {
    let url = url::Url::parse(raw.trim()).map_err(|e| format!("not a URL: {e}"))?;
    if url.scheme() != "http" {
        return Err(
            "must be an http:// proxy URL (https:// and socks proxies are not supported)".into(),
        );
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a path, query or fragment".into());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Whether a custom proxy's address is acceptable: every address its host resolves
/// to must pass the server's outbound policy (production: no loopback, private,
/// link-local, shared, documentation or metadata address; development: loopback
/// allowed), unless it lies in `CORRAL_EGRESS_ALLOWED_RANGES` (the operator's
/// approved ranges, which the agent may reach anyway). Checked when a proxy is saved,
/// tested, and when a run starts with it. The built-in proxy is not checked.
pub async fn check_address(state: &Connect, url: &str) -> Result<(), String> {
    use corral_webhooks::ssrf::refusal_reason;
    let u = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    let host = u
        .host_str()
        .ok_or("must name a host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = u.port().unwrap_or(80);
    if corral_webhooks::ssrf::is_metadata_host(&host) {
        return Err(format!("{host} is a cloud metadata host name"));
    }
    let addrs: Vec<std::net::SocketAddr> = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![std::net::SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|_| format!("{host} does not resolve"))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(format!("{host} does not resolve"));
    }
    let approved = state.config.egress_allowed_nets();
    for a in addrs {
        if approved.iter().any(|n| n.contains(&a.ip())) {
            continue;
        }
        if let Some(reason) = refusal_reason(a.ip(), state.policy()) {
            return Err(format!(
                "{host} is {}, {reason}; proxies must be public unless the operator allows \
                 the range (CORRAL_EGRESS_ALLOWED_RANGES)",
                a.ip()
            ));
        }
    }
    Ok(())
}

/// The URL for display: scheme, host and port; a password (or a user name alone,
/// which is often a token) replaced by `****`.
pub fn mask(url: &str) -> String {
    let Ok(u) = url::Url::parse(url) else {
        return "****".into();
    };
    let host = match (u.host_str(), u.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => String::new(),
    };
    let auth = match (u.username(), u.password()) {
        ("", None) => String::new(),
        (user, Some(_)) if !user.is_empty() => format!("{user}:****@"),
        _ => "****@".into(),
    };
    format!("{}://{auth}{host}", u.scheme())
}

/// The built-in proxy's URL, when configured.
pub fn system_url(state: &Connect) -> Option<String> {
    state
        .config
        .proxy_url
        .as_ref()
        .map(|s| s.expose().trim().to_owned())
        .filter(|u| !u.is_empty())
}

/// The proxy a run's traffic goes through, as frozen in its definition (never the
/// URL: it is opened when the run starts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunProxy {
    /// A custom proxy's id, or [`SYSTEM_ID`].
    pub id: String,
    pub label: String,
}

/// One level of the choice: a proxy id, `none`, or nothing said (the next level
/// decides).
fn level(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|s| !s.is_empty())
}

fn unavailable(detail: String, param: &str) -> Problem {
    let mut e = Problem::new(ErrorCode::ProxyUnavailable, detail);
    e.param = Some(param.to_owned());
    e
}

/// The proxy `id` of the organization, usable: the built-in one when configured, or
/// an enabled custom proxy.
async fn usable(state: &Connect, org_id: &OrgId, id: &str) -> ProblemResult<Option<RunProxy>> {
    if id == SYSTEM_ID {
        return Ok(system_url(state).map(|_| RunProxy {
            id: SYSTEM_ID.into(),
            label: SYSTEM_LABEL.into(),
        }));
    }
    let mut conn = state.db.conn().await?;
    Ok(store::get(&mut conn, org_id, id)
        .await?
        .filter(|p| p.enabled)
        .map(|p| RunProxy {
            id: p.id,
            label: p.label,
        }))
}

/// The organization's default: its flagged (enabled) proxy, else the built-in one.
pub async fn org_default(state: &Connect, org_id: &OrgId) -> ProblemResult<Option<RunProxy>> {
    let mut conn = state.db.conn().await?;
    if let Some(p) = store::default_of(&mut conn, org_id).await? {
        return Ok(Some(RunProxy {
            id: p.id,
            label: p.label,
        }));
    }
    Ok(system_url(state).map(|_| RunProxy {
        id: SYSTEM_ID.into(),
        label: SYSTEM_LABEL.into(),
    }))
}

/// What the run's trigger, its schedule and the agent's setting say.
#[derive(Debug, Default, Clone, Copy)]
pub struct Choices<'a> {
    pub run: Option<&'a str>,
    pub schedule: Option<&'a str>,
    pub agent: Option<&'a str>,
}

/// The proxy of a run (see the module's documentation for the order). A trigger's
/// unknown proxy id is a 404 on `proxyId`; a schedule's or agent's that is gone or
/// disabled, or a trigger's disabled one, is 422 `proxy_unavailable`.
pub async fn resolve_for_run(
    state: &Connect,
    org_id: &OrgId,
    c: Choices<'_>,
) -> ProblemResult<Option<RunProxy>> {
    let levels = [
        (level(c.run), "proxyId", "the run's proxy"),
        (
            level(c.schedule),
            "proxy_id_override",
            "the schedule's proxy",
        ),
        (level(c.agent), "proxyId", "the agent's proxy"),
    ];
    for (i, (choice, param, what)) in levels.into_iter().enumerate() {
        let Some(id) = choice else { continue };
        if id == NONE {
            return Ok(None);
        }
        if let Some(p) = usable(state, org_id, id).await? {
            return Ok(Some(p));
        }
        if i == 0 && !exists(state, org_id, id).await? {
            let mut e = Problem::not_found("proxy");
            e.param = Some(param.to_owned());
            return Err(e);
        }
        return Err(unavailable(
            format!("{what} {id:?} is deleted or disabled; choose another proxy or none"),
            param,
        ));
    }
    org_default(state, org_id).await
}

/// Whether `id` names a proxy of the organization (enabled or not), or the built-in
/// one when configured.
pub async fn exists(state: &Connect, org_id: &OrgId, id: &str) -> ProblemResult<bool> {
    if id == SYSTEM_ID {
        return Ok(system_url(state).is_some());
    }
    let mut conn = state.db.conn().await?;
    Ok(store::get(&mut conn, org_id, id).await?.is_some())
}

/// The URL of a run's proxy when the run starts, or why it cannot be had (deleted,
/// disabled, no longer configured, or its envelope does not open).
pub async fn run_url(state: &Connect, org_id: &OrgId, p: &RunProxy) -> Result<String, String> {
    if p.id == SYSTEM_ID {
        return system_url(state)
            .ok_or_else(|| "the built-in proxy is no longer configured".into());
    }
    let mut conn = state.db.conn().await.map_err(|e| e.to_string())?;
    let row: Proxy = store::get(&mut conn, org_id, &p.id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("proxy {} was deleted", p.label))?;
    if !row.enabled {
        return Err(format!("proxy {} is disabled", row.label));
    }
    let url = open_url(state, &row.id, &row.url)
        .map_err(|_| format!("the URL of proxy {} can no longer be decrypted", row.label))?;
    check_address(state, &url)
        .await
        .map_err(|e| format!("proxy {}: {e}", row.label))?;
    Ok(url)
}

fn latency(t0: Instant) -> f64 {
    (t0.elapsed().as_secs_f64() * 1000.0 * 10.0).round() / 10.0
}

/// Removes the proxy URL's credentials from a text that may quote them.
fn scrub(text: &str, proxy_url: &str) -> String {
    let mut out: String = text.chars().take(300).collect();
    if let Ok(u) = url::Url::parse(proxy_url) {
        for secret in [u.password().unwrap_or_default(), u.username()] {
            if secret.len() >= 3 {
                out = out.replace(secret, "****");
            }
        }
    }
    out
}

/// Tests a proxy: one `GET target` through it (CONNECT for an https target), with
/// short timeouts and no redirects. Any answer of the target means the proxy works;
/// the proxy's own refusals (407, 502–504) and transport failures do not.
pub async fn probe(proxy_url: &str, target: &str) -> Probe {
    let t0 = Instant::now();
    let fail = |code: &str, message: String, status: Option<u16>, t0: Instant| Probe {
        ok: false,
        latency_ms: latency(t0),
        error: Some(code.into()),
        message: Some(message),
        status,
    };
    let client = reqwest::Proxy::all(proxy_url).and_then(|p| {
        reqwest::Client::builder()
            .proxy(p)
            .connect_timeout(PROBE_CONNECT_TIMEOUT)
            .timeout(PROBE_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
    });
    let client = match client {
        Ok(c) => c,
        Err(_) => {
            return fail(
                "invalid_url",
                "the proxy URL is not usable".into(),
                None,
                t0,
            )
        }
    };
    match client.get(target).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            match status {
                407 => fail(
                    "auth_failed",
                    "the proxy refused the credentials (407 Proxy Authentication Required)".into(),
                    Some(status),
                    t0,
                ),
                502..=504 => fail(
                    "upstream_error",
                    format!("the proxy could not reach {target} ({status})"),
                    Some(status),
                    t0,
                ),
                _ => Probe {
                    ok: true,
                    latency_ms: latency(t0),
                    error: None,
                    message: None,
                    status: Some(status),
                },
            }
        }
        Err(e) => {
            let timeout = e.is_timeout();
            let e = e.without_url();
            let mut chain = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                chain.push_str(": ");
                chain.push_str(&s.to_string());
                src = s.source();
            }
            if timeout {
                fail(
                    "timeout",
                    "the proxy did not answer in time".into(),
                    None,
                    t0,
                )
            } else if chain.contains("407") || chain.to_ascii_lowercase().contains("proxy auth") {
                fail(
                    "auth_failed",
                    "the proxy refused the credentials (407 Proxy Authentication Required)".into(),
                    Some(407),
                    t0,
                )
            } else {
                fail(
                    "network_error",
                    format!("the proxy could not be used: {}", scrub(&chain, proxy_url)),
                    None,
                    t0,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_masked() {
        assert_eq!(
            check_url(" http://user:pa55@proxy.example.com:8080/ ").unwrap(),
            "http://user:pa55@proxy.example.com:8080"
        );
        for bad in [
            "https://proxy.example.com:443",
            "socks5://proxy.example.com:1080",
            "http://proxy.example.com:8080/path",
            "http://proxy.example.com:8080/?x=1",
            "not a url",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        assert_eq!(
            mask("http://user:pa55@proxy.example.com:8080"),
            "http://user:****@proxy.example.com:8080"
        );
        assert_eq!(
            mask("http://tok3n@proxy.example.com"),
            "http://****@proxy.example.com"
        );
        assert_eq!(mask("http://10.0.0.1:3128"), "http://10.0.0.1:3128");
        assert_eq!(
            scrub("failed for user:pa55", "http://user:pa55@h:1"),
            "failed for ****:****"
        );
    }
}
