//! What the kernel told us, kept to answer "how is this address reached":
//! links, neighbour entries, the routes of the followed addresses and the
//! next hops last reported for them. No I/O: the task feeds it what netlink
//! says and carries out what it asks for (route lookups, managed neighbour
//! entries to create or remove). Work is incremental: a change marks only
//! the addresses and entries it touches, so an idle table with thousands of
//! servers costs nothing per neighbour probe.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::{HopEvent, NextHop};

/// A neighbour entry's identity: the interface and the address.
pub type NeighKey = (u32, IpAddr);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    /// `None` for an interface without an Ethernet address.
    pub mac: Option<[u8; 6]>,
}

/// A neighbour entry's state, as far as a next hop cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeighState {
    /// Being resolved (NONE, INCOMPLETE): no answer yet.
    Resolving,
    /// Answered (REACHABLE, STALE, DELAY, PROBE).
    Usable,
    /// No answer (FAILED).
    Failed,
    /// Set by hand (PERMANENT, NOARP): never probed, never ours to manage.
    Static,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neigh {
    pub mac: Option<[u8; 6]>,
    pub state: NeighState,
    /// The kernel keeps it resolved (`NTF_EXT_MANAGED`).
    pub managed: bool,
    /// Made managed by a director (our protocol number on a managed entry).
    pub ours: bool,
}

impl Neigh {
    fn usable_mac(&self) -> Option<[u8; 6]> {
        match self.state {
            NeighState::Usable | NeighState::Static => self.mac,
            NeighState::Resolving | NeighState::Failed => None,
        }
    }
}

/// Where the kernel routes an address: the egress interface and, when not
/// on a local subnet, the gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    pub oif: u32,
    pub gateway: Option<IpAddr>,
}

/// A route lookup's outcome; the error says why there is no usable route.
pub type Route = Result<Path, String>;

fn neigh_key(ip: IpAddr, route: &Route) -> Option<NeighKey> {
    let path = route.as_ref().ok()?;
    Some((path.oif, path.gateway.unwrap_or(ip)))
}

#[derive(Default)]
struct Followed {
    /// `None` until the route lookup answers.
    route: Option<Route>,
    reported: Option<Result<NextHop, String>>,
}

#[derive(Default)]
pub struct Table {
    links: HashMap<u32, Link>,
    neighs: HashMap<NeighKey, Neigh>,
    followed: HashMap<IpAddr, Followed>,
    /// Followed addresses by the neighbour entry their next hop is.
    users: HashMap<NeighKey, HashSet<IpAddr>>,
    /// Entries the kernel would not create, and why.
    refused: HashMap<NeighKey, String>,
    /// Entries made managed: asked once (one that stays unmanaged, replaced by
    /// hand or on a kernel without managed entries, is left so), again only
    /// when gone.
    made: HashSet<NeighKey>,
    /// Followed addresses whose next hop may have changed since [`Table::changes`].
    dirty: HashSet<IpAddr>,
    /// Entries to look at in [`Table::upkeep`].
    check: HashSet<NeighKey>,
    /// Whether a followed set was given: until then no entry is released
    /// (those a previous run left may be needed again).
    following: bool,
}

impl Table {
    /// Replaces links and neighbours with a fresh dump; every followed
    /// address and every entry is looked at again.
    pub fn reset(&mut self, links: HashMap<u32, Link>, neighs: HashMap<NeighKey, Neigh>) {
        self.links = links;
        self.neighs = neighs;
        self.check = self
            .neighs
            .keys()
            .chain(self.users.keys())
            .copied()
            .collect();
        self.dirty = self.followed.keys().copied().collect();
    }

    /// A link appeared, changed (`Some`) or went away (`None`). Returns the
    /// followed addresses to look up again: the routes through it, and the
    /// unrouted ones (a link coming up can give them a route).
    pub fn link(&mut self, ifindex: u32, link: Option<Link>) -> Vec<IpAddr> {
        match link {
            Some(l) => {
                self.links.insert(ifindex, l);
            }
            None => {
                self.links.remove(&ifindex);
                let gone: Vec<NeighKey> = self
                    .neighs
                    .keys()
                    .filter(|k| k.0 == ifindex)
                    .copied()
                    .collect();
                for key in gone {
                    self.neigh(key, None);
                }
            }
        }
        let relookup: Vec<IpAddr> = self
            .followed
            .iter()
            .filter(|(_, f)| match &f.route {
                Some(Ok(p)) => p.oif == ifindex,
                Some(Err(_)) => true,
                None => false,
            })
            .map(|(ip, _)| *ip)
            .collect();
        self.dirty.extend(&relookup);
        relookup
    }

    /// A neighbour entry appeared, changed (`Some`) or went away (`None`).
    pub fn neigh(&mut self, key: NeighKey, neigh: Option<Neigh>) {
        let changed = match neigh {
            Some(n) => self.neighs.insert(key, n.clone()) != Some(n),
            None => {
                self.made.remove(&key);
                self.neighs.remove(&key).is_some()
            }
        };
        if changed {
            self.check.insert(key);
            self.touch_users(key);
        }
    }

    fn touch_users(&mut self, key: NeighKey) {
        if let Some(users) = self.users.get(&key) {
            self.dirty.extend(users);
        }
    }

    /// Follows exactly `ips` from now on. Returns the new ones, whose
    /// routes are to be looked up. Entries the kernel refused are tried
    /// again.
    pub fn follow(&mut self, ips: &HashSet<IpAddr>) -> Vec<IpAddr> {
        self.following = true;
        let dropped: Vec<IpAddr> = self
            .followed
            .keys()
            .filter(|ip| !ips.contains(ip))
            .copied()
            .collect();
        for ip in dropped {
            if let Some(Followed { route: Some(r), .. }) = self.followed.remove(&ip) {
                self.unuse(ip, &r);
            }
            self.dirty.remove(&ip);
        }
        for (key, _) in self.refused.drain() {
            self.check.insert(key);
            if let Some(users) = self.users.get(&key) {
                self.dirty.extend(users);
            }
        }
        let new: Vec<IpAddr> = ips
            .iter()
            .filter(|ip| !self.followed.contains_key(ip))
            .copied()
            .collect();
        for ip in &new {
            self.followed.insert(*ip, Followed::default());
        }
        new
    }

    fn unuse(&mut self, ip: IpAddr, route: &Route) {
        if let Some(key) = neigh_key(ip, route) {
            if let Some(users) = self.users.get_mut(&key) {
                users.remove(&ip);
                if users.is_empty() {
                    self.users.remove(&key);
                }
            }
            self.check.insert(key);
        }
    }

    /// An interface's name for messages (its index if unknown).
    pub fn ifname(&self, ifindex: u32) -> String {
        self.links
            .get(&ifindex)
            .map_or_else(|| format!("interface {ifindex}"), |l| l.name.clone())
    }

    pub fn followed(&self) -> Vec<IpAddr> {
        self.followed.keys().copied().collect()
    }

    /// The route lookup of a followed address answered.
    pub fn route(&mut self, ip: IpAddr, route: Route) {
        let Some(f) = self.followed.get_mut(&ip) else {
            return;
        };
        if f.route.as_ref() == Some(&route) {
            return;
        }
        if let Some(old) = f.route.replace(route.clone()) {
            self.unuse(ip, &old);
        }
        if let Some(key) = neigh_key(ip, &route) {
            self.users.entry(key).or_default().insert(ip);
            self.check.insert(key);
        }
        self.dirty.insert(ip);
    }

    /// Followed addresses of `prefix/len` (same family): a route change
    /// there may change theirs.
    pub fn covered(&self, prefix: IpAddr, len: u8) -> Vec<IpAddr> {
        self.followed
            .keys()
            .filter(|ip| covers(prefix, len, **ip))
            .copied()
            .collect()
    }

    /// How `ip` is reached over `route`; `None` while that is not known yet
    /// (the neighbour is being resolved, the interface not seen yet).
    pub fn resolve(&self, ip: IpAddr, route: &Route) -> Option<Result<NextHop, String>> {
        let path = match route {
            Ok(p) => p,
            Err(e) => return Some(Err(e.clone())),
        };
        let link = self.links.get(&path.oif)?;
        let Some(src_mac) = link.mac else {
            return Some(Err(format!(
                "interface {} has no Ethernet address",
                link.name
            )));
        };
        let hop = path.gateway.unwrap_or(ip);
        let key = (path.oif, hop);
        let dst_mac = match self.neighs.get(&key) {
            Some(n) => match (n.usable_mac(), n.state) {
                (Some(mac), _) => mac,
                (None, NeighState::Failed) => {
                    return Some(Err(format!("no ARP/ND answer from {hop} on {}", link.name)));
                }
                (None, _) => return None,
            },
            None => return self.refused.get(&key).map(|e| Err(e.clone())),
        };
        Some(Ok(NextHop {
            ifname: link.name.clone(),
            ifindex: path.oif,
            dst_mac,
            src_mac,
        }))
    }

    /// The neighbour entry a lookup of `ip` over `route` waits for, when it
    /// has no usable address (absent, being resolved or failed).
    pub fn wanting(&self, ip: IpAddr, route: &Route) -> Option<NeighKey> {
        let key = neigh_key(ip, route)?;
        self.links.get(&key.0)?.mac?;
        match self.neighs.get(&key) {
            Some(n) if n.usable_mac().is_some() => None,
            _ => Some(key),
        }
    }

    /// A resolution of `key` was asked for: it is being resolved until the
    /// kernel says otherwise (a failed entry's old state must not answer).
    pub fn soliciting(&mut self, key: NeighKey) {
        let n = self.neighs.entry(key).or_insert(Neigh {
            mac: None,
            state: NeighState::Resolving,
            managed: false,
            ours: false,
        });
        n.state = NeighState::Resolving;
        self.touch_users(key);
    }

    /// The next hops of followed addresses that changed since the last call.
    /// Unknown ones (being resolved) are not reported.
    pub fn changes(&mut self) -> Vec<HopEvent> {
        let mut events = Vec::new();
        for ip in std::mem::take(&mut self.dirty) {
            let Some(route) = self.followed.get(&ip).and_then(|f| f.route.clone()) else {
                continue;
            };
            let Some(now) = self.resolve(ip, &route) else {
                continue;
            };
            let f = self.followed.get_mut(&ip).expect("followed address");
            if f.reported.as_ref() != Some(&now) {
                f.reported = Some(now.clone());
                events.push(HopEvent { ip, hop: now });
            }
        }
        events
    }

    /// What to do with neighbour entries: the ones to make managed (a next
    /// hop needs them, the kernel does not keep them), and ours that no next
    /// hop needs any more. Hand-made (static) entries are left alone.
    pub fn upkeep(&mut self) -> (Vec<NeighKey>, Vec<NeighKey>) {
        let (mut manage, mut release) = (Vec::new(), Vec::new());
        if !self.following {
            return (manage, release);
        }
        for key in std::mem::take(&mut self.check) {
            let used = self.users.contains_key(&key);
            match self.neighs.get(&key) {
                Some(n) if n.ours && !used => release.push(key),
                Some(n)
                    if n.managed || n.state == NeighState::Static || self.made.contains(&key) => {}
                _ if used && !self.refused.contains_key(&key) => manage.push(key),
                _ => {}
            }
        }
        (manage, release)
    }

    /// `key` was made a managed entry of ours.
    pub fn managed(&mut self, key: NeighKey) {
        self.made.insert(key);
        let n = self.neighs.entry(key).or_insert(Neigh {
            mac: None,
            state: NeighState::Resolving,
            managed: true,
            ours: true,
        });
        n.managed = true;
        n.ours = true;
    }

    /// The kernel would not create `key`: the next hops through it fail
    /// with `why` until the followed set changes.
    pub fn refuse(&mut self, key: NeighKey, why: String) {
        self.refused.insert(key, why);
        self.touch_users(key);
    }
}

/// Whether `prefix/len` contains `ip` (false across families).
pub fn covers(prefix: IpAddr, len: u8, ip: IpAddr) -> bool {
    let (p, a, bits) = match (prefix, ip) {
        (IpAddr::V4(p), IpAddr::V4(a)) => (u32::from(p) as u128, u32::from(a) as u128, 32),
        (IpAddr::V6(p), IpAddr::V6(a)) => (u128::from(p), u128::from(a), 128),
        _ => return false,
    };
    let len = u32::from(len).min(bits);
    if len == 0 {
        return true;
    }
    let shift = bits - len;
    (p >> shift) == (a >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETH0: u32 = 2;
    const ETH1: u32 = 3;
    const OWN: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const OWN1: [u8; 6] = [2, 0, 0, 0, 1, 1];
    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
    const MAC_GW: [u8; 6] = [2, 0, 0, 0, 0, 0x99];

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn neigh(mac: Option<[u8; 6]>, state: NeighState) -> Neigh {
        Neigh {
            mac,
            state,
            managed: false,
            ours: false,
        }
    }

    fn direct(oif: u32) -> Route {
        Ok(Path { oif, gateway: None })
    }

    /// eth0 and eth1 known; `server` followed and routed directly on eth0.
    fn table_with(server: IpAddr) -> Table {
        let mut t = Table::default();
        t.reset(
            HashMap::from([
                (
                    ETH0,
                    Link {
                        name: "eth0".into(),
                        mac: Some(OWN),
                    },
                ),
                (
                    ETH1,
                    Link {
                        name: "eth1".into(),
                        mac: Some(OWN1),
                    },
                ),
            ]),
            HashMap::new(),
        );
        assert_eq!(t.follow(&HashSet::from([server])), vec![server]);
        t.route(server, direct(ETH0));
        t
    }

    fn hop(
        ifname: &str,
        ifindex: u32,
        dst_mac: [u8; 6],
        src_mac: [u8; 6],
    ) -> Result<NextHop, String> {
        Ok(NextHop {
            ifname: ifname.into(),
            ifindex,
            dst_mac,
            src_mac,
        })
    }

    #[test]
    fn a_resolved_neighbour_is_reported_once_and_a_new_mac_again() {
        let s = ip("10.1.0.11");
        let mut t = table_with(s);
        assert!(
            t.changes().is_empty(),
            "reported before the neighbour answered"
        );
        t.neigh((ETH0, s), Some(neigh(None, NeighState::Resolving)));
        assert!(
            t.changes().is_empty(),
            "an INCOMPLETE entry is no answer yet"
        );
        t.neigh((ETH0, s), Some(neigh(Some(MAC_A), NeighState::Usable)));
        assert_eq!(
            t.changes(),
            vec![HopEvent {
                ip: s,
                hop: hop("eth0", ETH0, MAC_A, OWN)
            }]
        );
        t.neigh((ETH0, s), Some(neigh(Some(MAC_A), NeighState::Usable)));
        assert!(t.changes().is_empty(), "same MAC reported twice");
        t.neigh((ETH0, s), Some(neigh(Some(MAC_B), NeighState::Usable)));
        assert_eq!(t.changes()[0].hop, hop("eth0", ETH0, MAC_B, OWN));
    }

    #[test]
    fn failed_entries_and_lost_routes_are_errors_and_recover() {
        let s = ip("10.1.0.11");
        let mut t = table_with(s);
        t.neigh((ETH0, s), Some(neigh(Some(MAC_A), NeighState::Failed)));
        assert_eq!(
            t.changes()[0].hop,
            Err("no ARP/ND answer from 10.1.0.11 on eth0".to_string())
        );
        t.neigh((ETH0, s), Some(neigh(Some(MAC_A), NeighState::Usable)));
        assert_eq!(t.changes()[0].hop, hop("eth0", ETH0, MAC_A, OWN));
        t.route(s, Err("no route to 10.1.0.11".into()));
        assert_eq!(t.changes()[0].hop, Err("no route to 10.1.0.11".into()));
    }

    #[test]
    fn a_gateway_change_moves_the_hop_to_the_new_gateways_mac() {
        let s = ip("10.9.0.5");
        let gw = ip("10.1.0.254");
        let mut t = table_with(s);
        t.neigh((ETH0, s), Some(neigh(Some(MAC_A), NeighState::Usable)));
        t.neigh((ETH1, gw), Some(neigh(Some(MAC_GW), NeighState::Usable)));
        assert_eq!(t.changes()[0].hop, hop("eth0", ETH0, MAC_A, OWN));
        t.route(
            s,
            Ok(Path {
                oif: ETH1,
                gateway: Some(gw),
            }),
        );
        assert_eq!(t.changes()[0].hop, hop("eth1", ETH1, MAC_GW, OWN1));
        // The old entry no longer matters; the gateway's does.
        t.neigh((ETH0, s), Some(neigh(Some(MAC_B), NeighState::Usable)));
        assert!(
            t.changes().is_empty(),
            "a neighbour no route uses was reported"
        );
        t.neigh((ETH1, gw), Some(neigh(Some(MAC_B), NeighState::Usable)));
        assert_eq!(t.changes()[0].hop, hop("eth1", ETH1, MAC_B, OWN1));
    }

    #[test]
    fn every_server_behind_a_gateway_follows_its_mac() {
        let (a, b) = (ip("10.9.0.5"), ip("10.9.0.6"));
        let gw = ip("10.1.0.254");
        let mut t = table_with(a);
        t.follow(&HashSet::from([a, b]));
        let via = Ok(Path {
            oif: ETH0,
            gateway: Some(gw),
        });
        t.route(a, via.clone());
        t.route(b, via);
        t.neigh((ETH0, gw), Some(neigh(Some(MAC_GW), NeighState::Usable)));
        let mut ips: Vec<IpAddr> = t.changes().into_iter().map(|e| e.ip).collect();
        ips.sort();
        assert_eq!(ips, vec![a, b]);
    }

    #[test]
    fn interface_mac_changes_and_removal() {
        let s = ip("10.1.0.11");
        let mut t = table_with(s);
        t.neigh((ETH0, s), Some(neigh(Some(MAC_A), NeighState::Usable)));
        t.changes();
        let relookup = t.link(
            ETH0,
            Some(Link {
                name: "eth0".into(),
                mac: Some(MAC_B),
            }),
        );
        assert_eq!(
            relookup,
            vec![s],
            "routes through a changed link are looked up again"
        );
        assert_eq!(t.changes()[0].hop, hop("eth0", ETH0, MAC_A, MAC_B));
        t.link(
            ETH0,
            Some(Link {
                name: "tun0".into(),
                mac: None,
            }),
        );
        assert_eq!(
            t.changes()[0].hop,
            Err("interface tun0 has no Ethernet address".into())
        );
        t.link(ETH0, None);
        assert!(
            t.changes().is_empty(),
            "an interface that went away: wait for the route lookup"
        );
        assert_eq!(t.resolve(s, &direct(ETH0)), None);
    }

    #[test]
    fn local_and_unrouted_addresses_are_looked_up_again_on_link_changes() {
        let s = ip("10.1.0.11");
        let other = ip("10.1.0.12");
        let mut t = table_with(s);
        t.follow(&HashSet::from([s, other]));
        t.route(other, direct(ETH1));
        t.route(s, Err("no route".into()));
        assert_eq!(t.link(ETH0, None), vec![s]);
        assert_eq!(t.link(ETH1, None).len(), 2);
    }

    #[test]
    fn needed_entries_are_made_managed_and_unneeded_ours_released() {
        let (a, b) = (ip("10.1.0.11"), ip("10.1.0.12"));
        let mut t = table_with(a);
        // a: no entry at all; b: a dynamic one; a static one is left alone.
        t.follow(&HashSet::from([a, b]));
        t.route(b, direct(ETH0));
        t.neigh((ETH0, b), Some(neigh(Some(MAC_B), NeighState::Usable)));
        let c = ip("10.1.0.13");
        t.follow(&HashSet::from([a, b, c]));
        t.route(c, direct(ETH0));
        t.neigh((ETH0, c), Some(neigh(Some(MAC_A), NeighState::Static)));
        let (mut manage, release) = t.upkeep();
        manage.sort();
        assert_eq!(manage, vec![(ETH0, a), (ETH0, b)]);
        assert!(release.is_empty());
        t.managed((ETH0, a));
        t.managed((ETH0, b));
        assert_eq!(t.upkeep(), (vec![], vec![]), "nothing left to do");

        t.follow(&HashSet::from([c]));
        let (manage, mut release) = t.upkeep();
        release.sort();
        assert!(manage.is_empty());
        assert_eq!(release, vec![(ETH0, a), (ETH0, b)]);
        // Someone else's managed entry is not ours to remove.
        t.neigh(
            (ETH1, a),
            Some(Neigh {
                managed: true,
                ..neigh(Some(MAC_A), NeighState::Usable)
            }),
        );
        assert_eq!(t.upkeep(), (vec![], vec![]));
    }

    #[test]
    fn entries_a_previous_run_left_wait_for_the_first_follow() {
        let s = ip("10.1.0.11");
        let mut t = Table::default();
        let ours = Neigh {
            managed: true,
            ours: true,
            ..neigh(Some(MAC_A), NeighState::Usable)
        };
        t.reset(HashMap::new(), HashMap::from([((ETH0, s), ours)]));
        assert_eq!(t.upkeep(), (vec![], vec![]), "released before any follow");
        t.follow(&HashSet::new());
        assert_eq!(t.upkeep(), (vec![], vec![(ETH0, s)]));
    }

    #[test]
    fn an_entry_that_stays_unmanaged_is_asked_once() {
        let s = ip("10.1.0.11");
        let mut t = table_with(s);
        assert_eq!(t.upkeep().0, vec![(ETH0, s)]);
        t.managed((ETH0, s));
        t.neigh((ETH0, s), Some(neigh(Some(MAC_A), NeighState::Usable)));
        assert_eq!(
            t.upkeep(),
            (vec![], vec![]),
            "asked again after the kernel said no"
        );
    }

    #[test]
    fn a_managed_entry_that_vanishes_is_made_again() {
        let s = ip("10.1.0.11");
        let mut t = table_with(s);
        assert_eq!(t.upkeep().0, vec![(ETH0, s)]);
        t.managed((ETH0, s));
        t.neigh((ETH0, s), None);
        assert_eq!(t.upkeep().0, vec![(ETH0, s)]);
    }

    #[test]
    fn a_refused_entry_fails_its_servers_until_the_next_follow() {
        let s = ip("10.1.0.11");
        let mut t = table_with(s);
        t.upkeep();
        t.refuse((ETH0, s), "table full".into());
        assert_eq!(t.changes()[0].hop, Err("table full".into()));
        assert_eq!(t.upkeep(), (vec![], vec![]));
        t.follow(&HashSet::from([s]));
        assert_eq!(t.upkeep().0, vec![(ETH0, s)], "tried again after a follow");
    }

    #[test]
    fn a_lookup_waits_for_an_unusable_neighbour_and_a_solicited_failure_is_pending() {
        let s = ip("10.1.0.11");
        let mut t = table_with(s);
        let r = direct(ETH0);
        assert_eq!(t.wanting(s, &r), Some((ETH0, s)));
        t.neigh((ETH0, s), Some(neigh(None, NeighState::Failed)));
        assert_eq!(t.wanting(s, &r), Some((ETH0, s)));
        t.soliciting((ETH0, s));
        assert_eq!(
            t.resolve(s, &r),
            None,
            "an old failure answered a new solicitation"
        );
        t.neigh((ETH0, s), Some(neigh(Some(MAC_A), NeighState::Usable)));
        assert_eq!(t.wanting(s, &r), None);
        assert_eq!(t.resolve(s, &r), Some(hop("eth0", ETH0, MAC_A, OWN)));
        assert_eq!(t.wanting(s, &Err("no route".into())), None);
    }

    #[test]
    fn unfollowed_addresses_are_not_reported() {
        let s = ip("10.1.0.11");
        let mut t = table_with(s);
        t.follow(&HashSet::new());
        t.neigh((ETH0, s), Some(neigh(Some(MAC_A), NeighState::Usable)));
        assert!(t.changes().is_empty());
        t.route(s, direct(ETH0));
        assert!(t.changes().is_empty());
        assert!(t.followed().is_empty());
    }

    #[test]
    fn prefixes_cover_their_addresses_only() {
        assert!(covers(ip("10.1.0.0"), 24, ip("10.1.0.11")));
        assert!(!covers(ip("10.1.0.0"), 24, ip("10.1.1.11")));
        assert!(covers(ip("0.0.0.0"), 0, ip("203.0.113.7")));
        assert!(covers(ip("10.1.0.11"), 32, ip("10.1.0.11")));
        assert!(!covers(ip("10.1.0.11"), 32, ip("10.1.0.12")));
        assert!(covers(ip("2001:db8:1::"), 64, ip("2001:db8:1::11")));
        assert!(!covers(ip("2001:db8:1::"), 64, ip("2001:db8:2::11")));
        assert!(covers(ip("::"), 0, ip("2001:db8::1")));
        assert!(!covers(ip("::"), 0, ip("10.0.0.1")), "across families");
        let t = table_with(ip("10.1.0.11"));
        assert_eq!(t.covered(ip("10.1.0.0"), 16), vec![ip("10.1.0.11")]);
        assert!(t.covered(ip("2001:db8::"), 32).is_empty());
    }
}
