//! Crash safety with embedding in the picture: `fsck` finds and repairs what is inconsistent
//! without deleting a file, and kill -9 at random moments of a burst of drops and jobs loses
//! no file, duplicates no version, leaves no job stuck, and leaves the catalog fsck-clean.

use crate::helper::openai::FakeOpenAi;
use crate::helper::{Daemon, csv, sha256_hex, wait_for};
use ingestd::protocol::{FsckReport, JobState};
use std::sync::atomic::Ordering;

fn fsck(daemon: &Daemon, repair: bool) -> (Option<i32>, FsckReport) {
    let mut args = vec!["fsck", "--json"];
    if repair {
        args.push("--repair");
    }
    let out = daemon.ctl(&args);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("fsck printed no report ({e}): {out:?}"));
    (out.status.code(), report)
}

#[test]
fn fsck_finds_and_repairs_without_deleting_a_file() {
    let daemon = Daemon::start();
    daemon.drop_file("g", "a.csv", &csv(1, 6));
    daemon.drop_file("g", "b.csv", &csv(2, 6));
    daemon.wait_embedded("g", "a.csv", "v1");
    let b = daemon.wait_embedded("g", "b.csv", "v1");
    let (code, report) = fsck(&daemon, false);
    assert_eq!(code, Some(0), "{report:?}");
    assert!(report.is_clean());

    // Break it four ways.
    let ghost = daemon.storage_root.join("g/ghost_v1.csv");
    std::fs::write(&ghost, b"id\n1\n").unwrap();
    let b_file = b.versions[0].stored_path.clone().unwrap();
    std::fs::remove_file(&b_file).unwrap();
    let a_job = "(SELECT j.id FROM jobs j JOIN sources s ON s.id = j.source_id
                  WHERE s.name = 'a.csv')";
    if let Some(mut pg) = daemon.pg() {
        // The same breakage on PostgreSQL: vectors whose generation is gone (written with the
        // foreign keys' triggers off, as only a bug or a hand could), and a job this node
        // shows as processing with no worker (its lease far off, so no takeover hides it).
        pg.batch_execute(&format!(
            "SET session_replication_role = replica;
             INSERT INTO vectors (generation_id, row_no, identity_id, group_id, text, embedding)
                 VALUES (9000, 1, 9999, 1, 'lost', '[0]'), (9000, 2, 9999, 1, 'lost', '[0]');
             SET session_replication_role = DEFAULT;
             UPDATE jobs SET state = 'processing', started_at = 0, node = 'e2e',
                             lease_until = 9000000000000000
                 WHERE id = {a_job};"
        ))
        .unwrap();
    } else {
        let db =
            rusqlite::Connection::open(daemon.dir.path().join("state/ingestd.sqlite")).unwrap();
        db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        db.execute_batch(&format!(
            "PRAGMA foreign_keys = OFF;
             INSERT INTO generations (id, source_id, version_id, state, provider, model,
                                      dimension, weights_hash, created_at)
                 VALUES (9000, 1, 9999, 'active', 'hashing', 'x', 384, 'none', 0);
             INSERT INTO vectors (generation_id, row_no, text, embedding)
                 VALUES (9000, 1, 'lost', x'00000000'), (9000, 2, 'lost', x'00000000');
             UPDATE jobs SET state = 'processing', started_at = 0 WHERE id = {a_job};"
        ))
        .unwrap();
    }

    let (code, report) = fsck(&daemon, false);
    assert_eq!(code, Some(1), "problems make fsck exit 1: {report:?}");
    assert_eq!(report.orphan_files, vec![ghost.display().to_string()]);
    assert_eq!(report.missing_files.len(), 1, "{report:?}");
    assert!(report.missing_files[0].starts_with("g/b.csv v1"));
    assert_eq!(report.orphan_vectors, 2);
    assert_eq!(report.stuck_jobs.len(), 1);
    assert!(ghost.exists(), "a read-only fsck moved a file");
    let human = daemon.ctl(&["fsck"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("ingestctl fsck --repair"));

    let (code, report) = fsck(&daemon, true);
    assert_eq!(code, Some(0), "{report:?}");
    assert!(report.repaired);
    let moved = daemon.storage_root.join("lost+found/g/ghost_v1.csv");
    assert_eq!(report.moved, vec![moved.display().to_string()]);
    assert_eq!(
        std::fs::read(&moved).unwrap(),
        b"id\n1\n",
        "the orphan kept its content"
    );
    assert!(!ghost.exists());
    // The stuck job runs again; the source whose file vanished is gone from the catalog.
    wait_for("the stuck job to complete again", || {
        daemon
            .jobs()
            .iter()
            .all(|j| j.state == JobState::Completed)
            .then_some(())
    });
    let names: Vec<String> = daemon.ls(Some("g")).into_iter().map(|s| s.name).collect();
    assert_eq!(names, vec!["a.csv"]);
    let (code, report) = fsck(&daemon, false);
    assert_eq!((code, report.is_clean()), (Some(0), true), "{report:?}");
    assert!(
        daemon
            .audit()
            .iter()
            .any(|r| r["action"] == "fsck" && r["outcome"] == "repaired")
    );
}

/// A small deterministic generator, so a failing round can be replayed.
fn next(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 33
}

/// kill -9 at pseudo-random moments while 200 files are dropped and embedded, then restart;
/// `CRASH_ROUNDS` (default 4) sets how many kills. Everything ends stored once, embedded,
/// and consistent.
#[test]
fn kill9_during_drops_and_jobs_loses_nothing() {
    let rounds: usize = std::env::var("CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(4);
    let seed0: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20261127);
    let server = FakeOpenAi::start();
    server.behaviour.delay_ms.store(5, Ordering::SeqCst);
    let mut daemon = Daemon::start_embedding(&server.embedding_toml("concurrency = 3"), "");
    let total: usize = 200;
    let per_round = total.div_ceil(rounds);
    let mut seed = seed0;
    let mut dropped: Vec<(String, String, Vec<u8>)> = Vec::new();
    for round in 0..rounds {
        let count = per_round.min(total - dropped.len());
        for i in 0..count {
            let (group, name) = (format!("g{}", i % 4), format!("r{round}_{i}.csv"));
            let content = csv(round * 1000 + i, 40);
            daemon.drop_file(&group, &name, &content);
            dropped.push((group, name, content));
        }
        let wait = std::time::Duration::from_millis(next(&mut seed) % 1500);
        std::thread::sleep(wait); // the moment of the crash, chosen at random on purpose
        daemon.kill9();
        daemon.spawn();
    }
    wait_for("every drop stored and every job completed", || {
        let jobs = daemon.jobs();
        let sources: usize = daemon.ls(None).len();
        (sources == dropped.len()
            && jobs.iter().all(|j| j.state == JobState::Completed)
            && jobs.len() >= dropped.len())
        .then_some(())
    });
    for (group, name, content) in &dropped {
        let detail = daemon.show(group, name);
        let versions: Vec<_> = detail
            .versions
            .iter()
            .filter(|v| v.version.is_some())
            .collect();
        assert_eq!(
            versions.len(),
            1,
            "{group}/{name}: {:?} (seed {seed0})",
            detail.versions
        );
        assert_eq!(
            versions[0].sha256.as_deref(),
            Some(sha256_hex(content).as_str()),
            "{group}/{name}"
        );
        assert_eq!(
            detail.embeddings.map(|e| e.rows),
            Some(40),
            "{group}/{name}"
        );
        assert!(
            !daemon.drop_root.join(group).join(name).exists(),
            "{name} left in drop"
        );
    }
    assert_eq!(
        daemon.count("SELECT COUNT(*) FROM active_vectors"),
        (dropped.len() * 40) as i64
    );
    assert_eq!(
        daemon.count("SELECT COUNT(*) FROM generations WHERE state != 'active'"),
        0
    );
    let (code, report) = fsck(&daemon, false);
    assert_eq!(
        code,
        Some(0),
        "fsck after {rounds} kills (seed {seed0}): {report:?}"
    );
}
