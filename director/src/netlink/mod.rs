//! Next hops of real servers, followed through rtnetlink: egress interface,
//! the MAC of the server or of its gateway, and the interface's own MAC, so
//! that the datapath needs no FIB lookup.
//!
//! [`Neighbours::start`] reads every link and neighbour entry once and
//! subscribes to link, neighbour and IPv4/IPv6 route changes. A background
//! task owns both netlink sockets and the [`table`]; it routes each followed
//! address with `RTM_GETROUTE` (the kernel's own lookup, what `ip route get`
//! does), looks it up again when a route covering it or its interface
//! changes, and reports each change of a followed address's next hop.
//!
//! Traffic that XDP forwards never goes through the kernel's neighbour
//! code: nothing confirms the entries, so they go stale, are garbage
//! collected, and then no change would ever be reported. So the entries the
//! followed servers' next hops use are kept as managed entries
//! (`NTF_EXT_MANAGED`, Linux 5.16): the kernel resolves them, probes them
//! again within 5 s of going stale, never collects them, and reports every
//! new MAC it learns (from the peer's gratuitous ARP or unsolicited NA, or
//! from its next ARP request) as `RTM_NEWNEIGH`. Measured on 6.18: with no
//! traffic an entry is confirmed again about every 20-50 s (a plain one goes
//! stale for good); a peer's new MAC is reported within 15 ms of the change
//! when the peer announces it or sends anything, and about 50 s later when
//! it stays silent (the unicast probes of the old MAC fail, then a broadcast
//! finds the new one).
//! Entries the service creates or converts carry the protocol number
//! [`PROTOCOL`]; it removes them when no followed next hop needs them any
//! more (also those a previous run left), and never touches other entries
//! than those: hand-made (static) entries are used as they are.
//!
//! The sockets belong to the network namespace of the thread that first
//! polls [`Neighbours::start`].

mod kernel;
mod parse;
mod table;
mod task;

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use director_common::entries::Hop;
use rtnetlink::MulticastGroup;
use rtnetlink::sys::AsyncSocket as _;
use tokio::sync::{mpsc, oneshot};

use self::kernel::Kernel;
use self::task::Command;
use crate::config::XdpMode;

/// The protocol number (`proto 221` to `ip neigh` and `ip route`) of the
/// neighbour entries and routes a director makes. Unassigned in iproute2's
/// `rt_protos`.
pub const PROTOCOL: u8 = 221;

/// Socket buffer for change messages (the kernel caps it at
/// `net.core.rmem_max`); an overrun makes the service read everything again.
const EVENT_BUFFER: usize = 8 << 20;

/// How long [`Neighbours::lookup`] waits for an unknown neighbour; the
/// kernel gives up on one after about 3 s.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The XDP program running on an interface, as `ip link` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpRunning {
    pub prog_id: u32,
    /// None: offloaded to the NIC, or programs in several modes.
    pub mode: Option<XdpMode>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextHop {
    pub ifname: String,
    pub ifindex: u32,
    /// Where the frame goes: the real server or its gateway.
    pub dst_mac: [u8; 6],
    /// The egress interface's own address.
    pub src_mac: [u8; 6],
}

impl NextHop {
    /// What the datapath needs of it.
    pub fn hop(&self) -> Hop {
        Hop {
            ifindex: self.ifindex,
            dst_mac: self.dst_mac,
            src_mac: self.src_mac,
        }
    }
}

/// A followed address's next hop changed: resolved anew, or why it cannot
/// be (no route, no ARP/ND answer, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HopEvent {
    pub ip: IpAddr,
    pub hop: Result<NextHop, String>,
}

/// A handle on the next-hop service; clones share it. The service stops
/// when every handle is gone.
#[derive(Clone)]
pub struct Neighbours {
    commands: mpsc::UnboundedSender<Command>,
    kernel: Kernel,
}

impl Neighbours {
    /// Opens the sockets, reads links and neighbours, and starts the
    /// service. The receiver gets a [`HopEvent`] for each change of a
    /// followed address's next hop, the first one when it is first known.
    pub async fn start() -> anyhow::Result<(Neighbours, mpsc::UnboundedReceiver<HopEvent>)> {
        let (mut events_conn, _, events) = rtnetlink::new_multicast_connection(&[
            MulticastGroup::Link,
            MulticastGroup::Neigh,
            MulticastGroup::Ipv4Route,
            MulticastGroup::Ipv6Route,
        ])
        .context("subscribing to netlink link, neighbour and route changes")?;
        events_conn
            .socket_mut()
            .socket_mut()
            .set_rx_buf_sz(EVENT_BUFFER)
            .context("sizing the netlink event socket's buffer")?;
        tokio::spawn(events_conn);
        let (conn, handle, _) = rtnetlink::new_connection().context("opening a netlink socket")?;
        tokio::spawn(conn);
        let kernel = Kernel { handle };
        // After subscribing: a change during the dump is not missed.
        let (links, neighs) = kernel.dump().await?;
        let mut table = table::Table::default();
        table.reset(links, neighs);
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (hops, hops_rx) = mpsc::unbounded_channel();
        tokio::spawn(task::run(kernel.clone(), table, events, commands_rx, hops));
        Ok((Neighbours { commands, kernel }, hops_rx))
    }

    /// Follows exactly these addresses from now on (the whole set: it
    /// replaces the previous one).
    pub fn follow(&self, ips: impl IntoIterator<Item = IpAddr>) {
        let _ = self
            .commands
            .send(Command::Follow(ips.into_iter().collect()));
    }

    /// How `ip` is reached now, any address, followed or not. An unknown
    /// neighbour is solicited once and waited for.
    pub async fn lookup(&self, ip: IpAddr) -> anyhow::Result<NextHop> {
        let stopped = || anyhow!("the next-hop service has stopped");
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Lookup(ip, tx))
            .map_err(|_| stopped())?;
        match tokio::time::timeout(LOOKUP_TIMEOUT, rx).await {
            Ok(Ok(r)) => r.map_err(anyhow::Error::msg),
            Ok(Err(_)) => Err(stopped()),
            Err(_) => Err(anyhow!("no next hop for {ip} within {LOOKUP_TIMEOUT:?}")),
        }
    }

    /// Adds (or replaces) the host route of `ip` (/32 or /128, `dev lo`,
    /// protocol [`PROTOCOL`]) to routing table `table`: what a routing
    /// daemon announces for a VIP.
    pub async fn announce(&self, table: u32, ip: IpAddr) -> anyhow::Result<()> {
        self.kernel.announce(table, ip).await
    }

    /// Every host route of protocol [`PROTOCOL`], in any table, as
    /// `(table, address)`.
    pub async fn announced(&self) -> anyhow::Result<Vec<(u32, IpAddr)>> {
        self.kernel.announced().await
    }

    /// The XDP program on interface `name`, if any.
    pub async fn xdp(&self, name: &str) -> anyhow::Result<Option<XdpRunning>> {
        self.kernel.xdp(name).await
    }

    /// Removes the route [`Neighbours::announce`] added (absent is fine).
    pub async fn withdraw(&self, table: u32, ip: IpAddr) -> anyhow::Result<()> {
        self.kernel.withdraw(table, ip).await
    }
}
