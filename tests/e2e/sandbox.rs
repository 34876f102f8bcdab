//! The parse worker's sandbox: a reader taken over by a hostile file gets nothing worth
//! stealing. From inside a worker (the `escape` test hook, debug builds only) opening
//! `/etc/passwd`, creating a socket, connecting, `execve`, regaining root, executable memory,
//! `fork`/`clone`, killing or tracing its parent and reading its parent's limits all fail; the
//! worker is not root when the daemon is, and then cannot even stat `/etc/passwd`; `status` says what confines the workers; a start as
//! root with a worker user that does not exist is refused with the key's name.

use crate::helper::Daemon;
use ingestd::protocol::WorkerSandbox;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// What `status` must say about the workers of a daemon run by us.
fn assert_sandbox_reported(sandbox: &WorkerSandbox) {
    assert_eq!(sandbox.error, None, "{sandbox:?}");
    assert!(sandbox.seccomp, "{sandbox:?}");
    assert!(sandbox.no_new_privs, "{sandbox:?}");
    assert!(
        ["enforced", "partially enforced", "not supported"].contains(&sandbox.landlock.as_str()),
        "{sandbox:?}"
    );
    if is_root() {
        assert_ne!(sandbox.uid, 0, "{sandbox:?}");
        assert_ne!(sandbox.gid, 0, "{sandbox:?}");
    } else {
        assert_eq!(sandbox.uid, nix::unistd::getuid().as_raw(), "{sandbox:?}");
    }
}

#[test]
fn status_says_what_confines_the_parse_workers() {
    let daemon = Daemon::start();
    let status = daemon.status();
    let sandbox = status
        .parse_worker_sandbox
        .expect("status reports the sandbox");
    assert_sandbox_reported(&sandbox);
    let human = String::from_utf8(daemon.ctl(&["status"]).stdout).unwrap();
    assert!(
        human.contains("parse workers") && human.contains("seccomp on"),
        "{human}"
    );
}

#[test]
fn a_missing_worker_user_stops_a_root_start_with_the_key_named() {
    if !is_root() {
        crate::helper::skip("only a daemon running as root switches its workers' user");
        return;
    }
    let mut daemon =
        Daemon::configure("[ingest]\nsettle_ms = 150\nworker_user = \"no-such-user-here\"\n");
    daemon.launch(|_| {});
    let status = daemon.wait_exit();
    assert!(!status.success(), "{status}");
    let log = daemon.log_text();
    assert!(
        log.contains("ingest.worker_user") && log.contains("no-such-user-here"),
        "{log}"
    );
}

#[test]
fn root_itself_is_refused_as_the_worker_user() {
    if !is_root() {
        crate::helper::skip("only a daemon running as root switches its workers' user");
        return;
    }
    let mut daemon = Daemon::configure("[ingest]\nworker_user = \"root\"\n");
    daemon.launch(|_| {});
    assert!(!daemon.wait_exit().success());
    assert!(
        daemon.log_text().contains("is root"),
        "{}",
        daemon.log_text()
    );
}

#[cfg(debug_assertions)]
mod hooked {
    use super::*;
    use ingestd::ingest::formats::{Format, ReadOptions};
    use ingestd::ingest::isolate::hooks::Hook;
    use ingestd::ingest::isolate::{Failure, Limits, ParseWorker};
    use ingestd::protocol::Status;
    use std::ops::ControlFlow;
    use std::time::Duration;

    const LIMITS: Limits = Limits {
        memory: 512_000_000,
        timeout: Duration::from_secs(30),
    };

    fn worker() -> ParseWorker {
        ParseWorker::at(env!("CARGO_BIN_EXE_ingestd"))
    }

    /// What the `escape` hook found, from its rejection reason.
    fn escape_report(reason: &str) -> serde_json::Value {
        serde_json::from_str(reason).unwrap_or_else(|e| panic!("{e}: {reason}"))
    }

    /// Every way out failed, and the worker is not root when we are.
    fn assert_nothing_escaped(seen: &serde_json::Value) {
        for attempt in [
            "open_etc_passwd",
            "unix_socket",
            "tcp_connect",
            "execve",
            "setuid_root",
            "mmap_exec",
            "mprotect_exec",
            "fork",
            "clone",
            "kill_parent",
            "ptrace_parent",
            "prlimit_parent",
        ] {
            let error = seen[attempt]
                .as_str()
                .unwrap_or_else(|| panic!("{attempt} succeeded inside the worker: {seen}"));
            assert!(
                error.contains("not permitted") || error.contains("EPERM"),
                "{attempt} failed, but not because the sandbox refused it: {seen}"
            );
        }
        if is_root() {
            assert_ne!(seen["uid"], 0, "the worker reads as root: {seen}");
            assert_ne!(seen["gid"], 0, "the worker reads in group root: {seen}");
            assert_eq!(seen["groups"], serde_json::json!([]), "{seen}");
            // Rooted in an empty directory, no path resolves, even through the stat the
            // filter has to let by.
            let stat = seen["stat_etc_passwd"]
                .as_str()
                .unwrap_or_else(|| panic!("the worker can stat /etc/passwd: {seen}"));
            assert!(stat.contains("No such file"), "{seen}");
        } else {
            eprintln!(
                "not root: the worker is not chrooted, so stat of a path with AT_EMPTY_PATH \
                 is not checked (got {})",
                seen["stat_etc_passwd"]
            );
        }
    }

    fn hook_file(hook: Hook) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hook.csv");
        std::fs::write(&path, hook.file_content()).unwrap();
        (dir, path)
    }

    #[test]
    fn a_reading_worker_cannot_open_connect_exec_or_be_root() {
        let (_dir, path) = hook_file(Hook::Escape);
        let reason = match worker().extract(Format::Csv, &path, &ReadOptions::default(), &LIMITS) {
            Err(Failure::Rejected(rejection)) => rejection.reason,
            other => panic!("{other:?}"),
        };
        assert_nothing_escaped(&escape_report(&reason));
    }

    #[test]
    fn a_row_streaming_worker_is_sandboxed_too() {
        let (_dir, path) = hook_file(Hook::Escape);
        let got = worker().stream_rows(
            Format::Csv,
            &path,
            &ReadOptions::default(),
            &LIMITS,
            &mut |_| ControlFlow::Continue(()),
        );
        // The hook's answer is also a row stream's last line: a rejection.
        let reason = match got {
            Err(Failure::Rejected(rejection)) => rejection.reason,
            other => panic!("{other:?}"),
        };
        assert_nothing_escaped(&escape_report(&reason));
    }

    #[test]
    fn the_daemons_workers_cannot_open_connect_exec_or_be_root() {
        let daemon = Daemon::start();
        daemon.drop_file("g", "escape.csv", &Hook::Escape.file_content());
        let source = daemon.wait_settled("g", "escape.csv");
        assert_eq!(source.status, Status::Invalid, "{source:?}");
        assert_nothing_escaped(&escape_report(&source.reason.unwrap()));
        // Nothing it tried reached the daemon, which goes on reading ordinary files.
        daemon.drop_file("g", "fine.csv", b"id,name\n1,a\n");
        let fine = daemon.wait_stored("g", "fine.csv");
        assert_eq!(fine.rows, Some(1));
    }
}

/// The filter takes nothing a reader needs: every file of the corpus (CSV, TSV, XLS, XLSX,
/// XLSM, Parquet with each of its codecs — snappy, gzip, brotli, zstd, lz4) reads to the same
/// columns and rows, or the same rejection, in a sandboxed worker as in this process.
#[test]
fn every_corpus_file_reads_the_same_in_the_sandbox_as_here() {
    use ingestd::ingest::formats::{self, Format, ReadOptions};
    use ingestd::ingest::isolate::{Failure, Limits, ParseWorker};
    let corpus = crate::helper::corpus();
    let Ok(manifest) = std::fs::read_to_string(corpus.join("MANIFEST.tsv")) else {
        crate::helper::skip(&format!("no fixture corpus at {}", corpus.display()));
        return;
    };
    let worker = ParseWorker::at(env!("CARGO_BIN_EXE_ingestd"));
    // Roomy limits: only the sandbox may differ between the two readings.
    let limits = Limits {
        memory: 4_000_000_000,
        timeout: std::time::Duration::from_secs(120),
    };
    let options = ReadOptions::default();
    let (mut compared, mut by_format) = (0, std::collections::BTreeMap::<&str, u32>::new());
    let mut differ = Vec::new();
    for line in manifest.lines().skip(1) {
        let Some(path) = line.split('\t').next().filter(|p| !p.is_empty()) else {
            continue;
        };
        let Some(format) = std::path::Path::new(path)
            .extension()
            .and_then(|e| e.to_str())
            .and_then(Format::from_extension)
        else {
            continue;
        };
        let file = corpus.join(path);
        let here = formats::extract(format, &file, &options).map_err(|r| r.reason);
        let there = match worker.extract(format, &file, &options, &limits) {
            Ok(extracted) => Ok(extracted),
            Err(Failure::Rejected(rejection)) => Err(rejection.reason),
            Err(Failure::Worker(error)) => {
                differ.push(format!("{path}: the worker failed: {error}"));
                continue;
            }
        };
        if here != there {
            differ.push(format!("{path}: here {here:?}, in the worker {there:?}"));
        }
        compared += 1;
        *by_format.entry(format.as_str()).or_default() += 1;
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    assert!(compared > 200, "only {compared} corpus files compared");
    eprintln!("{compared} corpus files read alike: {by_format:?}");
}
