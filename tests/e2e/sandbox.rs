//! The parse worker's sandbox: a reader taken over by a hostile file gets nothing worth
//! stealing. From inside a worker (the `escape` test hook, debug builds only) opening
//! `/etc/passwd`, creating a socket, connecting, `execve`, regaining root, executable memory,
//! `fork`/`clone`, killing or tracing its parent and reading its parent's limits all fail; the
//! worker is not root when the daemon is, and then cannot even stat `/etc/passwd`; no worker,
//! chrooted or not (a daemon that is not root), can `stat`, `access` or `readlink` a path,
//! while fstat of its input works; `status` says what confines the workers; a start as
//! root with a worker user that does not exist is refused with the key's name.

use crate::helper::Daemon;
use ingestd::ingest::isolate::ParseWorker;
use ingestd::protocol::WorkerSandbox;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The uid workers of an unprivileged daemon run as in these tests.
const NOBODY: u32 = 65534;

/// A worker as a daemon that is not root starts it: no user switch, no chroot. As root,
/// a wrapper runs the real worker as uid 65534 and tells it to stay who it is (the
/// user argument `-`), which is exactly the worker of an unprivileged daemon.
fn unprivileged_worker() -> (Option<tempfile::TempDir>, ParseWorker) {
    if !is_root() {
        return (None, ParseWorker::at(env!("CARGO_BIN_EXE_ingestd")));
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("unprivileged-worker");
    // The worker starts with an empty environment: no PATH to find setpriv by.
    let setpriv = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([std::path::PathBuf::from("/usr/bin"), "/bin".into()])
        .map(|dir| dir.join("setpriv"))
        .find(|path| path.exists())
        .expect("setpriv (util-linux) is installed");
    // Arguments: parse-worker, parent pid, memory, cpu, user, then the rest.
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncmd=$1 parent=$2 memory=$3 cpu=$4\nshift 5\n\
             exec {} --reuid={NOBODY} --regid={NOBODY} --clear-groups -- {} \
             \"$cmd\" \"$parent\" \"$memory\" \"$cpu\" - \"$@\"\n",
            setpriv.display(),
            env!("CARGO_BIN_EXE_ingestd")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    (Some(dir), ParseWorker::at(&wrapper))
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
    use ingestd::ingest::isolate::{Failure, Limits};
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
        assert_no_path_is_seen(seen, is_root());
        if is_root() {
            assert_ne!(seen["uid"], 0, "the worker reads as root: {seen}");
            assert_ne!(seen["gid"], 0, "the worker reads in group root: {seen}");
            assert_eq!(seen["groups"], serde_json::json!([]), "{seen}");
        }
    }

    /// What a worker can learn about a path without opening it. Plain `stat`, `access` and
    /// `readlink` are refused by the filter everywhere; `fstatat`/`statx` with
    /// `AT_EMPTY_PATH` must pass the filter (glibc's `fstat` is made of it), so only a
    /// chrooted worker (a root daemon's) finds nothing through them. `fstat` of the input
    /// works.
    fn assert_no_path_is_seen(seen: &serde_json::Value, chrooted: bool) {
        for attempt in [
            "stat_plain_etc_passwd",
            "access_etc_passwd",
            "readlink_proc_self_exe",
        ] {
            let error = seen[attempt]
                .as_str()
                .unwrap_or_else(|| panic!("{attempt} succeeded inside the worker: {seen}"));
            assert!(
                error.contains("not permitted") || error.contains("No such file"),
                "{attempt} failed, but not because the sandbox refused it: {seen}"
            );
        }
        for attempt in [
            "stat_etc_passwd",
            "stat_from_fd_etc_passwd",
            "statx_etc_passwd",
        ] {
            if chrooted {
                let error = seen[attempt]
                    .as_str()
                    .unwrap_or_else(|| panic!("{attempt} found /etc/passwd: {seen}"));
                assert!(error.contains("No such file"), "{attempt}: {seen}");
            } else {
                eprintln!(
                    "not chrooted: {attempt} with AT_EMPTY_PATH passes the filter (got {})",
                    seen[attempt]
                );
            }
        }
        assert_eq!(
            seen["fstat_input"],
            serde_json::Value::Null,
            "fstat of the input must work: {seen}"
        );
    }

    fn hook_file(hook: Hook) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hook.csv");
        std::fs::write(&path, hook.file_content()).unwrap();
        (dir, path)
    }

    #[test]
    fn an_unprivileged_daemons_worker_is_refused_stat_access_and_readlink() {
        let (_wrapper, worker) = unprivileged_worker();
        let (_dir, path) = hook_file(Hook::Escape);
        let reason = match worker.extract(Format::Csv, &path, &ReadOptions::default(), &LIMITS) {
            Err(Failure::Rejected(rejection)) => rejection.reason,
            other => panic!("{other:?}"),
        };
        let seen = escape_report(&reason);
        assert_ne!(seen["uid"], 0, "{seen}");
        if is_root() {
            assert_eq!(seen["uid"], NOBODY, "the wrapper's worker: {seen}");
        }
        for attempt in [
            "open_etc_passwd",
            "unix_socket",
            "tcp_connect",
            "execve",
            "setuid_root",
        ] {
            let error = seen[attempt]
                .as_str()
                .unwrap_or_else(|| panic!("{attempt} succeeded inside the worker: {seen}"));
            assert!(
                error.contains("not permitted") || error.contains("EPERM"),
                "{seen}"
            );
        }
        assert_no_path_is_seen(&seen, false);
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
    use ingestd::ingest::isolate::{Failure, Limits};
    let corpus = crate::helper::corpus();
    let Ok(manifest) = std::fs::read_to_string(corpus.join("MANIFEST.tsv")) else {
        crate::helper::skip(&format!("no fixture corpus at {}", corpus.display()));
        return;
    };
    // The daemon's workers, and (as root) the workers of a daemon that is not root: no user
    // switch, no chroot, only the filter between the reader and the paths.
    let (_wrapper, unprivileged) = unprivileged_worker();
    let mut workers = vec![("worker", ParseWorker::at(env!("CARGO_BIN_EXE_ingestd")))];
    if is_root() {
        workers.push(("unprivileged worker", unprivileged));
    }
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
        for (which, worker) in &workers {
            let there = match worker.extract(format, &file, &options, &limits) {
                Ok(extracted) => Ok(extracted),
                Err(Failure::Rejected(rejection)) => Err(rejection.reason),
                Err(Failure::Worker(error)) => {
                    differ.push(format!("{path}: the {which} failed: {error}"));
                    continue;
                }
            };
            if here != there {
                differ.push(format!("{path}: here {here:?}, in the {which} {there:?}"));
            }
        }
        compared += 1;
        *by_format.entry(format.as_str()).or_default() += 1;
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    assert!(compared > 200, "only {compared} corpus files compared");
    eprintln!("{compared} corpus files read alike: {by_format:?}");
}
