//! One struct per request, each with its reply type ([`Call`]), so that a client and a test
//! get the shape of an answer from the compiler: `client.call(&cmd::Ls { .. })` returns
//! `Vec<SourceSummary>`.
//!
//! On the wire a request is `{"v":1,"cmd":"<name>", ...its fields}`: [`Command`] wraps each
//! struct under the `cmd` tag, so these structs never carry the tag or the version themselves.
//! Absent optional fields are left out, so a request reads the way a person would type it.

use super::{
    AuditEntry, Command, Following, FsckReport, GroupInfo, JobInfo, JobState, PrefsDraft,
    PrefsInfo, PrefsSaved, Queued, RmOutcome, SearchResult, SetOutcome, SourceDetail,
    SourceSummary, StatusInfo, UseInfo,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A request and the type of the `data` its answer carries.
pub trait Call: Clone + Into<Command> {
    type Reply: Serialize + DeserializeOwned;
}

/// Daemon version, uptime, roots, queue summary, recent errors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {}

/// Groups with counts of sources by status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Groups {}

/// Sources of one group: `group`, else the caller's current group, else every group.
/// `all` lists every group whatever the current group is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

/// One source with all its versions, rejected attempts and jobs. `preview` asks for the
/// texts the first N rows of the newest version render to (what would be embedded);
/// `prefs` renders them with these preferences instead of the saved ones (nothing is
/// saved), to try an edit before saving it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Show {
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefs: Option<PrefsDraft>,
}

/// Set (`group`) or show (no `group`) the caller's current group; `clear` forgets it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Use {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clear: bool,
}

/// A group's preferences (the ColumnPreferenceSet).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prefs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// Change a group's preferences. Absent fields keep their value; `clear` resets all
/// first; an empty `template` or `sheet` removes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefsSet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clear: bool,
    /// Also queue a re-embed of every source of the group.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reembed: bool,
}

/// Set how a source's files are read when detection gets them wrong: the header row
/// (`header_row`, 1-based line or sheet row) or none (`no_header`), the text `encoding`
/// (an Encoding Standard label), the `sheet`, the `delimiter` (one ASCII character).
/// The options replace the source's earlier ones; `clear` removes them all. They apply
/// at once to the newest version (read again, a new embedding job queued) and to every
/// later version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Set {
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_row: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_header: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clear: bool,
}

/// Delete sources (`sales.csv`) or single versions (`sales.csv@v2`) of one group. A
/// target with a processing job is refused unless `force`, which cancels the job first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rm {
    pub targets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// Queue re-embeds of the newest version of `sources`, or of every source of the group
/// (`all`). A source that already has a queued job gets that job back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reembed {
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

/// Embedding jobs, oldest first: of `group` (else the current group, else every group;
/// `all` ignores the current group), optionally only those in `state`, or exactly `ids`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jobs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<JobState>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<i64>,
    /// Most jobs returned (the newest ones), 1 to [`JOBS_MAX`](super::JOBS_MAX); default 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The cursor: only jobs older than the job with this `id` (the `id` of the first,
    /// oldest, job of the previous page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
}

/// Queue failed or cancelled jobs again: `jobs` by id, or every failed job of the group
/// (`failed`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    #[serde(default)]
    pub jobs: Vec<i64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// Cancel queued or processing jobs. A processing job stops within one batch; the
/// source's previous embeddings stay active.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cancel {
    pub jobs: Vec<i64>,
}

/// Check the catalog against the storage folder, vectors and jobs; `repair` fixes what
/// it found without deleting any file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fsck {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repair: bool,
}

/// The `k` rows of the group whose active embeddings are nearest to `text`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Search {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<u32>,
}

/// The audit trail, newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    /// RFC 3339 time; only records at or after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Most records returned, 1 to [`super::AUDIT_MAX`]; default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The cursor: only records older than the record with this `id` (the `id` of the
    /// last record of the previous page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
}

/// Follow live events. The answer is a stream: one line saying what is followed (the
/// [`Call::Reply`], [`Following`]), then one [`super::Event`] per line, until the client
/// closes the connection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Events {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

/// Which groups a listing request (`ls`, `jobs`, `audit`, `events`) covers, from its `group`
/// and `all` fields: the wire keeps the two fields, a handler matches on this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The named group.
    Group(String),
    /// The caller's current group, else every group.
    Current,
    /// Every group, whatever the caller's current group is.
    All,
}

/// A request named a group and asked for every group.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("give a group or all, not both")]
pub struct GroupAndAll;

impl From<GroupAndAll> for super::ErrorBody {
    fn from(error: GroupAndAll) -> Self {
        super::ErrorBody::new(super::ErrorCode::BadArgs, error.to_string())
    }
}

impl Scope {
    /// The scope of a request's `group` and `all` fields.
    pub fn new(group: Option<String>, all: bool) -> Result<Scope, GroupAndAll> {
        match (group, all) {
            (Some(_), true) => Err(GroupAndAll),
            (Some(group), false) => Ok(Scope::Group(group)),
            (None, true) => Ok(Scope::All),
            (None, false) => Ok(Scope::Current),
        }
    }

    /// A request that names one group or none (the caller's current one).
    pub fn named_or_current(group: Option<String>) -> Scope {
        group.map_or(Scope::Current, Scope::Group)
    }
}

/// A request whose `group` and `all` fields choose the groups it covers.
pub trait Scoped {
    /// Which groups this request covers.
    fn scope(&self) -> Result<Scope, GroupAndAll>;
}

macro_rules! scoped {
    ($($name:ident),*) => {$(
        impl Scoped for $name {
            fn scope(&self) -> Result<Scope, GroupAndAll> {
                Scope::new(self.group.clone(), self.all)
            }
        }
    )*};
}

scoped!(Ls, Jobs, Audit, Events);

/// Ties each request to its variant of [`Command`] and to its reply type.
macro_rules! calls {
    ($($name:ident => $reply:ty,)*) => {$(
        impl From<$name> for Command {
            fn from(request: $name) -> Command {
                Command::$name(request)
            }
        }

        impl Call for $name {
            type Reply = $reply;
        }
    )*};
}

calls! {
    Status => StatusInfo,
    Groups => Vec<GroupInfo>,
    Ls => Vec<SourceSummary>,
    Show => SourceDetail,
    Use => UseInfo,
    Prefs => PrefsInfo,
    PrefsSet => PrefsSaved,
    Set => SetOutcome,
    Rm => Vec<RmOutcome>,
    Reembed => Vec<Queued>,
    Jobs => Vec<JobInfo>,
    Retry => Vec<Queued>,
    Cancel => Vec<Queued>,
    Fsck => FsckReport,
    Search => SearchResult,
    Audit => Vec<AuditEntry>,
    Events => Following,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_comes_from_group_and_all() {
        let cases = [
            (Some("g"), false, Ok(Scope::Group("g".into()))),
            (None, false, Ok(Scope::Current)),
            (None, true, Ok(Scope::All)),
            (Some("g"), true, Err(GroupAndAll)),
        ];
        for (group, all, expected) in cases {
            let scope = Scope::new(group.map(String::from), all);
            assert_eq!(scope, expected, "group {group:?}, all {all}");
        }
        assert_eq!(
            Scope::named_or_current(Some("g".into())),
            Scope::Group("g".into())
        );
        assert_eq!(Scope::named_or_current(None), Scope::Current);
    }

    #[test]
    fn every_listing_request_reads_its_scope_from_its_fields() {
        let ls = Ls {
            group: Some("g".into()),
            all: false,
        };
        assert_eq!(ls.scope(), Ok(Scope::Group("g".into())));
        let jobs = Jobs {
            all: true,
            ..Jobs::default()
        };
        assert_eq!(jobs.scope(), Ok(Scope::All));
        assert_eq!(Audit::default().scope(), Ok(Scope::Current));
        let events = Events {
            group: Some("g".into()),
            all: true,
        };
        assert_eq!(events.scope(), Err(GroupAndAll));
    }
}
