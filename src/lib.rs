//! ingestd: watches drop folders of tabular files and turns each drop into a validated,
//! versioned, catalogued source.
//!
//! The modules follow the path of a file: [`watch`] finds and settles it, [`ingest`] validates
//! and stores it (with [`ingest::formats`] reading each format), [`catalog`] records it, [`queue`] embeds it with an [`embed`] provider,
//! [`server`] answers the control socket, and [`daemon`] wires them together and owns
//! shutdown. [`protocol`] and [`client`] are the `ingestd-proto` crate's (`ctl/proto/`), shared
//! with `ingestctl` and the tests; they are re-exported here so `ingestd::protocol::…` names them.

pub mod audit;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod dirs;
pub mod embed;
pub mod events;
pub mod format;
pub mod identity;
pub mod ingest;
#[cfg(test)]
mod layers;
pub mod notices;
pub mod queue;
pub mod server;
pub mod service;
pub mod sha256;
pub mod template;
#[doc(hidden)]
pub mod testing;
pub mod watch;

pub use daemon::run;
pub use ingestd_proto::{client, protocol};
