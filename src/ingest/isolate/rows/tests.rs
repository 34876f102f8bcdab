//! Row streams through real parse workers (the `ingestd` binary, built once per run) and
//! through stand-in workers that write exactly the line sequence each case needs.

use super::super::{Failure, Limits, ParseWorker, WorkerError};
use crate::ingest::formats::{self, Format, ReadOptions, RowEvent, corpus};
use std::ops::ControlFlow;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

const LIMITS: Limits = Limits {
    memory: 512_000_000,
    timeout: Duration::from_secs(30),
};

/// Workers that run the real `ingestd`, built once per test run.
fn worker() -> ParseWorker {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    let exe = EXE.get_or_init(|| {
        escargot::CargoBuild::new()
            .package("ingestd")
            .bin("ingestd")
            .current_release()
            .run()
            .expect("build ingestd")
            .path()
            .to_path_buf()
    });
    ParseWorker::at(exe)
}

/// The columns and rows of a stream.
type Table = (Vec<String>, Vec<Vec<String>>);

fn through(
    worker: &ParseWorker,
    format: Format,
    path: &Path,
    limits: &Limits,
) -> Result<Table, Failure> {
    let (mut columns, mut rows) = (Vec::new(), Vec::new());
    let visited = worker.stream_rows(
        format,
        path,
        &ReadOptions::default(),
        limits,
        &mut |event| {
            match event {
                RowEvent::Columns(names) => columns = names.to_vec(),
                RowEvent::Row(row) => rows.push(row.to_vec()),
            }
            ControlFlow::Continue(())
        },
    )?;
    assert_eq!(visited, rows.len() as u64);
    Ok((columns, rows))
}

fn here(format: Format, path: &Path) -> Table {
    let (mut columns, mut rows) = (Vec::new(), Vec::new());
    formats::stream_rows(format, path, &ReadOptions::default(), &mut |event| {
        match event {
            RowEvent::Columns(names) => columns = names.to_vec(),
            RowEvent::Row(row) => rows.push(row.to_vec()),
        }
        ControlFlow::Continue(())
    })
    .expect("read here");
    (columns, rows)
}

/// A file in a fresh temporary folder, kept alive by the returned guard.
fn temp_file(name: &str, content: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, content).expect("write");
    (dir, path)
}

fn big_csv(rows: usize) -> Vec<u8> {
    let mut text = String::from("id,name,amount\n");
    for i in 0..rows {
        text.push_str(&format!("{i},name {i},{}.5\n", i % 1000));
    }
    text.into_bytes()
}

/// Live processes whose command line names `path`.
fn processes_reading(path: &Path) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // A worker's stdin is the file it reads: it gets no path.
        if std::fs::read_link(entry.path().join("fd/0")).is_ok_and(|link| link == path) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn rows_through_a_worker_are_the_rows_read_here() {
    let Some(dir) = corpus::dir() else { return };
    let files = [
        (
            Format::Csv,
            "frictionless-py/data/skip-rows-before-headers.csv",
        ),
        (Format::Csv, "qsv/resources/test/311011.csv"),
        (Format::Tsv, "duckdb/data/csv/auto/titlebasicsdebug.tsv"),
        (Format::Xlsx, "csvkit/examples/sheets.xlsx"),
        (Format::Xls, "csvkit/examples/test_skip_lines.xls"),
        (
            Format::Parquet,
            "parquet-testing/data/nonnullable.impala.parquet",
        ),
        (
            Format::Parquet,
            "duckdb/data/parquet-testing/lineitem-top10000.gzip.parquet",
        ),
    ];
    let worker = worker();
    for (format, file) in files {
        let path = dir.join(file);
        let got =
            through(&worker, format, &path, &LIMITS).unwrap_or_else(|e| panic!("{file}: {e}"));
        let want = here(format, &path);
        assert!(!want.1.is_empty(), "{file}");
        assert_eq!(got, want, "{file}");
    }
}

#[test]
fn a_slow_visitor_holds_the_worker_without_timing_it_out() {
    let (_dir, path) = temp_file("big.csv", &big_csv(200_000));
    let quick = Limits {
        timeout: Duration::from_secs(1),
        ..LIMITS
    };
    let mut rows = 0u64;
    let mut last = Vec::new();
    let visited = worker().stream_rows(
        Format::Csv,
        &path,
        &ReadOptions::default(),
        &quick,
        &mut |event| {
            if let RowEvent::Row(row) = event {
                rows += 1;
                if rows == 100_000 {
                    // Longer than the timeout: the worker waits on the full pipe meanwhile.
                    std::thread::sleep(Duration::from_millis(1500));
                }
                last = row.to_vec();
            }
            ControlFlow::Continue(())
        },
    );
    assert_eq!(visited.expect("streamed"), 200_000);
    assert_eq!(rows, 200_000);
    assert_eq!(last, ["199999", "name 199999", "999.5"]);
}

#[test]
fn a_break_ends_the_worker() {
    let (_dir, path) = temp_file("big.csv", &big_csv(200_000));
    let mut seen_running = false;
    let mut rows = 0;
    let visited = worker().stream_rows(
        Format::Csv,
        &path,
        &ReadOptions::default(),
        &LIMITS,
        &mut |event| {
            if let RowEvent::Row(_) = event {
                rows += 1;
            }
            if rows == 10 {
                seen_running = !processes_reading(&path).is_empty();
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        },
    );
    assert_eq!(visited.expect("stopped"), 10);
    assert!(seen_running, "the worker was running while rows came");
    assert_eq!(
        processes_reading(&path),
        Vec::<u32>::new(),
        "no worker left"
    );
}

#[test]
fn a_file_the_reader_refuses_is_rejected() {
    let (_dir, path) = temp_file("b.csv", b"\x00\x01\x02 not text");
    match through(&worker(), Format::Csv, &path, &LIMITS) {
        Err(Failure::Rejected(rejection)) => {
            assert!(rejection.reason.contains("binary"), "{}", rejection.reason)
        }
        other => panic!("{other:?}"),
    }
}

/// A stand-in worker: a shell script that writes `script`'s output whatever it is asked.
fn fake(script: &str) -> (tempfile::TempDir, ParseWorker) {
    let (dir, path) = temp_file("worker.sh", format!("#!/bin/sh\n{script}\n").as_bytes());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (dir, ParseWorker::at(path))
}

/// What a stream came to: `Ok` with the rows or a rejection's reason, or `Err` with our error.
type Verdict<T> = Result<Result<u64, T>, T>;

/// The verdict on a fake worker's stream.
fn verdict(script: &str) -> Verdict<String> {
    let (_dir, worker) = fake(script);
    let (_input_dir, input) = temp_file("x.csv", b"a\n1\n");
    let limits = Limits {
        timeout: Duration::from_secs(1),
        ..LIMITS
    };
    let got = worker.stream_rows(
        Format::Csv,
        &input,
        &ReadOptions::default(),
        &limits,
        &mut |_| ControlFlow::Continue(()),
    );
    match got {
        Ok(rows) => Ok(Ok(rows)),
        Err(Failure::Rejected(rejection)) => Ok(Err(rejection.reason)),
        Err(Failure::Worker(error)) => Err(error.to_string()),
    }
}

#[test]
fn every_ending_of_a_stream_has_a_verdict() {
    let head = r#"printf '{"columns":["a","b"]}\n["1","2"]\n'"#;
    let cases: Vec<(&str, String, Verdict<&str>)> = vec![
        (
            "complete",
            format!(r#"{head}; printf '{{"rows":1}}\n'"#),
            Ok(Ok(1)),
        ),
        (
            "rejected part way",
            format!(r#"{head}; printf '{{"rejected":{{"reason":"it broke"}}}}\n'"#),
            Ok(Err("it broke")),
        ),
        (
            "no last line",
            head.to_string(),
            Err(
                "the parse worker answered with something that is not a result (its row stream ended without its last line)",
            ),
        ),
        (
            "wrong count",
            format!(r#"{head}; printf '{{"rows":5}}\n'"#),
            Err("a count of 5 rows after 1"),
        ),
        (
            "ragged row",
            r#"printf '{"columns":["a"]}\n["1","2"]\n{"rows":1}\n'"#.into(),
            Err("a row of 2 values under 1 columns"),
        ),
        (
            "row before the columns",
            r#"printf '["1"]\n'"#.into(),
            Err("a row before the columns"),
        ),
        ("not JSON", "printf 'hello\\n'".into(), Err("not a result")),
        (
            "a line past the cap",
            "head -c 70000000 /dev/zero".into(),
            Err("a line longer than 64 MiB"),
        ),
        (
            "crash part way",
            format!("{head}; kill -SEGV $$"),
            Ok(Err("it made the reader crash (signal 11)")),
        ),
        (
            "silent past the timeout",
            format!("{head}; exec sleep 30"),
            Ok(Err("reading it took longer than 1 s")),
        ),
        (
            "failed exit after its last line",
            format!(r#"{head}; printf '{{"rows":1}}\n'; echo oops >&2; exit 3"#),
            Err("the parse worker failed with exit code 3: oops"),
        ),
    ];
    for (what, script, want) in cases {
        let got = verdict(&script);
        match (&got, want) {
            (Ok(got), Ok(want)) => {
                assert_eq!(
                    got.clone().map_err(|e| e.to_string()),
                    want.map_err(str::to_string),
                    "{what}"
                )
            }
            (Err(error), Err(want)) => assert!(error.contains(want), "{what}: {error}"),
            _ => panic!("{what}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn a_missing_worker_is_our_error() {
    let missing = ParseWorker::at("/nonexistent/ingestd");
    let (_dir, input) = temp_file("x.csv", b"a\n1\n");
    let got = missing.stream_rows(
        Format::Csv,
        &input,
        &ReadOptions::default(),
        &LIMITS,
        &mut |_| ControlFlow::Continue(()),
    );
    assert!(
        matches!(got, Err(Failure::Worker(WorkerError::Spawn { .. }))),
        "{got:?}"
    );
}

#[cfg(debug_assertions)]
mod hooked {
    use super::*;
    use crate::ingest::isolate::hooks::Hook;

    fn run_hook(hook: Hook, limits: &Limits) -> Result<String, String> {
        let (_dir, path) = temp_file("hook.csv", &hook.file_content());
        match through(&worker(), Format::Csv, &path, limits) {
            Ok(table) => panic!("{hook:?} was read: {table:?}"),
            Err(Failure::Rejected(rejection)) => Ok(rejection.reason),
            Err(Failure::Worker(error)) => Err(error.to_string()),
        }
    }

    #[test]
    fn every_misbehaviour_of_a_rows_worker_has_the_reason_extract_gives() {
        let quick = Limits {
            memory: 300_000_000,
            timeout: Duration::from_secs(1),
        };
        let cases = [
            (Hook::Alloc, "it needs more than 300 MB of memory to read"),
            (Hook::Loop, "reading it took longer than 1 s"),
            (Hook::Abort, "it made the reader crash (signal 6)"),
            (Hook::Segv, "it made the reader crash (signal 11)"),
            (Hook::Panic, "it made the reader crash (panic)"),
        ];
        for (hook, reason) in cases {
            assert_eq!(run_hook(hook, &quick), Ok(reason.to_string()), "{hook:?}");
        }
        let garbage = run_hook(Hook::Garbage, &quick).unwrap_err();
        assert!(
            garbage.contains("not a result") && garbage.contains("this is not an answer"),
            "{garbage}"
        );
    }

    #[test]
    fn a_rows_worker_is_confined_as_an_extract_worker_is() {
        let reason = run_hook(Hook::Inspect, &LIMITS).expect("inspected");
        let seen: serde_json::Value = serde_json::from_str(&reason).expect("JSON");
        assert_eq!(
            seen["as"],
            serde_json::json!([512_000_000, 512_000_000]),
            "{seen}"
        );
        assert_eq!(seen["cpu"], serde_json::json!([35, 36]), "{seen}");
        assert_eq!(seen["core"], serde_json::json!([0, 0]), "{seen}");
        assert_eq!(seen["fsize"], serde_json::json!([0, 0]), "{seen}");
        assert_eq!(seen["fds"], serde_json::json!([0, 1, 2]), "{seen}");
        assert_eq!(seen["env"], 0, "{seen}");
        assert_eq!(seen["death_signal"], 9, "{seen}");
        assert_eq!(seen["own_group"], true, "{seen}");
    }
}
