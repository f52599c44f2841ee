//! Picks the real server for a new connection. Policy lives in userspace,
//! which writes each virtual server's lists (see `VipInfo`); here we only
//! walk, hash into or scan them, honouring connection limits, backups and
//! source-IP persistence.

use director_common::{
    abi::{
        BACKEND_F_DOWN, MAX_SCAN, Persist, PersistKey, RING_PROBES, Reason, SCHED_HASH, SCHED_LC,
        SCHED_RING, VIP_F_HASH_PORT, VIP_F_PERSIST, VipInfo,
    },
    hash,
};

use aya_ebpf::cty::c_void;
use aya_ebpf::helpers::bpf_loop;
use aya_ebpf::{macros::map, maps::PerCpuArray};

use crate::{
    counts,
    maps::{BACKENDS, CURSORS, PERSIST, RING},
    ret::{self, Packed},
    scratch::Scratch,
    sync,
};

/// The backend for a new connection (`ret::pack`ed). A BPF subprogram: its
/// many paths (five schedulers, persistence, fallbacks) all return one
/// scalar, so the verifier checks the caller's remaining code once per kind
/// of result instead of once per path through here.
/// The client is `s.conn_key`'s source; persistence uses `s`'s room.
#[inline(never)]
pub fn pick(vip: &VipInfo, s: &mut Scratch, family: u8, sport: u16, now: u64) -> Packed {
    ret::pack(try_pick(vip, s, family, sport, now))
}

#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "a key passed by value is copied onto the BPF stack, which then exceeds 512 bytes"
)]
#[inline(always)]
fn try_pick(
    vip: &VipInfo,
    s: &mut Scratch,
    family: u8,
    sport: u16,
    now: u64,
) -> Result<u32, Reason> {
    let src = &s.conn_key.src;
    if vip.flags & VIP_F_PERSIST == 0 {
        return choose(vip, s, sport);
    }
    s.persist_key = PersistKey::of(src, family, vip.persist_prefix, vip.vip_id);
    let timeout_ns = vip.persist_timeout_s as u64 * 1_000_000_000;
    if let Some(p) = PERSIST.get_ptr_mut(&s.persist_key) {
        // SAFETY: map value pointer; racing writers store whole fields.
        let p = unsafe { &mut *p };
        // Saturating: userspace writes the precise clock, which may be up
        // to a tick ahead of the coarse one.
        let fresh = now.saturating_sub(p.last_seen_ns) <= timeout_ns;
        // A quiescent (weight 0) server keeps its clients, as in IPVS; a
        // failed one does not, nor does a missing one.
        let up = BACKENDS
            .get(p.backend_id)
            .is_some_and(|b| b.flags & BACKEND_F_DOWN == 0 && b.family != 0);
        if fresh && up {
            p.last_seen_ns = now;
            return Ok(p.backend_id);
        }
    }
    let id = choose(vip, s, sport)?;
    s.persist = Persist {
        backend_id: id,
        _pad: 0,
        last_seen_ns: now,
    };
    // Failing to record persistence must not fail the connection.
    if PERSIST.insert(&s.persist_key, &s.persist, 0).is_ok() {
        sync::persist(&s.persist_key);
    }
    Ok(id)
}

#[inline(always)]
fn choose(vip: &VipInfo, s: &mut Scratch, sport: u16) -> Result<u32, Reason> {
    let primary = match vip.sched {
        SCHED_RING => walk(vip),
        SCHED_HASH => hashed(vip, &s.conn_key.src, sport),
        _ => None,
    };
    if let Some(id) = primary {
        return Ok(id);
    }
    // lc: the least loaded primary; wlc, and ring picks at their limit: the
    // least loaded per weight that has room; then the sorry servers, only
    // when no primary can take the connection.
    if let Some(id) = least(vip, vip.sched != SCHED_LC) {
        return Ok(id);
    }
    if vip.members_len == 0 && vip.backup_len == 0 {
        Err(Reason::NoRealServer)
    } else {
        Err(Reason::Overloaded)
    }
}

/// rr/wrr: the next ring slots on this CPU.
#[inline(always)]
fn walk(vip: &VipInfo) -> Option<u32> {
    if vip.ring_len == 0 {
        return None;
    }
    let cursor = CURSORS.get_ptr_mut(vip.vip_id)?;
    for _ in 0..RING_PROBES {
        // SAFETY: per-CPU slot, no concurrent writer.
        let pos = unsafe {
            let pos = *cursor % vip.ring_len;
            *cursor = pos + 1;
            pos
        };
        let id = *RING.get(vip.ring_base + pos)?;
        if counts::admits(id).is_some() {
            return Some(id);
        }
    }
    None
}

/// sh/mh: the slot the client's hash names, or the next ones.
#[inline(always)]
fn hashed(vip: &VipInfo, src: &[u8; 16], sport: u16) -> Option<u32> {
    if vip.ring_len == 0 {
        return None;
    }
    let port = if vip.flags & VIP_F_HASH_PORT != 0 {
        sport
    } else {
        0
    };
    let mut pos = hash::flow_hash(src, port, hash::SCHED_SEED) % vip.ring_len;
    for _ in 0..RING_PROBES {
        let id = *RING.get(vip.ring_base + pos)?;
        if counts::admits(id).is_some() {
            return Some(id);
        }
        pos += 1;
        if pos == vip.ring_len {
            pos = 0;
        }
    }
    None
}

/// No server found yet (ids index `BACKENDS`, far below this).
const NONE: u32 = u32::MAX;

/// This CPU's `Scan`.
#[map]
static SCANS: PerCpuArray<Scan> = PerCpuArray::with_max_entries(1, 0);

/// State of a `least` scan, shared with its `bpf_loop` callback through a
/// per-CPU map entry of its own (the stack is full, `bpf_loop` passes only
/// stack pointers, and a reference held across the loop would let the
/// compiler assume the callback changes nothing). Few zero fields side by
/// side: LLVM merges such stores into a memset(), which the BPF target turns
/// into a byte-at-a-time call.
#[repr(C)]
struct Scan {
    members_base: u32,
    members_len: u32,
    backup_base: u32,
    weighted: u32,
    best_id: u32,
    _pad: u32,
    best_overhead: u64,
    best_weight: u64,
}

/// lc/wlc over the members, then over the backups if no member has room:
/// the admitted server with the lowest overhead (active × 256 + inactive),
/// per weight when `weighted` (backups always are); ties go to the first
/// listed, as in IPVS. One `bpf_loop` over both lists, so the verifier
/// checks the body once.
#[inline(always)]
fn least(vip: &VipInfo, weighted: bool) -> Option<u32> {
    let members = vip.members_len.min(MAX_SCAN);
    let total = members + vip.backup_len.min(MAX_SCAN);
    if total == 0 {
        return None;
    }
    let scan = SCANS.get_ptr_mut(0)?;
    // SAFETY: this CPU's entry, only ever used through raw pointers (here
    // and in the callback, never at the same time); the result is read
    // back volatile after the loop.
    unsafe {
        scan.write(Scan {
            members_base: vip.members_base,
            members_len: members,
            backup_base: vip.backup_base,
            weighted: weighted as u32,
            best_id: NONE,
            _pad: NONE,
            best_overhead: 0,
            best_weight: 1,
        });
        bpf_loop(total, scan_one as *mut c_void, core::ptr::null_mut(), 0);
        let best = core::ptr::read_volatile(&raw const (*scan).best_id);
        (best != NONE).then_some(best)
    }
}

#[inline(never)]
extern "C" fn scan_one(i: u32, _ctx: *mut c_void) -> i64 {
    let Some(scan) = SCANS.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: see `least`; this reference lives for one iteration.
    let scan = unsafe { &mut *scan };
    let slot = if i < scan.members_len {
        scan.members_base + i
    } else if scan.best_id != NONE {
        // A member has room: backups are not for us.
        return 1;
    } else {
        if i == scan.members_len {
            scan.weighted = 1;
        }
        scan.backup_base + (i - scan.members_len)
    };
    let Some(&id) = RING.get(slot) else {
        return 1;
    };
    let Some((overhead, weight)) = counts::admits(id) else {
        return 0;
    };
    let w = if scan.weighted != 0 {
        weight.max(1) as u64
    } else {
        1
    };
    // overhead / w < best / best_w, without division.
    if scan.best_id == NONE || overhead * scan.best_weight < scan.best_overhead * w {
        scan.best_id = id;
        scan.best_overhead = overhead;
        scan.best_weight = w;
    }
    0
}
