//! State sync in the daemon: between the datapath and the transport.
//!
//! Out: the datapath's events (`SYNC_EVENTS`) name an entry; its current
//! value is read from the map, named by stable identity (`apply::SyncedConn`,
//! `SyncedPersist`) and published to every peer. A peer's stream asks for the
//! whole table first ([`Inbound::BulkWanted`]): it is walked from the maps.
//! Events the ring had no room for (`SYNC_LOST`) are answered with a walk too.
//!
//! In: a peer's records are installed through the reconciler. A connection
//! needs this director's own next hop toward its client (NAT replies and
//! server pushes leave through it); it is looked up through the next-hop
//! service once per client address and kept for a while, and the records of a
//! client whose hop is being looked up wait, in order. A peer counts as synced
//! for readiness once its bulk transfer is in and nothing of it waits.

mod client_hops;
mod unplaced;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use director_common::abi::{
    EVENT_CONN_GONE, EVENT_CONN_NEW, EVENT_CONN_REFRESH, EVENT_CONN_STATE, EVENT_PERSIST_NEW,
    SyncEvent,
};
use director_common::entries::Hop;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tracing::{info, warn};

use self::client_hops::{ClientHops, Next};
use self::unplaced::{Unplaced, aged};
use crate::apply::{ConnId, Installed, Reconciler, SyncedConn, SyncedPersist};
use crate::config::SyncConfig;
use crate::dataplane::monotonic_ns;
use crate::maps::{Maps, Table};
use crate::netlink::Neighbours;
use crate::ready::Readiness;
use crate::status::{Installs, SyncReport};
use crate::sync::{BulkRequest, Inbound, Record, Transport};

/// What the daemon's loop polls for sync.
pub struct Inputs {
    pub inbound: UnboundedReceiver<Inbound>,
    pub events: UnboundedReceiver<Vec<SyncEvent>>,
    pub hops: UnboundedReceiver<(IpAddr, anyhow::Result<Hop>)>,
}

pub struct Replication {
    transport: Transport,
    neighbours: Neighbours,
    client_hops: ClientHops,
    hops_tx: UnboundedSender<(IpAddr, anyhow::Result<Hop>)>,
    /// Peers whose bulk transfer ended while records of theirs waited.
    synced_later: Vec<SocketAddr>,
    installs: BTreeMap<SocketAddr, Installs>,
    /// Records for a real server not configured here yet.
    unplaced: Unplaced,
    events: u64,
    events_lost: u64,
}

impl Replication {
    /// Starts the transport and turns the datapath's events on.
    pub async fn start(
        cfg: &SyncConfig,
        r: &mut Reconciler,
        neighbours: Neighbours,
    ) -> anyhow::Result<(Replication, Inputs)> {
        let key = cfg.read_key()?;
        let (transport, inbound) = Transport::start(cfg, &key).await?;
        let dp = r.maps_mut();
        let ring = dp
            .take_sync_events()
            .ok_or_else(|| anyhow::anyhow!("the sync event ring is already taken"))?;
        let events = crate::events::spawn(ring)?;
        dp.set_sync(true)?;
        let events_lost = dp.sync_lost()?;
        let (hops_tx, hops) = mpsc::unbounded_channel();
        info!(listen = %cfg.listen, peers = cfg.peers.len(), "state sync on");
        Ok((
            Replication {
                transport,
                neighbours,
                client_hops: ClientHops::default(),
                hops_tx,
                synced_later: Vec::new(),
                installs: cfg
                    .peers
                    .iter()
                    .map(|p| (*p, Installs::default()))
                    .collect(),
                unplaced: Unplaced::default(),
                events: 0,
                events_lost,
            },
            Inputs {
                inbound,
                events,
                hops,
            },
        ))
    }

    pub fn report(&self) -> SyncReport {
        SyncReport {
            transport: self.transport.status(),
            installs: self.installs.clone(),
            events: self.events,
            events_lost: self.events_lost,
            waiting: self.client_hops.waiting(),
            unplaced: self.unplaced.len(),
            unplaced_dropped: self.unplaced.dropped,
        }
    }

    /// Publishes the entries a batch of datapath events names.
    pub fn on_events<M: Maps>(&mut self, r: &Reconciler<M>, batch: &[SyncEvent]) {
        self.events += batch.len() as u64;
        let now = monotonic_ns();
        let records: Vec<Record> = batch.iter().filter_map(|e| record(r, e, now)).collect();
        if !records.is_empty() {
            self.transport.publish(&records);
        }
    }

    /// A peer's stream wants our whole table.
    pub fn on_bulk_wanted<M: Maps>(&self, r: &Reconciler<M>, request: BulkRequest) {
        let table = table(r);
        info!(peer = %request.peer, entries = table.len(), "sync: sending the whole table");
        self.transport.bulk(request, table);
    }

    /// Answers events the datapath could not report with the whole table.
    pub fn check_lost(&mut self, r: &Reconciler) {
        let Ok(lost) = r.maps().sync_lost() else {
            return;
        };
        if lost > self.events_lost {
            warn!(
                events = lost - self.events_lost,
                "sync: the event ring overflowed; sending the whole table again"
            );
            self.events_lost = lost;
            self.transport.publish(&table(r));
        }
    }

    pub fn on_inbound<M: Maps>(
        &mut self,
        r: &mut Reconciler<M>,
        ready: &mut Readiness,
        inbound: Inbound,
    ) -> Option<BulkRequest> {
        match inbound {
            Inbound::Records { peer, records } => {
                for record in records {
                    self.receive(r, peer, record);
                }
            }
            Inbound::BulkWanted(request) => return Some(request),
            Inbound::BulkBegun { peer } => {
                info!(%peer, "sync: receiving the peer's whole table");
                ready.sending(peer);
            }
            Inbound::Synced { peer } if self.client_hops.waiting() == 0 => {
                info!(%peer, "sync: the peer's whole table is in");
                ready.synced(peer);
            }
            Inbound::Synced { peer } => self.synced_later.push(peer),
        }
        None
    }

    /// A client's next hop was looked up: its waiting records go in.
    pub fn on_hop<M: Maps>(
        &mut self,
        r: &mut Reconciler<M>,
        ready: &mut Readiness,
        ip: IpAddr,
        hop: anyhow::Result<Hop>,
    ) {
        let hop = hop
            .inspect_err(|e| warn!(client = %ip, "sync: no next hop toward the client: {e:#}"))
            .ok();
        for (peer, record) in self.client_hops.resolved(ip, hop, Instant::now()) {
            self.install(r, peer, record, hop);
        }
        if self.client_hops.waiting() == 0 {
            for peer in self.synced_later.drain(..) {
                info!(%peer, "sync: the peer's whole table is in");
                ready.synced(peer);
            }
        }
    }

    fn receive<M: Maps>(&mut self, r: &mut Reconciler<M>, peer: SocketAddr, record: Record) {
        match self.client_hops.route(peer, record, Instant::now()) {
            Next::Install(record, hop) => self.install(r, peer, record, hop),
            Next::Wait => {}
            Next::LookUp(client) => {
                let (neighbours, tx) = (self.neighbours.clone(), self.hops_tx.clone());
                tokio::spawn(async move {
                    let hop = neighbours.lookup(client).await.map(|h| h.hop());
                    let _ = tx.send((client, hop));
                });
            }
        }
    }

    fn install<M: Maps>(
        &mut self,
        r: &mut Reconciler<M>,
        peer: SocketAddr,
        record: Record,
        hop: Option<Hop>,
    ) {
        match record {
            Record::Conn(c) => match SyncedConn::try_from(c) {
                Err(_) => self.installs.entry(peer).or_default().unknown_state += 1,
                Ok(c) => self.install_conn(r, peer, c, hop, Instant::now(), Outcome::Arrived),
            },
            Record::ConnGone(g) => {
                let id = ConnId::from(g);
                self.unplaced.forget(&id);
                let removed = r.remove_synced_conn(&id) == Installed::Yes;
                self.count(peer, Ok(removed), Outcome::Arrived);
            }
            Record::Persist(p) => {
                let p = SyncedPersist::from(p);
                self.install_persist(r, peer, p, Instant::now(), Outcome::Arrived);
            }
        }
    }

    fn install_conn<M: Maps>(
        &mut self,
        r: &mut Reconciler<M>,
        peer: SocketAddr,
        c: SyncedConn,
        hop: Option<Hop>,
        since: Instant,
        outcome: Outcome,
    ) {
        let now_idle = SyncedConn {
            idle: aged(c.idle, since, Instant::now()),
            ..c
        };
        let done = r
            .install_conn(&now_idle, &hop.unwrap_or_default())
            .map(|i| i == Installed::Yes);
        match done {
            Err(_) => self.unplaced.park_conn(peer, c, hop, since),
            Ok(_) if hop.is_none() => self.installs.entry(peer).or_default().no_client_hop += 1,
            Ok(_) => {}
        }
        self.count(peer, done, outcome);
    }

    fn install_persist<M: Maps>(
        &mut self,
        r: &mut Reconciler<M>,
        peer: SocketAddr,
        p: SyncedPersist,
        since: Instant,
        outcome: Outcome,
    ) {
        let now_idle = SyncedPersist {
            idle: aged(p.idle, since, Instant::now()),
            ..p
        };
        let done = r.install_persist(&now_idle).map(|_| true);
        if done.is_err() {
            self.unplaced.park_persist(peer, p, since);
        }
        self.count(peer, done, outcome);
    }

    fn count(&mut self, peer: SocketAddr, done: anyhow::Result<bool>, outcome: Outcome) {
        let n = self.installs.entry(peer).or_default();
        match (done, outcome) {
            (Ok(true), Outcome::Arrived) => n.installed += 1,
            (Ok(true), Outcome::Placed) => n.placed_later += 1,
            (Ok(false), _) => n.kept_local += 1,
            (Err(_), Outcome::Arrived) => n.unknown_server += 1,
            (Err(_), Outcome::Placed) => {}
        }
    }

    /// The configuration changed (a reload): the records that waited for a
    /// real server this director did not have go in if it has it now.
    pub fn on_reconfigured<M: Maps>(&mut self, r: &mut Reconciler<M>) {
        let (conns, persists) = self.unplaced.take(Instant::now());
        if conns.is_empty() && persists.is_empty() {
            return;
        }
        let before = self.unplaced.len();
        let tried = conns.len() + persists.len();
        for w in conns {
            let (c, hop) = w.entry;
            self.install_conn(r, w.peer, c, hop, w.since, Outcome::Placed);
        }
        for w in persists {
            self.install_persist(r, w.peer, w.entry, w.since, Outcome::Placed);
        }
        let still = self.unplaced.len() - before;
        info!(
            placed = tried - still,
            waiting = still,
            "sync: peers' records for servers this director did not have"
        );
    }
}

/// Whether a record is installed as it arrives or after waiting for its server.
#[derive(Clone, Copy)]
enum Outcome {
    Arrived,
    Placed,
}

/// The record an event names, read from the maps now; none for an entry
/// gone meanwhile (its removal is an event of its own) or of a server no
/// longer configured.
fn record<M: Maps>(r: &Reconciler<M>, e: &SyncEvent, now_ns: u64) -> Option<Record> {
    match e.kind {
        EVENT_CONN_NEW | EVENT_CONN_STATE | EVENT_CONN_REFRESH => {
            let conn = r.maps().conn(Table::Established, &e.flow)?;
            Some(Record::Conn(r.synced_conn(&e.flow, &conn, now_ns)?.into()))
        }
        EVENT_CONN_GONE => Some(Record::ConnGone(ConnId::of(&e.flow).into())),
        EVENT_PERSIST_NEW => {
            let p = r.maps().persist(&e.persist)?;
            Some(Record::Persist(
                r.synced_persist(&e.persist, &p, now_ns)?.into(),
            ))
        }
        _ => None,
    }
}

/// Every connection and persistence entry, as records.
fn table<M: Maps>(r: &Reconciler<M>) -> Vec<Record> {
    let now = monotonic_ns();
    let conns = r
        .maps()
        .conns(Table::Established)
        .into_iter()
        .filter_map(|(key, conn)| Some(Record::Conn(r.synced_conn(&key, &conn, now)?.into())));
    let persist = r
        .maps()
        .persist_entries()
        .into_iter()
        .filter_map(|(key, p)| Some(Record::Persist(r.synced_persist(&key, &p, now)?.into())));
    conns.chain(persist).collect()
}
