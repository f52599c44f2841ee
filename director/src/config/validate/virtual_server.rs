//! `[[virtual_server]]`: its own keys, and the rules that span its real
//! servers.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use serde_spanned::Spanned;

use super::{BAD_ADDR, Checker, Pos};
use crate::config::{
    DEFAULT_MH_TABLE_SIZE, DEFAULT_TCP_FIN_TIMEOUT, DEFAULT_TCP_TIMEOUT, DEFAULT_UDP_TIMEOUT,
    Forward, MAX_MH_TABLE_SIZE, MAX_NAME_LEN, MAX_REAL_SERVERS, MAX_TIMEOUT, MH_SLOTS_PER_SERVER,
    MIN_MH_TABLE_SIZE, Protocol, RealServer, Scheduler, Timeouts, VirtualServer, raw,
};

impl Checker<'_> {
    pub(super) fn virtual_server(
        &mut self,
        raw: Spanned<raw::VirtualServer>,
        names: &mut HashMap<String, Pos>,
        services: &mut HashMap<(SocketAddr, Protocol), Pos>,
    ) -> VirtualServer {
        let header = raw.span();
        let raw = raw.into_inner();

        let name = raw.name.get_ref().clone();
        if let Err(why) = check_vs_name(&name) {
            self.error(
                raw.name.span(),
                format!("invalid virtual server name {name:?}: {why}"),
            );
        } else if let Some(first) = names.get(&name) {
            self.error(
                raw.name.span(),
                format!("duplicate virtual server name {name:?} (first defined at {first})"),
            );
        } else {
            names.insert(name.clone(), self.pos(raw.name.span()));
        }

        // None: set to a value that could not be read, so the rules that
        // depend on it are not applied to the default.
        let protocol = known(&raw, "protocol", &raw.protocol);
        let address = self.socket_addr(&raw.address);
        if let (Some(addr), Some(protocol)) = (address, protocol) {
            if let Some(first) = services.get(&(addr, protocol)) {
                self.error(
                    raw.address.span(),
                    format!(
                        "duplicate virtual server {addr} {protocol} (first defined at {first})"
                    ),
                );
            } else {
                services.insert((addr, protocol), self.pos(raw.address.span()));
            }
        }

        let scheduler = known(&raw, "scheduler", &raw.scheduler);
        let forward = known(&raw, "forward", &raw.forward);
        if forward == Some(Forward::Nat)
            && let Some(at) = self.announcing
        {
            let span = match &raw.forward {
                Some(f) => f.span(),
                None => raw.name.span(),
            };
            let default = if raw.forward.is_none() {
                " (the default)"
            } else {
                ""
            };
            self.error(
                span,
                format!(
                    "virtual server {name:?} forwards by NAT{default}, which announce_table \
                     (set at {at}) cannot serve: behind ECMP each director gets its own share of \
                     the clients, but the real servers send every reply to their one gateway; \
                     use forward = \"dr\" or remove announce_table"
                ),
            );
        }
        let hash_source_port = raw.hash_source_port.as_ref().is_some_and(|h| *h.get_ref());
        if let Some(h) = &raw.hash_source_port
            && *h.get_ref()
            && let Some(scheduler) = scheduler
            && !matches!(scheduler, Scheduler::Sh | Scheduler::Mh)
        {
            self.error(
                self.key_span(h.span()),
                format!(
                    "hash_source_port applies only to the sh and mh schedulers, not \"{scheduler}\""
                ),
            );
        }

        let persistence = raw
            .persistence
            .as_ref()
            .and_then(|p| self.positive_duration("persistence", p));
        let has_persistence = raw.persistence.is_some() || raw.unreadable.contains(&"persistence");
        let persistence_netmask = raw
            .persistence_netmask
            .as_ref()
            .and_then(|m| self.persistence_netmask(m, false, has_persistence, address));
        let persistence_netmask6 = raw
            .persistence_netmask6
            .as_ref()
            .and_then(|m| self.persistence_netmask(m, true, has_persistence, address));

        let timeouts = Timeouts {
            tcp: self.conn_timeout(
                "tcp_timeout",
                raw.tcp_timeout.as_ref(),
                Protocol::Tcp,
                protocol,
                DEFAULT_TCP_TIMEOUT,
            ),
            tcp_fin: self.conn_timeout(
                "tcp_fin_timeout",
                raw.tcp_fin_timeout.as_ref(),
                Protocol::Tcp,
                protocol,
                DEFAULT_TCP_FIN_TIMEOUT,
            ),
            udp: self.conn_timeout(
                "udp_timeout",
                raw.udp_timeout.as_ref(),
                Protocol::Udp,
                protocol,
                DEFAULT_UDP_TIMEOUT,
            ),
        };

        let mh_table_size = raw.mh_table_size.as_ref().and_then(|m| {
            if let Some(scheduler) = scheduler
                && scheduler != Scheduler::Mh
            {
                self.error(
                    m.span(),
                    format!("mh_table_size applies only to the mh scheduler, not \"{scheduler}\""),
                );
            }
            let v = *m.get_ref();
            let range = i128::from(MIN_MH_TABLE_SIZE)..=i128::from(MAX_MH_TABLE_SIZE);
            if range.contains(&v) && director_common::maglev::is_prime(v as u32) {
                Some(v as u32)
            } else {
                let got = self.literal(m.span()).to_owned();
                self.error(
                    m.span(),
                    format!(
                        "mh_table_size must be a prime between {MIN_MH_TABLE_SIZE} and {MAX_MH_TABLE_SIZE}, got {got}"
                    ),
                );
                None
            }
        });
        let drain_timeout = raw
            .drain_timeout
            .as_ref()
            .and_then(|d| self.duration("drain_timeout", d));
        let health_check = raw.health_check.map(|hc| self.health_check(hc));

        let mut seen: HashMap<SocketAddr, Pos> = HashMap::new();
        let real_servers: Vec<RealServer> = raw
            .real_server
            .into_iter()
            .map(|rs| self.real_server(rs.into_inner(), address, forward, &mut seen))
            .collect();

        // The datapath scans at most MAX_REAL_SERVERS servers per list: the
        // primaries taking new connections, and the backups.
        let primaries = real_servers
            .iter()
            .filter(|rs| !rs.backup && rs.weight > 0)
            .count();
        let backups = real_servers.iter().filter(|rs| rs.backup).count();
        if primaries > MAX_REAL_SERVERS || backups > MAX_REAL_SERVERS {
            self.error(
                header.clone(),
                format!(
                    "too many real servers: at most {MAX_REAL_SERVERS} primaries and {MAX_REAL_SERVERS} backups per virtual server ({name:?} has {primaries} primaries with weight > 0 and {backups} backups)"
                ),
            );
        }

        if let (Some(m), Some(size)) = (&raw.mh_table_size, mh_table_size)
            && scheduler == Some(Scheduler::Mh)
        {
            let min = MH_SLOTS_PER_SERVER as usize * real_servers.len();
            if (size as usize) < min {
                self.error(
                    m.span(),
                    format!(
                        "mh_table_size {size} is too small for {} real servers: it must be at least {MH_SLOTS_PER_SERVER} times the number of real servers ({min})",
                        real_servers.len()
                    ),
                );
            }
        }

        // Backups count: they take new connections when no primary can.
        if real_servers.is_empty() {
            self.warning(
                header,
                format!(
                    "no real server takes new connections: virtual server {name:?} has no real servers"
                ),
            );
        } else if real_servers.iter().all(|rs| rs.weight == 0) {
            self.warning(
                header,
                format!(
                    "no real server takes new connections: every real server of {name:?} has weight 0"
                ),
            );
        }

        VirtualServer {
            name,
            address: address.unwrap_or(BAD_ADDR),
            protocol: protocol.unwrap_or_default(),
            scheduler: scheduler.unwrap_or_default(),
            forward: forward.unwrap_or_default(),
            persistence,
            persistence_netmask,
            persistence_netmask6,
            hash_source_port,
            timeouts,
            mh_table_size: mh_table_size.unwrap_or(DEFAULT_MH_TABLE_SIZE),
            drain_timeout,
            health_check,
            real_servers,
        }
    }

    /// A connection idle timeout: positive and at most [`MAX_TIMEOUT`].
    /// `default` stands in when it is absent or invalid. Set on a virtual
    /// server of the other protocol, it is accepted with a warning.
    fn conn_timeout(
        &mut self,
        key: &str,
        value: Option<&Spanned<String>>,
        applies_to: Protocol,
        protocol: Option<Protocol>,
        default: Duration,
    ) -> Duration {
        let Some(value) = value else {
            return default;
        };
        if let Some(protocol) = protocol
            && protocol != applies_to
        {
            self.warning(
                value.span(),
                format!("{key} has no effect on a {protocol} virtual server"),
            );
        }
        let Some(d) = self.positive_duration(key, value) else {
            return default;
        };
        if d > MAX_TIMEOUT {
            self.error(
                value.span(),
                format!(
                    "{key} must be at most {}h, got {}",
                    MAX_TIMEOUT.as_secs() / 3600,
                    humantime::format_duration(d)
                ),
            );
            return default;
        }
        d
    }

    /// `persistence_netmask` (`v6` false) or `persistence_netmask6`.
    fn persistence_netmask(
        &mut self,
        value: &Spanned<i128>,
        v6: bool,
        has_persistence: bool,
        vip: Option<SocketAddr>,
    ) -> Option<u8> {
        let (key, other, family, max) = if v6 {
            ("persistence_netmask6", "persistence_netmask", "IPv6", 128)
        } else {
            ("persistence_netmask", "persistence_netmask6", "IPv4", 32)
        };
        if !has_persistence {
            self.error(
                value.span(),
                format!("{key} requires persistence to be set"),
            );
        }
        if vip.is_some_and(|vip| vip.is_ipv6() != v6) {
            self.error(
                value.span(),
                format!("{key} applies to {family} virtual servers; use {other}"),
            );
        }
        self.int_in(key, value, 0, max).map(|v| v as u8)
    }
}

/// `[A-Za-z0-9_.-]{1,64}`.
fn check_vs_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "expected 1..={MAX_NAME_LEN} characters from [A-Za-z0-9_.-]"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!("contains {c:?}, expected only [A-Za-z0-9_.-]"));
    }
    Ok(())
}

/// The value of `key`, its default when absent, None when it is set to a
/// value that could not be read.
fn known<T: Copy + Default>(
    raw: &raw::VirtualServer,
    key: &str,
    value: &Option<Spanned<T>>,
) -> Option<T> {
    match value {
        Some(v) => Some(*v.get_ref()),
        None if raw.unreadable.contains(&key) => None,
        None => Some(T::default()),
    }
}
