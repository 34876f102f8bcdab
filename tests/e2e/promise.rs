//! The embedding promise, the cases the rest of the suite leaves out: a version's embeddings
//! stay searchable until the next version's are complete, also across a kill -9 in the middle
//! of writing them; jobs start FIFO within a group and round robin across groups at the
//! default concurrency, in the order `jobs` shows; and a retry really waits out its backoff.
//! The fake server holds requests on the test's word, so nothing depends on timing.

use crate::helper::openai::FakeOpenAi;
use crate::helper::{Daemon, wait_for};
use crate::jobs::{active_rows, assert_no_orphans, marked_csv, wait_job};
use ingestd::protocol::{JobState, SearchResult, cmd};
use std::sync::atomic::Ordering;
use std::time::Duration;

fn search(daemon: &Daemon, text: &str) -> SearchResult {
    daemon
        .client()
        .call(&cmd::Search {
            text: text.into(),
            group: Some("g".into()),
            k: Some(5),
        })
        .expect("search")
}

/// The versions of the hits, deduplicated.
fn hit_versions(result: &SearchResult) -> Vec<String> {
    let mut versions: Vec<String> = result.hits.iter().map(|h| h.version.clone()).collect();
    versions.sort();
    versions.dedup();
    versions
}

/// `[embedding]` for `server`, one request in flight per job and a long request timeout, so a
/// request the test holds is never given up on.
fn embedding(server: &FakeOpenAi, extra: &str) -> String {
    format!(
        "provider = \"openai\"\nbatch_size = 8\n{extra}\n[embedding.openai]\n\
         base_url = \"{}\"\nmodel = \"fake-model\"\napi_key_env = \"\"\ndimensions = {}\n\
         timeout_secs = 300\nmax_in_flight = 1\n",
        server.base_url,
        ingestd::embed::hashing::DIMENSION
    )
}

#[test]
fn search_while_a_v2_job_is_processing_still_finds_v1s_rows() {
    let server = FakeOpenAi::start();
    let daemon = Daemon::start_embedding(&embedding(&server, ""), "");
    daemon.drop_file("g", "a.csv", &marked_csv("first", 20));
    daemon.wait_embedded("g", "a.csv", "v1");

    server.hold("second");
    daemon.drop_file("g", "a.csv", &marked_csv("second", 20));
    wait_job(&daemon, "the v2 job to be processing", |j| {
        j.version == "v2" && j.state == JobState::Processing
    });
    wait_for("the v2 job's first request to be held", || {
        (server.held() > 0).then_some(())
    });
    let during = search(&daemon, "first item 3");
    assert!(!during.hits.is_empty(), "v1 is not searchable: {during:?}");
    assert_eq!(hit_versions(&during), ["v1"], "{during:?}");
    assert!(during.hits[0].text.contains("first item"), "{during:?}");
    assert_eq!(daemon.show("g", "a.csv").embeddings.unwrap().version, "v1");

    server.release("second");
    daemon.wait_embedded("g", "a.csv", "v2");
    let after = search(&daemon, "second item 3");
    assert_eq!(hit_versions(&after), ["v2"], "{after:?}");
    assert_eq!(active_rows(&daemon, "g", "a.csv").len(), 20);
    assert_no_orphans(&daemon);
}

/// A v2 whose rows from 16 on carry `late`, so a hold on it stops the job after two batches.
fn v2_with_a_late_part(rows: usize) -> Vec<u8> {
    let mut text = String::from("id,region,note\n");
    for i in 0..rows {
        let word = if i < 16 { "second" } else { "latepart" };
        text.push_str(&format!("{i},north{i},{word} item {i}\n"));
    }
    text.into_bytes()
}

#[test]
fn kill_9_with_v1_active_and_v2_half_written_keeps_v1_and_v2_completes() {
    let server = FakeOpenAi::start();
    let mut daemon = Daemon::start_embedding(&embedding(&server, ""), "");
    daemon.drop_file("g", "a.csv", &marked_csv("first", 20));
    daemon.wait_embedded("g", "a.csv", "v1");

    server.hold("latepart");
    daemon.drop_file("g", "a.csv", &v2_with_a_late_part(40));
    let job = wait_job(&daemon, "v2 half written", |j| {
        j.version == "v2" && j.state == JobState::Processing && j.progress.done >= 16
    });
    wait_for("the v2 job's third request to be held", || {
        (server.held() > 0).then_some(())
    });
    daemon.kill9();
    // On disk: v1's generation active, v2's half written beside it.
    let db_half = daemon.count("SELECT COUNT(*) FROM generations WHERE state != 'active'");
    assert_eq!(db_half, 1, "v2's unfinished generation");
    assert!(daemon.count("SELECT COUNT(*) FROM vectors") >= 20 + 16);

    // Restarted with the hold still on: v2 runs again and stops at the same rows.
    daemon.spawn();
    wait_job(&daemon, "v2 processing again after the restart", |j| {
        j.id == job.id && j.state == JobState::Processing
    });
    wait_for("the restarted v2 job to be held", || {
        (server.held() > 1).then_some(())
    });
    let during = search(&daemon, "first item 3");
    assert_eq!(hit_versions(&during), ["v1"], "{during:?}");
    assert_eq!(daemon.show("g", "a.csv").embeddings.unwrap().version, "v1");

    server.release("latepart");
    daemon.wait_embedded("g", "a.csv", "v2");
    let finished = daemon.job(job.id);
    assert_eq!(finished.state, JobState::Completed, "{finished:?}");
    assert_eq!(active_rows(&daemon, "g", "a.csv").len(), 40);
    assert_eq!(hit_versions(&search(&daemon, "latepart item 30")), ["v2"]);
    assert_no_orphans(&daemon);
}

#[test]
fn jobs_start_fifo_within_a_group_and_round_robin_across_groups_at_the_default_concurrency() {
    let server = FakeOpenAi::start();
    // No `concurrency` key: the default, 3 jobs at once.
    let daemon = Daemon::start_embedding(&embedding(&server, ""), "");
    assert_eq!(
        ingestd::config::Config::default().embedding.concurrency,
        3,
        "this test occupies the other two slots with blockers"
    );
    // Three blockers take the three slots; two stay held to the end, so once the third lets
    // go the jobs under test start one at a time, in the daemon's order, as the server sees.
    for marker in ["blockerone", "blockertwo", "gatekeeper"] {
        server.hold(marker);
        daemon.drop_file("blk", &format!("{marker}.csv"), &marked_csv(marker, 2));
    }
    wait_for("three blockers processing", || {
        (server.held() == 3).then_some(())
    });
    let mut names = Vec::new();
    for round in 1..=3 {
        for group in ["ga", "gb", "gc"] {
            // Queued one after the other, so the FIFO order is the drop order.
            let name = format!("{group}-f{round}.csv");
            daemon.drop_file(group, &name, &marked_csv(&format!("{group}{round}"), 3));
            daemon.wait_stored(group, &name);
            names.push(name);
        }
    }
    let queued = wait_for("nine jobs queued", || {
        let jobs: Vec<_> = daemon
            .jobs()
            .into_iter()
            .filter(|j| j.state == JobState::Queued)
            .collect();
        (jobs.len() == 9).then_some(jobs)
    });
    // The order `jobs` promises: by overall position.
    let mut promised = queued;
    promised.sort_by_key(|j| j.position.unwrap().overall);
    let promised: Vec<String> = promised.into_iter().map(|j| j.source).collect();

    server.release("gatekeeper");
    wait_for("the nine jobs completed", || {
        let done = daemon
            .jobs()
            .into_iter()
            .filter(|j| j.group != "blk" && j.state == JobState::Completed)
            .count();
        (done == 9).then_some(())
    });
    // The order the server saw their rows in (one request per job: 3 rows, batch 8).
    let seen: Vec<String> = server
        .arrivals()
        .into_iter()
        .filter_map(|(_, texts)| texts.first().cloned())
        .map(|text| text.split(" | ").next().unwrap().to_string())
        .filter(|source| ["ga-", "gb-", "gc-"].iter().any(|g| source.starts_with(g)))
        .collect();
    assert_eq!(
        seen, promised,
        "the server's order is the order jobs showed"
    );
    // FIFO within each group: its files in the order they were queued.
    for group in ["ga", "gb", "gc"] {
        let mine: Vec<&String> = seen.iter().filter(|s| s.starts_with(group)).collect();
        let queued: Vec<&String> = names.iter().filter(|s| s.starts_with(group)).collect();
        assert_eq!(mine, queued, "FIFO in {group}: {seen:?}");
    }
    // Round robin: each round has one job of every group, in the same group order.
    let group_of = |s: &String| s[..2].to_string();
    let first_round: Vec<String> = seen[..3].iter().map(group_of).collect();
    let mut distinct = first_round.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{seen:?}");
    for (i, source) in seen.iter().enumerate() {
        assert_eq!(
            group_of(source),
            first_round[i % 3],
            "round robin: {seen:?}"
        );
    }
    server.release("blockerone");
    server.release("blockertwo");
}

#[test]
fn a_retry_waits_out_its_backoff_as_the_server_measures_it() {
    let server = FakeOpenAi::start();
    // Two failures asking for 1 s, then success: the backoff is at least the server's hint.
    server.behaviour.fail_next.store(2, Ordering::SeqCst);
    server.behaviour.retry_after_secs.store(1, Ordering::SeqCst);
    let daemon = Daemon::start_embedding(&embedding(&server, "max_attempts = 3"), "");
    daemon.drop_file("g", "a.csv", &marked_csv("once", 5));
    daemon.wait_embedded("g", "a.csv", "v1");
    let job = &daemon.jobs()[0];
    assert_eq!(job.attempt, 3, "{job:?}");
    let arrivals: Vec<_> = server.arrivals().into_iter().map(|(at, _)| at).collect();
    assert_eq!(arrivals.len(), 3, "one request per try");
    for pair in arrivals.windows(2) {
        let waited = pair[1] - pair[0];
        assert!(
            waited >= Duration::from_secs(1),
            "a retry came {waited:?} after the failure it retries, before its 1 s backoff"
        );
    }
}
