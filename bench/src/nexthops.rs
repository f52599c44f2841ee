//! Next hops of many real servers: the netlink service (`director::netlink`: one
//! dump, one `RTM_GETROUTE` per server, then change events) against what director
//! did before it, three `ip -j` processes per server (route get, link show, neigh
//! show), which it also repeated for every server every 5 s.
//!
//! The servers are permanent neighbours (10.200.0.0/16) on a veth of a namespace of
//! the bench's own (`nl-bench-<pid>`, deleted on every exit path); both resolvers run
//! on a thread inside it, as the daemon runs inside the lab's namespace.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use director::netlink::{Neighbours, NextHop};
use director_tests::lab::NetNs;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::process::Command;

use crate::netlab::parse_mac;
use crate::{Scale, progress};

/// `ip -j` resolutions in flight at once in the baseline. (The old daemon started
/// all of them at once; with 10 000 servers that many children exhaust the file
/// descriptors.)
pub const OLD_IN_FLIGHT: usize = 64;
/// How often the old daemon resolved every server again.
pub const OLD_REFRESH: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Serialize)]
pub struct NextHops {
    pub servers: usize,
    /// Every server resolved by `ip -j` processes, [`OLD_IN_FLIGHT`] at once.
    pub ip_json_ms: f64,
    /// CPU time of that (the bench and its children).
    pub ip_json_cpu_ms: f64,
    /// The netlink service started and every server's first next hop reported.
    pub netlink_ms: f64,
    pub netlink_cpu_ms: f64,
}

impl NextHops {
    /// Cores the old daemon spent on its 5-s refresh of every server.
    pub fn old_refresh_cores(&self) -> f64 {
        self.ip_json_cpu_ms / 1e3 / OLD_REFRESH.as_secs_f64()
    }
}

fn server(i: usize) -> Ipv4Addr {
    let n = i as u32 + 2;
    Ipv4Addr::new(10, 200, (n >> 8) as u8, n as u8)
}

fn server_mac(i: usize) -> [u8; 6] {
    let n = i as u32 + 2;
    [2, 0xc8, 0, 0, (n >> 8) as u8, n as u8]
}

pub fn run(scale: &Scale) -> Result<NextHops> {
    let n = scale.next_hop_servers;
    ensure!(n < 65_000, "{n} servers do not fit in 10.200.0.0/16");
    progress(&format!("next hops: {n} servers, ip -j against netlink"));
    let ns = NetNs::create(&format!("nl-bench-{}", std::process::id()))?;
    ns.ip(&[
        "link", "add", "nlb0", "type", "veth", "peer", "name", "nlb1",
    ])?;
    let mut lines = vec![
        "addr add 10.200.0.1/16 dev nlb0".to_owned(),
        "link set nlb0 up".to_owned(),
        "link set nlb1 up".to_owned(),
    ];
    lines.extend((0..n).map(|i| {
        let mac = server_mac(i).map(|b| format!("{b:02x}")).join(":");
        format!(
            "neigh add {} lladdr {mac} dev nlb0 nud permanent",
            server(i)
        )
    }));
    ns.ip_batch(&lines)?;
    let servers: Vec<IpAddr> = (0..n).map(|i| server(i).into()).collect();
    ns.run(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(measure(&servers))
    })
}

async fn measure(servers: &[IpAddr]) -> Result<NextHops> {
    let check = |i: usize, hop: &NextHop| {
        ensure!(
            hop.ifname == "nlb0" && hop.dst_mac == server_mac(i),
            "{} resolved to {hop:?}",
            servers[i]
        );
        Ok(())
    };

    let (t, cpu) = (Instant::now(), cpu_ms());
    let old: Vec<Result<NextHop>> = futures_util::stream::iter(servers)
        .map(|&ip| old::resolve(ip))
        .buffered(OLD_IN_FLIGHT)
        .collect()
        .await;
    let (ip_json_ms, ip_json_cpu_ms) = (ms(t), cpu_ms() - cpu);
    for (i, hop) in old.iter().enumerate() {
        check(i, hop.as_ref().map_err(|e| anyhow!("{e:#}"))?)?;
    }
    progress(&format!(
        "next hops: ip -j {ip_json_ms:.0} ms for {} servers",
        servers.len()
    ));

    let (t, cpu) = (Instant::now(), cpu_ms());
    let (nb, mut events) = Neighbours::start().await?;
    nb.follow(servers.iter().copied());
    let mut hops = HashMap::new();
    while hops.len() < servers.len() {
        let e = tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .context("the netlink service reported nothing for 30 s")?
            .context("the netlink service stopped")?;
        hops.insert(e.ip, e.hop.map_err(|e| anyhow!(e))?);
    }
    let (netlink_ms, netlink_cpu_ms) = (ms(t), cpu_ms() - cpu);
    for (i, ip) in servers.iter().enumerate() {
        check(i, &hops[ip])?;
    }
    progress(&format!(
        "next hops: netlink {netlink_ms:.0} ms for {} servers",
        servers.len()
    ));
    Ok(NextHops {
        servers: servers.len(),
        ip_json_ms,
        ip_json_cpu_ms,
        netlink_ms,
        netlink_cpu_ms,
    })
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// CPU time of this process and its reaped children, ms.
fn cpu_ms() -> f64 {
    let of = |who| {
        // SAFETY: getrusage writes a whole rusage into the pointer it is given.
        let u = unsafe {
            let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
            libc::getrusage(who, u.as_mut_ptr());
            u.assume_init()
        };
        let tv = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
        tv(u.ru_utime) + tv(u.ru_stime)
    };
    of(libc::RUSAGE_SELF) + of(libc::RUSAGE_CHILDREN)
}

/// The baseline: director's resolver before the netlink service, as it was
/// (without its fallback for unknown neighbours, which these permanent
/// entries never take).
mod old {
    use super::*;

    #[derive(Deserialize)]
    struct Route {
        dev: String,
        gateway: Option<IpAddr>,
        #[serde(rename = "type")]
        kind: Option<String>,
    }

    #[derive(Deserialize)]
    struct Link {
        ifindex: u32,
        address: Option<String>,
    }

    #[derive(Deserialize)]
    struct Neigh {
        lladdr: Option<String>,
        #[serde(default)]
        state: Vec<String>,
    }

    async fn ip_json<T: for<'de> Deserialize<'de>>(args: &[&str]) -> Result<Vec<T>> {
        let out = Command::new("ip")
            .arg("-j")
            .args(args)
            .output()
            .await
            .context("running `ip` (iproute2)")?;
        if !out.status.success() {
            bail!(
                "`ip -j {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(Vec::new());
        }
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("parsing `ip -j {}`", args.join(" ")))
    }

    async fn neighbour_mac(hop: IpAddr, dev: &str) -> Result<Option<[u8; 6]>> {
        let hop = hop.to_string();
        let entries: Vec<Neigh> = ip_json(&["neigh", "show", "to", &hop, "dev", dev]).await?;
        Ok(entries.into_iter().find_map(|n| {
            let usable = !n.state.iter().any(|s| s == "FAILED" || s == "INCOMPLETE");
            n.lladdr.as_deref().and_then(parse_mac).filter(|_| usable)
        }))
    }

    pub async fn resolve(server: IpAddr) -> Result<NextHop> {
        let addr = server.to_string();
        let route = ip_json::<Route>(&["route", "get", &addr])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("no route to {addr}"))?;
        if matches!(route.kind.as_deref(), Some("local")) {
            bail!("{addr} is an address of this host, not a real server");
        }
        let link = ip_json::<Link>(&["link", "show", "dev", &route.dev])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("interface {} vanished", route.dev))?;
        let src_mac = link
            .address
            .as_deref()
            .and_then(parse_mac)
            .ok_or_else(|| anyhow!("interface {} has no Ethernet address", route.dev))?;
        let hop = route.gateway.unwrap_or(server);
        let dst_mac = neighbour_mac(hop, &route.dev)
            .await?
            .ok_or_else(|| anyhow!("no ARP/ND answer from {hop} on {}", route.dev))?;
        Ok(NextHop {
            ifname: route.dev,
            ifindex: link.ifindex,
            dst_mac,
            src_mac,
        })
    }
}
