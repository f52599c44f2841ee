//! Health checking of the real servers.
//!
//! A [`Monitor`] runs one tokio task per checked server (not a thread:
//! thousands of servers cost thousands of small futures and timer entries).
//! Each task probes every `interval`, its first probe delayed by an offset
//! derived from a hash of the target so that probes of many servers spread
//! over the interval instead of firing together. A probe is bounded by
//! `timeout`. Results go through the rise/fall hysteresis ([`state`]);
//! each change of health is logged, counted and sent to the owner of the
//! monitor, who applies it to the datapath.
//!
//! A server that stops answering is down at most `interval × fall +
//! timeout` after its last successful probe began: the next probe starts
//! within `interval`, the `fall`-th failing one `interval × (fall - 1)`
//! later, and it fails within `timeout`.

mod latency;
mod probe;
mod state;
#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant, SystemTime},
};

use tokio::{sync::mpsc::UnboundedSender, task::JoinHandle, time::MissedTickBehavior};

pub use self::latency::{BOUNDS as LATENCY_BOUNDS, Latency, ProbeLatency};
use self::probe::Probe;
pub use self::state::{Health, Hysteresis};
use crate::config::{CheckKind, HealthCheck};

/// One server to check. Its identity is `(vs, server)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Name of the virtual server.
    pub vs: String,
    /// The real server's address; the check's `port` replaces its port.
    pub server: SocketAddr,
    pub check: HealthCheck,
}

/// A change of health of one server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub vs: String,
    pub server: SocketAddr,
    pub to: Health,
    /// Down: the failure of the last probe ("connect: connection
    /// refused"); up: how many probes succeeded.
    pub reason: String,
}

/// What `director status` shows of one checked server.
#[derive(Clone, Debug)]
pub struct TargetStatus {
    pub vs: String,
    pub server: SocketAddr,
    pub health: Health,
    /// Probes run.
    pub checks: u64,
    /// Probes that failed.
    pub failures: u64,
    /// Changes of health.
    pub transitions: u64,
    /// The outcome of the last probe: "ok", the failure reason, or "not
    /// checked yet".
    pub last_reason: String,
    /// When the server entered its current health (or started being
    /// checked).
    pub since: SystemTime,
}

/// Reason shown before the first probe of a target.
const NOT_CHECKED: &str = "not checked yet";

/// Checks a set of servers; see the module documentation.
pub struct Monitor {
    events: UnboundedSender<Transition>,
    running: HashMap<(String, SocketAddr), Running>,
    /// Probe durations of targets no longer checked (or checked with
    /// another kind now), by virtual server and kind: the histograms of
    /// [`Monitor::latencies`] only grow.
    retired: HashMap<(String, CheckKind), Latency>,
}

/// A target being checked: its task and the status it updates.
struct Running {
    check: HealthCheck,
    shared: Arc<Mutex<Shared>>,
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        // abort() only asks: on another worker the task may be finishing a
        // probe right now. The new generation makes it drop that result
        // rather than report a transition of a target that is gone, or
        // race the task that replaces it.
        lock(&self.shared).generation += 1;
        // Dropping the task's future also kills a running exec probe and
        // its process group.
        self.task.abort();
    }
}

/// The status of one target, written by its task, read by
/// [`Monitor::status`]. Locked once per probe, never contended for long.
#[derive(Debug)]
struct Shared {
    health: Health,
    checks: u64,
    failures: u64,
    transitions: u64,
    last_reason: String,
    since: SystemTime,
    /// Which task may write: bumped when a task is stopped.
    generation: u64,
    /// How long its probes took.
    latency: Latency,
}

impl Monitor {
    /// `events` receives every transition.
    pub fn new(events: UnboundedSender<Transition>) -> Monitor {
        Monitor {
            events,
            running: HashMap::new(),
            retired: HashMap::new(),
        }
    }

    /// Replaces the target set. Targets whose `(vs, server)` and check are
    /// unchanged keep their task, state and counters; a changed check
    /// restarts probing from the current health (counters kept, streak
    /// cleared); new targets start up, as in keepalived, and go down after
    /// `fall` failures; targets no longer listed stop. Targets with
    /// `kind = "none"` are not checked and not listed. When one
    /// `(vs, server)` is given twice, the last one counts.
    ///
    /// Must be called within a tokio runtime: it spawns the probe tasks.
    pub fn set_targets(&mut self, targets: Vec<Target>) {
        let mut wanted: HashMap<(String, SocketAddr), Target> = HashMap::new();
        for target in targets {
            if target.check.kind != CheckKind::None {
                wanted.insert((target.vs.clone(), target.server), target);
            }
        }
        let mut previous = std::mem::take(&mut self.running);
        for (key, target) in wanted {
            let running = match previous.remove(&key) {
                Some(running) if running.check == target.check => running,
                Some(old) => {
                    let shared = Arc::clone(&old.shared);
                    if old.check.kind != target.check.kind {
                        self.retire(&key.0, &old);
                    }
                    drop(old);
                    self.start(target, shared)
                }
                None => {
                    let shared = Arc::new(Mutex::new(Shared {
                        health: Health::Up,
                        checks: 0,
                        failures: 0,
                        transitions: 0,
                        last_reason: NOT_CHECKED.to_owned(),
                        since: SystemTime::now(),
                        generation: 0,
                        latency: Latency::default(),
                    }));
                    self.start(target, shared)
                }
            };
            self.running.insert(key, running);
        }
        for ((vs, _), stopped) in &previous {
            self.retire(vs, stopped);
        }
        // What is left in `previous` is dropped here: those tasks stop.
    }

    /// Keeps the probe durations of a target that stops (or changes kind).
    fn retire(&mut self, vs: &str, r: &Running) {
        let latency = std::mem::take(&mut lock(&r.shared).latency);
        self.retired
            .entry((vs.to_owned(), r.check.kind))
            .or_default()
            .add(&latency);
    }

    /// How long probes took, by virtual server and probe kind (sorted),
    /// stopped targets' probes included.
    pub fn latencies(&self) -> Vec<ProbeLatency> {
        let mut sums = self.retired.clone();
        for ((vs, _), r) in &self.running {
            sums.entry((vs.clone(), r.check.kind))
                .or_default()
                .add(&lock(&r.shared).latency);
        }
        let mut out: Vec<ProbeLatency> = sums
            .into_iter()
            .map(|((vs, kind), latency)| ProbeLatency {
                vs,
                kind: kind.as_str().to_owned(),
                latency,
            })
            .collect();
        out.sort_by(|a, b| (&a.vs, &a.kind).cmp(&(&b.vs, &b.kind)));
        out
    }

    /// The status of every target, sorted by `(vs, server)`.
    pub fn status(&self) -> Vec<TargetStatus> {
        let mut out: Vec<TargetStatus> = self
            .running
            .iter()
            .map(|((vs, server), running)| {
                let s = lock(&running.shared);
                TargetStatus {
                    vs: vs.clone(),
                    server: *server,
                    health: s.health,
                    checks: s.checks,
                    failures: s.failures,
                    transitions: s.transitions,
                    last_reason: s.last_reason.clone(),
                    since: s.since,
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.vs, a.server).cmp(&(&b.vs, b.server)));
        out
    }

    /// Whether the health of every target rests on its probes: each has
    /// passed one or gone down. Targets start up, so before this a dead
    /// server still counts as up (for `interval × fall + timeout` at most).
    pub fn first_round_done(&self) -> bool {
        self.running.values().all(|r| {
            let s = lock(&r.shared);
            s.health == Health::Down || s.checks > s.failures
        })
    }

    fn start(&self, target: Target, shared: Arc<Mutex<Shared>>) -> Running {
        let check = target.check.clone();
        let (health, generation) = {
            let s = lock(&shared);
            (s.health, s.generation)
        };
        let task = match Probe::new(&target.vs, target.server, &target.check) {
            Some(probe) => tokio::spawn(watch(
                target,
                probe,
                (health, generation),
                Arc::clone(&shared),
                self.events.clone(),
            )),
            // Only an exec check without a command, which the
            // configuration rejects: nothing to run, the health stays.
            None => tokio::spawn(async {}),
        };
        Running {
            check,
            shared,
            task,
        }
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    // A panic while holding the lock leaves plain counters: still usable.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Probes start on a grid of this step: targets whose probes fall in the
/// same step are probed in one wakeup of the runtime, their connects
/// issued back to back and their completions collected by one epoll wait.
/// Spread evenly instead, 10 000 probes a second would wake a worker
/// thread for nearly every probe, and the context switches would cost
/// more than the probes.
const PROBE_GRID: Duration = Duration::from_millis(10);

/// The delay before the first probe of `(vs, server)`: a stable pseudo-
/// random step of [`PROBE_GRID`] within `interval`, so that targets added
/// together (a daemon start) do not all probe at once.
fn first_delay(vs: &str, server: SocketAddr, interval: Duration) -> Duration {
    let mut hasher = DefaultHasher::new();
    (vs, server).hash(&mut hasher);
    let steps = (interval.as_nanos() / PROBE_GRID.as_nanos()).max(1);
    let step = u128::from(hasher.finish()) % steps;
    PROBE_GRID * u32::try_from(step).unwrap_or(0)
}

/// The task of one target: probe every interval, feed the hysteresis,
/// publish the status and the transitions.
async fn watch(
    target: Target,
    probe: Probe,
    (health, generation): (Health, u64),
    shared: Arc<Mutex<Shared>>,
    events: UnboundedSender<Transition>,
) {
    let Target { vs, server, check } = target;
    let mut machine = Hysteresis::new(health, check.rise, check.fall);
    tokio::time::sleep(first_delay(&vs, server, check.interval)).await;
    let mut ticks = tokio::time::interval(check.interval);
    // A late tick (a busy runtime) moves the schedule rather than firing
    // a burst of probes to catch up.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let started = Instant::now();
        let result = probe.run().await;
        let took = started.elapsed();
        let change = machine.record(result.is_ok());
        let transition = change.map(|to| Transition {
            vs: vs.clone(),
            server,
            to,
            reason: match &result {
                // Down always follows a failure.
                Err(reason) if to == Health::Down => reason.clone(),
                _ => format!(
                    "{} check passed {} time{} in a row",
                    check.kind,
                    check.rise,
                    if check.rise == 1 { "" } else { "s" }
                ),
            },
        });
        {
            let mut s = lock(&shared);
            if s.generation != generation {
                // Stopped or replaced while probing.
                return;
            }
            s.checks += 1;
            s.latency.record(took);
            match &result {
                Ok(()) => {
                    // Reuses the string's buffer: no allocation per probe.
                    s.last_reason.clear();
                    s.last_reason.push_str("ok");
                }
                Err(reason) => {
                    s.failures += 1;
                    s.last_reason.clone_from(reason);
                }
            }
            let Some(t) = transition else { continue };
            s.health = t.to;
            s.transitions += 1;
            s.since = SystemTime::now();
            let probed = probe.addr();
            match t.to {
                Health::Down => tracing::warn!(
                    vs = %t.vs, server = %t.server, probed = %probed, fall = check.fall,
                    reason = %t.reason, "real server down"
                ),
                Health::Up => tracing::info!(
                    vs = %t.vs, server = %t.server, probed = %probed, rise = check.rise,
                    reason = %t.reason, "real server up"
                ),
            }
            // Sent under the lock, so that the events of a task and of the
            // one replacing it keep their order. The owner may have stopped
            // listening (shutting down): the status still has the change.
            let _ = events.send(t);
        }
    }
}
