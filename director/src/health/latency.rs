//! How long probes take, as a histogram of fixed buckets: one per target,
//! summed per virtual server and probe kind for the metrics
//! (`director_health_probe_duration_seconds`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Upper bounds of the buckets, in seconds: from a connect on a LAN (well
/// under a millisecond) to a probe's timeout (seconds). Above the last one
/// is the `+Inf` bucket.
pub const BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Probes per bucket (not cumulative): `counts[i]` took at most
    /// `BOUNDS[i]` and more than the bound before; the last one, more than
    /// every bound.
    pub counts: [u64; BOUNDS.len() + 1],
    /// Their durations, summed.
    pub sum_s: f64,
}

impl Latency {
    pub fn record(&mut self, took: Duration) {
        let s = took.as_secs_f64();
        let i = BOUNDS.partition_point(|&b| b < s);
        self.counts[i] += 1;
        self.sum_s += s;
    }

    pub fn add(&mut self, o: &Latency) {
        for (a, b) in self.counts.iter_mut().zip(o.counts) {
            *a += b;
        }
        self.sum_s += o.sum_s;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `(upper bound, probes in that bucket)`, `+Inf` last.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        BOUNDS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.counts)
            .collect()
    }
}

/// The probes of one virtual server's targets of one kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeLatency {
    pub vs: String,
    /// "tcp", "http", "udp" or "exec".
    pub kind: String,
    pub latency: Latency,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_fall_in_the_first_bucket_that_holds_them() {
        let mut l = Latency::default();
        for ms in [0.2, 0.5, 3.0, 2_000.0, 9_000.0] {
            l.record(Duration::from_secs_f64(ms / 1e3));
        }
        let nonzero: Vec<(f64, u64)> = l.buckets().into_iter().filter(|b| b.1 > 0).collect();
        assert_eq!(
            nonzero,
            [(0.0005, 2), (0.005, 1), (2.5, 1), (f64::INFINITY, 1)],
            "a duration equal to a bound is in that bound's bucket"
        );
        assert_eq!(l.count(), 5);
        assert!((l.sum_s - 11.0037).abs() < 1e-9, "{}", l.sum_s);
        let mut twice = l.clone();
        twice.add(&l);
        assert_eq!(twice.count(), 10);
    }
}
