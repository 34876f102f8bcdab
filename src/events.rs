//! Live events for `events` followers: a broadcast hub fed by the watcher (seen, settled) and
//! by every audit record the catalog commits (accepted, rejected, deleted, …).
//!
//! Publishing never blocks and never fails: with no follower an event is simply not kept.
//! The channel is bounded; a follower that falls behind by more than its capacity is told so
//! and dropped by the server, so a stalled reader cannot grow the daemon's memory.

use crate::audit::AuditRecord;
use crate::clock;
use crate::protocol::{Event, EventKind};
use tokio::sync::broadcast;

/// Events a follower may be behind before it is dropped.
pub const CAPACITY: usize = 4096;

#[derive(Debug, Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Self { tx }
    }
}

impl Events {
    /// Send to every follower; a no-op when nobody follows.
    pub fn publish(&self, event: Event) {
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// A file event from the watcher.
    pub fn file(&self, kind: EventKind, group: &str, source: &str) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        self.publish(Event {
            time: clock::rfc3339(clock::now_ms()),
            kind,
            group: Some(group.to_string()),
            source: Some(source.to_string()),
            version: None,
            detail: None,
            actor: None,
            job: None,
            progress: None,
        });
    }

    /// An audit record, once its transaction has committed.
    pub fn audited(&self, record: &AuditRecord) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        self.publish(event_of(record));
    }
}

/// How an audit record reads as an event.
pub fn event_of(record: &AuditRecord) -> Event {
    let kind = match (record.action, record.outcome) {
        (_, "refused") => EventKind::Refused,
        ("add", "accepted") => EventKind::Accepted,
        ("add", "unchanged") => EventKind::Unchanged,
        ("add", "rejected") => EventKind::Rejected,
        ("delete", _) => EventKind::Deleted,
        ("prefs", _) => EventKind::PrefsChanged,
        ("reembed", _) | ("retry", _) => EventKind::JobQueued,
        ("swap", _) => EventKind::Swapped,
        ("embed", "failed") => EventKind::JobFailed,
        ("cancel", _) => EventKind::JobCancelled,
        _ => EventKind::Other,
    };
    Event {
        time: clock::rfc3339(record.time_ms),
        kind,
        group: record.group.clone(),
        source: record.source.clone(),
        version: record.version.clone(),
        detail: record.detail.clone(),
        actor: Some(record.actor.clone()),
        job: record.job,
        progress: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Actor, Via};

    #[test]
    fn audit_records_map_to_event_kinds() {
        let actor = Actor {
            uid: Some(1),
            user: None,
            via: Via::Drop,
        };
        let cases = [
            ("add", "accepted", EventKind::Accepted),
            ("add", "unchanged", EventKind::Unchanged),
            ("add", "rejected", EventKind::Rejected),
            ("delete", "ok", EventKind::Deleted),
            ("prefs", "ok", EventKind::PrefsChanged),
            ("prefs", "refused", EventKind::Refused),
            ("use", "ok", EventKind::Other),
        ];
        for (action, outcome, kind) in cases {
            let record = AuditRecord::new(actor.clone(), action, outcome).on("g", "a.csv");
            assert_eq!(event_of(&record).kind, kind, "{action}/{outcome}");
        }
    }

    #[tokio::test]
    async fn a_follower_that_falls_behind_is_told() {
        let events = Events::default();
        let mut rx = events.subscribe();
        for _ in 0..(CAPACITY + 10) {
            events.file(EventKind::Seen, "g", "a.csv");
        }
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
    }
}
