//! `ingestctl set SOURCE --header-row N | --no-header | --encoding NAME | --sheet NAME |
//! --delimiter C | --clear`: how a source's files are read when detection gets them wrong.
//! The daemon reads the newest version again with the options and says what it reads as now;
//! a version it cannot read that way is refused and nothing changes.

use super::{Done, Failure, Options};
use crate::cli::SetArgs;
use crate::output;
use ingestd_proto::client::Client;
use ingestd_proto::protocol::{SetOutcome, cmd};

pub fn run(client: &mut Client, options: &Options, args: &SetArgs) -> Result<Done, Failure> {
    let command = cmd::Set {
        source: args.source.clone(),
        group: options.group.clone(),
        header_row: args.header_row,
        no_header: args.no_header,
        encoding: args.encoding.clone(),
        sheet: args.sheet.clone(),
        delimiter: args.delimiter.clone(),
        clear: args.clear,
    };
    let data = client.request(&command)?;
    if options.json {
        return Ok(Done::text(output::json(&data, options.pretty)));
    }
    let outcome: SetOutcome = serde_json::from_value(data).map_err(|e| {
        Failure::Failed(format!(
            "the daemon applied the options but sent an answer this client cannot read ({e}); \
             `ingestctl show {}` shows them",
            args.source
        ))
    })?;
    Ok(Done::text(render(&outcome)))
}

fn render(o: &SetOutcome) -> String {
    let mut text = match &o.options {
        Some(set) => format!(
            "{} is read with {} from now on.\n",
            o.source,
            set.options.describe()
        ),
        None => format!(
            "{} has no read options any more: its files are detected again.\n",
            o.source
        ),
    };
    let field = |text: &mut String, label: &str, value: &str| {
        text.push_str(&format!("  {label:<9}{value}\n"));
    };
    if let Some(header) = &o.reading.header {
        field(
            &mut text,
            "header",
            header.strip_prefix("header ").unwrap_or(header),
        );
    }
    if let Some(encoding) = &o.reading.encoding {
        field(&mut text, "encoding", encoding);
    }
    field(&mut text, "rows", &o.rows.to_string());
    text.push_str(&format!(
        "{} now reads as {} columns: {}\n",
        o.version,
        o.columns.len(),
        output::escape(&o.columns.join(", "))
    ));
    if o.previous_columns != o.columns {
        text.push_str(&format!(
            "  (before: {})\n",
            output::escape(&o.previous_columns.join(", "))
        ));
    }
    if let Some(job) = o.job {
        text.push_str(&format!(
            "Its rows are embedded again by job {job}; the current embeddings stay searchable \
             until it succeeds.\n"
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingestd::protocol::{ReadOverride, Reading, SourceOverride};

    #[test]
    fn the_outcome_says_what_the_version_reads_as_now() {
        let outcome = SetOutcome {
            group: "sales".into(),
            source: "report.csv".into(),
            version: "v1".into(),
            options: Some(SourceOverride {
                options: ReadOverride {
                    header_row: Some(4),
                    ..ReadOverride::default()
                },
                set_by: Some("admin".into()),
                set_at: "2026-12-07T00:00:00Z".into(),
            }),
            columns: vec!["id".into(), "name".into()],
            skipped_columns: Vec::new(),
            rows: 2,
            reading: Reading {
                header: Some("header on line 4 (set for this source)".into()),
                ..Reading::default()
            },
            previous_columns: vec!["Report".into()],
            job: Some(7),
        };
        assert_eq!(
            render(&outcome),
            "report.csv is read with header on row 4 from now on.\n\
             \x20 header   on line 4 (set for this source)\n\
             \x20 rows     2\n\
             v1 now reads as 2 columns: id, name\n\
             \x20 (before: Report)\n\
             Its rows are embedded again by job 7; the current embeddings stay searchable until \
             it succeeds.\n"
        );
    }
}
