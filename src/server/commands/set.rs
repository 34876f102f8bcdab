//! `set`: a source's read options, for when detection reads its files wrong.
//!
//! The options are checked against the source's format first (an encoding label nobody
//! knows, `--sheet` on a CSV, anything on Parquet are refused with what to do). Then the
//! newest version's stored file is read again with them by a parse worker — the daemon never
//! parses it itself — and only when that read succeeds does the catalog store the options,
//! give the version its new columns, audit the change and queue the version's embedding job,
//! all in one transaction. A read that fails changes nothing and says why. Admins only: the
//! gate in `handlers` checks it before this runs.

use crate::catalog::read_options::ReadAs;
use crate::ingest::columns::forced;
use crate::ingest::formats::Format;
use crate::ingest::isolate::{self, Failure, Limits, ParseWorker};
use crate::protocol::{ErrorBody, ErrorCode, ReadOverride, SetOutcome, cmd};
use crate::server::auth::Peer;
use crate::server::context::{Reply, Shared, bad_args, known_peer, need_group};
/// `set` as it came on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetRequest {
    pub source: String,
    pub options: ReadOverride,
    pub clear: bool,
}

/// Answer a `set` command.
pub async fn handle(shared: &Shared, peer: Option<Peer>, request: cmd::Set) -> Reply<cmd::Set> {
    let cmd::Set {
        source,
        group,
        header_row,
        no_header,
        encoding,
        sheet,
        delimiter,
        clear,
    } = request;
    let group = need_group(shared, peer, group).await?;
    let options = ReadOverride {
        header_row,
        no_header,
        encoding,
        sheet,
        delimiter,
    };
    let request = SetRequest {
        source,
        options,
        clear,
    };
    set(shared, peer, group, request).await
}

async fn set(
    shared: &Shared,
    peer: Option<Peer>,
    group: String,
    request: SetRequest,
) -> Reply<cmd::Set> {
    let peer = known_peer(peer)?;
    let SetRequest {
        source,
        options,
        clear,
    } = request;
    match (clear, options.is_empty()) {
        (true, false) => return Err(bad_args("give read options or clear, not both")),
        (false, true) => {
            return Err(bad_args(
                "name a read option to set (header_row, no_header, encoding, sheet, \
                 delimiter), or clear to remove them all",
            ));
        }
        _ => {}
    }
    let (g, s) = (group.clone(), source.clone());
    let reread = shared.catalog.version_to_reread(g, s).await?;
    let format = Format::from_extension(&reread.format).ok_or_else(|| {
        ErrorBody::new(
            ErrorCode::Internal,
            format!("{source} is stored with format {:?}", reread.format),
        )
    })?;
    let stored = if clear {
        None
    } else {
        Some(forced::check(format, &options).map_err(|e| bad_args(e.0))?)
    };

    let config = shared.config();
    let mut read = isolate::read_options(&config.ingest);
    if matches!(format, Format::Xls | Format::Xlsx | Format::Xlsm) {
        let g = group.clone();
        read.sheet = shared.catalog.preferred_sheet(g).await?;
    }
    if let Some(options) = &stored {
        read.apply(options);
    }
    let limits = Limits::of(&config.ingest);
    drop(config);
    let path = reread.stored_path.clone();
    let extracted = tokio::task::spawn_blocking(move || {
        ParseWorker::current().extract(format, &path, &read, &limits)
    })
    .await
    .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?;
    let version = format!("v{}", reread.version_no);
    let mut extracted = match extracted {
        Ok(extracted) => extracted,
        Err(Failure::Rejected(rejection)) => {
            let with = match &stored {
                Some(options) => format!("with {}", options.describe()),
                None => "without read options".to_string(),
            };
            return Err(ErrorBody::new(
                ErrorCode::Refused,
                format!(
                    "{source} {version} cannot be read {with}: {rejection}; nothing was changed"
                ),
            ));
        }
        Err(Failure::Worker(error)) => {
            return Err(ErrorBody::new(
                ErrorCode::Internal,
                format!("cannot read {source} {version} again: {error}; nothing was changed"),
            ));
        }
    };
    let actor = peer.actor();
    extracted.reading.set = stored.clone();
    extracted.reading.set_by = stored.as_ref().and_then(|_| actor.display_name());
    let detail = crate::server::refusals::bound_detail(format!(
        "{}; {version} read again: {} columns, {} rows",
        match &stored {
            Some(options) => format!("read options: {}", options.describe()),
            None => "read options cleared, detected again".to_string(),
        },
        extracted.columns.len(),
        extracted.rows
    ));
    let read_as = ReadAs {
        columns: extracted.columns,
        skipped: extracted.skipped,
        rows: extracted.rows,
        notes: extracted.notes,
        reading: extracted.reading,
    };
    let applied = {
        let (reread, read_as) = (reread.clone(), read_as.clone());
        shared
            .catalog
            .apply_override(reread, stored, read_as, actor, detail)
            .await?
            .map_err(|why| ErrorBody::new(ErrorCode::Refused, why))?
    };
    Ok(SetOutcome {
        group,
        source,
        version,
        options: applied.options,
        columns: read_as.columns,
        skipped_columns: read_as.skipped,
        rows: read_as.rows,
        reading: read_as.reading,
        previous_columns: reread.columns,
        job: Some(applied.job),
    })
}

#[cfg(test)]
mod tests {
    use crate::protocol::{Command, Response, SetOutcome, parse_request};

    /// The `set` section of docs/protocol.md.
    fn section() -> String {
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/protocol.md"),
        )
        .unwrap();
        let start = doc.find("### `set`").expect("a set section");
        let rest = &doc[start + 1..];
        let end = rest.find("\n### ").map_or(rest.len(), |e| e);
        rest[..end].to_string()
    }

    #[test]
    fn every_example_of_the_protocol_doc_parses() {
        let section = section();
        let mut requests = 0;
        let mut responses = 0;
        for block in section.split("```json\n").skip(1) {
            let json = block.split("\n```").next().unwrap();
            if json.contains("\"cmd\"") {
                let command =
                    parse_request(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e:?}"));
                assert!(matches!(command, Command::Set(_)), "{json}");
                requests += 1;
            } else {
                let response: Response =
                    serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
                let outcome: SetOutcome = serde_json::from_value(response.data.expect("data"))
                    .unwrap_or_else(|e| panic!("{json}: {e}"));
                assert_eq!(
                    outcome.reading.set.as_ref(),
                    outcome.options.as_ref().map(|o| &o.options)
                );
                responses += 1;
            }
        }
        // And the requests of its table of errors, which parse and are refused later.
        for line in section.lines().filter(|l| l.starts_with("| `{")) {
            let json = &line[3..line[3..].find('`').unwrap() + 3];
            let command =
                parse_request(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e:?}"));
            assert!(matches!(command, Command::Set(_)), "{json}");
            assert!(command.check_bounds(1000).is_ok(), "{json}");
            requests += 1;
        }
        assert!(
            requests >= 10 && responses >= 1,
            "{requests} requests, {responses} responses"
        );
    }
}
