//! Map keys built from packet fields. Every address handed in here is a
//! field at a multiple of four bytes in a struct aligned to four or more
//! (`Pkt`, the quote of an ICMP error, `Backend`, `NatReply`, `NatServer`),
//! so it is moved and compared as words: a byte array alone is byte-aligned,
//! and the BPF target copies those with calls to byte-at-a-time
//! memmove()/memset() functions.

use director_common::abi::{FlowKey, VipKey};

/// A word-aligned address (see above) as four words.
#[inline(always)]
fn words(a: &[u8; 16]) -> [u32; 4] {
    // SAFETY: `a` is 4-aligned (see above) and [u32; 4] has its size; every
    // bit pattern is a valid [u32; 4].
    // Four scalar loads: a whole-array load between two map values that
    // may alias becomes a memmove() call.
    unsafe {
        let p = (a as *const [u8; 16]).cast::<u32>();
        [p.read(), p.add(1).read(), p.add(2).read(), p.add(3).read()]
    }
}

/// A copy of a word-aligned address.
#[inline(always)]
pub fn addr(a: &[u8; 16]) -> [u8; 16] {
    // SAFETY: same size, every bit pattern valid for both.
    unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>(words(a)) }
}

#[inline(always)]
pub fn same_addr(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let (a, b) = (words(a), words(b));
    a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3]
}

#[inline(always)]
pub fn flow(
    src: &[u8; 16],
    dst: &[u8; 16],
    sport: u16,
    dport: u16,
    proto: u8,
    family: u8,
) -> FlowKey {
    FlowKey {
        src: addr(src),
        dst: addr(dst),
        sport,
        dport,
        proto,
        family,
        _pad: 0,
    }
}

/// A `VIPS` key, or the `NAT_SERVERS` key of a real server.
#[inline(always)]
pub fn server(addr_: &[u8; 16], port: u16, proto: u8, family: u8) -> VipKey {
    VipKey {
        addr: addr(addr_),
        port,
        proto,
        family,
    }
}
