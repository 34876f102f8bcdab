//! sd_notify: tell the service manager that the daemon is ready, what it is doing (`STATUS=`),
//! that it is alive (`WATCHDOG=1`), and that it is reloading or stopping.
//!
//! Without `NOTIFY_SOCKET` every call is a no-op, so the daemon behaves the same under systemd,
//! in a terminal and in tests. A send that fails is logged and otherwise ignored: systemd's own
//! timeouts decide what a missing message means. The watchdog ping is sent only after a round
//! trip through the catalog thread answered, so a stuck catalog or reactor stops the pings and
//! systemd restarts the daemon.

use crate::catalog::Catalog;
use sd_notify::NotifyState;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often `STATUS=` is refreshed when there is no watchdog to set the pace.
const STATUS_EVERY: Duration = Duration::from_secs(10);

fn send(states: &[NotifyState]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!("cannot notify the service manager: {error}");
    }
}

/// Is a service manager listening?
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Start-up is done: the socket is bound, the catalog open, the start-up scan queued.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload is done (`STATUS=` stays the heartbeat's summary).
pub fn reloaded() {
    send(&[NotifyState::Ready]);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// A reload has started; `ready` ends it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// A critical error stops the daemon: `STATUS=` says why, so `systemctl status` shows the
/// reason while the unit is restarted.
pub fn failing(reason: &str) {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status(&format!("failed: {reason}")),
    ]);
}

/// Half the watchdog timeout systemd asked for (`WATCHDOG_USEC`, for this pid), if any.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|timeout| !timeout.is_zero())
        .map(|timeout| timeout / 2)
}

/// What the daemon holds, in one line for `systemctl status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub groups: u64,
    pub sources: u64,
    pub in_flight: u64,
    /// Embedding jobs waiting and running.
    pub queued: u64,
    pub processing: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} groups, {} sources, {} files in flight, {} jobs queued, {} embedding",
            self.groups, self.sources, self.in_flight, self.queued, self.processing
        )
    }
}

/// Count groups and sources through the catalog thread: the round trip the watchdog trusts.
/// `in_flight` counts the files the watcher holds (settling or validating).
pub async fn summary(catalog: &Catalog, in_flight: &impl Fn() -> usize) -> Option<Summary> {
    let (groups, _) = catalog.group_counts(Vec::new()).await.ok()?;
    let sources: u64 = groups.iter().map(|g| g.sources).sum();
    let groups = groups.len();
    let jobs = catalog.queue_counts().await.ok()?;
    let count = |state| jobs.get(&state).copied().unwrap_or(0);
    Some(Summary {
        groups: groups as u64,
        sources,
        in_flight: in_flight() as u64,
        queued: count(crate::protocol::JobState::Queued),
        processing: count(crate::protocol::JobState::Processing),
    })
}

/// Until `stop`: every tick, ask the catalog for a summary; if it answers within the tick,
/// ping the watchdog (when there is one) and refresh `STATUS=` if it changed.
pub async fn heartbeat(
    catalog: Catalog,
    in_flight: impl Fn() -> usize + Send,
    watchdog: Option<Duration>,
    stop: CancellationToken,
) {
    let every = watchdog.unwrap_or(STATUS_EVERY);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shown = None;
    let mut stalled = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        match tokio::time::timeout(every, summary(&catalog, &in_flight)).await {
            Ok(Some(now)) => {
                if stalled {
                    tracing::info!("the catalog answers again; watchdog pings resume");
                    stalled = false;
                }
                if watchdog.is_some() {
                    send(&[NotifyState::Watchdog]);
                }
                if shown.as_ref() != Some(&now) {
                    status(&now.to_string());
                    shown = Some(now);
                }
            }
            _ => {
                if !stalled {
                    tracing::warn!(
                        "the catalog did not answer within {} ms; watchdog ping skipped",
                        every.as_millis()
                    );
                    stalled = true;
                }
            }
        }
    }
}
