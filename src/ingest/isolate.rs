//! Parse isolation: every untrusted file is read by a child process, never by the daemon.
//!
//! Real files exist that make mature readers allocate gigabytes from a kilobyte, loop forever or
//! abort the process (DESIGN §3 step 3). So the daemon re-executes its own program as
//! `ingestd parse-worker`, one short-lived process per file. The daemon opens the file
//! (`O_NOFOLLOW`, a regular file only) and hands the worker that open file as its stdin — never
//! a path — with the format, the user to read as and the [`ReadOptions`] as arguments. The
//! worker ([`worker`]) limits itself before it reads anything — address space, CPU time, no core
//! dumps, no file writes, no other inherited descriptors, death with the daemon — and enters
//! its [`sandbox`] (an unprivileged uid when the daemon is root, no-new-privs, Landlock,
//! seccomp: no open, no socket, no execve), runs [`formats::extract`] and writes the
//! [`Extracted`] or [`Rejection`] as JSON on stdout. In rows mode (a trailing `rows` argument)
//! it runs [`formats::stream_rows`] instead and writes one line per row (`rows`).
//!
//! This module owns the parent side: starting the worker, its wall-clock timeout, collecting
//! its output within bounds (`pipes`), reading a row stream line by line (`rows`), and turning every way it can end into either a plain
//! reason the file is rejected with, or an error of ours that leaves the file in place
//! (`judge`). It must never parse file content itself, never wait on a worker without a
//! deadline, and never keep more of a worker's output than its caps.
//!
//! One process per file, not a pool: a worker adds about 1.6 ms to a file here, half of it
//! the cost of starting any process (`benches/ingest.rs` measures both), which is small beside
//! the settle window and the read; and a fresh process per file means no state — leaked
//! memory, a half-corrupted heap, spent CPU time — carries from a hostile file to the next.

mod judge;
mod pipes;
mod rows;
pub mod sandbox;
pub mod slots;
pub mod worker;

#[cfg(debug_assertions)]
pub mod hooks;

use super::formats::{self, Extracted, Format, ReadOptions, Rejection, RowEvent};
use crate::config;
use crate::protocol::WorkerSandbox;
use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::ops::ControlFlow;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use judge::Failure;

/// The hidden subcommand that makes `ingestd` a parse worker. `main` checks for it before
/// anything else runs.
pub const WORKER_COMMAND: &str = "parse-worker";

/// CPU seconds a worker may use beyond the wall-clock timeout. The wall clock normally ends a
/// slow read; the CPU limit is the backstop for a worker whose parent cannot act (stopped,
/// or gone before the death signal was armed).
const CPU_SLACK_SECS: u64 = 5;

/// What the parent keeps of a worker's stdout: the answer, a list of column names, is far
/// smaller; a file whose answer is not gets rejected rather than held in the daemon's memory.
const MAX_ANSWER_BYTES: usize = 8_000_000;

/// The largest request we send, as one argument of the worker. Options are under 200 bytes (a
/// sheet name is at most 31 characters).
const MAX_REQUEST_BYTES: usize = 4096;

/// What the parent keeps of a worker's stderr (the end of it: the allocation-failure message
/// is the last thing a worker writes).
const MAX_STDERR_BYTES: usize = 16 * 1024;

/// How far one worker may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Address space, bytes (RLIMIT_AS).
    pub memory: u64,
    /// Wall clock from start to exit of a read; the worker is killed after it. For a row
    /// stream, the longest wait for the next line (a stream as a whole has no deadline).
    pub timeout: Duration,
}

impl Limits {
    /// The limits `[ingest]` sets.
    pub fn of(ingest: &config::Ingest) -> Self {
        Self {
            memory: ingest.parse_memory_limit.as_u64(),
            timeout: Duration::from_secs(ingest.parse_timeout_secs),
        }
    }

    /// The CPU-time limit (RLIMIT_CPU), a little above the wall-clock timeout.
    fn cpu_secs(&self) -> u64 {
        self.timeout.as_secs_f64().ceil() as u64 + CPU_SLACK_SECS
    }
}

/// The read options `[ingest]` sets. The caller fills in the sheet from the group's
/// preferences.
pub fn read_options(ingest: &config::Ingest) -> ReadOptions {
    ReadOptions {
        sheet: None,
        max_cells: ingest.max_cells,
        max_unzipped_bytes: ingest.max_unzipped_size.as_u64(),
        set: Default::default(),
    }
}

/// Something went wrong on our side of reading a file: the file is not to blame, so it is left
/// in place and the problem reported.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("the parse worker cannot be confined: {0}")]
    User(#[from] sandbox::UserError),
    #[error("cannot start the parse worker {exe}: {source}")]
    Spawn {
        exe: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot {about} the parse worker: {source}")]
    Io {
        about: &'static str,
        source: std::io::Error,
    },
    #[error("the parse worker answered with something that is not a result ({detail})")]
    Garbage { detail: String },
    #[error("the parse worker failed with exit code {code}: {stderr}")]
    Failed { code: i32, stderr: String },
    #[error("the parse worker was stopped from outside (signal {signal})")]
    Stopped { signal: i32 },
}

/// Starts parse workers: the program to run and nothing else, so it is cheap to share.
#[derive(Debug, Clone)]
pub struct ParseWorker {
    exe: PathBuf,
    /// Who workers read as: resolved when this is made, an error when that failed (then no
    /// worker starts: none ever reads as root).
    user: Result<Option<sandbox::WorkerUser>, sandbox::UserError>,
}

impl Default for ParseWorker {
    fn default() -> Self {
        Self::current()
    }
}

impl ParseWorker {
    /// Workers that run this very program. On Linux that is `/proc/self/exe`, which names the
    /// running binary even after a package upgrade replaced the file on disk, so a worker can
    /// never be a different version than the daemon that speaks to it.
    pub fn current() -> Self {
        let exe = if cfg!(target_os = "linux") {
            PathBuf::from("/proc/self/exe")
        } else {
            std::env::current_exe().unwrap_or_else(|_| PathBuf::from("ingestd"))
        };
        Self {
            exe,
            user: sandbox::current_user(),
        }
    }

    /// Workers that run `exe`, an `ingestd` binary: for benchmarks and tests, where the
    /// running program is not `ingestd`.
    pub fn at(exe: impl Into<PathBuf>) -> Self {
        Self {
            exe: exe.into(),
            user: sandbox::current_user(),
        }
    }

    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// Read `path` as `format` in a fresh worker held to `limits`.
    pub fn extract(
        &self,
        format: Format,
        path: &Path,
        options: &ReadOptions,
        limits: &Limits,
    ) -> Result<Extracted, Failure> {
        let started = Instant::now();
        let deadline = started + limits.timeout;
        let file = open_input(path)?;
        let mut worker = self.start(format, file.into(), options, limits, Mode::Extract)?;
        let ended = pipes::collect(
            &mut worker.child,
            deadline,
            MAX_ANSWER_BYTES,
            MAX_STDERR_BYTES,
        );
        let ended = ended.map_err(|source| {
            Failure::Worker(WorkerError::Io {
                about: "collect the output of",
                source,
            })
        })?;
        let judged = judge::judge(&ended, limits);
        tracing::debug!(
            pid = worker.pid,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            status = %ended.status,
            timed_out = ended.timed_out,
            "parse worker ended"
        );
        if let Err(Failure::Rejected(rejection)) = &judged
            && !ended.status.success()
        {
            warn_failed(rejection, &ended.stderr);
        }
        judged
    }

    /// Stream the rows of `path` read in a fresh worker held to `limits`.
    ///
    /// The worker writes a row at a time and waits on the pipe while `visit` works, so there
    /// is no deadline for the whole stream: `limits.timeout` bounds each wait for the next
    /// line instead (the time `visit` takes does not count). `Break` from `visit` ends the
    /// worker and returns the rows visited so far. A file the reader refuses, or that makes
    /// the worker die part way, is `Failure::Rejected` as with [`Self::extract`] — after the
    /// rows before it were visited, so a caller must not take a partial stream as the file.
    /// A stream that ends without its last line is never a short success.
    pub fn stream_rows(
        &self,
        format: Format,
        path: &Path,
        options: &ReadOptions,
        limits: &Limits,
        visit: &mut dyn FnMut(RowEvent<'_>) -> ControlFlow<()>,
    ) -> Result<u64, Failure> {
        let file = open_input(path)?;
        let worker = self.start(format, file.into(), options, limits, Mode::Rows)?;
        rows::stream(worker, limits, visit)
    }

    /// Start a worker that confines itself as a reading worker would and reports how far that
    /// got, reading nothing: the daemon runs one at start-up for `status`. A worker that
    /// cannot confine itself gives the reason in `error`.
    pub fn probe(&self, limits: &Limits) -> WorkerSandbox {
        let failed = |error: String| WorkerSandbox {
            error: Some(error),
            landlock: "unknown".into(),
            ..WorkerSandbox::default()
        };
        let mut worker = match self.start(
            Format::Csv,
            Stdio::null(),
            &ReadOptions::default(),
            limits,
            Mode::Probe,
        ) {
            Ok(worker) => worker,
            Err(failure) => return failed(failure.to_string()),
        };
        let deadline = Instant::now() + limits.timeout;
        let ended = match pipes::collect(&mut worker.child, deadline, 4096, MAX_STDERR_BYTES) {
            Ok(ended) => ended,
            Err(error) => return failed(error.to_string()),
        };
        if !ended.status.success() {
            return failed(format!(
                "the probe worker ended with {}: {}",
                ended.status,
                String::from_utf8_lossy(&ended.stderr).trim_end()
            ));
        }
        serde_json::from_slice(&ended.stdout)
            .unwrap_or_else(|e| failed(format!("the probe worker answered garbage: {e}")))
    }

    /// Start a worker on `input` (its stdin: the open file, never a path) with its request.
    fn start(
        &self,
        format: Format,
        input: Stdio,
        options: &ReadOptions,
        limits: &Limits,
        mode: Mode,
    ) -> Result<Running, Failure> {
        let user = self
            .user
            .clone()
            .map_err(|e| Failure::Worker(WorkerError::User(e)))?;
        let request = serde_json::to_vec(options)
            .map_err(std::io::Error::from)
            .and_then(|request| match request.len() {
                0..=MAX_REQUEST_BYTES => Ok(request),
                n => Err(std::io::Error::other(format!(
                    "the read options take {n} bytes, more than a worker's request may"
                ))),
            })
            .map_err(|source| {
                Failure::Worker(WorkerError::Io {
                    about: "encode the request for",
                    source,
                })
            })?;
        let mut command = Command::new(&self.exe);
        command
            .args(worker_args(format, user, &request, limits, mode))
            // Nothing of the daemon's environment (API keys, RUST_LOG) reaches the worker.
            .env_clear()
            .current_dir("/")
            // Its own process group, so a terminal's Ctrl-C, meant for the daemon, does not
            // kill a worker mid-file and make its file look guilty.
            .process_group(0)
            .stdin(input)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = command.spawn().map_err(|source| {
            Failure::Worker(WorkerError::Spawn {
                exe: self.exe.clone(),
                source,
            })
        })?;
        let pid = child.id();
        running(|pids| {
            pids.insert(pid);
        });
        Ok(Running { child, pid })
    }
}

/// What a worker is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Columns and row count: one answer.
    Extract,
    /// The rows, one line each (the trailing `rows` argument).
    Rows,
    /// Confine, report the sandbox, read nothing (the trailing `probe` argument).
    Probe,
}

/// The argument that selects [`Mode::Rows`].
const ROWS_ARG: &str = "rows";

/// The argument that selects [`Mode::Probe`].
const PROBE_ARG: &str = "probe";

/// Open the file a worker will read: the daemon opens it, so the worker needs no path and no
/// right to open anything. `O_NOFOLLOW` and `O_NONBLOCK` (a FIFO put in its place must not
/// hang us), and only a regular file is handed on.
fn open_input(path: &Path) -> Result<File, Failure> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(open_failure)?;
    let metadata = file.metadata().map_err(open_failure)?;
    if !metadata.file_type().is_file() {
        return Err(Failure::Rejected(Rejection::new(
            "it could not be read: it is not a regular file",
        )));
    }
    Ok(file)
}

/// Whose fault a failed open or stat is. Only a file that is gone (`ENOENT`) or a symlink
/// (`ELOOP`, from `O_NOFOLLOW`) is the file's doing and rejected; anything else (out of file
/// descriptors or memory, an interrupted call, a permission or I/O error) is ours and
/// transient: the file stays in the drop folder and is tried again, never rejected for good.
fn open_failure(error: std::io::Error) -> Failure {
    match error.raw_os_error() {
        Some(nix::libc::ENOENT | nix::libc::ELOOP) => {
            Failure::Rejected(Rejection::new(format!("it could not be read: {error}")))
        }
        _ => Failure::Worker(WorkerError::Io {
            about: "open the file for",
            source: error,
        }),
    }
}

/// A started worker, counted among the running ones until this is dropped; dropping it also
/// kills and reaps the worker if nothing did yet, so no path out of a stream leaves one behind.
struct Running {
    child: std::process::Child,
    pid: u32,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = pipes::kill_and_reap(&mut self.child);
        }
        running(|pids| {
            pids.remove(&self.pid);
        });
    }
}

fn warn_failed(rejection: &Rejection, stderr: &[u8]) {
    tracing::warn!(
        reason = %rejection.reason,
        stderr = %String::from_utf8_lossy(stderr).trim_end(),
        "a file made the parse worker fail"
    );
}

/// `parse-worker <parent pid> <memory bytes> <cpu secs> <uid:gid|-> <format> <request>
/// [rows|probe]`: everything the worker needs before it reads any input, so it can confine
/// itself first. The file itself is its stdin.
fn worker_args(
    format: Format,
    user: Option<sandbox::WorkerUser>,
    request: &[u8],
    limits: &Limits,
    mode: Mode,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        WORKER_COMMAND.into(),
        std::process::id().to_string().into(),
        limits.memory.to_string().into(),
        limits.cpu_secs().to_string().into(),
        sandbox::WorkerUser::arg(user).into(),
        format.as_str().into(),
        String::from_utf8_lossy(request).into_owned().into(),
    ];
    match mode {
        Mode::Extract => {}
        Mode::Rows => args.push(ROWS_ARG.into()),
        Mode::Probe => args.push(PROBE_ARG.into()),
    }
    args
}

/// The worker's one line of output.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Answer {
    // Boxed: an extraction is large, a rejection small.
    Extracted(Box<Extracted>),
    Rejected(Rejection),
}

impl Answer {
    /// Send this answer as the worker's one line on stdout, flushed.
    pub(super) fn write(&self) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, self)?;
        out.write_all(b"\n")?;
        out.flush()
    }
}

impl From<Result<Extracted, Rejection>> for Answer {
    fn from(result: Result<Extracted, Rejection>) -> Self {
        match result {
            Ok(extracted) => Answer::Extracted(Box::new(extracted)),
            Err(rejection) => Answer::Rejected(rejection),
        }
    }
}

/// Run the reader in this process. Only the worker may call this: it is the one place that
/// parses untrusted content, and it must run under the worker's limits.
fn extract_here(format: Format, path: &Path, options: &ReadOptions) -> Answer {
    formats::extract(format, path, options).into()
}

/// Stream the rows in this process, one line each on `out`. Only the worker may call this, for
/// the same reason as [`extract_here`]. An error is a failed write: the parent went away.
fn stream_here(
    format: Format,
    path: &Path,
    options: &ReadOptions,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let mut failed = None;
    let result = formats::stream_rows(format, path, options, &mut |event| {
        let written = match event {
            RowEvent::Columns(columns) => {
                rows::write_line(out, &rows::Line::Columns(columns.to_vec()))
                    // The columns go out at once: the parent's wait for them is timed.
                    .and_then(|()| out.flush())
            }
            RowEvent::Row(row) => rows::write_row(out, row),
        };
        match written {
            Ok(()) => ControlFlow::Continue(()),
            Err(error) => {
                failed = Some(error);
                ControlFlow::Break(())
            }
        }
    });
    if let Some(error) = failed {
        return Err(error);
    }
    let last = match result {
        Ok(rows) => rows::Line::Rows(rows),
        Err(rejection) => rows::Line::Rejected(rejection),
    };
    rows::write_line(out, &last)?;
    out.flush()
}

/// "512 MB", "1.5 GB": a limit as it is written in the config, without a needless ".0".
fn limit_text(bytes: u64) -> String {
    super::human_size(bytes).replace(".0 ", " ")
}

/// Workers running now, so a stopping daemon can end them instead of waiting out their
/// timeout. Short sections, no await: a std Mutex.
static RUNNING: std::sync::Mutex<Option<std::collections::HashSet<u32>>> =
    std::sync::Mutex::new(None);

fn running(f: impl FnOnce(&mut std::collections::HashSet<u32>)) {
    if let Ok(mut guard) = RUNNING.lock() {
        f(guard.get_or_insert_with(Default::default));
    }
}

/// Kill every running worker (at shutdown). Their files stay in the drop folder, unblamed:
/// a kill the judge did not order leaves the file in place.
pub fn kill_running_workers() -> usize {
    let mut killed = 0;
    running(|pids| {
        for pid in pids.iter() {
            let pid = nix::unistd::Pid::from_raw(*pid as i32);
            if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).is_ok() {
                killed += 1;
            }
        }
    });
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_missing_file_or_a_symlink_is_the_files_fault() {
        use std::io::Error;
        for errno in [nix::libc::ENOENT, nix::libc::ELOOP] {
            assert!(matches!(
                open_failure(Error::from_raw_os_error(errno)),
                Failure::Rejected(_)
            ));
        }
        for errno in [
            nix::libc::EMFILE,
            nix::libc::ENFILE,
            nix::libc::ENOMEM,
            nix::libc::EINTR,
            nix::libc::EACCES,
            nix::libc::EIO,
        ] {
            assert!(
                matches!(
                    open_failure(Error::from_raw_os_error(errno)),
                    Failure::Worker(_)
                ),
                "errno {errno} must be transient"
            );
        }
        assert!(matches!(
            open_failure(Error::other("no errno")),
            Failure::Worker(_)
        ));
    }

    #[test]
    fn a_directory_or_a_symlink_is_rejected_and_a_file_opens() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.csv");
        std::fs::write(&file, "a\n1\n").unwrap();
        assert!(open_input(&file).is_ok());
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(matches!(open_input(&link), Err(Failure::Rejected(_))));
        assert!(matches!(open_input(dir.path()), Err(Failure::Rejected(_))));
        let gone = dir.path().join("gone.csv");
        assert!(matches!(open_input(&gone), Err(Failure::Rejected(_))));
    }

    #[test]
    fn limits_and_options_come_from_the_config() {
        let ingest = config::Ingest {
            parse_timeout_secs: 7,
            max_cells: 12,
            max_unzipped_size: bytesize::ByteSize::mb(3),
            ..Default::default()
        };
        let limits = Limits::of(&ingest);
        assert_eq!(limits.memory, 512_000_000);
        assert_eq!(limits.timeout, Duration::from_secs(7));
        assert_eq!(limits.cpu_secs(), 7 + CPU_SLACK_SECS);
        assert_eq!(
            read_options(&ingest),
            ReadOptions {
                sheet: None,
                max_cells: 12,
                max_unzipped_bytes: 3_000_000,
                set: Default::default(),
            }
        );
    }

    #[test]
    fn worker_arguments_carry_limits_before_the_file() {
        let limits = Limits {
            memory: 1000,
            timeout: Duration::from_millis(1500),
        };
        let user = Some(sandbox::WorkerUser {
            uid: 65534,
            gid: 65534,
        });
        let args = worker_args(Format::Tsv, user, b"{}", &limits, Mode::Extract);
        let args: Vec<_> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let pid = std::process::id().to_string();
        let cpu = (2 + CPU_SLACK_SECS).to_string();
        assert_eq!(
            args,
            [
                WORKER_COMMAND,
                &pid,
                "1000",
                &cpu,
                "65534:65534",
                "tsv",
                "{}"
            ]
        );
        let rows = worker_args(Format::Csv, None, b"{}", &limits, Mode::Rows);
        assert_eq!(
            rows.last().map(|a| a.to_string_lossy().into_owned()),
            Some("rows".into())
        );
    }

    #[test]
    fn a_request_too_large_is_refused_before_any_worker_starts() {
        let options = ReadOptions {
            sheet: Some("x".repeat(MAX_REQUEST_BYTES)),
            ..ReadOptions::default()
        };
        let limits = Limits::of(&config::Ingest::default());
        let worker = ParseWorker::at("/nonexistent/ingestd");
        let file = tempfile::NamedTempFile::new().unwrap();
        match worker.extract(Format::Xlsx, file.path(), &options, &limits) {
            Err(Failure::Worker(error @ WorkerError::Io { .. })) => {
                assert!(
                    error
                        .to_string()
                        .contains("more than a worker's request may"),
                    "{error}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn limits_read_as_written() {
        assert_eq!(limit_text(512_000_000), "512 MB");
        assert_eq!(limit_text(1_500_000_000), "1.5 GB");
    }

    #[test]
    fn answers_round_trip() {
        let answer = Answer::Rejected(Rejection::new("it has no header row"));
        let text = serde_json::to_string(&answer).unwrap();
        assert_eq!(text, r#"{"rejected":{"reason":"it has no header row"}}"#);
        assert_eq!(serde_json::from_str::<Answer>(&text).unwrap(), answer);
    }
}
