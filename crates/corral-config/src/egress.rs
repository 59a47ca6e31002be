//! The settings of runs' outbound traffic: the built-in proxy (`CORRAL_PROXY_URL`),
//! the proxy test target, and the forward proxy's egress allow-lists.

use crate::{Config, ConfigError};

pub(crate) fn validate(c: &Config) -> Result<(), ConfigError> {
    for r in &c.egress_allowed_ranges {
        if r.parse::<ipnet::IpNet>().is_err() && r.parse::<std::net::IpAddr>().is_err() {
            return Err(ConfigError::Var {
                var: "CORRAL_EGRESS_ALLOWED_RANGES",
                message: format!("{r:?} is not a CIDR range such as 127.0.0.0/8"),
            });
        }
    }
    if let Some(url) = &c.proxy_url {
        let u = url.expose().trim();
        let usable = url::Url::parse(u).is_ok_and(|p| {
            p.scheme() == "http"
                && p.host_str().is_some_and(|h| !h.is_empty())
                && matches!(p.path(), "" | "/")
                && p.query().is_none()
        });
        if !u.is_empty() && !usable {
            return Err(ConfigError::Var {
                var: "CORRAL_PROXY_URL",
                message: "must be an http:// proxy URL (http://[user:password@]host:port)".into(),
            });
        }
    }
    if !(c.proxy_test_url.starts_with("http://") || c.proxy_test_url.starts_with("https://")) {
        return Err(ConfigError::Var {
            var: "CORRAL_PROXY_TEST_URL",
            message: format!(
                "must start with http:// or https://, got {:?}",
                c.proxy_test_url
            ),
        });
    }
    Ok(())
}
