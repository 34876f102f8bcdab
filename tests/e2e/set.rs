//! A source's read options (`ingestctl set`), end to end: set → the newest version's columns
//! change → a new job embeds its rows as read with them → a later version is still read with
//! them → `--clear` → the next version is detected again. Every bad option is refused with
//! its reason and changes nothing; a real headerless file of the fixture corpus is fixed.

use crate::helper::{Daemon, corpus, wait_for};
use ingestd::protocol::{JobState, SourceDetail};

/// A report whose data is all text: nothing tells its first wide row from a header, so
/// detection takes the "Prepared by" line (`docs/formats.md`, Known limits).
fn report(people: &[(&str, &str, &str)]) -> Vec<u8> {
    let mut text = String::from("Prepared by,Finance,Dept,Q3\nname,city,country,team\n");
    for (name, city, country) in people {
        text.push_str(&format!("{name},{city},{country},red\n"));
    }
    text.into_bytes()
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "ingestctl failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refused(out: &std::process::Output, want: &str) {
    assert!(
        !out.status.success(),
        "accepted: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(want), "{want:?} not in: {stderr}");
}

/// The texts of the source's active embeddings.
fn embedded_texts(daemon: &Daemon, source: &str) -> Vec<String> {
    let db = daemon.db();
    let mut statement = db
        .prepare("SELECT text FROM active_vectors WHERE source = ?1 ORDER BY row_no")
        .unwrap();
    statement
        .query_map([source], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn newest(detail: &SourceDetail) -> &ingestd::protocol::VersionInfo {
    detail
        .versions
        .iter()
        .find(|v| v.version.is_some())
        .expect("a version")
}

#[test]
fn set_rereads_the_newest_version_embeds_it_again_and_applies_to_later_versions() {
    let daemon = Daemon::start();
    daemon.drop_file(
        "g",
        "team.csv",
        &report(&[("alice", "paris", "france"), ("bob", "rome", "italy")]),
    );
    let before = daemon.wait_stored("g", "team.csv");
    assert_eq!(
        before.columns,
        ["Prepared by", "Finance", "Dept", "Q3"],
        "detection misreads it"
    );
    daemon.wait_embedded("g", "team.csv", "v1");
    let jobs_before = daemon.jobs().len();

    let json = daemon.ctl_json(&["set", "-g", "g", "team.csv", "--header-row", "2"]);
    assert_eq!(
        json["columns"],
        serde_json::json!(["name", "city", "country", "team"]),
        "{json}"
    );
    assert_eq!(json["rows"], 2, "{json}");
    assert_eq!(json["version"], "v1", "{json}");
    assert_eq!(json["options"]["options"]["header_row"], 2, "{json}");
    assert_eq!(
        json["previous_columns"],
        serde_json::json!(["Prepared by", "Finance", "Dept", "Q3"])
    );
    let job = json["job"].as_i64().expect("a job");

    // The catalog says so at once; the old embeddings stay until the new job swaps.
    let source = &daemon.ls(Some("g"))[0];
    assert_eq!(source.columns, ["name", "city", "country", "team"]);
    assert_eq!(source.rows, Some(2));
    let done = wait_for("the job queued by set to end", || {
        let job = daemon.job(job);
        matches!(job.state, JobState::Completed | JobState::Failed).then_some(job)
    });
    assert_eq!(done.state, JobState::Completed, "{done:?}");
    assert_eq!(daemon.jobs().len(), jobs_before + 1);
    let texts = embedded_texts(&daemon, "team.csv");
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[0].contains("paris") && texts[0].contains("city"),
        "{texts:?}"
    );
    assert!(!texts.iter().any(|t| t.contains("Finance")), "{texts:?}");

    let show = ok(&daemon.ctl(&["show", "-g", "g", "team.csv"]));
    let who = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {}", nix::unistd::geteuid()), |u| u.name);
    assert!(
        show.contains(&format!(
            "  header   on line 2 (set by {who}; 1 row above it skipped: a note)\n"
        )),
        "{show}"
    );
    assert!(
        show.contains(&format!("  set      header on row 2 (by {who})\n")),
        "{show}"
    );
    let audit = daemon.audit();
    let record = audit
        .iter()
        .find(|r| r["action"] == "set")
        .expect("set is audited");
    assert_eq!(record["outcome"], "ok");
    assert_eq!(record["version"], "v1");
    assert!(
        record["detail"]
            .as_str()
            .unwrap()
            .contains("header on row 2"),
        "{record}"
    );

    // A later version is read with the options too, and so are its rows.
    daemon.drop_file(
        "g",
        "team.csv",
        &report(&[
            ("carol", "oslo", "norway"),
            ("dan", "bern", "swiss"),
            ("eve", "nice", "france"),
        ]),
    );
    let v2 = wait_for("v2", || {
        let s = daemon.ls(Some("g")).remove(0);
        (s.version.as_deref() == Some("v2")).then_some(s)
    });
    assert_eq!(v2.columns, ["name", "city", "country", "team"]);
    assert_eq!(v2.rows, Some(3));
    daemon.wait_embedded("g", "team.csv", "v2");
    let texts = embedded_texts(&daemon, "team.csv");
    assert!(
        texts
            .iter()
            .any(|t| t.contains("oslo") && t.contains("city")),
        "{texts:?}"
    );

    // --clear: the newest version is detected again at once, and so is the next one.
    let cleared = ok(&daemon.ctl(&["set", "-g", "g", "team.csv", "--clear"]));
    assert!(cleared.contains("detected again"), "{cleared}");
    assert_eq!(
        daemon.ls(Some("g"))[0].columns,
        ["Prepared by", "Finance", "Dept", "Q3"]
    );
    daemon.drop_file("g", "team.csv", &report(&[("fay", "kyiv", "ukraine")]));
    let v3 = wait_for("v3", || {
        let s = daemon.ls(Some("g")).remove(0);
        (s.version.as_deref() == Some("v3")).then_some(s)
    });
    assert_eq!(v3.columns, ["Prepared by", "Finance", "Dept", "Q3"]);
    assert!(newest(&daemon.show("g", "team.csv")).reading.set.is_none());
    assert_eq!(daemon.count("SELECT COUNT(*) FROM source_reading"), 0);
}

/// A Shift_JIS CSV with a title and two blank lines above its header.
fn shift_jis_report() -> Vec<u8> {
    let text = "売上報告\n,,\n,,\n名前,年齢,住所\n山田太郎,30,東京都\n鈴木花子,41,大阪府\n";
    let (bytes, _, unmappable) = encoding_rs::SHIFT_JIS.encode(text);
    assert!(!unmappable);
    bytes.into_owned()
}

#[test]
fn bad_options_are_refused_with_the_reason_and_change_nothing() {
    let daemon = Daemon::start();
    daemon.drop_file("g", "jp.csv", &shift_jis_report());
    let jp = daemon.wait_stored("g", "jp.csv");
    assert_eq!(jp.columns, ["名前", "年齢", "住所"]);
    let mut book = rust_xlsxwriter::Workbook::new();
    book.add_worksheet()
        .set_name("Data")
        .unwrap()
        .write_string(0, 0, "a")
        .unwrap();
    book.add_worksheet()
        .set_name("Notes")
        .unwrap()
        .write_string(0, 0, "b")
        .unwrap();
    daemon.drop_file("g", "book.xlsx", &book.save_to_buffer().unwrap());
    let parquet = corpus().join("parquet-testing/data/alltypes_plain.parquet");
    daemon.drop_file(
        "g",
        "plain.parquet",
        &std::fs::read(&parquet).expect("a corpus file"),
    );
    daemon.wait_stored("g", "book.xlsx");
    daemon.wait_stored("g", "plain.parquet");
    let jobs = || daemon.count("SELECT COUNT(*) FROM jobs");
    wait_for("the first jobs to end", || {
        (daemon.count("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'processing')") == 0)
            .then_some(())
    });
    let jobs_before = jobs();
    let set = |args: &[&str]| {
        let mut all = vec!["set", "-g", "g"];
        all.extend_from_slice(args);
        daemon.ctl(&all)
    };

    let cases: &[(&[&str], &str)] = &[
        (
            &["jp.csv", "--header-row", "50"],
            "it has no line 50, the header row set for this source",
        ),
        (
            &["jp.csv", "--header-row", "2"],
            "line 2, the header row set for this source, holds no names",
        ),
        (
            &["jp.csv", "--encoding", "klingon"],
            "is not an encoding label",
        ),
        (
            &["jp.csv", "--encoding", "UTF-8"],
            "cannot be read as UTF-8, the encoding set for this source",
        ),
        (&["jp.csv", "--delimiter", ";;"], "one ASCII character"),
        (&["jp.csv", "--delimiter", "é"], "one ASCII character"),
        (
            &["jp.csv", "--sheet", "Data"],
            "a sheet applies to workbooks",
        ),
        (
            &["book.xlsx", "--sheet", "Nope"],
            "it has no sheet named 'Nope' (its sheets are 'Data', 'Notes')",
        ),
        (
            &["book.xlsx", "--encoding", "UTF-8"],
            "an encoding applies to CSV and TSV files only",
        ),
        (
            &["book.xlsx", "--header-row", "9"],
            "it has no row 9, the header row set for this source",
        ),
        (
            &["plain.parquet", "--no-header"],
            "Parquet files have no header row",
        ),
        (
            &["nothing.csv", "--header-row", "2"],
            "no source named \"nothing.csv\"",
        ),
    ];
    for (args, want) in cases {
        refused(&set(args), want);
    }
    // Usage errors never reach the daemon.
    let out = set(&["jp.csv"]);
    assert_eq!(out.status.code(), Some(2), "no option");
    let out = set(&["jp.csv", "--header-row", "2", "--no-header"]);
    assert_eq!(out.status.code(), Some(2), "both");

    assert_eq!(
        daemon
            .ls(Some("g"))
            .iter()
            .find(|s| s.name == "jp.csv")
            .unwrap()
            .columns,
        jp.columns
    );
    assert_eq!(jobs(), jobs_before, "no job queued");
    assert_eq!(daemon.count("SELECT COUNT(*) FROM source_reading"), 0);
    assert!(
        !daemon.audit().iter().any(|r| r["action"] == "set"),
        "nothing audited"
    );
    assert_eq!(daemon.status().pid, daemon.pid(), "the daemon is healthy");

    // The same file with a good option: the encoding as set, the header found as before.
    let out = ok(&set(&["jp.csv", "--encoding", "sjis"]));
    assert!(out.contains("encoding Shift_JIS"), "{out}");
    let show = ok(&daemon.ctl(&["show", "-g", "g", "jp.csv"]));
    assert!(show.contains("  encoding Shift_JIS (set)\n"), "{show}");
    assert!(
        show.contains("  header   on line 4 (3 rows above it skipped: a title, 2 blank)\n"),
        "{show}"
    );
}

/// TPC-H's `nation` table as fastparquet's tests keep it: pipe-separated, no header row. Read
/// as it comes, its first data row becomes the header (`0, ALGERIA, 0_2, …`) and one row is
/// lost; `--no-header` gives it numbered columns and all 25 rows.
#[test]
fn a_headerless_corpus_file_is_fixed_with_no_header() {
    let daemon = Daemon::start();
    let bytes = std::fs::read(corpus().join("fastparquet/test-data/nation.csv")).expect("corpus");
    daemon.drop_file("g", "nation.csv", &bytes);
    let detected = daemon.wait_stored("g", "nation.csv");
    assert_eq!(&detected.columns[..3], ["0", "ALGERIA", "0_2"]);
    assert_eq!(detected.rows, Some(24));

    let json = daemon.ctl_json(&["set", "-g", "g", "nation.csv", "--no-header"]);
    assert_eq!(
        json["columns"],
        serde_json::json!(["column_1", "column_2", "column_3", "column_4"]),
        "{json}"
    );
    assert_eq!(json["rows"], 25, "{json}");
    let job = json["job"].as_i64().unwrap();
    let done = wait_for("the job of set", || {
        let job = daemon.job(job);
        matches!(job.state, JobState::Completed | JobState::Failed).then_some(job)
    });
    assert_eq!(done.state, JobState::Completed, "{done:?}");
    let texts = embedded_texts(&daemon, "nation.csv");
    assert_eq!(texts.len(), 25);
    assert!(texts[0].contains("ALGERIA"), "{texts:?}");
    let show = ok(&daemon.ctl(&["show", "-g", "g", "nation.csv"]));
    assert!(show.contains("  header   no header row (set by "), "{show}");
}

/// `set` is for admins: refused for another user, audited, nothing changed.
#[test]
fn set_is_refused_for_a_non_admin_and_audited() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run a client as another user");
        return;
    }
    let daemon = Daemon::start_with(
        "[ingest]\nsettle_ms = 150\n[server]\nsocket_mode = \"0666\"\nadmins = [\"root\"]\n",
    );
    daemon.drop_file("g", "team.csv", &report(&[("alice", "paris", "france")]));
    let before = daemon.wait_stored("g", "team.csv");
    for dir in [daemon.dir.path(), daemon.socket.parent().unwrap()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(crate::helper::ingestctl_path())
        .arg("--socket")
        .arg(&daemon.socket)
        .args(["set", "-g", "g", "team.csv", "--header-row", "2"])
        .env_remove("INGESTD_CONFIG")
        .env_remove("INGESTD_SOCKET")
        .output()
        .expect("run setpriv");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("permission denied") && stderr.contains("not in server.admins"),
        "{stderr}"
    );
    assert_eq!(
        daemon.ls(Some("g"))[0].columns,
        before.columns,
        "nothing changed"
    );
    let record = wait_for("the refusal in the audit trail", || {
        daemon
            .audit()
            .into_iter()
            .find(|r| r["outcome"] == "refused")
    });
    assert_eq!(record["action"], "set");
    assert_eq!(record["actor"]["uid"], 65534);
    assert_eq!(record["group"], "g");
}
