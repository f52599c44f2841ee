//! Picks the real server for a new connection. Policy lives in userspace,
//! which writes each virtual server's ring; here we only walk it.

use director_common::abi::{Reason, VipInfo};

use crate::maps::{CURSORS, RING};

#[inline(always)]
pub fn pick(vip: &VipInfo) -> Result<u32, Reason> {
    if vip.ring_len == 0 {
        return Err(Reason::NoRealServer);
    }
    let cursor = CURSORS.get_ptr_mut(vip.vip_id).ok_or(Reason::BadBackend)?;
    // SAFETY: per-CPU slot, no concurrent writer.
    let pos = unsafe {
        let pos = *cursor % vip.ring_len;
        *cursor = pos + 1;
        pos
    };
    RING.get(vip.ring_base + pos)
        .copied()
        .ok_or(Reason::BadBackend)
}
