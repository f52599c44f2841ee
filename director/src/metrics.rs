//! The metrics endpoint: `GET /metrics` answers with the Prometheus text
//! exposition (version 0.0.4) of a status snapshot the daemon's loop takes
//! for that scrape, so the endpoint keeps no counters of its own.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::prometheus_text::{self, CONTENT_TYPE as EXPOSITION};
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::TypedMetric;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info};

use crate::control::{self, Call};
use crate::process::Sample as ProcessSample;
use crate::status::{AnnounceReport, Counters, Installs, RsStatus, Status, SyncReport};
use crate::sync::PeerStatus;

/// How long a client may take to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// Binds the metrics endpoint: at startup, so that a port that cannot be
/// had stops the start.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics endpoint {addr} (--metrics, or \"off\")"))?;
    info!(%addr, "metrics on http://{addr}/metrics");
    Ok(listener)
}

/// Serves `GET /metrics` on `listener`, asking the daemon's loop for a
/// status snapshot on every scrape.
pub async fn serve(listener: TcpListener, calls: mpsc::Sender<Call>) -> anyhow::Result<()> {
    loop {
        let (stream, peer) = listener
            .accept()
            .await
            .context("accepting on the metrics endpoint")?;
        let calls = calls.clone();
        tokio::spawn(async move {
            let service = service_fn(|req| answer(req, calls.clone()));
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                debug!(%peer, "metrics connection: {e}");
            }
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    calls: mpsc::Sender<Call>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != "/metrics" {
        return Ok(plain(
            StatusCode::NOT_FOUND,
            "the metrics are at /metrics\n",
        ));
    }
    if req.method() != Method::GET {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET /metrics\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return Ok(r);
    }
    let Some(status) = snapshot(&calls).await else {
        return Ok(plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon did not answer for a status snapshot\n",
        ));
    };
    let process = crate::process::sample()
        .map_err(|e| debug!("reading /proc/self for the process metrics: {e}"))
        .ok();
    Ok(match exposition_with(status, process) {
        Ok(text) => {
            let mut r = Response::new(Full::new(Bytes::from(text)));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(EXPOSITION));
            r
        }
        Err(fmt::Error) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding the metrics failed\n",
        ),
    })
}

fn plain(code: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = code;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn snapshot(calls: &mpsc::Sender<Call>) -> Option<Status> {
    let (tx, rx) = oneshot::channel();
    calls.send((control::Request::Status, tx)).await.ok()?;
    match rx.await.ok()? {
        control::Response::Status(s) => Some(*s),
        _ => None,
    }
}

/// The text exposition of one snapshot.
#[cfg(test)]
fn exposition(status: Status) -> Result<String, fmt::Error> {
    exposition_with(status, None)
}

/// The text exposition of one snapshot and a reading of the process.
fn exposition_with(status: Status, process: Option<ProcessSample>) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot(status)));
    if let Some(p) = process {
        registry.register_collector(Box::new(Process(p)));
    }
    let mut text = String::new();
    prometheus_text::encode(&mut text, &registry)?;
    Ok(text)
}

/// The standard `process_*` families.
#[derive(Debug)]
struct Process(ProcessSample);

impl Collector for Process {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let p = &self.0;
        let one = |v: f64| [(Labels::new(), v)];
        family(
            &mut enc,
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            one(p.cpu_seconds).map(|(l, v)| (l, ConstCounter::new(v))),
        )?;
        for (name, help, v) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                p.resident_bytes as f64,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                p.virtual_bytes as f64,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                p.open_fds as f64,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                p.max_fds as f64,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                p.start_time_s,
            ),
        ] {
            family(
                &mut enc,
                name,
                help,
                one(v).map(|(l, v)| (l, ConstGauge::new(v))),
            )?;
        }
        Ok(())
    }
}

/// A status snapshot as a collector: its families are written from the
/// snapshot when the registry is encoded.
#[derive(Debug)]
struct Snapshot(Status);

type Labels<'a> = Vec<(&'static str, &'a str)>;

/// What virtual and real servers both have, and the labels naming one.
struct Server<'a> {
    labels: Labels<'a>,
    totals: &'a Counters,
    active: u64,
    inactive: u64,
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let s = &self.0;
        let vss: Vec<Server> = s
            .virtual_servers
            .iter()
            .map(|vs| Server {
                labels: vec![("vs", &vs.name), ("address", &vs.address)],
                totals: &vs.totals,
                active: vs.active,
                inactive: vs.inactive,
            })
            .collect();
        let rss: Vec<_> = s
            .virtual_servers
            .iter()
            .zip(&vss)
            .flat_map(|(vs, v)| vs.real_servers.iter().map(move |rs| (v, rs)))
            .map(|(v, rs)| {
                let mut labels = v.labels.clone();
                labels.push(("server", &rs.address));
                let server = Server {
                    labels,
                    totals: &rs.totals,
                    active: rs.active,
                    inactive: rs.inactive,
                };
                (server, rs)
            })
            .collect();

        servers(&mut enc, "vs", "virtual server", vss.iter())?;
        servers(&mut enc, "rs", "real server", rss.iter().map(|(r, _)| r))?;
        let per_rs =
            |f: fn(&RsStatus) -> u64| rss.iter().map(move |(r, rs)| (r.labels.as_slice(), f(rs)));
        family(
            &mut enc,
            "director_rs_weight",
            "Weight in effect (0 when down or draining).",
            per_rs(|rs| rs.weight.into()).map(gauge),
        )?;
        family(
            &mut enc,
            "director_rs_up",
            "1 when the health check passes (or none is configured).",
            per_rs(|rs| (rs.health != "down").into()).map(gauge),
        )?;
        family(
            &mut enc,
            "director_rs_draining",
            "1 while the server drains.",
            per_rs(|rs| rs.draining.into()).map(gauge),
        )?;
        family(
            &mut enc,
            "director_rs_health_transitions",
            "Health state changes.",
            per_rs(|rs| rs.health_transitions).map(counter),
        )?;
        family(
            &mut enc,
            "director_datapath_events",
            "Packets the datapath passed or dropped, by reason.",
            s.reasons
                .iter()
                .map(|(reason, n)| (vec![("reason", reason.as_str())], *n))
                .map(counter),
        )?;
        let single = |v: u64| [(Labels::new(), v)];
        family(
            &mut enc,
            "director_conntrack_entries",
            "Connection table entries at the last sweep.",
            single(s.conntrack_entries).map(gauge),
        )?;
        family(
            &mut enc,
            "director_conntrack_max",
            "Connection table capacity.",
            single(s.conntrack_max.into()).map(gauge),
        )?;
        let r = &s.reload_results;
        family(
            &mut enc,
            "director_half_open_entries",
            "Half-open (SYN_RECV) connection table entries at the last sweep.",
            single(s.half_open_entries).map(gauge),
        )?;
        family(
            &mut enc,
            "director_half_open_max",
            "Half-open connection table capacity.",
            single(s.half_open_max.into()).map(gauge),
        )?;
        family(
            &mut enc,
            "director_reloads",
            "Configuration reloads by result: ok, rejected (nothing changed), restart_needed \
             (applied except changes that wait for a restart).",
            [
                ("ok", r.ok),
                ("rejected", r.rejected),
                ("restart_needed", r.restart_needed),
            ]
            .map(|(result, n)| (vec![("result", result)], n))
            .map(counter),
        )?;
        family(
            &mut enc,
            "director_last_reload_success_timestamp_seconds",
            "Unix time of the last reload that applied the file.",
            r.last_success_unix_s
                .map(|t| (Labels::new(), ConstGauge::new(t))),
        )?;
        let abi = crate::dataplane::ABI_VERSION.to_string();
        family(
            &mut enc,
            "director_build_info",
            "1, labelled with this build's version and datapath map layout (abi).",
            [(
                vec![
                    ("version", env!("CARGO_PKG_VERSION")),
                    ("abi", abi.as_str()),
                ],
                1,
            )]
            .map(gauge),
        )?;
        let mut probes = enc.encode_descriptor(
            "director_health_probe_duration_seconds",
            "How long health probes took, by virtual server and probe kind.",
            None,
            prometheus_client::metrics::MetricType::Histogram,
        )?;
        for p in &s.probe_latency {
            let labels = [("vs", p.vs.as_str()), ("kind", p.kind.as_str())];
            probes
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(
                    p.latency.sum_s,
                    p.latency.count(),
                    &p.latency.buckets(),
                    None,
                )?;
        }
        if let Some(a) = &s.announce {
            announce_families(&mut enc, a)?;
        }
        match &s.sync {
            Some(sync) => sync_families(&mut enc, sync),
            None => Ok(()),
        }
    }
}

/// Route announcement: which VIPs have their route in the table, and
/// whether announcing still waits for readiness.
fn announce_families(enc: &mut DescriptorEncoder, a: &AnnounceReport) -> fmt::Result {
    let vips: Vec<String> = a.announced.iter().map(ToString::to_string).collect();
    family(
        enc,
        "director_vip_announced",
        "1 for each VIP with a host route in the announce table.",
        vips.iter()
            .map(|v| (vec![("address", v.as_str())], 1))
            .map(gauge),
    )?;
    family(
        enc,
        "director_announce_waiting",
        "1 until the director is ready and its first health checks are done.",
        [(Labels::new(), a.waiting.is_some().into())].map(gauge),
    )
}

/// State sync: per peer, both directions of its streams, what it sent us
/// and what became of it; the datapath's events.
fn sync_families(enc: &mut DescriptorEncoder, s: &SyncReport) -> fmt::Result {
    let peers: Vec<(String, &PeerStatus, Installs)> = s
        .transport
        .peers
        .iter()
        .map(|p| {
            let installs = s.installs.get(&p.address).cloned().unwrap_or_default();
            (p.address.to_string(), p, installs)
        })
        .collect();
    let per_peer = |f: fn(&PeerStatus) -> u64| {
        peers
            .iter()
            .map(move |(name, p, _)| (vec![("peer", name.as_str())], f(p)))
    };
    let both_ways = |f: fn(&PeerStatus) -> (u64, u64)| {
        peers.iter().flat_map(move |(name, p, _)| {
            let (sent, received) = f(p);
            [
                (vec![("peer", name.as_str()), ("direction", "sent")], sent),
                (
                    vec![("peer", name.as_str()), ("direction", "received")],
                    received,
                ),
            ]
        })
    };
    family(
        enc,
        "director_sync_stream_up",
        "1 while the stream to (sent) or from (received) the peer is up.",
        both_ways(|p| (p.send_connected.into(), p.receive_connected.into())).map(gauge),
    )?;
    family(
        enc,
        "director_sync_peer_synced",
        "1 once the peer's whole table has arrived on its current stream.",
        per_peer(|p| p.synced.into()).map(gauge),
    )?;
    family(
        enc,
        "director_sync_records",
        "Connection and persistence records sent to and received from the peer.",
        both_ways(|p| (p.records_sent, p.records_received)).map(counter),
    )?;
    family(
        enc,
        "director_sync_messages",
        "Authenticated messages sent to and received from the peer.",
        both_ways(|p| (p.messages_sent, p.messages_received)).map(counter),
    )?;
    let rejected = peers
        .iter()
        .flat_map(|(name, p, _)| {
            p.messages_rejected
                .iter()
                .map(move |(why, n)| (vec![("peer", name.as_str()), ("reason", why.as_str())], *n))
        })
        .chain(
            s.transport
                .rejected_unattributed
                .iter()
                .map(|(why, n)| (vec![("peer", "none"), ("reason", why.as_str())], *n)),
        );
    family(
        enc,
        "director_sync_rejected",
        "Streams closed on a rejected message, by reason (peer \"none\": from no peer's address).",
        rejected.map(counter),
    )?;
    family(
        enc,
        "director_sync_send_queue",
        "Records waiting to be sent to the peer.",
        per_peer(|p| p.queue_len as u64).map(gauge),
    )?;
    family(
        enc,
        "director_sync_send_lag_milliseconds",
        "How long the oldest record waiting to be sent to the peer has waited.",
        per_peer(|p| p.send_lag_ms).map(gauge),
    )?;
    family(
        enc,
        "director_sync_receive_lag_milliseconds",
        "The peer's last message's delay from its start there to its arrival here, by the two \
         wall clocks (wire format 2).",
        peers
            .iter()
            .filter_map(|(name, p, _)| Some((vec![("peer", name.as_str())], p.receive_lag_ms?)))
            .map(gauge),
    )?;
    family(
        enc,
        "director_sync_send_queue_full",
        "Streams to the peer closed (and resynced) because its send queue was full.",
        per_peer(|p| p.queue_full_drops).map(counter),
    )?;
    family(
        enc,
        "director_sync_silence_milliseconds",
        "Since the peer's last message (a live stream carries one every second).",
        peers
            .iter()
            .filter_map(|(name, p, _)| Some((vec![("peer", name.as_str())], p.last_received_ms?)))
            .map(gauge),
    )?;
    let outcomes = peers.iter().flat_map(|(name, _, i)| {
        [
            ("installed", i.installed),
            ("kept_local", i.kept_local),
            ("unknown_server", i.unknown_server),
            ("placed_later", i.placed_later),
            ("unknown_state", i.unknown_state),
            ("no_client_hop", i.no_client_hop),
        ]
        .map(|(outcome, n)| (vec![("peer", name.as_str()), ("outcome", outcome)], n))
    });
    family(
        enc,
        "director_sync_installs",
        "What became of the peer's records: installed, kept_local (a connection made here \
         wins), unknown_server (waits for a reload that brings the server), placed_later \
         (installed after that wait), unknown_state, no_client_hop (installed without a next hop).",
        outcomes.map(counter),
    )?;
    let single = |v: u64| [(Labels::new(), v)];
    family(
        enc,
        "director_sync_datapath_events",
        "New and changed entries the datapath reported for sync.",
        single(s.events).map(counter),
    )?;
    family(
        enc,
        "director_sync_datapath_events_lost",
        "Events the datapath's ring had no room for (each answered with the whole table).",
        single(s.events_lost).map(counter),
    )?;
    family(
        enc,
        "director_sync_waiting_records",
        "Received records waiting for their client's next hop.",
        single(s.waiting as u64).map(gauge),
    )?;
    family(
        enc,
        "director_sync_unplaced_records",
        "Received records waiting for a real server not configured here yet (a rolling reload).",
        single(s.unplaced as u64).map(gauge),
    )?;
    family(
        enc,
        "director_sync_unplaced_dropped",
        "Records that waited for their real server too long (2 min) or found no room.",
        single(s.unplaced_dropped).map(counter),
    )
}

/// The families virtual and real servers share, `director_{level}_*`.
fn servers<'a>(
    enc: &mut DescriptorEncoder,
    level: &str,
    what: &str,
    servers: impl Iterator<Item = &'a Server<'a>> + Clone,
) -> fmt::Result {
    let name = |metric: &str| format!("director_{level}_{metric}");
    family(
        enc,
        &name("connections"),
        &format!("Connections scheduled to the {what}."),
        servers
            .clone()
            .map(|s| (s.labels.as_slice(), s.totals.conns))
            .map(counter),
    )?;
    let directions = |f: fn(&Counters) -> (u64, u64)| {
        servers.clone().flat_map(move |s| {
            let (inbound, outbound) = f(s.totals);
            [
                ((s.labels.as_slice(), [("direction", "in")]), inbound),
                ((s.labels.as_slice(), [("direction", "out")]), outbound),
            ]
        })
    };
    family(
        enc,
        &name("packets"),
        &format!("Packets forwarded for the {what}."),
        directions(|t| (t.packets_in, t.packets_out)).map(counter),
    )?;
    family(
        enc,
        &name("bytes"),
        &format!("Bytes forwarded for the {what}."),
        directions(|t| (t.bytes_in, t.bytes_out)).map(counter),
    )?;
    family(
        enc,
        &name("active_connections"),
        "ESTABLISHED connections.",
        servers
            .clone()
            .map(|s| (s.labels.as_slice(), s.active))
            .map(gauge),
    )?;
    family(
        enc,
        &name("inactive_connections"),
        "Connections in other states.",
        servers
            .map(|s| (s.labels.as_slice(), s.inactive))
            .map(gauge),
    )
}

fn counter<L>((labels, v): (L, u64)) -> (L, ConstCounter<u64>) {
    (labels, ConstCounter::new(v))
}

fn gauge<L>((labels, v): (L, u64)) -> (L, ConstGauge<u64>) {
    (labels, ConstGauge::new(v))
}

/// One family: its help and type, then a sample per label set. A counter's
/// samples get the `_total` suffix from the encoder.
fn family<L: EncodeLabelSet, M: EncodeMetric + TypedMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, M)>,
) -> fmt::Result {
    let mut family = enc.encode_descriptor(name, help, None, M::TYPE)?;
    for (labels, metric) in samples {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use http_body_util::{BodyExt as _, Empty};

    use super::*;
    use crate::status::tests::{sample, sample_sync};

    /// The exposition parsed back: the type of every family (from its
    /// `# TYPE` line, which must follow its `# HELP` line), and every
    /// sample's value by its series as written (name and labels).
    fn parse(text: &str) -> (BTreeMap<String, String>, BTreeMap<String, f64>) {
        let (mut types, mut samples) = (BTreeMap::new(), BTreeMap::new());
        let mut helped = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP NAME TEXT");
                assert!(!help.is_empty(), "{name} has no help");
                helped = Some(name.to_owned());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE NAME KIND");
                assert_eq!(helped.as_deref(), Some(name), "TYPE without HELP");
                assert!(
                    types.insert(name.to_owned(), kind.to_owned()).is_none(),
                    "{name} is typed twice"
                );
            } else {
                let (series, value) = line.rsplit_once(' ').expect("SERIES VALUE");
                let value = value.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
                assert!(
                    samples.insert(series.to_owned(), value).is_none(),
                    "{series} is written twice"
                );
            }
        }
        (types, samples)
    }

    #[test]
    fn exposition_has_every_family_and_value_of_the_snapshot() {
        let text = exposition(sample()).unwrap();
        let (types, samples) = parse(&text);
        let kinds: Vec<(&str, &str)> = types
            .iter()
            .map(|(n, k)| (n.as_str(), k.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("director_build_info", "gauge"),
                ("director_conntrack_entries", "gauge"),
                ("director_conntrack_max", "gauge"),
                ("director_datapath_events_total", "counter"),
                ("director_half_open_entries", "gauge"),
                ("director_half_open_max", "gauge"),
                ("director_health_probe_duration_seconds", "histogram"),
                ("director_last_reload_success_timestamp_seconds", "gauge"),
                ("director_reloads_total", "counter"),
                ("director_rs_active_connections", "gauge"),
                ("director_rs_bytes_total", "counter"),
                ("director_rs_connections_total", "counter"),
                ("director_rs_draining", "gauge"),
                ("director_rs_health_transitions_total", "counter"),
                ("director_rs_inactive_connections", "gauge"),
                ("director_rs_packets_total", "counter"),
                ("director_rs_up", "gauge"),
                ("director_rs_weight", "gauge"),
                ("director_vs_active_connections", "gauge"),
                ("director_vs_bytes_total", "counter"),
                ("director_vs_connections_total", "counter"),
                ("director_vs_inactive_connections", "gauge"),
                ("director_vs_packets_total", "counter"),
            ],
            "in\n{text}"
        );
        let vs = r#"vs="web",address="192.0.2.10:80""#;
        let rs = format!(r#"{vs},server="10.1.0.11:8080""#);
        // The sample's virtual server and its one real server count the same.
        let mut expected = BTreeMap::new();
        for (level, labels) in [("vs", vs), ("rs", rs.as_str())] {
            for (metric, direction, value) in [
                ("connections_total", "", 10.0),
                ("packets_total", r#",direction="in""#, 100.0),
                ("packets_total", r#",direction="out""#, 90.0),
                ("bytes_total", r#",direction="in""#, 1000.0),
                ("bytes_total", r#",direction="out""#, 9000.0),
                ("active_connections", "", 3.0),
                ("inactive_connections", "", 1.0),
            ] {
                let series = format!("director_{level}_{metric}{{{labels}{direction}}}");
                expected.insert(series, value);
            }
        }
        for (metric, value) in [
            ("weight", 0.0),
            ("up", 0.0),
            ("draining", 0.0),
            ("health_transitions_total", 1.0),
        ] {
            expected.insert(format!("director_rs_{metric}{{{rs}}}"), value);
        }
        expected.extend([
            (
                r#"director_datapath_events_total{reason="no_connection"}"#.to_owned(),
                7.0,
            ),
            ("director_conntrack_entries".to_owned(), 4.0),
            ("director_conntrack_max".to_owned(), 1024.0),
            ("director_half_open_entries".to_owned(), 2.0),
            ("director_half_open_max".to_owned(), 1024.0),
            (r#"director_reloads_total{result="ok"}"#.to_owned(), 1.0),
            (
                r#"director_reloads_total{result="rejected"}"#.to_owned(),
                1.0,
            ),
            (
                r#"director_reloads_total{result="restart_needed"}"#.to_owned(),
                1.0,
            ),
            (
                "director_last_reload_success_timestamp_seconds".to_owned(),
                1_700_000_000.5,
            ),
            (
                format!(
                    r#"director_build_info{{version="{}",abi="{}"}}"#,
                    env!("CARGO_PKG_VERSION"),
                    crate::dataplane::ABI_VERSION
                ),
                1.0,
            ),
        ]);
        let probes = r#"director_health_probe_duration_seconds_"#;
        let labels = r#"vs="web",kind="tcp""#;
        for (le, n) in [("0.0005", 0.0), ("0.001", 3.0), ("1", 4.0), ("+Inf", 4.0)] {
            expected.insert(format!(r#"{probes}bucket{{{labels},le="{le}"}}"#), n);
        }
        expected.insert(format!("{probes}sum{{{labels}}}"), 0.9025);
        expected.insert(format!("{probes}count{{{labels}}}"), 4.0);
        // The buckets around the sample's probes, not all thirteen.
        let shown = ["0.0005", "0.001", "1", "+Inf"];
        let samples: BTreeMap<String, f64> = samples
            .into_iter()
            .filter(|(k, _)| {
                !k.contains("_bucket{")
                    || shown
                        .iter()
                        .any(|le| k.ends_with(&format!("le=\"{le}\"}}")))
            })
            .collect();
        assert_eq!(samples, expected, "in\n{text}");
        assert!(
            text.contains(
                "# HELP director_rs_up 1 when the health check passes (or none is configured).\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn announce_families_show_each_announced_vip() {
        let text = exposition(Status {
            announce: Some(Box::new(AnnounceReport {
                table: 100,
                announced: vec!["192.0.2.10".parse().expect("ip")],
                waiting: None,
            })),
            ..sample()
        })
        .unwrap();
        let (_, samples) = parse(&text);
        for (series, value) in [
            (r#"director_vip_announced{address="192.0.2.10"}"#, 1.0),
            ("director_announce_waiting", 0.0),
        ] {
            assert_eq!(samples.get(series), Some(&value), "{series} in\n{text}");
        }
        let (types, _) = parse(&exposition(sample()).unwrap());
        assert!(
            !types.contains_key("director_announce_waiting"),
            "no announce families without announce_table"
        );
    }

    #[test]
    fn sync_families_show_each_peer() {
        let text = exposition(Status {
            sync: Some(sample_sync()),
            ..sample()
        })
        .unwrap();
        let (types, samples) = parse(&text);
        let sync: Vec<&str> = types
            .keys()
            .filter(|n| n.starts_with("director_sync_"))
            .map(String::as_str)
            .collect();
        assert_eq!(sync.len(), 16, "{sync:?}");
        let peer = r#"peer="10.9.0.2:8848""#;
        for (series, value) in [
            (
                format!(r#"director_sync_stream_up{{{peer},direction="sent"}}"#),
                1.0,
            ),
            (format!("director_sync_peer_synced{{{peer}}}"), 1.0),
            (
                format!(r#"director_sync_records_total{{{peer},direction="received"}}"#),
                30.0,
            ),
            (
                format!(r#"director_sync_messages_total{{{peer},direction="sent"}}"#),
                20.0,
            ),
            (
                format!(r#"director_sync_rejected_total{{{peer},reason="bad_tag"}}"#),
                1.0,
            ),
            (
                r#"director_sync_rejected_total{peer="none",reason="bad_handshake"}"#.to_owned(),
                2.0,
            ),
            (format!("director_sync_send_queue{{{peer}}}"), 3.0),
            (
                format!("director_sync_send_lag_milliseconds{{{peer}}}"),
                12.0,
            ),
            (
                format!("director_sync_receive_lag_milliseconds{{{peer}}}"),
                3.0,
            ),
            (
                format!("director_sync_silence_milliseconds{{{peer}}}"),
                250.0,
            ),
            (
                format!(r#"director_sync_installs_total{{{peer},outcome="installed"}}"#),
                28.0,
            ),
            (
                format!(r#"director_sync_installs_total{{{peer},outcome="unknown_server"}}"#),
                2.0,
            ),
            ("director_sync_datapath_events_total".to_owned(), 50.0),
        ] {
            assert_eq!(samples.get(&series), Some(&value), "{series} in\n{text}");
        }
    }

    #[test]
    fn families_without_servers_are_still_described() {
        let text = exposition(Status::default()).unwrap();
        let (types, samples) = parse(&text);
        assert_eq!(types.len(), 23, "{text}");
        assert_eq!(
            samples.keys().collect::<Vec<_>>(),
            [
                r#"director_build_info{version="0.1.0",abi="6"}"#,
                "director_conntrack_entries",
                "director_conntrack_max",
                "director_half_open_entries",
                "director_half_open_max",
                r#"director_reloads_total{result="ok"}"#,
                r#"director_reloads_total{result="rejected"}"#,
                r#"director_reloads_total{result="restart_needed"}"#,
            ],
            "{text}"
        );
    }

    /// Every metric name the dashboard's PromQL uses is one the director
    /// exports (the families of a snapshot with every part filled in).
    #[test]
    fn the_grafana_dashboard_uses_only_exported_metrics() {
        let status = Status {
            sync: Some(sample_sync()),
            announce: Some(Box::new(AnnounceReport {
                table: 100,
                announced: vec![],
                waiting: None,
            })),
            ..sample()
        };
        let process = crate::process::sample().expect("reading /proc/self");
        let (types, _) = parse(&exposition_with(status, Some(process)).unwrap());
        let mut exported: Vec<String> = Vec::new();
        for (name, kind) in &types {
            exported.push(name.clone());
            if kind == "histogram" {
                exported.extend(["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}")));
            }
        }
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/grafana-director.json"
        );
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let dashboard: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let mut exprs = Vec::new();
        fn walk<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
            match v {
                serde_json::Value::Object(m) => {
                    if let Some(e) = m.get("expr").and_then(|e| e.as_str()) {
                        out.push(e);
                    }
                    m.values().for_each(|v| walk(v, out));
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
                _ => {}
            }
        }
        walk(&dashboard, &mut exprs);
        assert!(exprs.len() >= 10, "{exprs:?}");
        for expr in exprs {
            let names: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("director_") || w.starts_with("process_"))
                .collect();
            assert!(!names.is_empty(), "no metric in {expr}");
            for n in names {
                assert!(
                    exported.iter().any(|e| e == n),
                    "{n} (in {expr}) is not exported"
                );
            }
        }
    }

    /// A daemon loop that answers every status request with `sample()`.
    fn daemon() -> mpsc::Sender<Call> {
        let (tx, mut rx) = mpsc::channel::<Call>(4);
        tokio::spawn(async move {
            while let Some((request, reply)) = rx.recv().await {
                assert_eq!(request, control::Request::Status);
                let _ = reply.send(control::Response::Status(Box::new(sample())));
            }
        });
        tx
    }

    /// The endpoint on a free loopback port, asking `calls` for snapshots.
    async fn endpoint(calls: mpsc::Sender<Call>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, calls));
        addr
    }

    async fn request(addr: SocketAddr, method: Method, path: &str) -> (StatusCode, String, String) {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let kind = resp.headers()[CONTENT_TYPE].to_str().unwrap().to_owned();
        let code = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (code, kind, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn http_serves_metrics_and_refuses_the_rest() {
        let addr = endpoint(daemon()).await;

        let (code, kind, body) = request(addr, Method::GET, "/metrics").await;
        assert_eq!(code, StatusCode::OK, "{body}");
        assert_eq!(kind, "text/plain; version=0.0.4; charset=utf-8");
        let (own, process): (Vec<&str>, Vec<&str>) = body
            .lines()
            .partition(|l| !l.contains(" process_") && !l.starts_with("process_"));
        assert_eq!(own.join("\n") + "\n", exposition(sample()).unwrap());
        let (types, samples) = parse(&(process.join("\n") + "\n"));
        assert_eq!(
            types.keys().collect::<Vec<_>>(),
            [
                "process_cpu_seconds_total",
                "process_max_fds",
                "process_open_fds",
                "process_resident_memory_bytes",
                "process_start_time_seconds",
                "process_virtual_memory_bytes",
            ],
            "{body}"
        );
        assert!(samples["process_open_fds"] > 0.0, "{body}");

        let (code, _, body) = request(addr, Method::GET, "/nope").await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
        let (code, _, body) = request(addr, Method::POST, "/metrics").await;
        assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    }

    #[tokio::test]
    async fn http_says_unavailable_when_the_daemon_is_gone() {
        let (tx, rx) = mpsc::channel::<Call>(1);
        drop(rx);
        let addr = endpoint(tx).await;
        let (code, _, body) = request(addr, Method::GET, "/metrics").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    }
}
