//! systemd's service notifications (`Type=notify`): READY=1 once the
//! datapath is attached and the configuration applied (HA sync readiness is
//! `director ready`'s, not this), STATUS= lines along the way, RELOADING=1
//! around reloads, STOPPING=1, and watchdog pings from the main loop. Without
//! `$NOTIFY_SOCKET` (not under systemd) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::time::{Interval, MissedTickBehavior};

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("notifying systemd ($NOTIFY_SOCKET): {e}");
    }
}

/// A STATUS= line (`systemctl status` shows it).
pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

/// READY=1, with what the service is doing now.
pub fn ready(text: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(text)]);
}

/// RELOADING=1; [`ready`] ends the reload.
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading, NotifyState::Status("reloading")];
    // systemd wants the time of the reload with it (since v253).
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    send(&states);
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// WATCHDOG=1 at half of `$WATCHDOG_USEC`, when systemd asks for it.
pub struct Watchdog(Option<Interval>);

impl Watchdog {
    pub fn from_env() -> Watchdog {
        Watchdog(sd_notify::watchdog_enabled().map(|timeout| {
            let mut i = tokio::time::interval((timeout / 2).max(Duration::from_millis(1)));
            // A stalled loop must not make up for lost pings in a burst.
            i.set_missed_tick_behavior(MissedTickBehavior::Delay);
            i
        }))
    }

    /// The next ping is due; never, without a watchdog.
    pub async fn tick(&mut self) {
        match &mut self.0 {
            Some(i) => {
                i.tick().await;
            }
            None => std::future::pending().await,
        }
    }
}

/// WATCHDOG=1: the main loop is alive.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}
