//! The requests the service sends over its request socket: dumps, route
//! lookups, neighbour entries and host routes.

use std::collections::HashMap;
use std::net::IpAddr;

use anyhow::Context as _;
use futures_util::TryStreamExt as _;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::neighbour::{NeighbourFlags, NeighbourState};
use netlink_packet_route::route::{RouteMessage, RouteProtocol, RouteScope};
use rtnetlink::{Handle, RouteMessageBuilder};

use super::parse;
use super::table::{Link, Neigh, NeighKey, Route};
use super::{PROTOCOL, XdpRunning};

/// The loopback interface's index in every network namespace.
const LOOPBACK: u32 = 1;

/// A netlink failure as the kernel's error text when it sent one.
pub fn describe(e: &rtnetlink::Error) -> String {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_string(),
        other => other.to_string(),
    }
}

pub fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.code.map(|c| -c.get()) == Some(errno))
}

fn host_prefix(ip: IpAddr) -> RouteMessageBuilder<IpAddr> {
    let len = if ip.is_ipv4() { 32 } else { 128 };
    RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(ip, len)
        .expect("a host prefix of the address's own family")
}

#[derive(Clone)]
pub struct Kernel {
    pub handle: Handle,
}

impl Kernel {
    /// Every link and every IPv4 and IPv6 neighbour entry.
    pub async fn dump(&self) -> anyhow::Result<(HashMap<u32, Link>, HashMap<NeighKey, Neigh>)> {
        let mut links = HashMap::new();
        let mut dump = self.handle.link().get().execute();
        while let Some(m) = dump.try_next().await.context("dumping links")? {
            let (index, link) = parse::link(&m);
            links.insert(index, link);
        }
        let mut neighs = HashMap::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut dump = self
                .handle
                .neighbours()
                .get()
                .set_address_family(family)
                .execute();
            while let Some(m) = dump.try_next().await.context("dumping neighbours")? {
                neighs.extend(parse::neigh(&m));
            }
        }
        Ok((links, neighs))
    }

    /// The XDP program on interface `name`; none when there is no program
    /// (or no such interface).
    pub async fn xdp(&self, name: &str) -> anyhow::Result<Option<XdpRunning>> {
        let mut answers = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match answers.try_next().await {
            Ok(m) => Ok(m.as_ref().and_then(parse::xdp)),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
            Err(e) => Err(anyhow::anyhow!(
                "reading the XDP state of {name}: {}",
                describe(&e)
            )),
        }
    }

    /// What `ip route get IP` answers (`RTM_GETROUTE`: the kernel's own
    /// lookup, policy rules included).
    pub async fn route(&self, ip: IpAddr) -> Route {
        let mut answers = self.handle.route().get(host_prefix(ip).build()).execute();
        match answers.try_next().await {
            Ok(Some(m)) => parse::path(ip, &m),
            Ok(None) => Err(format!("no route to {ip}")),
            Err(e) => Err(format!("no route to {ip}: {}", describe(&e))),
        }
    }

    /// Creates `key` as a managed entry of ours, or makes an existing
    /// dynamic one managed: the kernel resolves it, keeps it resolved and
    /// reports what it learns.
    pub async fn manage(&self, (ifindex, ip): NeighKey) -> Result<(), rtnetlink::Error> {
        let mut req = self
            .handle
            .neighbours()
            .add(ifindex, ip)
            .state(NeighbourState::None)
            .replace();
        req.message_mut()
            .attributes
            .extend(parse::managed_attributes());
        req.execute().await
    }

    /// Asks the kernel to resolve `key` once (`NTF_USE`), without keeping it.
    pub async fn solicit(&self, (ifindex, ip): NeighKey) -> Result<(), rtnetlink::Error> {
        self.handle
            .neighbours()
            .add(ifindex, ip)
            .state(NeighbourState::None)
            .flags(NeighbourFlags::Use)
            .replace()
            .execute()
            .await
    }

    /// Removes the entry `key` (already gone is fine).
    pub async fn release(&self, (ifindex, ip): NeighKey) -> Result<(), rtnetlink::Error> {
        let mut msg = netlink_packet_route::neighbour::NeighbourMessage::default();
        msg.header.family = if ip.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        msg.header.ifindex = ifindex;
        msg.attributes.push(
            netlink_packet_route::neighbour::NeighbourAttribute::Destination(match ip {
                IpAddr::V4(a) => a.into(),
                IpAddr::V6(a) => a.into(),
            }),
        );
        match self.handle.neighbours().del(msg).execute().await {
            Err(e) if is_errno(&e, libc::ENOENT) => Ok(()),
            r => r,
        }
    }

    fn host_route(table: u32, ip: IpAddr) -> RouteMessage {
        host_prefix(ip)
            .table_id(table)
            .protocol(RouteProtocol::from(PROTOCOL))
            .scope(RouteScope::Link)
            .output_interface(LOOPBACK)
            .build()
    }

    /// `ip route replace IP/32 dev lo table TABLE proto 221` (or /128).
    pub async fn announce(&self, table: u32, ip: IpAddr) -> anyhow::Result<()> {
        self.handle
            .route()
            .add(Self::host_route(table, ip))
            .replace()
            .execute()
            .await
            .map_err(|e| {
                anyhow::anyhow!("adding the route {ip} to table {table}: {}", describe(&e))
            })
    }

    /// Every host route of protocol [`PROTOCOL`] as `(table, address)`: the
    /// routes [`Kernel::announce`] made, in any table, this run's or a
    /// previous one's.
    pub async fn announced(&self) -> anyhow::Result<Vec<(u32, IpAddr)>> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut all = RouteMessage::default();
            all.header.address_family = family;
            let mut dump = self.handle.route().get(all).execute();
            while let Some(m) = dump.try_next().await.context("dumping routes")? {
                out.extend(parse::announced(&m));
            }
        }
        Ok(out)
    }

    /// Removes what [`Kernel::announce`] added; absent already is fine.
    pub async fn withdraw(&self, table: u32, ip: IpAddr) -> anyhow::Result<()> {
        match self
            .handle
            .route()
            .del(Self::host_route(table, ip))
            .execute()
            .await
        {
            Err(e) if !is_errno(&e, libc::ESRCH) => Err(anyhow::anyhow!(
                "removing the route {ip} from table {table}: {}",
                describe(&e)
            )),
            _ => Ok(()),
        }
    }
}
