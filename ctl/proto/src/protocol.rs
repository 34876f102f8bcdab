//! The control protocol between `ingestd` and its clients, defined once.
//!
//! Newline-delimited JSON over a Unix stream socket: one request object per line, one response
//! object per line. Every request carries `"v": PROTOCOL_VERSION`; the daemon, `ingestctl` and
//! the tests all import this module so the two ends can never disagree about a shape.
//! `docs/protocol.md` is the human-readable copy of this file — change both together.
//!
//! This module holds types and pure parsing only: no I/O, no daemon state.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The one protocol version. Bump it when a request or response changes incompatibly.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest request line, newline excluded. Longer request lines are answered with
/// [`ErrorCode::LineTooLong`] and skipped; the connection stays usable.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Longest name a request may carry: a source, a version target, a group, a sheet.
pub const MAX_NAME_BYTES: usize = 255;

/// Longest column name a request may carry (headers of real files can be whole sentences).
pub const MAX_COLUMN_BYTES: usize = 1024;

/// Longest `template` of `prefs_set`, and of the `prefs` a `show` preview tries.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;

/// Most audit records one `audit` request returns; page further with `before`.
pub const AUDIT_MAX: u32 = 1000;

/// Most jobs one `jobs` request returns; page further with `before`.
pub const JOBS_MAX: u32 = 1000;

/// Longest response line. Responses may be larger than requests (`ls` of every group), but
/// are still bounded so a client never reads without limit.
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// A request, as sent on the wire: `{"v":1,"cmd":"ls","group":"sales"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Request {
    pub v: u32,
    #[serde(flatten)]
    pub command: Command,
}

impl Request {
    pub fn new(command: Command) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            command,
        }
    }
}

pub mod cmd;

pub use cmd::Call;

/// Every command the daemon understands, each a struct of [`cmd`] under the `cmd` tag. One
/// variant ↔ one handler ↔ one `ingestctl` subcommand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    Status(cmd::Status),
    Groups(cmd::Groups),
    Ls(cmd::Ls),
    Show(cmd::Show),
    Use(cmd::Use),
    Prefs(cmd::Prefs),
    PrefsSet(cmd::PrefsSet),
    Set(cmd::Set),
    Rm(cmd::Rm),
    Reembed(cmd::Reembed),
    Jobs(cmd::Jobs),
    Retry(cmd::Retry),
    Cancel(cmd::Cancel),
    Fsck(cmd::Fsck),
    Search(cmd::Search),
    Audit(cmd::Audit),
    Events(cmd::Events),
}

/// Preferences to try in a `show` preview without saving them: they replace the group's
/// saved columns, context columns and template for that one rendering.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefsDraft {
    /// Columns whose values are embedded; empty means every column.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// Columns added to every row's text as context; empty means none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<String>,
    /// `None` or empty: no template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

impl Command {
    /// The command's name on the wire (its `cmd`).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Status(_) => "status",
            Command::Groups(_) => "groups",
            Command::Ls(_) => "ls",
            Command::Show(_) => "show",
            Command::Use(_) => "use",
            Command::Prefs(_) => "prefs",
            Command::PrefsSet(_) => "prefs_set",
            Command::Set(_) => "set",
            Command::Rm(_) => "rm",
            Command::Reembed(_) => "reembed",
            Command::Jobs(_) => "jobs",
            Command::Retry(_) => "retry",
            Command::Cancel(_) => "cancel",
            Command::Fsck(_) => "fsck",
            Command::Search(_) => "search",
            Command::Audit(_) => "audit",
            Command::Events(_) => "events",
        }
    }

    /// The audit action of a command that changes shared state (and so may be limited to
    /// `server.admins`, and a refusal of it is audited under this action); `None` for a
    /// command that only reads. `use` changes only the caller's own current group.
    pub fn audit_action(&self) -> Option<&'static str> {
        match self {
            Command::PrefsSet(_) => Some("prefs"),
            Command::Set(_) => Some("set"),
            Command::Rm(_) => Some("delete"),
            Command::Reembed(_) => Some("reembed"),
            Command::Retry(_) => Some("retry"),
            Command::Cancel(_) => Some("cancel"),
            Command::Fsck(cmd::Fsck { repair }) => repair.then_some("fsck"),
            Command::Status(_)
            | Command::Groups(_)
            | Command::Ls(_)
            | Command::Show(_)
            | Command::Use(_)
            | Command::Prefs(_)
            | Command::Jobs(_)
            | Command::Search(_)
            | Command::Audit(_)
            | Command::Events(_) => None,
        }
    }

    /// Whether the command changes shared state: it has an [`Command::audit_action`].
    pub fn changes_state(&self) -> bool {
        self.audit_action().is_some()
    }

    /// The names accepted in `cmd`, for the `unknown_command` message. Taken from serde's
    /// own list of [`Command`]'s variants, so it can never miss one: deserializing a request
    /// whose `cmd` names nothing makes serde report the names it expected, which
    /// [`ExpectedNames`] keeps.
    pub fn names() -> &'static [&'static str] {
        static NAMES: std::sync::OnceLock<&'static [&'static str]> = std::sync::OnceLock::new();
        NAMES.get_or_init(|| {
            let probe = serde::de::value::MapDeserializer::<_, ExpectedNames>::new(
                std::iter::once(("cmd", "")),
            );
            match Command::deserialize(probe) {
                Err(ExpectedNames(Some(names))) => names,
                _ => &[],
            }
        })
    }
}

/// A deserializer error that keeps the variant names serde expected (see [`Command::names`]).
#[derive(Debug)]
struct ExpectedNames(Option<&'static [&'static str]>);

impl std::fmt::Display for ExpectedNames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("probing the command names")
    }
}

impl std::error::Error for ExpectedNames {}

impl serde::de::Error for ExpectedNames {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        ExpectedNames(None)
    }

    fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Self {
        ExpectedNames(Some(expected))
    }
}

impl Command {
    /// Refuse a request that names too much before any work is done for it: more than
    /// `max_targets` targets, or a name longer than the limits above. Pure; `Err` is the
    /// message for the caller.
    pub fn check_bounds(&self, max_targets: usize) -> Result<(), String> {
        fn names(what: &str, list: &[String], max: usize, each: usize) -> Result<(), String> {
            if list.len() > max {
                return Err(format!(
                    "{what}: {} given, at most {max} per request (server.max_targets); \
                     split the request",
                    list.len()
                ));
            }
            name(what, list.iter().map(String::as_str), each)
        }
        fn name<'a>(
            what: &str,
            mut list: impl Iterator<Item = &'a str>,
            each: usize,
        ) -> Result<(), String> {
            match list.find(|n| n.len() > each) {
                Some(long) => Err(format!(
                    "{what}: a name of {} bytes is longer than the {each} bytes allowed",
                    long.len()
                )),
                None => Ok(()),
            }
        }
        fn count(what: &str, n: usize, max: usize) -> Result<(), String> {
            if n > max {
                return Err(format!(
                    "{what}: {n} given, at most {max} per request (server.max_targets); \
                     split the request"
                ));
            }
            Ok(())
        }
        let max = max_targets;
        let short = |what: &str, value: &Option<String>| {
            name(what, value.iter().map(String::as_str), MAX_NAME_BYTES)
        };
        match self {
            Command::Status(_) | Command::Groups(_) | Command::Fsck(_) => Ok(()),
            Command::Ls(cmd::Ls { group, .. })
            | Command::Use(cmd::Use { group, .. })
            | Command::Prefs(cmd::Prefs { group })
            | Command::Events(cmd::Events { group, .. }) => short("group", group),
            Command::Show(cmd::Show {
                source,
                group,
                prefs,
                ..
            }) => {
                short("group", group)?;
                name("source", std::iter::once(source.as_str()), MAX_NAME_BYTES)?;
                let Some(draft) = prefs else {
                    return Ok(());
                };
                names("columns", &draft.columns, max, MAX_COLUMN_BYTES)?;
                names("context", &draft.context, max, MAX_COLUMN_BYTES)?;
                name(
                    "template",
                    draft.template.iter().map(String::as_str),
                    MAX_TEMPLATE_BYTES,
                )
            }
            Command::PrefsSet(cmd::PrefsSet {
                group,
                columns,
                context,
                template,
                sheet,
                ..
            }) => {
                short("group", group)?;
                short("sheet", sheet)?;
                for (what, list) in [("columns", columns), ("context", context)] {
                    if let Some(list) = list {
                        names(what, list, max, MAX_COLUMN_BYTES)?;
                    }
                }
                name(
                    "template",
                    template.iter().map(String::as_str),
                    MAX_TEMPLATE_BYTES,
                )
            }
            Command::Set(cmd::Set {
                source,
                group,
                encoding,
                sheet,
                delimiter,
                ..
            }) => {
                short("group", group)?;
                short("encoding", encoding)?;
                short("sheet", sheet)?;
                short("delimiter", delimiter)?;
                name("source", std::iter::once(source.as_str()), MAX_NAME_BYTES)
            }
            Command::Rm(cmd::Rm { targets, group, .. }) => {
                short("group", group)?;
                // `name@vN` may be a few bytes longer than a name.
                names("targets", targets, max, MAX_NAME_BYTES + 24)
            }
            Command::Reembed(cmd::Reembed { sources, group, .. }) => {
                short("group", group)?;
                names("sources", sources, max, MAX_NAME_BYTES)
            }
            Command::Jobs(cmd::Jobs { group, ids, .. }) => {
                short("group", group)?;
                count("ids", ids.len(), max)
            }
            Command::Retry(cmd::Retry { jobs, group, .. }) => {
                short("group", group)?;
                count("jobs", jobs.len(), max)
            }
            Command::Cancel(cmd::Cancel { jobs }) => count("jobs", jobs.len(), max),
            Command::Search(cmd::Search { group, .. }) => short("group", group),
            Command::Audit(cmd::Audit {
                group,
                since,
                action,
                ..
            }) => {
                short("group", group)?;
                short("since", since)?;
                short("action", action)
            }
        }
    }
}

/// Why a request failed. Serialized in snake_case; scripts may match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The line is not JSON.
    BadJson,
    /// The line is longer than [`MAX_LINE_BYTES`].
    LineTooLong,
    /// JSON, but not a request object (not an object, no `v`, no `cmd`).
    BadRequest,
    /// `v` is not [`PROTOCOL_VERSION`].
    VersionMismatch,
    /// `cmd` names no command.
    UnknownCommand,
    /// The command's arguments are missing, unknown or of the wrong type.
    BadArgs,
    /// The group or source does not exist.
    NotFound,
    /// The name matches more than one thing; say which (e.g. with a group).
    Ambiguous,
    /// The daemon understood and declined.
    Refused,
    /// The caller may not do this (`server.admins`).
    PermissionDenied,
    /// An `events` follower fell too far behind and was dropped; reconnect.
    Lagged,
    /// Something went wrong inside the daemon; the message says what.
    Internal,
    /// A code this client does not know (from a newer daemon); the message still explains.
    #[serde(other)]
    Unknown,
}

/// The error half of a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// A response line: `{"ok":true,"v":1,"data":…}` or `{"ok":false,"v":1,"error":{…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    pub v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Response {
    pub fn ok(data: Value) -> Self {
        Self {
            ok: true,
            v: PROTOCOL_VERSION,
            data: Some(data),
            error: None,
        }
    }

    pub fn err(error: ErrorBody) -> Self {
        Self {
            ok: false,
            v: PROTOCOL_VERSION,
            data: None,
            error: Some(error),
        }
    }
}

/// Parse one request line. Pure: the server calls it, tests call it with tables of lines.
pub fn parse_request(line: &[u8]) -> Result<Command, ErrorBody> {
    let value: Value = serde_json::from_slice(line).map_err(|e| {
        ErrorBody::new(
            ErrorCode::BadJson,
            format!("request is not valid JSON ({e}); send one JSON object per line"),
        )
    })?;
    let Value::Object(mut object) = value else {
        return Err(ErrorBody::new(
            ErrorCode::BadRequest,
            "request must be a JSON object like {\"v\":1,\"cmd\":\"status\"}",
        ));
    };
    match object.remove("v") {
        None => {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                format!("request has no protocol version; add \"v\":{PROTOCOL_VERSION}"),
            ));
        }
        Some(v) if v.as_u64() == Some(u64::from(PROTOCOL_VERSION)) => {}
        Some(v) => {
            return Err(ErrorBody::new(
                ErrorCode::VersionMismatch,
                format!(
                    "protocol version {v} is not spoken here: this ingestd speaks version \
                     {PROTOCOL_VERSION}; use an ingestctl of the same release as the daemon"
                ),
            ));
        }
    }
    let name = match object.get("cmd") {
        Some(Value::String(name)) => name.clone(),
        _ => {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "request has no \"cmd\" string naming the command",
            ));
        }
    };
    if !Command::names().contains(&name.as_str()) {
        return Err(ErrorBody::new(
            ErrorCode::UnknownCommand,
            format!(
                "unknown command {name:?}; known commands: {}",
                Command::names().join(", ")
            ),
        ));
    }
    serde_json::from_value(Value::Object(object)).map_err(|e| {
        ErrorBody::new(
            ErrorCode::BadArgs,
            format!("bad arguments for {name:?}: {e}"),
        )
    })
}

/// Status of a version (DESIGN §2). Stored as text in the catalog; shown as-is to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Validating,
    Ready,
    Queued,
    Embedding,
    Embedded,
    Invalid,
    Failed,
    /// Beyond `ingest.retain_versions`: the row stays for history, its file and vectors are
    /// gone.
    Pruned,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Validating => "validating",
            Status::Ready => "ready",
            Status::Queued => "queued",
            Status::Embedding => "embedding",
            Status::Embedded => "embedded",
            Status::Invalid => "invalid",
            Status::Failed => "failed",
            Status::Pruned => "pruned",
        }
    }

    /// The version is stored and catalogued (whatever its embedding is doing).
    pub fn is_stored(self) -> bool {
        matches!(
            self,
            Status::Ready | Status::Queued | Status::Embedding | Status::Embedded | Status::Failed
        )
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Status::Pending,
            "validating" => Status::Validating,
            "ready" => Status::Ready,
            "queued" => Status::Queued,
            "embedding" => Status::Embedding,
            "embedded" => Status::Embedded,
            "invalid" => Status::Invalid,
            "failed" => Status::Failed,
            "pruned" => Status::Pruned,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A column that was not taken, with the reason (blank header, no header cell).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedColumn {
    /// 1-based position in the header row.
    pub position: usize,
    pub reason: String,
}

/// One row of `ls`: a source, described by its newest version, or by its newest attempt when
/// that was rejected or is still in flight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceSummary {
    pub group: String,
    pub name: String,
    /// Newest accepted version label ("v2"), `None` if nothing was accepted yet.
    pub version: Option<String>,
    pub status: Status,
    pub rows: Option<u64>,
    pub columns: Vec<String>,
    pub skipped_columns: Vec<SkippedColumn>,
    /// Why the newest attempt was rejected; `None` unless `status` is `invalid`.
    pub reason: Option<String>,
    pub format: Option<String>,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    /// RFC 3339 time of the newest attempt.
    pub added_at: Option<String>,
    /// User name of the file's owner (or the uid as text when it has no name).
    pub added_by: Option<String>,
    pub added_by_uid: Option<u32>,
    pub updated_at: Option<String>,
}

/// One accepted version or rejected attempt, as `show` lists them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// "v3"; `None` for a rejected attempt (it makes no version).
    pub version: Option<String>,
    pub status: Status,
    pub reason: Option<String>,
    pub format: Option<String>,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub rows: Option<u64>,
    pub columns: Vec<String>,
    pub skipped_columns: Vec<SkippedColumn>,
    /// Where the stored copy lives; `None` for rejected attempts.
    pub stored_path: Option<String>,
    /// What the reader noticed: delimiter, encoding, skipped title rows.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Where the header was found and which encoding the text is in.
    #[serde(default, skip_serializing_if = "Reading::is_empty")]
    pub reading: Reading,
    pub added_at: String,
    pub added_by: Option<String>,
    pub added_by_uid: Option<u32>,
}

/// How a reader read a version: where its header is and which encoding its text is in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reading {
    /// "header on line 4 (3 rows above it skipped: a title, 2 blank)"; `None` for formats
    /// without a header row (Parquet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// 1-based line (CSV) or sheet row of the header; the lower row of a two-row header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_row: Option<u64>,
    /// The header spans two rows (`Group / Sub` names).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub two_row_header: bool,
    /// What each row above the header was: "blank", "title", "total", "note".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rows_above: Vec<String>,
    /// The text encoding, as the WHATWG Encoding Standard names it ("Shift_JIS"); text
    /// formats only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// How the encoding was found: "byte-order mark", "valid UTF-8", "detected".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_found_by: Option<String>,
    /// The detector's confidence in a detected encoding: "high" or "low".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_confidence: Option<String>,
    /// The source's read options (`set`) this version was read with; its rows are read
    /// with them again for embedding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<ReadOverride>,
    /// Who set them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_by: Option<String>,
}

/// How a source's files are read instead of what detection finds (`set`). Every field is
/// optional; an empty one means "detect".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadOverride {
    /// The header's 1-based line (CSV, TSV) or sheet row (workbooks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_row: Option<u64>,
    /// There is no header row: every row is data, columns are `column_1`, `column_2`, ….
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_header: bool,
    /// The text encoding (CSV, TSV), as the Encoding Standard names it ("Shift_JIS").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// The sheet (workbooks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
    /// The delimiter (CSV, TSV): one ASCII character.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
}

impl ReadOverride {
    pub fn is_empty(&self) -> bool {
        *self == ReadOverride::default()
    }

    /// "header on row 4, encoding Shift_JIS": the options as a person reads them.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(row) = self.header_row {
            parts.push(format!("header on row {row}"));
        }
        if self.no_header {
            parts.push("no header row".to_string());
        }
        if let Some(encoding) = &self.encoding {
            parts.push(format!("encoding {encoding}"));
        }
        if let Some(sheet) = &self.sheet {
            parts.push(format!("sheet '{sheet}'"));
        }
        if let Some(delimiter) = &self.delimiter {
            let shown = match delimiter.as_str() {
                "\t" => "tab".to_string(),
                other => format!("'{}'", other.escape_default()),
            };
            parts.push(format!("delimiter {shown}"));
        }
        if parts.is_empty() {
            "detected".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// A source's read options as stored, with who set them and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceOverride {
    pub options: ReadOverride,
    pub set_by: Option<String>,
    pub set_at: String,
}

/// Reply to `set`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetOutcome {
    pub group: String,
    pub source: String,
    /// The version read again ("v3").
    pub version: String,
    /// The options now stored; `None` after `clear`.
    pub options: Option<SourceOverride>,
    /// What the version reads as now.
    pub columns: Vec<String>,
    pub skipped_columns: Vec<SkippedColumn>,
    pub rows: u64,
    pub reading: Reading,
    /// Its columns before.
    pub previous_columns: Vec<String>,
    /// The embedding job queued for it (or the one already queued).
    pub job: Option<i64>,
}

impl Reading {
    pub fn is_empty(&self) -> bool {
        *self == Reading::default()
    }
}

/// Reply to `show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceDetail {
    #[serde(flatten)]
    pub summary: SourceSummary,
    /// Newest first.
    pub versions: Vec<VersionInfo>,
    /// Embedding jobs of the source, newest first (at most 20).
    #[serde(default)]
    pub jobs: Vec<JobInfo>,
    /// The active embeddings: which version and model, how many rows.
    #[serde(default)]
    pub embeddings: Option<ActiveEmbeddings>,
    /// With `preview`: the texts the first rows of the newest version render to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<Vec<String>>,
}

/// A source's active generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveEmbeddings {
    pub version: String,
    pub rows: u64,
    pub provider: String,
    pub model: String,
    pub dimension: u32,
    pub job: Option<i64>,
    pub activated_at: String,
}

/// One row of `groups`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupInfo {
    pub name: String,
    /// This is the caller's current group (`use`).
    #[serde(default)]
    pub current: bool,
    pub sources: u64,
    /// Count of sources by the status `ls` shows for them.
    pub by_status: BTreeMap<Status, u64>,
    pub last_activity: Option<String>,
}

/// A runtime problem worth showing an operator (a file in the root, a bad group name, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub time: String,
    pub message: String,
}

/// Reply to `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusInfo {
    pub daemon_version: String,
    pub protocol: u32,
    pub pid: u32,
    pub started_at: String,
    pub uptime_secs: u64,
    pub drop_root: String,
    pub storage_root: String,
    pub database: String,
    pub socket: String,
    pub provider: String,
    pub groups: u64,
    pub sources: u64,
    /// Sources by the status `ls` shows for them.
    pub by_status: BTreeMap<Status, u64>,
    /// Files seen in the drop folders and not yet stored or rejected.
    pub in_flight: u64,
    pub queue: QueueSummary,
    /// Newest last, at most 20.
    pub last_errors: Vec<Notice>,
    /// The last config reload (SIGHUP); `None` if there was none since start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<ReloadInfo>,
    /// What confines the parse workers, as a probe worker found it at start-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parse_worker_sandbox: Option<WorkerSandbox>,
    /// Why the caller may not change state (the `permission_denied` message it would get);
    /// absent when it may. Lets a client disable what would be refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<String>,
    /// The nodes of the cluster this daemon is one of (`catalog.backend = "postgres"`), by
    /// name; absent on a SQLite catalog.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<ClusterNode>,
    /// Only on a PostgreSQL catalog: searchable rows not yet in the HNSW index (written
    /// since their swap, and moved in by a background pass); searches scan them exactly
    /// meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_backlog: Option<u64>,
}

/// One node of a cluster, as the shared catalog's registry shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNode {
    pub name: String,
    /// This daemon.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub this: bool,
    /// When it last started (RFC 3339).
    pub started_at: String,
    /// Its last heartbeat (RFC 3339): every third of `cluster.lease_secs` while it runs.
    pub heartbeat_at: String,
    /// Seconds since that heartbeat, by the database's clock.
    pub heartbeat_age_secs: u64,
    pub version: String,
}

/// The confinement of a parse worker, seen from inside one (docs/operations.md, "Parse
/// workers"). The uid change, no-new-privs and seccomp hold wherever a worker runs — a worker
/// that cannot apply them reads nothing; Landlock depends on the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerSandbox {
    /// The user and group a worker reads as (the daemon's own when it is not root).
    pub uid: u32,
    pub gid: u32,
    /// `PR_SET_NO_NEW_PRIVS` is set: nothing the worker runs can gain privileges.
    pub no_new_privs: bool,
    /// "enforced", "partially enforced" (an older Landlock ABI) or "not supported".
    pub landlock: String,
    /// A seccomp filter allows only the worker's few system calls.
    pub seccomp: bool,
    /// Set when the probe worker could not confine itself: then no file is read at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the last config reload did. A reload never half-applies: if the new file is invalid,
/// nothing changes and `error` says why; otherwise every key in `applied` is in force and every
/// key in `refused` keeps its old value until a restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReloadInfo {
    /// When the reload happened (RFC 3339).
    pub at: String,
    /// The file that was read.
    pub file: String,
    /// Keys whose new value is in force, as `section.key`.
    #[serde(default)]
    pub applied: Vec<String>,
    /// Keys that changed in the file but cannot change while the daemon runs.
    #[serde(default)]
    pub refused: Vec<RefusedKey>,
    /// Set when the new config was invalid and nothing was changed.
    #[serde(default)]
    pub error: Option<String>,
}

/// A changed key a reload did not apply, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusedKey {
    pub key: String,
    pub reason: String,
}

/// Jobs by state (the embedding queue).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueSummary {
    pub queued: u64,
    pub processing: u64,
    pub failed: u64,
    /// Most jobs processing at once (`embedding.concurrency`).
    #[serde(default)]
    pub concurrency: u32,
}

/// Reply to `use`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UseInfo {
    /// The caller's current group; `None` if none is set.
    pub group: Option<String>,
    pub uid: u32,
}

/// A group's preferences: what of each row is embedded, and how.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PrefsInfo {
    pub group: String,
    /// Columns whose values are embedded, in order; empty: every column.
    pub columns: Vec<String>,
    /// Columns added to every row's text as context.
    pub context: Vec<String>,
    /// Text template with `{column}` placeholders; `None`: `column: value` pairs.
    pub template: Option<String>,
    /// Sheet read from spreadsheets; `None`: the first non-empty visible sheet.
    pub sheet: Option<String>,
    pub updated_at: Option<String>,
    pub updated_by: Option<String>,
    /// Every column name of the group's current versions, for choosing.
    pub known_columns: Vec<String>,
}

/// Reply to `prefs_set`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrefsSaved {
    pub prefs: PrefsInfo,
    /// One sentence per name no source of the group has (saved anyway: sources differ).
    pub warnings: Vec<String>,
    /// The re-embeds queued with `reembed`.
    #[serde(default)]
    pub jobs: Vec<Queued>,
}

/// What `rm` did with one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RmOutcome {
    /// As given: `sales.csv` or `sales.csv@v2`.
    pub target: String,
    pub ok: bool,
    /// What was removed, or why nothing was.
    pub message: String,
    /// Version labels removed ("v1", …); rejected attempts are removed with a whole source.
    pub removed: Vec<String>,
    /// The processing job that blocked the delete (without `force`), or that `force`
    /// cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobInfo>,
}

/// One audit record (also the shape of each line of `audit.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The record's number in the catalog: the cursor for the next page (`before`). Not in
    /// `audit.jsonl`, which is written before the number is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    pub time: String,
    pub actor: crate::identity::Actor,
    pub action: String,
    pub group: Option<String>,
    pub source: Option<String>,
    pub version: Option<String>,
    pub job: Option<i64>,
    pub outcome: String,
    pub detail: Option<String>,
}

/// What happened, as `events` streams it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A file appeared or changed in a group folder.
    Seen,
    /// Its writer is done; it is being validated.
    Settled,
    /// Stored as a new version.
    Accepted,
    /// Same content as the newest version; no new version.
    Unchanged,
    /// Moved to `.rejected/`.
    Rejected,
    /// A source or version was deleted.
    Deleted,
    /// A group's preferences changed.
    PrefsChanged,
    /// A state-changing command was refused (`server.admins`).
    Refused,
    /// An embedding job was queued (a new version, a re-embed or a retry).
    JobQueued,
    /// A worker took a job.
    JobStarted,
    /// A processing job embedded more rows.
    JobProgress,
    /// A job finished and its generation became the source's active embeddings.
    Swapped,
    /// A job failed for good (the previous embeddings stay active).
    JobFailed,
    /// A job was cancelled (the previous embeddings stay active).
    JobCancelled,
    /// A job hit a transient error and will be tried again.
    JobRetrying,
    /// Any other audited action.
    #[serde(other)]
    Other,
}

/// One event line of `events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub time: String,
    pub kind: EventKind,
    pub group: Option<String>,
    pub source: Option<String>,
    pub version: Option<String>,
    /// The reason of a rejection, the columns of an accepted version, …
    pub detail: Option<String>,
    pub actor: Option<crate::identity::Actor>,
    /// The embedding job this event is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<i64>,
    /// Rows embedded so far, for job events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

/// State of an embedding job (DESIGN §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Processing,
    Completed,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        JobState::Queued,
        JobState::Processing,
        JobState::Completed,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Processing => "processing",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the job is over (it will not run again unless retried).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled
        )
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Rows embedded of a job's version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}

/// Where a queued job waits: 1 is next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePosition {
    /// Among the queued jobs of its group.
    pub group: u64,
    /// Among every queued job, in the order the daemon will start them.
    pub overall: u64,
}

/// One embedding job, as `jobs`, `show` and the job commands report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    pub id: i64,
    pub group: String,
    pub source: String,
    /// The version embedded ("v2").
    pub version: String,
    pub state: JobState,
    /// Why it exists: `new_version`, `reembed` or `retry`.
    pub reason: String,
    /// Tries started so far (0 while it has never run).
    pub attempt: u32,
    pub max_attempts: u32,
    pub progress: Progress,
    /// `None` unless queued.
    pub position: Option<QueuePosition>,
    /// Why it failed, was cancelled, or why the last try failed.
    pub error: Option<String>,
    pub requested_by: Option<String>,
    pub queued_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// A queued job waiting out a backoff is not started before this time.
    pub not_before: Option<String>,
}

/// What a request that queues jobs did for one source or job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Queued {
    /// The source (`reembed`) or job id (`retry`, `cancel`) as given.
    pub target: String,
    pub ok: bool,
    /// What happened, or why nothing did.
    pub message: String,
    /// The job, as it is now.
    pub job: Option<JobInfo>,
    /// The job already existed (a queued job returned instead of a duplicate).
    #[serde(default)]
    pub existing: bool,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    pub source: String,
    pub version: String,
    /// 1-based data row of the version (the header is not counted).
    pub row: u64,
    /// Cosine similarity to the query, -1 to 1.
    pub score: f32,
    /// The text that was embedded for this row.
    pub text: String,
}

/// Reply to `search`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResult {
    pub group: String,
    /// The model that embedded the query and every row compared with it.
    pub model: String,
    pub hits: Vec<SearchHit>,
    /// Rows searched.
    pub searched: u64,
    /// Sources whose active embeddings were made by another model, so were not compared:
    /// one sentence each (re-embed them to include them).
    #[serde(default)]
    pub skipped: Vec<String>,
}

/// Reply to `fsck`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FsckReport {
    /// Stored files no catalog row names.
    pub orphan_files: Vec<String>,
    /// Versions whose stored file is gone: `group/source vN (path)`.
    pub missing_files: Vec<String>,
    /// Vectors whose version no longer exists.
    pub orphan_vectors: u64,
    /// Jobs marked processing that no worker runs.
    pub stuck_jobs: Vec<i64>,
    /// `repair` was asked for and done.
    pub repaired: bool,
    /// Where the orphaned files went (under the storage root's `lost+found/`).
    pub moved: Vec<String>,
    /// On a cluster: files of this node that another node's delete left for it to remove,
    /// not removed yet (`node: path`, with the reason once a removal was refused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_deletes: Vec<String>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.orphan_files.is_empty()
            && self.missing_files.is_empty()
            && self.orphan_vectors == 0
            && self.stuck_jobs.is_empty()
            && self.pending_deletes.is_empty()
    }
}

/// First line of an `events` stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Following {
    /// The group followed; `None`: every group.
    pub group: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_command() {
        let cases: &[(&str, Command)] = &[
            (r#"{"v":1,"cmd":"status"}"#, Command::Status(cmd::Status {})),
            (r#"{"v":1,"cmd":"groups"}"#, Command::Groups(cmd::Groups {})),
            (
                r#"{"v":1,"cmd":"ls"}"#,
                Command::Ls(cmd::Ls {
                    group: None,
                    all: false,
                }),
            ),
            (
                r#"{"v":1,"cmd":"ls","group":"sales"}"#,
                Command::Ls(cmd::Ls {
                    group: Some("sales".into()),
                    all: false,
                }),
            ),
            (
                r#"{"v":1,"cmd":"rm","targets":["a.csv@v2"],"group":"g"}"#,
                Command::Rm(cmd::Rm {
                    targets: vec!["a.csv@v2".into()],
                    group: Some("g".into()),
                    force: false,
                }),
            ),
            (
                r#"{"v":1,"cmd":"prefs_set","columns":["a"],"template":""}"#,
                Command::PrefsSet(cmd::PrefsSet {
                    group: None,
                    columns: Some(vec!["a".into()]),
                    context: None,
                    template: Some(String::new()),
                    sheet: None,
                    clear: false,
                    reembed: false,
                }),
            ),
            (
                r#"{"cmd":"show","v":1,"source":"a.csv"}"#,
                Command::Show(cmd::Show {
                    source: "a.csv".into(),
                    group: None,
                    preview: None,
                    prefs: None,
                }),
            ),
            (
                r#"{"cmd":"show","v":1,"source":"a.csv","preview":2,"prefs":{"columns":["a"]}}"#,
                Command::Show(cmd::Show {
                    source: "a.csv".into(),
                    group: None,
                    preview: Some(2),
                    prefs: Some(PrefsDraft {
                        columns: vec!["a".into()],
                        ..PrefsDraft::default()
                    }),
                }),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(&parse_request(line.as_bytes()).unwrap(), want, "{line}");
        }
    }

    #[test]
    fn every_malformed_request_gets_its_code() {
        let cases: &[(&str, ErrorCode)] = &[
            ("garbage", ErrorCode::BadJson),
            ("", ErrorCode::BadJson),
            ("{\"v\":1,", ErrorCode::BadJson),
            ("[1,2]", ErrorCode::BadRequest),
            (r#"{"cmd":"status"}"#, ErrorCode::BadRequest),
            (r#"{"v":1}"#, ErrorCode::BadRequest),
            (r#"{"v":1,"cmd":7}"#, ErrorCode::BadRequest),
            (r#"{"v":2,"cmd":"status"}"#, ErrorCode::VersionMismatch),
            (r#"{"v":"1","cmd":"status"}"#, ErrorCode::VersionMismatch),
            (r#"{"v":1,"cmd":"explode"}"#, ErrorCode::UnknownCommand),
            (r#"{"v":1,"cmd":"show"}"#, ErrorCode::BadArgs),
            (r#"{"v":1,"cmd":"show","source":5}"#, ErrorCode::BadArgs),
            (r#"{"v":1,"cmd":"ls","grup":"x"}"#, ErrorCode::BadArgs),
            (r#"{"v":1,"cmd":"status","extra":true}"#, ErrorCode::BadArgs),
        ];
        for (line, want) in cases {
            let got = parse_request(line.as_bytes()).unwrap_err();
            assert_eq!(got.code, *want, "{line}: {}", got.message);
            assert!(!got.message.is_empty());
        }
    }

    /// One request line per command, written as a client sends it (fields in declaration
    /// order, absent ones left out), with the audit action of the command.
    const EVERY_COMMAND: &[(&str, Option<&str>)] = &[
        (r#"{"v":1,"cmd":"status"}"#, None),
        (r#"{"v":1,"cmd":"groups"}"#, None),
        (r#"{"v":1,"cmd":"ls","all":true}"#, None),
        (r#"{"v":1,"cmd":"show","source":"a.csv","preview":3}"#, None),
        (r#"{"v":1,"cmd":"use","group":"g"}"#, None),
        (r#"{"v":1,"cmd":"prefs"}"#, None),
        (
            r#"{"v":1,"cmd":"prefs_set","group":"g","clear":true}"#,
            Some("prefs"),
        ),
        (
            r#"{"v":1,"cmd":"set","source":"a.csv","header_row":4,"encoding":"Shift_JIS"}"#,
            Some("set"),
        ),
        (
            r#"{"v":1,"cmd":"rm","targets":["a.csv"],"force":true}"#,
            Some("delete"),
        ),
        (
            r#"{"v":1,"cmd":"reembed","sources":[],"all":true}"#,
            Some("reembed"),
        ),
        (r#"{"v":1,"cmd":"jobs","state":"failed","ids":[4]}"#, None),
        (
            r#"{"v":1,"cmd":"retry","jobs":[],"failed":true}"#,
            Some("retry"),
        ),
        (r#"{"v":1,"cmd":"cancel","jobs":[1,2]}"#, Some("cancel")),
        (r#"{"v":1,"cmd":"fsck"}"#, None),
        (r#"{"v":1,"cmd":"fsck","repair":true}"#, Some("fsck")),
        (r#"{"v":1,"cmd":"search","text":"north","k":3}"#, None),
        (
            r#"{"v":1,"cmd":"audit","since":"2026-01-01T00:00:00Z","limit":5}"#,
            None,
        ),
        (r#"{"v":1,"cmd":"events","all":true}"#, None),
    ];

    #[test]
    fn every_command_is_named_as_on_the_wire_and_written_back_byte_for_byte() {
        let mut seen = std::collections::BTreeSet::new();
        for (line, action) in EVERY_COMMAND {
            let command = parse_request(line.as_bytes()).unwrap();
            let wire: Value = serde_json::from_str(line).unwrap();
            assert_eq!(Some(command.name()), wire["cmd"].as_str(), "{line}");
            assert_eq!(command.audit_action(), *action, "{line}");
            assert_eq!(command.changes_state(), action.is_some(), "{line}");
            let written = serde_json::to_string(&Request::new(command.clone())).unwrap();
            assert_eq!(&written, line, "the request is written back as it was read");
            seen.insert(command.name());
        }
        // `names()` comes from serde's own variant list: a command missing above fails here.
        let names: std::collections::BTreeSet<_> = Command::names().iter().copied().collect();
        assert_eq!(names.len(), 17, "{names:?}");
        assert_eq!(seen, names);
    }

    #[test]
    fn an_unknown_command_is_told_every_known_name() {
        let error = parse_request(br#"{"v":1,"cmd":"explode"}"#).unwrap_err();
        assert_eq!(error.code, ErrorCode::UnknownCommand);
        for name in ["status", "prefs_set", "events"] {
            assert!(error.message.contains(name), "{}", error.message);
        }
    }

    #[test]
    fn a_previewed_draft_is_bounded_as_prefs_set_is() {
        let show = |draft: PrefsDraft| {
            Command::Show(cmd::Show {
                source: "a.csv".into(),
                group: None,
                preview: Some(1),
                prefs: Some(draft),
            })
        };
        let columns = |n: usize| (0..n).map(|i| format!("c{i}")).collect::<Vec<_>>();
        let fits = PrefsDraft {
            columns: columns(3),
            context: columns(3),
            template: Some("x".repeat(MAX_TEMPLATE_BYTES)),
        };
        assert_eq!(show(fits.clone()).check_bounds(3), Ok(()));
        let many = PrefsDraft {
            context: columns(4),
            ..fits.clone()
        };
        let error = show(many).check_bounds(3).unwrap_err();
        assert!(error.starts_with("context: 4 given"), "{error}");
        let long = PrefsDraft {
            template: Some("x".repeat(MAX_TEMPLATE_BYTES + 1)),
            ..fits
        };
        let error = show(long).check_bounds(3).unwrap_err();
        assert!(error.starts_with("template: "), "{error}");
    }

    #[test]
    fn request_round_trips() {
        let request = Request::new(Command::Show(cmd::Show {
            source: "sales.csv".into(),
            group: Some("g".into()),
            preview: Some(5),
            prefs: Some(PrefsDraft {
                columns: vec!["region".into()],
                context: vec!["month".into()],
                template: Some("{region}".into()),
            }),
        }));
        let line = serde_json::to_vec(&request).unwrap();
        assert_eq!(parse_request(&line).unwrap(), request.command);
    }
}
