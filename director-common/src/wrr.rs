//! Smooth weighted round robin (the nginx algorithm) unrolled into a ring.
//!
//! Userspace computes the whole sequence once per configuration; the
//! datapath only walks it with a per-CPU cursor. Over any window of one ring
//! length each server appears exactly in proportion to its weight, and the
//! picks are interleaved rather than bunched (3:1 gives a a b a, not a a a b).

use std::vec::Vec;

/// Longest ring one virtual server may use; larger weight sums are scaled
/// down proportionally (every non-zero weight keeps at least one slot).
pub const MAX_RING: usize = 65_536;

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Reduces `weights` to the smallest ring with the same proportions that
/// fits in `max_len` slots.
pub fn reduce(weights: &[u32], max_len: usize) -> Vec<u32> {
    let g = weights.iter().fold(0u64, |g, &w| gcd(g, w as u64));
    if g == 0 {
        return weights.iter().map(|_| 0).collect();
    }
    let reduced: Vec<u64> = weights.iter().map(|&w| w as u64 / g).collect();
    let total: u64 = reduced.iter().sum();
    if total <= max_len as u64 {
        return reduced.iter().map(|&w| w as u32).collect();
    }
    let nonzero = reduced.iter().filter(|&&w| w > 0).count() as u64;
    let budget = (max_len as u64).saturating_sub(nonzero);
    reduced
        .iter()
        .map(|&w| {
            if w == 0 {
                0
            } else {
                (1 + w * budget / total) as u32
            }
        })
        .collect()
}

/// The smooth-wrr sequence of server indices (positions in `weights`).
/// Servers with weight 0 never appear; all-zero weights give an empty ring.
pub fn sequence(weights: &[u32], max_len: usize) -> Vec<u32> {
    let w = reduce(weights, max_len);
    let total: i64 = w.iter().map(|&x| x as i64).sum();
    let mut current = std::vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0usize;
        for i in 0..w.len() {
            current[i] += w[i] as i64;
            if current[i] > current[best] || (w[best] == 0 && w[i] > 0) {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u32);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(seq: &[u32], n: usize) -> Vec<usize> {
        let mut c = std::vec![0; n];
        for &i in seq {
            c[i as usize] += 1;
        }
        c
    }

    #[test]
    fn three_to_one_is_interleaved() {
        assert_eq!(sequence(&[3, 1], MAX_RING), std::vec![0, 0, 1, 0]);
    }

    #[test]
    fn nginx_reference_sequence() {
        // The example from nginx's smooth wrr commit: weights 5, 1, 1.
        assert_eq!(
            sequence(&[5, 1, 1], MAX_RING),
            std::vec![0, 0, 1, 0, 2, 0, 0]
        );
    }

    #[test]
    fn proportions_are_exact_and_reduced_by_gcd() {
        let seq = sequence(&[300, 100, 200], MAX_RING);
        assert_eq!(seq.len(), 6, "gcd 100 reduces the ring to 6 slots");
        assert_eq!(counts(&seq, 3), std::vec![3, 1, 2]);
    }

    #[test]
    fn zero_weight_gets_no_new_connections() {
        let seq = sequence(&[0, 2, 0, 1], MAX_RING);
        assert_eq!(counts(&seq, 4), std::vec![0, 2, 0, 1]);
        assert!(sequence(&[0, 0], MAX_RING).is_empty());
        assert!(sequence(&[], MAX_RING).is_empty());
    }

    #[test]
    fn huge_weights_are_scaled_into_the_ring() {
        let seq = sequence(&[1_000_000, 1, 499_999], 1000);
        assert!(seq.len() <= 1000, "ring of {} slots", seq.len());
        let c = counts(&seq, 3);
        assert!(c[1] >= 1, "a tiny non-zero weight keeps a slot");
        let ratio = c[0] as f64 / c[2] as f64;
        assert!(
            (ratio - 2.0).abs() < 0.02,
            "2:1 kept within 1%, got {ratio}"
        );
    }
}
