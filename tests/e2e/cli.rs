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
    daemon.wait_status("g", "good.csv", Status::Embedded);
    daemon.wait_status("g", "bad.txt", Status::Invalid);
    let out = daemon.ctl(&["ls", "-g", "g"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    for needle in [
        "good.csv",
        "bad.txt",
        "embedded",
        "invalid",
        ".txt are not accepted",
    ] {
        assert!(stdout.contains(needle), "{needle} in:\n{stdout}");
    }
    let out = daemon.ctl(&["show", "-g", "g", "bad.txt"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains(".txt are not accepted"));
    // A closed pipe is not an error: stdout is a pipe whose reading end is closed before
    // ingestctl starts, so its first write fails (EPIPE) however little it prints.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let piped = std::process::Command::new(ingestctl_path())
        .arg("--socket")
        .arg(&daemon.socket)
        .args(["ls", "-g", "g"])
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(
        piped.status.success(),
        "ingestctl ls into a closed pipe: {}\n{}",
        piped.status,
        text(&piped.stderr)
    );
    assert_eq!(
        text(&piped.stderr),
        "",
        "nothing to say about a closed pipe"
    );
}

#[test]
fn add_with_wait_reports_each_outcome_and_fails_on_a_rejection() {
    let daemon = Daemon::start();
    let local = daemon.dir.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(local.join("good.csv"), csv(1, 3)).unwrap();
    std::fs::write(local.join("bad.txt"), b"not a table").unwrap();
    let good = local.join("good.csv").display().to_string();
    let bad = local.join("bad.txt").display().to_string();

    let out = daemon.ctl(&["add", "-g", "sales", "--wait", &good]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("good.csv") && stdout.contains("v1"),
        "{stdout}"
    );
    assert!(
        daemon.ls(Some("sales"))[0].status.is_stored(),
        "the daemon ingested it like any drop"
    );
    // The local file is untouched; nothing partial is left in the drop folder. (On a
    // PostgreSQL catalog the accept's event can arrive a moment before the original is removed:
    // the removal follows the commit the event announces.)
    assert!(local.join("good.csv").exists());
    crate::helper::wait_for("the drop folder emptied", || {
        crate::helper::Daemon::files_under(&daemon.drop_root.join("sales"))
            .is_empty()
            .then_some(())
    });

    let out = daemon.ctl(&["add", "-g", "sales", "--wait", &good, &bad]);
    assert_eq!(out.status.code(), Some(1), "a rejection fails the command");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("unchanged"), "{stdout}");
    assert!(stdout.contains(".txt are not accepted"), "{stdout}");

    let json = daemon.ctl_json(&["add", "-g", "sales", "--wait", &good]);
    assert_eq!(json[0]["outcome"], "unchanged");

    // Missing files are reported before anything is copied.
    let missing = daemon.dir.path().join("missing.csv").display().to_string();
    std::fs::write(local.join("fresh.csv"), csv(9, 1)).unwrap();
    let fresh = local.join("fresh.csv").display().to_string();
    let out = daemon.ctl(&["add", "-g", "sales", &fresh, &missing]);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("missing.csv"));
    assert!(!daemon.drop_root.join("sales/fresh.csv").exists());
    assert!(
        daemon
            .ls(Some("sales"))
            .iter()
            .all(|s| s.name != "fresh.csv")
    );
}

#[test]
fn rm_asks_on_a_tty_and_needs_yes_elsewhere() {
    let daemon = Daemon::start();
    daemon.drop_file("g", "a.csv", &csv(1, 1));
    daemon.drop_file("g", "b.csv", &csv(2, 1));
    daemon.drop_file("g", "c.csv", &csv(3, 1));
    // Embedded, not only stored: a delete is refused while a source's job embeds.
    for name in ["a.csv", "b.csv", "c.csv"] {
        daemon.wait_embedded("g", name, "v1");
    }
    // Not a TTY and no --yes: refused, nothing deleted.
    let out = daemon.ctl(&["rm", "-g", "g", "a.csv"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--yes"));
    assert_eq!(daemon.ls(Some("g")).len(), 3);
    // --yes deletes.
    let out = daemon.ctl(&["rm", "-g", "g", "--yes", "a.csv"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(daemon.ls(Some("g")).len(), 2);

    // On a TTY: a "n" keeps the source, a "y" deletes it.
    let on_tty = |answer: &str, target: &str| {
        let command = format!(
            "printf '{answer}\\n' | script -qec '{} --socket {} rm -g g {target}' /dev/null",
            ingestctl_path().display(),
            daemon.socket.display()
        );
        std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .output()
            .unwrap()
    };
    let out = on_tty("n", "b.csv");
    assert!(text(&out.stdout).contains("[y/N]"), "{}", text(&out.stdout));
    assert_eq!(daemon.ls(Some("g")).len(), 2);
    let out = on_tty("y", "b.csv");
    assert!(text(&out.stdout).contains("[y/N]"), "{}", text(&out.stdout));
    assert_eq!(daemon.ls(Some("g")).len(), 1);
    assert_eq!(daemon.ls(Some("g"))[0].name, "c.csv");
}

#[test]
fn use_persists_across_invocations_and_restarts() {
    let mut daemon = Daemon::start();
    daemon.drop_file("alpha", "a.csv", &csv(1, 1));
    daemon.drop_file("beta", "b.csv", &csv(2, 1));
    daemon.wait_stored("alpha", "a.csv");
    daemon.wait_stored("beta", "b.csv");
    let out = daemon.ctl(&["use", "beta"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = daemon.ctl_json(&["ls"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["name"], "b.csv");
    let out = daemon.ctl(&["use", "gamma"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("alpha"),
        "lists the groups there are"
    );
    assert!(daemon.stop().success());
    daemon.spawn();
    let current = daemon.ctl_json(&["use"]);
    assert_eq!(current["group"], "beta");
    let listed = daemon.ctl_json(&["ls", "--all"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
}
