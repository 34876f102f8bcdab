//! `ingest.retain_versions`: stored versions beyond the newest N are pruned oldest first —
//! files gone, rows kept as `pruned`, each prune audited, `fsck` clean — and never the version
//! whose vectors are active, even when it is older.

use crate::helper::openai::FakeOpenAi;
use crate::helper::{Daemon, csv, wait_for};
use ingestd::protocol::{FsckReport, JobState, SourceDetail, Status};

fn fsck_report(daemon: &Daemon) -> FsckReport {
    let out = daemon.ctl(&["fsck", "--json"]);
    let report: FsckReport = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("fsck printed no report ({e}): {out:?}"));
    assert_eq!(out.status.code(), Some(0), "fsck is clean: {report:?}");
    report
}

/// The versions `show` lists, oldest first: (label, status, stored path).
fn versions(detail: &SourceDetail) -> Vec<(String, Status, Option<String>)> {
    let mut listed: Vec<_> = detail
        .versions
        .iter()
        .filter_map(|v| {
            v.version
                .clone()
                .map(|label| (label, v.status, v.stored_path.clone()))
        })
        .collect();
    listed.reverse();
    listed
}

/// Wait until exactly `pruned` are pruned (by label).
fn wait_pruned(daemon: &Daemon, source: &str, pruned: &[&str]) -> SourceDetail {
    wait_for(&format!("{pruned:?} of {source} to be pruned"), || {
        let detail = daemon.show("g", source);
        let now: Vec<String> = versions(&detail)
            .into_iter()
            .filter(|(_, status, _)| *status == Status::Pruned)
            .map(|(label, _, _)| label)
            .collect();
        (now == pruned).then_some(detail)
    })
}

/// The `prune` records of the audit trail: their versions.
fn audited_prunes(daemon: &Daemon) -> Vec<String> {
    daemon
        .audit()
        .into_iter()
        .filter(|r| r["action"] == "prune")
        .map(|r| {
            assert_eq!(r["outcome"], "ok", "{r}");
            assert_eq!(r["actor"]["via"], "daemon", "{r}");
            r["version"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn versions_beyond_the_limit_are_pruned_oldest_first() {
    let daemon = Daemon::start_with("[ingest]\nsettle_ms = 150\nretain_versions = 2\n");
    let mut stored = Vec::new();
    for n in 1..=4 {
        daemon.drop_file("g", "s.csv", &csv(n, 5));
        let detail = daemon.wait_embedded("g", "s.csv", &format!("v{n}"));
        stored.push(detail.versions[0].stored_path.clone().expect("stored"));
    }
    let detail = wait_pruned(&daemon, "s.csv", &["v1", "v2"]);
    let listed = versions(&detail);
    assert_eq!(
        listed
            .iter()
            .map(|(l, s, p)| (l.as_str(), *s, p.is_some()))
            .collect::<Vec<_>>(),
        vec![
            ("v1", Status::Pruned, false),
            ("v2", Status::Pruned, false),
            ("v3", Status::Ready, true),
            ("v4", Status::Embedded, true),
        ]
    );
    for (n, path) in stored.iter().enumerate() {
        assert_eq!(
            std::path::Path::new(path).exists(),
            n >= 2,
            "v{}'s file {path}",
            n + 1
        );
    }
    assert_eq!(
        Daemon::files_under(&daemon.storage_root.join("g")).len(),
        2,
        "{:?}",
        Daemon::files_under(&daemon.storage_root)
    );
    assert_eq!(audited_prunes(&daemon), ["v1", "v2"]);
    assert_eq!(fsck_report(&daemon), FsckReport::default());
    // The newest is what `ls` shows, untouched by retention.
    let summary = daemon.wait_stored("g", "s.csv");
    assert_eq!(summary.version.as_deref(), Some("v4"));
}

#[test]
fn the_version_with_active_vectors_is_kept_even_when_older() {
    let server = FakeOpenAi::start();
    let mut daemon = Daemon::configure_embedding(
        &server.embedding_toml("max_attempts = 1"),
        "[ingest]\nsettle_ms = 150\nretain_versions = 2\n",
    );
    daemon.spawn();
    daemon.drop_file("g", "s.csv", b"id,note\n1,plain one\n2,plain two\n");
    let v1 = daemon.wait_embedded("g", "s.csv", "v1");
    let v1_file = v1.versions[0].stored_path.clone().unwrap();
    // From now on every embedding fails: v1's vectors stay the active ones.
    *server.behaviour.fail_marker.lock().unwrap() = Some("poison".into());
    for n in 2..=4 {
        let content = format!("id,note\n1,poison {n}\n2,poison {n}b\n");
        daemon.drop_file("g", "s.csv", content.as_bytes());
        let version = format!("v{n}");
        wait_for(&format!("the {version} job to fail"), || {
            daemon
                .jobs()
                .into_iter()
                .find(|j| j.version == version && j.state == JobState::Failed)
        });
    }
    // v4 and v3 are the newest two, v1 is active: only v2 goes.
    let detail = wait_pruned(&daemon, "s.csv", &["v2"]);
    assert_eq!(detail.embeddings.as_ref().unwrap().version, "v1");
    assert!(std::path::Path::new(&v1_file).exists());
    assert_eq!(
        Daemon::files_under(&daemon.storage_root.join("g")).len(),
        3,
        "v1, v3, v4"
    );
    assert_eq!(audited_prunes(&daemon), ["v2"]);
    assert_eq!(fsck_report(&daemon), FsckReport::default());
}
