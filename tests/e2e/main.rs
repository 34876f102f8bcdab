//! End-to-end tests: the real `ingestd` on temporary folders, real files dropped into them,
//! asserted through the protocol client and the real `ingestctl` binary. One test binary;
//! `helper` starts daemons and polls with one global timeout.

mod attack_fs;
mod attack_socket;
mod cli;
mod corpus;
mod fsck;
mod headers;
mod helper;
mod hostile;
mod ingest;
mod jobs;
mod manage;
mod pg;
mod promise;
mod protocol;
mod retain;
mod reuse;
mod sandbox;
mod service;
mod set;
mod supervise;
mod ui;
