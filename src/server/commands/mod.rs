//! One handler per protocol command, each in its own file: `handle(shared, peer, request)`
//! takes the command's typed request (`protocol::cmd`) and answers it. What several of them
//! share (the daemon state, the caller, which group a request works on) is in `context`; the
//! dispatch and the admin gate that runs before a state-changing command are in `handlers`.
//!
//! `events` has no handler here: it is a stream, and the connection itself serves it
//! (`server::stream`).

pub mod audit;
pub mod cancel;
pub mod fsck;
pub mod groups;
pub mod jobs;
pub mod ls;
pub mod prefs;
pub mod prefs_set;
pub mod reembed;
pub mod retry;
pub mod rm;
pub mod search;
pub mod set;
pub mod show;
pub mod status;
pub mod use_group;
