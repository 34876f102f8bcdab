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

/// A database of its own for one test, created from `template1` (which has pgvector) or
/// `template0` (which has not), dropped when the test ends.
pub struct TestDb {
    admin: postgres::Config,
    pub name: String,
    /// The server's socket folder.
    pub host: String,
}

impl TestDb {
    /// A fresh database with pgvector, or `None` (after saying why) when no server is set up.
    pub fn create() -> Option<TestDb> {
        Self::create_with("TEMPLATE template1")
    }

    /// A fresh database created with `options` (`TEMPLATE template0 OWNER someone`).
    pub fn create_with(options: &str) -> Option<TestDb> {
        let Some(url) = std::env::var("PG_TEST_URL").ok().filter(|u| !u.is_empty()) else {
            assert!(
                std::env::var_os("PG_TEST_REQUIRED").is_none(),
                "PG_TEST_REQUIRED is set but PG_TEST_URL is not: start the server with \
                 eval \"$(tests/pg/start.sh)\""
            );
            eprintln!(
                "SKIPPED: PG_TEST_URL is not set; run eval \"$(tests/pg/start.sh)\" to run the \
                 PostgreSQL tests"
            );
            return None;
        };
        let admin: postgres::Config = url.parse().expect("PG_TEST_URL is a PostgreSQL URL");
        let host = admin
            .get_hosts()
            .iter()
            .find_map(|h| match h {
                postgres::config::Host::Unix(path) => Some(path.display().to_string()),
                _ => None,
            })
            .expect("PG_TEST_URL names a Unix socket folder (?host=/path)");
        let name = format!("ingestd_test_{}", uuid::Uuid::new_v4().simple());
        let mut client = admin
            .connect(postgres::NoTls)
            .expect("connect with PG_TEST_URL");
        client
            .batch_execute(&format!("CREATE DATABASE {name} {options}"))
            .expect("create a test database");
        Some(TestDb { admin, name, host })
    }

    /// A URL of this database for `user` (no password).
    pub fn url_as(&self, user: &str) -> String {
        format!("postgresql://{user}@/{}?host={}", self.name, self.host)
    }

    /// A superuser URL of this database.
    pub fn url(&self) -> String {
        self.url_as(self.admin.get_user().unwrap_or("postgres"))
    }

    /// A superuser connection to this database.
    pub fn client(&self) -> postgres::Client {
        let mut config = self.admin.clone();
        config.dbname(&self.name);
        config
            .connect(postgres::NoTls)
            .expect("connect to the test database")
    }

    /// A superuser connection to the server's own database (roles, other databases).
    pub fn admin(&self) -> postgres::Client {
        self.admin
            .connect(postgres::NoTls)
            .expect("connect with PG_TEST_URL")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut client) = self.admin.connect(postgres::NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

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
