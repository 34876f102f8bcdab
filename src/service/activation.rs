//! Socket activation: take the listening socket systemd passes (`LISTEN_FDS`, `LISTEN_PID`,
//! the first descriptor being 3) instead of binding the control socket ourselves.
//!
//! The variables are meant for exactly one process: if `LISTEN_PID` is not ours they are
//! ignored. They are removed from the environment either way so no child inherits them, which
//! is why this runs before any thread exists. A passed socket belongs to systemd: the daemon
//! neither unlinks nor binds its path, and leaves it in place at exit.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
pub const FIRST_FD: RawFd = 3;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActivationError {
    #[error("LISTEN_FDS={0:?} is not a count of descriptors")]
    BadCount(String),
    #[error("LISTEN_PID={0:?} is not a process id")]
    BadPid(String),
    #[error("socket activation passed {0} descriptors; ingestd takes exactly one (ListenStream=)")]
    Count(u32),
    #[error(
        "descriptor {FIRST_FD} passed by socket activation is not a listening Unix stream \
             socket: {0}"
    )]
    NotAListener(String),
}

/// Which descriptor to take, from the variables' values and our pid. Pure, for tests.
pub fn decide(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    our_pid: u32,
) -> Result<Option<RawFd>, ActivationError> {
    let (Some(pid), Some(fds)) = (listen_pid, listen_fds) else {
        return Ok(None);
    };
    let pid: u32 = pid
        .trim()
        .parse()
        .map_err(|_| ActivationError::BadPid(pid.to_string()))?;
    if pid != our_pid {
        return Ok(None);
    }
    match fds.trim().parse::<u32>() {
        Ok(0) => Ok(None),
        Ok(1) => Ok(Some(FIRST_FD)),
        Ok(n) => Err(ActivationError::Count(n)),
        Err(_) => Err(ActivationError::BadCount(fds.to_string())),
    }
}

/// Take the passed listener, if there is one for this process.
///
/// Must be called before any other thread exists (it edits the environment).
pub fn take_listener() -> Result<Option<OwnedFd>, ActivationError> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    // SAFETY: called from `main` before the runtime or any other thread is started.
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    let Some(raw) = decide(pid.as_deref(), fds.as_deref(), std::process::id())? else {
        return Ok(None);
    };
    // SAFETY: systemd (or whoever set LISTEN_PID to us) handed this descriptor to this process;
    // nothing else in it owns descriptor 3.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    check_listener(&fd)?;
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map_err(|e| ActivationError::NotAListener(e.to_string()))?;
    Ok(Some(fd))
}

fn check_listener(fd: &OwnedFd) -> Result<(), ActivationError> {
    use nix::sys::socket::{AddressFamily, SockType, SockaddrLike, UnixAddr, getsockname, sockopt};
    let bad = |what: String| ActivationError::NotAListener(what);
    let kind =
        nix::sys::socket::getsockopt(fd, sockopt::SockType).map_err(|e| bad(e.to_string()))?;
    if kind != SockType::Stream {
        return Err(bad(format!("it is a {kind:?} socket")));
    }
    let listening =
        nix::sys::socket::getsockopt(fd, sockopt::AcceptConn).map_err(|e| bad(e.to_string()))?;
    if !listening {
        return Err(bad("it is not listening".into()));
    }
    let address: UnixAddr = getsockname(std::os::fd::AsRawFd::as_raw_fd(fd))
        .map_err(|e| bad(format!("it is not a Unix socket ({e})")))?;
    if address.family() != Some(AddressFamily::Unix) {
        return Err(bad("it is not a Unix socket".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_descriptor_is_taken() {
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Result<Option<RawFd>, ActivationError>,
        );
        let cases: &[Case] = &[
            (None, None, Ok(None)),
            (Some("42"), None, Ok(None)),
            (None, Some("1"), Ok(None)),
            (Some("42"), Some("1"), Ok(Some(3))),
            (Some("43"), Some("1"), Ok(None)),
            (Some("42"), Some("0"), Ok(None)),
            (Some("42"), Some("2"), Err(ActivationError::Count(2))),
            (
                Some("42"),
                Some("x"),
                Err(ActivationError::BadCount("x".into())),
            ),
            (
                Some("me"),
                Some("1"),
                Err(ActivationError::BadPid("me".into())),
            ),
        ];
        for (pid, fds, want) in cases {
            assert_eq!(&decide(*pid, *fds, 42), want, "{pid:?} {fds:?}");
        }
    }
}
