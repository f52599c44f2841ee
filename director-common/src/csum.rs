//! Internet checksum arithmetic (RFC 1071) and incremental update (RFC 1624).
//!
//! Checksums and the words fed to them are handled as they sit in memory
//! (`u16::from_ne_bytes` of the two bytes): one's-complement sums do not
//! depend on byte order as long as every word is read the same way.

#[inline(always)]
fn word(b: [u8; 2]) -> u32 {
    u16::from_ne_bytes(b) as u32
}

/// Folds a 32-bit one's-complement accumulator into 16 bits.
#[inline(always)]
pub fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The one's-complement change `~m + m'` of replacing bytes `old` by `new`
/// (equal lengths, even), unfolded. Deltas of several fields add up (a u32
/// holds thousands), and one delta applies to every checksum that covers
/// the field: [`apply`].
#[inline(always)]
pub fn delta<const N: usize>(old: &[u8; N], new: &[u8; N]) -> u32 {
    let mut d = 0u32;
    let mut i = 0;
    while i + 1 < N {
        d += (!word([old[i], old[i + 1]]) & 0xffff) + word([new[i], new[i + 1]]);
        i += 2;
    }
    d
}

/// RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`, with a [`delta`].
#[inline(always)]
pub fn apply(check: u16, delta: u32) -> u16 {
    !fold((!check) as u32 + fold(delta) as u32)
}

/// [`apply`] for one 16-bit field.
#[inline(always)]
pub fn replace2(check: u16, old: [u8; 2], new: [u8; 2]) -> u16 {
    apply(check, delta(&old, &new))
}

/// [`apply`] for a 32-bit field (an IPv4 address).
#[inline(always)]
pub fn replace4(check: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    apply(check, delta(&old, &new))
}

/// [`apply`] for a 128-bit field (an IPv6 address).
#[inline(always)]
pub fn replace16(check: u16, old: &[u8; 16], new: &[u8; 16]) -> u16 {
    apply(check, delta(old, new))
}

/// UDP transmits a computed zero as all ones; zero means "no checksum".
#[inline(always)]
pub fn udp_nonzero(check: u16) -> u16 {
    if check == 0 { 0xffff } else { check }
}

/// One's-complement sum of `data` added to `initial` (not folded, not inverted).
pub fn sum(data: &[u8], initial: u32) -> u32 {
    let mut acc = initial as u64;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += word([c[0], c[1]]) as u64;
    }
    if let [last] = chunks.remainder() {
        acc += word([*last, 0]) as u64;
    }
    while acc >> 32 != 0 {
        acc = (acc & 0xffff_ffff) + (acc >> 32);
    }
    acc as u32
}

/// Full checksum of `data` (header checksum field must be zero in `data`).
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data, 0))
}

/// One's-complement sum of the IPv4 pseudo-header for a transport checksum.
pub fn ipv4_pseudo(src: [u8; 4], dst: [u8; 4], proto: u8, len: u16) -> u32 {
    let mut p = [0u8; 12];
    p[..4].copy_from_slice(&src);
    p[4..8].copy_from_slice(&dst);
    p[9] = proto;
    p[10..].copy_from_slice(&len.to_be_bytes());
    sum(&p, 0)
}

/// Longest TCP segment of a SYN the datapath verifies before it makes an
/// entry (`Reason::BadSyn`): a handshake segment with options and a Fast
/// Open payload of a full Ethernet MTU.
pub const SYN_CHECKED_MAX: usize = 1536;

/// One's-complement sum (unfolded) of a transport pseudo-header (RFC 9293
/// 3.1, RFC 8200 8.1), addresses in key form: an IPv4 key's twelve zero
/// bytes add nothing, so one rule serves both families.
#[inline(always)]
pub fn pseudo(src: &[u8; 16], dst: &[u8; 16], proto: u8, len: u16) -> u32 {
    let mut s = word([0, proto]) + word(len.to_be_bytes());
    let mut i = 0;
    while i < 16 {
        s += word([src[i], src[i + 1]]) + word([dst[i], dst[i + 1]]);
        i += 2;
    }
    s
}

/// Whether a segment's sum with its pseudo-header (checksum field included)
/// is what a correct checksum gives.
#[inline(always)]
pub fn verifies(sum: u32) -> bool {
    fold(sum) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    // A 20-byte IPv4 header from RFC 1071 style examples, checksum zeroed.
    fn header(dst: [u8; 4]) -> [u8; 20] {
        let mut h = [
            0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0, 0, 198, 51, 100, 2, 0,
            0, 0, 0,
        ];
        h[16..].copy_from_slice(&dst);
        h
    }

    fn stored(h: &[u8; 20]) -> u16 {
        checksum(h)
    }

    #[test]
    fn full_checksum_verifies_to_zero() {
        let mut h = header([192, 0, 2, 10]);
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_ne_bytes());
        assert_eq!(
            fold(sum(&h, 0)),
            0xffff,
            "a header with its checksum sums to all ones"
        );
    }

    #[test]
    fn replace4_matches_recomputation() {
        let addrs: [[u8; 4]; 5] = [
            [192, 0, 2, 10],
            [10, 1, 0, 11],
            [255, 255, 255, 255],
            [0, 0, 0, 0],
            [203, 0, 113, 254],
        ];
        for old in addrs {
            for new in addrs {
                let before = stored(&header(old));
                let after = stored(&header(new));
                assert_eq!(
                    replace4(before, old, new),
                    after,
                    "incremental update {old:?} -> {new:?} differs from full recomputation"
                );
            }
        }
    }

    #[test]
    fn replace2_matches_recomputation() {
        for (old, new) in [
            (80u16, 8080u16),
            (8080, 80),
            (0, 65535),
            (65535, 1),
            (443, 443),
        ] {
            let mut a = header([192, 0, 2, 10]);
            a[0..2].copy_from_slice(&old.to_be_bytes());
            let mut b = a;
            b[0..2].copy_from_slice(&new.to_be_bytes());
            assert_eq!(
                replace2(checksum(&a), old.to_be_bytes(), new.to_be_bytes()),
                checksum(&b),
                "port {old} -> {new}"
            );
        }
    }

    #[test]
    fn replace16_matches_recomputation() {
        let a: [u8; 16] = [
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let b: [u8; 16] = [
            0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0x12, 0x34,
        ];
        let mut buf = [0u8; 40];
        buf[..16].copy_from_slice(&a);
        buf[20..24].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let before = checksum(&buf);
        buf[..16].copy_from_slice(&b);
        assert_eq!(replace16(before, &a, &b), checksum(&buf));
        assert_eq!(
            replace16(before, &a, &a),
            before,
            "no change, same checksum"
        );
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x01], 0), sum(&[0x01, 0x00], 0));
    }

    #[test]
    fn udp_zero_becomes_all_ones() {
        assert_eq!(udp_nonzero(0), 0xffff);
        assert_eq!(udp_nonzero(0x1234), 0x1234);
    }

    /// A SYN with options, its checksum set by the full computation.
    fn syn(src: &[u8; 16], dst: &[u8; 16]) -> [u8; 24] {
        let mut seg = [
            0xc3, 0x50, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x60, 0x02, 0xfa, 0xf0, 0, 0, 0, 0,
            0x02, 0x04, 0x05, 0xb4,
        ];
        let len = seg.len() as u16;
        let c = !fold(sum(&seg, pseudo(src, dst, 6, len)));
        seg[16..18].copy_from_slice(&c.to_ne_bytes());
        seg
    }

    #[test]
    fn the_pseudo_header_of_an_ipv4_key_is_the_ipv4_pseudo_header() {
        let (a, b) = ([198, 51, 100, 7], [192, 0, 2, 10]);
        let (ka, kb) = (crate::abi::v4_key(a), crate::abi::v4_key(b));
        assert_eq!(
            fold(pseudo(&ka, &kb, 6, 44)),
            fold(ipv4_pseudo(a, b, 6, 44)),
            "one rule for both families"
        );
    }

    #[test]
    fn a_segment_verifies_until_a_bit_flips() {
        let v6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
        let v4 = crate::abi::v4_key([192, 0, 2, 10]);
        for (src, dst) in [(v6, v6), (v4, v4)] {
            let seg = syn(&src, &dst);
            let ph = pseudo(&src, &dst, 6, seg.len() as u16);
            assert!(verifies(sum(&seg, ph)), "a correct checksum verifies");
            for bit in 0..seg.len() * 8 {
                let mut bad = seg;
                bad[bit / 8] ^= 1 << (bit % 8);
                assert!(!verifies(sum(&bad, ph)), "bit {bit} flipped still verifies");
            }
            let other = pseudo(&src, &dst, 6, seg.len() as u16 + 2);
            assert!(
                !verifies(sum(&seg, other)),
                "a wrong length does not verify"
            );
        }
    }
}
