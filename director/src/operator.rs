//! `director weight`, `drain` and `undrain`: which real server the operator
//! means, and what each command does to it.
//!
//! Weight and drain are separate, as a drain in ipvsadm terms is a quiescent
//! server (no new connections) that keeps its configured weight for later:
//! `weight` sets the weight a server schedules with and leaves a drain in
//! place (saying so); only `undrain` (or a reload that changes the server's
//! weight) ends a drain.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::model::{Model, RsEntry, VsEntry};

/// What an operator command does to one real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Weight(u16),
    Drain,
    Undrain,
}

/// How many candidates an error lists before "and N more".
const LISTED: usize = 8;

fn listing(items: impl ExactSizeIterator<Item = String>) -> String {
    let n = items.len();
    let mut shown: Vec<String> = items.take(LISTED).collect();
    if n > LISTED {
        shown.push(format!("and {} more", n - LISTED));
    }
    shown.join(", ")
}

/// The indices of the virtual server `vs` (a name or an `IP:PORT`) and of
/// its real server `server` (`IP:PORT`, or `IP` when the virtual server has
/// exactly one real server of that address).
pub fn find(m: &Model, vs: &str, server: &str) -> Result<(usize, usize), String> {
    let i = find_vs(m, vs)?;
    let j = find_rs(&m.vss[i], server)?;
    Ok((i, j))
}

fn find_vs(m: &Model, vs: &str) -> Result<usize, String> {
    let live = || m.vss.iter().enumerate().filter(|(_, e)| !e.removed);
    if let Some((i, _)) = live().find(|(_, e)| e.cfg.name == vs) {
        return Ok(i);
    }
    let by_address: Vec<usize> = match vs.parse::<SocketAddr>() {
        Ok(a) => live()
            .filter(|(_, e)| e.cfg.address == a)
            .map(|(i, _)| i)
            .collect(),
        Err(_) => Vec::new(),
    };
    match by_address[..] {
        [i] => Ok(i),
        [] => {
            let known: Vec<&VsEntry> = live().map(|(_, e)| e).collect();
            if known.is_empty() {
                return Err(format!(
                    "no virtual server {vs}: this director has no virtual servers"
                ));
            }
            let names = known
                .iter()
                .map(|e| format!("{} ({} {})", e.cfg.name, e.cfg.protocol, e.cfg.address));
            Err(format!(
                "no virtual server {vs} (name or IP:PORT); there are: {}",
                listing(names)
            ))
        }
        _ => {
            let names = by_address.iter().map(|&i| {
                let e = &m.vss[i].cfg;
                format!("{} ({})", e.name, e.protocol)
            });
            Err(format!(
                "{vs} is more than one virtual server: {}; give its name",
                listing(names)
            ))
        }
    }
}

fn find_rs(vs: &VsEntry, server: &str) -> Result<usize, String> {
    let matches: Vec<usize> = if let Ok(a) = server.parse::<SocketAddr>() {
        positions(vs, |rs| rs.cfg.address == a)
    } else if let Ok(ip) = server.parse::<IpAddr>() {
        positions(vs, |rs| rs.cfg.address.ip() == ip)
    } else {
        return Err(format!(
            "{server:?} is not a real server address (IP or IP:PORT, [IPv6]:PORT)"
        ));
    };
    let name = format!("virtual server {} ({})", vs.cfg.name, vs.cfg.address);
    let addrs = |js: &[usize]| {
        let v: Vec<String> = js
            .iter()
            .map(|&j| vs.servers[j].cfg.address.to_string())
            .collect();
        listing(v.into_iter())
    };
    match matches[..] {
        [j] => Ok(j),
        [] if vs.servers.is_empty() => Err(format!(
            "no real server {server} in {name}: it has no real servers"
        )),
        [] => {
            let all: Vec<usize> = (0..vs.servers.len()).collect();
            Err(format!(
                "no real server {server} in {name}; it has {}",
                addrs(&all)
            ))
        }
        _ => Err(format!(
            "{server} is more than one real server of {name}: {}; give the port",
            addrs(&matches)
        )),
    }
}

fn positions(vs: &VsEntry, f: impl Fn(&RsEntry) -> bool) -> Vec<usize> {
    vs.servers
        .iter()
        .enumerate()
        .filter(|(_, rs)| f(rs))
        .map(|(j, _)| j)
        .collect()
}

/// Applies `op` to `rs`; the answer says what the server does now.
pub fn apply(rs: &mut RsEntry, op: Op, now: Instant) -> Result<String, String> {
    const REMOVED: &str = "removed from the configuration by a reload";
    let removed = rs.draining_since.is_some();
    match op {
        Op::Weight(_) if removed => Err(format!(
            "{REMOVED}: it drains and takes no weight (add it back to the file and reload)"
        )),
        Op::Weight(w) => {
            rs.weight_override = Some(u32::from(w));
            Ok(if rs.operator_drain.is_some() {
                format!("weight {w}; still draining (no new connections until `director undrain`)")
            } else {
                format!("weight {w}")
            })
        }
        Op::Drain if removed => Ok(format!("already draining ({REMOVED})")),
        Op::Drain if rs.operator_drain.is_some() => Ok("already draining".to_string()),
        Op::Drain => {
            rs.operator_drain = Some(now);
            Ok("draining: no new connections; existing ones until the drain timeout".to_string())
        }
        Op::Undrain if removed => Err(format!(
            "{REMOVED}: add it back to the file and reload to keep it"
        )),
        Op::Undrain if rs.operator_drain.is_none() => Ok("not draining".to_string()),
        Op::Undrain => {
            rs.operator_drain = None;
            rs.operator_drain_done = false;
            let weight = rs.weight_override.unwrap_or(rs.cfg.weight);
            Ok(if rs.is_down() {
                format!(
                    "undrained at weight {weight}; its health check is down, so no new connections until it is up"
                )
            } else {
                format!("undrained: new connections again, weight {weight}")
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::model::Health;

    /// "web" (tcp 192.0.2.10:80) with 10.1.0.11:80, 10.1.0.12:80 and
    /// 10.1.0.12:8080; "dns-tcp" and "dns-udp" on 192.0.2.10:53.
    fn model() -> Model {
        let t = r#"
[director]
interfaces = ["eth0"]
[[virtual_server]]
name = "web"
address = "192.0.2.10:80"
[[virtual_server.real_server]]
address = "10.1.0.11:80"
[[virtual_server.real_server]]
address = "10.1.0.12:80"
[[virtual_server.real_server]]
address = "10.1.0.12:8080"
[[virtual_server]]
name = "dns-tcp"
address = "192.0.2.10:53"
[[virtual_server.real_server]]
address = "10.1.0.21:53"
[[virtual_server]]
name = "dns-udp"
address = "192.0.2.10:53"
protocol = "udp"
[[virtual_server.real_server]]
address = "10.1.0.21:53"
"#;
        let cfg = config::parse(t, "t.toml")
            .unwrap_or_else(|e| panic!("{e}"))
            .config;
        let mut m = Model::new(16, 16);
        m.reconcile(&cfg, Instant::now()).expect("reconcile");
        m
    }

    fn found(m: &Model, vs: &str, server: &str) -> (String, String) {
        let (i, j) = find(m, vs, server).unwrap_or_else(|e| panic!("{vs} {server}: {e}"));
        (
            m.vss[i].cfg.name.clone(),
            m.vss[i].servers[j].cfg.address.to_string(),
        )
    }

    fn error(m: &Model, vs: &str, server: &str) -> String {
        match find(m, vs, server) {
            Ok(at) => panic!("{vs} {server} found {at:?}, expected an error"),
            Err(e) => e,
        }
    }

    #[test]
    fn weight_by_vs_address_and_portless_server_finds_the_server() {
        let m = model();
        assert_eq!(
            found(&m, "192.0.2.10:80", "10.1.0.11"),
            ("web".into(), "10.1.0.11:80".into()),
            "the address form README promises"
        );
        assert_eq!(
            found(&m, "web", "10.1.0.12:8080"),
            ("web".into(), "10.1.0.12:8080".into())
        );
        assert_eq!(
            found(&m, "dns-udp", "10.1.0.21"),
            ("dns-udp".into(), "10.1.0.21:53".into())
        );
    }

    #[test]
    fn weight_portless_server_with_several_ports_lists_them() {
        let e = error(&model(), "192.0.2.10:80", "10.1.0.12");
        assert_eq!(
            e,
            "10.1.0.12 is more than one real server of virtual server web (192.0.2.10:80): \
             10.1.0.12:80, 10.1.0.12:8080; give the port"
        );
    }

    #[test]
    fn weight_unknown_virtual_server_is_named_as_such() {
        let m = model();
        let e = error(&m, "192.0.2.99:80", "10.1.0.11");
        assert!(
            e.starts_with("no virtual server 192.0.2.99:80 (name or IP:PORT); there are: web (tcp 192.0.2.10:80), "),
            "{e}"
        );
        assert!(!e.contains("real server"), "{e}");
        let e = error(&m, "192.0.2.10:53", "10.1.0.21");
        assert_eq!(
            e,
            "192.0.2.10:53 is more than one virtual server: dns-tcp (tcp), dns-udp (udp); give its name"
        );
    }

    #[test]
    fn weight_unknown_real_server_lists_the_servers() {
        let m = model();
        assert_eq!(
            error(&m, "web", "10.1.0.99"),
            "no real server 10.1.0.99 in virtual server web (192.0.2.10:80); \
             it has 10.1.0.11:80, 10.1.0.12:80, 10.1.0.12:8080"
        );
        assert!(error(&m, "web", "srv1").contains("not a real server address"));
    }

    #[test]
    fn weight_does_not_clear_a_drain_and_undrain_takes_it_back() {
        let mut m = model();
        let rs = &mut m.vss[0].servers[0];
        let now = Instant::now();
        apply(rs, Op::Drain, now).expect("drain");
        assert!(rs.is_down(), "drained");
        let said = apply(rs, Op::Weight(3), now).expect("weight");
        assert!(said.contains("still draining"), "{said}");
        assert!(rs.is_down(), "weight leaves the drain in place");
        assert_eq!(
            apply(rs, Op::Drain, now).expect("again"),
            "already draining"
        );
        let said = apply(rs, Op::Undrain, now).expect("undrain");
        assert_eq!(said, "undrained: new connections again, weight 3");
        assert_eq!(rs.effective_weight(), 3);
        assert_eq!(apply(rs, Op::Undrain, now).expect("again"), "not draining");

        rs.health = Health::Down;
        apply(rs, Op::Drain, now).expect("drain");
        let said = apply(rs, Op::Undrain, now).expect("undrain");
        assert!(said.contains("health check is down"), "{said}");
    }

    #[test]
    fn undrain_of_a_server_removed_by_a_reload_is_refused() {
        let mut m = model();
        let rs = &mut m.vss[0].servers[0];
        rs.draining_since = Some(Instant::now());
        let e = apply(rs, Op::Undrain, Instant::now()).expect_err("removed");
        assert!(e.contains("removed from the configuration"), "{e}");
        assert!(apply(rs, Op::Weight(1), Instant::now()).is_err());
        assert!(rs.weight_override.is_none());
    }
}
