//! The real `ingestctl` binary: exit codes, human output, guidance.

use crate::helper::{Daemon, csv, ingestctl_path};
use ingestd::protocol::Status;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn exit_codes_say_what_happened() {
    let daemon = Daemon::start();
    daemon.group("g");
    let ok = daemon.ctl(&["status"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains(&daemon.drop_root.display().to_string()));

    let missing = daemon.ctl(&["show", "nope.csv"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("nope.csv"));

    let usage = daemon.ctl(&["frobnicate"]);
    assert_eq!(usage.status.code(), Some(2));

    let unreachable = std::process::Command::new(ingestctl_path())
        .args(["--socket", "/nonexistent/ingestd.sock", "status"])
        .env_remove("INGESTD_SOCKET")
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(3));
    assert!(text(&unreachable.stderr).contains("/nonexistent/ingestd.sock"));
}

#[test]
fn ls_of_an_empty_group_tells_how_to_add_files() {
    let daemon = Daemon::start();
    daemon.group("empty");
    // The daemon knows the group once it has seen the folder.
    crate::helper::wait_for("the group to be known", || {
        daemon
            .ctl_json(&["groups"])
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "empty")
            .then_some(())
    });
    let out = daemon.ctl(&["ls", "-g", "empty"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&daemon.drop_root.join("empty").display().to_string()),
        "names the folder to drop into: {stdout}"
    );
    assert_eq!(
        daemon.ctl_json(&["ls", "-g", "empty"]),
        serde_json::json!([])
    );
}

#[test]
fn human_ls_and_show_list_sources_and_reasons() {
    let daemon = Daemon::start();
    daemon.drop_file("g", "good.csv", &csv(1, 4));
    daemon.drop_file("g", "bad.txt", b"nope\n");
    daemon.wait_status("g", "good.csv", Status::Ready);
    daemon.wait_status("g", "bad.txt", Status::Invalid);
    let out = daemon.ctl(&["ls", "-g", "g"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    for needle in [
        "good.csv",
        "bad.txt",
        "ready",
        "invalid",
        ".txt are not accepted",
    ] {
        assert!(stdout.contains(needle), "{needle} in:\n{stdout}");
    }
    let out = daemon.ctl(&["show", "-g", "g", "bad.txt"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains(".txt are not accepted"));
    // A closed pipe is not an error.
    let piped = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} --socket {} ls | head -c 1 > /dev/null; exit ${{PIPESTATUS:-0}}",
            ingestctl_path().display(),
            daemon.socket.display()
        ))
        .status()
        .unwrap();
    assert!(piped.success());
}
