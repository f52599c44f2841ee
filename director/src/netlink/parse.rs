//! Netlink messages into the table's terms, and the one request message
//! that is more than a builder call (a managed neighbour entry).

use std::net::IpAddr;

use netlink_packet_route::AddressFamily;
use netlink_packet_route::link::{LinkAttribute, LinkLayerType, LinkMessage, LinkXdp, XdpAttached};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourExtFlags, NeighbourFlags, NeighbourMessage,
    NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteType, RouteVia,
};

use super::table::{Link, Neigh, NeighKey, NeighState, Path, Route};
use super::{PROTOCOL, XdpRunning};
use crate::config::XdpMode;

pub fn link(msg: &LinkMessage) -> (u32, Link) {
    let mut name = format!("if{}", msg.header.index);
    let mut mac = None;
    for a in &msg.attributes {
        match a {
            LinkAttribute::IfName(n) => name.clone_from(n),
            LinkAttribute::Address(bytes) => mac = <[u8; 6]>::try_from(bytes.as_slice()).ok(),
            _ => {}
        }
    }
    if msg.header.link_layer_type != LinkLayerType::Ether {
        mac = None;
    }
    (msg.header.index, Link { name, mac })
}

/// The XDP program on a link (`IFLA_XDP`), none when nothing is attached.
pub fn xdp(msg: &LinkMessage) -> Option<XdpRunning> {
    let nested = msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::Xdp(x) => Some(x),
        _ => None,
    })?;
    let (mut attached, mut prog_id) = (None, 0);
    for x in nested {
        match x {
            LinkXdp::Attached(a) => attached = Some(a),
            LinkXdp::ProgId(id) => prog_id = *id,
            _ => {}
        }
    }
    let mode = match attached? {
        XdpAttached::None => return None,
        XdpAttached::Driver => Some(XdpMode::Native),
        XdpAttached::SocketBuffer => Some(XdpMode::Generic),
        _ => None,
    };
    Some(XdpRunning { prog_id, mode })
}

fn ip_of(a: &NeighbourAddress) -> Option<IpAddr> {
    match a {
        NeighbourAddress::Inet(v4) => Some((*v4).into()),
        NeighbourAddress::Inet6(v6) => Some((*v6).into()),
        _ => None,
    }
}

/// An IPv4 or IPv6 neighbour entry; `None` for anything else (bridge
/// forwarding entries, proxy entries).
pub fn neigh(msg: &NeighbourMessage) -> Option<(NeighKey, Neigh)> {
    let h = &msg.header;
    if !matches!(h.family, AddressFamily::Inet | AddressFamily::Inet6)
        || h.flags.contains(NeighbourFlags::Proxy)
    {
        return None;
    }
    let (mut dst, mut mac, mut managed, mut protocol) = (None, None, false, None);
    for a in &msg.attributes {
        match a {
            NeighbourAttribute::Destination(d) => dst = ip_of(d),
            NeighbourAttribute::LinkLayerAddress(b) => {
                mac = <[u8; 6]>::try_from(b.as_slice()).ok();
            }
            NeighbourAttribute::ExtFlags(f) => managed = f.contains(NeighbourExtFlags::Managed),
            NeighbourAttribute::Protocol(p) => protocol = Some(u8::from(*p)),
            _ => {}
        }
    }
    let state = match h.state {
        NeighbourState::Reachable
        | NeighbourState::Stale
        | NeighbourState::Delay
        | NeighbourState::Probe => NeighState::Usable,
        NeighbourState::Failed => NeighState::Failed,
        NeighbourState::Permanent | NeighbourState::Noarp => NeighState::Static,
        _ => NeighState::Resolving,
    };
    let neigh = Neigh {
        mac,
        state,
        managed,
        ours: managed && protocol == Some(PROTOCOL),
    };
    Some(((h.ifindex, dst?), neigh))
}

/// The answer to a route lookup (`RTM_GETROUTE`) of `ip`.
pub fn path(ip: IpAddr, msg: &RouteMessage) -> Route {
    match msg.header.kind {
        RouteType::Unicast => {}
        RouteType::Local => {
            return Err(format!(
                "{ip} is an address of this host, not a real server"
            ));
        }
        kind => return Err(format!("{ip} is routed as {kind:?}, not to a host")),
    }
    let (mut oif, mut gateway) = (None, None);
    for a in &msg.attributes {
        match a {
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => gateway = Some((*g).into()),
            RouteAttribute::Gateway(RouteAddress::Inet6(g)) => gateway = Some((*g).into()),
            // An IPv4 route through an IPv6 gateway (RFC 8950).
            RouteAttribute::Via(RouteVia::Inet6(g)) => gateway = Some((*g).into()),
            _ => {}
        }
    }
    let oif = oif.ok_or_else(|| format!("the route to {ip} names no interface"))?;
    Ok(Path { oif, gateway })
}

/// The destination prefix of a changed route (the default route is `/0`);
/// `None` for families other than IPv4 and IPv6.
pub fn route_prefix(msg: &RouteMessage) -> Option<(IpAddr, u8)> {
    let dst = msg.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(d)) => Some(IpAddr::from(*d)),
        RouteAttribute::Destination(RouteAddress::Inet6(d)) => Some(IpAddr::from(*d)),
        _ => None,
    });
    let any: IpAddr = match msg.header.address_family {
        AddressFamily::Inet => std::net::Ipv4Addr::UNSPECIFIED.into(),
        AddressFamily::Inet6 => std::net::Ipv6Addr::UNSPECIFIED.into(),
        _ => return None,
    };
    Some((dst.unwrap_or(any), msg.header.destination_prefix_length))
}

/// `(table, address)` of a host route of protocol [`PROTOCOL`] (what
/// `Kernel::announce` makes); `None` for any other route.
pub fn announced(msg: &RouteMessage) -> Option<(u32, IpAddr)> {
    if msg.header.protocol != RouteProtocol::from(PROTOCOL) {
        return None;
    }
    let (ip, len) = route_prefix(msg)?;
    if len != if ip.is_ipv4() { 32 } else { 128 } {
        return None;
    }
    // Tables above 255 are only in the attribute.
    let table = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(msg.header.table.into());
    Some((table, ip))
}

/// Attributes that make a neighbour request create or convert a managed
/// entry marked as ours.
pub fn managed_attributes() -> [NeighbourAttribute; 2] {
    [
        NeighbourAttribute::ExtFlags(NeighbourExtFlags::Managed),
        NeighbourAttribute::Protocol(RouteProtocol::from(PROTOCOL)),
    ]
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use netlink_packet_route::RouteNetlinkMessage;
    use rtnetlink::packet_core::{Emitable, NetlinkMessage, NetlinkPayload};

    use super::*;

    const MAC: [u8; 6] = [2, 0, 0x5e, 0x10, 0, 0xff];

    fn link_with_xdp(xdp: Vec<LinkXdp>) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.attributes = vec![LinkAttribute::Xdp(xdp)];
        match wire(RouteNetlinkMessage::NewLink(m)) {
            RouteNetlinkMessage::NewLink(m) => m,
            other => panic!("not a link message: {other:?}"),
        }
    }

    #[test]
    fn a_link_says_which_xdp_program_runs_and_in_which_mode() {
        let on = |attached, id| {
            xdp(&link_with_xdp(vec![
                LinkXdp::Attached(attached),
                LinkXdp::ProgId(id),
            ]))
        };
        let running = |mode| Some(XdpRunning { prog_id: 7, mode });
        assert_eq!(on(XdpAttached::Driver, 7), running(Some(XdpMode::Native)));
        assert_eq!(
            on(XdpAttached::SocketBuffer, 7),
            running(Some(XdpMode::Generic))
        );
        assert_eq!(on(XdpAttached::Hardware, 7), running(None));
        assert_eq!(
            xdp(&link_with_xdp(vec![LinkXdp::Attached(XdpAttached::None)])),
            None
        );
        assert_eq!(xdp(&LinkMessage::default()), None, "no IFLA_XDP at all");
    }

    /// Through bytes and back: what the kernel sends is what is parsed.
    fn wire(msg: RouteNetlinkMessage) -> RouteNetlinkMessage {
        let mut m = NetlinkMessage::from(msg);
        m.finalize();
        let mut buf = vec![0; m.buffer_len()];
        m.emit(&mut buf);
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf)
            .expect("a message we emitted parses")
            .payload
        {
            NetlinkPayload::InnerMessage(inner) => inner,
            other => panic!("not a route netlink message: {other:?}"),
        }
    }

    fn neigh_msg(
        family: AddressFamily,
        state: NeighbourState,
        attrs: Vec<NeighbourAttribute>,
    ) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header.family = family;
        m.header.ifindex = 7;
        m.header.state = state;
        m.attributes = attrs;
        match wire(RouteNetlinkMessage::NewNeighbour(m)) {
            RouteNetlinkMessage::NewNeighbour(m) => m,
            other => panic!("{other:?}"),
        }
    }

    fn dst4() -> NeighbourAttribute {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(Ipv4Addr::new(10, 1, 0, 11)))
    }

    #[test]
    fn neighbour_entries_parse_with_state_mac_and_ownership() {
        let lladdr = NeighbourAttribute::LinkLayerAddress(MAC.to_vec());
        let m = neigh_msg(
            AddressFamily::Inet,
            NeighbourState::Stale,
            vec![dst4(), lladdr.clone()],
        );
        let ((ifindex, ip), n) = neigh(&m).expect("an IPv4 entry");
        assert_eq!((ifindex, ip), (7, "10.1.0.11".parse().unwrap()));
        assert_eq!(
            n,
            Neigh {
                mac: Some(MAC),
                state: NeighState::Usable,
                managed: false,
                ours: false
            }
        );
        let mut attrs = vec![dst4(), lladdr.clone()];
        attrs.extend(managed_attributes());
        let (_, n) = neigh(&neigh_msg(
            AddressFamily::Inet,
            NeighbourState::Reachable,
            attrs,
        ))
        .expect("a managed entry");
        assert!(
            n.managed && n.ours,
            "our managed entry not recognised: {n:?}"
        );
        let theirs = vec![
            dst4(),
            NeighbourAttribute::ExtFlags(NeighbourExtFlags::Managed),
        ];
        let (_, n) = neigh(&neigh_msg(
            AddressFamily::Inet,
            NeighbourState::Incomplete,
            theirs,
        ))
        .expect("a managed entry");
        assert!(n.managed && !n.ours, "someone else's entry taken for ours");
        assert_eq!((n.state, n.mac), (NeighState::Resolving, None));
        for (s, want) in [
            (NeighbourState::Failed, NeighState::Failed),
            (NeighbourState::Permanent, NeighState::Static),
            (NeighbourState::Noarp, NeighState::Static),
            (NeighbourState::None, NeighState::Resolving),
            (NeighbourState::Probe, NeighState::Usable),
        ] {
            let (_, n) = neigh(&neigh_msg(AddressFamily::Inet, s, vec![dst4()])).unwrap();
            assert_eq!(n.state, want, "{s:?}");
        }
        let v6 = NeighbourAttribute::Destination(NeighbourAddress::Inet6(
            "2001:db8:1::11".parse().unwrap(),
        ));
        let ((_, ip), _) = neigh(&neigh_msg(
            AddressFamily::Inet6,
            NeighbourState::Reachable,
            vec![v6],
        ))
        .unwrap();
        assert_eq!(ip, "2001:db8:1::11".parse::<IpAddr>().unwrap());
        let fdb = neigh_msg(
            AddressFamily::Bridge,
            NeighbourState::Reachable,
            vec![lladdr],
        );
        assert_eq!(
            neigh(&fdb),
            None,
            "a bridge forwarding entry is no neighbour"
        );
    }

    fn route_msg(kind: RouteType, attrs: Vec<RouteAttribute>) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.kind = kind;
        m.attributes = attrs;
        match wire(RouteNetlinkMessage::NewRoute(m)) {
            RouteNetlinkMessage::NewRoute(m) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn route_lookups_give_interface_and_gateway_or_why_not() {
        let ip: IpAddr = "10.9.0.5".parse().unwrap();
        let gw = Ipv4Addr::new(10, 1, 0, 254);
        let direct = route_msg(RouteType::Unicast, vec![RouteAttribute::Oif(3)]);
        assert_eq!(
            path(ip, &direct),
            Ok(Path {
                oif: 3,
                gateway: None
            })
        );
        let gw6: Ipv6Addr = "fe80::1".parse().unwrap();
        for (attr, want) in [
            (
                RouteAttribute::Gateway(RouteAddress::Inet(gw)),
                IpAddr::from(gw),
            ),
            // An IPv4 route through an IPv6 gateway.
            (RouteAttribute::Via(RouteVia::Inet6(gw6)), gw6.into()),
        ] {
            let via = route_msg(RouteType::Unicast, vec![RouteAttribute::Oif(3), attr]);
            assert_eq!(path(ip, &via).unwrap().gateway, Some(want));
        }
        let local = route_msg(RouteType::Local, vec![RouteAttribute::Oif(1)]);
        assert_eq!(
            path(ip, &local),
            Err("10.9.0.5 is an address of this host, not a real server".into())
        );
        assert!(path(ip, &route_msg(RouteType::BlackHole, vec![])).is_err());
        assert!(path(ip, &route_msg(RouteType::Unicast, vec![])).is_err());
    }

    #[test]
    fn route_changes_give_their_prefix() {
        let mut m = route_msg(
            RouteType::Unicast,
            vec![RouteAttribute::Destination(RouteAddress::Inet(
                Ipv4Addr::new(10, 1, 0, 0),
            ))],
        );
        m.header.destination_prefix_length = 24;
        assert_eq!(route_prefix(&m), Some(("10.1.0.0".parse().unwrap(), 24)));
        let default = route_msg(RouteType::Unicast, vec![]);
        assert_eq!(
            route_prefix(&default),
            Some(("0.0.0.0".parse().unwrap(), 0))
        );
    }

    #[test]
    fn announced_routes_are_our_host_routes_with_their_table() {
        let vip = Ipv4Addr::new(192, 0, 2, 10);
        let host = |len: u8, protocol: u8, table: u32| {
            let mut m = route_msg(
                RouteType::Unicast,
                vec![
                    RouteAttribute::Destination(RouteAddress::Inet(vip)),
                    RouteAttribute::Table(table),
                ],
            );
            m.header.destination_prefix_length = len;
            m.header.protocol = RouteProtocol::from(protocol);
            m.header.table = u8::try_from(table).unwrap_or(252);
            m
        };
        assert_eq!(announced(&host(32, PROTOCOL, 100)), Some((100, vip.into())));
        assert_eq!(
            announced(&host(32, PROTOCOL, 70_000)),
            Some((70_000, vip.into())),
            "a table above 255 is read from its attribute"
        );
        assert_eq!(
            announced(&host(24, PROTOCOL, 100)),
            None,
            "not a host route"
        );
        assert_eq!(announced(&host(32, 4, 100)), None, "not our protocol");
    }

    #[test]
    fn links_give_name_and_ethernet_address_only() {
        let mut m = LinkMessage::default();
        m.header.index = 4;
        m.header.link_layer_type = LinkLayerType::Ether;
        m.attributes = vec![
            LinkAttribute::IfName("eth1".into()),
            LinkAttribute::Address(MAC.to_vec()),
        ];
        let m = match wire(RouteNetlinkMessage::NewLink(m)) {
            RouteNetlinkMessage::NewLink(m) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            link(&m),
            (
                4,
                Link {
                    name: "eth1".into(),
                    mac: Some(MAC)
                }
            )
        );
        let mut lo = m.clone();
        lo.header.link_layer_type = LinkLayerType::Loopback;
        assert_eq!(
            link(&lo).1.mac,
            None,
            "loopback's zero address taken for Ethernet"
        );
    }
}
