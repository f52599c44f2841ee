//! Results across BPF subprogram calls. A `Result<u32, Reason>` would be
//! returned through a hidden pointer argument, which the BPF calling
//! convention (five registers, no stack arguments) cannot always carry; the
//! non-inlined paths return it packed in the return register instead.

use director_common::abi::Reason;

#[inline(always)]
pub fn pack(r: Result<u32, Reason>) -> i64 {
    match r {
        Ok(v) => v as i64,
        Err(e) => -1 - e as i64,
    }
}

#[inline(always)]
pub fn unpack(v: i64) -> Result<u32, Reason> {
    if v >= 0 {
        return Ok(v as u32);
    }
    let idx = (-1 - v) as usize;
    Err(Reason::ALL.get(idx).copied().unwrap_or(Reason::BadBackend))
}
