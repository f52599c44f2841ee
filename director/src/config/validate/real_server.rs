//! `[[virtual_server.real_server]]`.

use std::{collections::HashMap, net::SocketAddr};

use super::{BAD_ADDR, Checker, Pos};
use crate::config::{Forward, MAX_WEIGHT, RealServer, raw};

impl Checker<'_> {
    pub(super) fn real_server(
        &mut self,
        raw: raw::RealServer,
        vip: Option<SocketAddr>,
        forward: Option<Forward>,
        seen: &mut HashMap<SocketAddr, Pos>,
    ) -> RealServer {
        let address = self.socket_addr(&raw.address);
        if let Some(addr) = address {
            let span = raw.address.span();
            if let Some(first) = seen.get(&addr) {
                self.error(
                    span.clone(),
                    format!("duplicate real server {addr} (first defined at {first})"),
                );
            } else {
                seen.insert(addr, self.pos(span.clone()));
            }
            if let Some(vip) = vip {
                if addr.is_ipv4() != vip.is_ipv4() {
                    self.error(
                        span,
                        format!(
                            "real server address {addr} is {} but the virtual server address {vip} is {}",
                            family(addr),
                            family(vip)
                        ),
                    );
                } else if addr == vip {
                    self.error(
                        span,
                        format!(
                            "real server {addr} is the virtual server's own address: its packets would come back to the director in a loop"
                        ),
                    );
                } else if forward == Some(Forward::Dr) && addr.port() != vip.port() {
                    self.error(
                        span,
                        format!(
                            "forward = \"dr\" requires the real server port ({}) to equal the virtual server port ({})",
                            addr.port(),
                            vip.port()
                        ),
                    );
                }
            }
        }
        let weight = raw
            .weight
            .as_ref()
            .and_then(|w| self.int_in("weight", w, 0, MAX_WEIGHT.into()))
            .map_or(1, |w| w as u32);
        let max_connections = raw
            .max_connections
            .as_ref()
            .and_then(|m| self.int_in("max_connections", m, 0, u32::MAX.into()))
            .map_or(0, |v| v as u32);
        let backup = raw.backup.as_ref().is_some_and(|b| *b.get_ref());
        let health_check = raw.health_check.map(|hc| self.health_check(hc));
        RealServer {
            address: address.unwrap_or(BAD_ADDR),
            weight,
            max_connections,
            backup,
            health_check,
        }
    }
}

fn family(addr: SocketAddr) -> &'static str {
    if addr.is_ipv4() { "IPv4" } else { "IPv6" }
}
