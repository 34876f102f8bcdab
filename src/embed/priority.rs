//! Embedding yields to everything else. Its threads (a job's runner, its vector writer, its
//! HTTP requests, MiniLM's compute pool) run 10 nice levels below the rest of the daemon, so
//! ingest, the catalog and the control socket get the CPU first whenever they want it; and
//! in-process models compute on every core but one, so a two-core machine keeps a core for
//! them even when the scheduler would share.
//!
//! It only ever changes the calling thread's own priority, never another thread's or the
//! process's, and never raises a priority: it is relative to whatever the daemon runs at
//! (a unit's `Nice=` stays in force below it).

/// How many nice levels embedding threads run below the daemon's other threads.
pub const NICE_STEP: i32 = 10;

/// Lower the calling thread's scheduling priority by [`NICE_STEP`] (capped at 19). Best
/// effort: a platform without per-thread priorities keeps the thread as it is.
pub fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    {
        use nix::errno::Errno;
        use nix::libc;
        let tid = nix::unistd::gettid().as_raw() as libc::id_t;
        // On Linux, PRIO_PROCESS with a thread id reads and sets that one thread's nice value
        // (threads do not share it, unlike POSIX says). getpriority may legitimately return
        // -1, so errno tells an error apart.
        Errno::clear();
        // SAFETY: plain system calls on this thread's own id; no memory is passed.
        let now = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) };
        if now == -1 && Errno::last_raw() != 0 {
            return;
        }
        let target = (now + NICE_STEP).min(19);
        // SAFETY: as above. Lowering one's own priority needs no privilege.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, target) } != 0 {
            tracing::debug!(error = %Errno::last(), "cannot lower an embedding thread's priority");
        }
    }
}

/// Threads an in-process model may compute on: every core but one, and at least one.
pub fn compute_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This thread's nice value, as /proc shows it (field 19 of its stat line).
    #[cfg(target_os = "linux")]
    fn nice_of_this_thread() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // The name in parentheses may hold spaces: count fields after its closing one.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        after.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn lowers_only_the_calling_thread() {
        let before = nice_of_this_thread();
        let lowered = std::thread::spawn(|| {
            lower_this_thread();
            nice_of_this_thread()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, (before + NICE_STEP).min(19));
        assert_eq!(
            nice_of_this_thread(),
            before,
            "the caller's thread is untouched"
        );
    }

    #[test]
    fn leaves_a_core_when_there_are_two() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(compute_threads(), cores.saturating_sub(1).max(1));
    }
}
