//! Deterministic payloads shared by the lab server and the tests.
//!
//! The download pattern has period 251 (a prime), so a frame boundary never lines up with
//! it and a dropped, duplicated or reordered segment always shows up as a mismatch.

/// Byte `i` of the `/bytes/<n>` download: `(i * 31 + 7) % 251`.
pub fn pattern_byte(i: u64) -> u8 {
    // Reduce first: `i * 31` must not overflow for any offset we serve.
    ((i % 251 * 31 + 7) % 251) as u8
}

/// Fills `buf` with the pattern starting at stream offset `offset`.
pub fn fill_pattern(offset: u64, buf: &mut [u8]) {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = pattern_byte(offset + k as u64);
    }
}

/// The first `n` bytes of the pattern.
pub fn pattern(n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    fill_pattern(0, &mut v);
    v
}

/// Incremental 64-bit FNV-1a, the hash `/upload` reports.
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a(u64);

impl Fnv1a {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    pub fn new() -> Self {
        Self(Self::OFFSET)
    }

    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(Self::PRIME);
        }
    }

    pub fn finish(self) -> u64 {
        self.0
    }
}

impl Default for Fnv1a {
    fn default() -> Self {
        Self::new()
    }
}

/// FNV-1a of a whole buffer.
pub fn fnv1a(data: &[u8]) -> u64 {
    let mut h = Fnv1a::new();
    h.update(data);
    h.finish()
}

/// `n` pseudo-random bytes from `seed` (xorshift64*): upload bodies with no structure the
/// datapath could accidentally preserve.
pub fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_matches_the_formula() {
        let p = pattern(600);
        for (i, &b) in p.iter().enumerate() {
            assert_eq!(b, ((i * 31 + 7) % 251) as u8);
        }
        let mut tail = [0u8; 10];
        fill_pattern(590, &mut tail);
        assert_eq!(&tail, &p[590..600]);
    }

    #[test]
    fn fnv1a_known_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
        let mut h = Fnv1a::new();
        h.update(b"foo");
        h.update(b"bar");
        assert_eq!(h.finish(), fnv1a(b"foobar"));
    }

    #[test]
    fn pseudo_random_is_deterministic_and_sized() {
        assert_eq!(pseudo_random(1001, 7), pseudo_random(1001, 7));
        assert_ne!(pseudo_random(64, 7), pseudo_random(64, 8));
        assert_eq!(pseudo_random(13, 1).len(), 13);
    }
}
