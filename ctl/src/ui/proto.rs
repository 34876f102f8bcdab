//! The one place the terminal UI names the protocol and its client, so that moving them to
//! another crate touches this file only. It holds re-exports and nothing else.

pub use ingestd_proto::client::{Client, ClientError, DEFAULT_TIMEOUT};
pub use ingestd_proto::protocol::{
    Call, Command, ErrorBody, Event, EventKind, Following, GroupInfo, JobInfo, JobState,
    MAX_RESPONSE_BYTES, PROTOCOL_VERSION, PrefsDraft, PrefsInfo, PrefsSaved, Queued, Request,
    RmOutcome, SearchResult, SourceDetail, SourceSummary, Status, StatusInfo, UseInfo, cmd,
};
