//! The rise/fall hysteresis of one checked server, apart from any I/O so
//! that it can be tested as a table.
//!
//! keepalived's checkers flip a server on a single result; one lost SYN or
//! a slow GC pause then empties the server of new connections. Here a
//! server changes state only after `fall` consecutive failures (up to down)
//! or `rise` consecutive successes (down to up); a result that agrees with
//! the current state clears the streak.

use std::fmt;

/// Whether a checked server takes new connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Health {
    Up,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state machine: current health and the run of results against it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hysteresis {
    health: Health,
    /// Consecutive results that disagree with `health`.
    streak: u32,
    rise: u32,
    fall: u32,
}

impl Hysteresis {
    /// Starts in `health` with no streak. `rise` and `fall` below 1 count
    /// as 1 (the configuration rejects them).
    pub fn new(health: Health, rise: u32, fall: u32) -> Self {
        Hysteresis {
            health,
            streak: 0,
            rise: rise.max(1),
            fall: fall.max(1),
        }
    }

    pub fn health(&self) -> Health {
        self.health
    }

    /// Consecutive results so far against the current health: failures
    /// while up, successes while down.
    pub fn streak(&self) -> u32 {
        self.streak
    }

    /// Records one probe result; returns the new health when it changes.
    pub fn record(&mut self, ok: bool) -> Option<Health> {
        let (agrees, needed, other) = match self.health {
            Health::Up => (ok, self.fall, Health::Down),
            Health::Down => (!ok, self.rise, Health::Up),
        };
        if agrees {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        if self.streak < needed {
            return None;
        }
        self.health = other;
        self.streak = 0;
        Some(other)
    }
}

#[cfg(test)]
mod tests {
    use super::{Health::*, *};

    /// Each row: start, rise, fall, results ('+' success, '-' failure),
    /// then the health after each result, with a '*' on transitions.
    const TABLE: &[(Health, u32, u32, &str, &str)] = &[
        (Up, 2, 3, "+++", "UUU"),
        (Up, 2, 3, "--", "UU"),
        (Up, 2, 3, "---", "UUD*"),
        (Up, 2, 3, "--+--", "UUUUU"),
        (Up, 2, 3, "-----", "UUD*DD"),
        (Up, 2, 3, "---+", "UUD*D"),
        (Up, 2, 3, "---++", "UUD*DU*"),
        (Up, 2, 3, "---+-++", "UUD*DDDU*"),
        (Down, 2, 3, "+-+-+-", "DDDDDD"),
        (Down, 2, 3, "++", "DU*"),
        (Down, 1, 1, "+-+-", "U*D*U*D*"),
        (Up, 1, 1, "-", "D*"),
        (Down, 3, 2, "++-+++--", "DDDDDU*UD*"),
        (Up, 0, 0, "-+", "D*U*"),
    ];

    #[test]
    fn rise_and_fall_table() {
        for &(start, rise, fall, results, expected) in TABLE {
            let mut h = Hysteresis::new(start, rise, fall);
            let mut got = String::new();
            for r in results.chars() {
                let change = h.record(r == '+');
                got.push(if h.health() == Up { 'U' } else { 'D' });
                if let Some(to) = change {
                    assert_eq!(to, h.health());
                    got.push('*');
                }
            }
            assert_eq!(
                got, expected,
                "start {start}, rise {rise}, fall {fall}, results {results}"
            );
        }
    }

    #[test]
    fn streak_counts_results_against_the_state() {
        let mut h = Hysteresis::new(Up, 2, 3);
        h.record(false);
        h.record(false);
        assert_eq!((h.health(), h.streak()), (Up, 2));
        h.record(true);
        assert_eq!(h.streak(), 0);
        assert_eq!(Up.to_string(), "up");
        assert_eq!(Down.to_string(), "down");
    }
}
