//! Test hooks: files that make a parse worker misbehave on purpose, so every way a worker can
//! end is tested without waiting for a real reader bug.
//!
//! Compiled only into debug builds (`cfg(debug_assertions)`): a release daemon has no such
//! code, so no file can steer it, and the same bytes are just a binary file its CSV reader
//! rejects. In a debug build a file whose content starts with [`MAGIC`] followed by a hook name
//! and a newline selects the hook. It is chosen by content, read inside the worker under the
//! worker's limits, so the daemon side needs no test-only path at all; and the magic starts
//! with a NUL byte, so no text file can hold it by accident.

use super::Answer;
use crate::ingest::formats::Rejection;
use std::io::Read;
use std::path::Path;

/// How a hook file starts: `MAGIC`, the hook's name, `\n`.
pub const MAGIC: &[u8] = b"\0ingestd-test-hook:";

/// A way to make the worker misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Allocate until the address-space limit stops it (std then aborts with a message).
    Alloc,
    /// Spin on the CPU forever.
    Loop,
    /// `abort()`: SIGABRT without an allocation failure.
    Abort,
    /// Die of SIGSEGV.
    Segv,
    /// Panic, as a reader bug would.
    Panic,
    /// Print something that is not an answer and exit 0.
    Garbage,
    /// Answer with a rejection whose reason describes the worker's own confinement as JSON:
    /// limits, open descriptors, environment, death signal, process group.
    Inspect,
    /// Answer with a rejection whose reason reports, as JSON, what an attacker who took over
    /// the reader gets: opening `/etc/passwd`, creating a socket, `execve`, regaining root
    /// (each an error message, or `null` if it worked), and the uid, gid and groups it holds;
    /// also executable memory (`mmap`, `mprotect`), `fork`, a raw `clone`, killing or tracing
    /// the daemon, another process's limits, learning about `/etc/passwd` without opening it
    /// (`stat`, `fstatat` and `statx` with `AT_EMPTY_PATH`, `access`; `readlink` of
    /// `/proc/self/exe`), and — which must work — `fstat` of its input.
    Escape,
}

const ALL: [Hook; 8] = [
    Hook::Alloc,
    Hook::Loop,
    Hook::Abort,
    Hook::Segv,
    Hook::Panic,
    Hook::Garbage,
    Hook::Inspect,
    Hook::Escape,
];

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::Alloc => "alloc",
            Hook::Loop => "loop",
            Hook::Abort => "abort",
            Hook::Segv => "segv",
            Hook::Panic => "panic",
            Hook::Garbage => "garbage",
            Hook::Inspect => "inspect",
            Hook::Escape => "escape",
        }
    }

    /// The content of a file that selects this hook.
    pub fn file_content(self) -> Vec<u8> {
        [MAGIC, self.name().as_bytes(), b"\n"].concat()
    }

    /// The hook the worker's input selects, if any (`path` is the readers' label for it).
    pub(super) fn requested(path: &Path) -> Option<Self> {
        let mut head = [0u8; 64];
        let mut file = crate::ingest::formats::input::open(path).ok()?;
        let n = file.read(&mut head).ok()?;
        let rest = head[..n].strip_prefix(MAGIC)?;
        let name = rest.split(|b| *b == b'\n').next()?;
        ALL.into_iter().find(|hook| hook.name().as_bytes() == name)
    }

    /// Misbehave. Returns only for the hooks that answer.
    pub(super) fn run(self) -> std::io::Result<()> {
        match self {
            Hook::Alloc => {
                // Never touched, so only address space is used: the limit, not the machine's
                // memory, is what stops it.
                let mut held: Vec<Vec<u8>> = Vec::new();
                loop {
                    held.push(std::hint::black_box(Vec::with_capacity(64 << 20)));
                }
            }
            Hook::Loop => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Hook::Abort => std::process::abort(),
            Hook::Segv => {
                use nix::sys::signal::{SigHandler, Signal, raise, signal};
                // std's handler for stack overflows would return from a raised SIGSEGV; the
                // default action is what a real wild pointer ends in.
                // SAFETY: installing the default disposition runs no code of ours.
                let _ = unsafe { signal(Signal::SIGSEGV, SigHandler::SigDfl) };
                let _ = raise(Signal::SIGSEGV);
                unreachable!("SIGSEGV with its default action ends the process")
            }
            Hook::Panic => panic!("test hook: the reader panicked"),
            Hook::Garbage => {
                println!("this is not an answer");
                Ok(())
            }
            Hook::Inspect => {
                let reason = inspect().to_string();
                Answer::Rejected(Rejection::new(reason)).write()
            }
            Hook::Escape => {
                let reason = escape().to_string();
                Answer::Rejected(Rejection::new(reason)).write()
            }
        }
    }
}

/// The worker's confinement as it sees it from inside.
fn inspect() -> serde_json::Value {
    use nix::sys::resource::{Resource, getrlimit};
    let limit = |resource| getrlimit(resource).map(|(soft, hard)| [soft, hard]).ok();
    // Asked of each number, not listed from /proc: the sandbox opens nothing, /proc included.
    let fds: Vec<i32> = (0..4096)
        .filter(|fd| nix::fcntl::fcntl(unsafe_fd(*fd), nix::fcntl::FcntlArg::F_GETFD).is_ok())
        .collect();
    #[cfg(target_os = "linux")]
    let death_signal = nix::sys::prctl::get_pdeathsig()
        .ok()
        .flatten()
        .map(|s| s as i32);
    #[cfg(not(target_os = "linux"))]
    let death_signal: Option<i32> = None;
    serde_json::json!({
        "as": limit(Resource::RLIMIT_AS),
        "cpu": limit(Resource::RLIMIT_CPU),
        "core": limit(Resource::RLIMIT_CORE),
        "fsize": limit(Resource::RLIMIT_FSIZE),
        "fds": fds,
        "env": std::env::vars_os().count(),
        "death_signal": death_signal,
        "own_group": nix::unistd::getpgrp() == nix::unistd::getpid(),
        "cwd": std::env::current_dir().ok(),
    })
}

/// A descriptor number to ask about, whether or not it is open.
fn unsafe_fd(fd: i32) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: only passed to F_GETFD, which answers EBADF for a number that is not open and
    // neither reads nor changes a descriptor that is.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

/// What a reader taken over by a hostile file could reach: each attempt's error, or `null`
/// when it succeeded (which a test treats as a hole).
fn escape() -> serde_json::Value {
    use nix::unistd::{Uid, getgid, getgroups, getuid, setuid};
    let outcome = |result: Result<(), String>| match result {
        Ok(()) => serde_json::Value::Null,
        Err(error) => serde_json::Value::String(error),
    };
    let open = std::fs::File::open("/etc/passwd")
        .map(drop)
        .map_err(|e| e.to_string());
    let socket = std::os::unix::net::UnixDatagram::unbound()
        .map(drop)
        .map_err(|e| e.to_string());
    let tcp = std::net::TcpStream::connect(("127.0.0.1", 9))
        .map(drop)
        .map_err(|e| e.to_string());
    // Returns only on failure: on success the worker would be `true`, answer nothing, and the
    // parent would find no answer at all.
    let exec =
        nix::unistd::execve::<&std::ffi::CStr, &std::ffi::CStr>(c"/bin/true", &[c"true"], &[])
            .map(drop)
            .map_err(|e| e.to_string());
    let root = setuid(Uid::from_raw(0)).map_err(|e| e.to_string());
    let more = escape_more();
    let mut seen = serde_json::json!({
        "open_etc_passwd": outcome(open),
        "unix_socket": outcome(socket),
        "tcp_connect": outcome(tcp),
        "execve": outcome(exec),
        "setuid_root": outcome(root),
        "uid": getuid().as_raw(),
        "gid": getgid().as_raw(),
        "groups": getgroups().map(|g| g.iter().map(|g| g.as_raw()).collect::<Vec<_>>()).ok(),
    });
    for (key, result) in more {
        seen[key] = outcome(result);
    }
    seen
}

/// The attempts made through raw system calls, each `Err(message)` when refused.
fn escape_more() -> Vec<(&'static str, Result<(), String>)> {
    use nix::libc;
    let last = || Err(std::io::Error::last_os_error().to_string());
    let page = 4096;
    // SAFETY: anonymous mappings of one page, unmapped again if they were made; no pointer of
    // ours is passed to the kernel but the mapping's own.
    let mmap_exec = unsafe {
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        let p = libc::mmap(
            std::ptr::null_mut(),
            page,
            libc::PROT_READ | libc::PROT_EXEC,
            flags,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            last()
        } else {
            libc::munmap(p, page);
            Ok(())
        }
    };
    // SAFETY: as above; the page is ours and unmapped after.
    let mprotect_exec = unsafe {
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        let p = libc::mmap(
            std::ptr::null_mut(),
            page,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            Err(format!(
                "mmap without PROT_EXEC failed: {}",
                std::io::Error::last_os_error()
            ))
        } else {
            let r = if libc::mprotect(p, page, libc::PROT_READ | libc::PROT_EXEC) == 0 {
                Ok(())
            } else {
                last()
            };
            libc::munmap(p, page);
            r
        }
    };
    // A child that exists ends at once, without running anything of ours.
    // SAFETY: the worker is single-threaded; a child only calls _exit.
    let fork = match unsafe { libc::fork() } {
        -1 => last(),
        0 => unsafe { libc::_exit(0) },
        _ => Ok(()),
    };
    // SAFETY: clone with no new stack behaves as fork; the child only calls _exit.
    let clone = match unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0) } {
        -1 => last(),
        0 => unsafe { libc::_exit(0) },
        _ => Ok(()),
    };
    let parent = nix::unistd::getppid().as_raw();
    // A hole here kills the daemon (or the test), which fails as loudly as it should.
    // SAFETY: kill takes no pointer.
    let kill = match unsafe { libc::kill(parent, libc::SIGKILL) } {
        0 => Ok(()),
        _ => last(),
    };
    // SAFETY: PTRACE_ATTACH takes no pointer; a parent stopped by a successful attach is
    // released at once.
    let ptrace = unsafe {
        let null = std::ptr::null_mut::<libc::c_void>();
        if libc::ptrace(libc::PTRACE_ATTACH, parent, null, null) == 0 {
            libc::ptrace(libc::PTRACE_DETACH, parent, null, null);
            Ok(())
        } else {
            last()
        }
    };
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reads into a local rlimit; no new limit is passed.
    let parent_limits =
        match unsafe { libc::prlimit(parent, libc::RLIMIT_NOFILE, std::ptr::null(), &mut limit) } {
            0 => Ok(()),
            _ => last(),
        };
    // Learning about a path without opening it: every form of stat, access, readlink.
    // SAFETY: NUL-terminated paths and local buffers.
    let path_probes = unsafe {
        let passwd = c"/etc/passwd".as_ptr();
        let mut st: libc::stat = std::mem::zeroed();
        let mut stx: libc::statx = std::mem::zeroed();
        let mut link = [0 as libc::c_char; 256];
        let done = |r: libc::c_int| if r == 0 { Ok(()) } else { last() };
        vec![
            ("stat_plain_etc_passwd", done(libc::stat(passwd, &mut st))),
            (
                // An absolute path ignores the descriptor, even with AT_EMPTY_PATH.
                "stat_from_fd_etc_passwd",
                done(libc::fstatat(0, passwd, &mut st, libc::AT_EMPTY_PATH)),
            ),
            (
                "statx_etc_passwd",
                done(libc::statx(
                    libc::AT_FDCWD,
                    passwd,
                    libc::AT_EMPTY_PATH,
                    libc::STATX_BASIC_STATS,
                    &mut stx,
                )),
            ),
            ("access_etc_passwd", done(libc::access(passwd, libc::F_OK))),
            (
                "readlink_proc_self_exe",
                match libc::readlink(c"/proc/self/exe".as_ptr(), link.as_mut_ptr(), link.len()) {
                    -1 => last(),
                    _ => Ok(()),
                },
            ),
            // What a reader needs must still work: fstat of its input.
            ("fstat_input", done(libc::fstat(0, &mut st))),
        ]
    };
    // SAFETY: a NUL-terminated path and a local stat buffer.
    let stat = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        match libc::fstatat(
            libc::AT_FDCWD,
            c"/etc/passwd".as_ptr(),
            &mut st,
            libc::AT_EMPTY_PATH,
        ) {
            0 => Ok(()),
            _ => last(),
        }
    };
    let mut seen = vec![
        ("mmap_exec", mmap_exec),
        ("mprotect_exec", mprotect_exec),
        ("fork", fork),
        ("clone", clone),
        ("kill_parent", kill),
        ("ptrace_parent", ptrace),
        ("prlimit_parent", parent_limits),
        ("stat_etc_passwd", stat),
    ];
    seen.extend(path_probes);
    seen
}
