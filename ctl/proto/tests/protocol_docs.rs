//! docs/protocol.md cannot drift from the protocol: every JSON request in it goes through the
//! daemon's request parser, and every response goes through the reply type of the request
//! before it (`Call::Reply`), as does every object shown on its own (an audit record, a version,
//! an event line).
//!
//! A request is written back and must say the same (only defaults may be left out); a reply
//! must decode, and every key the document shows must be one the type writes, so a misspelled
//! or removed field in the document fails here. Elided examples (`{…,"id":9,…}`) are skipped
//! line by line; anything else that looks like JSON and is not is a failure.

use ingestd_proto::identity::Actor;
use ingestd_proto::protocol::{
    ActiveEmbeddings, AuditEntry, Call, Command, ErrorCode, Event, JobInfo, Queued, Request,
    Response, RmOutcome, VersionInfo, cmd, parse_request,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::Path;

/// One JSON value of the document, with where it is (for messages).
struct Found {
    line: usize,
    value: Value,
}

/// The JSON values of the ```json and ```text blocks, in document order.
fn json_values(text: &str) -> (Vec<Found>, usize) {
    let mut found = Vec::new();
    let mut elided = 0;
    let mut block: Option<(usize, Vec<&str>)> = None;
    for (n, line) in text.lines().enumerate() {
        let fence = line.trim_start();
        match &mut block {
            None if fence == "```json" || fence == "```text" => block = Some((n + 2, Vec::new())),
            None => {}
            Some((start, lines)) if fence == "```" => {
                let body = lines.join("\n");
                let start = *start;
                block = None;
                let whole: Result<Vec<Value>, _> = serde_json::Deserializer::from_str(&body)
                    .into_iter()
                    .collect();
                if let Ok(values) = whole {
                    // Pretty-printed values span lines; name each by its block's first line.
                    found.extend(values.into_iter().map(|value| Found { line: start, value }));
                    continue;
                }
                for (i, line) in body.lines().enumerate() {
                    let line_no = start + i;
                    let trimmed = line.trim();
                    if !trimmed.starts_with('{') {
                        continue;
                    }
                    // `…` elides part of a value; `"<code>"` is a placeholder in a template.
                    if trimmed.contains('…') || trimmed.contains("\"<") {
                        elided += 1;
                        continue;
                    }
                    let value: Value = serde_json::from_str(trimmed).unwrap_or_else(|e| {
                        panic!("docs/protocol.md:{line_no}: not JSON ({e}): {trimmed}")
                    });
                    found.push(Found {
                        line: line_no,
                        value,
                    });
                }
            }
            Some((_, lines)) => lines.push(line),
        }
    }
    (found, elided)
}

/// Every key of `doc` is one `ours` has, all the way down; values are compared where both are
/// plain values.
fn keys_known(doc: &Value, ours: &Value, at: &str) -> Result<(), String> {
    match (doc, ours) {
        (Value::Object(doc), Value::Object(ours)) => {
            for (key, value) in doc {
                let Some(mine) = ours.get(key) else {
                    return Err(format!("{at}.{key}: the type has no such field"));
                };
                keys_known(value, mine, &format!("{at}.{key}"))?;
            }
            Ok(())
        }
        (Value::Array(doc), Value::Array(ours)) if doc.len() == ours.len() => doc
            .iter()
            .zip(ours)
            .enumerate()
            .try_for_each(|(i, (d, o))| keys_known(d, o, &format!("{at}[{i}]"))),
        (Value::Object(_) | Value::Array(_), _) => Err(format!("{at}: {doc} became {ours}")),
        _ => Ok(()),
    }
}

/// `data` decodes as `T` and shows no key `T` does not write.
fn as_type<T: Serialize + DeserializeOwned>(data: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(data.clone()).map_err(|e| e.to_string())?;
    let ours = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    keys_known(data, &ours, "data")
}

fn reply<R: Call>(data: &Value) -> Result<(), String> {
    as_type::<R::Reply>(data)
}

/// `data` as the reply to `command`. A new command fails to compile here until it is added.
fn check_reply(command: &Command, data: &Value) -> Result<(), String> {
    match command {
        Command::Status(_) => reply::<cmd::Status>(data),
        Command::Groups(_) => reply::<cmd::Groups>(data),
        Command::Ls(_) => reply::<cmd::Ls>(data),
        Command::Show(_) => reply::<cmd::Show>(data),
        Command::Use(_) => reply::<cmd::Use>(data),
        Command::Prefs(_) => reply::<cmd::Prefs>(data),
        Command::PrefsSet(_) => reply::<cmd::PrefsSet>(data),
        Command::Set(_) => reply::<cmd::Set>(data),
        Command::Rm(_) => reply::<cmd::Rm>(data),
        Command::Reembed(_) => reply::<cmd::Reembed>(data),
        Command::Jobs(_) => reply::<cmd::Jobs>(data),
        Command::Retry(_) => reply::<cmd::Retry>(data),
        Command::Cancel(_) => reply::<cmd::Cancel>(data),
        Command::Fsck(_) => reply::<cmd::Fsck>(data),
        Command::Search(_) => reply::<cmd::Search>(data),
        Command::Audit(_) => reply::<cmd::Audit>(data),
        Command::Events(_) => reply::<cmd::Events>(data),
    }
}

/// A check of a value against one type.
type Check = fn(&Value) -> Result<(), String>;

/// An object shown on its own: the first of these types it reads as.
fn check_fragment(value: &Value) -> Result<&'static str, String> {
    let tries: [(&'static str, Check); 8] = [
        ("Actor", as_type::<Actor>),
        ("AuditEntry", as_type::<AuditEntry>),
        ("VersionInfo", as_type::<VersionInfo>),
        ("ActiveEmbeddings", as_type::<ActiveEmbeddings>),
        ("RmOutcome", as_type::<RmOutcome>),
        ("Queued", as_type::<Queued>),
        ("JobInfo", as_type::<JobInfo>),
        ("Event", as_type::<Event>),
    ];
    let mut why = Vec::new();
    for (name, check) in tries {
        match check(value) {
            Ok(()) => return Ok(name),
            Err(e) => why.push(format!("not {name}: {e}")),
        }
    }
    Err(why.join("; "))
}

/// The request as this crate writes it says what the document says, apart from defaults the
/// document spells out (`"all": false`).
fn written_back(command: &Command, doc: &Value) -> Result<(), String> {
    let ours = serde_json::to_value(Request::new(command.clone())).map_err(|e| e.to_string())?;
    let (Value::Object(doc), Value::Object(ours)) = (doc, &ours) else {
        return Err("not an object".into());
    };
    let default = |value: &Value| {
        matches!(value, Value::Bool(false) | Value::Null)
            || value.as_array().is_some_and(Vec::is_empty)
    };
    for (key, value) in doc {
        match ours.get(key) {
            Some(mine) if mine == value => {}
            None if default(value) => {}
            other => {
                return Err(format!(
                    "{key}: the document has {value}, written {other:?}"
                ));
            }
        }
    }
    match ours
        .iter()
        .find(|(k, v)| !doc.contains_key(*k) && !default(v))
    {
        Some((key, value)) => Err(format!("{key}: written as {value}, not in the document")),
        None => Ok(()),
    }
}

#[test]
fn every_example_in_the_protocol_document_is_a_real_request_or_reply() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/protocol.md");
    let text = std::fs::read_to_string(&path).expect("docs/protocol.md");
    let (found, elided) = json_values(&text);

    // The request the next responses answer; `Err` holds the code its parsing failed with.
    let mut last: Option<Result<Command, ErrorCode>> = None;
    // Lines after the first answer to `events` are events.
    let mut answered = false;
    let (mut requests, mut replies, mut fragments) = (0, 0, 0);
    let mut failures = Vec::new();
    // A request the parser refuses must be shown with its error before the next request.
    let mut unanswered: Option<(usize, ErrorCode)> = None;
    let refused_unshown = |unanswered: &mut Option<(usize, ErrorCode)>,
                           failures: &mut Vec<String>| {
        if let Some((line, code)) = unanswered.take() {
            failures.push(format!(
                "docs/protocol.md:{line}: the parser refuses this request ({code:?}) and no error follows"
            ));
        }
    };
    for Found { line, value } in &found {
        if value.get("cmd").is_some() {
            refused_unshown(&mut unanswered, &mut failures);
        }
        let mut fail =
            |message: String| failures.push(format!("docs/protocol.md:{line}: {message}"));
        if value.get("cmd").is_some() {
            requests += 1;
            answered = false;
            let bytes = serde_json::to_vec(value).unwrap();
            last = Some(match parse_request(&bytes) {
                Ok(command) => {
                    if let Err(e) = written_back(&command, value) {
                        fail(format!("{value}: {e}"));
                    }
                    Ok(command)
                }
                Err(error) => {
                    unanswered = Some((*line, error.code));
                    Err(error.code)
                }
            });
        } else if value.get("ok").is_some() && value.get("v").is_some() {
            replies += 1;
            let response: Response = match serde_json::from_value(value.clone()) {
                Ok(response) => response,
                Err(e) => {
                    fail(format!("not a response ({e}): {value}"));
                    continue;
                }
            };
            match (&last, response.ok, response.error, response.data) {
                (_, false, Some(error), _) if error.code == ErrorCode::Unknown => {
                    fail(format!("unknown error code: {value}"))
                }
                (Some(Err(code)), false, Some(error), _) if error.code != *code => fail(format!(
                    "the request before fails with {code:?}, the document says {:?}",
                    error.code
                )),
                (_, false, Some(error), _) => {
                    if unanswered.is_some_and(|(_, code)| code == error.code) {
                        unanswered = None;
                    }
                }
                (Some(Ok(Command::Events(_))), true, _, Some(data)) if answered => {
                    if let Err(e) = as_type::<Event>(&data) {
                        fail(format!("not an event ({e}): {data}"));
                    }
                }
                (Some(Ok(command)), true, _, Some(data)) => {
                    answered = true;
                    if let Err(e) = check_reply(command, &data) {
                        fail(format!("not a reply to {} ({e}): {data}", command.name()));
                    }
                }
                (Some(Err(code)), true, _, _) => fail(format!(
                    "the request before fails with {code:?}, yet this is ok"
                )),
                _ => fail(format!("a response without its request or data: {value}")),
            }
        } else {
            fragments += 1;
            if let Err(e) = check_fragment(value) {
                fail(format!("{value} reads as no protocol type: {e}"));
            }
        }
    }
    refused_unshown(&mut unanswered, &mut failures);
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    // The document has examples of every kind; a parser that found none proves nothing.
    assert!(requests >= 30, "{requests} requests");
    assert!(replies >= 20, "{replies} replies");
    assert!(fragments >= 5, "{fragments} objects on their own");
    assert!(
        elided <= 12,
        "{elided} elided lines: write out real examples"
    );
}

#[test]
fn every_command_has_a_request_example() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/protocol.md");
    let text = std::fs::read_to_string(&path).expect("docs/protocol.md");
    let (found, _) = json_values(&text);
    let named: std::collections::BTreeSet<&str> = found
        .iter()
        .filter_map(|f| f.value.get("cmd")?.as_str())
        .collect();
    for name in Command::names() {
        assert!(
            named.contains(name),
            "docs/protocol.md has no request of {name}"
        );
    }
}
