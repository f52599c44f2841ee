//! Next-hop resolution for real servers: route, egress interface and MAC
//! addresses, so the datapath needs no FIB lookup. Uses iproute2's JSON
//! output (present on every Linux host; netlink semantics, correct in any
//! network namespace, unlike /sys which follows the mount's namespace).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use serde::Deserialize;
use tokio::process::Command;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextHop {
    pub ifname: String,
    pub ifindex: u32,
    /// Where the frame goes: the real server or its gateway.
    pub dst_mac: [u8; 6],
    /// The egress interface's own address.
    pub src_mac: [u8; 6],
}

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

async fn ip_json<T: for<'de> Deserialize<'de>>(args: &[&str]) -> anyhow::Result<Vec<T>> {
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

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

async fn neighbour_mac(hop: IpAddr, dev: &str) -> anyhow::Result<Option<[u8; 6]>> {
    let hop = hop.to_string();
    let entries: Vec<Neigh> = ip_json(&["neigh", "show", "to", &hop, "dev", dev]).await?;
    Ok(entries.into_iter().find_map(|n| {
        let usable = !n.state.iter().any(|s| s == "FAILED" || s == "INCOMPLETE");
        n.lladdr.as_deref().and_then(parse_mac).filter(|_| usable)
    }))
}

/// Resolves how to reach `server`. If the neighbour is unknown, a TCP
/// connection attempt to the server's service port makes the kernel resolve
/// it (the same packet a health check sends), then the table is polled.
pub async fn resolve(server: SocketAddr) -> anyhow::Result<NextHop> {
    let addr = server.ip().to_string();
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
    let hop = route.gateway.unwrap_or(server.ip());
    let mut dst_mac = neighbour_mac(hop, &route.dev).await?;
    if dst_mac.is_none() {
        let _ = tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(server),
        )
        .await;
        for _ in 0..20 {
            dst_mac = neighbour_mac(hop, &route.dev).await?;
            if dst_mac.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let dst_mac = dst_mac.ok_or_else(|| anyhow!("no ARP/ND answer from {hop} on {}", route.dev))?;
    Ok(NextHop {
        ifname: route.dev,
        ifindex: link.ifindex,
        dst_mac,
        src_mac,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_strictly() {
        assert_eq!(
            parse_mac("02:00:5e:10:00:ff"),
            Some([2, 0, 0x5e, 0x10, 0, 0xff])
        );
        assert_eq!(parse_mac("02:00:5e:10:00"), None);
        assert_eq!(parse_mac("02:00:5e:10:00:ff:01"), None);
        assert_eq!(parse_mac("zz:00:5e:10:00:ff"), None);
    }
}
