//! Running as a service: sd_notify (READY, STATUS, WATCHDOG, STOPPING), a graceful stop in the
//! middle of a burst of drops, SIGHUP reloads, `--daemonize` with its pid file, socket
//! activation, and `check-config`. Each test starts the real binary and talks to it the way
//! systemd or an operator would.

use crate::helper::{Daemon, TIMEOUT, csv, sha256_hex, wait_for};
use ingestd::protocol::Status;
use nix::sys::signal::Signal;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

/// Receive notify datagrams until one satisfies `done`; returns every message seen.
pub(crate) fn receive_until(
    socket: &UnixDatagram,
    what: &str,
    mut done: impl FnMut(&str) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + TIMEOUT;
    let mut seen = Vec::new();
    let mut buffer = vec![0u8; 4096];
    loop {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; got {seen:?}"
        );
        match socket.recv(&mut buffer) {
            Ok(n) => {
                let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
                let finished = done(&message);
                seen.push(message);
                if finished {
                    return seen;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("notify socket: {e}"),
        }
    }
}

#[test]
fn sd_notify_ready_status_watchdog_and_stopping() {
    let mut daemon = Daemon::configure("[ingest]\nsettle_ms = 150\n");
    let notify_path = daemon.dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    daemon.launch(|command| {
        command
            .env("NOTIFY_SOCKET", &notify_path)
            .env("WATCHDOG_USEC", "400000");
    });

    let mut answered_at_ready = None;
    let before_ready = receive_until(&notify, "READY=1", |message| {
        if message.lines().any(|l| l == "READY=1") {
            answered_at_ready = Some(daemon.answers_status().is_some());
            true
        } else {
            false
        }
    });
    assert_eq!(
        answered_at_ready,
        Some(true),
        "READY=1 came before the socket answered"
    );
    assert!(
        before_ready.iter().any(|m| m.contains("STATUS=")),
        "no STATUS= with READY=1: {before_ready:?}"
    );

    // The watchdog is pinged every 200 ms (half of 400 ms) from a catalog round trip.
    let mut pings = 0;
    receive_until(&notify, "three WATCHDOG=1 pings", |message| {
        pings += message.lines().filter(|l| *l == "WATCHDOG=1").count();
        pings >= 3
    });

    // A drop changes the counts, and STATUS= follows.
    daemon.drop_file("sales", "q1.csv", &csv(1, 5));
    daemon.wait_stored("sales", "q1.csv");
    receive_until(&notify, "STATUS= with the new counts", |message| {
        message.contains("STATUS=1 groups, 1 sources")
    });

    daemon.signal(Signal::SIGTERM);
    receive_until(&notify, "STOPPING=1", |message| {
        message.lines().any(|l| l == "STOPPING=1")
    });
    let status = daemon.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", daemon.log_text());
}

#[test]
fn sigterm_during_a_burst_of_drops_loses_nothing() {
    let mut daemon = Daemon::start_with("[ingest]\nsettle_ms = 20\nworkers = 2\n");
    let group = daemon.group("burst");
    let mut expected = Vec::new();
    for i in 0..100 {
        let name = format!("f{i:03}.csv");
        let content = csv(i, 20);
        daemon.drop_file("burst", &name, &content);
        expected.push((name, sha256_hex(&content), content));
    }
    // Stop once the daemon is visibly in the middle of the burst.
    wait_for("a few files of the burst to be stored", || {
        let stored = daemon
            .ls(Some("burst"))
            .into_iter()
            .filter(|s| s.sha256.is_some())
            .count();
        (stored >= 3).then_some(())
    });
    daemon.signal(Signal::SIGTERM);
    let status = daemon.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", daemon.log_text());

    let tmp = daemon.storage_root.join("burst/.tmp");
    let leftovers = Daemon::files_under(&tmp);
    assert!(
        leftovers.is_empty(),
        "left in {}: {leftovers:?}",
        tmp.display()
    );

    // Look at the catalog through a daemon that takes no new files meanwhile.
    daemon.rewrite_config("[ingest]\nsettle_ms = 600000\n");
    daemon.spawn();
    let listed = daemon.ls(Some("burst"));
    let (mut stored, mut waiting) = (0, 0);
    for (name, sha, content) in &expected {
        let in_catalog = listed
            .iter()
            .find(|s| &s.name == name && s.sha256.is_some());
        let in_drop = group.join(name);
        match (in_catalog, in_drop.exists()) {
            (Some(source), false) => {
                assert_eq!(source.sha256.as_deref(), Some(sha.as_str()), "{name}");
                let stored_file = daemon.storage_root.join("burst").join(name.replace(
                    ".csv",
                    &format!("_{}.csv", source.version.as_deref().unwrap()),
                ));
                assert_eq!(&std::fs::read(&stored_file).unwrap(), content, "{name}");
                stored += 1;
            }
            (None, true) => {
                assert_eq!(&std::fs::read(&in_drop).unwrap(), content, "{name}");
                waiting += 1;
            }
            (catalog, dropped) => {
                panic!("{name}: in the catalog: {catalog:?}, still in the drop folder: {dropped}")
            }
        }
    }
    eprintln!("stored {stored}, still waiting {waiting}");
    assert_eq!(stored + waiting, 100);
    assert!(stored >= 3, "stored {stored}");
    assert_eq!(daemon.stop().code(), Some(0));
}

/// The standard test config with the storage root and extra TOML of our choosing.
fn config_with_storage(storage_root: &str, extra: &str) -> String {
    format!(
        "[paths]\ndrop_root = \"../drop\"\nstorage_root = \"{storage_root}\"\n\
         database = \"../state/ingestd.sqlite\"\nsocket = \"../run/ingestd.sock\"\n\
         audit_log = \"../state/audit.jsonl\"\n[embedding]\nprovider = \"hashing\"\n{extra}"
    )
}

#[test]
fn sighup_applies_live_keys_refuses_paths_and_ignores_an_invalid_file() {
    let mut daemon = Daemon::start_with("[ingest]\nsettle_ms = 100\nmax_file_size = \"1MB\"\n");
    let big = csv(1, 200);
    assert!(big.len() > 2_000, "{}", big.len());
    daemon.drop_file("g", "before.csv", &big);
    daemon.wait_stored("g", "before.csv");
    let old_storage = daemon.status().storage_root;

    std::fs::write(
        &daemon.config,
        config_with_storage(
            "../store2",
            "[ingest]\nsettle_ms = 100\nmax_file_size = \"2KB\"\n",
        ),
    )
    .unwrap();
    daemon.signal(Signal::SIGHUP);
    let reload = wait_for("the reload to show in status", || daemon.status().reload);
    assert_eq!(reload.error, None, "{reload:?}");
    assert_eq!(reload.applied, vec!["ingest.max_file_size"]);
    assert_eq!(reload.refused.len(), 1, "{reload:?}");
    assert_eq!(reload.refused[0].key, "paths.storage_root");
    let status = daemon.status();
    assert_eq!(
        status.storage_root, old_storage,
        "the old storage root stays in use"
    );

    // The same size that was accepted before is now too big; a small file still goes to the
    // old storage root.
    daemon.drop_file("g", "after.csv", &big);
    let rejected = daemon.wait_status("g", "after.csv", Status::Invalid);
    assert!(
        rejected.reason.unwrap().contains("2.0 kB"),
        "reason names the new limit"
    );
    daemon.drop_file("g", "small.csv", &csv(2, 3));
    let small = daemon.wait_stored("g", "small.csv");
    assert!(
        Path::new(&old_storage)
            .join("g")
            .join(format!("small_{}.csv", small.version.unwrap()))
            .exists()
    );
    assert!(!daemon.dir.path().join("store2/g").exists());

    // An invalid file changes nothing, and says so.
    std::fs::write(
        &daemon.config,
        config_with_storage(
            "../store",
            "[ingest]\nsettle_ms = 0\nmax_file_size = \"1MB\"\n",
        ),
    )
    .unwrap();
    daemon.signal(Signal::SIGHUP);
    let failed = wait_for("the failed reload to show in status", || {
        daemon.status().reload.filter(|r| r.error.is_some())
    });
    let error = failed.error.unwrap();
    assert!(error.contains("ingest.settle_ms"), "{error}");
    assert!(failed.applied.is_empty());
    daemon.drop_file("g", "again.csv", &csv(3, 200));
    daemon.wait_status("g", "again.csv", Status::Invalid);
    assert!(daemon.log_text().contains("config reload failed"));
    assert_eq!(daemon.stop().code(), Some(0));
}

/// Kills a daemonized process if the test ends early.
struct Detached(Option<i32>);

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Gone, or a zombie nobody has reaped yet.
fn process_ended(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn daemonize_writes_a_locked_pid_file_and_removes_it_at_stop() {
    let daemon = Daemon::configure("[ingest]\nsettle_ms = 150\n");
    let pid_file = daemon.dir.path().join("run/ingestd.pid");
    let log_file = daemon.dir.path().join("log/ingestd.log");
    let out = daemon
        .command()
        .arg("--daemonize")
        .arg("--pid-file")
        .arg(&pid_file)
        .arg("--log-file")
        .arg(&log_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: i32 = wait_for("the pid file", || {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    });
    let mut guard = Detached(Some(pid));
    let status = wait_for("the daemonized ingestd to answer", || {
        daemon.answers_status()
    });
    assert_eq!(status.pid as i32, pid, "the pid file names the daemon");

    let second = daemon
        .command()
        .arg("--daemonize")
        .arg("--pid-file")
        .arg(&pid_file)
        .arg("--log-file")
        .arg(daemon.dir.path().join("log/second.log"))
        .output()
        .unwrap();
    assert!(!second.status.success());
    let message = String::from_utf8_lossy(&second.stderr);
    assert!(
        message.contains(&pid_file.display().to_string()),
        "{message}"
    );
    assert!(message.contains(&format!("pid {pid}")), "{message}");
    assert!(
        daemon.answers_status().is_some(),
        "the first one still runs"
    );

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    wait_for("the pid file to be removed", || {
        (!pid_file.exists()).then_some(())
    });
    wait_for("the daemon to exit", || process_ended(pid).then_some(()));
    guard.0 = None;
    let log = std::fs::read_to_string(&log_file).unwrap();
    assert!(log.contains("stopped"), "{log}");
    assert!(!daemon.socket.exists(), "the socket is removed at exit");
}

/// What the child of a socket-activation test runs between fork and exec: put the listener on
/// descriptor 3 and exec `ingestd` with `LISTEN_FDS=1` and `LISTEN_PID` set to its own pid,
/// which only the child knows. std installs a command's environment after the `pre_exec`
/// hooks, so setting a variable there would be lost: the hook execs by itself, with an
/// environment built before the fork, and only writes the pid digits into it.
struct ActivatedExec {
    fd: std::os::fd::RawFd,
    program: std::ffi::CString,
    _strings: Vec<std::ffi::CString>,
    /// `LISTEN_PID=` followed by room for the digits and the terminating zero.
    listen_pid: Vec<u8>,
    argv: Pointers,
    envp: Pointers,
}

/// Pointers into strings the same `ActivatedExec` owns, null-terminated.
struct Pointers(Vec<*const std::ffi::c_char>);
// SAFETY: they point into memory owned by the `ActivatedExec` that holds them, which moves
// into the child's hook as a whole.
unsafe impl Send for Pointers {}
unsafe impl Sync for Pointers {}

const LISTEN_PID_PREFIX: &[u8] = b"LISTEN_PID=";

impl ActivatedExec {
    fn new(daemon: &Daemon, fd: std::os::fd::RawFd) -> Self {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let c = |bytes: &[u8]| CString::new(bytes).unwrap();
        let program = c(env!("CARGO_BIN_EXE_ingestd").as_bytes());
        let args = vec![
            program.clone(),
            c(b"--config"),
            c(daemon.config.as_os_str().as_bytes()),
        ];
        let mut env: Vec<CString> = std::env::vars_os()
            .filter(|(k, _)| {
                let k = k.to_string_lossy();
                !k.starts_with("INGESTD_")
                    && !k.starts_with("LISTEN_")
                    && !matches!(
                        k.as_ref(),
                        "NOTIFY_SOCKET" | "WATCHDOG_USEC" | "WATCHDOG_PID" | "RUST_LOG"
                    )
            })
            .map(|(k, v)| c(&[k.as_bytes(), b"=", v.as_bytes()].concat()))
            .collect();
        env.push(c(b"RUST_LOG=info,ingestd=debug"));
        env.push(c(b"LISTEN_FDS=1"));
        let mut listen_pid = LISTEN_PID_PREFIX.to_vec();
        listen_pid.resize(LISTEN_PID_PREFIX.len() + 24, 0);
        let mut argv: Vec<_> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<_> = env.iter().map(|e| e.as_ptr()).collect();
        envp.push(listen_pid.as_ptr().cast());
        envp.push(std::ptr::null());
        let mut strings = args;
        strings.extend(env);
        Self {
            fd,
            program,
            _strings: strings,
            listen_pid,
            argv: Pointers(argv),
            envp: Pointers(envp),
        }
    }

    /// In the child: returns only if something failed.
    fn exec(&mut self) -> std::io::Result<()> {
        use nix::libc;
        // SAFETY: plain system calls on descriptors and memory this process owns.
        unsafe {
            if self.fd == 3 {
                let flags = libc::fcntl(3, libc::F_GETFD);
                libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            } else if libc::dup2(self.fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut pid = libc::getpid() as u32;
            let mut digits = [0u8; 10];
            let mut n = 0;
            loop {
                digits[n] = b'0' + (pid % 10) as u8;
                n += 1;
                pid /= 10;
                if pid == 0 {
                    break;
                }
            }
            // In place: the buffer was sized before the fork and `envp` points at it.
            for i in 0..n {
                self.listen_pid[LISTEN_PID_PREFIX.len() + i] = digits[n - 1 - i];
            }
            self.listen_pid[LISTEN_PID_PREFIX.len() + n] = 0;
            libc::execve(
                self.program.as_ptr(),
                self.argv.0.as_ptr(),
                self.envp.0.as_ptr(),
            );
        }
        Err(std::io::Error::last_os_error())
    }
}

#[test]
fn socket_activation_serves_the_passed_listener() {
    let mut daemon = Daemon::configure("[ingest]\nsettle_ms = 150\n");
    std::fs::create_dir_all(daemon.socket.parent().unwrap()).unwrap();
    let listener = UnixListener::bind(&daemon.socket).unwrap();
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&daemon.socket).unwrap());
    let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
    let mut exec = ActivatedExec::new(&daemon, fd);
    daemon.launch(|command| {
        // SAFETY: the hook only calls async-signal-safe functions on memory prepared before
        // the fork (see `ActivatedExec`).
        unsafe {
            command.pre_exec(move || exec.exec());
        }
    });
    let status = daemon.wait_ready();
    assert_eq!(status.pid, daemon.pid());
    assert!(
        daemon
            .log_text()
            .contains("serving the socket passed by systemd")
    );
    daemon.drop_file("g", "a.csv", &csv(1, 4));
    daemon.wait_stored("g", "a.csv");
    let same = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&daemon.socket).unwrap());
    assert_eq!(same, inode, "the passed socket was not replaced");

    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait_exit().code(), Some(0), "{}", daemon.log_text());
    assert!(
        daemon.socket.exists(),
        "a passed socket is systemd's to remove"
    );
    drop(listener);
}

#[test]
fn check_config_prints_the_effective_config_and_names_a_bad_key() {
    let daemon = Daemon::configure("[ingest]\nsettle_ms = 150\n");
    let run = |args: &[&str]| {
        Process::new(env!("CARGO_BIN_EXE_ingestd"))
            .args(args)
            .env_remove("INGESTD_CONFIG")
            .output()
            .unwrap()
    };
    let config = daemon.config.to_str().unwrap();
    let out = run(&["check-config", "--config", config]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "settle_ms = 150",
        "max_file_size = \"50MB\"",
        "shutdown_timeout_secs = 20",
        "api_key_env = \"OPENAI_API_KEY\"",
        &format!("drop_root = \"{}\"", daemon.drop_root.display()),
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    let table: toml::Table = text.parse().expect("check-config prints TOML");
    assert!(table["server"].get("log_level").is_some());

    for (content, key) in [
        ("[ingest]\nsettle_ms = 0\n", "ingest.settle_ms"),
        (
            "[server]\nshutdown_timeout_secs = 0\n",
            "server.shutdown_timeout_secs",
        ),
        ("[ingest]\nsetle_ms = 5\n", "setle_ms"),
    ] {
        std::fs::write(&daemon.config, content).unwrap();
        let out = run(&["check-config", "-c", config]);
        assert_eq!(out.status.code(), Some(2), "{content}");
        let message = String::from_utf8_lossy(&out.stderr);
        assert!(message.contains(key), "{content}: {message}");
    }

    let version = run(&["--version"]);
    assert_eq!(
        String::from_utf8(version.stdout).unwrap().trim(),
        format!("ingestd {}", env!("CARGO_PKG_VERSION"))
    );
}
