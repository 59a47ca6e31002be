//! Which webhook targets the platform may call (SPEC §11): the syntactic URL check
//! run when a webhook is created or updated, the address ranges that are never
//! dialled, and the DNS resolver that applies that address check to every address a
//! hostname resolves to, at connection time.
//!
//! The check happens in the resolver rather than once at creation because a hostname
//! can be re-pointed at any moment (DNS rebinding); only the addresses actually
//! handed to the connector are trustworthy.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Longest accepted webhook URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// Host names that reach instance-metadata services without going through an address
/// that [`forbidden`] would recognise (GCE resolves both through its own DNS).
const METADATA_HOSTS: [&str; 2] = ["metadata.google.internal", "metadata"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Production: https only, no loopback, private or metadata address.
    Strict,
    /// Development: loopback addresses and `localhost` are allowed, and plain http
    /// only for them. Private ranges stay refused so dev mode cannot be used to probe
    /// the local network.
    AllowLoopback,
}

/// Why a target was not accepted. The messages are written for a problem+json
/// `detail` and for a delivery attempt's `error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("invalid webhook URL: {0}")]
    InvalidUrl(String),
    #[error(
        "webhook URLs must use https (plain http is accepted only for localhost and \
         loopback addresses in development mode)"
    )]
    Scheme,
    /// The address or host name and the reason, e.g. `127.0.0.1 is a loopback address`.
    #[error("target refused: {0}")]
    Forbidden(String),
    #[error("could not resolve {0}")]
    Resolve(String),
}

impl TargetError {
    /// True when the target itself is unacceptable, so retrying cannot help; false for
    /// a failed DNS lookup, which may be transient.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, Self::Resolve(_))
    }
}

/// True for a host name that reaches an instance-metadata service ([`METADATA_HOSTS`]).
pub fn is_metadata_host(host: &str) -> bool {
    METADATA_HOSTS.contains(&host.strip_suffix('.').unwrap_or(host))
}

/// True when `ip` must never be dialled under `policy`.
pub fn forbidden(ip: IpAddr, policy: Policy) -> bool {
    refusal_reason(ip, policy).is_some()
}

/// What kind of address `ip` is, phrased to follow "… is", when it is refused.
pub fn refusal_reason(ip: IpAddr, policy: Policy) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4, policy),
        IpAddr::V6(v6) => v6_reason(v6, policy),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

fn v4_reason(ip: Ipv4Addr, policy: Policy) -> Option<&'static str> {
    // Metadata addresses first: they sit inside wider ranges, and the narrower name
    // tells an operator more.
    const RANGES: &[([u8; 4], u32, &str)] = &[
        ([169, 254, 169, 254], 32, "a cloud metadata address"),
        ([100, 100, 100, 200], 32, "a cloud metadata address"),
        ([255, 255, 255, 255], 32, "the broadcast address"),
        ([0, 0, 0, 0], 8, "an unspecified (\"this network\") address"),
        ([10, 0, 0, 0], 8, "a private address"),
        ([100, 64, 0, 0], 10, "a shared (carrier-grade NAT) address"),
        ([169, 254, 0, 0], 16, "a link-local address"),
        ([172, 16, 0, 0], 12, "a private address"),
        (
            [192, 0, 0, 0],
            24,
            "a reserved (IETF protocol assignment) address",
        ),
        // The documentation ranges are never routed on the internet, so a target in
        // them can only be something local that reuses them.
        ([192, 0, 2, 0], 24, "a documentation address"),
        ([198, 51, 100, 0], 24, "a documentation address"),
        ([203, 0, 113, 0], 24, "a documentation address"),
        ([192, 168, 0, 0], 16, "a private address"),
        ([198, 18, 0, 0], 15, "a benchmarking address"),
        ([224, 0, 0, 0], 4, "a multicast address"),
        ([240, 0, 0, 0], 4, "a reserved address"),
    ];
    if in_v4(ip, [127, 0, 0, 0], 8) {
        return (policy == Policy::Strict).then_some("a loopback address");
    }
    RANGES
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, reason)| *reason)
}

fn v6_reason(ip: Ipv6Addr, policy: Policy) -> Option<&'static str> {
    let bits = u128::from(ip);
    let low32 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if ip.is_unspecified() {
        return Some("an unspecified address");
    }
    if ip.is_loopback() {
        return (policy == Policy::Strict).then_some("a loopback address");
    }
    // Forms that carry an IPv4 address the packet ends up at: judge that address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_reason(v4, policy);
    }
    if in_v6(ip, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        return v4_reason(low32, policy);
    }
    if in_v6(ip, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        let embedded = Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32);
        return v4_reason(embedded, policy);
    }
    const RANGES: &[(Ipv6Addr, u32, &str)] = &[
        (
            Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254),
            128,
            "a cloud metadata address",
        ),
        // ::a.b.c.d, deprecated IPv4-compatible addresses; :: and ::1 are handled
        // above.
        (
            Ipv6Addr::UNSPECIFIED,
            96,
            "a deprecated IPv4-compatible address",
        ),
        (
            Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
            48,
            "a local-use NAT64 address",
        ),
        (
            Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
            7,
            "a unique-local (private) address",
        ),
        (
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
            10,
            "a link-local address",
        ),
        (
            Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
            10,
            "a site-local (private) address",
        ),
        (
            Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
            8,
            "a multicast address",
        ),
        (
            Ipv6Addr::new(0x2001, 0x0db8, 0, 0, 0, 0, 0, 0),
            32,
            "a documentation address",
        ),
    ];
    RANGES
        .iter()
        .find(|(net, prefix, _)| in_v6(ip, *net, *prefix))
        .map(|(_, _, reason)| *reason)
}

fn refuse_ip(ip: IpAddr, policy: Policy) -> Result<(), TargetError> {
    match refusal_reason(ip, policy) {
        Some(reason) => Err(TargetError::Forbidden(format!("{ip} is {reason}"))),
        None => Ok(()),
    }
}

fn is_localhost_name(host: &str) -> bool {
    host == "localhost" || host.ends_with(".localhost")
}

/// The syntactic check for a webhook URL, run when a webhook is created or updated and
/// again before each delivery. Host names are not resolved here; [`GuardedResolver`]
/// checks their addresses when the connection is made.
pub fn check_url(url: &str, policy: Policy) -> Result<url::Url, TargetError> {
    if url.len() > MAX_URL_LEN {
        return Err(TargetError::InvalidUrl(format!(
            "longer than {MAX_URL_LEN} characters"
        )));
    }
    let parsed = url::Url::parse(url).map_err(|e| TargetError::InvalidUrl(e.to_string()))?;
    let https = match parsed.scheme() {
        "https" => true,
        "http" => false,
        _ => return Err(TargetError::Scheme),
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(TargetError::InvalidUrl(
            "a user name or password in the URL is not allowed".to_owned(),
        ));
    }
    let loopback_target = match parsed.host() {
        None => return Err(TargetError::InvalidUrl("the URL has no host".to_owned())),
        Some(url::Host::Ipv4(v4)) => {
            refuse_ip(IpAddr::V4(v4), policy)?;
            v4.is_loopback()
        }
        Some(url::Host::Ipv6(v6)) => {
            refuse_ip(IpAddr::V6(v6), policy)?;
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Some(url::Host::Domain(domain)) => {
            // `localhost.` is the same name as `localhost`; url already lowercased it.
            let host = domain.strip_suffix('.').unwrap_or(domain);
            if is_metadata_host(host) {
                return Err(TargetError::Forbidden(format!(
                    "{host} is a cloud metadata host name"
                )));
            }
            if is_localhost_name(host) && policy == Policy::Strict {
                return Err(TargetError::Forbidden(format!(
                    "{host} is a loopback host name"
                )));
            }
            host == "localhost"
        }
    };
    let dev_loopback = policy == Policy::AllowLoopback && loopback_target;
    if https || dev_loopback {
        Ok(parsed)
    } else {
        Err(TargetError::Scheme)
    }
}

/// A `reqwest` resolver that refuses a host name as soon as any of its addresses is
/// forbidden. Refusing on any (rather than filtering the bad ones out) means a name
/// that mixes public and private records is treated as the attack it most likely is.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub policy: Policy,
}

impl GuardedResolver {
    pub fn new(policy: Policy) -> Self {
        Self { policy }
    }

    /// Resolves `host` and checks every address; the port of the results is 0
    /// (reqwest substitutes the URL's).
    pub async fn lookup(&self, host: &str) -> Result<Vec<SocketAddr>, TargetError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
            .await
            .map_err(|e| TargetError::Resolve(format!("{host}: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(TargetError::Resolve(format!("{host}: no addresses")));
        }
        for addr in &addrs {
            if let Some(reason) = refusal_reason(addr.ip(), self.policy) {
                return Err(TargetError::Forbidden(format!(
                    "{host} resolves to {}, {reason}",
                    addr.ip()
                )));
            }
        }
        Ok(addrs)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = *self;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = resolver.lookup(&host).await?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().unwrap())
    }

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse().unwrap())
    }

    #[test]
    fn ipv4_ranges() {
        let refused = [
            "0.0.0.0",
            "0.255.255.255",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "100.100.100.200",
            "169.254.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "224.0.0.1",
            "239.255.255.255",
            "240.0.0.1",
            "255.255.255.255",
        ];
        for ip in refused {
            assert!(forbidden(v4(ip), Policy::Strict), "{ip} under Strict");
            assert!(
                forbidden(v4(ip), Policy::AllowLoopback),
                "{ip} under AllowLoopback"
            );
        }
        let allowed = [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ];
        for ip in allowed {
            assert!(!forbidden(v4(ip), Policy::Strict), "{ip}");
        }
    }

    #[test]
    fn loopback_depends_on_policy() {
        for ip in [v4("127.0.0.1"), v4("127.255.0.1"), v6("::1")] {
            assert!(forbidden(ip, Policy::Strict), "{ip}");
            assert!(!forbidden(ip, Policy::AllowLoopback), "{ip}");
        }
        assert_eq!(
            refusal_reason(v4("127.0.0.1"), Policy::Strict),
            Some("a loopback address")
        );
    }

    #[test]
    fn ipv6_ranges() {
        let refused = [
            "::",
            "fc00::1",
            "fdff:ffff::1",
            "fd00:ec2::254",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "::10.0.0.1",
            "64:ff9b:1::a00:1",
        ];
        for ip in refused {
            assert!(forbidden(v6(ip), Policy::Strict), "{ip} under Strict");
            assert!(
                forbidden(v6(ip), Policy::AllowLoopback),
                "{ip} under AllowLoopback"
            );
        }
        assert_eq!(
            refusal_reason(v6("fd00:ec2::254"), Policy::Strict),
            Some("a cloud metadata address")
        );
        for ip in [
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450::1",
        ] {
            assert!(!forbidden(v6(ip), Policy::Strict), "{ip}");
        }
    }

    #[test]
    fn ipv6_embedding_ipv4_is_judged_by_the_embedded_address() {
        // IPv4-mapped.
        assert!(forbidden(v6("::ffff:127.0.0.1"), Policy::Strict));
        assert!(!forbidden(v6("::ffff:127.0.0.1"), Policy::AllowLoopback));
        assert!(forbidden(v6("::ffff:10.1.2.3"), Policy::AllowLoopback));
        assert!(forbidden(v6("::ffff:169.254.169.254"), Policy::Strict));
        assert_eq!(
            refusal_reason(v6("::ffff:169.254.169.254"), Policy::Strict),
            Some("a cloud metadata address")
        );
        assert!(!forbidden(v6("::ffff:8.8.8.8"), Policy::Strict));
        // NAT64 well-known prefix.
        assert!(forbidden(v6("64:ff9b::a9fe:a9fe"), Policy::Strict));
        assert!(forbidden(v6("64:ff9b::192.168.0.1"), Policy::Strict));
        assert!(forbidden(v6("64:ff9b::127.0.0.1"), Policy::Strict));
        assert!(!forbidden(v6("64:ff9b::8.8.8.8"), Policy::Strict));
        // 6to4: 2002:AABB:CCDD:: carries AA.BB.CC.DD.
        assert!(forbidden(v6("2002:0a00:0001::1"), Policy::Strict));
        assert!(forbidden(v6("2002:a9fe:a9fe::"), Policy::Strict));
        assert!(!forbidden(v6("2002:0808:0808::1"), Policy::Strict));
    }

    #[test]
    fn check_url_accepts_public_https() {
        let url = check_url("https://hooks.example.com/corral?x=1", Policy::Strict).unwrap();
        assert_eq!(url.host_str(), Some("hooks.example.com"));
        assert!(check_url("https://8.8.8.8:8443/h", Policy::Strict).is_ok());
        assert!(check_url("https://[2606:4700:4700::1111]/h", Policy::Strict).is_ok());
    }

    #[test]
    fn check_url_scheme_rules() {
        assert_eq!(
            check_url("http://hooks.example.com/", Policy::Strict),
            Err(TargetError::Scheme)
        );
        assert_eq!(
            check_url("http://hooks.example.com/", Policy::AllowLoopback),
            Err(TargetError::Scheme)
        );
        assert_eq!(
            check_url("ftp://hooks.example.com/", Policy::Strict),
            Err(TargetError::Scheme)
        );
        assert!(check_url("http://localhost:8080/hook", Policy::AllowLoopback).is_ok());
        assert!(check_url("http://127.0.0.1:8080/hook", Policy::AllowLoopback).is_ok());
        assert!(check_url("http://[::1]:8080/hook", Policy::AllowLoopback).is_ok());
        assert!(check_url("https://localhost/hook", Policy::AllowLoopback).is_ok());
        // Dev mode opens loopback only, not the local network.
        assert_eq!(
            check_url("http://10.0.0.1/hook", Policy::AllowLoopback),
            Err(TargetError::Forbidden(
                "10.0.0.1 is a private address".into()
            ))
        );
        assert!(matches!(
            check_url("https://192.168.0.10/hook", Policy::AllowLoopback),
            Err(TargetError::Forbidden(_))
        ));
        // `foo.localhost` is only reachable through the resolver, so it gets no http.
        assert_eq!(
            check_url("http://app.localhost/", Policy::AllowLoopback),
            Err(TargetError::Scheme)
        );
    }

    #[test]
    fn check_url_refuses_loopback_and_metadata_hosts_under_strict() {
        for url in [
            "http://localhost/",
            "https://localhost/",
            "https://LOCALHOST./",
            "https://app.localhost/",
            "https://127.0.0.1/",
            "https://127.1/",
            "https://2130706433/",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://169.254.169.254/latest/meta-data/",
            "https://[fd00:ec2::254]/",
            "https://metadata.google.internal/computeMetadata/v1/",
            "https://metadata/",
            "https://0.0.0.0/",
        ] {
            assert!(
                matches!(
                    check_url(url, Policy::Strict),
                    Err(TargetError::Forbidden(_))
                ),
                "{url}: {:?}",
                check_url(url, Policy::Strict)
            );
        }
        assert!(matches!(
            check_url("https://metadata.google.internal/", Policy::AllowLoopback),
            Err(TargetError::Forbidden(_))
        ));
        assert_eq!(
            check_url("https://127.0.0.1/", Policy::Strict)
                .unwrap_err()
                .to_string(),
            "target refused: 127.0.0.1 is a loopback address"
        );
    }

    #[test]
    fn check_url_syntax() {
        assert!(matches!(
            check_url("/relative/path", Policy::Strict),
            Err(TargetError::InvalidUrl(_))
        ));
        assert!(matches!(
            check_url("not a url", Policy::Strict),
            Err(TargetError::InvalidUrl(_))
        ));
        assert!(matches!(
            check_url("https://user:pw@hooks.example.com/", Policy::Strict),
            Err(TargetError::InvalidUrl(_))
        ));
        assert!(matches!(
            check_url("https://user@hooks.example.com/", Policy::Strict),
            Err(TargetError::InvalidUrl(_))
        ));
        assert!(matches!(
            check_url("http://user:pw@localhost/", Policy::AllowLoopback),
            Err(TargetError::InvalidUrl(_))
        ));
        let long = format!("https://hooks.example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(matches!(
            check_url(&long, Policy::Strict),
            Err(TargetError::InvalidUrl(_))
        ));
        let exact = format!(
            "https://hooks.example.com/{}",
            "a".repeat(MAX_URL_LEN - "https://hooks.example.com/".len())
        );
        assert!(check_url(&exact, Policy::Strict).is_ok());
    }

    #[test]
    fn refusal_classification() {
        assert!(TargetError::Scheme.is_refusal());
        assert!(TargetError::Forbidden("x".into()).is_refusal());
        assert!(TargetError::InvalidUrl("x".into()).is_refusal());
        assert!(!TargetError::Resolve("x".into()).is_refusal());
    }

    #[tokio::test]
    async fn resolver_refuses_localhost_under_strict() {
        let err = GuardedResolver::new(Policy::Strict)
            .lookup("localhost")
            .await
            .unwrap_err();
        assert!(matches!(err, TargetError::Forbidden(_)), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with("target refused: localhost resolves to ")
                && text.ends_with("a loopback address"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn resolver_allows_localhost_under_allow_loopback() {
        let addrs = GuardedResolver::new(Policy::AllowLoopback)
            .lookup("localhost")
            .await
            .unwrap();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
    }

    #[tokio::test]
    async fn resolver_reports_unresolvable_names() {
        // `.invalid` is reserved never to resolve (RFC 6761).
        let err = GuardedResolver::new(Policy::Strict)
            .lookup("no-such-host.invalid")
            .await
            .unwrap_err();
        assert!(matches!(err, TargetError::Resolve(_)), "{err:?}");
        assert!(!err.is_refusal());
    }

    #[tokio::test]
    async fn resolver_checks_literal_addresses_too() {
        // reqwest never hands literals to the resolver, but a direct caller might.
        let err = GuardedResolver::new(Policy::Strict)
            .lookup("169.254.169.254")
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "target refused: 169.254.169.254 resolves to 169.254.169.254, a cloud metadata address"
        );
    }
}
