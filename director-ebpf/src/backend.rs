//! The backend a packet may be sent to, for every path that sends one.

use director_common::abi::{BACKEND_F_RESOLVED, Backend, Reason};

use crate::maps::BACKENDS;

/// Backend `id` if it is present, of the packet's `family`, and its next hop
/// is resolved.
#[inline(always)]
pub fn usable(id: u32, family: u8) -> Result<&'static Backend, Reason> {
    let be = BACKENDS.get(id).ok_or(Reason::BadBackend)?;
    if be.family != family {
        return Err(Reason::BadBackend);
    }
    if be.flags & BACKEND_F_RESOLVED == 0 {
        return Err(Reason::Unresolved);
    }
    Ok(be)
}
