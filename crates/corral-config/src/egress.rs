//! The settings of runs' outbound traffic: the built-in proxy (`CORRAL_PROXY_URL`),
//! the proxy test target, and the forward proxy's egress allow-lists.

use crate::{Config, ConfigError};

/// One entry of `CORRAL_EGRESS_ALLOWED_RANGES`: a CIDR range, or a bare address.
fn parse_range(r: &str) -> Option<ipnet::IpNet> {
    r.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| r.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

impl Config {
    /// `CORRAL_EGRESS_ALLOWED_RANGES`, parsed (validated at load, so none is lost).
    pub fn egress_allowed_nets(&self) -> Vec<ipnet::IpNet> {
        self.egress_allowed_ranges
            .iter()
            .filter_map(|r| parse_range(r))
            .collect()
    }
}

pub(crate) fn validate(c: &Config) -> Result<(), ConfigError> {
    for r in &c.egress_allowed_ranges {
        if parse_range(r).is_none() {
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
