//! Allocation of the `RING` array among virtual servers' scheduling lists.
//!
//! A list is never rewritten in place: a new one goes to free slots, then
//! the `VipInfo` that names it is swapped, so a packet sees the old lists or
//! the new ones, never a mix. The old slots are reused only after a grace
//! period, because a packet that read the old `VipInfo` may still be
//! indexing them.

use std::time::{Duration, Instant};

/// How long replaced slots stay untouched: far longer than any one XDP
/// program run.
pub const GRACE: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub base: u32,
    pub len: u32,
}

#[derive(Debug)]
pub struct RingAlloc {
    /// Free ranges, sorted by base, never adjacent.
    free: Vec<Region>,
    /// Released ranges waiting out their grace period.
    retired: Vec<(Instant, Region)>,
}

impl RingAlloc {
    pub fn new(capacity: u32) -> RingAlloc {
        RingAlloc {
            free: vec![Region {
                base: 0,
                len: capacity,
            }],
            retired: Vec::new(),
        }
    }

    /// Marks a range as used (adopted from a previous run).
    pub fn reserve(&mut self, r: Region) {
        if r.len == 0 {
            return;
        }
        let mut next = Vec::with_capacity(self.free.len() + 1);
        for f in self.free.drain(..) {
            let (f_end, r_end) = (f.base + f.len, r.base + r.len);
            if r_end <= f.base || r.base >= f_end {
                next.push(f);
                continue;
            }
            if f.base < r.base {
                next.push(Region {
                    base: f.base,
                    len: r.base - f.base,
                });
            }
            if r_end < f_end {
                next.push(Region {
                    base: r_end,
                    len: f_end - r_end,
                });
            }
        }
        self.free = next;
    }

    /// First fit; `None` when no free range is large enough.
    pub fn alloc(&mut self, len: u32, now: Instant) -> Option<Region> {
        self.reclaim(now);
        if len == 0 {
            return Some(Region { base: 0, len: 0 });
        }
        let i = self.free.iter().position(|f| f.len >= len)?;
        let f = &mut self.free[i];
        let r = Region { base: f.base, len };
        f.base += len;
        f.len -= len;
        if f.len == 0 {
            self.free.remove(i);
        }
        Some(r)
    }

    /// Frees a range after the grace period.
    pub fn retire(&mut self, r: Region, now: Instant) {
        if r.len > 0 {
            self.retired.push((now + GRACE, r));
        }
    }

    fn reclaim(&mut self, now: Instant) {
        let (due, wait): (Vec<_>, Vec<_>) = self.retired.drain(..).partition(|(t, _)| *t <= now);
        self.retired = wait;
        for (_, r) in due {
            self.free_now(r);
        }
    }

    fn free_now(&mut self, r: Region) {
        let i = self.free.partition_point(|f| f.base < r.base);
        self.free.insert(i, r);
        // Merge with neighbours.
        if i + 1 < self.free.len() && self.free[i].base + self.free[i].len == self.free[i + 1].base
        {
            self.free[i].len += self.free[i + 1].len;
            self.free.remove(i + 1);
        }
        if i > 0 && self.free[i - 1].base + self.free[i - 1].len == self.free[i].base {
            self.free[i - 1].len += self.free[i].len;
            self.free.remove(i);
        }
    }

    /// Free slots, counting retired ones still in their grace period as used.
    pub fn available(&self) -> u32 {
        self.free.iter().map(|f| f.len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retired_slots_come_back_only_after_the_grace_period() {
        let t0 = Instant::now();
        let mut a = RingAlloc::new(10);
        let r = a.alloc(10, t0).expect("fits");
        assert_eq!(r, Region { base: 0, len: 10 });
        assert!(a.alloc(1, t0).is_none(), "full");
        a.retire(r, t0);
        assert!(
            a.alloc(1, t0 + GRACE / 2).is_none(),
            "still in its grace period"
        );
        assert_eq!(
            a.alloc(4, t0 + GRACE).expect("reclaimed"),
            Region { base: 0, len: 4 }
        );
    }

    #[test]
    fn frees_merge_so_large_lists_fit_again() {
        let t0 = Instant::now();
        let mut a = RingAlloc::new(9);
        let x = a.alloc(3, t0).expect("x");
        let y = a.alloc(3, t0).expect("y");
        let z = a.alloc(3, t0).expect("z");
        a.retire(x, t0);
        a.retire(z, t0);
        a.retire(y, t0);
        assert_eq!(
            a.alloc(9, t0 + GRACE).expect("merged"),
            Region { base: 0, len: 9 }
        );
    }

    #[test]
    fn reserved_ranges_are_never_handed_out() {
        let t0 = Instant::now();
        let mut a = RingAlloc::new(10);
        a.reserve(Region { base: 3, len: 4 });
        assert_eq!(a.available(), 6);
        assert_eq!(a.alloc(3, t0).expect("before"), Region { base: 0, len: 3 });
        assert_eq!(a.alloc(3, t0).expect("after"), Region { base: 7, len: 3 });
        assert!(a.alloc(1, t0).is_none());
    }
}
