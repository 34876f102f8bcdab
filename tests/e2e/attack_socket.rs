//! Socket users as attackers: the real daemon, run as root, and the attacker an unprivileged
//! uid in a child process (`setpriv` re-runs this test binary's `attacker_child`, which does
//! what its plan says). Each test asserts what the attacker gets — bounded disk, bounded
//! memory, its own capped share of connections and parse workers — and that root's
//! `ingestctl status` still answers while the flood holds its slots.
//!
//! Tests that need root to switch users print why and return when not run as root.

use crate::helper::{Daemon, TIMEOUT, csv, ingestctl_path};
use ingestd::client::Client;
use ingestd::protocol::{AuditEntry, ErrorCode, cmd};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

const PLAN: &str = "INGESTD_ATTACK_PLAN";
const SOCKET: &str = "INGESTD_ATTACK_SOCKET";
/// The unprivileged uid of most attacks (nobody).
const NOBODY: u32 = 65534;

fn root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    crate::helper::skip("not root: cannot run the attacker as another uid");
    false
}

/// A daemon as root with a socket every user may reach, admins = root, and `server` and
/// `ingest` TOML keys under those tables.
fn open_daemon(server: &str, ingest: &str) -> Daemon {
    use std::os::unix::fs::PermissionsExt;
    let daemon = Daemon::start_with(&format!(
        "[ingest]\nsettle_ms = 150\n{ingest}\n\
         [server]\nsocket_mode = \"0666\"\nadmins = [\"root\"]\n{server}\n"
    ));
    for dir in [daemon.dir.path(), daemon.socket.parent().unwrap()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    daemon
}

/// The attacker: this test binary run as `uid`, doing `plan`.
struct Attacker {
    child: Child,
    /// What it said it did ("held 16 refused 4", …).
    report: String,
}

impl Attacker {
    /// Start `plan` as `uid` and wait until the child reports what it did (it may keep
    /// holding its connections until dropped).
    fn start(daemon: &Daemon, uid: u32, plan: &str) -> Attacker {
        let mut child = Process::new("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"))
            .args(["--clear-groups", "--"])
            .arg(std::env::current_exe().unwrap())
            .args([
                "attack_socket::attacker_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(PLAN, plan)
            .env(SOCKET, &daemon.socket)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run setpriv");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest may have started the line ("test … ... ") before the report.
                match line.split_once("ATTACK ").map(|(_, report)| report) {
                    Some(report) => {
                        let _ = tx.send(report.to_string());
                    }
                    None => eprintln!("attacker: {line}"),
                }
            }
        });
        let Ok(report) = rx.recv_timeout(TIMEOUT) else {
            let _ = child.kill();
            panic!("the attacker ({plan}) reported nothing: {:?}", child.wait());
        };
        eprintln!("attacker uid {uid} [{plan}]: {report}");
        Attacker { child, report }
    }

    /// The number after `word` in the report.
    fn count(&self, word: &str) -> usize {
        let words: Vec<&str> = self.report.split_whitespace().collect();
        let at = words
            .iter()
            .position(|w| *w == word)
            .unwrap_or_else(|| panic!("no {word} in {:?}", self.report));
        words[at + 1].parse().unwrap()
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Root's `ingestctl status`: it must answer; returns how long it took.
fn root_status(daemon: &Daemon) -> Duration {
    let started = Instant::now();
    let out = daemon.ctl(&["status"]);
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "root's status failed during the flood: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < Duration::from_secs(5), "root's status took {took:?}");
    took
}

/// The real ingestctl as `uid`.
fn ctl_as(daemon: &Daemon, uid: u32, args: &[&str]) -> std::process::Output {
    Process::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .args(["--clear-groups", "--"])
        .arg(ingestctl_path())
        .arg("--socket")
        .arg(&daemon.socket)
        .args(args)
        .env_remove("INGESTD_CONFIG")
        .env_remove("INGESTD_SOCKET")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv")
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Bytes the daemon keeps on disk for its state: catalog (with WAL) and audit.jsonl.
fn state_bytes(daemon: &Daemon) -> u64 {
    std::fs::read_dir(daemon.dir.path().join("state"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

// ---- finding 5: bounded requests, bounded and coalesced audit ----

#[test]
fn refused_requests_are_bounded_and_coalesced_per_uid() {
    if !root() {
        return;
    }
    let mut daemon = open_daemon("", "");
    daemon.drop_file("g", "a.csv", &csv(1, 2));
    daemon.wait_stored("g", "a.csv");
    let before = state_bytes(&daemon);
    // 200 refused deletes of 1,000 names of 250 bytes, then 10,000 small ones.
    let big = Attacker::start(&daemon, NOBODY, "rm 200 1000");
    assert_eq!(big.count("denied"), 200, "{}", big.report);
    root_status(&daemon);
    let many = Attacker::start(&daemon, NOBODY, "rm 10000 1");
    assert_eq!(many.count("denied"), 10_000, "{}", many.report);
    let took = root_status(&daemon);
    eprintln!("root status after 10,200 refusals: {took:?}");
    // Over the limits: refused as bad arguments before any work, and not audited.
    let over = Attacker::start(&daemon, NOBODY, "rm 1 1001");
    assert_eq!(over.count("bad_args"), 1, "{}", over.report);
    let long = Attacker::start(&daemon, NOBODY, "rmlong 1");
    assert_eq!(long.count("bad_args"), 1, "{}", long.report);
    let grown = state_bytes(&daemon).saturating_sub(before);
    eprintln!("catalog and audit.jsonl grew by {grown} bytes for 10,202 refused requests");
    assert!(grown < 1_000_000, "grew {grown} bytes");
    assert_eq!(daemon.ls(Some("g")).len(), 1, "nothing deleted");
    // A stop writes the summary of the open window: one record for the rest.
    daemon.stop();
    let refused: Vec<_> = daemon
        .audit()
        .into_iter()
        .filter(|r| r["outcome"] == "refused")
        .collect();
    // One full record per window of 60 s (one, unless this machine is very slow), then
    // one summary counting the rest; together they account for every refusal.
    assert!((2..=6).contains(&refused.len()), "{refused:#?}");
    let mut accounted = 0;
    for record in &refused {
        assert_eq!(record["actor"]["uid"], NOBODY);
        let detail = record["detail"].as_str().unwrap();
        assert!(detail.len() <= 4096, "{}", detail.len());
        accounted += match detail.split_once(" more refused requests") {
            Some((count, _)) => count.parse::<usize>().unwrap(),
            None => {
                assert!(detail.contains("wanted to delete"), "{detail}");
                1
            }
        };
    }
    assert_eq!(accounted, 10_200);
    let first = refused[0]["detail"].as_str().unwrap();
    assert!(
        first.ends_with("more"),
        "the first targets and a count: {first}"
    );
}

// ---- finding 6: bounded answers ----

/// `count` audit records with `detail_bytes` of detail each, written straight into the
/// catalog (as an operator's long history would be).
fn seed_audit(daemon: &Daemon, count: usize, detail_bytes: usize) {
    let mut conn = rusqlite::Connection::open(daemon.dir.path().join("state/ingestd.sqlite"))
        .expect("open the catalog");
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO audit (time, actor_uid, actor_user, via, action, group_name,
                    source, version, job, outcome, detail)
                 VALUES (?1, 0, 'root', 'socket', 'prefs', 'g', NULL, NULL, NULL, 'ok', ?2)",
            )
            .unwrap();
        let now = jiff::Timestamp::now().as_millisecond();
        for i in 0..count {
            let detail = format!("{i:>width$}", width = detail_bytes);
            insert
                .execute(rusqlite::params![now - i as i64, detail])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

#[test]
fn audit_pages_with_a_cursor_and_refuses_more_than_the_cap() {
    let daemon = Daemon::start();
    daemon.group("g");
    seed_audit(&daemon, 2500, 10);
    let mut client = daemon.client();
    let page = |client: &mut Client, before: Option<i64>| -> Vec<AuditEntry> {
        client
            .call(&cmd::Audit {
                group: None,
                all: true,
                since: None,
                action: None,
                limit: Some(1000),
                before,
            })
            .unwrap()
    };
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let entries = page(&mut client, before);
        if entries.is_empty() {
            break;
        }
        assert!(entries.len() <= 1000);
        before = entries.last().unwrap().id;
        seen.extend(entries);
    }
    assert_eq!(seen.len(), 2500, "every record once");
    assert!(
        seen.windows(2).all(|w| w[0].time >= w[1].time),
        "newest first"
    );
    let mut ids: Vec<i64> = seen.iter().map(|e| e.id.unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 2500, "no record twice");
    let error = client
        .request(&cmd::Audit {
            group: None,
            all: true,
            since: None,
            action: None,
            limit: Some(1001),
            before: None,
        })
        .unwrap_err();
    assert_eq!(error.daemon_error().unwrap().code, ErrorCode::BadArgs);
    // The client pages the same way and says how to go on.
    let out = daemon.ctl(&["audit", "--all", "--limit", "1000"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let hint = text.lines().last().unwrap();
    assert!(hint.contains("ingestctl audit --before"), "{hint}");
    let cursor = hint
        .split("--before ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap();
    let next = daemon.ctl_json(&["audit", "--all", "--limit", "1000", "--before", cursor]);
    assert_eq!(next.as_array().unwrap().len(), 1000);
    assert_eq!(next[0]["id"], seen[1000].id.unwrap());
    let refused = daemon.ctl(&["audit", "--all", "--limit", "5000"]);
    assert_eq!(refused.status.code(), Some(2), "a usage error");
}

#[test]
fn clients_that_never_read_the_biggest_answer_hold_bounded_memory() {
    if !root() {
        return;
    }
    let daemon = open_daemon("", "");
    daemon.group("g");
    // 3,000 records of 4 KB: the biggest page is 1,000 of them, about 4 MB of JSON.
    seed_audit(&daemon, 3000, 4000);
    let baseline = rss_kb(daemon.pid());
    let attack = Attacker::start(&daemon, NOBODY, "audit 10");
    assert_eq!(attack.count("sent"), 10, "{}", attack.report);
    // The answers are stuck in the sockets until the write timeout (10 s) drops them.
    let mut peak = baseline;
    let mut slowest = Duration::ZERO;
    let until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < until {
        peak = peak.max(rss_kb(daemon.pid()));
        slowest = slowest.max(root_status(&daemon));
    }
    let after = rss_kb(daemon.pid());
    eprintln!(
        "daemon RSS: {baseline} kB before, {peak} kB at most with 10 stalled readers of \
         1,000 × 4 KB records, {after} kB after; root status at most {slowest:?}"
    );
    assert!(
        peak < baseline + 150 * 1024,
        "RSS grew from {baseline} kB to {peak} kB"
    );
    drop(attack);
    root_status(&daemon);
}

/// `count` finished jobs with `error_bytes` of error text each, written straight into the
/// catalog beside the daemon's own first job (as a long-lived queue's history would be).
fn seed_jobs(daemon: &Daemon, count: usize, error_bytes: usize) {
    let mut conn = rusqlite::Connection::open(daemon.dir.path().join("state/ingestd.sqlite"))
        .expect("open the catalog");
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO jobs (group_id, source_id, version_id, state, reason, attempt,
                    max_attempts, error, queued_at, finished_at)
                 SELECT group_id, source_id, version_id, 'cancelled', reason, 1, max_attempts,
                        ?1, queued_at, queued_at
                   FROM jobs ORDER BY id LIMIT 1",
            )
            .unwrap();
        for i in 0..count {
            let error = format!("{i:>width$}", width = error_bytes);
            assert_eq!(insert.execute([error]).unwrap(), 1, "no job to copy");
        }
    }
    tx.commit().unwrap();
}

#[test]
fn jobs_page_with_a_cursor_and_refuse_more_than_the_cap() {
    let daemon = Daemon::start();
    daemon.drop_file("g", "a.csv", &csv(1, 2));
    daemon.wait_embedded("g", "a.csv", "v1");
    seed_jobs(&daemon, 2500, 10);
    let mut client = daemon.client();
    let page = |client: &mut Client, before: Option<i64>| -> Vec<ingestd::protocol::JobInfo> {
        client
            .call(&cmd::Jobs {
                group: None,
                all: true,
                state: None,
                ids: Vec::new(),
                limit: None,
                before,
            })
            .unwrap()
    };
    let first = page(&mut client, None);
    assert_eq!(first.len(), 1000, "one page at most");
    assert!(
        first.windows(2).all(|w| w[0].id < w[1].id),
        "oldest first within a page"
    );
    // The helper pages with `before` the way a script would.
    let all = daemon.jobs();
    assert_eq!(all.len(), 2501, "every job once");
    assert!(
        all.windows(2).all(|w| w[0].id < w[1].id),
        "in order, none twice"
    );
    let ids = |jobs: &[ingestd::protocol::JobInfo]| jobs.iter().map(|j| j.id).collect::<Vec<_>>();
    assert_eq!(
        ids(&all[1501..]),
        ids(&first),
        "the first page is the newest"
    );
    let before_first = page(&mut client, Some(first[0].id));
    assert_eq!(before_first.len(), 1000);
    assert_eq!(before_first.last().unwrap().id, all[1500].id);
    for limit in [0, 1001, 100_000] {
        let error = client
            .request(&cmd::Jobs {
                group: None,
                all: true,
                state: None,
                ids: Vec::new(),
                limit: Some(limit),
                before: None,
            })
            .unwrap_err();
        let error = error.daemon_error().unwrap();
        assert_eq!(error.code, ErrorCode::BadArgs);
        assert!(error.message.contains("before"), "{error:?}");
    }
    // The client shows one page and says how to get the one before it.
    let out = daemon.ctl(&["jobs", "--all"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let hint = text.lines().last().unwrap();
    assert!(hint.contains("ingestctl jobs --before"), "{hint}");
    let cursor = hint
        .split("--before ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap();
    assert_eq!(cursor, first[0].id.to_string());
    let next = daemon.ctl_json(&["jobs", "--all", "--before", cursor]);
    assert_eq!(next.as_array().unwrap().len(), 1000);
    assert_eq!(next[999]["id"], all[1500].id);
    // Named jobs are all shown, however many, in requests the daemon accepts.
    let ids: Vec<String> = all[..1200].iter().map(|j| j.id.to_string()).collect();
    let mut args = vec!["jobs"];
    args.extend(ids.iter().map(String::as_str));
    let named = daemon.ctl_json(&args);
    assert_eq!(named.as_array().unwrap().len(), 1200);
}

#[test]
fn clients_that_never_read_the_biggest_jobs_page_hold_bounded_memory() {
    if !root() {
        return;
    }
    let daemon = open_daemon("", "");
    daemon.drop_file("g", "a.csv", &csv(1, 2));
    daemon.wait_embedded("g", "a.csv", "v1");
    // 3,000 jobs with 4 KB errors: the biggest page is 1,000 of them, about 4 MB of JSON.
    seed_jobs(&daemon, 3000, 4000);
    let baseline = rss_kb(daemon.pid());
    let attack = Attacker::start(&daemon, NOBODY, "jobs 10");
    assert_eq!(attack.count("sent"), 10, "{}", attack.report);
    let mut peak = baseline;
    let mut slowest = Duration::ZERO;
    let until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < until {
        peak = peak.max(rss_kb(daemon.pid()));
        slowest = slowest.max(root_status(&daemon));
    }
    let after = rss_kb(daemon.pid());
    eprintln!(
        "daemon RSS: {baseline} kB before, {peak} kB at most with 10 stalled readers of \
         1,000 × 4 KB jobs, {after} kB after; root status at most {slowest:?}"
    );
    assert!(
        peak < baseline + 150 * 1024,
        "RSS grew from {baseline} kB to {peak} kB"
    );
    drop(attack);
    root_status(&daemon);
}

// ---- finding 7: connection fairness ----

const FAIR: &str = "max_connections = 40\nadmin_connections = 8\nmax_connections_per_uid = 6\n\
                    max_followers_per_uid = 2\nfirst_request_timeout_secs = 900\n\
                    idle_timeout_secs = 900\n";

#[test]
fn a_flood_of_idle_connections_by_many_users_never_locks_root_out() {
    if !root() {
        return;
    }
    let daemon = open_daemon(FAIR, "");
    // One user holds its cap of idle connections and is refused beyond it.
    let idle = Attacker::start(&daemon, NOBODY, "idle 10");
    assert_eq!(idle.count("held"), 6, "{}", idle.report);
    assert_eq!(idle.count("refused"), 4, "{}", idle.report);
    // Many users together, with half-written lines, fill every slot not kept for admins
    // (40 - 8 = 32).
    let mut crowd = Vec::new();
    for uid in 60_001..60_006 {
        crowd.push(Attacker::start(&daemon, uid, "half 6"));
    }
    let held: usize = idle.count("held") + crowd.iter().map(|a| a.count("held")).sum::<usize>();
    assert_eq!(held, 32, "the open slots are full");
    let late = ctl_as(&daemon, 60_100, &["status"]);
    assert!(!late.status.success(), "a 33rd user connection is refused");
    let said = String::from_utf8_lossy(&late.stderr);
    assert!(said.contains("server.max_connections"), "{said}");
    // Root still gets in, at once, again and again.
    for _ in 0..5 {
        let took = root_status(&daemon);
        eprintln!("root status with every open slot held: {took:?}");
    }
}

#[test]
fn slow_first_requests_and_idle_connections_lose_their_slots() {
    if !root() {
        return;
    }
    let daemon = open_daemon(
        "max_connections_per_uid = 4\nfirst_request_timeout_secs = 2\nidle_timeout_secs = 3\n",
        "",
    );
    // Half-written first lines are closed after the first-request timeout...
    let half = Attacker::start(&daemon, NOBODY, "halfwait 4");
    assert_eq!(half.count("closed"), 4, "{}", half.report);
    let after = half.count("after_ms");
    assert!((1500..30_000).contains(&after), "{}", half.report);
    // ...and connections that asked once and went quiet after the idle timeout.
    let idle = Attacker::start(&daemon, NOBODY, "idlewait 4");
    assert_eq!(idle.count("closed"), 4, "{}", idle.report);
    let after = idle.count("after_ms");
    assert!((2500..30_000).contains(&after), "{}", idle.report);
    // The slots are free again.
    let out = ctl_as(&daemon, NOBODY, &["status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn events_followers_are_capped_per_uid_but_not_for_root() {
    if !root() {
        return;
    }
    let daemon = open_daemon(FAIR, "");
    daemon.group("g");
    let followers = Attacker::start(&daemon, NOBODY, "follow 5");
    assert_eq!(followers.count("held"), 2, "{}", followers.report);
    assert_eq!(followers.count("refused"), 3, "{}", followers.report);
    // Root follows as many as it likes.
    let mut mine = Vec::new();
    for _ in 0..4 {
        let mut client = daemon.client();
        client
            .request(&cmd::Events {
                group: None,
                all: true,
            })
            .expect("root may follow");
        mine.push(client);
    }
    root_status(&daemon);
    // A drop reaches root's followers while the attacker's are held.
    daemon.drop_file("g", "a.csv", &csv(1, 1));
    for client in &mut mine {
        client.set_timeout(Some(TIMEOUT)).unwrap();
        let event = client.next_data().unwrap().expect("an event");
        assert_eq!(event["group"], "g");
    }
}

// ---- finding 8: preview caps ----

/// An XLSX big enough that reading it takes a parse worker a noticeable time.
fn big_xlsx(rows: u32) -> Vec<u8> {
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    for (col, name) in ["id", "region", "amount", "note"].iter().enumerate() {
        sheet.write_string(0, col as u16, *name).unwrap();
    }
    for row in 1..=rows {
        sheet.write_number(row, 0, row as f64).unwrap();
        sheet.write_string(row, 1, "north-east").unwrap();
        sheet.write_number(row, 2, row as f64 * 1.5).unwrap();
        sheet
            .write_string(row, 3, "a note long enough to matter")
            .unwrap();
    }
    book.save_to_buffer().unwrap()
}

/// Parse workers (child processes) the daemon runs right now.
fn workers_of(pid: u32) -> usize {
    let parent = format!("PPid:\t{pid}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read_to_string(e.path().join("status"))
                .is_ok_and(|s| s.lines().any(|l| l == parent))
        })
        .count()
}

#[test]
fn previews_are_capped_per_uid_and_queued_globally() {
    if !root() {
        return;
    }
    let daemon = open_daemon("previews_per_uid = 2", "workers = 2");
    daemon.drop_file("g", "big.xlsx", &big_xlsx(40_000));
    daemon.wait_embedded("g", "big.xlsx", "v1");
    // 20 parallel previews by one user: two at a time run, the rest are refused with why.
    let flood = Attacker::start(&daemon, NOBODY, "preview 20 g big.xlsx");
    let (ok, refused) = (flood.count("ok"), flood.count("refused"));
    assert_eq!(ok + refused, 20, "{}", flood.report);
    assert!(ok >= 2 && refused >= 1, "{}", flood.report);
    root_status(&daemon);
    // Root is not capped per uid, but shares the global cap: its previews wait their turn.
    let pid = daemon.pid();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let done = std::sync::Arc::clone(&done);
        std::thread::spawn(move || {
            let mut most = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(workers_of(pid));
                std::thread::sleep(Duration::from_millis(5));
            }
            most
        })
    };
    let previews: Vec<_> = (0..6)
        .map(|_| {
            let socket = daemon.socket.clone();
            std::thread::spawn(move || {
                let mut client = Client::connect(&socket).unwrap();
                client.set_timeout(Some(TIMEOUT)).unwrap();
                client.request(&cmd::Show {
                    source: "big.xlsx".into(),
                    group: Some("g".into()),
                    preview: Some(3),
                    prefs: None,
                })
            })
        })
        .collect();
    for preview in previews {
        let answer = preview.join().unwrap().expect("root's previews all run");
        assert_eq!(answer["preview"].as_array().unwrap().len(), 3);
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let most = watcher.join().unwrap();
    eprintln!("at most {most} parse workers ran for 6 parallel previews");
    // At least one: a poller that never saw a worker proves nothing about the cap.
    assert!(most >= 1, "the poller never saw a parse worker");
    assert!(most <= 2, "{most} parse workers at once");
}

/// Previews and ingest share one cap on parse workers: with `ingest.workers = 1` and an ingest
/// held mid-file (a debug-build hook), a user's preview waits — it is not refused — and
/// answers once the file is done; the same user's next preview, beyond
/// `server.previews_per_uid = 1`, is refused with the key named.
#[cfg(debug_assertions)]
#[test]
fn a_preview_waits_for_the_parse_worker_an_ingest_holds() {
    if !root() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let pause = tempfile::tempdir().unwrap();
    let pause_dir = pause.path().to_path_buf();
    let mut daemon = Daemon::configure(
        "[ingest]\nsettle_ms = 150\nworkers = 1\n\
         [server]\nsocket_mode = \"0666\"\nadmins = [\"root\"]\npreviews_per_uid = 1\n",
    );
    daemon.launch(|c| {
        c.env("INGEST_TEST_PAUSE_DIR", &pause_dir);
    });
    daemon.wait_ready();
    for dir in [daemon.dir.path(), daemon.socket.parent().unwrap()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let go = |base: &str| {
        let paused = pause.path().join(format!("{base}.paused"));
        crate::helper::wait_for(&format!("the ingest worker to hold at {base}"), || {
            paused.exists().then_some(())
        });
        std::fs::remove_file(&paused).unwrap();
        std::fs::write(pause.path().join(format!("{base}.go")), b"").unwrap();
    };
    daemon.drop_file("g", "a.csv", &csv(4, 3));
    go("g.a.csv");
    go("g.a.csv.remove");
    daemon.wait_stored("g", "a.csv");
    // The one worker takes the next file and is held before reading it.
    daemon.drop_file("g", "b.csv", &csv(2, 3));
    let held = pause.path().join("g.b.csv.paused");
    crate::helper::wait_for("the ingest of b.csv to hold", || {
        held.exists().then_some(())
    });
    let mut waiting = Process::new("setpriv")
        .arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .args(["--clear-groups", "--"])
        .arg(ingestctl_path())
        .arg("--socket")
        .arg(&daemon.socket)
        .args(["--json", "show", "-g", "g", "a.csv", "--preview", "2"])
        .env_remove("INGESTD_CONFIG")
        .env_remove("INGESTD_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run setpriv");
    crate::helper::wait_for("the preview to wait for a parse worker", || {
        daemon
            .log_text()
            .lines()
            .any(|l| l.contains("a preview waits for a parse worker") && l.contains("65534"))
            .then_some(())
    });
    // Waiting holds the user's one preview: the next is refused, with the key named.
    let refused = ctl_as(
        &daemon,
        NOBODY,
        &["show", "-g", "g", "a.csv", "--preview", "2"],
    );
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("server.previews_per_uid"), "{said}");
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "the first preview answered while the only parse worker was held"
    );
    root_status(&daemon);
    // The file goes on; then the preview gets the worker and answers.
    std::fs::remove_file(&held).unwrap();
    std::fs::write(pause.path().join("g.b.csv.go"), b"").unwrap();
    go("g.b.csv.remove");
    let out = waiting.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let detail: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(detail["preview"].as_array().unwrap().len(), 2, "{detail}");
    daemon.wait_stored("g", "b.csv");
}

// ---- finding 12, client side: terminal escaping ----

#[test]
fn names_columns_and_previews_are_printed_escaped_and_json_keeps_them() {
    let daemon = Daemon::start();
    let hostile = "id,\x1b]0;owned\x07name,\u{202e}amount\n1,\x1b[2Jwipe,\u{9b}31m5\n";
    daemon.drop_file("g", "t.csv", hostile.as_bytes());
    daemon.wait_embedded("g", "t.csv", "v1");
    for args in [
        &["ls", "-g", "g"][..],
        &["show", "-g", "g", "t.csv", "--preview", "1"],
        &["audit", "--all"],
        &["prefs", "-g", "g"],
    ] {
        let out = daemon.ctl(args);
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        for bad in ['\x1b', '\x07', '\u{9b}', '\u{202e}'] {
            assert!(!text.contains(bad), "{args:?} printed {bad:?} raw:\n{text}");
        }
        if args[0] == "show" {
            // (The reader drops ESC from headers itself; BEL is kept and shown escaped.)
            assert!(text.contains("owned\\x07name"), "{text}");
            assert!(text.contains("\\u{202e}amount"), "{text}");
            assert!(
                text.contains("\\x1b[2Jwipe") && text.contains("\\x9b31m5"),
                "{text}"
            );
        }
    }
    let json = daemon.ctl_json(&["show", "-g", "g", "t.csv", "--preview", "1"]);
    let columns: Vec<&str> = json["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        columns.iter().any(|c| c.contains("owned\x07name")),
        "{columns:?}"
    );
    assert!(columns.contains(&"\u{202e}amount"), "{columns:?}");
    let preview = json["preview"][0].as_str().unwrap();
    assert!(
        preview.contains("\x1b[2Jwipe") && preview.contains('\u{9b}'),
        "{preview:?}"
    );
}

// ---- the admin gate, end to end ----

#[test]
fn every_state_change_is_refused_for_nobody_and_every_read_is_open() {
    if !root() {
        return;
    }
    let daemon = open_daemon("", "");
    daemon.drop_file("g", "a.csv", &csv(1, 3));
    daemon.wait_embedded("g", "a.csv", "v1");
    let job = daemon.jobs()[0].id.to_string();
    let changes: &[&[&str]] = &[
        &["rm", "-g", "g", "--yes", "a.csv"],
        &["rm", "-g", "g", "--yes", "--force", "a.csv@v1"],
        &["prefs", "-g", "g", "set", "--columns", "name"],
        &["prefs", "-g", "g", "set", "--reembed"],
        &["reembed", "-g", "g", "a.csv"],
        &["reembed", "-g", "g", "--all"],
        &["retry", &job],
        &["retry", "-g", "g", "--failed"],
        &["cancel", &job],
        &["fsck", "--repair"],
    ];
    for args in changes {
        let out = ctl_as(&daemon, NOBODY, args);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {said}");
        assert!(said.contains("permission denied"), "{args:?}: {said}");
    }
    let reads: &[&[&str]] = &[
        &["status"],
        &["groups"],
        &["ls", "-g", "g"],
        &["show", "-g", "g", "a.csv"],
        &["show", "-g", "g", "a.csv", "--preview", "2"],
        &["prefs", "-g", "g"],
        &["jobs", "--all"],
        &["audit", "--all"],
        &["search", "-g", "g", "item"],
        &["fsck"],
        &["use", "g"],
        &["use", "--clear"],
    ];
    for args in reads {
        let out = ctl_as(&daemon, NOBODY, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(daemon.ls(Some("g")).len(), 1, "nothing deleted");
    assert_eq!(daemon.jobs().len(), 1, "nothing queued");
}

// ---- the attacker's side ----

/// Not a test on its own: the attacker, run by the tests above in a child process as an
/// unprivileged uid, doing what `INGESTD_ATTACK_PLAN` says and printing one `ATTACK` line.
#[test]
#[ignore = "the attacker side of the attack_socket tests; they run it as another uid"]
fn attacker_child() {
    let (Ok(plan), Ok(socket)) = (std::env::var(PLAN), std::env::var(SOCKET)) else {
        return;
    };
    let socket = Path::new(&socket);
    let words: Vec<&str> = plan.split_whitespace().collect();
    let n: usize = words[1].parse().unwrap();
    let (report, hold) = match words[0] {
        "idle" => (hold(socket, n, None), true),
        "half" => (hold(socket, n, Some(b"{\"v\":1,\"cmd\":")), true),
        "follow" => (
            hold(
                socket,
                n,
                Some(b"{\"v\":1,\"cmd\":\"events\",\"all\":true}\n"),
            ),
            true,
        ),
        "audit" | "jobs" => {
            let line = format!(
                "{{\"v\":1,\"cmd\":\"{}\",\"all\":true,\"limit\":1000}}\n",
                words[0]
            );
            let mut streams = Vec::new();
            for _ in 0..n {
                let mut stream = UnixStream::connect(socket).unwrap();
                stream.write_all(line.as_bytes()).unwrap();
                streams.push(stream);
            }
            println!("ATTACK sent {}", streams.len());
            std::io::stdout().flush().unwrap();
            // Never read; hold until killed.
            loop {
                std::thread::park();
            }
        }
        "halfwait" => (closed_after(socket, n, None), false),
        "idlewait" => (
            closed_after(socket, n, Some(b"{\"v\":1,\"cmd\":\"status\"}\n")),
            false,
        ),
        "rm" => (
            refused_deletes(socket, n, words[2].parse().unwrap(), 250),
            false,
        ),
        "rmlong" => (refused_deletes(socket, n, 1, 300), false),
        "preview" => (previews(socket, n, words[2], words[3]), false),
        other => panic!("unknown plan {other}"),
    };
    println!("ATTACK {report}");
    std::io::stdout().flush().unwrap();
    if hold {
        // The connections stay open until the test kills this process.
        loop {
            std::thread::park();
        }
    }
}

/// Open `n` connections, send `first` on each, and count which the daemon kept (no answer,
/// or a first ok line) and which it refused (an error line, or closed).
fn hold(socket: &Path, n: usize, first: Option<&[u8]>) -> String {
    let mut streams = Vec::new();
    for _ in 0..n {
        let mut stream = UnixStream::connect(socket).unwrap();
        if let Some(bytes) = first {
            let _ = stream.write_all(bytes);
        }
        stream.set_nonblocking(true).unwrap();
        streams.push((stream, None::<bool>));
    }
    // A refusal is written at once, a follower's first line too; a kept idle connection
    // gets nothing, so watch all of them together for a while.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until && streams.iter().any(|(_, kept)| kept.is_none()) {
        for (stream, kept) in streams.iter_mut().filter(|(_, k)| k.is_none()) {
            let mut bytes = [0u8; 1024];
            match stream.read(&mut bytes) {
                Ok(got) if got > 0 => {
                    *kept = Some(String::from_utf8_lossy(&bytes[..got]).contains("\"ok\":true"))
                }
                Ok(_) => *kept = Some(false),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => *kept = Some(false),
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let refused = streams.iter().filter(|(_, k)| *k == Some(false)).count();
    let held: Vec<UnixStream> = streams
        .into_iter()
        .filter(|(_, k)| *k != Some(false))
        .map(|(s, _)| s)
        .collect();
    let report = format!("held {} refused {refused}", held.len());
    // Held until this process is killed.
    std::mem::forget(held);
    report
}

/// Open `n` connections that send half a line (`first` None) or one request and then
/// nothing; wait until the daemon closes each and say after how long.
fn closed_after(socket: &Path, n: usize, first: Option<&[u8]>) -> String {
    let started = Instant::now();
    let mut streams = Vec::new();
    for _ in 0..n {
        let mut stream = UnixStream::connect(socket).unwrap();
        stream
            .write_all(first.unwrap_or(b"{\"v\":1,\"cmd\""))
            .unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        streams.push(BufReader::new(stream));
    }
    let mut closed = 0;
    for stream in &mut streams {
        let mut line = String::new();
        if first.is_some() {
            // The answer to the one request.
            stream.read_line(&mut line).unwrap();
            line.clear();
        }
        if matches!(stream.read_line(&mut line), Ok(0)) {
            closed += 1;
        }
    }
    format!("closed {closed} after_ms {}", started.elapsed().as_millis())
}

/// `n` deletes of `targets` names of `bytes` bytes each on one connection; count answers.
fn refused_deletes(socket: &Path, n: usize, targets: usize, bytes: usize) -> String {
    let stream = UnixStream::connect(socket).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = std::io::BufWriter::new(stream);
    let names: Vec<String> = (0..targets)
        .map(|i| format!("{i:0>width$}", width = bytes - 4) + ".csv")
        .collect();
    let line = serde_json::to_string(&serde_json::json!({
        "v": 1, "cmd": "rm", "group": "g", "targets": names,
    }))
    .unwrap();
    let (mut denied, mut bad_args, mut other) = (0, 0, 0);
    let mut answer = String::new();
    for _ in 0..n {
        writer.write_all(line.as_bytes()).unwrap();
        writer.write_all(b"\n").unwrap();
        writer.flush().unwrap();
        answer.clear();
        reader.read_line(&mut answer).unwrap();
        if answer.contains("\"permission_denied\"") {
            denied += 1;
        } else if answer.contains("\"bad_args\"") {
            bad_args += 1;
        } else {
            other += 1;
        }
    }
    format!("denied {denied} bad_args {bad_args} other {other}")
}

/// `n` previews at once, one connection each; count what came back.
fn previews(socket: &Path, n: usize, group: &str, source: &str) -> String {
    let line = serde_json::to_string(&serde_json::json!({
        "v": 1, "cmd": "show", "group": group, "source": source, "preview": 5,
    }))
    .unwrap()
        + "\n";
    let mut streams = Vec::new();
    for _ in 0..n {
        let mut stream = UnixStream::connect(socket).unwrap();
        stream.write_all(line.as_bytes()).unwrap();
        streams.push(stream);
    }
    let (mut ok, mut refused, mut other) = (0, 0, 0);
    for stream in streams {
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut answer = String::new();
        let _ = BufReader::new(stream).read_line(&mut answer);
        if answer.contains("\"ok\":true") {
            ok += 1;
        } else if answer.contains("server.previews_per_uid") {
            refused += 1;
        } else {
            other += 1;
            eprintln!("unexpected answer: {answer}");
        }
    }
    format!("ok {ok} refused {refused} other {other}")
}
