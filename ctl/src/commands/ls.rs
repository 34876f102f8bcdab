//! `ingestctl ls [-g GROUP] [--all]`: the sources of a group (`-g`, else the current group), or
//! of every group, one row each. With nothing to list it explains how files get in, rather
//! than printing an empty table.

use super::{Options, Text, drop_root, group_or_current, no_files_guidance};
use crate::output;
use ingestd_proto::client::{Client, ClientError};
#[cfg(doc)]
use ingestd_proto::protocol::SourceSummary;
use ingestd_proto::protocol::{Status, cmd};
use jiff::tz::TimeZone;
use serde::Deserialize;
use std::borrow::Cow;

pub fn run(client: &mut Client, options: &Options, all: bool) -> Result<String, ClientError> {
    let command = cmd::Ls {
        group: options.group.clone(),
        all,
    };
    if options.json {
        return Ok(output::json_text(
            client.call_text(&command)?,
            options.pretty,
        ));
    }
    let mut answer = Vec::new();
    let sources: Vec<Row<'_>> = client.call_view(&command, &mut answer)?;
    if sources.is_empty() {
        // Which group was listed, to say where its files go: asked only now, so a listing
        // with something in it costs one round trip.
        let group = if all {
            None
        } else {
            group_or_current(client, options)?
        };
        let root = drop_root(client);
        return Ok(no_files_guidance(group.as_deref(), root.as_deref()));
    }
    Ok(render(&sources, &options.tz))
}

/// One source as `ls` prints it: the fields of a [`SourceSummary`] that the table and the
/// notes under it show, read from the answer's text without copying the strings that need
/// no unescaping. A listing of thousands of sources is decoded this way in a fraction of
/// what the whole summaries cost (an allocation per string, for fields never shown).
#[derive(Deserialize)]
struct Row<'a> {
    #[serde(borrow)]
    group: Text<'a>,
    #[serde(borrow)]
    name: Text<'a>,
    #[serde(borrow)]
    version: Option<Text<'a>>,
    status: Status,
    rows: Option<u64>,
    columns: ColumnsCell,
    #[serde(borrow)]
    reason: Option<Text<'a>>,
    #[serde(borrow)]
    added_at: Option<Text<'a>>,
    #[serde(borrow)]
    updated_at: Option<Text<'a>>,
}

/// The `columns` of a source as its cell shows them, joined and cut as they are decoded
/// ([`output::Joined`]): no list of names is kept for each source.
struct ColumnsCell(String);

impl<'de> Deserialize<'de> for ColumnsCell {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Names;
        impl<'de> serde::de::Visitor<'de> for Names {
            type Value = ColumnsCell;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of column names")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut names: A,
            ) -> Result<ColumnsCell, A::Error> {
                let mut joined = output::Joined::new(output::COLUMNS_WIDTH);
                while let Some(name) = names.next_element::<Text<'de>>()? {
                    joined.push(&name);
                }
                Ok(ColumnsCell(joined.finish()))
            }
        }
        deserializer.deserialize_seq(Names)
    }
}

/// The table, then why each rejected source was rejected (a reason is too long for a cell).
///
/// The cells are made as the table asks for them, borrowed from the answer where they can
/// be, rather than kept as a second table: at thousands of sources, the pages a second copy
/// takes cost more than making the few owned cells twice.
fn render(sources: &[Row<'_>], tz: &TimeZone) -> String {
    let mut times = output::Times::new(tz);
    let updated: Vec<String> = sources
        .iter()
        .map(
            |s| match s.updated_at.as_deref().or(s.added_at.as_deref()) {
                Some(time) => times.show(time),
                None => "-".to_string(),
            },
        )
        .collect();
    let rows = sources.iter().zip(&updated).map(|(s, updated)| {
        [
            Cow::Borrowed(&*s.group),
            Cow::Borrowed(&*s.name),
            Cow::Borrowed(s.version.as_deref().unwrap_or("-")),
            Cow::Borrowed(s.status.as_str()),
            Cow::Owned(output::or_dash(s.rows)),
            Cow::Borrowed(s.columns.0.as_str()),
            Cow::Borrowed(updated.as_str()),
        ]
    });
    let mut text = output::table(
        &[
            "GROUP", "NAME", "VERSION", "STATUS", "ROWS", "COLUMNS", "UPDATED",
        ],
        rows,
        &[4],
    );
    let rejected: Vec<_> = sources
        .iter()
        .filter(|s| s.status == Status::Invalid)
        .collect();
    if !rejected.is_empty() {
        text.push_str("\nRejected (the file is in the group's .rejected/ folder):\n");
        for source in rejected {
            let reason = source.reason.as_deref().unwrap_or("no reason recorded");
            text.push_str(&format!(
                "  {}/{}: {reason}\n",
                &*source.group, &*source.name
            ));
        }
    }
    let waiting: Vec<_> = sources
        .iter()
        .filter(|s| s.status == Status::Pending && s.reason.is_some())
        .collect();
    if !waiting.is_empty() {
        text.push_str("\nWaiting (the file stays in its drop folder and is tried again):\n");
        for source in waiting {
            let reason = source.reason.as_deref().unwrap_or_default();
            text.push_str(&format!(
                "  {}/{}: {reason}\n",
                &*source.group, &*source.name
            ));
        }
    }
    text
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use ingestd_proto::protocol::SourceSummary;

    /// `sources` as `ls` reads them from the daemon's answer: encoded, then decoded as rows.
    fn rendered(sources: &[SourceSummary], tz: &TimeZone) -> String {
        let text = serde_json::to_string(sources).unwrap();
        let rows: Vec<Row<'_>> = serde_json::from_str(&text).unwrap();
        render(&rows, tz)
    }

    /// A summary with the fields `ls` shows; tests change what they need.
    pub fn summary(group: &str, name: &str, status: Status) -> SourceSummary {
        SourceSummary {
            group: group.into(),
            name: name.into(),
            version: Some("v2".into()),
            status,
            rows: Some(1204),
            columns: ["id", "date", "amount"].map(String::from).to_vec(),
            skipped_columns: Vec::new(),
            reason: None,
            format: Some("csv".into()),
            size: Some(12_345),
            sha256: Some("ab".repeat(32)),
            added_at: Some("2026-11-27T01:50:00Z".into()),
            added_by: Some("alice".into()),
            added_by_uid: Some(1000),
            updated_at: Some("2026-11-27T01:56:24Z".into()),
        }
    }

    #[test]
    fn each_source_is_a_row_under_the_header() {
        let mut wide = summary("sales", "wide.xlsx", Status::Embedding);
        wide.columns = (1..=30).map(|i| format!("column_{i}")).collect();
        let sources = [summary("sales", "q1.csv", Status::Embedded), wide];
        let text = rendered(&sources, &TimeZone::UTC);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        for word in [
            "GROUP", "NAME", "VERSION", "STATUS", "ROWS", "COLUMNS", "UPDATED",
        ] {
            assert!(lines[0].contains(word), "{text}");
        }
        for word in [
            "sales",
            "q1.csv",
            "v2",
            "embedded",
            "1204",
            "id, date, amount",
            "2026-11-27 01:56:24",
        ] {
            assert!(lines[1].contains(word), "{word}: {text}");
        }
        assert!(lines[2].contains("column_1, column_2"), "{text}");
        assert!(lines[2].contains("… +"), "{text}");
        assert!(!lines[2].contains("column_30"), "{text}");
        assert!(!text.contains("Rejected"), "{text}");
    }

    #[test]
    fn rejected_sources_show_dashes_and_their_reason() {
        let mut bad = summary("sales", "bad.xlsx", Status::Invalid);
        bad.version = None;
        bad.rows = None;
        bad.columns.clear();
        bad.updated_at = None;
        bad.reason = Some("sheet 'Q1' has no header row".into());
        let text = rendered(&[bad], &TimeZone::UTC);
        let row = text.lines().nth(1).unwrap();
        assert!(row.contains("bad.xlsx  -  "), "{text}");
        assert!(row.contains("invalid"), "{text}");
        assert!(
            row.ends_with("2026-11-27 01:50:00"),
            "falls back to added_at: {text}"
        );
        assert!(
            text.contains("  sales/bad.xlsx: sheet 'Q1' has no header row\n"),
            "{text}"
        );
    }

    #[test]
    fn pending_sources_that_wait_show_why() {
        let mut waiting = summary("sales", "q.csv", Status::Pending);
        waiting.reason = Some("catalog error; trying again in 4 s".into());
        let settling = summary("sales", "r.csv", Status::Pending);
        let text = rendered(&[waiting, settling], &TimeZone::UTC);
        assert!(
            text.contains("Waiting (the file stays in its drop folder and is tried again):\n  sales/q.csv: catalog error; trying again in 4 s\n"),
            "{text}"
        );
        assert!(!text.contains("sales/r.csv:"), "{text}");
    }
}
