//! Announcing VIPs for ECMP (`[director] announce_table`): a host route in
//! that kernel routing table for each VIP address with a virtual server that
//! can take connections, for a routing daemon (bird2, FRR) to export to the
//! routers. director speaks no BGP itself.
//!
//! The policy is [`wanted`]; a task of its own ([`Announcer`]) brings the
//! table to the latest wanted set through netlink, so that the daemon's loop
//! never waits on the kernel and a burst of changes costs one pass. The task
//! starts from what the table holds (a previous run's routes stay until the
//! first wanted set arrives), and the daemon sends none until it is ready
//! and its health checks have had time to find a dead server: a director
//! that has just started is not announced too early. Stopping leaves the
//! routes (the pinned datapath still forwards); `director teardown` removes
//! them.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Config;
use crate::model::Model;
use crate::netlink::Neighbours;

/// How long after a failed route change the task tries again.
const RETRY: Duration = Duration::from_secs(1);

/// The VIP addresses to announce: those of a virtual server (not removed)
/// with at least one server that takes new connections (up, weight above
/// zero, not draining).
pub fn wanted(model: &Model) -> BTreeSet<IpAddr> {
    model
        .vss
        .iter()
        .filter(|vs| !vs.removed)
        .filter(|vs| vs.servers.iter().any(|rs| rs.effective_weight() > 0))
        .map(|vs| vs.cfg.address.ip())
        .collect()
}

/// When the health checks of `cfg` have had time to find a dead server: a
/// failing server is marked down after `fall` probes, one per `interval`,
/// each failing within `timeout`.
pub fn first_round_done(cfg: &Config, started: Instant) -> Instant {
    let slowest = cfg
        .virtual_servers
        .iter()
        .flat_map(|vs| vs.real_servers.iter().filter_map(|rs| vs.check_for(rs)))
        .map(|c| c.interval * c.fall + c.timeout)
        .max()
        .unwrap_or_default();
    started + slowest
}

/// The handle on the announcing task.
pub struct Announcer {
    table: u32,
    wanted: watch::Sender<Option<BTreeSet<IpAddr>>>,
    announced: Arc<Mutex<BTreeSet<IpAddr>>>,
}

impl Announcer {
    /// Starts the task for `table`, from the routes it holds now.
    pub async fn start(table: u32, neighbours: Neighbours) -> anyhow::Result<Announcer> {
        let held: BTreeSet<IpAddr> = neighbours.announced(table).await?.into_iter().collect();
        if !held.is_empty() {
            info!(
                table,
                routes = held.len(),
                "VIP routes of a previous run kept until ready"
            );
        }
        let announced = Arc::new(Mutex::new(held));
        let (tx, rx) = watch::channel(None);
        tokio::spawn(run(table, neighbours, rx, announced.clone()));
        Ok(Announcer {
            table,
            wanted: tx,
            announced,
        })
    }

    /// The table should hold exactly `ips` from now on.
    pub fn set(&self, ips: BTreeSet<IpAddr>) {
        self.wanted.send_if_modified(|w| {
            let changed = w.as_ref() != Some(&ips);
            *w = Some(ips);
            changed
        });
    }

    pub fn table(&self) -> u32 {
        self.table
    }

    /// The routes the table holds now.
    pub fn announced(&self) -> Vec<IpAddr> {
        lock(&self.announced).iter().copied().collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn run(
    table: u32,
    neighbours: Neighbours,
    mut wanted: watch::Receiver<Option<BTreeSet<IpAddr>>>,
    announced: Arc<Mutex<BTreeSet<IpAddr>>>,
) {
    loop {
        let target = wanted.borrow_and_update().clone();
        let mut failed = false;
        if let Some(target) = target {
            let now = lock(&announced).clone();
            for &ip in target.difference(&now) {
                match neighbours.announce(table, ip).await {
                    Ok(()) => {
                        info!(vip = %ip, table, "announced");
                        lock(&announced).insert(ip);
                    }
                    Err(e) => {
                        warn!("{e:#}");
                        failed = true;
                    }
                }
            }
            for &ip in now.difference(&target) {
                match neighbours.withdraw(table, ip).await {
                    Ok(()) => {
                        info!(vip = %ip, table, "withdrawn: no server takes connections");
                        lock(&announced).remove(&ip);
                    }
                    Err(e) => {
                        warn!("{e:#}");
                        failed = true;
                    }
                }
            }
        }
        if failed {
            tokio::time::sleep(RETRY).await;
            continue;
        }
        if wanted.changed().await.is_err() {
            return;
        }
    }
}

/// Removes every route a director put in `table` (`director teardown`).
pub async fn withdraw_all(table: u32) -> anyhow::Result<Vec<IpAddr>> {
    let (neighbours, _) = Neighbours::start().await?;
    let held = neighbours.announced(table).await?;
    for &ip in &held {
        neighbours.withdraw(table, ip).await?;
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config;
    use crate::model::Health;

    const TEXT: &str = r#"[director]
interfaces = ["eth0"]
announce_table = 100

[[virtual_server]]
name = "web"
address = "192.0.2.10:80"
forward = "dr"
  [[virtual_server.real_server]]
  address = "10.1.0.11:80"
  [[virtual_server.real_server]]
  address = "10.1.0.12:80"
  [virtual_server.health_check]
  kind = "tcp"
  interval = "2s"
  timeout = "1s"
  fall = 3

[[virtual_server]]
name = "dns"
address = "192.0.2.10:53"
protocol = "udp"
forward = "dr"
  [[virtual_server.real_server]]
  address = "10.1.0.11:53"

[[virtual_server]]
name = "other"
address = "[2001:db8::20]:80"
forward = "dr"
  [[virtual_server.real_server]]
  address = "[2001:db8:1::11]:80"
"#;

    fn model(text: &str) -> (Config, Model) {
        let cfg = config::parse(text, "t.toml").expect("valid").config;
        let mut m = Model::new(64, 16);
        m.reconcile(&cfg, Instant::now()).expect("reconcile");
        (cfg, m)
    }

    fn ips(v: &[&str]) -> BTreeSet<IpAddr> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn an_address_is_wanted_while_one_of_its_virtual_servers_takes_connections() {
        let (_, mut m) = model(TEXT);
        assert_eq!(wanted(&m), ips(&["192.0.2.10", "2001:db8::20"]));
        // web's servers fail: dns keeps the address announced.
        for rs in &mut m.vss[0].servers {
            rs.health = Health::Down;
        }
        assert_eq!(wanted(&m), ips(&["192.0.2.10", "2001:db8::20"]));
        // dns's one server drains, other's is set to weight 0: nothing is left.
        m.vss[1].servers[0].operator_drain = Some(Instant::now());
        m.vss[2].servers[0].weight_override = Some(0);
        assert_eq!(wanted(&m), BTreeSet::new());
        // A removed virtual server is not announced even while it drains.
        m.vss[1].servers[0].operator_drain = None;
        m.vss[1].removed = true;
        assert_eq!(wanted(&m), BTreeSet::new());
    }

    #[test]
    fn the_first_round_waits_for_the_slowest_check_to_find_a_dead_server() {
        let (cfg, _) = model(TEXT);
        let t0 = Instant::now();
        assert_eq!(
            first_round_done(&cfg, t0),
            t0 + Duration::from_secs(2 * 3 + 1)
        );
        let unchecked = TEXT.replace("  [virtual_server.health_check]\n  kind = \"tcp\"\n  interval = \"2s\"\n  timeout = \"1s\"\n  fall = 3\n", "");
        let (cfg, _) = model(&unchecked);
        assert_eq!(
            first_round_done(&cfg, t0),
            t0,
            "no checks: nothing to wait for"
        );
    }
}
