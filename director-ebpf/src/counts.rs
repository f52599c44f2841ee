//! Live connection counts per backend (IPVS active/inactive), kept with
//! atomic adds as connections open and change state.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use director_common::{abi::ConnCounts, tcp::State};

use crate::maps::{BACKEND_CONNS, BACKEND_RELEASED, BACKENDS};

#[inline(always)]
fn add(p: *mut u64, delta: u64) {
    // SAFETY: `p` points into an array map value, valid and 8-byte aligned.
    // Only adds (the result unused) so it compiles to BPF_XADD on every BPF
    // CPU version; a decrement is an add of -1. (BPF has no 32-bit atomics in
    // core, hence u64 counters; the BPF target lacks CAS, so `AtomicU64` has
    // no `fetch_add` and the intrinsic is used directly.)
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, delta) };
}

#[inline(always)]
fn is_active(state: u8) -> bool {
    state == State::Established as u8
}

/// A connection in `state` appeared on `backend_id`.
#[inline(always)]
pub fn opened(backend_id: u32, state: u8) {
    if let Some(c) = BACKEND_CONNS.get_ptr_mut(backend_id) {
        // SAFETY: map value pointer.
        unsafe {
            if is_active(state) {
                add(&raw mut (*c).active, 1);
            } else {
                add(&raw mut (*c).inactive, 1);
            }
        }
    }
}

/// A connection on `backend_id` went from `from` to `to`.
#[inline(always)]
pub fn moved(backend_id: u32, from: u8, to: u8) {
    let (a, b) = (is_active(from), is_active(to));
    if a == b {
        return;
    }
    if let Some(c) = BACKEND_CONNS.get_ptr_mut(backend_id) {
        // SAFETY: map value pointer.
        unsafe {
            if b {
                add(&raw mut (*c).inactive, u64::MAX);
                add(&raw mut (*c).active, 1);
            } else {
                add(&raw mut (*c).active, u64::MAX);
                add(&raw mut (*c).inactive, 1);
            }
        }
    }
}

/// A connection in `state` left `backend_id` (replaced by a new one on the
/// same tuple).
#[inline(always)]
pub fn closed(backend_id: u32, state: u8) {
    if let Some(c) = BACKEND_CONNS.get_ptr_mut(backend_id) {
        // SAFETY: map value pointer.
        unsafe {
            if is_active(state) {
                add(&raw mut (*c).active, u64::MAX);
            } else {
                add(&raw mut (*c).inactive, u64::MAX);
            }
        }
    }
}

#[inline(always)]
pub fn live(backend_id: u32) -> ConnCounts {
    let opened = BACKEND_CONNS.get(backend_id).copied().unwrap_or_default();
    let released = BACKEND_RELEASED
        .get(backend_id)
        .copied()
        .unwrap_or_default();
    opened.live(&released)
}

/// Whether a backend may take a new connection, and its IPVS overhead
/// (active × 256 + inactive) for least-connection choices.
#[inline(always)]
pub fn admits(backend_id: u32) -> Option<(u64, u32)> {
    let be = BACKENDS.get(backend_id)?;
    if be.flags & director_common::abi::BACKEND_F_DOWN != 0 {
        return None;
    }
    let c = live(backend_id);
    if be.max_conns != 0 && c.total() >= be.max_conns as u64 {
        return None;
    }
    Some((
        c.active.saturating_mul(256).saturating_add(c.inactive),
        be.weight,
    ))
}
