//! Test harness: a real `ingestd` process on a fresh temporary folder, the real `ingestctl`
//! binary, the protocol client, and polling with one global timeout (never a blind sleep).

#![allow(dead_code)]

use ingestd::client::Client;
pub mod openai;
pub use ingestd::testing::skip;

use ingestd::protocol::{JobInfo, SourceDetail, SourceSummary, StatusInfo, cmd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Every wait in every test ends by this deadline; generous because CI machines are shared.
pub const TIMEOUT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(20);

/// The real `ingestctl`, built once per test run.
pub fn ingestctl_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        escargot::CargoBuild::new()
            .package("ingestctl")
            .bin("ingestctl")
            .current_release()
            .run()
            .expect("build ingestctl")
            .path()
            .to_path_buf()
    })
}

/// The shared fixture corpus (`../shared/fixtures/corpus` beside the repository).
pub fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/corpus")
}

/// Poll `check` until it returns `Some`, or fail the test naming `what` after [`TIMEOUT`].
pub fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(POLL);
    }
}

/// A daemon under test, with its own folders and config.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub drop_root: PathBuf,
    pub storage_root: PathBuf,
    pub socket: PathBuf,
    pub audit_log: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    /// The PostgreSQL database this daemon's catalog is in (`E2E_CATALOG=postgres`), and the
    /// config lines that name it; dropped after the process.
    pub catalog_db: Option<crate::pg::TestDb>,
    catalog_toml: String,
}

/// The node name of the harness's daemons on PostgreSQL.
const PG_NODE: &str = "e2e";

/// The catalog the harness's daemons run on: SQLite, or with `E2E_CATALOG=postgres`, a
/// PostgreSQL database of its own per daemon (from `PG_TEST_URL`), so the suites that touch
/// the catalog run against both backends (README, "Tests"). A test that configures its own
/// `[catalog]` keeps it.
fn catalog_for(extra: &str) -> (Option<crate::pg::TestDb>, String) {
    if std::env::var("E2E_CATALOG").as_deref() != Ok("postgres") || extra.contains("[catalog]") {
        return (None, String::new());
    }
    let db = crate::pg::TestDb::create()
        .expect("E2E_CATALOG=postgres runs the daemons on PostgreSQL: set PG_TEST_URL");
    // PostgreSQL deletes a dropped generation's vectors at once; SQLite keeps them in
    // `vector_trash` until a chunked purge. An empty stand-in lets the suites' checks ("no
    // vector without its generation, none waiting in the trash") read the same on both.
    db.client()
        .batch_execute(
            "CREATE VIEW vector_trash AS SELECT NULL::BIGINT AS generation_id WHERE false",
        )
        .expect("create the vector_trash stand-in");
    let toml = format!(
        "\n[catalog]\nbackend = \"postgres\"\nurl = \"{}\"\n[cluster]\nnode = \"{PG_NODE}\"\n",
        db.url()
    );
    (Some(db), toml)
}

impl Daemon {
    /// A running daemon with a short settle window.
    pub fn start() -> Self {
        Self::start_with("[ingest]\nsettle_ms = 150\n")
    }

    /// A running daemon whose config file is the standard test paths plus `extra` TOML.
    pub fn start_with(extra: &str) -> Self {
        let mut daemon = Self::configure(extra);
        daemon.spawn();
        daemon
    }

    /// Folders and config, no process yet.
    pub fn configure(extra: &str) -> Self {
        Self::configure_embedding("provider = \"hashing\"\n", extra)
    }

    /// A running daemon with `embedding` as the keys of `[embedding]` (and its sub-tables),
    /// a short settle window, and `extra` TOML.
    pub fn start_embedding(embedding: &str, extra: &str) -> Self {
        let mut daemon =
            Self::configure_embedding(embedding, &format!("{extra}\n[ingest]\nsettle_ms = 150\n"));
        daemon.spawn();
        daemon
    }

    /// Folders and config with `embedding` as the `[embedding]` keys, no process yet.
    pub fn configure_embedding(embedding: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        let config = root.join("etc/ingestd.toml");
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        let (catalog_db, catalog_toml) = catalog_for(extra);
        std::fs::write(
            &config,
            format!(
                "[paths]\ndrop_root = \"../drop\"\nstorage_root = \"../store\"\n\
                 database = \"../state/ingestd.sqlite\"\nsocket = \"../run/ingestd.sock\"\n\
                 audit_log = \"../state/audit.jsonl\"\n{extra}\n[embedding]\n{embedding}\
                 {catalog_toml}"
            ),
        )
        .unwrap();
        Self {
            config,
            drop_root: root.join("drop"),
            storage_root: root.join("store"),
            socket: root.join("run/ingestd.sock"),
            audit_log: root.join("state/audit.jsonl"),
            log: root.join("ingestd.log"),
            dir,
            child: None,
            catalog_db,
            catalog_toml,
        }
    }

    /// Start the process and wait until it answers `status`.
    pub fn spawn(&mut self) {
        self.launch(|_| {});
        self.wait_ready();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        wait_for("ingestd to exit after SIGTERM", || {
            child.try_wait().unwrap()
        })
    }

    /// SIGKILL: the crash case.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket).expect("connect to the daemon")
    }

    fn try_status(&self) -> Option<StatusInfo> {
        let mut client = Client::connect(&self.socket).ok()?;
        // Short: at start-up the socket file may still be an old one nobody answers on.
        client.set_timeout(Some(Duration::from_secs(1))).ok()?;
        client.call(&cmd::Status {}).ok()
    }

    pub fn status(&self) -> StatusInfo {
        self.client().call(&cmd::Status {}).expect("status")
    }

    /// Sources through the protocol.
    pub fn ls(&self, group: Option<&str>) -> Vec<SourceSummary> {
        self.client()
            .call(&cmd::Ls {
                group: group.map(str::to_string),
                all: false,
            })
            .expect("ls")
    }

    /// Jobs of every group, oldest first (every page).
    pub fn jobs(&self) -> Vec<JobInfo> {
        let mut client = self.client();
        let mut all = Vec::new();
        let mut before = None;
        loop {
            let page: Vec<JobInfo> = client
                .call(&cmd::Jobs {
                    group: None,
                    all: true,
                    state: None,
                    ids: Vec::new(),
                    limit: None,
                    before,
                })
                .expect("jobs");
            let Some(first) = page.first() else {
                break;
            };
            before = Some(first.id);
            all.splice(0..0, page);
        }
        all
    }

    /// One job.
    pub fn job(&self, id: i64) -> JobInfo {
        let jobs: Vec<JobInfo> = self
            .client()
            .call(&cmd::Jobs {
                group: None,
                all: false,
                state: None,
                ids: vec![id],
                limit: None,
                before: None,
            })
            .expect("jobs");
        jobs.into_iter().next().expect("the job exists")
    }

    /// Wait until `source` of `group` has active embeddings of `version` ("v2").
    pub fn wait_embedded(&self, group: &str, source: &str, version: &str) -> SourceDetail {
        wait_for(
            &format!("{group}/{source} {version} to be embedded"),
            || {
                let detail: SourceDetail = self
                    .client()
                    .call(&cmd::Show {
                        source: source.to_string(),
                        group: Some(group.to_string()),
                        preview: None,
                        prefs: None,
                    })
                    .ok()?;
                detail
                    .embeddings
                    .as_ref()
                    .is_some_and(|e| e.version == version)
                    .then_some(detail)
            },
        )
    }

    /// A read-only connection to the catalog, to check what the daemon wrote.
    pub fn db(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_with_flags(
            self.dir.path().join("state/ingestd.sqlite"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the catalog");
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn
    }

    /// A connection to the daemon's PostgreSQL catalog, when it runs on one.
    pub fn pg(&self) -> Option<postgres::Client> {
        self.catalog_db.as_ref().map(|db| db.client())
    }

    /// A count from the catalog, whichever backend it is on (`sql` in the dialect both
    /// share).
    pub fn count(&self, sql: &str) -> i64 {
        match self.pg() {
            Some(mut client) => client.query_one(sql, &[]).expect(sql).get(0),
            None => self.db().query_row(sql, [], |r| r.get(0)).expect(sql),
        }
    }

    /// Job `id`'s state and attempt, from the catalog.
    pub fn job_state(&self, id: i64) -> (String, u32) {
        let sql = "SELECT state, attempt FROM jobs WHERE id = ";
        match self.pg() {
            Some(mut client) => {
                let r = client.query_one(&format!("{sql}$1"), &[&id]).unwrap();
                (r.get(0), r.get::<_, i32>(1) as u32)
            }
            None => self
                .db()
                .query_row(&format!("{sql}?1"), [id], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap(),
        }
    }

    pub fn show(&self, group: &str, source: &str) -> SourceDetail {
        self.client()
            .call(&cmd::Show {
                source: source.to_string(),
                group: Some(group.to_string()),
                preview: None,
                prefs: None,
            })
            .expect("show")
    }

    /// Run the real `ingestctl` against this daemon.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Process::new(ingestctl_path())
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .env_remove("INGESTD_SOCKET")
            .env_remove("INGESTD_CONFIG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("run ingestctl")
    }

    /// `ingestctl --json ARGS`, parsed; panics unless it exits 0.
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ctl(&all);
        assert!(
            out.status.success(),
            "ingestctl {all:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "ingestctl {all:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// The drop folder of `group`, created.
    pub fn group(&self, group: &str) -> PathBuf {
        let dir = self.drop_root.join(group);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Drop a file the way careful writers do: write under a hidden name, then rename.
    pub fn drop_file(&self, group: &str, name: &str, content: &[u8]) -> PathBuf {
        let dir = self.group(group);
        let tmp = dir.join(format!(".{name}.incoming"));
        std::fs::write(&tmp, content).unwrap();
        let path = dir.join(name);
        std::fs::rename(&tmp, &path).unwrap();
        path
    }

    /// Wait until `group/name` has left the in-flight states and return it.
    pub fn wait_settled(&self, group: &str, name: &str) -> SourceSummary {
        wait_for(&format!("{group}/{name} to be stored or rejected"), || {
            self.ls(Some(group)).into_iter().find(|s| {
                s.name == name
                    && !matches!(
                        s.status,
                        ingestd::protocol::Status::Pending | ingestd::protocol::Status::Validating
                    )
            })
        })
    }

    /// Wait until the daemon has nothing in flight and `group/name` shows `want`.
    /// Wait until `name` is stored (ready, or already on its way through embedding).
    pub fn wait_stored(&self, group: &str, name: &str) -> SourceSummary {
        wait_for(&format!("{group}/{name} to be stored"), || {
            self.ls(Some(group))
                .into_iter()
                .find(|s| s.name == name && s.status.is_stored())
        })
    }

    pub fn wait_status(
        &self,
        group: &str,
        name: &str,
        want: ingestd::protocol::Status,
    ) -> SourceSummary {
        wait_for(&format!("{group}/{name} to be {want}"), || {
            self.ls(Some(group))
                .into_iter()
                .find(|s| s.name == name && s.status == want)
        })
    }

    /// Audit lines from `audit.jsonl`.
    ///
    /// On PostgreSQL a node appends a record to `audit.jsonl` when its listener hears the
    /// commit, a moment after the action was answered: this waits until the file holds every
    /// record the node has committed, so a test reads it as it would on SQLite, and fails
    /// saying so if it does not within the harness's timeout. Only whole lines are read (the
    /// node may be appending one).
    pub fn audit(&self) -> Vec<serde_json::Value> {
        let read = || -> Vec<serde_json::Value> {
            let text = std::fs::read_to_string(&self.audit_log).unwrap_or_default();
            let whole = text.rfind('\n').map_or("", |end| &text[..end]);
            whole
                .lines()
                .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
                .collect()
        };
        let Some(db) = &self.catalog_db else {
            return read();
        };
        let row = db
            .client()
            .query_one("SELECT count(*) FROM audit WHERE node = $1", &[&PG_NODE])
            .expect("count the committed audit records");
        let committed = usize::try_from(row.get::<_, i64>(0)).unwrap_or(0);
        wait_for("audit.jsonl to hold every committed audit record", || {
            let records = read();
            (records.len() >= committed).then_some(records)
        })
    }

    /// Files (not folders) under `dir`, relative, sorted; hidden folders included.
    pub fn files_under(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for entry in walkdir::WalkDir::new(dir).into_iter().flatten() {
            if entry.file_type().is_file() {
                out.push(
                    entry
                        .path()
                        .strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
        out.sort();
        out
    }
}

/// Helpers for the service tests: custom start-up, signals, exit codes, config rewrites.
impl Daemon {
    /// The real `ingestd` with this daemon's config and the test environment, not started.
    pub fn command(&self) -> Process {
        let mut command = Process::new(env!("CARGO_BIN_EXE_ingestd"));
        command
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info,ingestd=debug")
            .env_remove("INGESTD_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .stdin(Stdio::null());
        command
    }

    /// Start the process after `customize` has adjusted its command; do not wait for it.
    pub fn launch(&mut self, customize: impl FnOnce(&mut Process)) {
        assert!(self.child.is_none(), "daemon already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut command = self.command();
        command.stdout(log.try_clone().unwrap()).stderr(log);
        customize(&mut command);
        self.child = Some(command.spawn().expect("spawn ingestd"));
    }

    /// Wait until the launched process answers `status`; fail if it exits first.
    pub fn wait_ready(&mut self) -> StatusInfo {
        wait_for("the daemon to answer status", || {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "ingestd exited at start ({status}); log:\n{}",
                    self.log_text()
                );
            }
            self.try_status()
        })
    }

    /// `status` if the daemon answers right now (short timeout), else `None`.
    pub fn answers_status(&self) -> Option<StatusInfo> {
        self.try_status()
    }

    /// Send `signal` to the running process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), signal).unwrap();
    }

    /// Wait for the process to exit (after a signal sent with [`Daemon::signal`]).
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        wait_for("ingestd to exit", || child.try_wait().unwrap())
    }

    /// Replace the config file: the standard test paths plus `extra` TOML.
    pub fn rewrite_config(&self, extra: &str) {
        let text = config_text(extra) + &self.catalog_toml;
        std::fs::write(&self.config, text).unwrap();
    }
}

/// The config file every test daemon gets: its own folders, the hashing provider, and `extra`.
pub fn config_text(extra: &str) -> String {
    format!(
        "[paths]\ndrop_root = \"../drop\"\nstorage_root = \"../store\"\n\
         database = \"../state/ingestd.sqlite\"\nsocket = \"../run/ingestd.sock\"\n\
         audit_log = \"../state/audit.jsonl\"\n[embedding]\nprovider = \"hashing\"\n{extra}"
    )
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- ingestd log ----\n{}", self.log_text());
        }
    }
}

/// A CSV with a header and `rows` rows, distinct per `seed`.
pub fn csv(seed: usize, rows: usize) -> Vec<u8> {
    let mut text = String::from("id,name,amount\n");
    for i in 0..rows {
        text.push_str(&format!(
            "{i},item-{seed}-{i},{}.{:02}\n",
            seed * 7 + i,
            i % 100
        ));
    }
    text.into_bytes()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
