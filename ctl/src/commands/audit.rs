//! `ingestctl audit [-g GROUP] [--all] [--since WHEN] [--action A] [--limit N] [--before ID]`:
//! the audit trail, newest first — who did what to which source, when, and how it ended —
//! one page at a time.

use super::{Failure, Options};
use crate::cli::AuditArgs;
use crate::output;
use ingestd_proto::client::Client;
use ingestd_proto::identity::{Actor, Via};
use ingestd_proto::protocol::{AuditEntry, cmd};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// Widest a DETAIL cell may get; the whole text is in `--json`.
const DETAIL_WIDTH: usize = 60;

pub fn run(client: &mut Client, options: &Options, args: &AuditArgs) -> Result<String, Failure> {
    let since = match &args.since {
        Some(since) => {
            let now = Timestamp::now().to_zoned_datetime(options.tz.clone());
            Some(since.resolve(&now).map_err(Failure::Usage)?.to_string())
        }
        None => None,
    };
    let command = cmd::Audit {
        group: options.group.clone(),
        all: args.all,
        since,
        action: args.action.clone(),
        limit: args.limit,
        before: args.before,
    };
    if options.json {
        return Ok(output::json_text(
            client.call_text(&command)?,
            options.pretty,
        ));
    }
    let entries: Vec<AuditEntry> = client.call(&command)?;
    if entries.is_empty() {
        return Ok("No audit records match.\n".to_string());
    }
    let mut text = render(&entries, &options.tz);
    text.push_str(&more(&entries, args.limit.unwrap_or(DEFAULT_LIMIT)));
    Ok(text)
}

/// The daemon's page size when no `--limit` is given.
const DEFAULT_LIMIT: u32 = 100;

/// A full page may have more after it: say how to get the next one.
fn more(entries: &[AuditEntry], limit: u32) -> String {
    match entries.last().and_then(|e| e.id) {
        Some(id) if entries.len() as u32 >= limit => format!(
            "(showing {}; older records: ingestctl audit --before {id} with the same options)\n",
            entries.len()
        ),
        _ => String::new(),
    }
}

/// "alice (uid 1000, socket)", "uid 1234 (drop)", "- (daemon)".
fn actor(actor: &Actor) -> String {
    let via = match actor.via {
        Via::Drop => "drop",
        Via::Socket => "socket",
        Via::Daemon => "daemon",
    };
    match (&actor.user, actor.uid) {
        (Some(user), Some(uid)) => format!("{user} (uid {uid}, {via})"),
        (Some(user), None) => format!("{user} ({via})"),
        (None, Some(uid)) => format!("uid {uid} ({via})"),
        (None, None) => format!("- ({via})"),
    }
}

fn render(entries: &[AuditEntry], tz: &TimeZone) -> String {
    let rows: Vec<_> = entries
        .iter()
        .map(|e| {
            let mut detail = e.detail.clone().unwrap_or_default();
            if let Some(job) = e.job {
                detail = format!(
                    "job {job}{}{detail}",
                    if detail.is_empty() { "" } else { ": " }
                );
            }
            vec![
                output::time(&e.time, tz),
                actor(&e.actor),
                e.action.clone(),
                e.outcome.clone(),
                output::or_dash(e.group.as_deref()),
                output::or_dash(e.source.as_deref()),
                output::or_dash(e.version.as_deref()),
                output::truncated(&detail, DETAIL_WIDTH),
            ]
        })
        .collect();
    output::table(
        &[
            "TIME", "ACTOR", "ACTION", "OUTCOME", "GROUP", "SOURCE", "VERSION", "DETAIL",
        ],
        &rows,
        &[],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: &str, outcome: &str, actor: Actor) -> AuditEntry {
        AuditEntry {
            id: Some(1),
            time: "2026-11-27T02:07:45.631Z".into(),
            actor,
            action: action.into(),
            group: Some("sales".into()),
            source: Some("q1.csv".into()),
            version: Some("v1".into()),
            job: None,
            outcome: outcome.into(),
            detail: None,
        }
    }

    #[test]
    fn actors_show_user_uid_and_how_they_came() {
        let cases = [
            (
                Some("alice"),
                Some(1000),
                Via::Socket,
                "alice (uid 1000, socket)",
            ),
            (None, Some(1234), Via::Drop, "uid 1234 (drop)"),
            (Some("ingestd"), None, Via::Daemon, "ingestd (daemon)"),
            (None, None, Via::Daemon, "- (daemon)"),
        ];
        for (user, uid, via, want) in cases {
            let a = Actor {
                uid,
                user: user.map(String::from),
                via,
            };
            assert_eq!(actor(&a), want);
        }
    }

    #[test]
    fn records_are_rows_with_details_cut() {
        let alice = Actor {
            uid: Some(1000),
            user: Some("alice".into()),
            via: Via::Socket,
        };
        let mut accepted = entry(
            "add",
            "accepted",
            Actor {
                via: Via::Drop,
                ..alice.clone()
            },
        );
        accepted.detail = Some("2 rows, 3 columns, 18 bytes".into());
        let mut rejected = entry("add", "rejected", alice.clone());
        rejected.version = None;
        rejected.source = Some("bad.txt".into());
        rejected.detail = Some(format!(
            "files of type .txt are not accepted {}",
            "x".repeat(80)
        ));
        let mut prefs = entry("prefs", "ok", alice);
        prefs.source = None;
        prefs.version = None;
        prefs.job = Some(7);
        let text = render(&[accepted, rejected, prefs], &TimeZone::UTC);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        for word in [
            "TIME", "ACTOR", "ACTION", "OUTCOME", "GROUP", "SOURCE", "VERSION", "DETAIL",
        ] {
            assert!(lines[0].contains(word), "{text}");
        }
        for word in [
            "2026-11-27 02:07:45",
            "alice (uid 1000, drop)",
            "add",
            "accepted",
            "sales",
            "q1.csv",
            "v1",
            "2 rows, 3 columns, 18 bytes",
        ] {
            assert!(lines[1].contains(word), "{word}: {text}");
        }
        assert!(lines[2].contains("bad.txt  -  "), "{text}");
        assert!(lines[2].ends_with('…'), "{text}");
        assert!(!lines[2].contains(&"x".repeat(40)), "{text}");
        assert!(lines[3].contains("prefs"), "{text}");
        assert!(lines[3].ends_with("job 7"), "{text}");
    }

    #[test]
    fn a_full_page_says_how_to_get_the_next_one() {
        let someone = Actor {
            uid: Some(1),
            user: None,
            via: Via::Socket,
        };
        let mut page: Vec<AuditEntry> = (0..3)
            .map(|_| entry("add", "ok", someone.clone()))
            .collect();
        page[2].id = Some(41);
        assert_eq!(
            more(&page, 3),
            "(showing 3; older records: ingestctl audit --before 41 with the same options)\n"
        );
        assert_eq!(more(&page, 4), "", "a short page is the last");
    }
}
