//! Support for the tests (unit and end-to-end), not part of the daemon's interface: loud
//! skips. A test that cannot run here (no fixture corpus, no model, no test server, not root)
//! says so on the real stderr, where `cargo test` shows it even for a passing test, and fails
//! instead when `CI_REQUIRE_ALL_TESTS=1`: CI provides everything, so a skip there means a
//! broken CI step, not a missing tool. The name does not start with `INGESTD_`, the prefix of
//! the daemon's config overrides.
//!
//! Also [`TestDb`]: a PostgreSQL database of its own for one test, on the server `PG_TEST_URL`
//! names (`tests/pg/start.sh` starts one), for the catalog's tests on that backend.

use std::io::Write as _;

/// Set to `1` by `.ci/run`: every skip is a failure.
pub const REQUIRE_ALL: &str = "CI_REQUIRE_ALL_TESTS";

/// Say why the calling test does not run; panics when [`REQUIRE_ALL`] is `1`. The caller
/// returns right after.
pub fn skip(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    // Straight to the process's stderr: `eprintln!` would be captured and never shown for a
    // test that passes.
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {reason}");
    if std::env::var_os(REQUIRE_ALL).is_some_and(|value| value == "1") {
        panic!("{test} could not run ({reason}), and {REQUIRE_ALL}=1 requires every test to run");
    }
}

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
            skip(
                "PG_TEST_URL is not set; run eval \"$(tests/pg/start.sh)\" to run the PostgreSQL tests",
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
