//! The UI's speed and size, measured (not asserted), run by hand with
//! `cargo test -p ingestctl --release ui::bench -- --ignored --nocapture --test-threads 1`:
//!
//! - group switch to a fully drawn list of 100, 1,000 and 10,000 sources: Enter on the
//!   group, the `use` and `ls` requests over the socket of the real `ingestd` (its own
//!   process, built by the bench in the same profile) read as the UI reads them, the answers applied, and the frame drawn (100×30). Median
//!   and p99.
//! - memory of the state holding 10,000 sources and one frame drawn (RSS growth).
//!
//! Idle CPU and the resident memory of the real binary need a real terminal; docs/cli.md
//! says how they were measured.

use super::app::{App, Pane, Request};
use super::keys::on_key;
use super::proto::{Client, Command, cmd};
use super::reply;
use super::view::{self, Ctx, Theme};
use super::wire::Wire;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::json;
use std::time::{Duration, Instant};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn ctx() -> Ctx {
    Ctx {
        theme: Theme { color: true },
        tz: jiff::tz::TimeZone::UTC,
        socket: "bench".into(),
    }
}

fn perform(client: &mut Wire, app: &mut App, requests: Vec<Request>) {
    let mut queue = requests;
    while !queue.is_empty() {
        let mut next = Vec::new();
        for request in queue {
            let Request::Call(command) = request else {
                continue;
            };
            // The detail of the first source is loaded after the list is drawn; not counted.
            if matches!(command, Command::Show(_)) {
                continue;
            }
            let result = client.call(&command).map_err(|e| match e {
                super::wire::CallError::Answered(failure) => failure,
                super::wire::CallError::Transport(e) => panic!("{e}"),
            });
            next.extend(app.on_reply(&command, result));
        }
        queue = next;
    }
}

#[test]
#[ignore = "a measurement; run by hand with --ignored --nocapture"]
fn bench_memory_at_10000_sources() {
    // The answer's line, as it comes off the socket, written one source at a time.
    let mut line = br#"{"ok":true,"v":1,"data":["#.to_vec();
    for i in 0..10_000 {
        if i > 0 {
            line.push(b',');
        }
        let source = json!({
            "added_at": "2026-11-27T02:12:50.456Z", "added_by": "alice", "added_by_uid": 1000,
            "columns": ["id", "region", "amount", "date", "comment"], "format": "csv",
            "group": "big", "name": format!("source-{i:05}.csv"), "reason": null,
            "rows": 120, "sha256": "fac3227a40619369eb5320e2398af7c1655b538417a5ab47fba88859fb26a71c",
            "size": 4096, "skipped_columns": [], "status": "embedded",
            "updated_at": "2026-11-27T02:12:50.457Z", "version": "v1"
        });
        serde_json::to_writer(&mut line, &source).unwrap();
    }
    line.extend_from_slice(b"]}");
    let before = rss_kib();
    let mut app = App::new(Some("big".into()));
    app.conn = super::app::Conn::Up;
    let ls = Command::Ls(cmd::Ls {
        group: Some("big".into()),
        all: false,
    });
    let reply = reply::decode(&ls, &line);
    let bytes = line.len();
    drop(line);
    app.on_reply(&ls, reply);
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
    let t = Instant::now();
    terminal.draw(|f| view::draw(f, &app, &ctx())).unwrap();
    let draw = t.elapsed();
    let after = rss_kib();
    println!(
        "memory: {} sources: RSS {before} KiB holding the answer's line ({} KiB), {after} KiB \
         once it is read into the state, one frame drawn and the line freed; one frame {:.2} ms",
        app.sources.len(),
        bytes / 1024,
        draw.as_secs_f64() * 1000.0
    );
}

#[test]
#[ignore = "a measurement; run by hand with --ignored --nocapture"]
fn bench_group_switch_at_100_sources() {
    group_switch(100);
}

#[test]
#[ignore = "a measurement; run by hand with --ignored --nocapture"]
fn bench_group_switch_at_1000_sources() {
    group_switch(1000);
}

#[test]
#[ignore = "a measurement; run by hand with --ignored --nocapture"]
fn bench_group_switch_at_10000_sources() {
    group_switch(10_000);
}

fn group_switch(sources: usize) {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("ingestd.toml");
    std::fs::write(
        &config_path,
        "[paths]\ndrop_root = \"drop\"\nstorage_root = \"store\"\ndatabase = \"db.sqlite\"\n\
         socket = \"s.sock\"\naudit_log = \"audit.jsonl\"\n[ingest]\nsettle_ms = 100\n\
         [embedding]\nprovider = \"hashing\"\n",
    )
    .unwrap();
    // The real daemon, as its own process: its parse workers re-execute its binary.
    let binary = escargot::CargoBuild::new()
        .package("ingestd")
        .bin("ingestd")
        .current_release()
        .run()
        .expect("build ingestd")
        .path()
        .to_path_buf();
    let socket = dir.path().join("s.sock");
    let mut daemon = std::process::Command::new(binary)
        .arg("--config")
        .arg(&config_path)
        .env_remove("NOTIFY_SOCKET")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start ingestd");
    for group in ["big", "other"] {
        std::fs::create_dir_all(dir.path().join("drop").join(group)).unwrap();
    }
    for i in 0..sources {
        std::fs::write(
            dir.path().join(format!("drop/big/s{i:05}.csv")),
            format!("id,region,amount,date,comment\n{i},north,{i}.5,2026-01-01,row {i}\n"),
        )
        .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(3600);
    let mut client = loop {
        if let Ok(client) = Client::connect(&socket) {
            break client;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    };
    loop {
        let list: Vec<super::proto::SourceSummary> = client
            .call(&cmd::Ls {
                group: Some("big".into()),
                all: false,
            })
            .unwrap();
        if list.iter().filter(|s| s.status.is_stored()).count() == sources {
            break;
        }
        assert!(Instant::now() < deadline, "sources not ready");
        std::thread::sleep(Duration::from_millis(200));
    }

    drop(client);
    let mut client = Wire::connect(&socket, Duration::from_secs(30)).unwrap();
    let mut app = App::new(None);
    app.conn = super::app::Conn::Up;
    perform(
        &mut client,
        &mut app,
        vec![super::app::call(cmd::Groups {})],
    );
    app.focus = Pane::Groups;
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
    let ctx = ctx();
    let enter = KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE);
    let mut switch = Vec::new();
    for i in 0..200 {
        let target = if i % 2 == 0 { "big" } else { "other" };
        app.focus = Pane::Groups;
        app.group_cursor = app.groups.iter().position(|g| g.name == target).unwrap();
        let t = Instant::now();
        let (next, requests) = on_key(app, enter);
        app = next;
        perform(&mut client, &mut app, requests);
        terminal.draw(|f| view::draw(f, &app, &ctx)).unwrap();
        if target == "big" {
            assert_eq!(app.order.len(), sources);
            switch.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    switch.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "group switch to a fully drawn list of {sources} sources (use + ls + draw): median {:.2} \
         ms, p99 {:.2} ms over {} runs",
        percentile(&switch, 0.5),
        percentile(&switch, 0.99),
        switch.len()
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
}
