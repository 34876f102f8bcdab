//! `ingestctl add FILE… [-g GROUP] [--wait]`: copy local files into a group's drop folder, where
//! ingestd takes them as any drop. With `--wait`, follow the group's events (subscribed before
//! the first copy, so no verdict can be missed) until every file is accepted, unchanged or
//! rejected, and report each; exit 1 if any was rejected.

use super::{Done, Failure, NO_GROUP, Options, group_or_current};
use crate::output;
use crate::upload::{self, Upload};
use ingestd_proto::client::{Client, ClientError, EXIT_FAILED};
use ingestd_proto::names::{group_name_problem, valid_group_name};
use ingestd_proto::protocol::{Event, EventKind, Following, StatusInfo, cmd};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long `--wait` waits without any event in the group before giving up. Every event of
/// the group (a file seen, settled, another file's verdict) starts the wait again.
const WAIT_IDLE: Duration = Duration::from_secs(300);

/// What became of one added file.
#[derive(Debug, Clone, PartialEq)]
struct Added {
    upload: Upload,
    path: PathBuf,
    /// `accepted`, `unchanged` or `rejected`: `None` until known (always without `--wait`).
    verdict: Option<Verdict>,
}

#[derive(Debug, Clone, PartialEq)]
struct Verdict {
    kind: EventKind,
    version: Option<String>,
    detail: Option<String>,
}

pub fn run(
    client: &mut Client,
    options: &Options,
    files: &[PathBuf],
    wait: bool,
) -> Result<Done, Failure> {
    let group = group_or_current(client, options)?.ok_or(Failure::Usage(NO_GROUP.into()))?;
    if !valid_group_name(&group) {
        return Err(Failure::Usage(group_name_problem(&group)));
    }
    let uploads = upload::check(files).map_err(|problems| {
        Failure::Failed(format!("nothing was added:\n  {}", problems.join("\n  ")))
    })?;
    let status: StatusInfo = client.call(&cmd::Status {})?;
    let folder =
        upload::group_folder(Path::new(&status.drop_root), &group).map_err(Failure::Failed)?;
    // Subscribed before the first copy, so no verdict can come before we listen.
    let mut follower = if wait {
        Some(follow(client.socket(), &group)?)
    } else {
        None
    };

    let mut added = Vec::new();
    for upload in uploads {
        match upload::place(&upload, &folder) {
            Ok(path) => added.push(Added {
                upload,
                path,
                verdict: None,
            }),
            Err(message) => {
                let placed: Vec<String> = added.iter().map(|a| a.upload.name.clone()).collect();
                let already = match placed.as_slice() {
                    [] => "nothing was added".to_string(),
                    names => format!("added before it: {}", names.join(", ")),
                };
                return Err(Failure::Failed(format!("{message}\n({already})")));
            }
        }
    }

    if let Some(events) = follower.as_mut() {
        wait_for_verdicts(events, &group, &mut added)?;
    }
    let code = if added.iter().any(|a| {
        a.verdict
            .as_ref()
            .is_some_and(|v| v.kind == EventKind::Rejected)
    }) {
        EXIT_FAILED
    } else {
        0
    };
    let text = if options.json {
        output::json(&to_json(&added), options.pretty)
    } else if wait {
        render_verdicts(&added)
    } else {
        render_placed(&added, &group)
    };
    Ok(Done {
        text,
        notes: Vec::new(),
        code,
    })
}

/// A second connection following `group`'s events, ready before anything is copied.
fn follow(socket: &Path, group: &str) -> Result<Client, Failure> {
    let mut events = Client::connect(socket)?;
    let _: Following = events.call(&cmd::Events {
        group: Some(group.to_string()),
        all: false,
    })?;
    events.set_timeout(Some(WAIT_IDLE))?;
    Ok(events)
}

/// Read events until every file in `added` has its verdict.
fn wait_for_verdicts(events: &mut Client, group: &str, added: &mut [Added]) -> Result<(), Failure> {
    let pending = |added: &[Added]| -> Vec<String> {
        added
            .iter()
            .filter(|a| a.verdict.is_none())
            .map(|a| a.upload.name.clone())
            .collect()
    };
    while !pending(added).is_empty() {
        let data = match events.next_data() {
            Ok(Some(data)) => data,
            Ok(None) | Err(ClientError::Closed { .. }) => {
                return Err(Failure::Failed(format!(
                    "ingestd closed the connection before deciding on {}; the files are in the \
                     drop folder, `ingestctl ls -g {group}` shows what became of them",
                    pending(added).join(", ")
                )));
            }
            Err(ClientError::Timeout { .. }) => {
                return Err(Failure::Failed(format!(
                    "no news from ingestd about group '{group}' for {} s while waiting for {}; \
                     the files are in the drop folder, `ingestctl ls -g {group}` shows what \
                     became of them",
                    WAIT_IDLE.as_secs(),
                    pending(added).join(", ")
                )));
            }
            Err(other) => return Err(other.into()),
        };
        let event: Event = serde_json::from_value(data).map_err(|e| {
            Failure::Failed(format!(
                "ingestd sent an event this client cannot read ({e}); `ingestctl ls -g {group}` \
                 shows what became of the files"
            ))
        })?;
        record(&event, group, added);
    }
    Ok(())
}

/// Note `event` as the verdict of the file it is about, if it is a verdict on one of ours.
fn record(event: &Event, group: &str, added: &mut [Added]) {
    if !matches!(
        event.kind,
        EventKind::Accepted | EventKind::Unchanged | EventKind::Rejected
    ) || event.group.as_deref() != Some(group)
    {
        return;
    }
    let Some(source) = event.source.as_deref() else {
        return;
    };
    if let Some(file) = added
        .iter_mut()
        .find(|a| a.verdict.is_none() && a.upload.name == source)
    {
        file.verdict = Some(Verdict {
            kind: event.kind,
            version: event.version.clone(),
            detail: event.detail.clone(),
        });
    }
}

/// `[{file, source, path, outcome, version, detail}]`; `outcome` is `null` without `--wait`.
fn to_json(added: &[Added]) -> Value {
    added
        .iter()
        .map(|a| {
            let verdict = a.verdict.as_ref();
            json!({
                "file": a.upload.file.display().to_string(),
                "source": a.upload.name,
                "path": a.path.display().to_string(),
                "outcome": verdict.map(|v| outcome_name(v.kind)),
                "version": verdict.and_then(|v| v.version.clone()),
                "detail": verdict.and_then(|v| v.detail.clone()),
            })
        })
        .collect()
}

fn outcome_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Accepted => "accepted",
        EventKind::Unchanged => "unchanged",
        _ => "rejected",
    }
}

fn render_placed(added: &[Added], group: &str) -> String {
    let mut text: String = added
        .iter()
        .map(|a| {
            format!(
                "added {} as {}\n",
                a.upload.file.display(),
                a.path.display()
            )
        })
        .collect();
    text.push_str(&format!(
        "ingestd takes each file once it stops changing; `ingestctl ls -g {group}` shows the \
         outcome (or add with --wait).\n"
    ));
    text
}

/// "q1.csv: ready as v2 (2 rows, 3 columns)", "q1.csv: unchanged (same as v1)",
/// "bad.txt: rejected — files of type .txt are not accepted".
fn render_verdicts(added: &[Added]) -> String {
    added
        .iter()
        .map(|a| {
            let name = &a.upload.name;
            match &a.verdict {
                Some(Verdict {
                    kind: EventKind::Accepted,
                    version,
                    detail,
                }) => {
                    let version = version.as_deref().unwrap_or("a new version");
                    match detail
                        .as_deref()
                        .map(without_bytes)
                        .filter(|d| !d.is_empty())
                    {
                        Some(detail) => format!("{name}: ready as {version} ({detail})\n"),
                        None => format!("{name}: ready as {version}\n"),
                    }
                }
                Some(Verdict {
                    kind: EventKind::Unchanged,
                    version,
                    ..
                }) => {
                    let version = version.as_deref().unwrap_or("the newest version");
                    format!("{name}: unchanged (same as {version})\n")
                }
                Some(Verdict { detail, .. }) => {
                    let reason = detail.as_deref().unwrap_or("no reason given");
                    format!("{name}: rejected — {reason}\n")
                }
                None => format!("{name}: no verdict yet\n"),
            }
        })
        .collect()
}

/// An accepted version's detail without its size: the file was ours, its size is known.
/// "2 rows, 3 columns, 18 bytes" → "2 rows, 3 columns".
fn without_bytes(detail: &str) -> &str {
    match detail.rsplit_once(", ") {
        Some((rest, last))
            if last
                .strip_suffix(" bytes")
                .or_else(|| last.strip_suffix(" byte"))
                .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit())) =>
        {
            rest
        }
        _ => detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn added(name: &str) -> Added {
        Added {
            upload: Upload {
                file: PathBuf::from(format!("local/{name}")),
                name: name.into(),
            },
            path: PathBuf::from(format!("/srv/drop/sales/{name}")),
            verdict: None,
        }
    }

    fn event(
        kind: EventKind,
        group: &str,
        source: &str,
        version: Option<&str>,
        detail: Option<&str>,
    ) -> Event {
        Event {
            time: "2026-11-27T02:07:45Z".into(),
            kind,
            group: Some(group.into()),
            source: Some(source.into()),
            version: version.map(String::from),
            detail: detail.map(String::from),
            actor: None,
            job: None,
            progress: None,
        }
    }

    #[test]
    fn only_verdicts_on_our_files_in_our_group_count() {
        let mut files = [added("q1.csv"), added("bad.txt"), added("same.csv")];
        let stream = [
            event(EventKind::Seen, "sales", "q1.csv", None, None),
            event(EventKind::Accepted, "other", "q1.csv", Some("v9"), None),
            event(
                EventKind::Accepted,
                "sales",
                "unrelated.csv",
                Some("v1"),
                None,
            ),
            event(
                EventKind::Accepted,
                "sales",
                "q1.csv",
                Some("v2"),
                Some("2 rows, 3 columns, 18 bytes"),
            ),
            event(
                EventKind::Rejected,
                "sales",
                "bad.txt",
                None,
                Some("files of type .txt are not accepted"),
            ),
            event(EventKind::Unchanged, "sales", "same.csv", Some("v1"), None),
            // A later verdict on the same name does not overwrite the first.
            event(EventKind::Rejected, "sales", "q1.csv", None, Some("late")),
        ];
        for e in &stream {
            record(e, "sales", &mut files);
        }
        let kinds: Vec<_> = files
            .iter()
            .map(|f| f.verdict.as_ref().map(|v| v.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                Some(EventKind::Accepted),
                Some(EventKind::Rejected),
                Some(EventKind::Unchanged)
            ]
        );
        assert_eq!(
            render_verdicts(&files),
            "q1.csv: ready as v2 (2 rows, 3 columns)\n\
             bad.txt: rejected — files of type .txt are not accepted\n\
             same.csv: unchanged (same as v1)\n"
        );
        let json = to_json(&files);
        assert_eq!(
            json[0],
            json!({
                "file": "local/q1.csv",
                "source": "q1.csv",
                "path": "/srv/drop/sales/q1.csv",
                "outcome": "accepted",
                "version": "v2",
                "detail": "2 rows, 3 columns, 18 bytes",
            })
        );
        assert_eq!(json[1]["outcome"], "rejected");
        assert_eq!(json[2]["outcome"], "unchanged");
    }

    #[test]
    fn without_wait_it_says_where_each_file_went() {
        let files = [added("q1.csv")];
        let text = render_placed(&files, "sales");
        assert_eq!(
            text,
            "added local/q1.csv as /srv/drop/sales/q1.csv\n\
             ingestd takes each file once it stops changing; `ingestctl ls -g sales` shows the \
             outcome (or add with --wait).\n"
        );
        assert_eq!(to_json(&files)[0]["outcome"], Value::Null);
    }

    #[test]
    fn the_size_is_left_out_of_an_accepted_detail() {
        let cases = [
            ("2 rows, 3 columns, 18 bytes", "2 rows, 3 columns"),
            ("1 row, 1 column, 1 byte", "1 row, 1 column"),
            ("2 rows, 3 columns", "2 rows, 3 columns"),
            ("2 rows, many bytes", "2 rows, many bytes"),
            ("", ""),
        ];
        for (detail, want) in cases {
            assert_eq!(without_bytes(detail), want, "{detail}");
        }
    }
}
