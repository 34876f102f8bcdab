//! Support for the tests (unit and end-to-end), not part of the daemon's interface: loud
//! skips. A test that cannot run here (no fixture corpus, no model, no test server, not root)
//! says so on the real stderr, where `cargo test` shows it even for a passing test, and fails
//! instead when `CI_REQUIRE_ALL_TESTS=1`: CI provides everything, so a skip there means a
//! broken CI step, not a missing tool. The name does not start with `INGESTD_`, the prefix of
//! the daemon's config overrides.

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
