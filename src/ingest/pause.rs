//! Test hooks that hold an ingest worker at a moment a race could strike, so the race can be
//! run on purpose: between "settled" and "opened" (an attacker swaps the group folder for a
//! link), and between "the original is still the stored file" and its removal (a writer moves
//! a new file onto the name).
//!
//! Compiled only into debug builds: a release daemon has no such code and reads no such
//! variable. In a debug build, when `INGEST_TEST_PAUSE_DIR` names a folder, the worker creates
//! `<group>.<name>.paused` there and waits (at most two minutes) until `<group>.<name>.go`
//! appears; before removing a stored file's original it does the same with
//! `<group>.<name>.remove.paused` and `<group>.<name>.remove.go`. The variable does not start with `INGESTD_`, so no config override can set it.

/// The variable that turns the pause on (debug builds only).
pub const PAUSE_DIR_VAR: &str = "INGEST_TEST_PAUSE_DIR";

/// Wait here if a test asked for it; returns at once in release builds.
pub fn before_open(group: &str, name: &str) {
    hold(&format!("{group}.{name}"));
}

/// Wait before removing the original `name` in the group folder `dir`, if a test asked.
pub fn before_remove(dir: &crate::dirs::Dir, name: &std::ffi::OsStr) {
    #[cfg(debug_assertions)]
    {
        let group = dir
            .shown()
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        hold(&format!("{group}.{}.remove", name.to_string_lossy()));
    }
    #[cfg(not(debug_assertions))]
    let _ = (dir, name);
}

/// Create `<base>.paused` in the pause folder and wait for `<base>.go`.
fn hold(base: &str) {
    #[cfg(debug_assertions)]
    {
        let Some(dir) = std::env::var_os(PAUSE_DIR_VAR) else {
            return;
        };
        let dir = std::path::PathBuf::from(dir);
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
    let _ = base;
}
