//! ingestd-proto: the control protocol of `ingestd`, shared by the daemon, `ingestctl` and
//! the tests.
//!
//! It owns the wire: [`protocol`] (request and reply types, one struct per request with its
//! reply type, framing limits, the version constant), [`client`] (a blocking client of the
//! socket), [`identity`] (who did something, as audit records and events carry it) and
//! [`names`] (which group and file names are valid or ignored).
//!
//! It never depends on the daemon, and stays light (serde, serde_json, interprocess,
//! thiserror) so that a client build compiles none of the daemon's readers, model or database.

pub mod client;
pub mod identity;
pub mod names;
pub mod protocol;
