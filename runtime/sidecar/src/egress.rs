//! SSRF protection for the forward proxy: which destinations the agent's own
//! traffic may reach. Names are resolved here and every resolved address is
//! checked; the caller connects to exactly the addresses that passed, so a DNS
//! answer cannot change between the check and the connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use corral_protocol::Egress;
use ipnet::IpNet;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("host {0} is not on the egress allow-list")]
    HostNotAllowed(String),
    #[error("{host} resolves to {addr}, a forbidden address")]
    ForbiddenAddress { host: String, addr: IpAddr },
    #[error("{0} does not resolve")]
    Unresolvable(String),
}

#[derive(Debug)]
pub struct EgressGuard {
    policy: Egress,
    allowed_ranges: Vec<IpNet>,
    /// Where allowed traffic goes out through, when the run has a proxy.
    pub upstream: Option<Upstream>,
}

/// The upstream HTTP proxy of a run: its address and the `Proxy-Authorization`
/// its URL's credentials make.
#[derive(Clone)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    pub authorization: Option<String>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("authorization", &self.authorization.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Upstream {
    /// Parses `http://[user[:password]@]host[:port]` (port 80 when absent).
    pub fn parse(raw: &str) -> anyhow::Result<Upstream> {
        use base64::Engine as _;
        let url = reqwest::Url::parse(raw)
            .map_err(|_| anyhow::anyhow!("egress.upstream_proxy is not a URL"))?;
        anyhow::ensure!(
            url.scheme() == "http",
            "egress.upstream_proxy must be an http:// proxy"
        );
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| anyhow::anyhow!("egress.upstream_proxy names no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let authorization = (!url.username().is_empty() || url.password().is_some()).then(|| {
            let pair = format!(
                "{}:{}",
                decode(url.username()),
                decode(url.password().unwrap_or_default())
            );
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        });
        Ok(Upstream {
            host,
            port: url.port().unwrap_or(80),
            authorization,
        })
    }
}

impl EgressGuard {
    pub fn new(policy: &Egress) -> anyhow::Result<Self> {
        let allowed_ranges = policy
            .allowed_ranges
            .iter()
            .map(|r| {
                r.parse::<IpNet>()
                    .or_else(|_| r.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| anyhow::anyhow!("egress.allowed_ranges: `{r}` is not a CIDR"))
            })
            .collect::<anyhow::Result<_>>()?;
        let upstream = policy
            .upstream_proxy
            .as_ref()
            .map(|u| Upstream::parse(u.expose()))
            .transpose()?;
        Ok(Self {
            policy: policy.clone(),
            allowed_ranges,
            upstream,
        })
    }

    /// Resolves `host:port` and returns the addresses the proxy may connect to, or
    /// why it may not.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refusal> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if !self.policy.allows_host(bare) {
            return Err(Refusal::HostNotAllowed(bare.to_owned()));
        }
        let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((bare, port))
                .await
                .map_err(|_| Refusal::Unresolvable(bare.to_owned()))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(Refusal::Unresolvable(bare.to_owned()));
        }
        // Every answer must pass: a name with one public and one private address
        // would otherwise let the agent pick the private one by retrying.
        if let Some(bad) = addrs.iter().find(|a| !self.address_allowed(a.ip())) {
            return Err(Refusal::ForbiddenAddress {
                host: bare.to_owned(),
                addr: bad.ip(),
            });
        }
        Ok(addrs)
    }

    pub fn address_allowed(&self, ip: IpAddr) -> bool {
        self.allowed_ranges.iter().any(|r| r.contains(&ip)) || !is_forbidden(ip)
    }
}

/// Addresses that are never public destinations: loopback, private, shared (CGNAT),
/// link-local (which holds the cloud metadata endpoints), unspecified, multicast,
/// broadcast, reserved, and IPv6 forms embedding such an IPv4 address.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_forbidden(v4),
        IpAddr::V6(v6) => v6_forbidden(v6),
    }
}

fn v4_forbidden(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // 100.64.0.0/10 shared address space
        || (a == 192 && b == 0 && c == 0) // 192.0.0.0/24 IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // 198.18.0.0/15 benchmarking
        || a >= 240 // 240.0.0.0/4 reserved
}

fn v6_forbidden(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_forbidden(v4);
    }
    // IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::/96) embed an IPv4 address.
    let embedded = Ipv4Addr::new(
        (seg[6] >> 8) as u8,
        seg[6] as u8,
        (seg[7] >> 8) as u8,
        seg[7] as u8,
    );
    if seg[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return v4_forbidden(embedded);
    }
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return v4_forbidden(embedded);
    }
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (seg[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local (incl. fd00:ec2::254)
        || (seg[0] & 0xffc0) == 0xfe80 // fe80::/10 link-local
        || (seg[0] & 0xffc0) == 0xfec0 // fec0::/10 deprecated site-local
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(s: &str) -> bool {
        is_forbidden(s.parse().unwrap())
    }

    #[test]
    fn classifies_addresses() {
        for bad in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "ff02::1",
        ] {
            assert!(forbidden(bad), "{bad} should be forbidden");
        }
        for good in ["93.184.216.34", "1.1.1.1", "2606:4700::1111", "172.32.0.1"] {
            assert!(!forbidden(good), "{good} should be allowed");
        }
    }

    #[test]
    fn upstream_proxies_parse() {
        let u = Upstream::parse("http://us%40er:p%3Ass@proxy.example.com:3128").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("proxy.example.com", 3128));
        // base64("us@er:p:ss")
        assert_eq!(u.authorization.as_deref(), Some("Basic dXNAZXI6cDpzcw=="));
        assert!(
            !format!("{u:?}").contains("dXNA"),
            "Debug hides the credentials"
        );
        let bare = Upstream::parse("http://10.0.0.5").unwrap();
        assert_eq!((bare.port, bare.authorization), (80, None));
        assert!(Upstream::parse("https://proxy.example.com").is_err());
        assert!(Upstream::parse("nonsense").is_err());
    }

    #[tokio::test]
    async fn ranges_and_hosts_from_policy() {
        let guard = EgressGuard::new(&Egress {
            allowed_hosts: vec!["127.0.0.1".into(), "localhost".into()],
            allowed_ranges: vec!["127.0.0.0/8".into()],
            upstream_proxy: None,
        })
        .unwrap();
        assert!(guard.resolve("127.0.0.1", 80).await.is_ok());
        assert_eq!(
            guard.resolve("example.com", 80).await,
            Err(Refusal::HostNotAllowed("example.com".into()))
        );
        let strict = EgressGuard::new(&Egress::default()).unwrap();
        assert!(matches!(
            strict.resolve("10.0.0.1", 80).await,
            Err(Refusal::ForbiddenAddress { .. })
        ));
        assert!(EgressGuard::new(&Egress {
            allowed_hosts: vec![],
            allowed_ranges: vec!["nope".into()],
            upstream_proxy: None,
        })
        .is_err());
    }
}
