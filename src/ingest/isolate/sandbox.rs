//! The parse worker's sandbox: who a worker reads as, and everything it gives up before it
//! reads a byte.
//!
//! A worker runs third-party readers (calamine, the Parquet codecs; zstd and lz4 are C) over
//! bytes anyone who can drop a file chose. Rlimits bound what a bad file costs; this module
//! bounds what a reader taken over by one can *do*: it reads as an unprivileged user when the
//! daemon is root (`ingest.worker_user`), in no supplementary group, with
//! `PR_SET_NO_NEW_PRIVS`, under a Landlock ruleset that grants no filesystem or network
//! access (where the kernel has Landlock), and under a seccomp filter that allows reading and
//! writing the descriptors it already holds, memory, time, signals and exit — no `open`, no
//! `socket`, no `execve`, no `fork`. The file arrives already open (its stdin), so nothing
//! needs a path. When the daemon is root the worker is also chrooted into an empty, deleted
//! directory before it drops root, so the one path-taking call the filter cannot tell from
//! `fstat` (`newfstatat`/`statx` with `AT_EMPTY_PATH`) finds nothing.
//!
//! The uid change, no-new-privs and seccomp fail closed: a worker that cannot apply one of them
//! exits with an error before reading, and its file is reported, never read unconfined.
//! Landlock is best effort and its state is reported (`status`, `parse_worker_sandbox`).
//!
//! This module owns resolving the worker user at start-up (parent side) and applying the
//! sandbox (worker side). It never reads input and never widens the filter for a test: the
//! debug hooks run under the very filter release workers run under.

use crate::protocol::WorkerSandbox;
use std::sync::Mutex;

pub use crate::config::DEFAULT_WORKER_USER;

/// Who a parse worker reads as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerUser {
    pub uid: u32,
    pub gid: u32,
}

impl WorkerUser {
    /// The worker's argument: `uid:gid`, or `-` for "stay who you are".
    pub(super) fn arg(user: Option<WorkerUser>) -> String {
        match user {
            Some(user) => format!("{}:{}", user.uid, user.gid),
            None => "-".into(),
        }
    }

    /// The inverse of [`Self::arg`].
    pub(super) fn parse_arg(arg: &str) -> Option<Option<WorkerUser>> {
        if arg == "-" {
            return Some(None);
        }
        let (uid, gid) = arg.split_once(':')?;
        Some(Some(WorkerUser {
            uid: uid.parse().ok()?,
            gid: gid.parse().ok()?,
        }))
    }
}

/// The worker user cannot be used: a start-up error when the daemon runs as root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error(
        "ingest.worker_user = {name:?}: no such user. ingestd runs as root, so its parse \
         workers switch to an unprivileged user before reading a file; create that user or \
         name another"
    )]
    NoSuchUser { name: String },
    #[error(
        "ingest.worker_user = {name:?} is root (uid 0); parse workers must read as an \
         unprivileged user"
    )]
    Root { name: String },
    #[error("cannot look up ingest.worker_user = {name:?}: {reason}")]
    Lookup { name: String, reason: String },
}

/// The user workers of a daemon configured with `name` read as: `None` (stay) unless this
/// process is root.
pub fn resolve(name: &str) -> Result<Option<WorkerUser>, UserError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name(name)
        .map_err(|e| UserError::Lookup {
            name: name.into(),
            reason: e.to_string(),
        })?
        .ok_or_else(|| UserError::NoSuchUser { name: name.into() })?;
    if user.uid.is_root() {
        return Err(UserError::Root { name: name.into() });
    }
    Ok(Some(WorkerUser {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    }))
}

/// The worker user the daemon resolved at start-up. Short sections, no await: a std Mutex.
static CONFIGURED: Mutex<Option<Option<WorkerUser>>> = Mutex::new(None);

/// Set the worker user every worker started from now on reads as (the daemon, at start-up).
pub fn configure(user: Option<WorkerUser>) {
    *CONFIGURED.lock().unwrap_or_else(|e| e.into_inner()) = Some(user);
}

/// The configured worker user, or — in a program that configured none (tests, benches) —
/// the default one.
pub(super) fn current_user() -> Result<Option<WorkerUser>, UserError> {
    match *CONFIGURED.lock().unwrap_or_else(|e| e.into_inner()) {
        Some(user) => Ok(user),
        None => resolve(DEFAULT_WORKER_USER),
    }
}

/// The sandbox as the daemon's probe worker reported it at start-up.
static REPORTED: Mutex<Option<WorkerSandbox>> = Mutex::new(None);

/// Keep the probe's report for `status`.
pub fn set_report(report: WorkerSandbox) {
    *REPORTED.lock().unwrap_or_else(|e| e.into_inner()) = Some(report);
}

/// The probe's report, if a probe ran.
pub fn report() -> Option<WorkerSandbox> {
    REPORTED.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// A part of the sandbox that could not be applied: the worker stops before reading.
#[derive(Debug, thiserror::Error)]
#[error("cannot {about}: {reason}")]
pub struct SandboxFailure {
    about: &'static str,
    reason: String,
}

fn failed(about: &'static str) -> impl FnOnce(String) -> SandboxFailure {
    move |reason| SandboxFailure { about, reason }
}

/// Apply the whole sandbox to this (single-threaded) worker process, started by `parent`.
/// Returns what holds now.
pub(super) fn enter(
    user: Option<WorkerUser>,
    parent: u32,
) -> Result<WorkerSandbox, SandboxFailure> {
    // Root only: chroot needs the privilege the uid switch gives up.
    if user.is_some() {
        empty_root()?;
    }
    switch_user(user)?;
    // A change of credentials clears the death signal: arm it again (`prctl` is refused once
    // the filter is in), and make sure the daemon did not die in between.
    #[cfg(target_os = "linux")]
    {
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
            .map_err(|e| failed("arrange to die with the daemon")(e.to_string()))?;
        if nix::unistd::getppid().as_raw() as u32 != parent {
            return Err(failed("start")(
                "the daemon that asked for this worker is gone".into(),
            ));
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = parent;
    nix::sys::prctl::set_no_new_privs().map_err(|e| failed("set no-new-privs")(e.to_string()))?;
    let landlock = landlock();
    let program = seccomp_program().map_err(|e| failed("build the seccomp filter")(e))?;
    seccompiler::apply_filter(&program)
        .map_err(|e| failed("install the seccomp filter")(e.to_string()))?;
    Ok(WorkerSandbox {
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        no_new_privs: nix::sys::prctl::get_no_new_privs().unwrap_or(false),
        landlock: landlock.into(),
        // PR_GET_SECCOMP answers 2 under a filter.
        seccomp: seccomp_mode() == Some(2),
        error: None,
    })
}

/// Make an empty, deleted directory this process's root, so that no path names anything.
///
/// The filter must let `fstat` through, and glibc's `fstat` is `newfstatat`/`statx` with
/// `AT_EMPTY_PATH`; a BPF filter cannot read the path argument, so the same call with a real
/// path passes the filter, and Landlock does not cover stat. Rooted in a directory that no
/// longer exists, every path lookup below `/` ends in ENOENT: a taken-over reader cannot learn
/// whether a path exists, its size or owner. The directory is removed before the chroot, so
/// nothing is left behind and nothing can be created in it (a deleted directory takes no new
/// entries, even for root).
fn empty_root() -> Result<(), SandboxFailure> {
    use std::os::unix::fs::DirBuilderExt;
    // The environment is cleared, so this is /tmp: sticky, so no one else can rename or
    // replace a root-owned directory in it between the steps below.
    // A random name, so nobody can plant a folder or link there first and make every worker
    // refuse to start (create_dir never follows or reuses what is there).
    let dir = std::env::temp_dir().join(format!(
        "ingestd-worker-root-{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::DirBuilder::new()
        .mode(0o555)
        .create(&dir)
        .map_err(|e| failed("create an empty root directory")(format!("{}: {e}", dir.display())))?;
    let entered = nix::unistd::chdir(&dir);
    let removed = std::fs::remove_dir(&dir);
    entered.map_err(|e| failed("enter the empty root directory")(e.to_string()))?;
    removed.map_err(|e| failed("remove the empty root directory")(e.to_string()))?;
    nix::unistd::chroot(".")
        .map_err(|e| failed("chroot into an empty directory")(e.to_string()))?;
    nix::unistd::chdir("/").map_err(|e| failed("chroot into an empty directory")(e.to_string()))?;
    Ok(())
}

/// Become `user`, in no supplementary group, for good; or, with no user, make sure we are not
/// root.
fn switch_user(user: Option<WorkerUser>) -> Result<(), SandboxFailure> {
    use nix::unistd::{Gid, Uid, getresgid, getresuid, setgroups, setresgid, setresuid};
    let Some(user) = user else {
        let ids = getresuid().map_err(|e| failed("read the worker's uid")(e.to_string()))?;
        if [ids.real, ids.effective, ids.saved]
            .iter()
            .any(|id| id.is_root())
        {
            return Err(failed("start")(
                "a parse worker never reads as root, and the daemon named no user to switch to"
                    .into(),
            ));
        }
        return Ok(());
    };
    let (uid, gid) = (Uid::from_raw(user.uid), Gid::from_raw(user.gid));
    // Groups first, while we may still change them.
    setgroups(&[]).map_err(|e| failed("drop supplementary groups")(e.to_string()))?;
    setresgid(gid, gid, gid).map_err(|e| failed("switch group")(e.to_string()))?;
    setresuid(uid, uid, uid).map_err(|e| failed("switch user")(e.to_string()))?;
    let ids = getresuid().map_err(|e| failed("read the worker's uid")(e.to_string()))?;
    let gids = getresgid().map_err(|e| failed("read the worker's gid")(e.to_string()))?;
    let all = |a: Uid, b, c| a == uid && b == uid && c == uid;
    if !all(ids.real, ids.effective, ids.saved)
        || [gids.real, gids.effective, gids.saved]
            .iter()
            .any(|g| *g != gid)
    {
        return Err(failed("switch user")(format!(
            "still uid {ids:?}, gid {gids:?} after switching to {uid}:{gid}"
        )));
    }
    // A switch that can be undone is no switch.
    if !uid.is_root() && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(failed("switch user")("root could be regained".into()));
    }
    Ok(())
}

/// Landlock with no filesystem and no network access, signals and abstract sockets scoped to
/// the worker: "enforced", "partially enforced" (an older ABI) or "not supported". Best effort
/// by design: seccomp already denies `open`; Landlock is the second lock on that door.
fn landlock() -> &'static str {
    use landlock::{ABI, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetStatus, Scope};
    let abi = ABI::V6;
    let restricted = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.handle_access(AccessNet::from_all(abi)))
        .and_then(|r| r.scope(Scope::from_all(abi)))
        .and_then(|r| r.create())
        .and_then(|r| r.restrict_self());
    match restricted {
        Ok(status) => match status.ruleset {
            RulesetStatus::FullyEnforced => "enforced",
            RulesetStatus::PartiallyEnforced => "partially enforced",
            RulesetStatus::NotEnforced => "not supported",
        },
        Err(_) => "not supported",
    }
}

fn seccomp_mode() -> Option<i32> {
    // SAFETY: PR_GET_SECCOMP takes no pointer argument.
    let mode = unsafe { nix::libc::prctl(nix::libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    (mode >= 0).then_some(mode)
}

/// The seccomp filter: the system calls a reader needs, and nothing that reaches beyond the
/// process. Anything else fails with EPERM (not a kill), so a reader that probes for a
/// feature sees "not permitted" and goes on, and a worker that tries to escape fails in a
/// way its answer can report.
fn seccomp_program() -> Result<seccompiler::BpfProgram, String> {
    use nix::libc;
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition as Cond,
        SeccompFilter, SeccompRule, TargetArch,
    };
    use std::collections::BTreeMap;

    let cond = |arg, len, op, value| Cond::new(arg, len, op, value).map_err(|e| e.to_string());
    let rule = |conds: Vec<Cond>| SeccompRule::new(conds).map_err(|e| e.to_string());
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    // Allowed whatever the arguments.
    let plain = [
        // The descriptors it holds: the file (stdin), the answer (stdout), stderr.
        libc::SYS_read,
        libc::SYS_readv,
        libc::SYS_pread64,
        libc::SYS_preadv,
        libc::SYS_write,
        libc::SYS_writev,
        libc::SYS_lseek,
        libc::SYS_close,
        libc::SYS_fstat,
        // Memory (mmap and mprotect below, without PROT_EXEC).
        libc::SYS_brk,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_madvise,
        // Locks, time, randomness (std's hash maps seed from getrandom).
        libc::SYS_futex,
        libc::SYS_sched_yield,
        libc::SYS_sched_getaffinity,
        libc::SYS_clock_gettime,
        libc::SYS_clock_getres,
        libc::SYS_clock_nanosleep,
        libc::SYS_nanosleep,
        libc::SYS_gettimeofday,
        libc::SYS_getrandom,
        // Signals: handlers, masks, the alternate stack std's stack-overflow guard uses.
        libc::SYS_rt_sigaction,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigreturn,
        libc::SYS_sigaltstack,
        // Who am I (no way to change it: set*id are not here).
        libc::SYS_getpid,
        libc::SYS_gettid,
        libc::SYS_getppid,
        libc::SYS_getpgid,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_getpgrp,
        libc::SYS_getuid,
        libc::SYS_geteuid,
        libc::SYS_getgid,
        libc::SYS_getegid,
        libc::SYS_getgroups,
        libc::SYS_getcwd,
        libc::SYS_exit,
        libc::SYS_exit_group,
    ];
    for nr in plain {
        rules.insert(nr, vec![]);
    }
    let no_exec = || cond(2, Len::Dword, Op::MaskedEq(libc::PROT_EXEC as u64), 0);
    rules.insert(libc::SYS_mmap, vec![rule(vec![no_exec()?])?]);
    rules.insert(libc::SYS_mprotect, vec![rule(vec![no_exec()?])?]);
    // fstat of a descriptor (glibc's fstat is fstatat(fd, "", AT_EMPTY_PATH)). The path is a
    // pointer the filter cannot read, so a real path with AT_EMPTY_PATH passes too: when the
    // daemon is root, `empty_root` leaves no path to stat; otherwise see docs/operations.md.
    let empty_path = libc::AT_EMPTY_PATH as u64;
    rules.insert(
        libc::SYS_newfstatat,
        vec![rule(vec![cond(
            3,
            Len::Dword,
            Op::MaskedEq(empty_path),
            empty_path,
        )?])?],
    );
    rules.insert(
        libc::SYS_statx,
        vec![rule(vec![cond(
            2,
            Len::Dword,
            Op::MaskedEq(empty_path),
            empty_path,
        )?])?],
    );
    // Duplicating the file (every reader's "open", see formats::input) and reading flags.
    let fcntl = [libc::F_GETFD, libc::F_GETFL, libc::F_DUPFD_CLOEXEC]
        .into_iter()
        .map(|cmd| rule(vec![cond(1, Len::Dword, Op::Eq, cmd as u64)?]))
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_fcntl, fcntl);
    // Reading its own limits (pid 0), never setting them, never reading another process's.
    rules.insert(
        libc::SYS_prlimit64,
        vec![rule(vec![
            cond(0, Len::Dword, Op::Eq, 0)?,
            cond(2, Len::Qword, Op::Eq, 0)?,
        ])?],
    );
    // Reading the worker's own state (the debug hooks report it).
    let prctl = [
        libc::PR_GET_NO_NEW_PRIVS,
        libc::PR_GET_SECCOMP,
        libc::PR_GET_PDEATHSIG,
        libc::PR_GET_DUMPABLE,
    ]
    .into_iter()
    .map(|option| rule(vec![cond(0, Len::Dword, Op::Eq, option as u64)?]))
    .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_prctl, prctl);
    // abort() and raise() signal this very process, and nothing else.
    let own_pid = std::process::id() as u64;
    rules.insert(
        libc::SYS_tgkill,
        vec![rule(vec![cond(0, Len::Dword, Op::Eq, own_pid)?])?],
    );
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )
    .map_err(|e| e.to_string())?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_argument_round_trips() {
        let user = Some(WorkerUser {
            uid: 65534,
            gid: 65533,
        });
        assert_eq!(WorkerUser::arg(user), "65534:65533");
        assert_eq!(WorkerUser::parse_arg("65534:65533"), Some(user));
        assert_eq!(WorkerUser::parse_arg("-"), Some(None));
        for bad in ["", "65534", "a:b", "1:-2", ":"] {
            assert_eq!(WorkerUser::parse_arg(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_filter_compiles_for_this_machine() {
        let program = seccomp_program().expect("filter");
        assert!(!program.is_empty());
    }

    #[test]
    fn a_missing_or_root_worker_user_is_refused_when_root() {
        if !nix::unistd::geteuid().is_root() {
            assert_eq!(resolve("no-such-user-here"), Ok(None));
            eprintln!("not root: the worker user is not resolved, nothing more to check");
            return;
        }
        assert!(matches!(
            resolve("no-such-user-here"),
            Err(UserError::NoSuchUser { .. })
        ));
        assert!(matches!(resolve("root"), Err(UserError::Root { .. })));
        let nobody = resolve(DEFAULT_WORKER_USER)
            .expect("nobody exists")
            .expect("root");
        assert_ne!(nobody.uid, 0);
    }
}
