//! The flow hash and prefix masking shared by the datapath and userspace.
//!
//! Everything here also runs in the XDP program, so it is written for the
//! verifier: fixed-size arrays only, loops with constant bounds, wrapping
//! arithmetic, no panicking paths (no slice indexing, no checked shifts).

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

/// One MurmurHash3 (x86_32) body step.
#[inline(always)]
fn mix_word(h: u32, k: u32) -> u32 {
    let k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

/// MurmurHash3's finalizer: full avalanche, so inputs that differ in one
/// low bit (sequential addresses, ports) land far apart.
#[inline(always)]
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Hash of one flow endpoint: an address in the 16-byte key form and a port.
///
/// This is the single hash both sides use: the datapath hashes a packet's
/// source with it to index a scheduling table, and userspace uses it to
/// predict or test those choices, so the two must never diverge. It is
/// MurmurHash3 (x86_32) over the 16 address bytes followed by the port as a
/// 32-bit word, with the words read in native byte order: both sides run on
/// the same host, and reading natively saves byte swaps in the datapath.
/// Pass the port exactly as the datapath sees it (network byte order).
///
/// `seed` lets each virtual server (or each use) hash independently, so one
/// client does not land on the same relative slot everywhere.
/// Seed of the flow hash that sh and mh index their tables with: the
/// datapath and userspace (tests, table inspection) must agree on it.
pub const SCHED_SEED: u32 = 0x6469_7231;

#[inline(always)]
pub fn flow_hash(addr: &[u8; 16], port: u16, seed: u32) -> u32 {
    // Destructured rather than indexed so no bounds check can survive.
    let [
        a0,
        a1,
        a2,
        a3,
        a4,
        a5,
        a6,
        a7,
        a8,
        a9,
        a10,
        a11,
        a12,
        a13,
        a14,
        a15,
    ] = *addr;
    let mut h = seed;
    h = mix_word(h, u32::from_ne_bytes([a0, a1, a2, a3]));
    h = mix_word(h, u32::from_ne_bytes([a4, a5, a6, a7]));
    h = mix_word(h, u32::from_ne_bytes([a8, a9, a10, a11]));
    h = mix_word(h, u32::from_ne_bytes([a12, a13, a14, a15]));
    h = mix_word(h, port as u32);
    // Murmur folds in the input length (20 bytes) before finalizing.
    fmix32(h ^ 20)
}

/// Keeps the first `prefix_len` bits of `addr` and zeroes the rest
/// (values above 128 keep everything).
///
/// Word by word with a branch-free mask, so the verifier sees straight-line
/// code whatever the prefix, and the result is built from whole words (a
/// zeroed byte array costs the BPF target a byte-at-a-time memset()).
#[inline(always)]
pub fn mask_addr(addr: &[u8; 16], prefix_len: u8) -> [u8; 16] {
    let mut out = [0u32; 4];
    let mut bit = 0u32;
    for (i, o) in out.iter_mut().enumerate() {
        let w = u32::from_be_bytes([
            addr[4 * i],
            addr[4 * i + 1],
            addr[4 * i + 2],
            addr[4 * i + 3],
        ]);
        // Bits of this word inside the prefix, 0..=32; !0 << 32 in 64 bits
        // leaves no low bits, so keep = 0 masks everything.
        let keep = (prefix_len as u32).saturating_sub(bit).min(32);
        let mask = (u64::MAX << (32 - keep)) as u32;
        *o = (w & mask).to_be();
        bit += 32;
    }
    // SAFETY: same size, every bit pattern valid for both.
    unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>(out) }
}

#[cfg(test)]
mod tests {
    // The crate is no_std without the "user" feature; the tests need Vec.
    extern crate std;

    use super::*;
    use crate::abi::v4_key;
    use std::vec::Vec;

    fn sequential_v4(n: u32) -> impl Iterator<Item = [u8; 16]> {
        let base = u32::from_be_bytes([10, 0, 0, 0]);
        (0..n).map(move |i| v4_key((base + i).to_be_bytes()))
    }

    fn bucket_counts(hashes: &[u32], buckets: u32) -> Vec<u64> {
        let mut c = std::vec![0u64; buckets as usize];
        for &h in hashes {
            c[(h % buckets) as usize] += 1;
        }
        c
    }

    /// Pearson's chi-square statistic divided by its degrees of freedom:
    /// about 1 for a uniform hash, with standard deviation sqrt(2 / df).
    fn chi2_per_df(counts: &[u64]) -> f64 {
        let n: u64 = counts.iter().sum();
        let e = n as f64 / counts.len() as f64;
        let chi2: f64 = counts.iter().map(|&o| (o as f64 - e).powi(2) / e).sum();
        chi2 / (counts.len() - 1) as f64
    }

    fn assert_uniform(what: &str, hashes: &[u32]) {
        // 65537 buckets for 65536 keys: df = 65536, so sd(chi2/df) = 0.0055;
        // ±3% is more than 5 sd. Poisson(1) tops out around 8 per bucket.
        let big = bucket_counts(hashes, 65_537);
        let ratio = chi2_per_df(&big);
        assert!(
            (0.97..=1.03).contains(&ratio),
            "{what}: chi2/df over 65537 buckets is {ratio:.4}, want 1 ± 0.03"
        );
        let max = big.iter().copied().max().unwrap_or(0);
        assert!(max <= 12, "{what}: fullest of 65537 buckets holds {max}");

        let small = bucket_counts(hashes, 7);
        let mean = small.iter().sum::<u64>() as f64 / 7.0;
        for (b, &c) in small.iter().enumerate() {
            let dev = (c as f64 - mean) / mean;
            assert!(
                dev.abs() <= 0.03,
                "{what}: bucket {b} of 7 holds {c}, {:+.2}% off the mean (limit ±3%)",
                dev * 100.0
            );
        }
    }

    #[test]
    fn sequential_ipv4_addresses_spread_evenly() {
        assert_uniform(
            "65536 sequential IPv4 addresses",
            &sequential_v4(65_536)
                .map(|a| flow_hash(&a, 0, 0))
                .collect::<Vec<_>>(),
        );
    }

    #[test]
    fn all_ports_of_one_address_spread_evenly() {
        let addr = v4_key([192, 0, 2, 1]);
        assert_uniform(
            "65536 ports of 192.0.2.1",
            &(0..=u16::MAX)
                .map(|p| flow_hash(&addr, p, 0x5eed))
                .collect::<Vec<_>>(),
        );
    }

    #[test]
    fn sequential_ipv6_addresses_spread_evenly() {
        // Only the last word varies: the opposite end from IPv4.
        let v6 = (0..65_536u32).map(|i| {
            let mut a = [0u8; 16];
            a[0] = 0x20;
            a[1] = 0x01;
            a[12..].copy_from_slice(&i.to_be_bytes());
            a
        });
        assert_uniform(
            "65536 sequential IPv6 addresses",
            &v6.map(|a| flow_hash(&a, 443, 7)).collect::<Vec<_>>(),
        );
    }

    #[test]
    fn seeds_give_independent_hashes() {
        let addrs: Vec<_> = sequential_v4(10_000).collect();
        let same = addrs
            .iter()
            .filter(|a| flow_hash(a, 80, 1) == flow_hash(a, 80, 2))
            .count();
        assert_eq!(
            same, 0,
            "seeds 1 and 2 collided on {same} of 10000 addresses"
        );
        // Independent seeds should agree on a 7-way choice about 1/7 of the time.
        let agree = addrs
            .iter()
            .filter(|a| flow_hash(a, 80, 1) % 7 == flow_hash(a, 80, 2) % 7)
            .count();
        let frac = agree as f64 / addrs.len() as f64;
        assert!(
            (frac - 1.0 / 7.0).abs() < 0.02,
            "seeds 1 and 2 pick the same of 7 buckets for {:.1}% of addresses, want ~14.3%",
            frac * 100.0
        );
    }

    #[test]
    fn port_and_every_address_word_matter() {
        let a = v4_key([10, 1, 2, 3]);
        let h = flow_hash(&a, 80, 0);
        assert_ne!(h, flow_hash(&a, 81, 0), "port ignored");
        for byte in 0..16 {
            let mut b = a;
            b[byte] ^= 1;
            assert_ne!(h, flow_hash(&b, 80, 0), "address byte {byte} ignored");
        }
    }

    /// Textbook MurmurHash3 x86_32 over a byte slice, to pin `flow_hash` to
    /// the published algorithm rather than to itself.
    #[cfg(target_endian = "little")]
    fn murmur3_32(data: &[u8], seed: u32) -> u32 {
        let mut h = seed;
        let mut chunks = data.chunks_exact(4);
        for c in &mut chunks {
            h = mix_word(h, u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        }
        let tail = chunks.remainder();
        if !tail.is_empty() {
            let mut k = 0u32;
            for (i, &b) in tail.iter().enumerate() {
                k |= (b as u32) << (8 * i);
            }
            h ^= k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        }
        fmix32(h ^ data.len() as u32)
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn flow_hash_is_murmur3_of_address_and_port() {
        assert_eq!(
            murmur3_32(b"The quick brown fox jumps over the lazy dog", 0),
            0x2e4f_f723,
            "reference murmur3 disagrees with the published test vector"
        );
        let addr = [
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef,
        ];
        let mut buf = [0u8; 20];
        buf[..16].copy_from_slice(&addr);
        buf[16..].copy_from_slice(&(8080u32).to_le_bytes());
        assert_eq!(flow_hash(&addr, 8080, 42), murmur3_32(&buf, 42));
    }

    #[test]
    fn mask_addr_keeps_only_the_prefix() {
        let a = [0xffu8; 16];
        let masked = |bits| mask_addr(&a, bits);
        assert_eq!(masked(0), [0; 16], "/0 keeps nothing");
        let mut want = [0u8; 16];
        want[0] = 0xff;
        assert_eq!(masked(8), want, "/8");
        want[1] = 0xff;
        want[2] = 0xff;
        assert_eq!(masked(24), want, "/24");
        want[3] = 0x80;
        assert_eq!(masked(25), want, "/25 keeps the top bit of byte 3");
        want[3] = 0xff;
        assert_eq!(masked(32), want, "/32");
        assert_eq!(masked(128), a, "/128 keeps everything");
        assert_eq!(masked(200), a, "beyond /128 keeps everything");
    }

    #[test]
    fn mask_addr_on_a_real_address() {
        assert_eq!(
            mask_addr(&v4_key([192, 168, 37, 201]), 20),
            v4_key([192, 168, 32, 0]),
            "192.168.37.201/20"
        );
    }
}
