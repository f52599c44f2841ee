//! The background task: owns the table, applies the kernel's change
//! messages as they come and the handle's commands, and after each burst
//! carries out what the table asks for and reports what changed.

use std::collections::HashSet;
use std::net::IpAddr;

use futures_util::stream::{self, Stream};
use futures_util::{FutureExt as _, StreamExt as _};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::sys::SocketAddr;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

use super::kernel::{Kernel, describe, is_errno};
use super::table::{Route, Table};
use super::{HopEvent, NextHop, parse};

/// Requests in flight at once when many routes or entries change together.
const IN_FLIGHT: usize = 64;

/// Route changes in one burst past which every followed address is looked up
/// again, instead of matching each change against each address (a routing
/// daemon installing a table).
const ROUTE_BURST: usize = 64;

pub enum Command {
    Follow(HashSet<IpAddr>),
    Lookup(IpAddr, oneshot::Sender<Result<NextHop, String>>),
}

/// A one-off lookup waiting for its neighbour to answer.
struct Waiter {
    ip: IpAddr,
    route: Route,
    reply: oneshot::Sender<Result<NextHop, String>>,
}

/// What one burst of messages and commands left to do.
#[derive(Default)]
struct Pending {
    relookup: HashSet<IpAddr>,
    /// Prefixes of the routes that changed.
    routes: Vec<(IpAddr, u8)>,
    resync: bool,
}

pub async fn run(
    kernel: Kernel,
    mut table: Table,
    mut events: impl Stream<Item = (NetlinkMessage<RouteNetlinkMessage>, SocketAddr)> + Unpin,
    mut commands: mpsc::UnboundedReceiver<Command>,
    hops: mpsc::UnboundedSender<HopEvent>,
) {
    let mut waiters = Vec::new();
    loop {
        let mut todo = Pending::default();
        tokio::select! {
            c = commands.recv() => match c {
                Some(c) => command(&kernel, &mut table, &mut todo, &mut waiters, c).await,
                None => return,
            },
            m = events.next() => match m {
                Some((m, _)) => apply(&mut table, &mut todo, m),
                None => {
                    error!("the netlink event socket closed: next hops are no longer followed");
                    return;
                }
            },
        }
        // Everything already queued joins this burst: one pass for many.
        while let Some(Some((m, _))) = events.next().now_or_never() {
            apply(&mut table, &mut todo, m);
        }
        while let Ok(c) = commands.try_recv() {
            command(&kernel, &mut table, &mut todo, &mut waiters, c).await;
        }
        if todo.resync {
            warn!("netlink event buffer overrun: reading links and neighbours again");
            match kernel.dump().await {
                Ok((links, neighs)) => table.reset(links, neighs),
                Err(e) => error!("{e:#}"),
            }
        }
        if todo.resync || todo.routes.len() > ROUTE_BURST {
            todo.relookup.extend(table.followed());
        } else {
            for (prefix, len) in todo.routes.drain(..) {
                todo.relookup.extend(table.covered(prefix, len));
            }
        }
        lookup_routes(&kernel, &mut table, todo.relookup).await;
        upkeep(&kernel, &mut table).await;
        for e in table.changes() {
            let _ = hops.send(e);
        }
        waiters = answer(&table, waiters);
    }
}

fn apply(table: &mut Table, todo: &mut Pending, msg: NetlinkMessage<RouteNetlinkMessage>) {
    use RouteNetlinkMessage as M;
    let inner = match msg.payload {
        NetlinkPayload::InnerMessage(m) => m,
        NetlinkPayload::Overrun(_) => {
            todo.resync = true;
            return;
        }
        _ => return,
    };
    match inner {
        M::NewLink(l) => {
            let (index, link) = parse::link(&l);
            todo.relookup.extend(table.link(index, Some(link)));
        }
        M::DelLink(l) => todo.relookup.extend(table.link(l.header.index, None)),
        M::NewNeighbour(n) => {
            if let Some((key, neigh)) = parse::neigh(&n) {
                table.neigh(key, Some(neigh));
            }
        }
        M::DelNeighbour(n) => {
            if let Some((key, _)) = parse::neigh(&n) {
                table.neigh(key, None);
            }
        }
        M::NewRoute(r) | M::DelRoute(r) => todo.routes.extend(parse::route_prefix(&r)),
        _ => {}
    }
}

async fn command(
    kernel: &Kernel,
    table: &mut Table,
    todo: &mut Pending,
    waiters: &mut Vec<Waiter>,
    c: Command,
) {
    match c {
        Command::Follow(ips) => todo.relookup.extend(table.follow(&ips)),
        Command::Lookup(ip, reply) => {
            let route = kernel.route(ip).await;
            if let Some(key) = table.wanting(ip, &route) {
                match kernel.solicit(key).await {
                    Ok(()) => table.soliciting(key),
                    Err(e) => {
                        let _ = reply.send(Err(format!(
                            "cannot solicit {} on {}: {}",
                            key.1,
                            table.ifname(key.0),
                            describe(&e)
                        )));
                        return;
                    }
                }
            }
            waiters.push(Waiter { ip, route, reply });
        }
    }
}

/// `f` of every key, [`IN_FLIGHT`] at once, each with its key.
async fn each<K: Copy, T, F: Future<Output = T>>(
    keys: impl IntoIterator<Item = K>,
    f: impl Fn(K) -> F,
) -> Vec<(K, T)> {
    stream::iter(keys)
        .map(|k| {
            let done = f(k);
            async move { (k, done.await) }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await
}

async fn lookup_routes(kernel: &Kernel, table: &mut Table, ips: HashSet<IpAddr>) {
    for (ip, route) in each(ips, |ip| kernel.route(ip)).await {
        table.route(ip, route);
    }
}

/// Makes the needed entries managed and removes ours that are not needed.
async fn upkeep(kernel: &Kernel, table: &mut Table) {
    let (manage, release) = table.upkeep();
    for (key, r) in each(manage, |key| kernel.manage(key)).await {
        match r {
            Ok(()) => table.managed(key),
            Err(e) => {
                let mut why = format!(
                    "cannot create a neighbour entry for {} on {}: {}",
                    key.1,
                    table.ifname(key.0),
                    describe(&e)
                );
                if is_errno(&e, libc::ENOBUFS) {
                    why += " (the kernel's neighbour table is full: raise \
                            net.ipv4.neigh.default.gc_thresh3, or net.ipv6's)";
                }
                warn!("{why}");
                table.refuse(key, why);
            }
        }
    }
    for (key, r) in each(release, |key| kernel.release(key)).await {
        if let Err(e) = r {
            warn!(
                "cannot remove the neighbour entry of {} on {}: {}",
                key.1,
                table.ifname(key.0),
                describe(&e)
            );
        }
        table.neigh(key, None);
    }
}

/// Answers the lookups whose next hop is known now; keeps the others.
fn answer(table: &Table, waiters: Vec<Waiter>) -> Vec<Waiter> {
    waiters
        .into_iter()
        .filter_map(|w| {
            if w.reply.is_closed() {
                return None;
            }
            match table.resolve(w.ip, &w.route) {
                Some(r) => {
                    let _ = w.reply.send(r);
                    None
                }
                None => Some(w),
            }
        })
        .collect()
}
