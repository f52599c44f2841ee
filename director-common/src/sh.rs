//! Source hashing in the style of IPVS's `sh` scheduler (`ip_vs_sh.c`).
//!
//! The datapath hashes the client address into a table of backend indices,
//! so one client keeps reaching one server while the set is unchanged. As
//! in IPVS, slots are dealt to backends in round-robin turns, each backend
//! taking `weight` consecutive slots per turn.
//!
//! This is not consistent hashing: adding or removing a backend shifts the
//! deal for every later slot, so most clients move to a different server.
//! Use Maglev ([`crate::maglev`], IPVS's `mh`) where changes to the server
//! set must leave other clients in place.

use std::vec::Vec;

/// Prime, so hashes that share a common factor with the size do not alias.
/// Any non-zero size works.
pub const DEFAULT_TABLE_SIZE: u32 = 4093;

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Slots each backend ends up with: proportional to weight, at least one
/// for every non-zero weight if `size` allows, summing to exactly `size`.
///
/// IPVS simply deals turns until its table is full, so the last, truncated
/// turn skews shares by up to one weight's worth of slots; fixing the quotas
/// first keeps every share within a couple of slots of proportional.
fn quotas(weights: &[u32], size: u64) -> Vec<u64> {
    let total: u64 = weights.iter().map(|&w| w as u64).sum();
    let nonzero = weights.iter().filter(|&&w| w > 0).count() as u64;
    let base = u64::from(size >= nonzero);
    let budget = size - base * nonzero;
    let mut q: Vec<u64> = weights
        .iter()
        .map(|&w| {
            if w == 0 {
                0
            } else {
                base + w as u64 * budget / total
            }
        })
        .collect();
    // Largest remainders take the slots lost to rounding down; ties go to
    // the earlier backend.
    let mut by_remainder: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] > 0).collect();
    by_remainder.sort_by_key(|&i| (std::cmp::Reverse(weights[i] as u64 * budget % total), i));
    let short = size - q.iter().sum::<u64>();
    for &i in by_remainder.iter().take(short as usize) {
        q[i] += 1;
    }
    q
}

/// Builds a source-hashing table of `size` slots, each an index into
/// `weights`. Weight-0 backends never appear; if every weight is 0 (or
/// there are none), or `size` is 0, the table is empty.
///
/// Weights are first divided by their common divisor, so 300:100 deals
/// turns of 3 and 1 slots, like 3:1.
pub fn table(weights: &[u32], size: u32) -> Vec<u32> {
    let g = weights.iter().fold(0u64, |g, &w| gcd(g, w as u64));
    if g == 0 || size == 0 {
        return Vec::new();
    }
    let mut left = quotas(weights, size as u64);
    let mut out = Vec::with_capacity(size as usize);
    // Every round deals at least one slot, so at most `size` rounds.
    while out.len() < size as usize {
        for (i, &w) in weights.iter().enumerate() {
            let take = (w as u64 / g).min(left[i]);
            left[i] -= take;
            out.extend(std::iter::repeat_n(i as u32, take as usize));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: u32 = DEFAULT_TABLE_SIZE;

    fn counts(t: &[u32], n: usize) -> Vec<usize> {
        let mut c = std::vec![0; n];
        for &i in t {
            c[i as usize] += 1;
        }
        c
    }

    fn assert_proportional(weights: &[u32]) {
        let t = table(weights, SIZE);
        assert_eq!(
            t.len(),
            SIZE as usize,
            "weights {weights:?}: table not full"
        );
        let total: f64 = weights.iter().map(|&w| w as f64).sum();
        for (i, &c) in counts(&t, weights.len()).iter().enumerate() {
            let share = c as f64 / SIZE as f64;
            let want = weights[i] as f64 / total;
            assert!(
                (share - want).abs() <= 0.01,
                "weights {weights:?}: backend {i} holds {:.2}%, want {:.2}% ± 1%",
                share * 100.0,
                want * 100.0
            );
        }
    }

    #[test]
    fn shares_within_1_percent_of_weights() {
        assert_proportional(&[1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
        assert_proportional(&[3, 1, 1]);
        assert_proportional(&[100, 1]);
        assert_proportional(&[7, 13, 1, 50, 2]);
        assert_proportional(&[u32::MAX, u32::MAX / 2]);
    }

    #[test]
    fn deals_weight_consecutive_turns_round_robin() {
        assert_eq!(table(&[2, 1], 9), std::vec![0, 0, 1, 0, 0, 1, 0, 0, 1]);
        assert_eq!(
            table(&[300, 100], 8),
            std::vec![0, 0, 0, 1, 0, 0, 0, 1],
            "weights reduced by their gcd"
        );
    }

    #[test]
    fn every_nonzero_weight_keeps_a_slot() {
        let c = counts(&table(&[1_000_000, 1], SIZE), 2);
        assert_eq!(c[1], 1, "weight 1 against 1e6 in {SIZE} slots");
    }

    #[test]
    fn weight_0_excluded() {
        let t = table(&[0, 2, 0, 1], SIZE);
        assert_eq!(t.len(), SIZE as usize);
        let c = counts(&t, 4);
        assert_eq!((c[0], c[2]), (0, 0), "weight-0 backends got slots: {c:?}");
    }

    #[test]
    fn empty_cases() {
        assert!(table(&[], SIZE).is_empty(), "no backends");
        assert!(table(&[0, 0], SIZE).is_empty(), "all weights 0");
        assert!(table(&[1, 2], 0).is_empty(), "zero-size table");
    }

    #[test]
    fn more_backends_than_slots_still_fills_the_table() {
        let t = table(&[1; 10], 7);
        assert_eq!(t, std::vec![0, 1, 2, 3, 4, 5, 6]);
    }
}
