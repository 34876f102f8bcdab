//! The answers the UI reads, typed: one [`Reply`] per kind of request, decoded from the
//! answer's line straight into the reply type the protocol ties to that request
//! ([`Call::Reply`]), never through a `serde_json::Value`.
//!
//! The types here are not copies of the protocol's, they exist for memory: the protocol's
//! `Response` holds its `data` as a `Value` tree, so [`Envelope`] reads the same line with
//! `data` typed instead; and the sources of a group are the big answer (10,000 sources are
//! about 4 MB of JSON), so each is read as the protocol's `SourceSummary` and at once cut down
//! to the [`SourceRow`] the list shows, so only one full summary exists at a time. Every
//! other reply is the protocol's own type. Nothing here does I/O or keeps state.

use super::proto::{
    Call, Command, ErrorBody, GroupInfo, JobInfo, PROTOCOL_VERSION, PrefsInfo, PrefsSaved, Queued,
    RmOutcome, SearchResult, SourceDetail, SourceSummary, Status, StatusInfo, UseInfo, cmd,
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
        Command::Status(_) => answer::<cmd::Status>(line, |s| Reply::Status(Box::new(s))),
        Command::Groups(_) => answer::<cmd::Groups>(line, Reply::Groups),
        Command::Use(_) => answer::<cmd::Use>(line, |u| Reply::Use(Box::new(u))),
        // `Vec<SourceSummary>`, each cut down to a row as it is read.
        Command::Ls(_) => read::<Vec<SourceRow>>(line, Reply::Sources),
        Command::Show(_) => answer::<cmd::Show>(line, |d| Reply::Detail(Box::new(d))),
        Command::Jobs(_) => answer::<cmd::Jobs>(line, Reply::Jobs),
        Command::Prefs(_) => answer::<cmd::Prefs>(line, |p| Reply::Prefs(Box::new(p))),
        Command::PrefsSet(_) => answer::<cmd::PrefsSet>(line, |p| Reply::PrefsSaved(Box::new(p))),
        Command::Rm(_) => answer::<cmd::Rm>(line, Reply::Removed),
        Command::Reembed(_) => answer::<cmd::Reembed>(line, Reply::Queued),
        Command::Retry(_) => answer::<cmd::Retry>(line, Reply::Queued),
        Command::Cancel(_) => answer::<cmd::Cancel>(line, Reply::Queued),
        Command::Search(_) => answer::<cmd::Search>(line, |r| Reply::Search(Box::new(r))),
        Command::Set(_) | Command::Fsck(_) | Command::Audit(_) | Command::Events(_) => {
            read(line, |_: IgnoredAny| Reply::Other)
        }
    }
}

/// Read the answer to a request of type `R` as the reply type the protocol gives it.
fn answer<R: Call>(line: &[u8], wrap: impl FnOnce(R::Reply) -> Reply) -> Result<Reply, Failure> {
    read(line, wrap)
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
