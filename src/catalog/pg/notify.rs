//! What one node tells the others, over PostgreSQL's `LISTEN`/`NOTIFY`: the events its
//! followers see (accepted, rejected, swapped, a job's progress…), so `events` and `--wait` on
//! any node see what every node did; and a nudge to the schedulers when a job may have become
//! startable (queued, or a slot freed), so no node polls the queue to learn of it; and to the
//! node that holds a deleted version's file, that it has a file to remove.
//!
//! A notification is sent in the transaction that makes the change and PostgreSQL delivers it
//! only when that transaction commits, in commit order: a follower never hears of a change
//! that was rolled back, and hears of committed changes in the order they happened. Payloads
//! are limited to [`MAX_PAYLOAD`] bytes by the server; an event's free text is shortened to
//! fit rather than failing the change it reports.
//!
//! A listener holds a connection of its own. While it is disconnected nothing is queued for
//! it: [`Listener::recv`] reports the gap ([`Heard::Reconnected`]) so the caller can say that
//! events may have been missed.

use super::PgError;
use crate::protocol::Event;
use postgres::Client;
use postgres::fallible_iterator::FallibleIterator;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// The channel of events.
pub const EVENTS: &str = "ingestd_events";
/// The channel of scheduler nudges (payload: the sending node).
pub const QUEUE: &str = "ingestd_queue";
/// The channel of cross-node deletes (payload: the node that holds the files to remove).
pub const DELETES: &str = "ingestd_deletes";
/// The largest payload the server takes (it refuses 8000 bytes or more).
pub const MAX_PAYLOAD: usize = 7999;

/// An event as it travels: who sent it, and what it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Remote {
    pub node: String,
    pub event: Event,
    /// The id of the audit record the event reports; none for a job's progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<i64>,
}

/// Tell every node's followers about `event`, when the caller's transaction commits.
pub fn publish(
    tx: &mut impl postgres::GenericClient,
    node: &str,
    event: &Event,
) -> Result<(), PgError> {
    publish_record(tx, node, event, None)
}

/// [`publish`] the event of audit record `audit`, so the node that wrote it can append the
/// record to its `audit.jsonl` once it hears the commit.
pub fn publish_record(
    tx: &mut impl postgres::GenericClient,
    node: &str,
    event: &Event,
    audit: Option<i64>,
) -> Result<(), PgError> {
    let payload = payload_of(node, event, audit)?;
    tx.execute("SELECT pg_notify($1, $2)", &[&EVENTS, &payload])?;
    Ok(())
}

/// Tell `holder` that files of its own wait to be removed (`pending_deletes`), when the
/// caller's transaction commits.
pub fn deletes_for(tx: &mut impl postgres::GenericClient, holder: &str) -> Result<(), PgError> {
    tx.execute("SELECT pg_notify($1, $2)", &[&DELETES, &holder])?;
    Ok(())
}

/// Wake every node's scheduler when the caller's transaction commits.
pub fn nudge(tx: &mut impl postgres::GenericClient, node: &str) -> Result<(), PgError> {
    tx.execute("SELECT pg_notify($1, $2)", &[&QUEUE, &node])?;
    Ok(())
}

/// The JSON of `event` from `node`, its free text shortened until it fits [`MAX_PAYLOAD`].
fn payload_of(node: &str, event: &Event, audit: Option<i64>) -> Result<String, PgError> {
    let mut remote = Remote {
        node: node.to_string(),
        event: event.clone(),
        audit,
    };
    loop {
        let text = serde_json::to_string(&remote)
            .map_err(|e| PgError::Invalid(format!("an event that is not JSON: {e}")))?;
        if text.len() <= MAX_PAYLOAD {
            return Ok(text);
        }
        // Free text left to shorten (an ellipsis alone is none: what is over is elsewhere).
        let Some(detail) = remote.event.detail.as_mut().filter(|d| d.as_str() != "…") else {
            return Err(PgError::Invalid(format!(
                "an event of {} bytes without free text to shorten",
                text.len()
            )));
        };
        // Keep the characters whose JSON (1 to 6 bytes each) fits what is left once `over`
        // bytes and the ellipsis are gone.
        let escaped = |c: char| serde_json::to_string(&c).map_or(6, |t| t.len() - 2);
        let budget = (text.len() - MAX_PAYLOAD)
            .checked_add(escaped('…'))
            .and_then(|cut| detail.chars().map(escaped).sum::<usize>().checked_sub(cut))
            .unwrap_or(0);
        let mut used = 0;
        let keep = detail
            .char_indices()
            .find_map(|(at, c)| {
                used += escaped(c);
                (used > budget).then_some(at)
            })
            .unwrap_or(detail.len());
        detail.truncate(keep);
        detail.push('…');
    }
}

/// What a listener heard.
#[derive(Debug, Clone, PartialEq)]
pub enum Heard {
    /// An event another node committed.
    Event(Box<Remote>),
    /// Some node's queue may have a startable job.
    Nudge,
    /// Another node deleted versions whose files this node holds.
    Deletes,
    /// The connection was lost and is back: notifications sent meanwhile were missed.
    Reconnected,
}

/// A connection that listens to the other nodes.
pub struct Listener {
    connect: Box<dyn FnMut() -> Result<Client, PgError> + Send>,
    client: Option<Client>,
    node: String,
    /// Report this node's own notifications too.
    own: bool,
    /// When to try again after a failed connection.
    retry_at: Option<Instant>,
}

/// How long to wait before connecting again after a failure.
const RETRY: Duration = Duration::from_secs(1);

impl Listener {
    /// Listen as `node` (whose own notifications are not reported back to it), connecting
    /// with `connect` now and after every loss of the connection.
    pub fn new(
        node: &str,
        mut connect: Box<dyn FnMut() -> Result<Client, PgError> + Send>,
    ) -> Result<Self, PgError> {
        let client = Self::listen(&mut connect)?;
        Ok(Self {
            connect,
            client: Some(client),
            node: node.to_string(),
            own: false,
            retry_at: None,
        })
    }

    /// Report this node's own notifications as well: for a daemon whose followers should see
    /// one stream of every node's committed events in commit order.
    pub fn hear_own(mut self) -> Self {
        self.own = true;
        self
    }

    fn listen(
        connect: &mut Box<dyn FnMut() -> Result<Client, PgError> + Send>,
    ) -> Result<Client, PgError> {
        let mut client = connect()?;
        client.batch_execute(&format!(
            "LISTEN {EVENTS}; LISTEN {QUEUE}; LISTEN {DELETES}"
        ))?;
        Ok(client)
    }

    /// The next thing heard from another node, waiting at most `timeout`. `Ok(None)`: nothing
    /// within the timeout. A lost connection is reconnected (once a second at most); the
    /// error of a failed reconnection is returned, and the next call tries again.
    pub fn recv(&mut self, timeout: Duration) -> Result<Option<Heard>, PgError> {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(client) = self.client.as_mut() else {
                let now = Instant::now();
                if let Some(at) = self.retry_at
                    && now < at
                {
                    if deadline <= now {
                        return Ok(None);
                    }
                    std::thread::sleep(at.min(deadline) - now);
                    continue;
                }
                match Self::listen(&mut self.connect) {
                    Ok(client) => {
                        self.client = Some(client);
                        self.retry_at = None;
                        return Ok(Some(Heard::Reconnected));
                    }
                    Err(e) => {
                        self.retry_at = Some(Instant::now() + RETRY);
                        return Err(e);
                    }
                }
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let next = client.notifications().timeout_iter(left).next();
            match next {
                Ok(Some(note)) => {
                    if let Some(heard) = self.read(note.channel(), note.payload()) {
                        return Ok(Some(heard));
                    }
                }
                Ok(None) if !client.is_closed() => {
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                }
                Ok(None) | Err(_) => {
                    tracing::warn!("lost the PostgreSQL connection that listens to other nodes");
                    self.client = None;
                }
            }
        }
    }

    /// A notification as the caller wants it: `None` for what no ingestd sends, and for our
    /// own unless asked ([`Listener::hear_own`]).
    fn read(&self, channel: &str, payload: &str) -> Option<Heard> {
        match channel {
            QUEUE => (self.own || payload != self.node).then_some(Heard::Nudge),
            DELETES => (payload == self.node).then_some(Heard::Deletes),
            EVENTS => match serde_json::from_str::<Remote>(payload) {
                Ok(remote) if self.own || remote.node != self.node => {
                    Some(Heard::Event(Box::new(remote)))
                }
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "an event from another node that is not ours");
                    None
                }
            },
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::EventKind;

    fn event(source: String, detail: Option<String>) -> Event {
        Event {
            time: String::new(),
            kind: EventKind::Accepted,
            group: None,
            source: Some(source),
            version: None,
            detail,
            actor: None,
            job: None,
            progress: None,
        }
    }

    #[test]
    fn only_the_free_text_is_shortened_and_an_event_too_big_without_it_is_an_error() {
        let fits = payload_of("a", &event("s".into(), Some("x".repeat(100))), Some(7)).unwrap();
        assert!(fits.contains(&"x".repeat(100)), "{fits}");
        assert!(fits.contains("\"audit\":7"), "{fits}");
        let cut = payload_of("a", &event("s".into(), Some("\n".repeat(9000))), None).unwrap();
        assert!(
            cut.len() <= MAX_PAYLOAD && cut.len() > MAX_PAYLOAD - 8,
            "{}",
            cut.len()
        );
        // The source name alone is over: shortening the detail cannot help, and says so.
        for detail in [None, Some(String::new()), Some("d".repeat(50))] {
            let error = payload_of("a", &event("s".repeat(9000), detail), None).unwrap_err();
            assert!(error.to_string().contains("without free text"), "{error}");
        }
    }
}
