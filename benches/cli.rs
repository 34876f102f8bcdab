//! `ingestctl` as a user feels it (DESIGN §10), run with `cargo bench --bench cli`:
//! the round trip of `status` including process start, and a group switch
//! (`use G && ls && prefs`) on a group of 1,000 sources. Prints median and p99.
//!
//! Not a test: nothing here asserts a time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SOURCES: usize = 1000;

fn ingestctl() -> PathBuf {
    escargot::CargoBuild::new()
        .package("ingestctl")
        .bin("ingestctl")
        .release()
        .run()
        .expect("build ingestctl")
        .path()
        .to_path_buf()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn report(what: &str, mut ms: Vec<f64>) {
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{what}: median {:.2} ms, p99 {:.2} ms over {} runs",
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms.len()
    );
}

fn run(ctl: &Path, socket: &Path, args: &[&str]) {
    let out = Command::new(ctl)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn main() {
    let ctl = ingestctl();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ingestd.toml");
    std::fs::write(
        &config,
        "[paths]\ndrop_root = \"drop\"\nstorage_root = \"store\"\ndatabase = \"db.sqlite\"\n\
         socket = \"s.sock\"\naudit_log = \"audit.jsonl\"\n[ingest]\nsettle_ms = 100\n\
         [embedding]\nprovider = \"hashing\"\n",
    )
    .unwrap();
    let socket = dir.path().join("s.sock");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_ingestd"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while ingestd::client::Client::connect(&socket).is_err() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    for group in ["big", "other"] {
        std::fs::create_dir_all(dir.path().join("drop").join(group)).unwrap();
    }
    for i in 0..SOURCES {
        std::fs::write(
            dir.path().join(format!("drop/big/s{i:04}.csv")),
            format!("id,region,amount,date,comment\n{i},north,{i}.5,2026-01-01,row {i}\n"),
        )
        .unwrap();
    }
    loop {
        let mut client = ingestd::client::Client::connect(&socket).unwrap();
        let list: Vec<ingestd::protocol::SourceSummary> = client
            .call(&ingestd::protocol::cmd::Ls {
                group: Some("big".into()),
                all: false,
            })
            .unwrap();
        if list
            .iter()
            .filter(|s| s.status == ingestd::protocol::Status::Ready)
            .count()
            == SOURCES
        {
            break;
        }
        assert!(Instant::now() < deadline, "sources not ready");
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut status = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        run(&ctl, &socket, &["status"]);
        status.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    report("ingestctl status round trip incl. process start", status);

    let mut switch = Vec::new();
    for i in 0..100 {
        let group = if i % 2 == 0 { "big" } else { "other" };
        let t = Instant::now();
        run(&ctl, &socket, &["use", group]);
        run(&ctl, &socket, &["ls"]);
        run(&ctl, &socket, &["prefs"]);
        if group == "big" {
            switch.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    report(
        &format!("group switch (use + ls + prefs) to a group of {SOURCES} sources"),
        switch,
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
}
