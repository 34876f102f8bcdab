//! The PostgreSQL catalog: `ingestd catalog migrate` on catalogs the real daemon wrote, and
//! HNSW search against the exact scan.
//!
//! They need a PostgreSQL with pgvector: `eval "$(tests/pg/start.sh)"` exports `PG_TEST_URL`
//! (a superuser URL over a Unix socket). Without it they skip and say why; with
//! `PG_TEST_REQUIRED` set (CI sets it) a missing server fails them instead. Every test works
//! in a fresh database of its own, dropped afterwards.

mod daemon;
mod deletes;
mod fixture;
mod generations;
mod ingest;
mod jobs;
mod manage;
mod migrate;
mod notify;
mod queue;
mod read;
mod search;
mod staging;
mod upkeep;

use std::process::{Command as Process, Output, Stdio};

pub use ingestd::testing::TestDb;

/// `ingestd catalog migrate --config CONFIG ARGS…`, the real binary.
pub fn migrate(config: &std::path::Path, args: &[&str]) -> Output {
    Process::new(env!("CARGO_BIN_EXE_ingestd"))
        .arg("--config")
        .arg(config)
        .args(["catalog", "migrate"])
        .args(args)
        .env_remove("INGESTD_CONFIG")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run ingestd catalog migrate")
}

/// stdout and stderr of `out`, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
