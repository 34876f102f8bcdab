//! End-to-end tests: the real `ingestd` on temporary folders, real files dropped into them,
//! asserted through the protocol client and the real `ingestctl` binary. One test binary;
//! `helper` starts daemons and polls with one global timeout.

mod cli;
mod corpus;
mod fsck;
mod helper;
mod hostile;
mod ingest;
mod jobs;
mod manage;
mod protocol;
mod reuse;
mod service;
