//! Announcing VIPs to the routers through a routing daemon (bird2, FRR):
//! with `[director] announce_table`, each VIP address that has a virtual
//! server with a server able to take connections gets a host route in that
//! table (see [`Neighbours::announce`]), which the routing daemon exports
//! over BGP; the route goes when no virtual server on the address has one.
//!
//! Nothing is announced before the director is ready ([`Readiness`]: a
//! director joining a group holds the group's entries first) and its first
//! round of health checks is done (a VIP whose servers are all dead is not
//! announced for the time their checks take to fail). Until then the
//! routes a previous run left stay: its pinned datapath still forwards.
//! From then on the table holds exactly the VIPs [`wanted`] names, stale
//! routes of a previous run included. Stopping leaves the routes (the
//! datapath keeps forwarding); `director teardown` removes them.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{error, info};

use crate::health::Monitor;
use crate::model::Model;
use crate::netlink::Neighbours;
use crate::ready::Readiness;
use crate::status::AnnounceReport;

/// How soon a failed route change is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// The VIP addresses to announce: those with a virtual server (not removed
/// by a reload) that has a server taking new connections, a backup
/// included (it takes them when the primaries are down).
pub fn wanted(model: &Model) -> BTreeSet<IpAddr> {
    model
        .vss
        .iter()
        .filter(|vs| !vs.removed && vs.servers.iter().any(|rs| rs.effective_weight() > 0))
        .map(|vs| vs.cfg.address.ip())
        .collect()
}

/// The announcement policy; a task of its own makes the routes.
pub struct Announcer {
    table: u32,
    /// Ready and the first round of health checks done (once: later
    /// checks and reloads change what is announced, not whether).
    started: bool,
    /// What the task is to make the table hold; `None` until started.
    wanted: watch::Sender<Option<BTreeSet<IpAddr>>>,
    /// What the table holds (as far as the task's changes went).
    announced: Arc<Mutex<BTreeSet<IpAddr>>>,
}

impl Announcer {
    /// Starts the task that keeps table `table` as [`Announcer::update`]
    /// says. Must be called within a tokio runtime.
    pub fn start(table: u32, neighbours: Neighbours) -> Announcer {
        let (wanted, rx) = watch::channel(None);
        let announced = Arc::new(Mutex::new(BTreeSet::new()));
        tokio::spawn(keep(table, neighbours, rx, Arc::clone(&announced)));
        Announcer {
            table,
            started: false,
            wanted,
            announced,
        }
    }

    /// Brings what is wanted up to date with the model; call after every
    /// change of it and now and then (readiness depends on time).
    pub fn update(&mut self, model: &Model, ready: &Readiness, health: &Monitor, now: Instant) {
        if !self.started {
            self.started = ready.check(now).is_ok() && health.first_round_done();
            if !self.started {
                return;
            }
            info!(table = self.table, "ready: announcing VIPs");
        }
        let want = wanted(model);
        self.wanted.send_if_modified(|w| {
            let changed = w.as_ref() != Some(&want);
            *w = Some(want);
            changed
        });
    }

    pub fn report(&self, ready: &Readiness, health: &Monitor, now: Instant) -> AnnounceReport {
        let waiting = (!self.started).then(|| match ready.check(now) {
            Err(why) => why,
            Ok(_) if !health.first_round_done() => {
                "waiting for the first round of health checks".to_string()
            }
            Ok(_) => "ready, announcing at the next update".to_string(),
        });
        AnnounceReport {
            table: self.table,
            announced: lock(&self.announced).iter().copied().collect(),
            waiting,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keeps `table` holding what `rx` says, from its first value on. The
/// routes already in the table (a previous run's) count as made.
async fn keep(
    table: u32,
    neighbours: Neighbours,
    mut rx: watch::Receiver<Option<BTreeSet<IpAddr>>>,
    announced: Arc<Mutex<BTreeSet<IpAddr>>>,
) {
    let mut have: Option<BTreeSet<IpAddr>> = None;
    let mut failed = false;
    loop {
        let change = if failed {
            tokio::time::timeout(RETRY, rx.changed()).await.ok()
        } else {
            Some(rx.changed().await)
        };
        if matches!(change, Some(Err(_))) {
            return; // The daemon has stopped: the routes stay.
        }
        let Some(want) = rx.borrow_and_update().clone() else {
            continue;
        };
        let current = match &mut have {
            Some(h) => h,
            None => match neighbours.announced().await {
                Ok(routes) => have.insert(
                    routes
                        .into_iter()
                        .filter(|&(t, _)| t == table)
                        .map(|(_, ip)| ip)
                        .collect(),
                ),
                Err(e) => {
                    error!("reading the routes of table {table}: {e:#}");
                    failed = true;
                    continue;
                }
            },
        };
        failed = false;
        for ip in want.difference(&current.clone()) {
            match neighbours.announce(table, *ip).await {
                Ok(()) => {
                    info!(vip = %ip, table, "announced");
                    current.insert(*ip);
                }
                Err(e) => {
                    error!("{e:#}");
                    failed = true;
                }
            }
        }
        for ip in current.clone().difference(&want) {
            match neighbours.withdraw(table, *ip).await {
                Ok(()) => {
                    info!(vip = %ip, table, "withdrawn");
                    current.remove(ip);
                }
                Err(e) => {
                    error!("{e:#}");
                    failed = true;
                }
            }
        }
        lock(&announced).clone_from(current);
    }
}

/// `director teardown`: removes every host route a director made, in any
/// table (teardown has no configuration; the routes of protocol 221 are
/// director's own). Returns them.
pub async fn withdraw_all(neighbours: &Neighbours) -> anyhow::Result<Vec<(u32, IpAddr)>> {
    let routes = neighbours.announced().await?;
    for &(table, ip) in &routes {
        neighbours.withdraw(table, ip).await?;
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::config;
    use crate::model::Health;

    /// Two virtual servers on 192.0.2.10 (ports 80 and 443), one on
    /// 2001:db8::10, each with two real servers.
    fn model() -> Model {
        let mut t = String::from("[director]\ninterfaces = [\"eth0\"]\nannounce_table = 100\n");
        for (name, addr) in [
            ("web", "192.0.2.10:80"),
            ("tls", "192.0.2.10:443"),
            ("web6", "[2001:db8::10]:80"),
        ] {
            t += &format!(
                "[[virtual_server]]\nname = \"{name}\"\naddress = \"{addr}\"\nforward = \"dr\"\n\
                 [virtual_server.health_check]\nkind = \"tcp\"\n"
            );
            let port = addr.rsplit(':').next().unwrap_or("80");
            for i in 1..=2 {
                let rs = if addr.starts_with('[') {
                    format!("[2001:db8:1::{i}]:{port}")
                } else {
                    format!("10.1.0.{i}:{port}")
                };
                t += &format!("[[virtual_server.real_server]]\naddress = \"{rs}\"\n");
            }
        }
        let cfg = config::parse(&t, "t.toml")
            .unwrap_or_else(|e| panic!("{e}"))
            .config;
        let mut m = Model::new(64, 8);
        m.reconcile(&cfg, Instant::now()).expect("reconcile");
        m
    }

    fn ips(list: &[&str]) -> BTreeSet<IpAddr> {
        list.iter()
            .map(|s| s.parse().expect("test address"))
            .collect()
    }

    #[test]
    fn a_vip_is_wanted_while_one_of_its_virtual_servers_has_a_usable_server() {
        let mut m = model();
        assert_eq!(wanted(&m), ips(&["192.0.2.10", "2001:db8::10"]));
        // Port 80's servers: one down, one drained by the operator.
        m.vss[0].servers[0].health = Health::Down;
        m.vss[0].servers[1].operator_drain = Some(Instant::now());
        assert_eq!(
            wanted(&m),
            ips(&["192.0.2.10", "2001:db8::10"]),
            "port 443 still serves 192.0.2.10"
        );
        // Port 443's: one at weight 0, one removed by a reload (draining).
        m.vss[1].servers[0].weight_override = Some(0);
        m.vss[1].servers[1].draining_since = Some(Instant::now());
        assert_eq!(wanted(&m), ips(&["2001:db8::10"]));
        m.vss[0].servers[0].health = Health::Up;
        assert_eq!(
            wanted(&m),
            ips(&["192.0.2.10", "2001:db8::10"]),
            "back when a server recovers"
        );
    }

    #[test]
    fn a_backup_counts_and_a_removed_virtual_server_does_not() {
        let mut m = model();
        m.vss[2].servers[0].health = Health::Down;
        m.vss[2].servers[1].cfg.backup = true;
        assert!(
            wanted(&m).contains(&"2001:db8::10".parse().expect("address")),
            "a backup takes connections when the primaries are down"
        );
        m.vss[2].removed = true;
        assert_eq!(wanted(&m), ips(&["192.0.2.10"]));
    }
}
