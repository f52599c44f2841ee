//! Per-CPU counters: reasons, and traffic per virtual and real server.

use director_common::abi::Reason;

use crate::maps::{BACKEND_STATS, REASONS};

#[inline(always)]
pub fn reason(r: Reason) {
    if let Some(c) = REASONS.get_ptr_mut(r as u32) {
        // SAFETY: per-CPU slot, no concurrent writer.
        unsafe { *c += 1 };
    }
}

/// Counts one forwarded packet against its real server. A virtual server's
/// totals are the sum of its real servers' (in userspace): one per-CPU
/// update per packet instead of two.
#[inline(always)]
pub fn traffic(backend_id: u32, new_conn: bool, bytes: u64, inbound: bool) {
    if let Some(t) = BACKEND_STATS.get_ptr_mut(backend_id) {
        // SAFETY: per-CPU slot, no concurrent writer.
        let t = unsafe { &mut *t };
        if new_conn {
            t.conns += 1;
        }
        if inbound {
            t.packets_in += 1;
            t.bytes_in += bytes;
        } else {
            t.packets_out += 1;
            t.bytes_out += bytes;
        }
    }
}
