//! Turns a configuration into what the datapath maps hold: virtual-server
//! keys and ids, backend ids, and the scheduling rings. Pure, so host tests
//! reach it; `dataplane` writes the result.

use std::net::{IpAddr, SocketAddr};

use director_common::{
    abi::{FAMILY_V4, FAMILY_V6, VIP_F_DR, VIP_F_NAT, VipInfo, VipKey, v4_key, wire_port},
    wrr,
};

use crate::config::{Config, Forward};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedVip {
    pub name: String,
    pub address: SocketAddr,
    pub key: VipKey,
    pub info: VipInfo,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedBackend {
    /// Index into the `BACKENDS` map.
    pub id: u32,
    pub vip_name: String,
    pub address: SocketAddr,
    pub weight: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub vips: Vec<PlannedVip>,
    /// `backends[i].id == i`.
    pub backends: Vec<PlannedBackend>,
    /// All rings, back to back; each `VipInfo` names its slice.
    pub ring: Vec<u32>,
}

/// Map capacities derived from a plan, with room for the configuration to
/// grow (and for rings to be double-buffered) without reloading the program.
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

impl Plan {
    pub fn new(config: &Config) -> Plan {
        let mut plan = Plan::default();
        for (vip_id, vs) in config.virtual_servers.iter().enumerate() {
            let first = plan.backends.len() as u32;
            for rs in &vs.real_servers {
                plan.backends.push(PlannedBackend {
                    id: plan.backends.len() as u32,
                    vip_name: vs.name.clone(),
                    address: rs.address,
                    weight: rs.weight,
                });
            }
            let weights: Vec<u32> = vs.real_servers.iter().map(|rs| rs.weight).collect();
            let ring_base = plan.ring.len() as u32;
            let seq = wrr::sequence(&weights, wrr::MAX_RING);
            plan.ring.extend(seq.iter().map(|&i| first + i));
            let (addr, family) = addr_key(vs.address.ip());
            plan.vips.push(PlannedVip {
                name: vs.name.clone(),
                address: vs.address,
                key: VipKey {
                    addr,
                    port: wire_port(vs.address.port()),
                    proto: vs.protocol.as_u8(),
                    family,
                },
                info: VipInfo {
                    vip_id: vip_id as u32,
                    flags: match vs.forward {
                        Forward::Nat => VIP_F_NAT,
                        Forward::Dr => VIP_F_DR,
                    },
                    ring_base,
                    ring_len: seq.len() as u32,
                },
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
    fn ids_and_rings_follow_the_config() {
        let p = plan();
        assert_eq!(p.vips.len(), 2);
        assert_eq!(p.backends.len(), 4);
        for (i, b) in p.backends.iter().enumerate() {
            assert_eq!(b.id, i as u32);
        }
        let web = &p.vips[0].info;
        assert_eq!(
            (web.vip_id, web.flags, web.ring_base, web.ring_len),
            (0, VIP_F_NAT, 0, 4)
        );
        assert_eq!(
            &p.ring[0..4],
            &[0, 0, 1, 0],
            "3:1 smooth wrr over backends 0 and 1"
        );
        let dns = &p.vips[1].info;
        assert_eq!(
            (dns.vip_id, dns.flags, dns.ring_base, dns.ring_len),
            (1, VIP_F_DR, 4, 1)
        );
        assert_eq!(p.ring[4], 2, "weight 0 backend 3 never scheduled");
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
}
