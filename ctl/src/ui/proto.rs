//! The one place the terminal UI names the protocol and its client, so that moving them to
//! another crate touches this file only. It holds re-exports and nothing else.

pub use ingestd_proto::client::{Client, ClientError};
pub use ingestd_proto::protocol::{
    Command, Event, EventKind, Following, GroupInfo, JobInfo, JobState, PrefsInfo, PrefsSaved,
    Queued, RmOutcome, SearchResult, SourceDetail, SourceSummary, StatusInfo, UseInfo, cmd,
};
