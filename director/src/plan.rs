//! Turns a configuration into what the datapath maps hold: virtual-server
//! keys and ids, backend ids, and the scheduling rings. Pure, so host tests
//! reach it; `dataplane` writes the result.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use director_common::{
    abi::{
        FAMILY_V4, FAMILY_V6, NAT_SERVER_F_REPLY_ENTRIES, NAT_SERVER_F_SHARED, NatServer,
        SCHED_HASH, SCHED_LC, SCHED_RING, SCHED_WLC, VIP_F_DR, VIP_F_HASH_PORT, VIP_F_MIDFLOW,
        VIP_F_NAT, VIP_F_PERSIST, VipInfo, VipKey, v4_key, wire_port,
    },
    maglev, sh, wrr,
};

use crate::config::{Config, Forward, Scheduler, Timeouts, VirtualServer};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedVip {
    pub name: String,
    pub address: SocketAddr,
    pub key: VipKey,
    pub info: VipInfo,
    pub timeouts: Timeouts,
    pub persistence: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedBackend {
    /// Index into the `BACKENDS` map.
    pub id: u32,
    pub vip_id: u32,
    pub vip_name: String,
    pub address: SocketAddr,
    pub weight: u32,
    pub max_conns: u32,
    pub backup: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// `vips[i].info.vip_id == i`.
    pub vips: Vec<PlannedVip>,
    /// `backends[i].id == i`.
    pub backends: Vec<PlannedBackend>,
    /// All scheduling lists, back to back; each `VipInfo` names its slices.
    pub ring: Vec<u32>,
}

/// Map capacities derived from a plan, with room for the configuration to
/// grow (and for lists to be double-buffered) without reloading the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    pub conntrack_max: u32,
    pub vips: u32,
    pub backends: u32,
    pub ring: u32,
}

pub fn addr_key(ip: IpAddr) -> ([u8; 16], u8) {
    match ip {
        IpAddr::V4(a) => (v4_key(a.octets()), FAMILY_V4),
        IpAddr::V6(a) => (a.octets(), FAMILY_V6),
    }
}

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
        Forward::Dr => VIP_F_DR,
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

/// The key of an address, port and protocol: a virtual server's in `VIPS`,
/// a real server's in `NAT_SERVERS`.
pub fn endpoint_key(a: SocketAddr, proto: u8) -> VipKey {
    let (addr, family) = addr_key(a.ip());
    VipKey {
        addr,
        port: wire_port(a.port()),
        proto,
        family,
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

impl Plan {
    /// `nat_servers` of this plan.
    pub fn nat_servers(&self) -> HashMap<VipKey, NatServer> {
        nat_servers(
            self.vips
                .iter()
                .filter(|v| v.info.flags & VIP_F_NAT != 0)
                .map(|v| {
                    (
                        v.key,
                        v.info.vip_id,
                        self.backends
                            .iter()
                            .filter(move |b| b.vip_id == v.info.vip_id)
                            .map(|b| &b.address),
                    )
                }),
        )
    }

    /// The layout of a fresh start: ids in configuration order, every
    /// server at its configured weight, lists back to back.
    pub fn new(config: &Config) -> Plan {
        let mut plan = Plan::default();
        for (vip_id, vs) in config.virtual_servers.iter().enumerate() {
            let vip_id = vip_id as u32;
            let mut members = Vec::new();
            for rs in &vs.real_servers {
                let id = plan.backends.len() as u32;
                members.push(Member {
                    id,
                    address: rs.address,
                    weight: rs.weight,
                    backup: rs.backup,
                });
                plan.backends.push(PlannedBackend {
                    id,
                    vip_id,
                    vip_name: vs.name.clone(),
                    address: rs.address,
                    weight: rs.weight,
                    max_conns: rs.max_connections,
                    backup: rs.backup,
                });
            }
            let l = lists(vs, &members);
            let info = vip_info(vs, vip_id, plan.ring.len() as u32, &l);
            plan.ring.extend(l.flat());
            plan.vips.push(PlannedVip {
                name: vs.name.clone(),
                address: vs.address,
                key: vip_key(vs),
                info,
                timeouts: vs.timeouts,
                persistence: vs.persistence,
            });
        }
        plan
    }

    pub fn sizes(&self, conntrack_max: u32) -> Sizes {
        let room = |n: usize, min: u32| (n as u32).saturating_mul(2).max(min);
        Sizes {
            conntrack_max,
            vips: room(self.vips.len(), 256),
            backends: room(self.backends.len(), 1024),
            ring: room(self.ring.len(), wrr::MAX_RING as u32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    const TEXT: &str = r#"
[director]
interfaces = ["eth0", "eth1"]

[[virtual_server]]
name = "web"
address = "192.0.2.10:80"
forward = "nat"
  [[virtual_server.real_server]]
  address = "10.1.0.11:8080"
  weight = 3
  [[virtual_server.real_server]]
  address = "10.1.0.12:8080"
  weight = 1

[[virtual_server]]
name = "dns"
address = "192.0.2.11:53"
protocol = "udp"
forward = "dr"
  [[virtual_server.real_server]]
  address = "10.1.0.21:53"
  [[virtual_server.real_server]]
  address = "10.1.0.22:53"
  weight = 0
"#;

    fn plan() -> Plan {
        let loaded = config::parse(TEXT, "t.toml").expect("test config parses");
        Plan::new(&loaded.config)
    }

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

    #[test]
    fn ids_and_rings_follow_the_config() {
        let p = plan();
        assert_eq!(p.vips.len(), 2);
        assert_eq!(p.backends.len(), 4);
        for (i, b) in p.backends.iter().enumerate() {
            assert_eq!(b.id, i as u32);
        }
        let web = &p.vips[0].info;
        assert_eq!(
            (web.vip_id, web.flags, web.sched),
            (0, VIP_F_NAT, SCHED_RING)
        );
        assert_eq!((web.ring_base, web.ring_len), (0, 4));
        assert_eq!(
            &p.ring[0..4],
            &[0, 0, 1, 0],
            "3:1 smooth wrr over backends 0 and 1"
        );
        assert_eq!(
            (web.members_base, web.members_len, web.backup_len),
            (4, 2, 0)
        );
        assert_eq!(&p.ring[4..6], &[0, 1]);
        let dns = &p.vips[1].info;
        assert_eq!((dns.vip_id, dns.flags), (1, VIP_F_DR));
        assert_eq!((dns.ring_base, dns.ring_len), (6, 1));
        assert_eq!(p.ring[6], 2, "weight 0 backend 3 never scheduled");
        assert_eq!((dns.members_base, dns.members_len), (7, 1));
    }

    #[test]
    fn vip_keys_are_in_network_order() {
        let p = plan();
        let k = &p.vips[0].key;
        assert_eq!(&k.addr[..4], &[192, 0, 2, 10]);
        assert_eq!(k.addr[4..], [0u8; 12]);
        assert_eq!(k.port.to_ne_bytes(), [0, 80]);
        assert_eq!((k.proto, k.family), (6, FAMILY_V4));
        assert_eq!(p.vips[1].key.proto, 17);
    }

    #[test]
    fn sizes_leave_room() {
        let s = plan().sizes(1000);
        assert_eq!(s.conntrack_max, 1000);
        assert!(s.vips >= 4 && s.backends >= 8 && s.ring >= 10);
    }

    fn one_vs(extra: &str, servers: &str) -> Plan {
        let text = format!(
            "[director]\ninterfaces = [\"eth0\"]\n[[virtual_server]]\nname = \"v\"\naddress = \"192.0.2.10:80\"\n{extra}\n{servers}"
        );
        let loaded = config::parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        Plan::new(&loaded.config)
    }

    const THREE: &str = "[[virtual_server.real_server]]\naddress = \"10.1.0.11:80\"\nweight = 2\n\
        [[virtual_server.real_server]]\naddress = \"10.1.0.12:80\"\nweight = 1\n\
        [[virtual_server.real_server]]\naddress = \"10.1.0.13:80\"\nweight = 5\nbackup = true\n";

    #[test]
    fn each_scheduler_gets_its_lists() {
        for (sched, kind, ring_len) in [
            ("rr", SCHED_RING, 2),
            ("wrr", SCHED_RING, 3),
            ("sh", SCHED_HASH, sh::DEFAULT_TABLE_SIZE),
            ("mh", SCHED_HASH, 65_537),
            ("lc", SCHED_LC, 0),
            ("wlc", SCHED_WLC, 0),
        ] {
            let p = one_vs(&format!("scheduler = \"{sched}\""), THREE);
            let v = &p.vips[0].info;
            assert_eq!((v.sched, v.ring_len), (kind, ring_len), "{sched}");
            let ring = &p.ring[v.ring_base as usize..(v.ring_base + v.ring_len) as usize];
            assert!(
                !ring.contains(&2),
                "{sched}: the backup is never in the primary ring"
            );
            let members =
                &p.ring[v.members_base as usize..(v.members_base + v.members_len) as usize];
            assert_eq!(members, &[0, 1], "{sched}: members are the primaries");
            let backups = &p.ring[v.backup_base as usize..(v.backup_base + v.backup_len) as usize];
            assert_eq!(backups, &[2], "{sched}: the backup list");
            assert_eq!(
                v.flags & VIP_F_MIDFLOW != 0,
                sched == "mh",
                "{sched}: only mh reschedules mid-flow"
            );
        }
    }

    #[test]
    fn persistence_and_hash_port_flags() {
        let p = one_vs(
            "scheduler = \"sh\"\nhash_source_port = true\npersistence = \"300s\"\npersistence_netmask = 24",
            THREE,
        );
        let v = &p.vips[0].info;
        assert_eq!(
            v.flags & (VIP_F_HASH_PORT | VIP_F_PERSIST),
            VIP_F_HASH_PORT | VIP_F_PERSIST
        );
        assert_eq!((v.persist_timeout_s, v.persist_prefix), (300, 24));
        assert_eq!(p.backends[0].max_conns, 0);
        assert!(p.backends[2].backup);
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
