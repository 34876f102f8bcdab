//! Never embedding the same text twice, end to end: a counting OpenAI-compatible server sees
//! exactly the texts a source does not already have under the daemon's model; everything else
//! is copied, and every generation still holds every row. Also pipelined requests (answers out
//! of order land in row order) and embedding threads that run below the rest of the daemon.

use crate::helper::openai::FakeOpenAi;
use crate::helper::{Daemon, wait_for};
use crate::jobs::{active_rows, assert_no_orphans, marked_csv, wait_job, wait_trash_emptied};
use ingestd::embed::{cosine, hashing};
use ingestd::protocol::JobState;
use std::sync::atomic::Ordering;

/// The texts `rows` of `marked_csv` render to in group `g`.
fn rendered(source: &str, marker: &str, rows: std::ops::Range<usize>) -> Vec<String> {
    rows.map(|i| format!("{source} | g | id: {i}; region: north{i}; note: {marker} item {i}"))
        .collect()
}

/// Every active row of the source holds the vector of its own text (the fake server's
/// vectors are the hashing provider's), and there are `rows` of them, numbered 1…rows.
fn assert_every_row_has_its_own_vector(daemon: &Daemon, source: &str, rows: usize) {
    let active = active_rows(daemon, "g", source);
    assert_eq!(active.len(), rows, "the generation holds every row");
    for (i, (row, text, blob)) in active.iter().enumerate() {
        assert_eq!(*row, i as i64 + 1);
        let vector: Vec<f32> = blob
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let similarity = cosine(&vector, &hashing::embed_one(text));
        assert!(similarity > 0.9999, "row {row} ({text}): {similarity}");
    }
}

/// `texts` in order: requests in flight together arrive in any order.
fn sorted(texts: &[String]) -> Vec<String> {
    let mut texts = texts.to_vec();
    texts.sort();
    texts
}

/// How many texts the server has seen so far.
fn sent(server: &FakeOpenAi) -> usize {
    server.texts().len()
}

#[test]
fn a_v2_with_one_changed_row_sends_exactly_that_row() {
    let server = FakeOpenAi::start();
    let daemon = Daemon::start_embedding(&server.embedding_toml(""), "");
    daemon.drop_file("g", "a.csv", &marked_csv("plain", 40));
    daemon.wait_embedded("g", "a.csv", "v1");
    assert_eq!(sent(&server), 40);

    let mut v2 = String::from_utf8(marked_csv("plain", 40)).unwrap();
    v2 = v2.replace("17,north17,plain item 17", "17,north17,changed item 17");
    daemon.drop_file("g", "a.csv", v2.as_bytes());
    daemon.wait_embedded("g", "a.csv", "v2");
    assert_eq!(
        server.texts()[40..],
        ["a.csv | g | id: 17; region: north17; note: changed item 17".to_string()],
        "only the changed row goes to the server"
    );
    assert_every_row_has_its_own_vector(&daemon, "a.csv", 40);
    let embeddings = daemon.show("g", "a.csv").embeddings.unwrap();
    assert_eq!((embeddings.version.as_str(), embeddings.rows), ("v2", 40));

    // A plain re-embed of an unchanged source sends nothing at all, and still swaps.
    let out = daemon.ctl(&["reembed", "a.csv", "-g", "g", "--wait"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(sent(&server), 41);
    assert_every_row_has_its_own_vector(&daemon, "a.csv", 40);
    wait_trash_emptied(&daemon);
    assert_eq!(
        daemon.count("SELECT COUNT(*) FROM vectors"),
        40,
        "the old generations are gone"
    );
    assert_no_orphans(&daemon);
}

#[test]
fn a_retry_after_a_failure_mid_job_sends_only_the_rows_not_yet_written() {
    let server = FakeOpenAi::start();
    // One request at a time, so "the rows before the failure" is exact.
    server.behaviour.fail_request.store(4, Ordering::SeqCst);
    let daemon = Daemon::start_embedding(
        &server.embedding_toml_with("max_attempts = 3", "max_in_flight = 1"),
        "",
    );
    daemon.drop_file("g", "a.csv", &marked_csv("plain", 64));
    daemon.wait_embedded("g", "a.csv", "v1");
    let job = &daemon.jobs()[0];
    assert_eq!(
        (job.state, job.attempt),
        (JobState::Completed, 2),
        "{job:?}"
    );
    // Requests 1-3 (rows 1-24) were answered and written; request 4 (rows 25-32) failed.
    // The second try sends rows 25-64 and nothing before.
    let all = rendered("a.csv", "plain", 0..64);
    let expected: Vec<String> = [&all[..32], &all[24..]].concat();
    assert_eq!(server.texts(), expected);
    assert_every_row_has_its_own_vector(&daemon, "a.csv", 64);
    assert_no_orphans(&daemon);
}

#[test]
fn a_model_change_reuses_nothing() {
    let server = FakeOpenAi::start();
    let mut daemon = Daemon::start_embedding(&server.embedding_toml(""), "");
    daemon.drop_file("g", "a.csv", &marked_csv("plain", 20));
    daemon.wait_embedded("g", "a.csv", "v1");
    assert_eq!(sent(&server), 20);
    daemon.stop();
    let config = std::fs::read_to_string(&daemon.config).unwrap();
    std::fs::write(
        &daemon.config,
        config.replace("model = \"fake-model\"", "model = \"other-model\""),
    )
    .unwrap();
    daemon.spawn();
    let out = daemon.ctl(&["reembed", "a.csv", "-g", "g", "--wait"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(sent(&server), 40, "every row again, for the new model");
    assert_eq!(sorted(&server.texts()[20..]), sorted(&server.texts()[..20]));
    assert_eq!(
        daemon.show("g", "a.csv").embeddings.unwrap().model,
        "other-model"
    );
    assert_every_row_has_its_own_vector(&daemon, "a.csv", 20);
    assert_no_orphans(&daemon);
}

#[test]
fn a_preference_change_that_alters_the_text_reuses_nothing() {
    let server = FakeOpenAi::start();
    let daemon = Daemon::start_embedding(&server.embedding_toml(""), "");
    daemon.drop_file("g", "a.csv", &marked_csv("plain", 20));
    daemon.wait_embedded("g", "a.csv", "v1");
    let out = daemon.ctl(&["prefs", "set", "-g", "g", "--columns", "note"]);
    assert!(out.status.success(), "{out:?}");
    let out = daemon.ctl(&["reembed", "a.csv", "-g", "g", "--wait"]);
    assert!(out.status.success(), "{out:?}");
    let expected: Vec<String> = (0..20)
        .map(|i| format!("a.csv | g | note: plain item {i}"))
        .collect();
    assert_eq!(
        sorted(&server.texts()[20..]),
        sorted(&expected),
        "every row, as its new text"
    );
    assert_every_row_has_its_own_vector(&daemon, "a.csv", 20);
    assert_no_orphans(&daemon);
}

#[test]
fn identical_rows_in_one_file_are_embedded_once() {
    let server = FakeOpenAi::start();
    let daemon = Daemon::start_embedding(&server.embedding_toml(""), "");
    let mut csv = String::from("region,note\n");
    for i in 0..30 {
        csv.push_str(["north,same\n", "south,same\n", "east,other\n"][i % 3]);
    }
    daemon.drop_file("g", "dup.csv", csv.as_bytes());
    daemon.wait_embedded("g", "dup.csv", "v1");
    let mut texts = server.texts();
    texts.sort();
    assert_eq!(
        texts,
        [
            "dup.csv | g | region: east; note: other",
            "dup.csv | g | region: north; note: same",
            "dup.csv | g | region: south; note: same",
        ]
    );
    assert_every_row_has_its_own_vector(&daemon, "dup.csv", 30);
    assert_no_orphans(&daemon);
}

#[test]
fn answers_that_come_back_out_of_order_land_in_row_order() {
    let server = FakeOpenAi::start();
    // Of four requests sent together, the first answers last.
    server.behaviour.stagger_ms.store(80, Ordering::SeqCst);
    let daemon = Daemon::start_embedding(&server.embedding_toml_with("", "max_in_flight = 4"), "");
    daemon.drop_file("g", "a.csv", &marked_csv("plain", 96));
    daemon.wait_embedded("g", "a.csv", "v1");
    assert_eq!(
        server.max_in_flight(),
        4,
        "four requests at once, never more"
    );
    let answered = server.seen.answered.lock().unwrap().clone();
    assert_eq!(answered.len(), 12);
    assert!(
        answered.windows(2).any(|w| w[0] > w[1]),
        "answers came back in order: {answered:?}"
    );
    assert_every_row_has_its_own_vector(&daemon, "a.csv", 96);
    let texts: Vec<String> = active_rows(&daemon, "g", "a.csv")
        .into_iter()
        .map(|(_, text, _)| text)
        .collect();
    assert_eq!(texts, rendered("a.csv", "plain", 0..96));
}

/// A thread of MiniLM's compute pool (`minilm-0`, …), not its search thread.
fn compute(name: &str) -> bool {
    name.strip_prefix("minilm-")
        .is_some_and(|n| n.parse::<usize>().is_ok())
}

/// Name, nice value and scheduling policy (0 normal, 5 `SCHED_IDLE`) of each thread of `pid`,
/// from /proc/<pid>/task/*/stat.
fn threads(pid: u32) -> Vec<(String, i32, i32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        let (open, close) = (stat.find('(').unwrap(), stat.rfind(')').unwrap());
        let name = stat[open + 1..close].to_string();
        // Fields after the name: state is the 3rd field of the line, nice the 19th, the
        // policy the 41st.
        let field = |n: usize| -> i32 {
            stat[close + 2..]
                .split(' ')
                .nth(n - 3)
                .unwrap()
                .parse()
                .unwrap()
        };
        out.push((name, field(19), field(41)));
    }
    out
}

#[test]
fn embedding_threads_run_ten_nice_levels_below_the_rest_of_the_daemon() {
    let server = FakeOpenAi::start();
    server.behaviour.delay_ms.store(300, Ordering::SeqCst);
    let daemon = Daemon::start_embedding(&server.embedding_toml_with("", "max_in_flight = 2"), "");
    let pid = daemon.pid();
    daemon.drop_file("g", "a.csv", &marked_csv("plain", 200));
    wait_job(&daemon, "the job to run", |j| {
        j.state == JobState::Processing
    });
    // The runner, its writer and its two request threads (which keep the runner's name).
    let seen = wait_for("the embedding threads to be running", || {
        let all = threads(pid);
        let embedding = all.iter().filter(|(n, ..)| n.starts_with("embed-")).count();
        (embedding >= 4).then_some(all)
    });
    let base = seen
        .iter()
        .find(|(name, ..)| name == "ingestd")
        .map(|(_, nice, _)| *nice)
        .expect("the main thread");
    for (name, nice, policy) in &seen {
        let want = if name.starts_with("embed-") {
            (base + 10).min(19)
        } else {
            base
        };
        assert_eq!((*nice, *policy), (want, 0), "thread {name}: {seen:?}");
    }
    server.behaviour.delay_ms.store(0, Ordering::SeqCst);
    daemon.wait_embedded("g", "a.csv", "v1");
}

#[test]
fn minilm_computes_below_the_rest_of_the_daemon_on_all_cores_but_one() {
    let Ok(dir) = std::env::var("MINILM_TEST_MODEL_DIR") else {
        crate::helper::skip("set MINILM_TEST_MODEL_DIR to a fetched all-MiniLM-L6-v2 folder");
        return;
    };
    let daemon = Daemon::start_embedding(
        &format!("provider = \"minilm\"\nmodel_dir = \"{dir}\"\nauto_fetch = false\n"),
        "",
    );
    let pid = daemon.pid();
    daemon.drop_file("g", "a.csv", &marked_csv("plain", 3000));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // A pool thread has its name before it lowers itself: wait until every one has done so
    // (or the test's global timeout), then check everything in one snapshot.
    let seen = wait_for("MiniLM's compute threads", || {
        let all = threads(pid);
        let lowered = all
            .iter()
            .filter(|(n, _, policy)| compute(n) && *policy == 5)
            .count();
        (lowered >= cores.saturating_sub(1).max(1)).then_some(all)
    });
    let pool: Vec<&(String, i32, i32)> = seen.iter().filter(|(n, ..)| compute(n)).collect();
    assert_eq!(pool.len(), cores.saturating_sub(1).max(1), "{seen:?}");
    let base = seen.iter().find(|(n, ..)| n == "ingestd").unwrap().1;
    for (name, nice, policy) in &seen {
        // The compute threads run SCHED_IDLE (5), the job's own threads 10 nice levels down.
        let want = if compute(name) {
            ((base + 10).min(19), 5)
        } else if name.starts_with("embed-") {
            ((base + 10).min(19), 0)
        } else {
            (base, 0)
        };
        assert_eq!((*nice, *policy), want, "thread {name}: {seen:?}");
    }
    // A search's text goes through a thread of its own at the daemon's priority, although the
    // model was loaded on a job's lowered thread. Whether the group has vectors yet does not
    // matter: the text is embedded first.
    let _ = daemon.client().call(&ingestd::protocol::cmd::Search {
        text: "plain".into(),
        group: Some("g".into()),
        k: Some(1),
    });
    let query = threads(pid)
        .into_iter()
        .find(|(n, ..)| n == "minilm-query")
        .expect("the search thread");
    assert_eq!((query.1, query.2), (base, 0), "{query:?}");
}
