//! `ingestctl status`: what the daemon is, where its folders are, how busy it is and what
//! went wrong lately.

use super::Options;
use crate::output;
use ingestd_proto::client::{Client, ClientError};
use ingestd_proto::protocol::{ReloadInfo, Status, StatusInfo, cmd};
use jiff::tz::TimeZone;
use std::collections::BTreeMap;

pub fn run(client: &mut Client, options: &Options) -> Result<String, ClientError> {
    if options.json {
        return Ok(output::json_text(
            client.call_text(&cmd::Status {})?,
            options.pretty,
        ));
    }
    let status: StatusInfo = client.call(&cmd::Status {})?;
    Ok(render(&status, &options.tz))
}

/// Counts by status, zeros left out, in lifecycle order: "embedded 10, invalid 2".
pub fn by_status(counts: &BTreeMap<Status, u64>) -> String {
    let parts: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(status, n)| format!("{status} {n}"))
        .collect();
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join(", ")
    }
}

fn render(s: &StatusInfo, tz: &TimeZone) -> String {
    let sources = match by_status(&s.by_status).as_str() {
        "-" => s.sources.to_string(),
        counts => format!("{} ({counts})", s.sources),
    };
    let fields = [
        (
            "daemon",
            format!(
                "ingestd {} (protocol {}), pid {}",
                s.daemon_version, s.protocol, s.pid
            ),
        ),
        (
            "up",
            format!(
                "{}, since {}",
                output::duration(s.uptime_secs),
                output::time(&s.started_at, tz)
            ),
        ),
        ("drop root", s.drop_root.clone()),
        ("storage root", s.storage_root.clone()),
        ("database", s.database.clone()),
        ("socket", s.socket.clone()),
        ("provider", s.provider.clone()),
        ("groups", s.groups.to_string()),
        ("sources", sources),
        ("in flight", s.in_flight.to_string()),
        (
            "queue",
            format!(
                "{} queued, {} processing, {} failed",
                s.queue.queued, s.queue.processing, s.queue.failed
            ),
        ),
    ];
    let mut text = String::new();
    for (label, value) in fields {
        text.push_str(&format!("{label:<14}{value}\n"));
    }
    if let Some(sandbox) = &s.parse_worker_sandbox {
        let line = match &sandbox.error {
            Some(error) => format!("NOT CONFINED, no file is read: {error}"),
            None => format!(
                "uid {}, no-new-privs {}, seccomp {}, landlock {}",
                sandbox.uid,
                if sandbox.no_new_privs { "on" } else { "off" },
                if sandbox.seccomp { "on" } else { "off" },
                sandbox.landlock
            ),
        };
        text.push_str(&format!("{:<14}{line}\n", "parse workers"));
    }
    if let Some(reload) = &s.reload {
        text.push_str(&reload_lines(reload, tz));
    }
    if !s.nodes.is_empty() {
        text.push_str("\nNodes (one catalog in PostgreSQL):\n");
        for node in &s.nodes {
            text.push_str(&format!(
                "  {:<16}{}heartbeat {} ago, started {}, ingestd {}\n",
                node.name,
                if node.this { "(this) " } else { "" },
                output::duration(node.heartbeat_age_secs),
                output::time(&node.started_at, tz),
                node.version
            ));
        }
    }
    if let Some(waiting) = s.index_backlog.filter(|n| *n > 0) {
        text.push_str(&format!(
            "Search index: {waiting} rows wait to go in; searches scan them exactly meanwhile\n"
        ));
    }
    if !s.last_errors.is_empty() {
        text.push_str("\nRecent errors (newest last):\n");
        for notice in &s.last_errors {
            text.push_str(&format!(
                "  {}  {}\n",
                output::time(&notice.time, tz),
                notice.message
            ));
        }
    }
    text
}

/// The last config reload: when, and what it applied, refused, or why it changed nothing.
fn reload_lines(reload: &ReloadInfo, tz: &TimeZone) -> String {
    let when = output::time(&reload.at, tz);
    let mut text = match &reload.error {
        Some(error) => format!("{:<14}failed at {when}: {error}\n", "reload"),
        None if reload.applied.is_empty() => format!("{:<14}{when}, nothing changed\n", "reload"),
        None => format!(
            "{:<14}{when}, applied {}\n",
            "reload",
            reload.applied.join(", ")
        ),
    };
    for refused in &reload.refused {
        text.push_str(&format!(
            "{:<14}not applied: {} ({})\n",
            "", refused.key, refused.reason
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingestd_proto::protocol::{Notice, QueueSummary};

    fn status() -> StatusInfo {
        StatusInfo {
            daemon_version: "0.1.0".into(),
            protocol: 1,
            pid: 4242,
            started_at: "2026-11-27T01:56:24Z".into(),
            uptime_secs: 7_380,
            drop_root: "/srv/drop".into(),
            storage_root: "/srv/ingest_sources".into(),
            database: "/srv/ingestd.sqlite".into(),
            socket: "/run/ingestd/ingestd.sock".into(),
            provider: "minilm".into(),
            groups: 2,
            sources: 12,
            by_status: BTreeMap::from([
                (Status::Invalid, 2),
                (Status::Embedded, 10),
                (Status::Queued, 0),
            ]),
            in_flight: 1,
            queue: QueueSummary {
                queued: 3,
                processing: 1,
                failed: 0,
                concurrency: 3,
            },
            last_errors: vec![Notice {
                time: "2026-11-27T02:00:00Z".into(),
                message: "notes.txt is directly in the drop root; put it in a group folder".into(),
            }],
            reload: None,
            parse_worker_sandbox: None,
            nodes: Vec::new(),
            index_backlog: None,
            read_only: None,
        }
    }

    #[test]
    fn status_lists_folders_counts_and_errors() {
        let text = render(&status(), &TimeZone::UTC);
        for line in [
            "daemon        ingestd 0.1.0 (protocol 1), pid 4242\n",
            "up            2h 03m, since 2026-11-27 01:56:24\n",
            "drop root     /srv/drop\n",
            "sources       12 (embedded 10, invalid 2)\n",
            "queue         3 queued, 1 processing, 0 failed\n",
            "  2026-11-27 02:00:00  notes.txt is directly in the drop root",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
    }

    #[test]
    fn a_cluster_lists_its_nodes_with_their_heartbeats() {
        use ingestd_proto::protocol::ClusterNode;
        let mut clustered = status();
        let node = |name: &str, this: bool, age: u64| ClusterNode {
            name: name.into(),
            this,
            started_at: "2026-11-27T01:00:00Z".into(),
            heartbeat_at: "2026-11-27T03:59:50Z".into(),
            heartbeat_age_secs: age,
            version: "0.1.0".into(),
        };
        clustered.nodes = vec![node("ingest-1", true, 3), node("ingest-2", false, 95)];
        let text = render(&clustered, &TimeZone::UTC);
        assert!(
            text.contains("Nodes (one catalog in PostgreSQL):\n"),
            "{text}"
        );
        assert!(
            text.contains("  ingest-1        (this) heartbeat 3s ago"),
            "{text}"
        );
        assert!(
            text.contains("  ingest-2        heartbeat 1m 35s ago"),
            "{text}"
        );
        assert!(!render(&status(), &TimeZone::UTC).contains("Nodes"));
        assert!(!text.contains("Search index"), "nothing waits: {text}");
        clustered.index_backlog = Some(12_345);
        let text = render(&clustered, &TimeZone::UTC);
        assert!(
            text.contains(
                "Search index: 12345 rows wait to go in; searches scan them exactly meanwhile\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_last_reload_shows_what_was_applied_and_refused() {
        let mut reloaded = status();
        reloaded.reload = Some(ReloadInfo {
            at: "2026-11-27T02:10:00Z".into(),
            file: "/etc/ingestd/ingestd.toml".into(),
            applied: vec!["ingest.max_file_size".into()],
            refused: vec![ingestd_proto::protocol::RefusedKey {
                key: "paths.storage_root".into(),
                reason: "restart ingestd to move them".into(),
            }],
            error: None,
        });
        let text = render(&reloaded, &TimeZone::UTC);
        assert!(
            text.contains("reload        2026-11-27 02:10:00, applied ingest.max_file_size\n"),
            "{text}"
        );
        assert!(
            text.contains("not applied: paths.storage_root (restart ingestd to move them)"),
            "{text}"
        );
        assert!(!render(&status(), &TimeZone::UTC).contains("reload"));
    }

    #[test]
    fn no_errors_no_error_section() {
        let mut quiet = status();
        quiet.last_errors.clear();
        quiet.by_status.clear();
        quiet.sources = 0;
        let text = render(&quiet, &TimeZone::UTC);
        assert!(!text.contains("Recent errors"), "{text}");
        assert!(text.contains("sources       0\n"), "{text}");
    }
}
