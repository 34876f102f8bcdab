//! A test hook that holds an ingest worker between "settled" and "opened", so the race an
//! attacker would try there (swap the group folder for a link) can be run on purpose.
//!
//! Compiled only into debug builds: a release daemon has no such code and reads no such
//! variable. In a debug build, when `INGEST_TEST_PAUSE_DIR` names a folder, the worker creates
//! `<group>.<name>.paused` there and waits (at most two minutes) until `<group>.<name>.go`
//! appears. The variable does not start with `INGESTD_`, so no config override can set it.

/// The variable that turns the pause on (debug builds only).
pub const PAUSE_DIR_VAR: &str = "INGEST_TEST_PAUSE_DIR";

/// Wait here if a test asked for it; returns at once in release builds.
pub fn before_open(group: &str, name: &str) {
    #[cfg(debug_assertions)]
    {
        let Some(dir) = std::env::var_os(PAUSE_DIR_VAR) else {
            return;
        };
        let dir = std::path::PathBuf::from(dir);
        let base = format!("{group}.{name}");
        if std::fs::write(dir.join(format!("{base}.paused")), b"").is_err() {
            return;
        }
        let go = dir.join(format!("{base}.go"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !go.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = std::fs::remove_file(go);
    }
    #[cfg(not(debug_assertions))]
    let _ = (group, name);
}
