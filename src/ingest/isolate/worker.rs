//! The parse worker: the child side of isolation, `ingestd parse-worker …`.
//!
//! It confines itself before it reads any input — dies with the daemon, drops every inherited
//! descriptor but stdin (the file, opened by the daemon), stdout and stderr, sets its limits
//! (address space, CPU time, no core dumps, no file writes) as hard limits, so nothing in the
//! process can raise them again, and enters its [`sandbox`](super::sandbox) (another uid when
//! the daemon is root, no-new-privs, Landlock, seccomp) or stops — then takes the
//! [`ReadOptions`] from its arguments, runs the reader on stdin, and writes one JSON answer on
//! stdout — or, in rows mode, the rows, one line each, blocking on the pipe whenever the
//! daemon is slower than the reader. It never writes a file, never logs (stderr is for dying words only: the
//! allocation-failure message, a panic), and never decides what its ending means: the parent
//! judges that (`isolate::judge`).

use super::sandbox::{self, WorkerUser};
use super::{MAX_REQUEST_BYTES, PROBE_ARG, ROWS_ARG, WORKER_COMMAND};
use crate::ingest::formats::{self, Format, ReadOptions};
use nix::sys::resource::{Resource, setrlimit};
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::path::Path;
use std::process::ExitCode;

/// Exit codes of a worker that could not do its job (our fault, never the file's).
const EXIT_USAGE: u8 = 64;
const EXIT_SETUP: u8 = 71;
const EXIT_IO: u8 = 74;

/// What the readers call the file: it has no path in here, only a descriptor
/// (`formats::input`).
const INPUT_LABEL: &str = "stdin";

/// What the daemon asked for, from the arguments after `parse-worker`.
#[derive(Debug, PartialEq)]
struct Invocation {
    parent: u32,
    memory: u64,
    cpu_secs: u64,
    /// Who to read as; `None`: stay (the daemon is not root).
    user: Option<WorkerUser>,
    format: Format,
    options: ReadOptions,
    mode: super::Mode,
}

#[derive(Debug, thiserror::Error)]
enum WorkerFailure {
    #[error(
        "{WORKER_COMMAND} is started by the ingestd daemon, not by hand: expected \
         <parent pid> <memory bytes> <cpu secs> <uid:gid|-> <format> <request> \
         [rows|probe], {0}"
    )]
    Usage(String),
    #[error("cannot {about}: {source}")]
    Setup {
        about: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxFailure),
    #[error("cannot {about}: {source}")]
    Io {
        about: &'static str,
        source: std::io::Error,
    },
}

impl WorkerFailure {
    fn exit_code(&self) -> u8 {
        match self {
            WorkerFailure::Usage(_) => EXIT_USAGE,
            WorkerFailure::Setup { .. } | WorkerFailure::Sandbox(_) => EXIT_SETUP,
            WorkerFailure::Io { .. } => EXIT_IO,
        }
    }
}

/// Run as a parse worker; `args` are those after `parse-worker`.
pub fn main(args: impl Iterator<Item = OsString>) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            // Not eprintln!: it panics when stderr is gone, and a panic would read as the
            // file having crashed the reader.
            let _ = writeln!(std::io::stderr(), "{WORKER_COMMAND}: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}

fn run(args: impl Iterator<Item = OsString>) -> Result<(), WorkerFailure> {
    let invocation = Invocation::parse(args)?;
    confine(&invocation)?;
    // Fail closed: a worker that cannot enter its sandbox stops here, before reading a byte.
    let sandbox = sandbox::enter(invocation.user, invocation.parent)?;
    let written_failed = |source| WorkerFailure::Io {
        about: "write the answer",
        source,
    };
    if invocation.mode == super::Mode::Probe {
        let mut out = std::io::stdout().lock();
        return serde_json::to_writer(&mut out, &sandbox)
            .map_err(std::io::Error::from)
            .and_then(|()| out.flush())
            .map_err(written_failed);
    }
    // SAFETY: fd 0 is the file the daemon opened for us (or /dev/null); nothing else in this
    // process owns it: the worker never uses std's stdin.
    let input = unsafe { std::fs::File::from_raw_fd(0) };
    if formats::input::inherit(input).is_err() {
        return Err(WorkerFailure::Setup {
            about: "take the input",
            source: std::io::Error::other("an input was already registered"),
        });
    }
    let path = Path::new(INPUT_LABEL);
    let (format, options) = (invocation.format, &invocation.options);
    // Release builds have no test hooks: nothing a file holds can steer the worker.
    #[cfg(debug_assertions)]
    if let Some(hook) = super::hooks::Hook::requested(path) {
        return hook.run().map_err(written_failed);
    }
    if invocation.mode == super::Mode::Rows {
        // Rows leave in pipe-sized writes; the columns are flushed at once (`stream_here`).
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
        return super::stream_here(format, path, options, &mut out).map_err(written_failed);
    }
    let answer = super::extract_here(format, path, options);
    answer.write().map_err(written_failed)
}

impl Invocation {
    fn parse(args: impl Iterator<Item = OsString>) -> Result<Self, WorkerFailure> {
        let mut args: Vec<OsString> = args.collect();
        let mode = match args.last() {
            Some(last) if args.len() == 7 && last == ROWS_ARG => super::Mode::Rows,
            Some(last) if args.len() == 7 && last == PROBE_ARG => super::Mode::Probe,
            _ => super::Mode::Extract,
        };
        if mode != super::Mode::Extract {
            args.pop();
        }
        let [parent, memory, cpu_secs, user, format, request] = <[OsString; 6]>::try_from(args)
            .map_err(|args| WorkerFailure::Usage(format!("got {} arguments", args.len())))?;
        let number = |arg: &OsString, what: &str| {
            arg.to_str()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| WorkerFailure::Usage(format!("{what} {arg:?} is not a number")))
        };
        let format = format
            .to_str()
            .and_then(Format::from_extension)
            .ok_or_else(|| WorkerFailure::Usage(format!("{format:?} is not a format")))?;
        let user = user
            .to_str()
            .and_then(WorkerUser::parse_arg)
            .ok_or_else(|| WorkerFailure::Usage(format!("user {user:?} is not uid:gid or -")))?;
        let request = request.as_encoded_bytes();
        if request.len() > MAX_REQUEST_BYTES {
            return Err(WorkerFailure::Usage(format!(
                "the request takes {} bytes",
                request.len()
            )));
        }
        let options = serde_json::from_slice(request)
            .map_err(|e| WorkerFailure::Usage(format!("the request is not read options: {e}")))?;
        Ok(Self {
            parent: u32::try_from(number(&parent, "parent pid")?)
                .map_err(|_| WorkerFailure::Usage("the parent pid is out of range".into()))?,
            memory: number(&memory, "memory")?,
            cpu_secs: number(&cpu_secs, "cpu secs")?,
            user,
            format,
            options,
            mode,
        })
    }
}

/// Everything that makes a misbehaving reader harmless, done before any input is read.
fn confine(invocation: &Invocation) -> Result<(), WorkerFailure> {
    die_with_parent(invocation.parent)?;
    close_inherited_descriptors();
    let limit = |resource, soft, hard, about| {
        setrlimit(resource, soft, hard).map_err(|errno| WorkerFailure::Setup {
            about,
            source: errno.into(),
        })
    };
    limit(Resource::RLIMIT_CORE, 0, 0, "turn off core dumps")?;
    // Stdout and stderr are pipes, which this does not limit; any file write fails.
    limit(Resource::RLIMIT_FSIZE, 0, 0, "forbid file writes")?;
    // The hard limit one second above the soft one: at the soft limit the kernel sends
    // SIGXCPU, which the parent reads as "too slow"; were they equal it would send SIGKILL,
    // which looks like a kill from outside.
    let cpu = invocation.cpu_secs;
    limit(Resource::RLIMIT_CPU, cpu, cpu + 1, "limit CPU time")?;
    // Last: from here on every allocation counts, and failing ones abort with a message the
    // parent recognises.
    let memory = invocation.memory;
    limit(Resource::RLIMIT_AS, memory, memory, "limit memory")?;
    Ok(())
}

/// SIGKILL when the daemon dies, so a worker stuck in a hostile file does not outlive it.
/// The kernel ties this to the thread that spawned us, which is a long-lived ingest worker
/// thread. If the daemon died before the signal was armed, we have been re-parented already:
/// stop now.
#[cfg(target_os = "linux")]
fn die_with_parent(parent: u32) -> Result<(), WorkerFailure> {
    use nix::sys::signal::Signal;
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|errno| WorkerFailure::Setup {
        about: "arrange to die with the daemon",
        source: errno.into(),
    })?;
    if nix::unistd::getppid().as_raw() as u32 != parent {
        return Err(WorkerFailure::Setup {
            about: "start",
            source: std::io::Error::other("the daemon that asked for this worker is gone"),
        });
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_parent: u32) -> Result<(), WorkerFailure> {
    // No death signal here; the closed pipes end the worker when it next reads or writes, and
    // the CPU limit ends one that never does.
    Ok(())
}

/// Close every descriptor above stderr. The daemon opens everything close-on-exec, but a
/// library that forgot would hand us its database or socket; this does not rely on that.
fn close_inherited_descriptors() {
    #[cfg(target_os = "linux")]
    {
        use nix::libc;
        // SAFETY: no Rust object in this process owns a descriptor above 2 yet (this runs
        // before anything is opened), so closing them cannot invalidate one.
        let closed = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
        if closed == 0 {
            return;
        }
    }
    // Kernels before 5.9 and other systems: close what /proc or /dev lists.
    let listed = std::fs::read_dir("/proc/self/fd").or_else(|_| std::fs::read_dir("/dev/fd"));
    let Ok(entries) = listed else { return };
    let fds: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: as above; the listing's own descriptor is already closed, so closing its
        // number again fails harmlessly with EBADF.
        unsafe { nix::libc::close(fd) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Invocation, String> {
        Invocation::parse(args.iter().map(OsString::from)).map_err(|e| e.to_string())
    }

    #[test]
    fn arguments_parse_or_say_what_is_wrong() {
        let request = r#"{"sheet":null,"max_cells":5,"max_unzipped_bytes":6}"#;
        assert_eq!(
            parse(&["42", "1000", "35", "65534:65534", "csv", request]),
            Ok(Invocation {
                parent: 42,
                memory: 1000,
                cpu_secs: 35,
                user: Some(WorkerUser {
                    uid: 65534,
                    gid: 65534
                }),
                format: Format::Csv,
                options: ReadOptions {
                    sheet: None,
                    max_cells: 5,
                    max_unzipped_bytes: 6,
                    ..ReadOptions::default()
                },
                mode: super::super::Mode::Extract,
            })
        );
        let rows = parse(&["42", "1000", "35", "-", "xlsx", request, "rows"]).expect("rows");
        assert_eq!(rows.mode, super::super::Mode::Rows);
        assert_eq!(rows.user, None);
        let probe = parse(&["42", "1000", "35", "-", "csv", request, "probe"]).expect("probe");
        assert_eq!(probe.mode, super::super::Mode::Probe);
        let cases: &[(&[&str], &str)] = &[
            (&[], "got 0 arguments"),
            (&["1", "2", "3", "-", "csv"], "got 5 arguments"),
            (
                &["x", "2", "3", "-", "csv", request],
                "parent pid \"x\" is not a number",
            ),
            (
                &["1", "-2", "3", "-", "csv", request],
                "memory \"-2\" is not a number",
            ),
            (
                &["1", "2", "3", "-", "pdf", request],
                "\"pdf\" is not a format",
            ),
            (&["1", "2", "3", "0", "csv", request], "is not uid:gid or -"),
            (&["1", "2", "3", "-", "csv", "/p"], "is not read options"),
            (
                &["1", "2", "3", "-", "csv", request, "all"],
                "got 7 arguments",
            ),
        ];
        for (args, needle) in cases {
            let err = parse(args).unwrap_err();
            assert!(err.contains(needle), "{args:?}: {err}");
            assert!(err.contains("not by hand"), "{err}");
        }
    }
}
