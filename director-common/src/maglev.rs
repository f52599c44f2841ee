//! Weighted Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and
//! Reliable Software Network Load Balancer", NSDI 2016, section 3.4).
//!
//! Userspace builds the lookup table; the datapath only reads
//! `table[flow_hash % size]`. Each backend walks its own permutation of the
//! slots, defined by an `(offset, skip)` pair derived from a key that names
//! the server rather than its position in the list. Backends take turns
//! claiming the next free slot of their permutation until the table is full,
//! so when one server leaves, the survivors' permutations are unchanged and
//! mostly reclaim the same slots: almost only the leaver's flows move.

use std::vec::Vec;

/// Table size per virtual server: prime (so every skip generates a full
/// permutation) and large enough that shares are even to well under 1% for
/// a few hundred backends. The same size Katran uses.
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;

// Two unrelated seeds, so a backend's offset and skip are independent.
const SEED_OFFSET: u64 = 0x6a09_e667_f3bc_c908;
const SEED_SKIP: u64 = 0xbb67_ae85_84ca_a73b;

/// The splitmix64 finalizer: a bijection with full avalanche, so sequential
/// keys still get unrelated permutations.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Deterministic trial division; sizes are at most a few million.
pub fn is_prime(n: u32) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n.is_multiple_of(2) || n.is_multiple_of(3) {
        return false;
    }
    let n = n as u64;
    let mut d = 5u64;
    while d * d <= n {
        if n.is_multiple_of(d) || n.is_multiple_of(d + 2) {
            return false;
        }
        d += 6;
    }
    true
}

/// A backend's place in the fill: its position in `backends`, its cursor in
/// its permutation, and its weight credit.
struct Turn {
    index: u32,
    weight: u64,
    next: u32,
    skip: u32,
    credit: u64,
}

const EMPTY: u32 = u32::MAX;

/// Builds a Maglev lookup table of `size` slots, each an index into
/// `backends`.
///
/// `backends[i] = (stable_key, weight)`. `stable_key` must identify the
/// server independently of its position (the control plane passes a hash of
/// its address and port): it alone determines the backend's permutation,
/// and backends take their turns in key order, so neither adding, removing
/// nor reordering entries disturbs the others.
///
/// Weights: the paper's round robin gives every backend one claim per pass.
/// Here each pass a backend gains `weight` credit and claims one slot per
/// `max_weight` of credit (at most one per pass, since no weight exceeds the
/// maximum). Credit starts so that every backend claims in the first pass,
/// so a non-zero weight always gets at least one slot; after that, claims
/// are proportional to weight, so each share is within a slot or two of
/// `weight / total`. Weight-0 backends never appear.
///
/// Returns an empty table if no backend has a non-zero weight, or if `size`
/// is not prime or is smaller than the number of such backends (a
/// configuration error: it also trips a `debug_assert!`).
///
/// Cost: about `size * max_weight / total` passes (never more than `size`)
/// of O(backends) each, plus the paper's O(size log size) probing for free
/// slots.
pub fn table(backends: &[(u64, u32)], size: u32) -> Vec<u32> {
    let mut live: Vec<usize> = (0..backends.len()).filter(|&i| backends[i].1 > 0).collect();
    if live.is_empty() {
        return Vec::new();
    }
    let size_ok = is_prime(size) && live.len() <= size as usize;
    debug_assert!(
        size_ok,
        "Maglev table size {size} must be prime and at least the {} weighted backends",
        live.len()
    );
    if !size_ok {
        return Vec::new();
    }

    // Key order makes the fill independent of the caller's order. Equal
    // keys have equal permutations, so the index tie-break changes nothing
    // observable by key.
    live.sort_unstable_by_key(|&i| (backends[i].0, backends[i].1, i));
    let max_weight = live
        .iter()
        .map(|&i| backends[i].1 as u64)
        .max()
        .unwrap_or(1);
    let m = size as u64;
    let mut turns: Vec<Turn> = live
        .iter()
        .map(|&i| {
            let (key, weight) = backends[i];
            let weight = weight as u64;
            Turn {
                index: i as u32,
                weight,
                next: (mix64(key ^ SEED_OFFSET) % m) as u32,
                // 1..size: with a prime size, every skip visits every slot.
                skip: (mix64(key ^ SEED_SKIP) % (m - 1) + 1) as u32,
                credit: max_weight - weight,
            }
        })
        .collect();

    let mut slots = std::vec![EMPTY; size as usize];
    let mut filled = 0u32;
    // Every pass the heaviest backend claims a slot, so this ends within
    // `size` passes.
    'fill: loop {
        for t in &mut turns {
            t.credit += t.weight;
            if t.credit < max_weight {
                continue;
            }
            t.credit -= max_weight;
            // The permutation is a full cycle and the table is not full, so
            // a free slot exists on it.
            while slots[t.next as usize] != EMPTY {
                t.next = advance(t.next, t.skip, size);
            }
            slots[t.next as usize] = t.index;
            t.next = advance(t.next, t.skip, size);
            filled += 1;
            if filled == size {
                break 'fill;
            }
        }
    }
    slots
}

/// `(pos + skip) % size` without a division; both are below `size`.
#[inline]
fn advance(pos: u32, skip: u32, size: u32) -> u32 {
    let next = pos as u64 + skip as u64;
    if next >= size as u64 {
        (next - size as u64) as u32
    } else {
        next as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::v4_key;
    use crate::hash::flow_hash;

    const SIZE: u32 = DEFAULT_TABLE_SIZE;

    /// Stable keys the way the control plane makes them: a hash of
    /// address:port. Sequential servers, so nearby keys are exercised.
    fn key(i: u32) -> u64 {
        let addr = v4_key([10, 1, (i >> 8) as u8, i as u8]);
        let h = flow_hash(&addr, 80, 0x6b65_7973);
        ((i as u64) << 32) | h as u64
    }

    fn equal(n: u32) -> Vec<(u64, u32)> {
        (0..n).map(|i| (key(i), 1)).collect()
    }

    /// The table with each slot's backend index replaced by its stable key.
    fn owners(backends: &[(u64, u32)], size: u32) -> Vec<u64> {
        table(backends, size)
            .iter()
            .map(|&i| backends[i as usize].0)
            .collect()
    }

    fn shares(t: &[u32], n: usize) -> Vec<f64> {
        let mut c = std::vec![0usize; n];
        for &i in t {
            c[i as usize] += 1;
        }
        c.iter().map(|&c| c as f64 / t.len() as f64).collect()
    }

    /// Deterministic stand-in for random client addresses.
    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(*state)
    }

    #[test]
    fn primes() {
        let small: Vec<u32> = (0..30).filter(|&n| is_prime(n)).collect();
        assert_eq!(small, std::vec![2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert!(is_prime(DEFAULT_TABLE_SIZE), "65537 is the Fermat prime F4");
        assert!(is_prime(4_294_967_291), "largest u32 prime");
        assert!(!is_prime(65_535) && !is_prime(25) && !is_prime(4_294_967_295));
    }

    #[test]
    fn equal_weights_each_within_1_percent_of_a_tenth() {
        let t = table(&equal(10), SIZE);
        assert_eq!(t.len(), SIZE as usize);
        for (i, s) in shares(&t, 10).iter().enumerate() {
            assert!(
                (s - 0.1).abs() <= 0.01,
                "backend {i} holds {:.3}% of slots, want 10% ± 1%",
                s * 100.0
            );
        }
    }

    #[test]
    fn weights_3_1_1_within_1_percent_of_60_20_20() {
        let b = [(key(0), 3), (key(1), 1), (key(2), 1)];
        let s = shares(&table(&b, SIZE), 3);
        for (i, want) in [0.6, 0.2, 0.2].into_iter().enumerate() {
            assert!(
                (s[i] - want).abs() <= 0.01,
                "backend {i} (weight {}) holds {:.3}%, want {}% ± 1%",
                b[i].1,
                s[i] * 100.0,
                want * 100.0
            );
        }
    }

    #[test]
    fn tiny_weight_still_gets_a_slot() {
        let b = [(key(0), u32::MAX), (key(1), 1)];
        let t = table(&b, SIZE);
        assert!(
            t.contains(&1),
            "a weight of 1 next to u32::MAX keeps a slot"
        );
    }

    /// Slots whose owner changed although it was not the removed server.
    fn collateral(before: &[u64], after: &[u64], removed: Option<u64>) -> usize {
        before
            .iter()
            .zip(after)
            .filter(|&(b, a)| b != a && Some(*b) != removed)
            .count()
    }

    #[test]
    fn removing_one_of_10_moves_under_1_percent_of_other_slots() {
        let all = equal(10);
        let before = owners(&all, SIZE);
        for gone in 0..10 {
            let rest: Vec<_> = all.iter().copied().filter(|b| b.0 != all[gone].0).collect();
            let after = owners(&rest, SIZE);
            let extra = collateral(&before, &after, Some(all[gone].0));
            // Measured: 0.15% to 0.25% of the table (100 to 164 slots)
            // depending on which server leaves.
            assert!(
                extra as f64 <= 0.01 * SIZE as f64,
                "removing backend {gone} moved {extra} slots ({:.2}%) it did not own, limit 1%",
                100.0 * extra as f64 / SIZE as f64
            );
        }
    }

    #[test]
    fn adding_an_11th_moves_about_an_eleventh() {
        let ten = equal(10);
        let eleven = equal(11);
        let before = owners(&ten, SIZE);
        let after = owners(&eleven, SIZE);
        let moved = collateral(&before, &after, None);
        // Measured: 9.29% (ideal 1/11 = 9.09%).
        let limit = SIZE as f64 / 11.0 + 0.01 * SIZE as f64;
        assert!(
            moved as f64 <= limit,
            "adding an 11th backend moved {moved} slots ({:.2}%), limit 1/11 + 1% = {:.2}%",
            100.0 * moved as f64 / SIZE as f64,
            100.0 * limit / SIZE as f64
        );
    }

    #[test]
    fn removing_one_of_n_moves_about_1_over_n_of_flows() {
        let mut rng = 1u64;
        let flows: Vec<u32> = (0..100_000)
            .map(|_| {
                let r = splitmix(&mut rng);
                let addr = v4_key((r as u32).to_be_bytes());
                flow_hash(&addr, (r >> 32) as u16, 0xf10e)
            })
            .collect();
        for n in [2u32, 5, 10, 50] {
            let all = equal(n);
            let rest = &all[1..];
            let before = owners(&all, SIZE);
            let after = owners(rest, SIZE);
            let moved = flows
                .iter()
                .filter(|&&h| before[(h % SIZE) as usize] != after[(h % SIZE) as usize])
                .count();
            let frac = moved as f64 / flows.len() as f64;
            assert!(
                frac <= 1.0 / n as f64 + 0.01,
                "removing 1 of {n} servers moved {:.2}% of 100000 flows, limit 1/{n} + 1%",
                frac * 100.0
            );
        }
    }

    #[test]
    fn weight_0_never_appears() {
        let b = [(key(0), 2), (key(1), 0), (key(2), 1)];
        let t = table(&b, SIZE);
        assert_eq!(t.len(), SIZE as usize);
        assert!(!t.contains(&1), "weight-0 backend got slots");
        assert!(t.contains(&0) && t.contains(&2));
    }

    #[test]
    fn nothing_to_schedule_gives_an_empty_table() {
        assert!(table(&[], SIZE).is_empty(), "no backends");
        assert!(
            table(&[(key(0), 0), (key(1), 0)], SIZE).is_empty(),
            "all weights 0"
        );
    }

    #[test]
    fn deterministic() {
        let b = [(key(0), 5), (key(1), 2), (key(2), 7), (key(3), 1)];
        assert_eq!(table(&b, SIZE), table(&b, SIZE));
    }

    #[test]
    fn input_order_does_not_change_slot_owners() {
        let b: Vec<_> = (0..7).map(|i| (key(i), 1 + i % 3)).collect();
        let mut shuffled = b.clone();
        shuffled.reverse();
        shuffled.swap(1, 4);
        assert_eq!(
            owners(&b, SIZE),
            owners(&shuffled, SIZE),
            "same servers in another order own different slots"
        );
    }

    #[test]
    fn small_prime_table_is_full_and_each_backend_present() {
        let t = table(&equal(5), 7);
        assert_eq!(t.len(), 7);
        for i in 0..5 {
            assert!(t.contains(&i), "backend {i} missing from {t:?}");
        }
    }

    #[test]
    fn bad_size_gives_an_empty_table() {
        // A debug build also trips the debug_assert!; a release build just
        // refuses to build a table.
        for (n, size) in [(3, 65_536), (10, 7)] {
            let r = std::panic::catch_unwind(|| table(&equal(n), size));
            match r {
                Ok(t) => assert!(t.is_empty(), "{n} backends in {size} slots built {t:?}"),
                Err(_) if cfg!(debug_assertions) => {}
                Err(_) => panic!("{n} backends in {size} slots panicked in a release build"),
            }
        }
    }

    /// Manual timing: `cargo test -p director-common --features user
    /// --release -- --ignored build_time_report --nocapture`.
    #[test]
    #[ignore = "timing report for manual runs, not a test"]
    fn build_time_report() {
        let weighted: Vec<_> = (0..100).map(|i| (key(i), 1 + i % 10)).collect();
        // The most passes: the heavy one claims nearly every slot alone.
        let skewed: Vec<_> = (0..100)
            .map(|i| (key(i), if i == 0 { 1_000_000 } else { 1 }))
            .collect();
        for (what, b) in [
            ("equal", equal(100)),
            ("weights 1..=10", weighted),
            ("one 1e6, 99 of 1", skewed),
        ] {
            let start = std::time::Instant::now();
            let t = table(&b, SIZE);
            let took = start.elapsed();
            assert_eq!(t.len(), SIZE as usize);
            std::println!("maglev: {SIZE} slots x 100 backends ({what}): {took:?}");
        }
    }
}
