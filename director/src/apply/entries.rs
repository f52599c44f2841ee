//! Single connection and persistence entries named by stable identity
//! (virtual server address, port and protocol; real server address and
//! port; client address and port), never by this director's ids, MACs,
//! ifindexes or clock: what state sync installs and removes.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::anyhow;
use director_common::abi::{
    CONN_F_GUESS, CONN_F_NAT, CONN_F_PEER, Conn, NatReply, PROTO_UDP, Persist, PersistKey,
    TOUCH_INTERVAL_NS,
};
use director_common::entries::{Hop, addr_key, endpoint_key, ip_of, socket_addr};
use director_common::{abi::FlowKey, tcp::State};

use super::Reconciler;
use crate::config::{Forward, Protocol};
use crate::dataplane::monotonic_ns;
use crate::maps::{Maps, Table};
use crate::model::VsEntry;

/// A connection as every director names it: client -> virtual server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub protocol: Protocol,
    pub client: SocketAddr,
    pub virtual_server: SocketAddr,
}

/// A connection's state as another director reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncedConn {
    pub id: ConnId,
    pub real_server: SocketAddr,
    pub state: State,
    /// Time since its last packet (a duration: clocks differ between hosts).
    pub idle: Duration,
}

/// A persistence entry: clients of `client_net` (masked to the virtual
/// server's netmask) stick to `real_server`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncedPersist {
    pub protocol: Protocol,
    pub virtual_server: SocketAddr,
    pub client_net: IpAddr,
    pub real_server: SocketAddr,
    pub idle: Duration,
}

impl ConnId {
    fn key(&self) -> FlowKey {
        FlowKey::client_side(self.client, self.virtual_server, self.protocol.as_u8())
    }

    /// The connection a `CONNS` key names.
    pub fn of(key: &FlowKey) -> ConnId {
        ConnId {
            protocol: protocol_of(key.proto),
            client: socket_addr(&key.src, key.family, key.sport),
            virtual_server: socket_addr(&key.dst, key.family, key.dport),
        }
    }
}

fn protocol_of(proto: u8) -> Protocol {
    if proto == PROTO_UDP {
        Protocol::Udp
    } else {
        Protocol::Tcp
    }
}

/// What `install_conn` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Installed {
    Yes,
    /// A connection this datapath created (a SYN or a UDP datagram here) is
    /// not replaced by a peer's report, unless the peer saw it last (see
    /// `keeps_local`).
    KeptLocal,
}

/// A connection this datapath created (a SYN or a UDP datagram here), not
/// a peer's report or a guess for a mid-flow packet: no peer replaces or
/// removes it.
fn made_here(conn: &Conn) -> bool {
    conn.flags & (CONN_F_PEER | CONN_F_GUESS) == 0
}

/// Whether a local entry stays against a peer's record of the same flow
/// (idle for `peer_idle`): one made here does, unless the peer has seen the
/// flow more recently. That is a stale entry: a director restarted with the
/// table it had when it went down, whose client has reused the port since
/// through the peer (the flow the peer forwards is the live one). The slack
/// is the datapath's: a busy entry's time is only touched once a second.
fn keeps_local(local: &Conn, peer_idle: Duration, now_ns: u64) -> bool {
    let peer_seen = now_ns.saturating_sub(peer_idle.as_nanos() as u64);
    made_here(local) && local.last_seen_ns.saturating_add(TOUCH_INTERVAL_NS) >= peer_seen
}

/// Time since `then_ns` (monotonic) at `now_ns`.
fn idle(then_ns: u64, now_ns: u64) -> Duration {
    Duration::from_nanos(now_ns.saturating_sub(then_ns))
}

impl<M: Maps> Reconciler<M> {
    /// The live virtual server at `address` under `protocol`.
    fn vs_at(&self, protocol: Protocol, address: SocketAddr) -> anyhow::Result<&VsEntry> {
        let key = endpoint_key(address, protocol.as_u8());
        self.model
            .vss
            .iter()
            .find(|vs| !vs.removed && vs.key == key)
            .ok_or_else(|| anyhow!("no virtual server {protocol} {address}"))
    }

    /// The backend id of `server` in the virtual server at `address`.
    fn server_id(
        &self,
        protocol: Protocol,
        address: SocketAddr,
        server: SocketAddr,
    ) -> anyhow::Result<(u32, u32, Forward)> {
        let vs = self.vs_at(protocol, address)?;
        let rs = vs
            .servers
            .iter()
            .find(|rs| rs.cfg.address == server)
            .ok_or_else(|| anyhow!("no real server {server} in virtual server {address}"))?;
        Ok((vs.vip_id, rs.id, vs.cfg.forward))
    }

    /// Installs a connection as the datapath would have recorded it here;
    /// `client` is how this director reaches the client (NAT replies leave
    /// through it). A NAT connection to a server whose replies are not found
    /// through its virtual server also gets its reply entry. A local entry
    /// for the same flow stays unless it was a peer's or a mid-flow guess.
    pub fn install_conn(&mut self, c: &SyncedConn, client: &Hop) -> anyhow::Result<Installed> {
        let (vip_id, backend_id, forward) =
            self.server_id(c.id.protocol, c.id.virtual_server, c.real_server)?;
        let nat = forward == Forward::Nat;
        let key = c.id.key();
        let now = monotonic_ns();
        if self
            .maps
            .conn(Table::Established, &key)
            .is_some_and(|old| keeps_local(&old, c.idle, now))
        {
            return Ok(Installed::KeptLocal);
        }
        let conn = Conn {
            backend_id,
            vip_id,
            state: c.state as u8,
            flags: CONN_F_PEER | if nat { CONN_F_NAT } else { 0 },
            client_ifindex: client.ifindex,
            last_seen_ns: now.saturating_sub(c.idle.as_nanos() as u64),
            client_mac: client.dst_mac,
            local_mac: client.src_mac,
            ..Conn::default()
        };
        if nat {
            let server = endpoint_key(c.real_server, c.id.protocol.as_u8());
            let derived = self
                .nat_servers
                .as_ref()
                .and_then(|m| m.get(&server))
                .is_some_and(|s| s.skips_reply_entry(vip_id));
            let be = self
                .written
                .get(&backend_id)
                .ok_or_else(|| anyhow!("real server {} not written yet", c.real_server))?;
            if !derived {
                let reply_key = key.reply_via(be);
                self.maps.insert_nat_reply(
                    Table::Established,
                    &reply_key,
                    &NatReply::of(&key, &conn),
                )?;
            }
        }
        self.maps.insert_conn(&key, &conn)?;
        Ok(Installed::Yes)
    }

    /// A connection entry as every director names it (the inverse of
    /// `install_conn`), at `now_ns`; none for a server no longer known.
    pub fn synced_conn(&self, key: &FlowKey, conn: &Conn, now_ns: u64) -> Option<SyncedConn> {
        Some(SyncedConn {
            id: ConnId::of(key),
            real_server: self.model.server_addr(conn.backend_id)?,
            state: State::from_u8(conn.state)?,
            idle: idle(conn.last_seen_ns, now_ns),
        })
    }

    /// A persistence entry as every director names it, at `now_ns`.
    pub fn synced_persist(
        &self,
        key: &PersistKey,
        p: &Persist,
        now_ns: u64,
    ) -> Option<SyncedPersist> {
        let vs = self.model.vss.iter().find(|vs| vs.vip_id == key.vip_id)?;
        Some(SyncedPersist {
            protocol: vs.cfg.protocol,
            virtual_server: vs.cfg.address,
            client_net: ip_of(&key.addr, key.family),
            real_server: self.model.server_addr(p.backend_id)?,
            idle: idle(p.last_seen_ns, now_ns),
        })
    }

    /// A connection a peer removed: removed here too (gone already is done
    /// too), unless this datapath made it, as with `install_conn`.
    pub fn remove_synced_conn(&mut self, id: &ConnId) -> Installed {
        if self
            .maps
            .conn(Table::Established, &id.key())
            .is_some_and(|c| made_here(&c))
        {
            return Installed::KeptLocal;
        }
        self.remove_conn(Table::Established, id);
        Installed::Yes
    }

    /// Removes a connection of table `t` and its reply entry, if present.
    pub fn remove_conn(&mut self, t: Table, id: &ConnId) {
        let key = id.key();
        let Some(conn) = self.maps.conn(t, &key) else {
            return;
        };
        let reply = self
            .written
            .get(&conn.backend_id)
            .filter(|_| conn.flags & CONN_F_NAT != 0)
            .map(|be| key.reply_via(be));
        self.maps.remove_conn(t, &key, reply.as_ref());
    }

    fn persist_key(
        &self,
        protocol: Protocol,
        address: SocketAddr,
        client: IpAddr,
    ) -> anyhow::Result<PersistKey> {
        let vs = self.vs_at(protocol, address)?;
        let (addr, family) = addr_key(client);
        let prefix = vs.cfg.persistence_prefix();
        Ok(PersistKey::of(&addr, family, prefix, vs.vip_id))
    }

    pub fn install_persist(&mut self, p: &SyncedPersist) -> anyhow::Result<()> {
        let (_, backend_id, _) = self.server_id(p.protocol, p.virtual_server, p.real_server)?;
        let key = self.persist_key(p.protocol, p.virtual_server, p.client_net)?;
        let value = Persist {
            backend_id,
            last_seen_ns: monotonic_ns().saturating_sub(p.idle.as_nanos() as u64),
            ..Persist::default()
        };
        self.maps.set_persist(&key, &value)
    }

    pub fn remove_persist(
        &mut self,
        protocol: Protocol,
        virtual_server: SocketAddr,
        client_net: IpAddr,
    ) -> anyhow::Result<()> {
        let key = self.persist_key(protocol, virtual_server, client_net)?;
        self.maps.remove_persist(&key);
        Ok(())
    }
}
