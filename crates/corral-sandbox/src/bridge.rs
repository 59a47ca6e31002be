//! The host's address on Docker's default bridge: where the server listens for the
//! events of its Docker sandboxes (SPEC §8).
//!
//! `docker network inspect bridge` does not always name it. An engine restarted at
//! least once reports `IPAM.Config = [{"Subnet": "172.17.0.0/16", "Gateway":
//! "172.17.0.1"}]`; Docker 20.10 on its **first start** reports the subnet alone,
//! although `docker0` already carries 172.17.0.1. So the address is derived, in order,
//! from:
//! 1. the IPAM gateway field;
//! 2. the IPv4 address of the bridge interface the network's options name
//!    (`com.docker.network.bridge.name`, `docker0` by default), when this process
//!    sees that interface (it does when it runs on the engine's host);
//! 3. the first host of the IPAM subnet, which is what the engine gives the bridge
//!    when it picks the gateway itself.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use bollard::models::NetworkInspect as Network;

use crate::SandboxError;

/// The network option that names the Linux bridge behind a Docker bridge network.
pub const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";

/// Where the host address was found (logged once, for operators).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewaySource {
    /// `IPAM.Config[].Gateway`.
    IpamGateway,
    /// The address of the bridge interface on this host.
    Interface,
    /// The first host of `IPAM.Config[].Subnet`.
    SubnetFirstHost,
}

/// Derives the host's IPv4 address on `net` (the default bridge network), looking
/// interfaces up through `interface_ipv4`.
pub fn bridge_gateway(
    net: &Network,
    interface_ipv4: impl Fn(&str) -> Option<Ipv4Addr>,
) -> Option<(Ipv4Addr, GatewaySource)> {
    let configs = net
        .ipam
        .as_ref()
        .and_then(|i| i.config.as_deref())
        .unwrap_or_default();
    if let Some(ip) = configs
        .iter()
        .filter_map(|c| c.gateway.as_deref())
        .find_map(|g| g.parse::<Ipv4Addr>().ok())
    {
        return Some((ip, GatewaySource::IpamGateway));
    }
    let subnets: Vec<ipnet::Ipv4Net> = configs
        .iter()
        .filter_map(|c| c.subnet.as_deref())
        .filter_map(|s| s.parse().ok())
        .collect();
    let bridge = bridge_name(net.options.as_ref());
    if let Some(ip) = interface_ipv4(bridge) {
        // An address outside the network's subnet would be a different bridge.
        if subnets.is_empty() || subnets.iter().any(|s| s.contains(&ip)) {
            return Some((ip, GatewaySource::Interface));
        }
    }
    subnets
        .iter()
        .find(|s| s.prefix_len() < 31)
        .map(|s| (first_host(s), GatewaySource::SubnetFirstHost))
}

fn bridge_name(options: Option<&HashMap<String, String>>) -> &str {
    options
        .and_then(|o| o.get(BRIDGE_NAME_OPTION))
        .map(String::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or("docker0")
}

fn first_host(net: &ipnet::Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + 1)
}

/// Inspects the engine's default bridge network and derives the host's address on it.
pub async fn default_bridge_address(
    docker: &bollard::Docker,
) -> Result<(Ipv4Addr, GatewaySource), SandboxError> {
    let net = docker
        .inspect_network(
            "bridge",
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .map_err(|e| crate::docker::engine_error("inspecting the default bridge network", e))?;
    bridge_gateway(&net, local_interface_ipv4).ok_or_else(|| {
        SandboxError::Other(anyhow::anyhow!(
            "the default bridge network has no IPv4 gateway, bridge interface address \
             or IPv4 subnet"
        ))
    })
}

/// [`default_bridge_address`] of the local engine (tests and benchmarks: the
/// address `host.docker.internal` resolves to inside containers).
pub async fn local_engine_bridge_address() -> Result<Ipv4Addr, SandboxError> {
    let docker = bollard::Docker::connect_with_local_defaults()
        .map_err(|e| SandboxError::Unavailable(format!("connecting to Docker: {e}")))?;
    Ok(default_bridge_address(&docker).await?.0)
}

/// The first IPv4 address of the interface `name` on this host, if it exists.
pub fn local_interface_ipv4(name: &str) -> Option<Ipv4Addr> {
    nix::ifaddrs::getifaddrs()
        .ok()?
        .filter(|i| i.interface_name == name)
        .find_map(|i| {
            i.address
                .as_ref()
                .and_then(|a| a.as_sockaddr_in().map(|s| s.ip()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(json: &str) -> Network {
        serde_json::from_str(json).unwrap()
    }

    /// `docker network inspect bridge` of Docker 20.10 restarted at least once.
    const RESTARTED: &str = r#"{"Name":"bridge","Driver":"bridge",
        "IPAM":{"Driver":"default","Options":null,
                "Config":[{"Subnet":"172.17.0.0/16","Gateway":"172.17.0.1"}]},
        "Options":{"com.docker.network.bridge.default_bridge":"true",
                   "com.docker.network.bridge.name":"docker0"}}"#;

    /// The same engine on its first start (seen on a fresh machine): no gateway.
    const FIRST_START: &str = r#"{"Name":"bridge","Driver":"bridge",
        "IPAM":{"Driver":"default","Options":null,
                "Config":[{"Subnet":"172.17.0.0/16"}]},
        "Options":{"com.docker.network.bridge.default_bridge":"true",
                   "com.docker.network.bridge.name":"docker0",
                   "com.docker.network.driver.mtu":"1500"}}"#;

    fn none(_: &str) -> Option<Ipv4Addr> {
        None
    }

    #[test]
    fn the_ipam_gateway_wins_when_the_engine_reports_it() {
        let got = bridge_gateway(&net(RESTARTED), |_| Some(Ipv4Addr::new(9, 9, 9, 9)));
        assert_eq!(
            got,
            Some((Ipv4Addr::new(172, 17, 0, 1), GatewaySource::IpamGateway))
        );
    }

    #[test]
    fn a_first_start_engine_is_answered_from_the_bridge_interface() {
        let seen = std::sync::Mutex::new(Vec::new());
        let got = bridge_gateway(&net(FIRST_START), |name| {
            seen.lock().unwrap().push(name.to_owned());
            Some(Ipv4Addr::new(172, 17, 0, 1))
        });
        assert_eq!(
            got,
            Some((Ipv4Addr::new(172, 17, 0, 1), GatewaySource::Interface))
        );
        assert_eq!(*seen.lock().unwrap(), ["docker0"]);
    }

    #[test]
    fn without_the_interface_the_subnets_first_host_is_used() {
        let got = bridge_gateway(&net(FIRST_START), none);
        assert_eq!(
            got,
            Some((Ipv4Addr::new(172, 17, 0, 1), GatewaySource::SubnetFirstHost))
        );
        // A custom bip: the bridge's own subnet decides.
        let custom = FIRST_START.replace("172.17.0.0/16", "10.99.8.0/24");
        assert_eq!(
            bridge_gateway(&net(&custom), none).map(|g| g.0),
            Some(Ipv4Addr::new(10, 99, 8, 1))
        );
    }

    #[test]
    fn an_interface_outside_the_subnet_is_not_trusted() {
        let got = bridge_gateway(&net(FIRST_START), |_| Some(Ipv4Addr::new(192, 168, 1, 5)));
        assert_eq!(got.unwrap().1, GatewaySource::SubnetFirstHost);
    }

    #[test]
    fn a_renamed_bridge_is_looked_up_by_its_name() {
        let renamed = FIRST_START.replace("\"docker0\"", "\"br-corral\"");
        let got = bridge_gateway(&net(&renamed), |name| {
            (name == "br-corral").then_some(Ipv4Addr::new(172, 17, 0, 1))
        });
        assert_eq!(got.unwrap().1, GatewaySource::Interface);
    }

    #[test]
    fn ipv6_gateways_and_empty_ipam_give_no_ipv4_address() {
        let v6 = r#"{"IPAM":{"Config":[{"Subnet":"fd00::/64","Gateway":"fd00::1"}]}}"#;
        assert_eq!(bridge_gateway(&net(v6), none), None);
        assert_eq!(
            bridge_gateway(&net(r#"{"IPAM":{"Config":[]}}"#), none),
            None
        );
        assert_eq!(bridge_gateway(&net("{}"), none), None);
    }

    #[test]
    fn the_loopback_interface_is_found_on_this_host() {
        assert_eq!(local_interface_ipv4("lo"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(local_interface_ipv4("no-such-interface0"), None);
    }
}
