//! Dropping files: what becomes a version, what is rejected and why, and that a crash or a
//! burst loses nothing.

use crate::helper::{self, Daemon, csv, sha256_hex, wait_for};
use ingestd::protocol::Status;

#[test]
fn a_dropped_csv_becomes_ready_with_its_columns() {
    let daemon = Daemon::start();
    let content = b"Region , amount,,amount\nnorth,1,x,2\nsouth,3,y,4\n\n";
    daemon.drop_file("sales", "q1.csv", content);
    let source = daemon.wait_status("sales", "q1.csv", Status::Embedded);
    assert_eq!(source.version.as_deref(), Some("v1"));
    assert_eq!(source.columns, vec!["Region", "amount", "amount_2"]);
    assert_eq!(source.skipped_columns.len(), 1);
    assert_eq!(source.skipped_columns[0].position, 3);
    assert_eq!(source.rows, Some(2));
    assert_eq!(source.size, Some(content.len() as u64));
    assert_eq!(source.sha256.as_deref(), Some(sha256_hex(content).as_str()));

    // Stored as a versioned copy, removed from the drop folder.
    let stored = daemon.storage_root.join("sales/q1_v1.csv");
    assert_eq!(std::fs::read(&stored).unwrap(), content);
    // (On PostgreSQL the removal follows the commit `ls` already shows: polled.)
    wait_for("the original removed from the drop folder", || {
        (!daemon.drop_root.join("sales/q1.csv").exists()).then_some(())
    });

    // The real ingestctl agrees, in JSON and for people.
    let json = daemon.ctl_json(&["ls", "-g", "sales"]);
    let row = &json.as_array().unwrap()[0];
    assert_eq!(row["name"], "q1.csv");
    assert_eq!(row["version"], "v1");
    assert_eq!(row["status"], "embedded");
    assert_eq!(row["rows"], 2);
    assert_eq!(row["columns"][2], "amount_2");
    assert!(row["reason"].is_null());
    assert_eq!(row["added_by"], whoami());
    let shown = daemon.ctl(&["show", "q1.csv", "-g", "sales"]);
    assert!(shown.status.success());
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("amount_2") && text.contains("v1"), "{text}");

    // Audited with the file owner as the actor.
    let audit = daemon.audit();
    let accepted = audit
        .iter()
        .find(|r| r["outcome"] == "accepted" && r["source"] == "q1.csv")
        .expect("an accepted audit record");
    assert_eq!(accepted["actor"]["via"], "drop");
    assert_eq!(accepted["actor"]["uid"], nix::unistd::geteuid().as_raw());
    assert_eq!(accepted["version"], "v1");
}

fn whoami() -> String {
    ingestd::identity::user_name(nix::unistd::geteuid().as_raw()).expect("a user name")
}

#[test]
fn new_content_makes_v2_and_same_content_is_unchanged() {
    let daemon = Daemon::start();
    daemon.drop_file("g", "data.csv", &csv(1, 3));
    daemon.wait_stored("g", "data.csv");
    daemon.drop_file("g", "data.csv", &csv(2, 5));
    let v2 = wait_for("v2", || {
        daemon
            .ls(Some("g"))
            .into_iter()
            .find(|s| s.version.as_deref() == Some("v2") && s.status.is_stored())
    });
    assert_eq!(v2.rows, Some(5));
    daemon.drop_file("g", "data.csv", &csv(2, 5));
    wait_for("the unchanged audit record", || {
        daemon
            .audit()
            .into_iter()
            .find(|r| r["outcome"] == "unchanged" && r["version"] == "v2")
    });
    wait_for("the drop folder to be empty", || {
        Daemon::files_under(&daemon.drop_root.join("g"))
            .is_empty()
            .then_some(())
    });
    assert_eq!(
        Daemon::files_under(&daemon.storage_root.join("g")),
        vec!["data_v1.csv", "data_v2.csv"]
    );
    let detail = daemon.show("g", "data.csv");
    let labels: Vec<_> = detail.versions.iter().map(|v| v.version.clone()).collect();
    assert_eq!(labels, vec![Some("v2".into()), Some("v1".into())]);
    assert_eq!(detail.summary.version.as_deref(), Some("v2"));
}

#[test]
fn oversize_empty_and_wrong_type_files_are_rejected_with_reasons() {
    let daemon = Daemon::start();
    let dir = daemon.group("g");
    // 51 MB, sparse: the size check must refuse it before reading it.
    let big = std::fs::File::create(dir.join("big.csv")).unwrap();
    big.set_len(51_000_000).unwrap();
    drop(big);
    std::fs::write(dir.join("empty.csv"), b"").unwrap();
    std::fs::write(dir.join("notes.txt"), b"hello\n").unwrap();
    std::fs::write(dir.join("binary.csv"), b"\x00\x01\x02\x03 not text").unwrap();

    let cases = [
        ("big.csv", "51.0 MB"),
        ("empty.csv", "empty"),
        ("notes.txt", ".txt"),
        ("binary.csv", "binary"),
    ];
    for (name, needle) in cases {
        let source = daemon.wait_status("g", name, Status::Invalid);
        let reason = source.reason.expect("a reason");
        assert!(reason.contains(needle), "{name}: {reason}");
        assert!(source.version.is_none());
        // The rejection is recorded before the file is moved (a crash never leaves a moved
        // file whose rejection was not recorded), so the move may come a moment later.
        let kept = dir.join(".rejected").join(name);
        wait_for(&format!("{name} kept in .rejected/"), || {
            kept.exists().then_some(())
        });
        let error = std::fs::read_to_string(dir.join(format!(".rejected/{name}.error.txt")))
            .expect("error.txt");
        assert!(
            error.starts_with(&format!("{name} was not accepted: ")),
            "{error}"
        );
        assert!(error.contains(".csv"), "says what is accepted: {error}");
        assert_eq!(error.trim_end().lines().count(), 1, "one sentence: {error}");
    }
    assert_eq!(
        std::fs::metadata(dir.join(".rejected/big.csv"))
            .unwrap()
            .len(),
        51_000_000
    );
    let rejected = daemon
        .audit()
        .into_iter()
        .filter(|r| r["outcome"] == "rejected");
    assert_eq!(rejected.count(), 4);
    // Nothing was stored and the daemon is healthy.
    assert!(Daemon::files_under(&daemon.storage_root).is_empty());
    assert_eq!(daemon.status().by_status.get(&Status::Invalid), Some(&4));
}

#[test]
fn a_file_written_slowly_is_not_taken_early() {
    use std::io::Write;
    let daemon = Daemon::start_with("[ingest]\nsettle_ms = 600\n");
    let path = daemon.group("g").join("slow.csv");
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(b"id,value\n").unwrap();
    let chunks = 20;
    for i in 0..chunks {
        file.write_all(format!("{i},{}\n", i * i).as_bytes())
            .unwrap();
        file.flush().unwrap();
        // The writer's own pace, shorter than the settle window; not a wait for the daemon.
        std::thread::sleep(std::time::Duration::from_millis(150));
        let seen = daemon.ls(Some("g"));
        assert!(
            seen.iter().all(|s| s.version.is_none()),
            "taken while still being written: {seen:?}"
        );
    }
    drop(file);
    let source = daemon.wait_stored("g", "slow.csv");
    assert_eq!(source.rows, Some(chunks));
}

#[test]
fn a_thousand_files_dropped_at_once_all_arrive() {
    let daemon = Daemon::start_with("[ingest]\nsettle_ms = 100\n");
    let groups = ["a", "b", "c", "d"];
    for g in groups {
        daemon.group(g);
    }
    for i in 0..1000 {
        let g = groups[i % groups.len()];
        std::fs::write(
            daemon.drop_root.join(g).join(format!("f{i:04}.csv")),
            csv(i, 2),
        )
        .unwrap();
    }
    let ready = wait_for("1000 ready sources", || {
        let all = daemon.ls(None);
        (all.iter().filter(|s| s.status.is_stored()).count() == 1000).then_some(all)
    });
    assert!(ready.iter().all(|s| s.version.as_deref() == Some("v1")));
    for g in groups {
        wait_for("the originals removed from the drop folder", || {
            Daemon::files_under(&daemon.drop_root.join(g))
                .is_empty()
                .then_some(())
        });
        assert_eq!(Daemon::files_under(&daemon.storage_root.join(g)).len(), 250);
    }
    let accepted = daemon
        .audit()
        .into_iter()
        .filter(|r| r["outcome"] == "accepted")
        .count();
    assert_eq!(accepted, 1000);
}

#[test]
fn files_dropped_while_stopped_are_ingested_at_start() {
    let mut daemon = Daemon::start();
    daemon.group("g");
    assert!(daemon.stop().success(), "clean exit on SIGTERM");
    assert!(!daemon.socket.exists(), "socket removed at stop");
    for i in 0..5 {
        std::fs::write(daemon.drop_root.join(format!("g/late{i}.csv")), csv(i, 1)).unwrap();
    }
    std::fs::create_dir_all(daemon.drop_root.join("newgroup")).unwrap();
    std::fs::write(daemon.drop_root.join("newgroup/x.csv"), csv(9, 1)).unwrap();
    daemon.spawn();
    for i in 0..5 {
        daemon.wait_stored("g", &format!("late{i}.csv"));
    }
    daemon.wait_stored("newgroup", "x.csv");
}

/// kill -9 while a burst is being stored, several times: afterwards every file is stored
/// exactly once with its exact content, and nothing is left half done.
#[test]
fn kill_9_while_storing_loses_and_duplicates_nothing() {
    let mut daemon = Daemon::start_with("[ingest]\nsettle_ms = 50\n");
    let files = 60;
    let mut expected = std::collections::BTreeMap::new();
    for round in 0..3 {
        let group = format!("r{round}");
        let dir = daemon.group(&group);
        for i in 0..files {
            // ~300 KB each, so the kill lands in the middle of copying and renaming.
            let content = csv(round * 1000 + i, 6000);
            std::fs::write(dir.join(format!("f{i}.csv")), &content).unwrap();
            expected.insert(format!("{group}/f{i}_v1.csv"), sha256_hex(&content));
        }
        // Kill once some, but not all, of this round are stored.
        let kill_after = 1 + round * 7;
        wait_for("some files stored", || {
            let stored = Daemon::files_under(&daemon.storage_root.join(&group))
                .iter()
                .filter(|f| !f.starts_with(".tmp"))
                .count();
            (stored >= kill_after).then_some(())
        });
        daemon.kill9();
        daemon.spawn();
        wait_for("every file of the round stored", || {
            let ready = daemon
                .ls(Some(&group))
                .iter()
                .filter(|s| s.status.is_stored())
                .count();
            (ready == files).then_some(())
        });
    }
    // Every stored file is complete and there is exactly one version per drop.
    let stored: Vec<String> = Daemon::files_under(&daemon.storage_root)
        .into_iter()
        .filter(|f| !f.contains(".tmp/"))
        .collect();
    assert_eq!(stored.len(), expected.len(), "{stored:?}");
    for (name, sha) in &expected {
        let bytes = std::fs::read(daemon.storage_root.join(name)).expect(name);
        assert_eq!(&sha256_hex(&bytes), sha, "{name} is complete");
    }
    for source in daemon.ls(None) {
        assert_eq!(source.version.as_deref(), Some("v1"), "{source:?}");
        let detail = daemon.show(&source.group, &source.name);
        assert_eq!(detail.versions.len(), 1, "{detail:?}");
    }
    // Nothing left in the drop folders or in temporary storage.
    assert!(Daemon::files_under(&daemon.drop_root).is_empty());
    let tmp = Daemon::files_under(&daemon.storage_root)
        .into_iter()
        .filter(|f| f.contains(".tmp/"))
        .count();
    assert_eq!(tmp, 0);
}

#[test]
fn hidden_temporary_root_and_symlinked_files_are_left_alone() {
    let daemon = Daemon::start();
    let dir = daemon.group("g");
    for name in [".hidden.csv", "~$book.xlsx", "upload.csv.part", "x.csv.tmp"] {
        std::fs::write(dir.join(name), csv(1, 1)).unwrap();
    }
    std::fs::write(daemon.drop_root.join("loose.csv"), csv(2, 1)).unwrap();
    let outside = daemon.dir.path().join("outside.csv");
    std::fs::write(&outside, csv(3, 1)).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("link.csv")).unwrap();
    std::fs::create_dir_all(daemon.drop_root.join("bad name")).unwrap();
    std::fs::write(daemon.drop_root.join("bad name/a.csv"), csv(4, 1)).unwrap();
    // A real file after them: once it is stored, the others have been looked at too.
    daemon.drop_file("g", "real.csv", &csv(5, 1));
    daemon.wait_stored("g", "real.csv");

    let status = wait_for("the root file and bad group to be reported", || {
        let status = daemon.status();
        let text: Vec<_> = status
            .last_errors
            .iter()
            .map(|n| n.message.clone())
            .collect();
        (text.iter().any(|m| m.contains("loose.csv"))
            && text.iter().any(|m| m.contains("bad name")))
        .then_some(status)
    });
    assert_eq!(status.sources, 1, "{:?}", daemon.ls(None));
    for name in [
        ".hidden.csv",
        "~$book.xlsx",
        "upload.csv.part",
        "x.csv.tmp",
        "link.csv",
    ] {
        assert!(
            std::fs::symlink_metadata(dir.join(name)).is_ok(),
            "{name} untouched"
        );
    }
    assert!(daemon.drop_root.join("loose.csv").exists());
    assert!(outside.exists());
    assert!(daemon.drop_root.join("bad name/a.csv").exists());
}

#[test]
fn a_title_row_and_semicolons_and_a_bom_are_understood() {
    let daemon = Daemon::start();
    let content = "\u{feff}Quarterly report;;\nregion;amount;note\nnorth;1;a\nsouth;2;b\n";
    daemon.drop_file("g", "report.csv", content.as_bytes());
    let source = daemon.wait_stored("g", "report.csv");
    assert_eq!(source.columns, vec!["region", "amount", "note"]);
    assert_eq!(source.rows, Some(2));
}

#[test]
fn real_csv_fixtures_are_ingested() {
    let corpus = helper::corpus();
    let picks = [
        "rust-csv/examples/data/bench/worldcitiespop.csv",
        "csv-spectrum/csvs/quotes_and_newlines.csv",
        "csv-spectrum/csvs/utf8.csv",
    ];
    let available: Vec<_> = picks.iter().filter(|p| corpus.join(p).exists()).collect();
    if available.is_empty() {
        crate::helper::skip(&format!("no fixture corpus at {}", corpus.display()));
        return;
    }
    let daemon = Daemon::start();
    for (i, rel) in available.iter().enumerate() {
        let bytes = std::fs::read(corpus.join(rel)).unwrap();
        daemon.drop_file("fx", &format!("f{i}.csv"), &bytes);
    }
    for (i, rel) in available.iter().enumerate() {
        let source = daemon.wait_settled("fx", &format!("f{i}.csv"));
        assert!(source.status.is_stored(), "{rel}: {source:?}");
        assert!(!source.columns.is_empty());
    }
    let cities = daemon.wait_stored("fx", "f0.csv");
    assert_eq!(cities.columns.len(), 7);
    assert_eq!(cities.rows, Some(20_000));
}

/// A file moved into a group folder the moment the folder is made is found. notify adds a new
/// folder's watch only after it has handed on the folder's creation; a file that arrived
/// between the daemon's scan of the new folder and that watch was once never seen (no event,
/// and the scan had passed). The daemon now puts each group folder's watch in place itself,
/// before it scans the folder.
#[test]
fn files_moved_into_folders_the_moment_they_are_made_are_all_found() {
    const GROUPS: usize = 150;
    let daemon = Daemon::start_with("[ingest]\nsettle_ms = 100\n");
    for g in 0..GROUPS {
        let dir = daemon.drop_root.join(format!("burst{g}"));
        std::fs::create_dir(&dir).unwrap();
        let hidden = dir.join(".f.csv.incoming");
        std::fs::write(&hidden, csv(g, 1)).unwrap();
        std::fs::rename(&hidden, dir.join("f.csv")).unwrap();
    }
    let missing = |daemon: &Daemon| -> Vec<String> {
        let stored: std::collections::HashSet<String> = daemon
            .ls(None)
            .into_iter()
            .filter(|s| s.version.is_some())
            .map(|s| s.group)
            .collect();
        (0..GROUPS)
            .map(|g| format!("burst{g}"))
            .filter(|g| !stored.contains(g))
            .collect()
    };
    wait_for("every burst file to be stored", || {
        missing(&daemon).is_empty().then_some(())
    });
}

/// A tree of folders inside a group folder costs the daemon no inotify watches: nothing in a
/// sub-folder is ingested, and a dropper must not be able to use up the system's watches
/// (`fs.inotify.max_user_watches`, shared by every program of the daemon's user) by making
/// folders. The group's own files are still found.
#[test]
fn folders_inside_a_group_folder_cost_no_watches() {
    let daemon = Daemon::start_with("[ingest]\nsettle_ms = 100\n");
    let group = daemon.group("g");
    daemon.drop_file("g", "first.csv", &csv(1, 2));
    daemon.wait_stored("g", "first.csv");
    let before = inotify_watches(daemon.pid());
    let mut dir = group.clone();
    for depth in 0..200 {
        dir = dir.join(format!("d{depth}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::create_dir(group.join(format!("wide{depth}"))).unwrap();
    }
    daemon.drop_file("g", "second.csv", &csv(2, 2));
    daemon.wait_stored("g", "second.csv");
    let after = inotify_watches(daemon.pid());
    assert_eq!(
        after, before,
        "400 folders inside a group folder changed the daemon's inotify watches"
    );
    // Each folder made directly in the group is reported once, as a folder (the last ones
    // are among the last errors `status` keeps).
    let said = daemon
        .status()
        .last_errors
        .into_iter()
        .map(|n| n.message)
        .find(|m| m.contains("/g/wide199 "))
        .expect("the folder inside the group folder is reported");
    assert!(said.contains("is a folder inside a group folder"), "{said}");
}

/// How many inotify watches process `pid` holds (one `inotify wd:` line per watch in the
/// fdinfo of its inotify descriptors).
fn inotify_watches(pid: u32) -> usize {
    let mut watches = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
    {
        let info = std::fs::read_to_string(entry.path()).unwrap_or_default();
        watches += info
            .lines()
            .filter(|l| l.starts_with("inotify wd:"))
            .count();
    }
    assert!(watches > 0, "process {pid} has no inotify watch at all");
    watches
}

/// The drop root moved away and made again: the old group folders' watches go with the old
/// root. They would otherwise keep following the moved folders under the same paths, one
/// inotify watch each, for as long as the daemon runs.
#[test]
fn a_drop_root_moved_away_takes_its_group_watches_with_it() {
    let daemon = Daemon::start_with("[ingest]\nsettle_ms = 100\n");
    for g in ["g1", "g2", "g3"] {
        daemon.drop_file(g, "a.csv", &csv(3, 2));
        daemon.wait_stored(g, "a.csv");
    }
    let before = inotify_watches(daemon.pid());
    let old = daemon.drop_root.with_extension("old");
    std::fs::rename(&daemon.drop_root, &old).unwrap();
    std::fs::create_dir(&daemon.drop_root).unwrap();
    wait_for("the new drop root to be watched", || {
        daemon
            .status()
            .last_errors
            .iter()
            .any(|n| n.message.contains("is watched again"))
            .then_some(())
    });
    assert_eq!(
        inotify_watches(daemon.pid()),
        before - 3,
        "the three moved group folders are still watched"
    );
    daemon.drop_file("g1", "b.csv", &csv(4, 2));
    daemon.wait_stored("g1", "b.csv");
}
