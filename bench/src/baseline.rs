//! The comparison programs, written as raw instructions (see [`crate::bpf`]):
//! - [`pass`]: `return XDP_PASS`, the fixed cost of a run;
//! - [`mac_swap`]: swap the Ethernet addresses and `XDP_TX`, the least a program that
//!   touches the packet does;
//! - [`forwarder`]: set both MACs and redirect to one interface, the floor of the lab's
//!   forwarding path (what the director must do at minimum per packet);
//! - [`udp_sink`]: count and drop IPv4 UDP at the real servers, pass the rest (ARP,
//!   TCP), so that delivered packets are counted exactly and cost the receiver little;
//! - [`lru_insert`]: insert the frame's IPv4 + TCP headers as a 40-byte key into an LRU
//!   hash, the price of one connection-table insert without the rest of the director.

use std::os::fd::OwnedFd;

use anyhow::{Result, ensure};

use crate::bpf::{self, Counters, Insn, Program, Size, XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX};

pub const ETH_LEN: i32 = 14;
/// `bpf_redirect(ifindex, flags)`.
const HELPER_REDIRECT: i32 = 23;
/// `bpf_map_lookup_elem(map, key)`.
const HELPER_MAP_LOOKUP: i32 = 1;
/// `bpf_map_update_elem(map, key, value, flags)`.
const HELPER_MAP_UPDATE: i32 = 2;
/// Key and value size of [`lru_insert`]: the director's `FlowKey` and `Conn`.
pub const LRU_KEY: u32 = 40;
/// IPv4's ethertype as a native-endian load of the big-endian field sees it.
const ETH_P_IP_LOADED: i32 = u16::from_ne_bytes(0x0800u16.to_be_bytes()) as i32;

pub type Mac = [u8; 6];

/// `r2 = data; r3 = data_end; r4 = data + len; if r4 > r3 goto +skip`.
fn bounds_check(len: i32, skip: i16) -> Vec<Insn> {
    vec![
        Insn::load(Size::W, 2, 1, 0),
        Insn::load(Size::W, 3, 1, 4),
        Insn::mov_reg(4, 2),
        Insn::add_imm(4, len),
        Insn::jgt_reg(4, 3, skip),
    ]
}

fn ret(action: u32) -> [Insn; 2] {
    [Insn::mov_imm(0, action as i32), Insn::exit()]
}

pub fn pass() -> Result<Program> {
    Program::load("bench_pass", &ret(XDP_PASS))
}

pub fn mac_swap() -> Result<Program> {
    let mut p = bounds_check(ETH_LEN, 10);
    p.extend([
        Insn::load(Size::W, 4, 2, 0),
        Insn::load(Size::H, 5, 2, 4),
        Insn::load(Size::W, 3, 2, 6),
        Insn::load(Size::H, 0, 2, 10),
        Insn::store(Size::W, 2, 0, 3),
        Insn::store(Size::H, 2, 4, 0),
        Insn::store(Size::W, 2, 6, 4),
        Insn::store(Size::H, 2, 10, 5),
    ]);
    p.extend(ret(XDP_TX));
    p.extend(ret(XDP_DROP));
    Program::load("bench_mac_swap", &p)
}

fn mac_words(mac: &Mac) -> (i32, i32) {
    (
        i32::from_ne_bytes([mac[0], mac[1], mac[2], mac[3]]),
        i32::from(u16::from_ne_bytes([mac[4], mac[5]]) as i16),
    )
}

/// IPv4 frames get `dst`/`src` as MACs and go out of `ifindex`; others pass.
pub fn forwarder(dst: &Mac, src: &Mac, ifindex: u32) -> Result<Program> {
    let (d0, d1) = mac_words(dst);
    let (s0, s1) = mac_words(src);
    let mut p = bounds_check(ETH_LEN, 10);
    p.extend([
        Insn::load(Size::H, 4, 2, 12),
        Insn::jne_imm(4, ETH_P_IP_LOADED, 8),
        Insn::store_imm(Size::W, 2, 0, d0),
        Insn::store_imm(Size::H, 2, 4, d1),
        Insn::store_imm(Size::W, 2, 6, s0),
        Insn::store_imm(Size::H, 2, 10, s1),
        Insn::mov_imm(1, ifindex as i32),
        Insn::mov_imm(2, 0),
        Insn::call(HELPER_REDIRECT),
        Insn::exit(),
    ]);
    debug_assert_eq!(XDP_REDIRECT, 4, "bpf_redirect returns XDP_REDIRECT");
    // Skipped to from the bounds and ethertype checks.
    p.extend(ret(XDP_PASS));
    Program::load("bench_fwd", &p)
}

/// Counts IPv4 UDP frames in `counters[0]` and drops them; everything else passes.
pub fn udp_sink(counters: &Counters) -> Result<Program> {
    // Ethernet + a minimal IPv4 header.
    let mut p = bounds_check(ETH_LEN + 20, 16);
    p.extend([
        Insn::load(Size::H, 4, 2, 12),
        Insn::jne_imm(4, ETH_P_IP_LOADED, 14),
        Insn::load(Size::B, 4, 2, ETH_LEN as i16 + 9),
        Insn::jne_imm(4, 17, 12),
        // key 0 on the stack
        Insn::store_imm(Size::W, 10, -4, 0),
        Insn::mov_reg(2, 10),
        Insn::add_imm(2, -4),
    ]);
    p.extend(Insn::load_map(1, counters.fd()));
    p.extend([
        Insn::call(HELPER_MAP_LOOKUP),
        Insn::jeq_imm(0, 0, 3),
        Insn::load(Size::Dw, 1, 0, 0),
        Insn::add_imm(1, 1),
        Insn::store(Size::Dw, 0, 0, 1),
    ]);
    p.extend(ret(XDP_DROP));
    p.extend(ret(XDP_PASS));
    Program::load("bench_udp_sink", &p)
}

/// Inserts bytes 14..54 of each frame (an IPv4 + TCP header: distinct per flow) with
/// a zero value of the same size into `map` (an LRU hash, [`LRU_KEY`]-byte keys and
/// values), then passes the frame.
pub fn lru_insert(map: &OwnedFd) -> Result<Program> {
    lru_program(map, true)
}

/// Looks bytes 14..54 of each frame up in `map` (as [`lru_insert`] keys them), then
/// passes the frame: the memory cost of one connection-table lookup.
pub fn lru_lookup(map: &OwnedFd) -> Result<Program> {
    lru_program(map, false)
}

fn lru_program(map: &OwnedFd, insert: bool) -> Result<Program> {
    let words = (LRU_KEY / 8) as i16;
    let key = -(LRU_KEY as i16);
    let value = 2 * key;
    let mut p = bounds_check(ETH_LEN + LRU_KEY as i32, 0);
    for w in 0..words {
        p.push(Insn::load(Size::Dw, 4, 2, ETH_LEN as i16 + 8 * w));
        p.push(Insn::store(Size::Dw, 10, key + 8 * w, 4));
    }
    if insert {
        for w in 0..words {
            p.push(Insn::store_imm(Size::Dw, 10, value + 8 * w, 0));
        }
    }
    p.extend(Insn::load_map(1, map));
    p.extend([Insn::mov_reg(2, 10), Insn::add_imm(2, key.into())]);
    if insert {
        p.extend([
            Insn::mov_reg(3, 10),
            Insn::add_imm(3, value.into()),
            Insn::mov_imm(4, 0),
            Insn::call(HELPER_MAP_UPDATE),
        ]);
    } else {
        p.push(Insn::call(HELPER_MAP_LOOKUP));
    }
    // The bounds check jumps here, past everything after it.
    let skip = (p.len() - 5) as i16;
    p[4] = Insn::jgt_reg(4, 3, skip);
    p.extend(ret(XDP_PASS));
    Program::load(
        if insert {
            "bench_lru_ins"
        } else {
            "bench_lru_get"
        },
        &p,
    )
}

/// Runs `prog` once on `frame`: (action, output frame).
fn run_once(prog: &Program, frame: &[u8]) -> Result<(u32, Vec<u8>)> {
    let mut out = vec![0u8; frame.len() + 256];
    let r = bpf::test_run(prog.fd(), frame, &mut out, 1)?;
    out.truncate(r.out_len as usize);
    Ok((r.retval, out))
}

/// Proves [`pass`] and [`mac_swap`] do what their names say before they are timed.
pub fn check(pass: &Program, swap: &Program, frame: &[u8]) -> Result<()> {
    let (action, out) = run_once(pass, frame)?;
    ensure!(
        action == XDP_PASS && out == frame,
        "XDP_PASS baseline misbehaves"
    );
    let (action, out) = run_once(swap, frame)?;
    ensure!(
        action == XDP_TX && out[..6] == frame[6..12] && out[6..12] == frame[..6],
        "MAC-swap baseline misbehaves: action {action}"
    );
    Ok(())
}

/// Proves [`forwarder`] rewrites and redirects `ipv4` and passes `other`.
pub fn check_forwarder(
    fwd: &Program,
    dst: &Mac,
    src: &Mac,
    ipv4: &[u8],
    other: &[u8],
) -> Result<()> {
    let (action, out) = run_once(fwd, ipv4)?;
    ensure!(
        action == XDP_REDIRECT
            && out[..6] == dst[..]
            && out[6..12] == src[..]
            && out[12..] == ipv4[12..],
        "XDP forwarder misbehaves: action {action}"
    );
    let (action, _) = run_once(fwd, other)?;
    ensure!(
        action == XDP_PASS,
        "XDP forwarder does not pass non-IPv4 frames"
    );
    Ok(())
}

/// Proves [`udp_sink`] counts and drops `udp` and passes `other`.
pub fn check_sink(sink: &Program, counters: &Counters, udp: &[u8], other: &[u8]) -> Result<()> {
    let before = counters.sum(0)?;
    let (action, _) = run_once(sink, udp)?;
    ensure!(
        action == XDP_DROP,
        "UDP sink does not drop UDP (action {action})"
    );
    ensure!(counters.sum(0)? == before + 1, "UDP sink does not count");
    let (action, _) = run_once(sink, other)?;
    ensure!(action == XDP_PASS, "UDP sink does not pass other frames");
    ensure!(
        counters.sum(0)? == before + 1,
        "UDP sink counts other frames"
    );
    Ok(())
}
