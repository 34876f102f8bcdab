//! `ingestctl show SOURCE [-g GROUP]`: one source in full — its header facts, current and
//! skipped columns, then every version and rejected attempt with its reason.

use super::Options;
use crate::output;
use ingestd_proto::client::{Client, ClientError};
use ingestd_proto::protocol::{JobInfo, Reading, SkippedColumn, SourceDetail, VersionInfo, cmd};
use jiff::tz::TimeZone;

pub fn run(
    client: &mut Client,
    options: &Options,
    source: &str,
    preview: Option<u32>,
) -> Result<String, ClientError> {
    let command = cmd::Show {
        source: source.to_string(),
        group: options.group.clone(),
        preview,
        prefs: None,
    };
    if options.json {
        return Ok(output::json_text(
            client.call_text(&command)?,
            options.pretty,
        ));
    }
    let detail: SourceDetail = client.call(&command)?;
    Ok(render(&detail, &options.tz))
}

fn render(detail: &SourceDetail, tz: &TimeZone) -> String {
    let s = &detail.summary;
    let e = output::escape;
    let mut text = format!("{} in group {}\n", e(&s.name), e(&s.group));
    // Each value is one line whatever it holds (reasons, paths and notes name files).
    let mut field = |label: &str, value: String| {
        text.push_str(&format!("  {label:<9}{}\n", e(&value)));
    };
    let status = match &s.version {
        Some(version) => format!("{} ({version})", s.status),
        None => s.status.to_string(),
    };
    field("status", status);
    if let Some(reason) = &s.reason {
        field("reason", reason.clone());
    }
    field("rows", output::or_dash(s.rows));
    let format_and_size = match (&s.format, s.size) {
        (Some(format), Some(size)) => format!("{format}, {}", output::size(size)),
        (Some(format), None) => format.clone(),
        (None, Some(size)) => output::size(size),
        (None, None) => "-".to_string(),
    };
    field("format", format_and_size);
    if let Some(sha256) = &s.sha256 {
        field("sha256", sha256.clone());
    }
    let current = detail
        .versions
        .iter()
        .find(|v| v.version.is_some() && v.version == s.version);
    if let Some(stored) = current.and_then(|v| v.stored_path.clone()) {
        field("stored", stored);
    }
    if let Some(reading) = current.map(|v| &v.reading) {
        if let Some(header) = &reading.header {
            let header = header.strip_prefix("header ").unwrap_or(header);
            field("header", set_by(header, reading));
        }
        if let Some(encoding) = encoding(reading) {
            field("encoding", encoding);
        }
        if let Some(set) = &reading.set {
            let by = reading
                .set_by
                .as_deref()
                .map_or(String::new(), |w| format!(" (by {w})"));
            field("set", format!("{}{by}", set.describe()));
        }
    }
    if let Some(notes) = current.filter(|v| !v.notes.is_empty()) {
        field("read as", notes.notes.join("; "));
    }
    field(
        "added",
        format!(
            "{} by {}",
            output::maybe_time(s.added_at.as_deref(), tz),
            output::who(s.added_by.as_deref(), s.added_by_uid)
        ),
    );
    field("updated", output::maybe_time(s.updated_at.as_deref(), tz));

    text.push_str(&format!("\nColumns ({}):", s.columns.len()));
    if s.columns.is_empty() {
        text.push_str(" none\n");
    } else {
        let columns: Vec<_> = s.columns.iter().map(|c| e(c)).collect();
        text.push_str(&format!(" {}\n", columns.join(", ")));
    }
    text.push_str(&skipped(&s.skipped_columns));

    if !detail.versions.is_empty() {
        text.push_str("\nVersions and attempts (newest first):\n");
        text.push_str(&versions(&detail.versions, tz));
    }
    match &detail.embeddings {
        Some(active) => text.push_str(&format!(
            "\nEmbeddings: {} rows of {} by {} {} ({} dimensions), active since {}\n",
            active.rows,
            active.version,
            active.provider,
            active.model,
            active.dimension,
            output::time(&active.activated_at, tz)
        )),
        None => text.push_str("\nEmbeddings: none active\n"),
    }
    if !detail.jobs.is_empty() {
        text.push_str("\nJobs (newest first):\n");
        text.push_str(&jobs(&detail.jobs, tz));
    }
    if let Some(preview) = &detail.preview {
        text.push_str(&format!(
            "\nPreview: the text embedded for the first {} rows\n",
            preview.len()
        ));
        for (n, row) in preview.iter().enumerate() {
            text.push_str(&format!("  {:>4}  {}\n", n + 1, output::escape(row)));
        }
    }
    text
}

/// A reader's "set for this source" as "set by alice", when the version says who set it.
fn set_by(text: &str, reading: &Reading) -> String {
    match &reading.set_by {
        Some(who) => text.replace("set for this source", &format!("set by {who}")),
        None => text.to_string(),
    }
}

/// "Shift_JIS (detected, high confidence)", "UTF-8 (byte-order mark)", "Shift_JIS (set)".
fn encoding(reading: &Reading) -> Option<String> {
    let name = reading.encoding.as_deref()?;
    let how = match (&reading.encoding_found_by, &reading.encoding_confidence) {
        (Some(how), Some(confidence)) => format!(" ({how}, {confidence} confidence)"),
        (Some(how), None) => format!(" ({how})"),
        (None, _) => String::new(),
    };
    Some(format!("{name}{how}"))
}

fn jobs(jobs: &[JobInfo], tz: &TimeZone) -> String {
    let rows: Vec<_> = jobs
        .iter()
        .map(|j| {
            vec![
                j.id.to_string(),
                j.version.clone(),
                j.state.to_string(),
                format!("{}/{}", j.progress.done, j.progress.total),
                format!("{}/{}", j.attempt, j.max_attempts),
                output::time(&j.queued_at, tz),
                j.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    output::table(
        &[
            "JOB", "VERSION", "STATE", "ROWS", "ATTEMPT", "QUEUED", "ERROR",
        ],
        &rows,
        &[0],
    )
}

fn skipped(columns: &[SkippedColumn]) -> String {
    if columns.is_empty() {
        return String::new();
    }
    let mut text = format!("Skipped columns ({}):\n", columns.len());
    for column in columns {
        text.push_str(&format!(
            "  column {}: {}\n",
            column.position,
            output::escape(&column.reason)
        ));
    }
    text
}

fn versions(versions: &[VersionInfo], tz: &TimeZone) -> String {
    let rows: Vec<_> = versions
        .iter()
        .map(|v| {
            vec![
                output::or_dash(v.version.as_deref()),
                v.status.to_string(),
                output::or_dash(v.rows),
                v.columns.len().to_string(),
                output::or_dash(v.size.map(output::size)),
                output::time(&v.added_at, tz),
                output::who(v.added_by.as_deref(), v.added_by_uid),
                v.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    output::table(
        &[
            "VERSION", "STATUS", "ROWS", "COLUMNS", "SIZE", "ADDED", "BY", "REASON",
        ],
        &rows,
        &[2, 3, 4],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::ls::tests::summary;
    use ingestd_proto::protocol::Status;

    fn version(label: Option<&str>, status: Status, reason: Option<&str>) -> VersionInfo {
        VersionInfo {
            version: label.map(String::from),
            status,
            reason: reason.map(String::from),
            format: Some("csv".into()),
            size: Some(2_500_000),
            sha256: None,
            rows: label.map(|_| 1204),
            columns: ["id", "date"].map(String::from).to_vec(),
            skipped_columns: Vec::new(),
            stored_path: label.map(|l| format!("/srv/store/sales/q1_{l}.csv")),
            added_at: "2026-11-27T01:56:24Z".into(),
            added_by: None,
            added_by_uid: Some(1001),
            notes: Vec::new(),
            reading: Reading::default(),
        }
    }

    #[test]
    fn show_prints_header_columns_skipped_and_versions() {
        let mut summary = summary("sales", "q1.csv", Status::Embedded);
        summary.skipped_columns = vec![SkippedColumn {
            position: 4,
            reason: "blank header".into(),
        }];
        let mut v2 = version(Some("v2"), Status::Embedded, None);
        v2.reading = Reading {
            header: Some("header on line 4 (3 rows above it skipped: a title, 2 blank)".into()),
            header_row: Some(4),
            encoding: Some("Shift_JIS".into()),
            encoding_found_by: Some("detected".into()),
            encoding_confidence: Some("high".into()),
            ..Reading::default()
        };
        let detail = SourceDetail {
            summary,
            versions: vec![
                v2,
                version(None, Status::Invalid, Some("the file is empty (0 bytes)")),
                version(Some("v1"), Status::Embedded, None),
            ],
            jobs: Vec::new(),
            embeddings: None,
            preview: Some(vec!["q1.csv | sales | id: 1".into()]),
        };
        let text = render(&detail, &TimeZone::UTC);
        for needle in [
            "q1.csv in group sales\n",
            "  status   embedded (v2)\n",
            "  format   csv, 12.3 kB\n",
            "  stored   /srv/store/sales/q1_v2.csv\n",
            "  header   on line 4 (3 rows above it skipped: a title, 2 blank)\n",
            "  encoding Shift_JIS (detected, high confidence)\n",
            "  added    2026-11-27 01:50:00 by alice\n",
            "\nColumns (3): id, date, amount\n",
            "Skipped columns (1):\n  column 4: blank header\n",
            "Versions and attempts (newest first):\nVERSION",
            "Embeddings: none active\n",
            "Preview: the text embedded for the first 1 rows\n     1  q1.csv | sales | id: 1\n",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
        let table: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("VERSION"))
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(table.len(), 4, "{text}");
        assert!(table[1].starts_with("v2"), "{text}");
        assert!(table[1].contains("2.5 MB"), "{text}");
        assert!(table[1].contains("uid 1001"), "{text}");
        assert!(table[2].starts_with("-"), "{text}");
        assert!(table[2].ends_with("the file is empty (0 bytes)"), "{text}");
    }

    #[test]
    fn a_source_never_accepted_shows_its_reason() {
        let mut summary = summary("sales", "bad.csv", Status::Invalid);
        summary.version = None;
        summary.columns.clear();
        summary.reason = Some("not a CSV file".into());
        let detail = SourceDetail {
            summary,
            versions: vec![version(None, Status::Invalid, Some("not a CSV file"))],
            jobs: Vec::new(),
            embeddings: None,
            preview: None,
        };
        let text = render(&detail, &TimeZone::UTC);
        assert!(text.contains("  status   invalid\n"), "{text}");
        assert!(text.contains("  reason   not a CSV file\n"), "{text}");
        assert!(text.contains("Columns (0): none\n"), "{text}");
        assert!(!text.contains("stored"), "{text}");
    }
}
