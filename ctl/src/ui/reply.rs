//! The answers the UI reads, typed: one [`Reply`] per kind of request, decoded from the
//! answer's line straight into the protocol's types, never through a `serde_json::Value`.
//!
//! The sources of a group are the big answer (10,000 sources are about 4 MB of JSON): each is
//! read as the protocol's `SourceSummary` and at once cut down to the [`SourceRow`] the list
//! shows, so only one full summary exists at a time. Nothing here does I/O or keeps state.

use super::proto::{
    Command, ErrorBody, GroupInfo, JobInfo, PROTOCOL_VERSION, PrefsInfo, PrefsSaved, Queued,
    RmOutcome, SearchResult, SourceDetail, SourceSummary, Status, StatusInfo, UseInfo,
};
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};

/// One source as the list shows it: what `ls` says, less what only the detail pane needs
/// (which `show` brings for the one source under the cursor).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "SourceSummary")]
pub struct SourceRow {
    pub name: String,
    pub version: Option<Box<str>>,
    pub status: Status,
    pub rows: Option<u64>,
    /// How many columns it has; their names are in the detail.
    pub columns: u32,
    /// The newest attempt's time (or the first one's), for the list and the sort.
    pub updated: Option<jiff::Timestamp>,
}

impl From<SourceSummary> for SourceRow {
    fn from(s: SourceSummary) -> SourceRow {
        let updated = s.updated_at.as_deref().or(s.added_at.as_deref());
        SourceRow {
            updated: updated.and_then(|t| t.parse().ok()),
            name: s.name,
            version: s.version.map(String::into_boxed_str),
            status: s.status,
            rows: s.rows,
            columns: u32::try_from(s.columns.len()).unwrap_or(u32::MAX),
        }
    }
}

/// The answer to one request, by what was asked. The big ones are boxed, so that a message
/// carrying a reply stays small.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Status(Box<StatusInfo>),
    Groups(Vec<GroupInfo>),
    Use(Box<UseInfo>),
    Sources(Vec<SourceRow>),
    Detail(Box<SourceDetail>),
    Jobs(Vec<JobInfo>),
    Prefs(Box<PrefsInfo>),
    PrefsSaved(Box<PrefsSaved>),
    Removed(Vec<RmOutcome>),
    /// `reembed`, `retry` and `cancel`.
    Queued(Vec<Queued>),
    Search(Box<SearchResult>),
    /// An answer the UI does not read (`events`' first line, `fsck`, `audit`).
    Other,
}

/// Why a request has no [`Reply`].
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The daemon's error, or the connection's: the message for the status line.
    Refused(String),
    /// An answer this client cannot read: the two ends are from different releases.
    Unreadable(String),
}

impl Failure {
    pub fn message(&self) -> &str {
        match self {
            Failure::Refused(m) | Failure::Unreadable(m) => m,
        }
    }
}

/// A response line with its `data` typed (the protocol's `Response`, whose `data` is a
/// `Value`, is what this avoids).
#[derive(Deserialize)]
struct Envelope<T> {
    ok: bool,
    v: u32,
    data: Option<T>,
    error: Option<ErrorBody>,
}

/// Read `line`, the answer to `command`.
pub fn decode(command: &Command, line: &[u8]) -> Result<Reply, Failure> {
    match command {
        Command::Status {} => read(line, |s| Reply::Status(Box::new(s))),
        Command::Groups {} => read(line, Reply::Groups),
        Command::Use { .. } => read(line, |u| Reply::Use(Box::new(u))),
        Command::Ls { .. } => read(line, Reply::Sources),
        Command::Show { .. } => read(line, |d| Reply::Detail(Box::new(d))),
        Command::Jobs { .. } => read(line, Reply::Jobs),
        Command::Prefs { .. } => read(line, |p| Reply::Prefs(Box::new(p))),
        Command::PrefsSet { .. } => read(line, |p| Reply::PrefsSaved(Box::new(p))),
        Command::Rm { .. } => read(line, Reply::Removed),
        Command::Reembed { .. } | Command::Retry { .. } | Command::Cancel { .. } => {
            read(line, Reply::Queued)
        }
        Command::Search { .. } => read(line, |r| Reply::Search(Box::new(r))),
        Command::Fsck { .. } | Command::Audit { .. } | Command::Events { .. } => {
            read(line, |_: IgnoredAny| Reply::Other)
        }
    }
}

fn read<T: DeserializeOwned>(line: &[u8], wrap: impl FnOnce(T) -> Reply) -> Result<Reply, Failure> {
    let unreadable = |why: String| {
        Failure::Unreadable(format!(
            "the daemon answered in a shape this client cannot read ({why}); are ingestd and \
             ingestctl from the same release?"
        ))
    };
    let envelope: Envelope<T> =
        serde_json::from_slice(line).map_err(|e| unreadable(e.to_string()))?;
    if envelope.v != PROTOCOL_VERSION {
        return Err(unreadable(format!(
            "it speaks protocol version {}, this client version {PROTOCOL_VERSION}",
            envelope.v
        )));
    }
    match (envelope.ok, envelope.data, envelope.error) {
        (true, Some(data), _) => Ok(wrap(data)),
        (true, None, _) => Err(unreadable("an answer without data".into())),
        (false, _, Some(error)) => Err(Failure::Refused(error.message)),
        (false, _, None) => Err(unreadable(
            "\"ok\":false without an \"error\" object".into(),
        )),
    }
}
