//! `ingestctl ui` in a real pseudo-terminal (a private tmux server per test) against a real
//! daemon: what the screen shows is read back as text, keys are typed into it, and what the
//! keys did is checked through `ingestctl --json` and the protocol.

use crate::helper::openai::FakeOpenAi;
use crate::helper::{Daemon, TIMEOUT, csv, ingestctl_path};
use ingestd::protocol::JobState;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// One `ingestctl ui` in its own tmux server, 100×30.
struct Tui {
    _dir: tempfile::TempDir,
    tmux: PathBuf,
    /// Where the wrapper writes the exit code and the terminal modes after the UI ends.
    after: PathBuf,
}

impl Tui {
    fn start(socket: &Path, args: &[&str]) -> Tui {
        Self::start_as("", socket, args)
    }

    /// Started through `prefix`, e.g. a command that switches users.
    fn start_as(prefix: &str, socket: &Path, args: &[&str]) -> Tui {
        let dir = tempfile::tempdir().unwrap();
        let tmux = dir.path().join("tmux.sock");
        let after = dir.path().join("after.txt");
        // After the UI: its exit code, whether the terminal is back in cooked mode (icanon,
        // echo), then stay open so the screen can still be read.
        let script = format!(
            "NO_COLOR=1 {prefix} '{ctl}' --socket '{socket}' ui {args}; code=$?; \
             {{ echo \"exit=$code\"; stty -a; }} > '{after}'; echo UI-ENDED; exec sleep 600",
            ctl = ingestctl_path().display(),
            socket = socket.display(),
            args = args.join(" "),
            after = after.display(),
        );
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&tmux)
            .args([
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "100",
                "-y",
                "30",
                "-s",
                "ui",
            ])
            .arg("sh")
            .arg("-c")
            .arg(script)
            .env_remove("TMUX")
            .env_remove("INGESTD_SOCKET")
            .env_remove("INGESTD_CONFIG")
            .env("TERM", "xterm-256color")
            .output()
            .expect("tmux is installed (apt-get install tmux)");
        assert!(out.status.success(), "tmux: {out:?}");
        Tui {
            _dir: dir,
            tmux,
            after,
        }
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.tmux)
            .args(args)
            .output()
            .unwrap()
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", "ui"]).stdout).into_owned()
    }

    /// Type keys (tmux key names: "j", "Enter", "Left", "Space").
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "ui"];
        args.extend_from_slice(keys);
        assert!(self.tmux(&args).status.success());
    }

    /// Wait until the screen satisfies `check`; fail showing the last screen.
    fn wait(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let screen = self.screen();
            if check(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for the screen to show {what}:\n{screen}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    fn shows(&self, needle: &str) -> String {
        self.wait(needle, |s| s.contains(needle))
    }

    /// The line of the screen holding `needle`.
    fn line_with(&self, needle: &str) -> Option<String> {
        self.screen()
            .lines()
            .find(|l| l.contains(needle))
            .map(str::to_string)
    }

    /// Wait for the UI to end; its exit code and whether the terminal was restored.
    fn ended(&self) -> String {
        self.shows("UI-ENDED");
        let after = std::fs::read_to_string(&self.after).unwrap();
        let alternate = self.tmux(&["display-message", "-p", "-t", "ui", "#{alternate_on}"]);
        assert_eq!(
            String::from_utf8_lossy(&alternate.stdout).trim(),
            "0",
            "still on the alternate screen"
        );
        let modes: Vec<&str> = after.split_whitespace().collect();
        assert!(
            modes.contains(&"icanon") && modes.contains(&"echo"),
            "the terminal was left in raw mode: {after}"
        );
        after
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

#[test]
fn ui_switches_groups_and_the_switch_persists() {
    let daemon = Daemon::start();
    daemon.drop_file("alpha", "a.csv", &csv(1, 2));
    daemon.drop_file("beta", "b.csv", &csv(2, 3));
    daemon.wait_stored("alpha", "a.csv");
    daemon.wait_stored("beta", "b.csv");
    let tui = Tui::start(&daemon.socket, &[]);
    tui.shows("No current group");
    // Groups pane, second group, Enter: as `ingestctl use beta`.
    tui.keys(&["Left", "j", "Enter"]);
    tui.shows("b.csv");
    let groups = daemon.ctl_json(&["groups"]);
    let current: Vec<&str> = groups
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["current"] == true)
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(current, ["beta"]);
    tui.keys(&["q"]);
    assert!(tui.ended().contains("exit=0"));

    // The next `ui` starts in the group chosen last time.
    let again = Tui::start(&daemon.socket, &[]);
    again.shows("group beta (current)");
    again.shows("b.csv");
    again.keys(&["q"]);
    again.ended();
}

#[test]
fn ui_shows_a_dropped_file_reach_embedded_without_a_key() {
    let daemon = Daemon::start();
    daemon.group("g");
    let out = daemon.ctl(&["use", "g"]);
    assert!(out.status.success(), "{out:?}");
    let tui = Tui::start(&daemon.socket, &[]);
    tui.shows("No files in group 'g' yet");
    daemon.drop_file("g", "fresh.csv", &csv(3, 5));
    tui.wait("fresh.csv embedded", |s| {
        s.lines()
            .any(|l| l.contains("fresh.csv") && l.contains("embedded"))
    });
    tui.shows("embeddings: 5 rows of v1");
    tui.keys(&["q"]);
    tui.ended();
}

#[test]
fn ui_reembeds_with_moving_progress_and_deletes_through_the_guard() {
    let server = FakeOpenAi::start();
    let daemon = Daemon::start_embedding(&server.embedding_toml(""), "");
    daemon.drop_file("g", "big.csv", &csv(7, 600));
    daemon.wait_embedded("g", "big.csv", "v1");
    // Slow from now on, so the re-embed is seen running; and new text for every row, since a
    // re-embed of unchanged text copies the vectors it has instead of asking the server.
    server.behaviour.delay_ms.store(150, Ordering::SeqCst);
    let out = daemon.ctl(&["prefs", "set", "-g", "g", "--columns", "name"]);
    assert!(out.status.success(), "{out:?}");
    let tui = Tui::start(&daemon.socket, &["-g", "g"]);
    tui.shows("big.csv");
    tui.keys(&["r"]);
    tui.shows("queued big.csv v1 as job");
    // The queue pane: the job processing, its bar filling as events come.
    tui.keys(&["J"]);
    let first = tui.wait("a running job with progress", |s| {
        s.lines()
            .any(|l| l.contains("processing") && l.contains("[#"))
    });
    // The job's row (the pane's title says "processing" too, without a bar).
    let bar = |screen: &str| -> usize {
        screen
            .lines()
            .find(|l| l.contains("processing") && l.contains('['))
            .map_or(0, |l| l.matches('#').count())
    };
    let at_first = bar(&first);
    tui.wait("the progress bar to move", |s| bar(s) > at_first);

    // Delete while it embeds: the same guard as the CLI, with cancel offered.
    tui.keys(&["J", "d"]);
    tui.shows("cannot be undone");
    tui.keys(&["y"]);
    tui.shows("is being embedded by job");
    tui.shows("cancel job");
    assert_eq!(daemon.ls(Some("g")).len(), 1, "refused, yet deleted");
    // c: cancel the job, then the delete goes through.
    tui.keys(&["c"]);
    crate::helper::wait_for("big.csv to be deleted", || {
        daemon.ls(Some("g")).is_empty().then_some(())
    });
    assert!(
        daemon
            .jobs()
            .iter()
            .all(|j| j.state != JobState::Processing)
    );
    tui.shows("No files in group 'g' yet");
    tui.keys(&["q"]);
    tui.ended();
}

#[test]
fn ui_waits_for_a_daemon_that_is_not_running_and_sigterm_restores_the_terminal() {
    let mut daemon = Daemon::configure("[ingest]\nsettle_ms = 150\n");
    let tui = Tui::start(&daemon.socket, &[]);
    tui.shows("ingestd is not running");
    daemon.spawn();
    daemon.drop_file("later", "x.csv", &csv(4, 1));
    // Reconnected by itself: the groups appear.
    tui.shows("later (1)");
    let pid = tui
        .tmux(&["list-panes", "-t", "ui", "-F", "#{pane_pid}"])
        .stdout;
    let shell: i32 = String::from_utf8_lossy(&pid).trim().parse().unwrap();
    // The UI is the shell's child; SIGTERM it as a service manager would.
    let children = Command::new("pgrep")
        .args(["-P", &shell.to_string()])
        .output()
        .unwrap();
    let ui: i32 = String::from_utf8_lossy(&children.stdout)
        .lines()
        .next()
        .expect("the ui process")
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(ui),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    tui.ended();
    assert!(tui.line_with("UI-ENDED").is_some());
}

#[test]
fn ui_disables_state_changing_keys_for_a_non_admin_with_the_reason() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root() {
        crate::helper::skip("not root: cannot run the ui as another user");
        return;
    }
    let daemon = Daemon::start_with(
        "[ingest]\nsettle_ms = 150\n[server]\nsocket_mode = \"0666\"\nadmins = [\"root\"]\n",
    );
    daemon.drop_file("g", "a.csv", &csv(1, 1));
    daemon.wait_stored("g", "a.csv");
    for dir in [daemon.dir.path(), daemon.socket.parent().unwrap()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let tui = Tui::start_as(
        "setpriv --reuid=65534 --regid=65534 --clear-groups --",
        &daemon.socket,
        &["-g", "g"],
    );
    tui.shows("a.csv");
    tui.shows("read-only");
    tui.keys(&["d"]);
    tui.shows("read-only: permission denied: nobody is not in server.admins");
    assert_eq!(daemon.ls(Some("g")).len(), 1);
    // Nothing was even asked: no refusal in the audit trail.
    assert!(daemon.audit().iter().all(|r| r["outcome"] != "refused"));
    tui.keys(&["q"]);
    tui.ended();
}
