//! Hostile files and misbehaving readers: whatever a file makes the parse worker do — exhaust
//! its memory, spin, crash — the file is rejected with a plain reason and the daemon goes on;
//! what only our side can cause leaves the file in place.
//!
//! The misbehaviour comes from the worker's test hooks (`ingestd::ingest::isolate::hooks`),
//! which exist only in debug builds, so those tests are compiled only there. The real hostile
//! files at the end need no hook.

use crate::helper::{Daemon, csv};
use ingestd::ingest::formats::{Format, ReadOptions};
use ingestd::ingest::isolate::{Failure, Limits, ParseWorker, WorkerError};
use ingestd::protocol::{SourceSummary, Status};
use std::time::Duration;

/// The daemon's own peak resident set (VmHWM), in MB.
pub fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// Live (not zombie) parse workers whose parent is `pid`.
pub fn parse_workers_of(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if field("PPid:") == pid.to_string()
            && !field("State:").starts_with('Z')
            && cmdline.split(|b| *b == 0).nth(1) == Some(b"parse-worker")
        {
            found.push(child);
        }
    }
    found
}

/// Wait until `group/name` is stored or rejected; panics if it is still in flight at the
/// global timeout.
fn wait_done(daemon: &Daemon, group: &str, name: &str) -> SourceSummary {
    daemon.wait_settled(group, name)
}

/// The daemon is the same process and still takes good files.
fn assert_still_ingesting(daemon: &Daemon, pid: u32, name: &str) {
    daemon.drop_file("g", name, &csv(7, 3));
    let source = wait_done(daemon, "g", name);
    assert_ne!(source.status, Status::Invalid, "{source:?}");
    assert_eq!(source.columns, vec!["id", "name", "amount"]);
    assert_eq!(daemon.status().pid, pid, "the daemon was restarted");
}

fn worker() -> ParseWorker {
    ParseWorker::at(env!("CARGO_BIN_EXE_ingestd"))
}

const LIMITS: Limits = Limits {
    memory: 512_000_000,
    timeout: Duration::from_secs(30),
};

/// A file in a fresh temporary folder, kept alive by the returned guard.
fn temp_file(name: &str, content: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    (dir, path)
}

#[test]
fn the_worker_reads_a_csv_in_its_own_process() {
    let (_dir, path) = temp_file("a.csv", b"id,amount\n1,2\n3,4\n");
    let extracted = worker()
        .extract(Format::Csv, &path, &ReadOptions::default(), &LIMITS)
        .unwrap();
    assert_eq!(extracted.columns, vec!["id", "amount"]);
    assert_eq!(extracted.rows, 2);
    let (_dir, binary) = temp_file("b.csv", b"\x00\x01\x02 not text");
    match worker().extract(Format::Csv, &binary, &ReadOptions::default(), &LIMITS) {
        Err(Failure::Rejected(rejection)) => {
            assert!(rejection.reason.contains("binary"), "{}", rejection.reason)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_worker_that_cannot_start_is_our_error() {
    let (_dir, path) = temp_file("a.csv", b"a,b\n1,2\n");
    let missing = ParseWorker::at("/nonexistent/ingestd");
    match missing.extract(Format::Csv, &path, &ReadOptions::default(), &LIMITS) {
        Err(Failure::Worker(error @ WorkerError::Spawn { .. })) => {
            assert!(
                error.to_string().contains("/nonexistent/ingestd"),
                "{error}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[cfg(debug_assertions)]
mod hooked {
    use super::*;
    use crate::helper::wait_for;
    use ingestd::ingest::isolate::hooks::Hook;

    fn assert_rejected_with(daemon: &Daemon, name: &str, reason: &str) {
        let source = wait_done(daemon, "g", name);
        assert_eq!(source.status, Status::Invalid, "{name}: {source:?}");
        assert_eq!(source.reason.as_deref(), Some(reason), "{name}");
        let dir = daemon.drop_root.join("g/.rejected");
        assert!(dir.join(name).exists(), "{name} kept in .rejected/");
        let error = std::fs::read_to_string(dir.join(format!("{name}.error.txt"))).unwrap();
        assert!(
            error.starts_with(&format!("{name} was not accepted: {reason}.")),
            "{error}"
        );
    }

    fn run_hook(hook: Hook, limits: &Limits) -> Result<String, String> {
        let (_dir, path) = temp_file("hook.csv", &hook.file_content());
        match worker().extract(Format::Csv, &path, &ReadOptions::default(), limits) {
            Ok(extracted) => panic!("{hook:?} was read: {extracted:?}"),
            Err(Failure::Rejected(rejection)) => Ok(rejection.reason),
            Err(Failure::Worker(error)) => Err(error.to_string()),
        }
    }

    #[test]
    fn every_misbehaviour_of_a_worker_has_its_reason() {
        let quick = Limits {
            memory: 300_000_000,
            timeout: Duration::from_secs(1),
        };
        let cases = [
            (Hook::Alloc, "it needs more than 300 MB of memory to read"),
            (Hook::Loop, "reading it took longer than 1 s"),
            (Hook::Abort, "it made the reader crash (signal 6)"),
            (Hook::Segv, "it made the reader crash (signal 11)"),
            (Hook::Panic, "it made the reader crash (panic)"),
        ];
        for (hook, reason) in cases {
            assert_eq!(run_hook(hook, &quick), Ok(reason.to_string()), "{hook:?}");
        }
        let garbage = run_hook(Hook::Garbage, &quick).unwrap_err();
        assert!(
            garbage.contains("not a result") && garbage.contains("this is not an answer"),
            "{garbage}"
        );
    }

    /// The worker as it sees itself: what `Hook::Inspect` reports.
    fn confinement(reason: &str) -> serde_json::Value {
        serde_json::from_str(reason).unwrap_or_else(|e| panic!("{e}: {reason}"))
    }

    fn assert_confined(seen: &serde_json::Value, memory: u64, cpu: u64) {
        assert_eq!(seen["as"], serde_json::json!([memory, memory]), "{seen}");
        assert_eq!(seen["cpu"], serde_json::json!([cpu, cpu + 1]), "{seen}");
        assert_eq!(seen["core"], serde_json::json!([0, 0]), "{seen}");
        assert_eq!(seen["fsize"], serde_json::json!([0, 0]), "{seen}");
        assert_eq!(seen["fds"], serde_json::json!([0, 1, 2]), "{seen}");
        assert_eq!(seen["env"], 0, "no environment is passed on: {seen}");
        assert_eq!(
            seen["death_signal"], 9,
            "SIGKILL when the daemon dies: {seen}"
        );
        assert_eq!(seen["own_group"], true, "{seen}");
        if nix::unistd::geteuid().is_root() {
            // Chrooted into an empty directory that was removed before the worker read a
            // byte: even its own working directory has no path any more.
            assert_eq!(seen["cwd"], serde_json::Value::Null, "{seen}");
        } else {
            assert_eq!(seen["cwd"], "/", "{seen}");
        }
    }

    #[test]
    fn the_worker_confines_itself_before_reading() {
        // A descriptor the parent opens without close-on-exec must not reach the worker.
        let leaked = nix::fcntl::open(
            "/dev/null",
            nix::fcntl::OFlag::O_RDONLY,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        let reason = run_hook(Hook::Inspect, &LIMITS).unwrap();
        drop(leaked);
        assert_confined(&confinement(&reason), 512_000_000, 35);
    }

    #[test]
    fn a_file_that_needs_too_much_memory_is_rejected_and_the_daemon_goes_on() {
        let daemon =
            Daemon::start_with("[ingest]\nsettle_ms = 150\nparse_memory_limit = \"300MB\"\n");
        let pid = daemon.pid();
        daemon.drop_file("g", "bomb.csv", &Hook::Alloc.file_content());
        assert_rejected_with(
            &daemon,
            "bomb.csv",
            "it needs more than 300 MB of memory to read",
        );
        assert_still_ingesting(&daemon, pid, "after.csv");
    }

    #[test]
    fn a_file_that_makes_the_reader_spin_is_rejected_after_the_timeout() {
        let daemon = Daemon::start_with("[ingest]\nsettle_ms = 150\nparse_timeout_secs = 1\n");
        let pid = daemon.pid();
        daemon.drop_file("g", "spin.csv", &Hook::Loop.file_content());
        assert_rejected_with(&daemon, "spin.csv", "reading it took longer than 1 s");
        assert!(parse_workers_of(pid).is_empty(), "the worker was reaped");
        assert_still_ingesting(&daemon, pid, "after.csv");
    }

    #[test]
    fn files_that_crash_the_reader_are_rejected_as_crashes() {
        let daemon = Daemon::start();
        let pid = daemon.pid();
        let cases = [
            (
                "abort.csv",
                Hook::Abort,
                "it made the reader crash (signal 6)",
            ),
            (
                "segv.csv",
                Hook::Segv,
                "it made the reader crash (signal 11)",
            ),
            ("panic.csv", Hook::Panic, "it made the reader crash (panic)"),
        ];
        for (name, hook, _) in cases {
            daemon.drop_file("g", name, &hook.file_content());
        }
        for (name, _, reason) in cases {
            assert_rejected_with(&daemon, name, reason);
        }
        assert_still_ingesting(&daemon, pid, "after.csv");
    }

    #[test]
    fn a_worker_that_answers_garbage_is_our_bug_and_the_file_stays() {
        let daemon = Daemon::start();
        let pid = daemon.pid();
        let path = daemon.drop_file("g", "odd.csv", &Hook::Garbage.file_content());
        let notice = wait_for("a notice about the parse worker", || {
            daemon
                .status()
                .last_errors
                .into_iter()
                .find(|n| n.message.contains("odd.csv"))
        });
        assert!(
            notice.message.contains("not a result"),
            "{}",
            notice.message
        );
        assert!(notice.message.contains("stays in the drop folder"));
        assert!(path.exists(), "left in place");
        assert!(!daemon.drop_root.join("g/.rejected/odd.csv").exists());
        let listed = daemon.ls(Some("g"));
        assert!(
            !listed
                .iter()
                .any(|s| s.name == "odd.csv" && s.status == Status::Invalid),
            "{listed:?}"
        );
        assert_still_ingesting(&daemon, pid, "after.csv");
        // Left alone until the next event or scan, not retried in a loop.
        let reports = daemon
            .status()
            .last_errors
            .iter()
            .filter(|n| n.message.contains("odd.csv"))
            .count();
        assert_eq!(reports, 1);
    }

    #[test]
    fn the_daemon_confines_its_workers_with_the_configured_limits() {
        let daemon = Daemon::start_with(
            "[ingest]\nsettle_ms = 150\nparse_memory_limit = \"1GB\"\nparse_timeout_secs = 12\n",
        );
        daemon.drop_file("g", "inspect.csv", &Hook::Inspect.file_content());
        let source = wait_done(&daemon, "g", "inspect.csv");
        assert_eq!(source.status, Status::Invalid);
        assert_confined(&confinement(&source.reason.unwrap()), 1_000_000_000, 17);
    }

    #[test]
    fn a_worker_dies_with_the_daemon() {
        let mut daemon =
            Daemon::start_with("[ingest]\nsettle_ms = 150\nparse_timeout_secs = 3600\n");
        let pid = daemon.pid();
        daemon.drop_file("g", "spin.csv", &Hook::Loop.file_content());
        let workers = wait_for("the parse worker to start", || {
            Some(parse_workers_of(pid)).filter(|w| !w.is_empty())
        });
        daemon.kill9();
        for worker in workers {
            wait_for(&format!("parse worker {worker} to die"), || {
                let state =
                    std::fs::read_to_string(format!("/proc/{worker}/status")).unwrap_or_default();
                // Gone, or a zombie its new parent has not reaped: either way, not running.
                let running = state
                    .lines()
                    .find_map(|l| l.strip_prefix("State:"))
                    .is_some_and(|s| !s.trim().starts_with('Z'));
                (!running).then_some(())
            });
        }
    }
}

/// A real hostile file: a quoted field that opens in the first data row and never closes, so
/// the reader must hold one 40 MB field. It may be read or rejected; it must not grow the
/// daemon, whose memory never sees the file's content.
#[test]
fn a_40_mb_quoted_field_that_never_closes_does_not_grow_the_daemon() {
    let daemon = Daemon::start();
    let pid = daemon.pid();
    let mut content = b"id,comment\n1,\"".to_vec();
    let line = b"all work and no play makes a field that never ends, \"\"quoted\"\" too\n";
    while content.len() < 40_000_000 {
        content.extend_from_slice(line);
    }
    daemon.drop_file("g", "endless.csv", &content);
    let source = wait_done(&daemon, "g", "endless.csv");
    match source.status {
        Status::Invalid => assert!(source.reason.is_some_and(|r| !r.is_empty())),
        _ => assert_eq!(source.columns, vec!["id", "comment"]),
    }
    let peak = peak_rss_mb(pid);
    assert!(peak < 100.0, "daemon peak RSS {peak:.1} MB");
    assert_still_ingesting(&daemon, pid, "after.csv");
}

/// One row whose second cell is a quoted field of about `len` bytes.
fn one_long_field(len: usize) -> Vec<u8> {
    let mut content = b"id,comment\n1,\"".to_vec();
    content.resize(len, b'x');
    content.extend_from_slice(b"\"\n");
    content
}

/// The same file with the quote closed at the very end: one row whose second cell is 40 MB.
#[test]
fn a_40_mb_field_that_does_close_is_read_by_the_worker_not_the_daemon() {
    let daemon = Daemon::start();
    let pid = daemon.pid();
    daemon.drop_file("g", "long.csv", &one_long_field(40_000_000));
    let source = wait_done(&daemon, "g", "long.csv");
    assert_ne!(source.status, Status::Invalid, "{source:?}");
    assert_eq!(source.rows, Some(1));
    let peak = peak_rss_mb(pid);
    assert!(peak < 100.0, "daemon peak RSS {peak:.1} MB");
    assert!(daemon.storage_root.join("g/long_v1.csv").exists());
}

/// A real file that needs more memory than the limit allows, no test hook involved: the CSV
/// reader holds a whole record, and growing a buffer to one 40 MB field needs about 200 MB of
/// address space.
#[test]
fn a_real_file_past_a_tight_memory_limit_is_rejected_for_memory() {
    let daemon = Daemon::start_with("[ingest]\nsettle_ms = 150\nparse_memory_limit = \"100MB\"\n");
    let pid = daemon.pid();
    daemon.drop_file("g", "long.csv", &one_long_field(40_000_000));
    let source = wait_done(&daemon, "g", "long.csv");
    assert_eq!(source.status, Status::Invalid, "{source:?}");
    assert_eq!(
        source.reason.as_deref(),
        Some("it needs more than 100 MB of memory to read")
    );
    assert_still_ingesting(&daemon, pid, "after.csv");
}
