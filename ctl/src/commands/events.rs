//! `ingestctl events [-g GROUP] [--all]`: follow what happens — files seen, accepted, rejected,
//! deleted, preferences changed — one line per event as it comes, until Ctrl-C or the daemon
//! ends the stream. `--json` prints each event as one compact JSON object per line.

use super::{Done, Failure, Options};
use crate::output;
use ingestd_proto::client::Client;
use ingestd_proto::identity::Via;
use ingestd_proto::protocol::{Event, EventKind, Following, cmd};
use jiff::tz::TimeZone;
use serde_json::Value;
use std::io::{IsTerminal, Write};

pub fn run(
    client: &mut Client,
    options: &Options,
    all: bool,
    out: &mut dyn Write,
) -> Result<Done, Failure> {
    let command = cmd::Events {
        group: options.group.clone(),
        all,
    };
    let following: Following = client.call(&command)?;
    // Events may be hours apart: waiting is the point here.
    client.set_timeout(None)?;
    if std::io::stderr().is_terminal() {
        let what = match &following.group {
            Some(group) => format!("group '{group}'"),
            None => "every group".to_string(),
        };
        let _ = writeln!(std::io::stderr(), "following {what}; Ctrl-C stops");
    }
    while let Some(data) = client.next_data()? {
        let line = if options.json {
            compact(&data)
        } else {
            let event: Event = serde_json::from_value(data).map_err(|e| {
                Failure::Failed(format!(
                    "ingestd sent an event this client cannot read ({e}); are ingestd and this \
                     client from the same release?"
                ))
            })?;
            line(&event, &options.tz)
        };
        let line = if options.json {
            line
        } else {
            output::escape_text(&line).into_owned()
        };
        let still_read = output::emit(out, &line)
            .map_err(|e| Failure::Failed(format!("cannot write the output: {e}")))?;
        if !still_read {
            return Ok(Done::default());
        }
    }
    Ok(Done {
        notes: vec!["ingestd closed the event stream (it is stopping or restarting)".into()],
        ..Done::default()
    })
}

/// The event as the daemon sent it, on one line.
fn compact(data: &Value) -> String {
    let mut text = serde_json::to_string(data).expect("a JSON value always serializes");
    text.push('\n');
    text
}

/// "02:07:45 accepted sales/q1.csv v1 — 2 rows, 3 columns, 18 bytes", plus "(by alice)" for
/// what someone did through the socket.
fn line(event: &Event, tz: &TimeZone) -> String {
    let mut text = format!("{} {}", output::clock(&event.time, tz), kind(event.kind));
    let subject = match (&event.group, &event.source) {
        (Some(group), Some(source)) => Some(format!("{group}/{source}")),
        (Some(group), None) => Some(group.clone()),
        (None, Some(source)) => Some(source.clone()),
        (None, None) => None,
    };
    for part in [subject, event.version.clone()].into_iter().flatten() {
        text.push(' ');
        text.push_str(&part);
    }
    if let Some(job) = event.job {
        text.push_str(&format!(" job {job}"));
    }
    if let Some(progress) = event.progress {
        text.push_str(&format!(" {}/{} rows", progress.done, progress.total));
    }
    if let Some(detail) = event.detail.as_deref().filter(|d| !d.is_empty()) {
        text.push_str(" — ");
        text.push_str(detail);
    }
    if let Some(actor) = &event.actor
        && actor.via == Via::Socket
        && let Some(name) = actor.display_name()
    {
        text.push_str(&format!(" (by {name})"));
    }
    text.push('\n');
    text
}

fn kind(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Seen => "seen",
        EventKind::Settled => "settled",
        EventKind::Accepted => "accepted",
        EventKind::Unchanged => "unchanged",
        EventKind::Rejected => "rejected",
        EventKind::Deleted => "deleted",
        EventKind::PrefsChanged => "prefs_changed",
        EventKind::Refused => "refused",
        EventKind::JobQueued => "job_queued",
        EventKind::JobStarted => "job_started",
        EventKind::JobProgress => "job_progress",
        EventKind::Swapped => "swapped",
        EventKind::JobFailed => "job_failed",
        EventKind::JobCancelled => "job_cancelled",
        EventKind::JobRetrying => "job_retrying",
        EventKind::Other => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingestd_proto::identity::Actor;

    fn event(kind: EventKind, source: Option<&str>, version: Option<&str>) -> Event {
        Event {
            time: "2026-11-27T02:07:45.631Z".into(),
            kind,
            group: Some("sales".into()),
            source: source.map(String::from),
            version: version.map(String::from),
            detail: None,
            actor: None,
            job: None,
            progress: None,
        }
    }

    #[test]
    fn each_event_is_one_readable_line() {
        let mut accepted = event(EventKind::Accepted, Some("q1.csv"), Some("v1"));
        accepted.detail = Some("2 rows, 3 columns, 18 bytes".into());
        let mut rejected = event(EventKind::Rejected, Some("bad.txt"), None);
        rejected.detail = Some("files of type .txt are not accepted".into());
        let mut prefs = event(EventKind::PrefsChanged, None, None);
        prefs.actor = Some(Actor {
            uid: Some(1000),
            user: Some("alice".into()),
            via: Via::Socket,
        });
        let mut dropped = event(EventKind::Seen, Some("q1.csv"), None);
        dropped.actor = Some(Actor {
            uid: Some(1000),
            user: Some("alice".into()),
            via: Via::Drop,
        });
        let cases = [
            (
                accepted,
                "02:07:45 accepted sales/q1.csv v1 — 2 rows, 3 columns, 18 bytes\n",
            ),
            (
                rejected,
                "02:07:45 rejected sales/bad.txt — files of type .txt are not accepted\n",
            ),
            (prefs, "02:07:45 prefs_changed sales (by alice)\n"),
            (dropped, "02:07:45 seen sales/q1.csv\n"),
            (
                event(EventKind::Unchanged, Some("q1.csv"), Some("v1")),
                "02:07:45 unchanged sales/q1.csv v1\n",
            ),
        ];
        for (event, want) in cases {
            assert_eq!(line(&event, &TimeZone::UTC), want);
        }
    }

    #[test]
    fn json_lines_are_compact_and_keep_unknown_fields() {
        let data = serde_json::json!({"kind": "seen", "time": "t", "new_field": [1, 2]});
        let text = compact(&data);
        assert_eq!(text.lines().count(), 1);
        assert!(text.ends_with("}\n"), "{text}");
        assert!(text.contains("\"new_field\":[1,2]"), "{text}");
    }

    #[test]
    fn every_kind_reads_as_its_protocol_name() {
        for name in [
            "seen",
            "settled",
            "accepted",
            "unchanged",
            "rejected",
            "deleted",
            "prefs_changed",
            "refused",
            "other",
        ] {
            let parsed: EventKind = serde_json::from_value(Value::from(name)).unwrap();
            assert_eq!(kind(parsed), name);
        }
    }
}
