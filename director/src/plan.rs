//! Policy: what a virtual server's entries in the datapath maps hold, as
//! pure functions of its configuration and servers (host-tested; `apply`
//! writes the results).

use std::collections::HashMap;
use std::net::SocketAddr;

use director_common::{
    abi::{
        NAT_SERVER_F_REPLY_ENTRIES, NAT_SERVER_F_SHARED, NatServer, SCHED_HASH, SCHED_LC,
        SCHED_RING, SCHED_WLC, VIP_F_HASH_PORT, VIP_F_MIDFLOW, VIP_F_NAT, VIP_F_PERSIST, VipInfo,
        VipKey,
    },
    entries::{addr_key, endpoint_key},
    maglev, sh, wrr,
};

use crate::config::{Forward, Scheduler, VirtualServer};

/// Identity of a real server for Maglev: FNV-1a over its address and port,
/// fixed by definition (not `std`'s hasher) so that every director, of any
/// build, computes the same table from the same configuration.
pub fn stable_key(addr: SocketAddr) -> u64 {
    let (bytes, family) = addr_key(addr.ip());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes
        .iter()
        .chain(&[family])
        .chain(&addr.port().to_be_bytes())
    {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A real server as scheduling sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: u32,
    pub address: SocketAddr,
    /// Effective weight: 0 when it must take no new connections (weight 0,
    /// failed health check, draining).
    pub weight: u32,
    pub backup: bool,
}

/// The three scheduling lists of a virtual server (see `VipInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lists {
    pub ring: Vec<u32>,
    pub members: Vec<u32>,
    pub backups: Vec<u32>,
}

impl Lists {
    pub fn len(&self) -> usize {
        self.ring.len() + self.members.len() + self.backups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ring, members and backups back to back, as written to `RING`.
    pub fn flat(&self) -> Vec<u32> {
        [&self.ring[..], &self.members, &self.backups].concat()
    }
}

/// Computes a virtual server's lists: policy lives here, the datapath only
/// walks, hashes into or scans what this returns.
pub fn lists(vs: &VirtualServer, servers: &[Member]) -> Lists {
    let primaries: Vec<&Member> = servers.iter().filter(|m| !m.backup).collect();
    let weights: Vec<u32> = primaries.iter().map(|m| m.weight).collect();
    let positions = match vs.scheduler {
        Scheduler::Rr => {
            let equal: Vec<u32> = weights.iter().map(|&w| u32::from(w > 0)).collect();
            wrr::sequence(&equal, wrr::MAX_RING)
        }
        Scheduler::Wrr => wrr::sequence(&weights, wrr::MAX_RING),
        Scheduler::Sh => sh::table(&weights, sh::DEFAULT_TABLE_SIZE),
        Scheduler::Mh => {
            let keyed: Vec<(u64, u32)> = primaries
                .iter()
                .map(|m| (stable_key(m.address), m.weight))
                .collect();
            maglev::table(&keyed, vs.mh_table_size)
        }
        Scheduler::Lc | Scheduler::Wlc => Vec::new(),
    };
    let taking = |backup: bool| -> Vec<u32> {
        servers
            .iter()
            .filter(|m| m.backup == backup && m.weight > 0)
            .map(|m| m.id)
            .collect()
    };
    Lists {
        ring: positions
            .into_iter()
            .map(|i| primaries[i as usize].id)
            .collect(),
        members: taking(false),
        backups: taking(true),
    }
}

pub fn vip_key(vs: &VirtualServer) -> VipKey {
    endpoint_key(vs.address, vs.protocol.as_u8())
}

/// The `VipInfo` of a virtual server whose lists are written at `base`.
pub fn vip_info(vs: &VirtualServer, vip_id: u32, base: u32, lists: &Lists) -> VipInfo {
    let mut flags = match vs.forward {
        Forward::Nat => VIP_F_NAT,
        Forward::Dr => 0,
    };
    if vs.hash_source_port {
        flags |= VIP_F_HASH_PORT;
    }
    if vs.persistence.is_some() {
        flags |= VIP_F_PERSIST;
    }
    if vs.scheduler == Scheduler::Mh {
        flags |= VIP_F_MIDFLOW;
    }
    let sched = match vs.scheduler {
        Scheduler::Rr | Scheduler::Wrr => SCHED_RING,
        Scheduler::Sh | Scheduler::Mh => SCHED_HASH,
        Scheduler::Lc => SCHED_LC,
        Scheduler::Wlc => SCHED_WLC,
    };
    let ring_len = lists.ring.len() as u32;
    let members_len = lists.members.len() as u32;
    VipInfo {
        vip_id,
        flags,
        sched,
        ring_base: base,
        ring_len,
        members_base: base + ring_len,
        members_len,
        backup_base: base + ring_len + members_len,
        backup_len: lists.backups.len() as u32,
        persist_timeout_s: vs
            .persistence
            .map_or(0, |d| d.as_secs().min(u32::MAX as u64) as u32),
        persist_prefix: vs.persistence_prefix(),
        _pad: [0; 7],
    }
}

/// The `NAT_SERVERS` entries of NAT virtual servers, given as (VIP key,
/// vip id, real server addresses): each server with its virtual server, or
/// marked shared when it is in more than one (see `NatServer`).
pub fn nat_servers<'a>(
    vss: impl IntoIterator<Item = (VipKey, u32, impl IntoIterator<Item = &'a SocketAddr>)>,
) -> HashMap<VipKey, NatServer> {
    let mut out: HashMap<VipKey, NatServer> = HashMap::new();
    for (vip, vip_id, servers) in vss {
        for a in servers {
            let key = endpoint_key(*a, vip.proto);
            let entry = NatServer {
                vip: vip.addr,
                vip_port: vip.port,
                flags: 0,
                vip_id,
            };
            out.entry(key)
                .and_modify(|e| {
                    if e.vip_id != vip_id {
                        *e = NatServer {
                            flags: NAT_SERVER_F_SHARED | NAT_SERVER_F_REPLY_ENTRIES,
                            ..NatServer::default()
                        };
                    }
                })
                .or_insert(entry);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use director_common::abi::{FAMILY_V4, v4_key, wire_port};

    #[test]
    fn nat_servers_name_their_virtual_server_unless_shared() {
        let vip = |last: u8| VipKey {
            addr: v4_key([192, 0, 2, last]),
            port: wire_port(80),
            proto: 6,
            family: FAMILY_V4,
        };
        let (a, b): (SocketAddr, SocketAddr) = (
            "10.1.0.11:8080".parse().unwrap(),
            "10.1.0.12:8080".parse().unwrap(),
        );
        let got = nat_servers([(vip(10), 0, [a, b].iter()), (vip(11), 1, [b].iter())]);
        let own = got[&endpoint_key(a, 6)];
        assert_eq!(
            (own.vip, own.vip_port, own.vip_id, own.flags),
            (vip(10).addr, wire_port(80), 0, 0)
        );
        assert!(own.skips_reply_entry(0) && !own.skips_reply_entry(1));
        let shared = got[&endpoint_key(b, 6)];
        assert!(!shared.derives() && !shared.skips_reply_entry(0) && !shared.skips_reply_entry(1));
        // The same server under another protocol is another server.
        assert!(!got.contains_key(&endpoint_key(a, 17)));
    }

    const GOLDEN_KEY: u64 = 3_770_802_566_846_005_819;

    #[test]
    fn maglev_identity_is_the_address_not_the_position() {
        let a: SocketAddr = "10.1.0.11:80".parse().unwrap_or_else(|e| panic!("{e}"));
        let b: SocketAddr = "10.1.0.11:81".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(stable_key(a), stable_key(b));
        // Pinned: peers must compute the same tables from the same config.
        assert_eq!(
            stable_key(a),
            GOLDEN_KEY,
            "stable_key changed: Maglev tables would differ between versions"
        );
    }
}
