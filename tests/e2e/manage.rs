//! Managing sources and groups through the protocol: current group, preferences, deleting,
//! the audit trail, live events, permissions and many clients at once.

use crate::helper::{Daemon, csv, wait_for};
use ingestd::client::Client;
use ingestd::protocol::{
    AuditEntry, ErrorCode, EventKind, GroupInfo, PrefsInfo, PrefsSaved, Response, RmOutcome,
    SourceSummary, Status, UseInfo, cmd,
};

fn me() -> (u32, String) {
    let uid = nix::unistd::geteuid().as_raw();
    (uid, ingestd::identity::user_name(uid).expect("a user name"))
}

fn error_of(result: Result<serde_json::Value, ingestd::client::ClientError>) -> ErrorCode {
    match result {
        Err(e) => e.daemon_error().expect("a daemon error").code,
        Ok(v) => panic!("expected an error, got {v}"),
    }
}

fn use_group(client: &mut Client, group: Option<&str>, clear: bool) -> UseInfo {
    client
        .call(&cmd::Use {
            group: group.map(str::to_string),
            clear,
        })
        .expect("use")
}

#[test]
fn the_current_group_is_per_user_and_survives_a_restart() {
    let mut daemon = Daemon::start();
    daemon.drop_file("a", "one.csv", &csv(1, 1));
    daemon.drop_file("b", "two.csv", &csv(2, 1));
    daemon.wait_stored("a", "one.csv");
    daemon.wait_stored("b", "two.csv");
    let mut client = daemon.client();
    assert_eq!(use_group(&mut client, None, false).group, None);
    let set = use_group(&mut client, Some("b"), false);
    assert_eq!(set.group.as_deref(), Some("b"));
    assert_eq!(set.uid, me().0);

    // Every command now defaults to b.
    let listed: Vec<SourceSummary> = client
        .call(&cmd::Ls {
            group: None,
            all: false,
        })
        .unwrap();
    assert_eq!(
        listed.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["two.csv"]
    );
    let everything: Vec<SourceSummary> = client
        .call(&cmd::Ls {
            group: None,
            all: true,
        })
        .unwrap();
    assert_eq!(everything.len(), 2);
    let groups: Vec<GroupInfo> = client.call(&cmd::Groups {}).unwrap();
    let current: Vec<_> = groups
        .iter()
        .filter(|g| g.current)
        .map(|g| &g.name)
        .collect();
    assert_eq!(current, ["b"]);

    // A group that does not exist is refused, naming the ones there are.
    let err = client
        .request(&cmd::Use {
            group: Some("nope".into()),
            clear: false,
        })
        .unwrap_err();
    let body = err.daemon_error().unwrap();
    assert_eq!(body.code, ErrorCode::NotFound);
    assert!(body.message.contains("a, b"), "{}", body.message);

    assert!(daemon.stop().success());
    daemon.spawn();
    let mut client = daemon.client();
    assert_eq!(
        use_group(&mut client, None, false).group.as_deref(),
        Some("b")
    );
    assert_eq!(use_group(&mut client, None, true).group, None);
}

#[test]
fn preferences_round_trip_per_group_and_warn_about_unknown_names() {
    let daemon = Daemon::start();
    daemon.drop_file(
        "sales",
        "q1.csv",
        b"region,amount,date\nnorth,1,2026-01-01\n",
    );
    daemon.drop_file("hr", "staff.csv", b"name,team\nada,core\n");
    daemon.wait_stored("sales", "q1.csv");
    daemon.wait_stored("hr", "staff.csv");
    let mut client = daemon.client();

    let saved: PrefsSaved = client
        .call(&cmd::PrefsSet {
            group: Some("sales".into()),
            columns: Some(vec!["amount".into(), "regoin".into()]),
            context: Some(vec!["region".into()]),
            template: Some("{region} sold {amount}".into()),
            sheet: None,
            clear: false,
            reembed: false,
        })
        .unwrap();
    assert_eq!(saved.prefs.columns, ["amount", "regoin"]);
    assert_eq!(saved.warnings.len(), 1, "{:?}", saved.warnings);
    assert!(saved.warnings[0].contains("regoin"));
    assert_eq!(saved.prefs.known_columns, ["region", "amount", "date"]);

    // Another group keeps its own (empty) preferences; switching back restores them exactly.
    use_group(&mut client, Some("hr"), false);
    let hr: PrefsInfo = client.call(&cmd::Prefs { group: None }).unwrap();
    assert!(hr.columns.is_empty() && hr.template.is_none());
    use_group(&mut client, Some("sales"), false);
    let sales: PrefsInfo = client.call(&cmd::Prefs { group: None }).unwrap();
    assert_eq!(sales.columns, saved.prefs.columns);
    assert_eq!(sales.context, ["region"]);
    assert_eq!(sales.template.as_deref(), Some("{region} sold {amount}"));
    assert_eq!(sales.updated_by, Some(me().1));

    // Changing one field keeps the others; an empty template removes it.
    let changed: PrefsSaved = client
        .call(&cmd::PrefsSet {
            group: None,
            columns: None,
            context: None,
            template: Some(String::new()),
            sheet: Some("Q1".into()),
            clear: false,
            reembed: false,
        })
        .unwrap();
    assert_eq!(changed.prefs.columns, saved.prefs.columns);
    assert_eq!(changed.prefs.template, None);
    assert_eq!(changed.prefs.sheet.as_deref(), Some("Q1"));

    // Malformed templates and empty changes are refused with a reason.
    for (template, clear) in [(Some("{region".to_string()), false), (None, false)] {
        let code = error_of(client.request(&cmd::PrefsSet {
            group: None,
            columns: None,
            context: None,
            template,
            sheet: None,
            clear,
            reembed: false,
        }));
        assert_eq!(code, ErrorCode::BadArgs);
    }
    let audit: Vec<AuditEntry> = client
        .call(&cmd::Audit {
            group: Some("sales".into()),
            all: false,
            since: None,
            action: Some("prefs".into()),
            limit: None,
            before: None,
        })
        .unwrap();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0].actor.uid, Some(me().0));
    assert!(audit[0].detail.as_deref().unwrap().contains("sheet"));
}

#[test]
fn rm_deletes_a_source_or_one_version_and_reports_each_target() {
    let daemon = Daemon::start();
    daemon.drop_file("g", "a.csv", &csv(1, 2));
    daemon.wait_stored("g", "a.csv");
    daemon.drop_file("g", "a.csv", &csv(2, 2));
    wait_for("a.csv v2", || {
        daemon
            .ls(Some("g"))
            .into_iter()
            .find(|s| s.version.as_deref() == Some("v2") && s.status.is_stored())
    });
    daemon.drop_file("g", "b.csv", &csv(3, 2));
    daemon.drop_file("g", "b.txt", b"not a table");
    // Settled: a source being embedded is guarded (see jobs.rs), which is not what this tests.
    daemon.wait_embedded("g", "a.csv", "v2");
    daemon.wait_embedded("g", "b.csv", "v1");
    daemon.wait_status("g", "b.txt", Status::Invalid);
    let store = daemon.storage_root.join("g");
    assert!(store.join("a_v1.csv").exists() && store.join("a_v2.csv").exists());

    let mut client = daemon.client();
    let outcomes: Vec<RmOutcome> = client
        .call(&cmd::Rm {
            targets: vec![
                "a.csv@v2".into(),
                "nope.csv".into(),
                "b.csv".into(),
                "b.txt".into(),
                "a.csv@v9".into(),
            ],
            group: Some("g".into()),
            force: false,
        })
        .unwrap();
    let ok: Vec<bool> = outcomes.iter().map(|o| o.ok).collect();
    assert_eq!(ok, [true, false, true, true, false], "{outcomes:?}");
    assert_eq!(outcomes[0].removed, ["v2"]);
    assert!(outcomes[1].message.contains("nope.csv"));
    assert!(
        outcomes[4].message.contains("v1"),
        "{}",
        outcomes[4].message
    );

    // v1 is the current version again; b.csv is gone with its file.
    let left = daemon.ls(Some("g"));
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].version.as_deref(), Some("v1"));
    assert!(store.join("a_v1.csv").exists());
    assert!(!store.join("a_v2.csv").exists());
    assert!(!store.join("b_v1.csv").exists());
    // A rejected original in .rejected/ is the user's file and stays.
    assert!(daemon.drop_root.join("g/.rejected/b.txt").exists());

    let deletes: Vec<_> = daemon
        .audit()
        .into_iter()
        .filter(|r| r["action"] == "delete")
        .collect();
    assert_eq!(deletes.len(), 3);
    assert_eq!(deletes[0]["actor"]["via"], "socket");
    assert_eq!(deletes[0]["actor"]["user"], me().1);
    assert_eq!(deletes[0]["version"], "v2");

    // A deleted source dropped again starts over at v1.
    daemon.drop_file("g", "b.csv", &csv(4, 1));
    let again = daemon.wait_stored("g", "b.csv");
    assert_eq!(again.version.as_deref(), Some("v1"));
    // A deleted version's number is not given to other content.
    daemon.drop_file("g", "a.csv", &csv(5, 2));
    wait_for("a.csv v3", || {
        daemon
            .ls(Some("g"))
            .into_iter()
            .find(|s| s.version.as_deref() == Some("v3") && s.status.is_stored())
    });
}

#[test]
fn the_audit_trail_names_real_users_and_filters() {
    let daemon = Daemon::start();
    daemon.drop_file("g", "a.csv", &csv(1, 1));
    daemon.drop_file("g", "bad.txt", b"x");
    daemon.drop_file("h", "c.csv", &csv(2, 1));
    daemon.wait_embedded("g", "a.csv", "v1");
    daemon.wait_status("g", "bad.txt", Status::Invalid);
    daemon.wait_embedded("h", "c.csv", "v1");
    let mut client = daemon.client();
    let audit = |client: &mut Client, group: Option<&str>, action: Option<&str>, limit| {
        client
            .call(&cmd::Audit {
                group: group.map(str::to_string),
                all: group.is_none(),
                since: None,
                action: action.map(str::to_string),
                limit,
                before: None,
            })
            .unwrap()
    };
    let all = audit(&mut client, None, None, None);
    // Two adds and a rejection by the user who dropped them, two swaps by the daemon.
    assert_eq!(all.len(), 5, "{all:?}");
    assert!(
        all.windows(2).all(|w| w[0].time >= w[1].time),
        "newest first"
    );
    let (uid, user) = me();
    for entry in &all {
        if entry.action == "swap" {
            assert_eq!(entry.actor.via, ingestd::identity::Via::Daemon, "{entry:?}");
            continue;
        }
        assert_eq!(entry.actor.uid, Some(uid));
        assert_eq!(entry.actor.user.as_deref(), Some(user.as_str()));
    }
    assert_eq!(audit(&mut client, Some("g"), None, None).len(), 3);
    assert_eq!(audit(&mut client, None, Some("swap"), None).len(), 2);
    assert_eq!(audit(&mut client, None, None, Some(1)).len(), 1);
    let future = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600);
    let none: Vec<AuditEntry> = client
        .call(&cmd::Audit {
            group: None,
            all: true,
            since: Some(future.to_string()),
            action: None,
            limit: None,
            before: None,
        })
        .unwrap();
    assert!(none.is_empty());
    let code = error_of(client.request(&cmd::Audit {
        group: None,
        all: true,
        since: Some("yesterday-ish".into()),
        action: None,
        limit: None,
        before: None,
    }));
    assert_eq!(code, ErrorCode::BadArgs);
}

#[test]
fn an_events_follower_sees_a_drop_from_seen_to_accepted() {
    let daemon = Daemon::start();
    daemon.group("g");
    let mut follower = daemon.client();
    follower
        .write_raw(b"{\"v\":1,\"cmd\":\"events\",\"group\":\"g\"}\n")
        .unwrap();
    let first = follower.read_response().unwrap();
    assert!(first.ok, "{first:?}");
    daemon.drop_file("g", "e.csv", &csv(1, 3));
    daemon.drop_file("other", "x.csv", &csv(2, 1));
    let mut kinds = Vec::new();
    while !kinds.contains(&EventKind::Accepted) {
        let line: Response = follower.read_response().expect("an event line");
        let event: ingestd::protocol::Event = serde_json::from_value(line.data.unwrap()).unwrap();
        assert_eq!(event.group.as_deref(), Some("g"), "only the followed group");
        assert_eq!(event.source.as_deref(), Some("e.csv"));
        if event.kind == EventKind::Accepted {
            assert_eq!(event.version.as_deref(), Some("v1"));
        }
        kinds.push(event.kind);
    }
    assert_eq!(
        kinds,
        [EventKind::Seen, EventKind::Settled, EventKind::Accepted]
    );
}

#[test]
fn a_hundred_concurrent_clients_and_a_stalled_one_are_all_served() {
    use std::io::Write;
    let daemon = Daemon::start();
    daemon.drop_file("g", "a.csv", &csv(1, 1));
    daemon.wait_stored("g", "a.csv");
    // A client that sends half a request and stalls, and a follower that never reads.
    let mut stalled = std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap();
    stalled.write_all(br#"{"v":1,"cmd":"sta"#).unwrap();
    let mut deaf = std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap();
    deaf.write_all(b"{\"v\":1,\"cmd\":\"events\",\"all\":true}\n")
        .unwrap();

    let socket = daemon.socket.clone();
    let threads: Vec<_> = (0..100)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut client = Client::connect(&socket).expect("connect");
                for _ in 0..10 {
                    let list: Vec<SourceSummary> = client
                        .call(&cmd::Ls {
                            group: Some("g".into()),
                            all: false,
                        })
                        .expect("ls under load");
                    assert_eq!(list.len(), 1);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a client thread");
    }
    // Drops still flow while the deaf follower holds its connection.
    for i in 0..20 {
        daemon.drop_file("g", &format!("more{i}.csv"), &csv(i + 10, 1));
    }
    daemon.wait_stored("g", "more19.csv");
    assert_eq!(daemon.status().pid, daemon.pid());
    drop((stalled, deaf));
}

/// Run the real ingestctl as the unprivileged `nobody` user (needs root to switch users).
fn as_nobody(daemon: &Daemon, args: &[&str]) -> Option<std::process::Output> {
    if !nix::unistd::geteuid().is_root() {
        crate::helper::skip("not root: cannot run a client as another user");
        return None;
    }
    let mut command = std::process::Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(crate::helper::ingestctl_path())
        .arg("--socket")
        .arg(&daemon.socket)
        .args(args)
        .env_remove("INGESTD_CONFIG")
        .env_remove("INGESTD_SOCKET");
    Some(command.output().expect("run setpriv"))
}

#[test]
fn state_changes_are_refused_for_non_admins_and_audited() {
    use std::os::unix::fs::PermissionsExt;
    let daemon = Daemon::start_with(
        "[ingest]\nsettle_ms = 150\n[server]\nsocket_mode = \"0666\"\nadmins = [\"root\"]\n",
    );
    daemon.drop_file("g", "a.csv", &csv(1, 1));
    daemon.wait_stored("g", "a.csv");
    // Let the other user reach the socket.
    for dir in [daemon.dir.path(), daemon.socket.parent().unwrap()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let Some(read) = as_nobody(&daemon, &["--json", "ls", "-g", "g"]) else {
        return;
    };
    assert!(
        read.status.success(),
        "read-only commands stay open: {}",
        String::from_utf8_lossy(&read.stderr)
    );
    let refused = as_nobody(&daemon, &["rm", "-g", "g", "--yes", "a.csv"]).unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("permission denied") && stderr.contains("nobody"),
        "{stderr}"
    );
    assert_eq!(daemon.ls(Some("g")).len(), 1, "nothing deleted");
    let record = wait_for("the refusal in the audit trail", || {
        daemon
            .audit()
            .into_iter()
            .find(|r| r["outcome"] == "refused")
    });
    assert_eq!(record["actor"]["uid"], 65534);
    assert_eq!(record["actor"]["via"], "socket");
    assert_eq!(record["action"], "delete");
}

#[test]
fn the_group_sheet_preference_picks_the_sheet_that_is_read() {
    let mut book = rust_xlsxwriter::Workbook::new();
    let first = book.add_worksheet().set_name("Summary").unwrap();
    first.write_string(0, 0, "total").unwrap();
    first.write_number(1, 0, 3.0).unwrap();
    let second = book.add_worksheet().set_name("Detail").unwrap();
    for (col, name) in ["region", "amount"].iter().enumerate() {
        second.write_string(0, col as u16, *name).unwrap();
    }
    second.write_string(1, 0, "north").unwrap();
    second.write_number(1, 1, 1.0).unwrap();
    second.write_string(2, 0, "south").unwrap();
    second.write_number(2, 1, 2.0).unwrap();
    let bytes = book.save_to_buffer().unwrap();

    let daemon = Daemon::start();
    daemon.drop_file("g", "book.xlsx", &bytes);
    let first = daemon.wait_stored("g", "book.xlsx");
    assert_eq!(first.columns, ["total"]);

    let saved: PrefsSaved = daemon
        .client()
        .call(&cmd::PrefsSet {
            group: Some("g".into()),
            columns: None,
            context: None,
            template: None,
            sheet: Some("Detail".into()),
            clear: false,
            reembed: false,
        })
        .unwrap();
    assert_eq!(saved.prefs.sheet.as_deref(), Some("Detail"));
    // The same workbook again is unchanged content; a touched copy is read from the new sheet.
    let mut book2 = rust_xlsxwriter::Workbook::new();
    book2
        .add_worksheet()
        .set_name("Summary")
        .unwrap()
        .write_string(0, 0, "total")
        .unwrap();
    let detail = book2.add_worksheet().set_name("Detail").unwrap();
    for (col, name) in ["region", "amount", "date"].iter().enumerate() {
        detail.write_string(0, col as u16, *name).unwrap();
    }
    detail.write_string(1, 0, "west").unwrap();
    daemon.drop_file("g", "book.xlsx", &book2.save_to_buffer().unwrap());
    let second = wait_for("v2 read from Detail", || {
        daemon
            .ls(Some("g"))
            .into_iter()
            .find(|s| s.version.as_deref() == Some("v2") && s.status.is_stored())
    });
    assert_eq!(second.columns, ["region", "amount", "date"]);
    assert_eq!(second.rows, Some(1));
}
