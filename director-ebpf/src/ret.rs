//! Results across BPF subprogram calls. A `Result<u32, Reason>` would be
//! returned through a hidden pointer argument, which the BPF calling
//! convention (five registers, no stack arguments) cannot always carry; the
//! non-inlined paths return it packed in the return register instead.

use director_common::abi::Reason;

/// A `Result<u32, Reason>` in one register: `Ok(v)` as `v`, `Err(r)` as
/// `-1 - r`. Only [`pack`] makes one, so every negative value names a reason.
#[repr(transparent)]
pub struct Packed(i64);

#[inline(always)]
pub fn pack(r: Result<u32, Reason>) -> Packed {
    Packed(match r {
        Ok(v) => v as i64,
        Err(e) => -1 - e as i64,
    })
}

#[inline(always)]
pub fn unpack(p: Packed) -> Result<u32, Reason> {
    let Packed(v) = p;
    if v >= 0 {
        return Ok(v as u32);
    }
    // SAFETY: `pack` made `v` as -1 - r for a `Reason` r, a `repr(u32)` enum:
    // -1 - v is r's discriminant.
    Err(unsafe { core::mem::transmute::<u32, Reason>((-1 - v) as u32) })
}
