//! The `[sync]` table.

use std::{collections::HashMap, net::SocketAddr, path::Path};

use super::{BAD_ADDR, Checker, Pos};
use crate::config::{
    raw,
    sync::{DEFAULT_READY_TIMEOUT, SyncConfig, read_key_file},
};

impl Checker<'_> {
    /// `dir` is the configuration file's directory, which a relative
    /// `key_file` is relative to. The key file is read here so that a
    /// configuration whose key would be refused at start is refused by
    /// `director check` and by a reload alike.
    pub(super) fn sync(&mut self, raw: raw::Sync, dir: &Path) -> SyncConfig {
        let listen = self.socket_addr(&raw.listen);
        if raw.peers.get_ref().is_empty() {
            self.error(
                raw.peers.span(),
                "peers must not be empty, expected every other director of the group, e.g. [\"10.9.0.2:8848\"]",
            );
        }
        let mut seen: HashMap<SocketAddr, Pos> = HashMap::new();
        let mut peers = Vec::new();
        for peer in raw.peers.get_ref() {
            let Some(addr) = self.socket_addr(peer) else {
                continue;
            };
            if Some(addr) == listen {
                self.error(
                    peer.span(),
                    format!("peer {addr} is this director's own listen address"),
                );
            } else if let Some(first) = seen.get(&addr) {
                self.error(
                    peer.span(),
                    format!("duplicate peer {addr} (first listed at {first})"),
                );
            } else {
                seen.insert(addr, self.pos(peer.span()));
            }
            peers.push(addr);
        }
        let key_file = dir.join(raw.key_file.get_ref());
        if let Err(why) = read_key_file(&key_file) {
            self.error(raw.key_file.span(), why);
        }
        let ready_timeout = raw
            .ready_timeout
            .as_ref()
            .and_then(|t| self.positive_duration("ready_timeout", t))
            .unwrap_or(DEFAULT_READY_TIMEOUT);
        SyncConfig {
            listen: listen.unwrap_or(BAD_ADDR),
            peers,
            key_file,
            ready_timeout,
        }
    }
}
