//! Collecting a worker's stdout and stderr and its exit status, by a deadline, within caps.
//!
//! One thread, `poll(2)` on both pipes: reading them one after the other could deadlock (a
//! worker blocked on a full stderr pipe while we wait for stdout to end), and a thread per pipe
//! per file buys nothing `poll` does not. Whatever happens here the worker is reaped before we
//! return — killed first if the deadline passed or reading failed — so no worker outlives its
//! file and no zombie is left behind. It never keeps more than the caps, whatever the worker
//! writes.

use super::judge::Ended;
use nix::libc;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// Read the worker's output until both pipes close, then reap it; kill it at `deadline`.
pub(super) fn collect(
    child: &mut Child,
    deadline: Instant,
    max_stdout: usize,
    max_stderr: usize,
) -> io::Result<Ended> {
    let mut stdout = Capture::new(max_stdout, Keep::Head);
    let mut stderr = Capture::new(max_stderr, Keep::Tail);
    let pumped = pump(child, deadline, &mut stdout, &mut stderr);
    let reaped = match pumped {
        Ok(true) => reap_by(child, deadline),
        Ok(false) => Ok(None),
        Err(e) => {
            let _ = kill_and_reap(child);
            return Err(e);
        }
    };
    let (status, timed_out) = match reaped {
        Ok(Some(status)) => (status, false),
        Ok(None) => (kill_and_reap(child)?, true),
        Err(e) => {
            let _ = kill_and_reap(child);
            return Err(e);
        }
    };
    Ok(Ended {
        status,
        timed_out,
        stdout_overflow: stdout.dropped,
        stdout: stdout.bytes,
        stderr: stderr.bytes,
    })
}

/// Move output into the captures until both pipes close (`true`) or the deadline (`false`).
fn pump(
    child: &mut Child,
    deadline: Instant,
    stdout: &mut Capture,
    stderr: &mut Capture,
) -> io::Result<bool> {
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let mut buffer = vec![0u8; 64 * 1024];
    while out.is_some() || err.is_some() {
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        let mut fds: Vec<libc::pollfd> = [
            out.as_ref().map(|p| p.as_raw_fd()),
            err.as_ref().map(|p| p.as_raw_fd()),
        ]
        .into_iter()
        .map(|fd| libc::pollfd {
            // A negative fd is skipped by poll: a pipe already closed.
            fd: fd.unwrap_or(-1),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
        if poll(&mut fds, deadline - now)? == 0 {
            continue;
        }
        if fds[0].revents != 0
            && let Some(pipe) = out.as_mut()
            && !read_into(pipe, &mut buffer, stdout)?
        {
            out = None;
        }
        if fds[1].revents != 0
            && let Some(pipe) = err.as_mut()
            && !read_into(pipe, &mut buffer, stderr)?
        {
            err = None;
        }
    }
    Ok(true)
}

/// One read from a ready pipe into `capture`; `false` at end of file.
pub(super) fn read_into(
    pipe: &mut impl Read,
    buffer: &mut [u8],
    capture: &mut Capture,
) -> io::Result<bool> {
    loop {
        match pipe.read(buffer) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                capture.push(&buffer[..n]);
                return Ok(true);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `poll(2)` with a timeout rounded up to whole milliseconds, so a wait just short of the
/// deadline sleeps instead of spinning; `EINTR` counts as "nothing ready yet".
pub(super) fn poll(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<usize> {
    let millis = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `fds` is a live, exclusively borrowed slice of `pollfd`, and its length is passed
    // with it; poll writes only the `revents` fields inside it.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
    if ready < 0 {
        let error = io::Error::last_os_error();
        return match error.kind() {
            io::ErrorKind::Interrupted => Ok(0),
            _ => Err(error),
        };
    }
    Ok(ready as usize)
}

/// Wait for the exit that follows closed pipes, by `deadline`; `None` if it has not come.
///
/// A worker closes its pipes only by exiting, so the exit follows within microseconds (the
/// kernel closes files before it tears down the address space): the first looks only yield
/// the CPU, as a sleep would cost more than the wait. The deadline covers a worker that closes
/// its pipes and carries on.
pub(super) fn reap_by(child: &mut Child, deadline: Instant) -> io::Result<Option<ExitStatus>> {
    const YIELDS: u32 = 200;
    let mut looks = 0u32;
    let mut pause = Duration::from_micros(50);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        looks += 1;
        if looks <= YIELDS {
            std::thread::yield_now();
        } else {
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }
}

/// SIGKILL (a worker not yet reaped cannot have had its pid reused), then reap.
pub(super) fn kill_and_reap(child: &mut Child) -> io::Result<ExitStatus> {
    // Fails only if it already exited, which the wait below then reports.
    let _ = child.kill();
    child.wait()
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Keep {
    /// The first bytes (an answer is useless if cut, so only whether it fit matters).
    Head,
    /// The last bytes (where a dying process says why).
    Tail,
}

/// Output kept within a cap; the rest is read and dropped so the worker never blocks on us.
pub(super) struct Capture {
    pub bytes: Vec<u8>,
    max: usize,
    keep: Keep,
    pub dropped: bool,
}

impl Capture {
    pub fn new(max: usize, keep: Keep) -> Self {
        Self {
            bytes: Vec::new(),
            max,
            keep,
            dropped: false,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        match self.keep {
            Keep::Head => {
                let room = self.max.saturating_sub(self.bytes.len());
                self.bytes
                    .extend_from_slice(&chunk[..chunk.len().min(room)]);
                self.dropped |= chunk.len() > room;
            }
            Keep::Tail => {
                self.bytes.extend_from_slice(chunk);
                if self.bytes.len() > self.max {
                    let excess = self.bytes.len() - self.max;
                    self.bytes.drain(..excess);
                    self.dropped = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};

    fn sh(script: &str) -> Child {
        Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(20)
    }

    #[test]
    fn captures_keep_the_head_or_the_tail() {
        let mut head = Capture::new(4, Keep::Head);
        head.push(b"abc");
        head.push(b"def");
        assert_eq!((head.bytes.as_slice(), head.dropped), (&b"abcd"[..], true));
        let mut tail = Capture::new(4, Keep::Tail);
        tail.push(b"abc");
        assert!(!tail.dropped);
        tail.push(b"def");
        assert_eq!((tail.bytes.as_slice(), tail.dropped), (&b"cdef"[..], true));
    }

    #[test]
    fn both_pipes_are_read_even_when_one_fills() {
        // 1 MB on stderr before anything on stdout: reading stdout alone would deadlock.
        let mut child = sh("head -c 1000000 /dev/zero >&2; echo answer; exit 3");
        let ended = collect(&mut child, soon(), 100, 10).unwrap();
        assert_eq!(ended.status.code(), Some(3));
        assert!(!ended.timed_out);
        assert_eq!(ended.stdout, b"answer\n");
        assert_eq!(ended.stderr.len(), 10);
    }

    #[test]
    fn output_past_the_cap_is_drained_and_flagged() {
        let mut child = sh("head -c 300000 /dev/zero");
        let ended = collect(&mut child, soon(), 1000, 10).unwrap();
        assert_eq!(ended.status.code(), Some(0));
        assert_eq!(ended.stdout.len(), 1000);
        assert!(ended.stdout_overflow);
    }

    #[test]
    fn a_worker_past_its_deadline_is_killed_and_reaped() {
        let mut child = sh("echo partial; exec sleep 30");
        let ended = collect(
            &mut child,
            Instant::now() + Duration::from_millis(300),
            100,
            100,
        )
        .unwrap();
        assert!(ended.timed_out);
        assert_eq!(ended.status.signal(), Some(libc::SIGKILL));
        assert_eq!(ended.stdout, b"partial\n");
        // Reaped: there is nothing left to wait for.
        assert!(child.try_wait().unwrap().is_some());
    }

    #[test]
    fn a_worker_that_closes_its_pipes_and_carries_on_is_killed_at_the_deadline() {
        let mut child = sh("exec >&- 2>&-; sleep 30");
        let ended = collect(
            &mut child,
            Instant::now() + Duration::from_millis(300),
            100,
            100,
        )
        .unwrap();
        assert!(ended.timed_out);
        assert_eq!(ended.status.signal(), Some(libc::SIGKILL));
    }
}
