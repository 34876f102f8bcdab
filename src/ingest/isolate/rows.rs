//! Row streams through a parse worker: the line protocol on the worker's stdout, and the parent
//! side that reads it.
//!
//! The worker writes NDJSON: `{"columns":[…]}` once, then one JSON array of strings per row,
//! then a last line, `{"rows":N}` or `{"rejected":{"reason":"…"}}`. It writes into a pipe and
//! blocks when the pipe is full, so a parent that takes minutes over a batch holds the worker
//! still at no cost: there is no deadline for a whole stream, only `limits.timeout` for each
//! wait for the next line, which a worker making progress always meets.
//!
//! This module owns reading that stream within bounds (one line at most [`MAX_LINE_BYTES`],
//! the worker's stderr drained beside it so it never blocks there) and deciding how it ended:
//! the last line, or — when the worker died first — the same judge as a one-shot read. It
//! never lets a stream that stopped early pass for a short file, and never leaves a worker
//! behind: every way out kills and reaps it.

use super::judge::{self, Ended, Failure};
use super::pipes::{self, Capture, Keep};
use super::{Limits, MAX_STDERR_BYTES, Running, WorkerError};
use crate::ingest::formats::{Rejection, RowEvent};
use nix::libc;
use std::io::{self, Read, Write};
use std::ops::ControlFlow;
use std::os::fd::AsRawFd;
use std::process::{ChildStderr, ChildStdout};
use std::time::Instant;

/// The longest line the parent takes: a row of 4,096-byte values is far shorter unless it has
/// thousands of columns; a longer line is not from a working worker.
pub(super) const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// The lines of the stream that are not rows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Line {
    /// First: the column names.
    Columns(Vec<String>),
    /// Last, after every row: how many there were.
    Rows(u64),
    /// Last: the reader refused the file (possibly after some rows).
    Rejected(Rejection),
}

/// One line of the stream.
pub(super) fn write_line(out: &mut impl Write, line: &Line) -> io::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")
}

/// One row: a JSON array of its values.
pub(super) fn write_row(out: &mut impl Write, row: &[String]) -> io::Result<()> {
    serde_json::to_writer(&mut *out, row)?;
    out.write_all(b"\n")
}

/// Read the stream of a started worker, handing it to `visit`.
pub(super) fn stream(
    mut worker: Running,
    limits: &Limits,
    visit: &mut dyn FnMut(RowEvent<'_>) -> ControlFlow<()>,
) -> Result<u64, Failure> {
    let (Some(stdout), Some(stderr)) = (worker.child.stdout.take(), worker.child.stderr.take())
    else {
        return Err(io_failure(io::Error::other("its output pipes are missing")));
    };
    let mut lines = Lines {
        stdout: Some(stdout),
        stderr: Some(stderr),
        errors: Capture::new(MAX_STDERR_BYTES, Keep::Tail),
        chunk: vec![0u8; 64 * 1024],
        buffer: Vec::new(),
        start: 0,
        scanned: 0,
    };
    let outcome = read_stream(&mut lines, limits, visit);
    let verdict = match outcome {
        Outcome::Stopped(rows) => {
            // The visitor asked to stop: end the worker, whatever it was doing.
            let _ = pipes::kill_and_reap(&mut worker.child);
            return Ok(rows);
        }
        Outcome::Last(verdict) => verdict,
        Outcome::Ended => Err(Failure::Worker(WorkerError::Garbage {
            detail: "its row stream ended without its last line".into(),
        })),
        Outcome::TimedOut => {
            let status = pipes::kill_and_reap(&mut worker.child).map_err(io_failure)?;
            let ended = lines.ended(status, true);
            return Err(judge::ending(&ended, limits)
                .err()
                .unwrap_or_else(|| Failure::Rejected(Rejection::new("reading it took too long"))));
        }
        Outcome::Broken(failure) => {
            let _ = pipes::kill_and_reap(&mut worker.child);
            return Err(failure);
        }
    };
    // The worker has said its last (or closed its output): how it exits decides the rest.
    lines.drain(Instant::now() + limits.timeout);
    let status = match pipes::reap_by(&mut worker.child, Instant::now() + limits.timeout) {
        Ok(Some(status)) => status,
        Ok(None) => {
            let status = pipes::kill_and_reap(&mut worker.child).map_err(io_failure)?;
            let ended = lines.ended(status, true);
            return Err(judge::ending(&ended, limits)
                .err()
                .unwrap_or_else(|| Failure::Rejected(Rejection::new("reading it took too long"))));
        }
        Err(error) => return Err(io_failure(error)),
    };
    let ended = lines.ended(status, false);
    if let Err(failure) = judge::ending(&ended, limits) {
        if let Failure::Rejected(rejection) = &failure {
            super::warn_failed(rejection, &ended.stderr);
        }
        return Err(failure);
    }
    verdict
}

/// How reading the stream stopped.
enum Outcome {
    /// The visitor broke after this many rows.
    Stopped(u64),
    /// The last line came: the rows, or the reader's rejection.
    Last(Result<u64, Failure>),
    /// Stdout closed before the last line.
    Ended,
    /// No next line within the timeout.
    TimedOut,
    /// Something that is not the stream, or a failure of ours.
    Broken(Failure),
}

fn read_stream(
    lines: &mut Lines,
    limits: &Limits,
    visit: &mut dyn FnMut(RowEvent<'_>) -> ControlFlow<()>,
) -> Outcome {
    let mut columns: Option<usize> = None;
    let mut rows: u64 = 0;
    loop {
        let line = match lines.next(Instant::now() + limits.timeout) {
            Ok(Next::Line(line)) => line,
            Ok(Next::End) => return Outcome::Ended,
            Ok(Next::TimedOut) => return Outcome::TimedOut,
            Err(failure) => return Outcome::Broken(failure),
        };
        if line.first() == Some(&b'[') {
            let Some(width) = columns else {
                return Outcome::Broken(garbage("a row before the columns", line));
            };
            let row: Vec<String> = match serde_json::from_slice(line) {
                Ok(row) => row,
                Err(e) => return Outcome::Broken(garbage(&e.to_string(), line)),
            };
            if row.len() != width {
                return Outcome::Broken(garbage(
                    &format!("a row of {} values under {width} columns", row.len()),
                    line,
                ));
            }
            let flow = visit(RowEvent::Row(&row));
            rows += 1;
            if flow.is_break() {
                return Outcome::Stopped(rows);
            }
            continue;
        }
        match serde_json::from_slice::<Line>(line) {
            Ok(Line::Columns(names)) if columns.is_none() => {
                columns = Some(names.len());
                if visit(RowEvent::Columns(&names)).is_break() {
                    return Outcome::Stopped(0);
                }
            }
            Ok(Line::Columns(_)) => {
                return Outcome::Broken(garbage("the columns a second time", line));
            }
            Ok(Line::Rows(count)) if count == rows && columns.is_some() => {
                return Outcome::Last(Ok(rows));
            }
            Ok(Line::Rows(count)) => {
                return Outcome::Broken(garbage(
                    &format!("a count of {count} rows after {rows}"),
                    line,
                ));
            }
            Ok(Line::Rejected(rejection)) => {
                return Outcome::Last(Err(Failure::Rejected(rejection)));
            }
            Err(e) => return Outcome::Broken(garbage(&e.to_string(), line)),
        }
    }
}

fn garbage(what: &str, line: &[u8]) -> Failure {
    Failure::Worker(WorkerError::Garbage {
        detail: format!("{what}; the line starts {:?}", judge::start_of(line)),
    })
}

fn io_failure(source: io::Error) -> Failure {
    Failure::Worker(WorkerError::Io {
        about: "read the row stream of",
        source,
    })
}

/// The next line, or why there is none.
enum Next<'a> {
    Line(&'a [u8]),
    End,
    TimedOut,
}

/// The worker's stdout cut into lines, its stderr drained alongside.
struct Lines {
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    errors: Capture,
    /// Reused for every read.
    chunk: Vec<u8>,
    buffer: Vec<u8>,
    /// Where the next line starts in `buffer`, and how far past it no newline was found.
    start: usize,
    scanned: usize,
}

impl Lines {
    /// The next line (without its newline), waiting for it until `deadline`.
    fn next(&mut self, deadline: Instant) -> Result<Next<'_>, Failure> {
        loop {
            if let Some(at) = self.buffer[self.scanned..].iter().position(|&b| b == b'\n') {
                let (start, end) = (self.start, self.scanned + at);
                self.start = end + 1;
                self.scanned = self.start;
                return Ok(Next::Line(&self.buffer[start..end]));
            }
            self.scanned = self.buffer.len();
            if self.scanned - self.start > MAX_LINE_BYTES {
                return Err(Failure::Worker(WorkerError::Garbage {
                    detail: format!("a line longer than {} MiB", MAX_LINE_BYTES / (1024 * 1024)),
                }));
            }
            if self.stdout.is_none() {
                return Ok(Next::End);
            }
            // Lines already handed out are dropped before more is read.
            if self.start > 0 {
                self.buffer.drain(..self.start);
                self.scanned -= self.start;
                self.start = 0;
            }
            if !self.fill(deadline).map_err(io_failure)? {
                return Ok(Next::TimedOut);
            }
        }
    }

    /// Read what is ready on either pipe; `false` if nothing came on stdout by `deadline`.
    fn fill(&mut self, deadline: Instant) -> io::Result<bool> {
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let mut fds = self.pollfds();
            if pipes::poll(&mut fds, deadline - now)? == 0 {
                continue;
            }
            if fds[1].revents != 0
                && let Some(pipe) = self.stderr.as_mut()
                && !pipes::read_into(pipe, &mut self.chunk, &mut self.errors)?
            {
                self.stderr = None;
            }
            if fds[0].revents != 0
                && let Some(pipe) = self.stdout.as_mut()
            {
                match pipe.read(&mut self.chunk) {
                    Ok(0) => self.stdout = None,
                    Ok(n) => self.buffer.extend_from_slice(&self.chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
                return Ok(true);
            }
        }
    }

    fn pollfds(&self) -> [libc::pollfd; 2] {
        let fd = |fd: Option<i32>| libc::pollfd {
            // A negative fd is skipped by poll: a pipe already closed.
            fd: fd.unwrap_or(-1),
            events: libc::POLLIN,
            revents: 0,
        };
        [
            fd(self.stdout.as_ref().map(|p| p.as_raw_fd())),
            fd(self.stderr.as_ref().map(|p| p.as_raw_fd())),
        ]
    }

    /// Read both pipes to their end (or `deadline`), keeping only stderr's tail: after the last
    /// line a worker has nothing more to say but its dying words.
    fn drain(&mut self, deadline: Instant) {
        while self.stdout.is_some() {
            self.buffer.clear();
            if !matches!(self.fill(deadline), Ok(true)) {
                return;
            }
        }
        self.buffer.clear();
        (self.start, self.scanned) = (0, 0);
        let _ = self.drain_stderr(deadline);
    }

    fn drain_stderr(&mut self, deadline: Instant) -> io::Result<()> {
        while let Some(pipe) = self.stderr.as_mut() {
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            let mut fds = [libc::pollfd {
                fd: pipe.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            if pipes::poll(&mut fds, deadline - now)? > 0
                && !pipes::read_into(pipe, &mut self.chunk, &mut self.errors)?
            {
                self.stderr = None;
            }
        }
        Ok(())
    }

    /// The worker's ending, for the judge.
    fn ended(&mut self, status: std::process::ExitStatus, timed_out: bool) -> Ended {
        if !timed_out {
            // Its dying words (an allocation failure, a panic) are on stderr, just written.
            let _ = self.drain_stderr(Instant::now() + std::time::Duration::from_millis(200));
        }
        Ended {
            status,
            timed_out,
            stdout: Vec::new(),
            stdout_overflow: false,
            stderr: std::mem::take(&mut self.errors.bytes),
        }
    }
}

#[cfg(test)]
mod tests;
