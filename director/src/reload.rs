//! What a reload changes: the running configuration against the file's,
//! virtual server by virtual server, and the `[director]` and `[sync]`
//! changes that only a restart applies. `director reload` answers with it;
//! `director reload --dry-run` shows it and applies nothing.

use std::fmt::{Display, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::{Config, DirectorSection, HealthCheck, RealServer, SyncConfig, VirtualServer};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The file read.
    pub file: String,
    /// False for a dry run: nothing was applied.
    pub applied: bool,
    /// Virtual servers added, removed or changed, in the file's order
    /// (removed ones last).
    pub virtual_servers: Vec<VsChange>,
    /// Changes a running director does not apply: they wait for a
    /// restart, and the running values stay in effect until then.
    pub restart_needed: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VsChange {
    pub name: String,
    pub change: Change,
    /// One line per setting or real server: "scheduler wrr → mh",
    /// "10.1.0.11:8080 weight 1 → 3", "10.1.0.12:8080 removed (drains)".
    pub details: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    /// Its real servers drain, then it goes.
    Removed,
    Changed,
}

/// Reloads by result, for the metrics (`director_reloads_total{result}`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub ok: u64,
    pub rejected: u64,
    /// Applied, except changes that wait for a restart.
    pub restart_needed: u64,
    /// Unix time of the last reload that applied the file (`ok` or
    /// `restart_needed`).
    pub last_success_unix_s: Option<f64>,
}

impl Results {
    pub fn record<E>(&mut self, result: &Result<Report, E>, now: SystemTime) {
        match result {
            Err(_) => self.rejected += 1,
            Ok(r) => {
                if r.restart_needed.is_empty() {
                    self.ok += 1;
                } else {
                    self.restart_needed += 1;
                }
                self.last_success_unix_s =
                    now.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs_f64());
            }
        }
    }

    /// Reloads that applied the file.
    pub fn applied(&self) -> u64 {
        self.ok + self.restart_needed
    }
}

impl Report {
    /// The running configuration `old` against `new` (read from `file`).
    pub fn diff(old: &Config, new: &Config, applied: bool) -> Report {
        let mut virtual_servers = Vec::new();
        for vs in &new.virtual_servers {
            let change = match old.virtual_servers.iter().find(|o| same_vs(o, vs)) {
                Some(o) if o == vs => continue,
                Some(o) => VsChange {
                    name: vs.name.clone(),
                    change: Change::Changed,
                    details: vs_details(o, vs),
                },
                None => VsChange {
                    name: vs.name.clone(),
                    change: Change::Added,
                    details: added_vs(vs),
                },
            };
            virtual_servers.push(change);
        }
        for vs in &old.virtual_servers {
            if !new.virtual_servers.iter().any(|n| same_vs(vs, n)) {
                virtual_servers.push(VsChange {
                    name: vs.name.clone(),
                    change: Change::Removed,
                    details: vec![format!(
                        "{} {}: its real servers drain",
                        vs.address, vs.protocol
                    )],
                });
            }
        }
        let mut restart_needed = director_changes(&old.director, &new.director);
        restart_needed.extend(sync_changes(old.sync.as_ref(), new.sync.as_ref()));
        Report {
            file: new.path.display().to_string(),
            applied,
            virtual_servers,
            restart_needed,
        }
    }

    /// The configuration to run after applying `new` over the running
    /// `old`: the file's virtual servers, but the running `[director]` and
    /// `[sync]` (which only a restart changes), so that the next reload
    /// still reports those changes as waiting.
    pub fn running(old: &Config, new: Config) -> Config {
        Config {
            director: old.director.clone(),
            sync: old.sync.clone(),
            ..new
        }
    }

    /// What `director reload` prints.
    pub fn render_text(&self) -> String {
        let mut o = String::new();
        let nothing = self.virtual_servers.is_empty() && self.restart_needed.is_empty();
        let _ = match (self.applied, self.restart_needed.is_empty()) {
            (true, true) if nothing => writeln!(o, "reloaded {}: no change", self.file),
            (true, true) => writeln!(o, "reloaded {}:", self.file),
            (true, false) => writeln!(
                o,
                "restart needed: {} applied, except the changes that need a restart:",
                self.file
            ),
            (false, _) if nothing => {
                writeln!(o, "dry run: a reload of {} would change nothing", self.file)
            }
            (false, _) => writeln!(o, "dry run: a reload of {} would change:", self.file),
        };
        let pending = if self.applied {
            "needs a restart (not applied)"
        } else {
            "would need a restart"
        };
        for item in &self.restart_needed {
            let _ = writeln!(o, "{pending}: {item}");
        }
        for vs in &self.virtual_servers {
            let _ = writeln!(o, "{}: {}", vs.name, vs.change.as_str());
            for d in &vs.details {
                let _ = writeln!(o, "  {d}");
            }
        }
        o
    }
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Changed => "changed",
        }
    }
}

/// The model keeps a virtual server across a reload when its name, address
/// and protocol stay; anything else is a new one (the old one drains).
fn same_vs(a: &VirtualServer, b: &VirtualServer) -> bool {
    (&a.name, a.address, a.protocol) == (&b.name, b.address, b.protocol)
}

fn added_vs(vs: &VirtualServer) -> Vec<String> {
    let mut details = vec![format!(
        "{} {}, {}, {}",
        vs.address, vs.protocol, vs.scheduler, vs.forward
    )];
    details.extend(vs.real_servers.iter().map(added_rs));
    details
}

fn added_rs(rs: &RealServer) -> String {
    let backup = if rs.backup { ", backup" } else { "" };
    format!("{} added (weight {}{backup})", rs.address, rs.weight)
}

/// Appends "`name` a → b" to `out` when `a` and `b` differ.
fn field<T: PartialEq>(
    out: &mut Vec<String>,
    name: &str,
    a: &T,
    b: &T,
    show: impl Fn(&T) -> String,
) {
    if a != b {
        out.push(format!("{name} {} → {}", show(a), show(b)));
    }
}

fn plain<T: Display>(v: &T) -> String {
    v.to_string()
}

fn duration(d: &Duration) -> String {
    humantime::format_duration(*d).to_string()
}

fn optional<T>(show: impl Fn(&T) -> String) -> impl Fn(&Option<T>) -> String {
    move |v| v.as_ref().map_or_else(|| "none".to_owned(), &show)
}

fn quoted(s: &String) -> String {
    format!("{s:?}")
}

fn vs_details(a: &VirtualServer, b: &VirtualServer) -> Vec<String> {
    let mut d = Vec::new();
    field(&mut d, "scheduler", &a.scheduler, &b.scheduler, plain);
    field(&mut d, "forward", &a.forward, &b.forward, plain);
    field(
        &mut d,
        "persistence",
        &a.persistence,
        &b.persistence,
        optional(duration),
    );
    field(
        &mut d,
        "persistence_netmask",
        &a.persistence_netmask,
        &b.persistence_netmask,
        optional(plain),
    );
    field(
        &mut d,
        "persistence_netmask6",
        &a.persistence_netmask6,
        &b.persistence_netmask6,
        optional(plain),
    );
    field(
        &mut d,
        "hash_source_port",
        &a.hash_source_port,
        &b.hash_source_port,
        plain,
    );
    field(
        &mut d,
        "tcp_timeout",
        &a.timeouts.tcp,
        &b.timeouts.tcp,
        duration,
    );
    field(
        &mut d,
        "tcp_fin_timeout",
        &a.timeouts.tcp_fin,
        &b.timeouts.tcp_fin,
        duration,
    );
    field(
        &mut d,
        "udp_timeout",
        &a.timeouts.udp,
        &b.timeouts.udp,
        duration,
    );
    field(
        &mut d,
        "mh_table_size",
        &a.mh_table_size,
        &b.mh_table_size,
        plain,
    );
    field(
        &mut d,
        "drain_timeout",
        &a.drain_timeout,
        &b.drain_timeout,
        optional(duration),
    );
    check_details(
        &mut d,
        "health_check",
        a.health_check.as_ref(),
        b.health_check.as_ref(),
    );
    for rs in &b.real_servers {
        match a.real_servers.iter().find(|o| o.address == rs.address) {
            Some(o) => rs_details(&mut d, o, rs),
            None => d.push(added_rs(rs)),
        }
    }
    for rs in &a.real_servers {
        if !b.real_servers.iter().any(|n| n.address == rs.address) {
            d.push(format!("{} removed (drains)", rs.address));
        }
    }
    if d.is_empty() {
        // A setting this list does not know yet: still not silent.
        d.push("other settings changed".to_owned());
    }
    d
}

fn rs_details(d: &mut Vec<String>, a: &RealServer, b: &RealServer) {
    let name = |what: &str| format!("{} {what}", b.address);
    field(d, &name("weight"), &a.weight, &b.weight, plain);
    field(
        d,
        &name("max_connections"),
        &a.max_connections,
        &b.max_connections,
        plain,
    );
    field(d, &name("backup"), &a.backup, &b.backup, plain);
    check_details(
        d,
        &name("health_check"),
        a.health_check.as_ref(),
        b.health_check.as_ref(),
    );
}

fn check_details(
    d: &mut Vec<String>,
    name: &str,
    a: Option<&HealthCheck>,
    b: Option<&HealthCheck>,
) {
    let (a, b) = match (a, b) {
        (None, None) => return,
        (None, Some(b)) => {
            d.push(format!(
                "{name} added ({} every {})",
                b.kind,
                duration(&b.interval)
            ));
            return;
        }
        (Some(_), None) => {
            d.push(format!("{name} removed"));
            return;
        }
        (Some(a), Some(b)) => (a, b),
    };
    let key = |k: &str| format!("{name}.{k}");
    let status = |s: &(u16, u16)| format!("{}-{}", s.0, s.1);
    field(d, &key("kind"), &a.kind, &b.kind, plain);
    field(d, &key("interval"), &a.interval, &b.interval, duration);
    field(d, &key("timeout"), &a.timeout, &b.timeout, duration);
    field(d, &key("rise"), &a.rise, &b.rise, plain);
    field(d, &key("fall"), &a.fall, &b.fall, plain);
    field(d, &key("port"), &a.port, &b.port, optional(plain));
    field(d, &key("path"), &a.path, &b.path, optional(quoted));
    field(
        d,
        &key("expect_status"),
        &a.expect_status,
        &b.expect_status,
        optional(status),
    );
    field(
        d,
        &key("expect_body"),
        &a.expect_body,
        &b.expect_body,
        optional(quoted),
    );
    field(d, &key("host"), &a.host, &b.host, optional(quoted));
    field(d, &key("payload"), &a.payload, &b.payload, optional(quoted));
    field(d, &key("expect"), &a.expect, &b.expect, optional(quoted));
    field(
        d,
        &key("command"),
        &a.command,
        &b.command,
        optional(|c: &Vec<String>| format!("{c:?}")),
    );
    field(d, &key("on_failure"), &a.on_failure, &b.on_failure, plain);
}

fn director_changes(a: &DirectorSection, b: &DirectorSection) -> Vec<String> {
    let mut d = Vec::new();
    field(&mut d, "interfaces", &a.interfaces, &b.interfaces, |i| {
        format!("{i:?}")
    });
    field(&mut d, "xdp_mode", &a.xdp_mode, &b.xdp_mode, plain);
    if a.conntrack_max != b.conntrack_max {
        d.push(format!(
            "conntrack_max {} → {} (the pinned maps keep their capacity: `director teardown`, \
             then start)",
            a.conntrack_max, b.conntrack_max
        ));
    }
    field(
        &mut d,
        "announce_table",
        &a.announce_table,
        &b.announce_table,
        optional(plain),
    );
    d
}

fn sync_changes(a: Option<&SyncConfig>, b: Option<&SyncConfig>) -> Vec<String> {
    let (a, b) = match (a, b) {
        (None, None) => return Vec::new(),
        (None, Some(_)) => return vec!["[sync] added".to_owned()],
        (Some(_), None) => return vec!["[sync] removed".to_owned()],
        (Some(a), Some(b)) => (a, b),
    };
    let mut d = Vec::new();
    field(&mut d, "sync.listen", &a.listen, &b.listen, plain);
    field(&mut d, "sync.peers", &a.peers, &b.peers, |p| {
        format!("{p:?}")
    });
    field(&mut d, "sync.key_file", &a.key_file, &b.key_file, |p| {
        format!("{}", p.display())
    });
    field(
        &mut d,
        "sync.ready_timeout",
        &a.ready_timeout,
        &b.ready_timeout,
        duration,
    );
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    const DIRECTOR: &str = "[director]\ninterfaces = [\"eth0\"]\n";

    fn web(servers: &[(&str, u32)], extra: &str) -> String {
        let mut t = format!(
            "[[virtual_server]]\nname = \"web\"\naddress = \"192.0.2.10:80\"\n{extra}\
             [virtual_server.health_check]\nkind = \"tcp\"\ninterval = \"2s\"\ntimeout = \"300ms\"\n"
        );
        for (a, w) in servers {
            t += &format!("[[virtual_server.real_server]]\naddress = \"{a}\"\nweight = {w}\n");
        }
        t
    }

    fn parse(text: &str) -> Config {
        config::parse(text, "director.toml")
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
            .config
    }

    #[test]
    fn the_reload_answer_says_what_changed_server_by_server() {
        let old = parse(&format!(
            "{DIRECTOR}{}[[virtual_server]]\nname = \"old\"\naddress = \"192.0.2.30:53\"\n\
             protocol = \"udp\"\n[[virtual_server.real_server]]\naddress = \"10.1.0.31:53\"\n",
            web(&[("10.1.0.11:8080", 1), ("10.1.0.12:8080", 1)], "")
        ));
        let new = parse(&format!(
            "{DIRECTOR}{}[[virtual_server]]\nname = \"api\"\naddress = \"192.0.2.20:443\"\n\
             [[virtual_server.real_server]]\naddress = \"10.1.0.21:443\"\nweight = 2\n",
            web(
                &[("10.1.0.11:8080", 3), ("10.1.0.13:8080", 1)],
                "scheduler = \"mh\"\n"
            )
            .replace("interval = \"2s\"", "interval = \"500ms\"")
        ));
        let report = Report::diff(&old, &new, true);
        assert_eq!(
            report.virtual_servers,
            [
                VsChange {
                    name: "web".into(),
                    change: Change::Changed,
                    details: vec![
                        "scheduler wrr → mh".into(),
                        "health_check.interval 2s → 500ms".into(),
                        "10.1.0.11:8080 weight 1 → 3".into(),
                        "10.1.0.13:8080 added (weight 1)".into(),
                        "10.1.0.12:8080 removed (drains)".into(),
                    ],
                },
                VsChange {
                    name: "api".into(),
                    change: Change::Added,
                    details: vec![
                        "192.0.2.20:443 tcp, wrr, nat".into(),
                        "10.1.0.21:443 added (weight 2)".into(),
                    ],
                },
                VsChange {
                    name: "old".into(),
                    change: Change::Removed,
                    details: vec!["192.0.2.30:53 udp: its real servers drain".into()],
                },
            ]
        );
        assert!(report.restart_needed.is_empty(), "{report:?}");
        let text = report.render_text();
        assert!(
            text.starts_with("reloaded director.toml:\nweb: changed\n"),
            "{text}"
        );
        assert!(text.contains("\n  10.1.0.11:8080 weight 1 → 3\n"), "{text}");
    }

    #[test]
    fn an_unchanged_file_reloads_with_no_change() {
        let cfg = parse(&format!("{DIRECTOR}{}", web(&[("10.1.0.11:8080", 1)], "")));
        let report = Report::diff(&cfg, &cfg.clone(), true);
        assert_eq!(report.render_text(), "reloaded director.toml: no change\n");
    }

    #[test]
    fn a_moved_virtual_server_is_a_new_one_and_the_old_one_drains() {
        let vs = web(&[("10.1.0.11:8080", 1)], "");
        let old = parse(&format!("{DIRECTOR}{vs}"));
        let new = parse(&format!(
            "{DIRECTOR}{}",
            vs.replace("192.0.2.10", "192.0.2.11")
        ));
        let report = Report::diff(&old, &new, true);
        let kinds: Vec<(&str, Change)> = report
            .virtual_servers
            .iter()
            .map(|v| (v.name.as_str(), v.change))
            .collect();
        assert_eq!(kinds, [("web", Change::Added), ("web", Change::Removed)]);
    }

    #[test]
    fn a_change_needing_a_restart_is_reported_as_such_not_as_reloaded() {
        let vs = web(&[("10.1.0.11:8080", 1)], "");
        let old = parse(&format!("{DIRECTOR}{vs}"));
        let new = parse(&format!(
            "[director]\ninterfaces = [\"eth0\", \"eth1\"]\nxdp_mode = \"generic\"\n\
             conntrack_max = 2048\n{}",
            vs.replace("weight = 1", "weight = 2")
        ));
        let report = Report::diff(&old, &new, true);
        assert_eq!(
            report.restart_needed,
            [
                r#"interfaces ["eth0"] → ["eth0", "eth1"]"#,
                "xdp_mode native → generic",
                "conntrack_max 1048576 → 2048 (the pinned maps keep their capacity: \
                 `director teardown`, then start)",
            ]
        );
        let text = report.render_text();
        assert!(!text.contains("reloaded"), "{text}");
        assert!(
            text.starts_with(
                "restart needed: director.toml applied, except the changes that need a restart:\n\
                 needs a restart (not applied): interfaces"
            ),
            "{text}"
        );
        assert!(
            text.contains("\nweb: changed\n  10.1.0.11:8080 weight 1 → 2\n"),
            "{text}"
        );
        // What runs keeps the running [director] section: the next reload
        // of the same file still says a restart is needed.
        let running = Report::running(&old, new.clone());
        assert_eq!(running.director, old.director);
        assert_eq!(running.virtual_servers, new.virtual_servers);
        let again = Report::diff(&running, &new, true);
        assert_eq!(again.restart_needed, report.restart_needed);
        assert!(again.virtual_servers.is_empty(), "{again:?}");
    }

    #[test]
    fn results_count_each_outcome_and_the_last_success() {
        let mut r = Results::default();
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        let restart = Report {
            restart_needed: vec!["xdp_mode native → generic".into()],
            ..Report::default()
        };
        r.record(&Ok::<_, ()>(Report::default()), at(10));
        r.record(&Ok::<_, ()>(restart), at(20));
        r.record(&Err::<Report, _>(()), at(30));
        assert_eq!(
            r,
            Results {
                ok: 1,
                rejected: 1,
                restart_needed: 1,
                last_success_unix_s: Some(20.0),
            }
        );
        assert_eq!(r.applied(), 2);
    }

    #[test]
    fn a_dry_run_says_what_a_reload_would_change() {
        let old = parse(&format!("{DIRECTOR}{}", web(&[("10.1.0.11:8080", 1)], "")));
        let new = parse(&format!(
            "[director]\ninterfaces = [\"eth0\"]\nxdp_mode = \"generic\"\n{}",
            web(&[("10.1.0.11:8080", 1), ("10.1.0.12:8080", 4)], "")
        ));
        assert_eq!(
            Report::diff(&old, &new, false).render_text(),
            "dry run: a reload of director.toml would change:\n\
             would need a restart: xdp_mode native → generic\n\
             web: changed\n  10.1.0.12:8080 added (weight 4)\n"
        );
        assert_eq!(
            Report::diff(&old, &old.clone(), false).render_text(),
            "dry run: a reload of director.toml would change nothing\n"
        );
    }
}
