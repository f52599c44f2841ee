//! End to end through the director: a client in its namespace talks HTTP to the VIP and
//! the lab's real servers answer, in NAT and DR mode. Each test builds its own lab and
//! starts the director with a config written here.
//!
//! Needs root and the director binary (`$DIRECTOR_BIN` or target/debug/director; `cargo
//! xtask test` builds it). Skips with a printed reason when not root.

use director_tests::config::{Config, VirtualServer};
use director_tests::http;
use director_tests::lab::{Lab, LabSpec, Mode, Role};
use director_tests::pattern::{fnv1a, pattern, pseudo_random};
use director_tests::{need_root, per_mode};

const SERVER: &str = env!("CARGO_BIN_EXE_director-lab-server");
const MIB: usize = 1 << 20;

/// A director config for `lab` with one wrr virtual server on the VIP whose real servers
/// are the lab's, with these weights.
fn config(lab: &Lab, weights: &[u32]) -> Config {
    Config::lab(lab.mode()).virtual_server(
        VirtualServer::tcp("web", lab.vip())
            .real_servers(lab.real_servers())
            .weights(weights),
    )
}

/// A lab with `weights.len()` real servers and the director running with those weights.
fn lab_with_director(mode: Mode, weights: &[u32]) -> Lab {
    let spec = LabSpec::new(mode, SERVER).servers(weights.len());
    let mut lab = Lab::build(spec).unwrap_or_else(|e| panic!("{e:#}"));
    let config = config(&lab, weights);
    lab.start_director(config);
    lab
}

/// The host's own TCP keeps working while the director's XDP program is attached.
fn assert_director_host_traffic_works(lab: &Lab) {
    lab.echo_to_director(None, (lab.director_addr(), 9000).into());
}

fn xdp_attached(lab: &Lab, ifname: &str) -> bool {
    let link = lab
        .ns(Role::Director)
        .ip(&["link", "show", "dev", ifname])
        .unwrap();
    link.contains("xdp")
}

#[test]
fn nat_http_through_vip() {
    need_root!();
    let mut lab = lab_with_director(Mode::Nat, &[1, 1, 1]);
    assert!(
        xdp_attached(&lab, "eth0") && xdp_attached(&lab, "eth1"),
        "director attached no XDP program"
    );
    let tally = lab.get_many(30, &[]);
    lab.assert_answered_by_all(&tally, 30, "GETs through the VIP");
    assert_director_host_traffic_works(&lab);

    // Contract: SIGTERM → exit 0 and the pinned datapath keeps forwarding
    // (hitless restart); `director teardown` then detaches it.
    let status = lab.stop_director().unwrap();
    assert!(status.success(), "director exited with {status} on SIGTERM");
    let tally = lab.get_many(30, &[]);
    lab.assert_answered_by_all(&tally, 30, "GETs through the pinned datapath");
    let out = std::process::Command::new(director_tests::paths::director_bin())
        .arg("teardown")
        .arg("--pin-dir")
        .arg(lab.pin_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "teardown: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !xdp_attached(&lab, "eth0") && !xdp_attached(&lab, "eth1"),
        "XDP still attached after teardown"
    );
    assert!(!lab.pin_dir().exists(), "pins left after teardown");
}

#[test]
fn nat_with_vip_configured_on_director() {
    need_root!();
    let spec = LabSpec::new(Mode::Nat, SERVER);
    let mut lab = Lab::build(spec).unwrap_or_else(|e| panic!("{e:#}"));
    lab.add_vip_on_director();
    let config = config(&lab, &[1, 1, 1]);
    lab.start_director(config);
    let tally = lab.get_many(30, &[]);
    lab.assert_answered_by_all(&tally, 30, "GETs with the VIP on the director");
    assert_director_host_traffic_works(&lab);
}

#[test]
fn dr_http_through_vip() {
    need_root!();
    let lab = lab_with_director(Mode::Dr, &[1, 1, 1]);
    let tally = lab.get_many(30, &[]);
    lab.assert_answered_by_all(&tally, 30, "GETs through the VIP");
}

/// Weights 3:1 over ≥ 1000 new connections: rs1 gets 75% ± 5 points.
fn weights_3_to_1(mode: Mode) {
    let lab = lab_with_director(mode, &[3, 1]);
    let n = 1000;
    let tally = lab.get_many(n, &[]);
    assert_eq!(
        tally.failures, 0,
        "failed requests, first errors: {:#?}",
        tally.errors
    );
    let share = tally.share_percent("rs1");
    assert!(
        (70.0..=80.0).contains(&share),
        "rs1 got {share:.1}% of {n}, expected 75% ± 5: {:?}",
        tally.by_server
    );
    assert_eq!(tally.count("rs1") + tally.count("rs2"), n);
}

per_mode!(weights_3_to_1: nat_weights_3_to_1, dr_weights_3_to_1);

#[test]
fn nat_weight_zero_gets_nothing() {
    need_root!();
    let lab = lab_with_director(Mode::Nat, &[1, 0, 1]);
    let tally = lab.get_many(200, &[]);
    assert_eq!(
        tally.failures, 0,
        "failed requests, first errors: {:#?}",
        tally.errors
    );
    assert_eq!(
        tally.count("rs2"),
        0,
        "weight-0 server was scheduled: {:?}",
        tally.by_server
    );
    assert_eq!(tally.count("rs1") + tally.count("rs3"), 200);
    assert!(
        tally.count("rs1") > 0 && tally.count("rs3") > 0,
        "{:?}",
        tally.by_server
    );
}

/// 1 MiB each way through the VIP, three times (so each real server is used once
/// under equal weights): the download equals the pattern byte for byte and the server
/// reports the upload's exact length and hash.
fn upload_download_1mib(mode: Mode) {
    let lab = lab_with_director(mode, &[1, 1, 1]);
    let vip = lab.vip();
    let expected = pattern(MIB);
    for round in 0..3 {
        let r = lab
            .in_client(|| http::http_get(None, vip, &format!("/bytes/{MIB}")))
            .unwrap_or_else(|e| panic!("download {round}: {e:#}"));
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), MIB, "download {round} from {:?}", r.server());
        if let Some(at) = r.body.iter().zip(&expected).position(|(a, b)| a != b) {
            panic!(
                "download {round} from {:?} differs at byte {at}",
                r.server()
            );
        }

        let body = pseudo_random(MIB, round);
        let r = lab
            .in_client(|| http::http_post_upload(None, vip, &body))
            .unwrap_or_else(|e| panic!("upload {round}: {e:#}"));
        assert_eq!(r.status, 200);
        assert_eq!(
            r.text(),
            format!("{MIB} {:016x}\n", fnv1a(&body)),
            "upload {round} via {:?}",
            r.server()
        );
    }
}

per_mode!(upload_download_1mib: nat_upload_download_1mib, dr_upload_download_1mib);

#[test]
fn many_clients_nat() {
    need_root!();
    let lab = lab_with_director(Mode::Nat, &[1, 1, 1]);
    let sources = lab.extra_client_addrs().to_vec();
    assert_eq!(sources.len(), 64);
    // Request i comes from sources[i % 64]: 4 requests from each of 64 addresses.
    let tally = lab.get_many(4 * sources.len(), &sources);
    lab.assert_answered_by_all(&tally, 4 * sources.len(), "GETs from 64 addresses");
}
