//! How a parse worker ended, and what that means for its file.
//!
//! Pure: a table from (exit status, whether we killed it, what it wrote) to either the reader's
//! answer, a reason the file is rejected with, or an error of ours. The line it draws: whatever
//! the *file* can make a reader do — exhaust memory, spin, crash, panic, produce a monstrous
//! answer — rejects the file with a plain reason; whatever only *we* or the system can cause —
//! unparsable output, a usage error, a kill from outside — leaves the file in place, because
//! rejecting it would blame the file for our bug.

use super::{Answer, Limits, MAX_ANSWER_BYTES, WorkerError, limit_text};
use crate::ingest::formats::{Extracted, Rejection};
use nix::libc;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// The exit code of a Rust program that panicked.
const PANIC_EXIT: i32 = 101;

/// What std's allocation-failure handler writes just before it aborts.
const ALLOC_FAILED: &str = "memory allocation of ";

/// Everything the parent saw of one worker.
#[derive(Debug)]
pub(super) struct Ended {
    pub status: ExitStatus,
    /// The parent killed it at the wall-clock deadline.
    pub timed_out: bool,
    /// The start of stdout, at most the answer cap.
    pub stdout: Vec<u8>,
    /// Stdout went past the cap (the rest was read and dropped).
    pub stdout_overflow: bool,
    /// The end of stderr.
    pub stderr: Vec<u8>,
}

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The file's doing: reject it with this reason.
    #[error(transparent)]
    Rejected(Rejection),
    /// Ours: leave the file in place and report this.
    #[error(transparent)]
    Worker(WorkerError),
}

pub(super) fn judge(ended: &Ended, limits: &Limits) -> Result<Extracted, Failure> {
    ending(ended, limits)?;
    if ended.stdout_overflow {
        return Err(Failure::Rejected(Rejection::new(format!(
            "it has too many columns to record (their names take more than {})",
            limit_text(MAX_ANSWER_BYTES as u64)
        ))));
    }
    match serde_json::from_slice::<Answer>(&ended.stdout) {
        Ok(Answer::Extracted(extracted)) => Ok(*extracted),
        Ok(Answer::Rejected(rejection)) => Err(Failure::Rejected(rejection)),
        Err(e) => Err(Failure::Worker(WorkerError::Garbage {
            detail: format!("{e}; it starts {:?}", start_of(&ended.stdout)),
        })),
    }
}

/// How the worker ended, whatever it wrote: `Ok` for a clean exit (its output then decides),
/// else the rejection or error its ending means. Row streams, whose output is judged line by
/// line, are judged by this too.
pub(super) fn ending(ended: &Ended, limits: &Limits) -> Result<(), Failure> {
    let reject = |reason: String| Err(Failure::Rejected(Rejection::new(reason)));
    let too_slow = || format!("reading it took longer than {}", seconds(limits));
    if ended.timed_out {
        return reject(too_slow());
    }
    if let Some(signal) = ended.status.signal() {
        return match signal {
            libc::SIGABRT if out_of_memory(&ended.stderr) => reject(format!(
                "it needs more than {} of memory to read",
                limit_text(limits.memory)
            )),
            // The CPU-time limit sits above the wall-clock timeout, so reaching it is the same
            // verdict: the file takes too long to read.
            libc::SIGXCPU => reject(too_slow()),
            // Nothing a reader does raises these: someone or something outside stopped it
            // (an operator, the system's out-of-memory killer, a dying terminal).
            libc::SIGKILL
            | libc::SIGTERM
            | libc::SIGINT
            | libc::SIGHUP
            | libc::SIGQUIT
            | libc::SIGPIPE => Err(Failure::Worker(WorkerError::Stopped { signal })),
            _ => reject(format!("it made the reader crash (signal {signal})")),
        };
    }
    match ended.status.code() {
        Some(0) => Ok(()),
        Some(PANIC_EXIT) => reject("it made the reader crash (panic)".into()),
        Some(code) => Err(Failure::Worker(WorkerError::Failed {
            code,
            stderr: last_line(&ended.stderr),
        })),
        // Neither an exit code nor a signal: not something a Unix wait status can be.
        None => Err(Failure::Worker(WorkerError::Failed {
            code: -1,
            stderr: last_line(&ended.stderr),
        })),
    }
}

fn out_of_memory(stderr: &[u8]) -> bool {
    String::from_utf8_lossy(stderr).contains(ALLOC_FAILED)
}

/// "30 s", or "1.5 s" for the sub-second timeouts tests use.
fn seconds(limits: &Limits) -> String {
    let timeout = limits.timeout;
    if timeout.subsec_nanos() == 0 {
        format!("{} s", timeout.as_secs())
    } else {
        format!("{:.1} s", timeout.as_secs_f64())
    }
}

pub(super) fn start_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(60)]).into_owned()
}

fn last_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text.trim_end().lines().last().unwrap_or("").trim();
    if line.is_empty() {
        "it wrote nothing on stderr".into()
    } else {
        line.chars().take(300).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const LIMITS: Limits = Limits {
        memory: 512_000_000,
        timeout: Duration::from_secs(30),
    };

    fn exited(code: i32, stdout: &str, stderr: &str) -> Ended {
        Ended {
            status: ExitStatus::from_raw(code << 8),
            timed_out: false,
            stdout: stdout.as_bytes().to_vec(),
            stdout_overflow: false,
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    fn signalled(signal: i32, stderr: &str) -> Ended {
        Ended {
            status: ExitStatus::from_raw(signal),
            ..exited(0, "", stderr)
        }
    }

    /// The reason a file is rejected with, or `Err` with our error's text.
    fn verdict(ended: Ended) -> Result<String, String> {
        match judge(&ended, &LIMITS) {
            Ok(extracted) => Ok(format!("extracted {:?}", extracted.columns)),
            Err(Failure::Rejected(rejection)) => Ok(rejection.reason),
            Err(Failure::Worker(error)) => Err(error.to_string()),
        }
    }

    #[test]
    fn every_ending_has_a_verdict() {
        let extracted = r#"{"extracted":{"columns":["a"],"skipped":[],"rows":1,"notes":[]}}"#;
        let oom = "memory allocation of 67108864 bytes failed\n";
        let cases: Vec<(&str, Ended, Result<&str, &str>)> = vec![
            ("answer", exited(0, extracted, ""), Ok(r#"extracted ["a"]"#)),
            (
                "reader's rejection",
                exited(0, r#"{"rejected":{"reason":"it has no header row"}}"#, ""),
                Ok("it has no header row"),
            ),
            (
                "killed at the deadline",
                Ended {
                    timed_out: true,
                    ..signalled(libc::SIGKILL, "")
                },
                Ok("reading it took longer than 30 s"),
            ),
            (
                "allocation failure",
                signalled(libc::SIGABRT, oom),
                Ok("it needs more than 512 MB of memory to read"),
            ),
            (
                "abort without the message",
                signalled(libc::SIGABRT, "assertion failed\n"),
                Ok("it made the reader crash (signal 6)"),
            ),
            (
                "segfault",
                signalled(libc::SIGSEGV, ""),
                Ok("it made the reader crash (signal 11)"),
            ),
            (
                "stack overflow",
                signalled(libc::SIGSEGV, "thread 'main' has overflowed its stack\n"),
                Ok("it made the reader crash (signal 11)"),
            ),
            (
                "CPU limit",
                signalled(libc::SIGXCPU, ""),
                Ok("reading it took longer than 30 s"),
            ),
            (
                "panic",
                exited(101, "", "thread 'main' panicked at src/x.rs:1:1:\nboom\n"),
                Ok("it made the reader crash (panic)"),
            ),
            (
                "huge answer",
                Ended {
                    stdout_overflow: true,
                    ..exited(0, "{\"extracted\":", "")
                },
                Ok("it has too many columns to record (their names take more than 8 MB)"),
            ),
            (
                "garbage",
                exited(0, "running 0 tests", ""),
                Err("the parse worker answered with something that is not a result"),
            ),
            (
                "nothing at all",
                exited(0, "", ""),
                Err("the parse worker answered with something that is not a result"),
            ),
            (
                "usage error",
                exited(64, "", "parse-worker: expected 5 arguments\n"),
                Err("the parse worker failed with exit code 64: parse-worker: expected 5"),
            ),
            (
                "killed from outside",
                signalled(libc::SIGKILL, ""),
                Err("the parse worker was stopped from outside (signal 9)"),
            ),
            (
                "terminal interrupt",
                signalled(libc::SIGINT, ""),
                Err("the parse worker was stopped from outside (signal 2)"),
            ),
        ];
        for (what, ended, want) in cases {
            let got = verdict(ended);
            match (&got, want) {
                (Ok(reason), Ok(want)) => assert_eq!(reason, want, "{what}"),
                (Err(error), Err(want)) => assert!(error.starts_with(want), "{what}: {error}"),
                _ => panic!("{what}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn sub_second_timeouts_read_as_decimals() {
        let limits = Limits {
            timeout: Duration::from_millis(1500),
            ..LIMITS
        };
        let ended = Ended {
            timed_out: true,
            ..signalled(libc::SIGKILL, "")
        };
        match judge(&ended, &limits) {
            Err(Failure::Rejected(r)) => assert_eq!(r.reason, "reading it took longer than 1.5 s"),
            other => panic!("{other:?}"),
        }
    }
}
