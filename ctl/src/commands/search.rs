//! `ingestctl search TEXT [-k N] [-g GROUP]`: the rows of a group nearest to TEXT by their
//! active embeddings, to check what was embedded. `--json` prints the array of hits
//! (`{source, version, row, score, text}`); sources embedded by another model than the
//! daemon's are named on stderr, never compared.

use super::{Done, Failure, Options};
use crate::output;
use ingestd_proto::client::Client;
use ingestd_proto::protocol::{SearchResult, cmd};

pub fn run(
    client: &mut Client,
    options: &Options,
    text: &[String],
    k: u32,
) -> Result<Done, Failure> {
    let command = cmd::Search {
        text: text.join(" "),
        group: options.group.clone(),
        k: Some(k),
    };
    let result: SearchResult = client.call(&command)?;
    let notes = result
        .skipped
        .iter()
        .map(|s| format!("note: {s}"))
        .collect();
    let text = if options.json {
        output::json(
            &serde_json::to_value(&result.hits).unwrap_or_default(),
            options.pretty,
        )
    } else {
        render(&result)
    };
    Ok(Done {
        text,
        notes,
        code: 0,
    })
}

fn render(result: &SearchResult) -> String {
    if result.hits.is_empty() {
        return format!(
            "No embedded rows in group '{}' yet ({} rows searched); `ingestctl jobs` shows \
             what is queued.\n",
            result.group, result.searched
        );
    }
    let rows: Vec<_> = result
        .hits
        .iter()
        .map(|h| {
            vec![
                format!("{:.3}", h.score),
                format!("{} {}", h.source, h.version),
                h.row.to_string(),
                output::truncated(&h.text, 100),
            ]
        })
        .collect();
    let mut text = output::table(&["SCORE", "SOURCE", "ROW", "TEXT"], &rows, &[0, 2]);
    text.push_str(&format!(
        "{} of {} rows, by {}\n",
        result.hits.len(),
        result.searched,
        result.model
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingestd_proto::protocol::SearchHit;

    #[test]
    fn hits_print_best_first_with_the_model() {
        let result = SearchResult {
            group: "sales".into(),
            model: "hashing fnv".into(),
            hits: vec![SearchHit {
                source: "q1.csv".into(),
                version: "v2".into(),
                row: 17,
                score: 0.8123,
                text: "q1.csv | sales | region: north".into(),
            }],
            searched: 40,
            skipped: Vec::new(),
        };
        let text = render(&result);
        assert!(text.lines().nth(1).unwrap().starts_with("0.812"), "{text}");
        assert!(text.contains("q1.csv v2"), "{text}");
        assert!(text.ends_with("1 of 40 rows, by hashing fnv\n"), "{text}");
        let empty = SearchResult {
            hits: Vec::new(),
            ..result
        };
        assert!(render(&empty).starts_with("No embedded rows in group 'sales'"));
    }
}
