//! Supervision: a daemon task that panics or ends early stops the daemon with a non-zero exit,
//! the task's name and the reason in its log and on systemd's `STATUS=`, after the same
//! ordered stop a SIGTERM gets; the next start serves again. The debug-only hook
//! (`INGEST_TEST_TASK_DIR`) makes the named task fail on the test's order. Also: a model folder
//! whose weights are not the pinned ones stops the daemon at start.

use crate::helper::{Daemon, csv};
use crate::service::receive_until;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// A daemon with the task hook and a notify socket, started and ready; returns the hook's
/// folder and the notify socket.
fn supervised(daemon: &mut Daemon) -> (std::path::PathBuf, UnixDatagram) {
    let hooks = daemon.dir.path().join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    let notify_path = daemon.dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    daemon.launch(|command| {
        command
            .env("INGEST_TEST_TASK_DIR", &hooks)
            .env("NOTIFY_SOCKET", &notify_path);
    });
    daemon.wait_ready();
    (hooks, notify)
}

#[test]
fn a_panicked_server_task_stops_the_daemon_non_zero_with_the_reason() {
    let mut daemon = Daemon::configure("[ingest]\nsettle_ms = 150\n");
    let (hooks, notify) = supervised(&mut daemon);
    daemon.drop_file("sales", "q1.csv", &csv(1, 5));
    daemon.wait_stored("sales", "q1.csv");

    std::fs::write(hooks.join("server.panic"), b"").unwrap();
    let seen = receive_until(&notify, "STOPPING=1 with the reason", |message| {
        message.lines().any(|l| l == "STOPPING=1")
            && message.contains("STATUS=failed: task server panicked")
    });
    let status = daemon.wait_exit();
    let log = daemon.log_text();
    assert_eq!(status.code(), Some(1), "{seen:?}\n{log}");
    // The log names the task and why, and the binary's last word says it again on stderr.
    assert!(
        log.contains("task server panicked: server was told to panic"),
        "{log}"
    );
    assert!(
        log.contains("ingestd: task server panicked"),
        "the exit reason on stderr: {log}"
    );
    // The ordered stop ran: the catalog was closed and the socket removed.
    assert!(log.contains("stopped"), "{log}");
    assert!(!daemon.socket.exists(), "the socket file is removed");

    // What systemd's Restart=on-failure does next: a plain start serves what was stored.
    daemon.spawn();
    assert!(daemon.ls(Some("sales"))[0].status.is_stored());
}

#[test]
fn a_task_that_ends_early_is_a_failure_too() {
    let mut daemon = Daemon::configure("[ingest]\nsettle_ms = 150\n");
    let (hooks, _notify) = supervised(&mut daemon);
    std::fs::write(hooks.join("queue.end"), b"").unwrap();
    let status = daemon.wait_exit();
    let log = daemon.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("ingestd: task queue ended while the daemon was running"),
        "{log}"
    );
}

#[test]
fn without_an_order_the_hook_changes_nothing_and_sigterm_exits_zero() {
    let mut daemon = Daemon::configure("[ingest]\nsettle_ms = 150\n");
    let (hooks, notify) = supervised(&mut daemon);
    // An order for a task that does not exist is ignored.
    std::fs::write(hooks.join("nosuchtask.panic"), b"").unwrap();
    daemon.drop_file("sales", "q1.csv", &csv(2, 3));
    daemon.wait_stored("sales", "q1.csv");
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let seen = receive_until(&notify, "STOPPING=1", |message| {
        message.lines().any(|l| l == "STOPPING=1")
    });
    assert!(
        !seen.iter().any(|m| m.contains("failed")),
        "a signal is no failure: {seen:?}"
    );
    let status = daemon.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", daemon.log_text());
}

#[test]
fn a_model_folder_with_other_weights_stops_the_daemon_at_start() {
    let daemon = Daemon::configure_embedding(
        "provider = \"minilm\"\nmodel_dir = \"../model\"\nauto_fetch = false\n",
        "",
    );
    // The three files are there, so only the hash can tell: a folder from the environment or
    // the config is checked like one `ingestd model fetch` filled.
    let model = daemon.dir.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("config.json"), b"{}").unwrap();
    std::fs::write(model.join("tokenizer.json"), b"{}").unwrap();
    std::fs::write(model.join("model.safetensors"), b"tampered weights").unwrap();
    let out = daemon.command().output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(ingestd::embed::fetch::WEIGHTS_SHA256)
            && said.contains(&crate::helper::sha256_hex(b"tampered weights"))
            && said.contains("model.safetensors")
            && said.contains("ingestd model fetch --config"),
        "{said}"
    );
    assert!(!daemon.socket.exists(), "it never served");
}
