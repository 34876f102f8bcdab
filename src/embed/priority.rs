//! Embedding yields to everything else. Its threads (a job's runner, its vector writer, its
//! HTTP requests) run 10 nice levels below the rest of the daemon, so ingest, the catalog and
//! the control socket get the CPU first whenever they want it; MiniLM's compute pool runs
//! below that still, almost only on CPU time nothing else wants (`SCHED_IDLE`), and waits between
//! steps while a file is being ingested; and in-process models compute on every core but one,
//! so a two-core machine keeps a core for them even when the scheduler would share.
//!
//! It only ever changes the calling thread's own priority, never another thread's or the
//! process's, and never raises a priority: it is relative to whatever the daemon's main
//! thread runs at (a unit's `Nice=` stays in force below it), so a thread spawned by an
//! already lowered thread, which inherits its nice value, is not lowered twice.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

/// How many nice levels embedding threads run below the daemon's other threads.
pub const NICE_STEP: i32 = 10;

/// Put the calling thread [`NICE_STEP`] nice levels below the daemon's main thread (capped at
/// 19), unless it already runs that low or lower. Best effort: a platform without per-thread
/// priorities keeps the thread as it is.
pub fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    {
        use nix::errno::Errno;
        use nix::libc;
        // On Linux, PRIO_PROCESS with a thread id reads and sets that one thread's nice value
        // (threads do not share it, unlike POSIX says); the process id is the main thread's.
        // getpriority may legitimately return -1, so errno tells an error apart.
        let nice_of = |id: libc::id_t| {
            Errno::clear();
            // SAFETY: a plain system call on a thread id of this process; no memory is passed.
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, id) };
            (nice != -1 || Errno::last_raw() == 0).then_some(nice)
        };
        let tid = nix::unistd::gettid().as_raw() as libc::id_t;
        let main = nix::unistd::getpid().as_raw() as libc::id_t;
        let (Some(now), Some(base)) = (nice_of(tid), nice_of(main)) else {
            return;
        };
        let target = (base + NICE_STEP).min(19);
        if now >= target {
            return;
        }
        // SAFETY: as above. Lowering one's own priority needs no privilege.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, target) } != 0 {
            tracing::debug!(error = %Errno::last(), "cannot lower an embedding thread's priority");
        }
    }
}

/// Make the calling thread run almost only on CPU time no other thread of the machine wants
/// (`SCHED_IDLE` on Linux): for the compute threads of an in-process model, which keep a core
/// busy for as long as a job lasts. A thread of normal priority that wakes on that core takes
/// it at once, and the scheduler counts a core running only such threads as idle when it
/// places a waking thread; nice 10 alone leaves the model some 10 % of a core that others
/// want. The thread is lowered by [`lower_this_thread`] first, which
/// is what stays in force where the policy cannot be set. Never undone: such threads live as
/// long as their pool. The risk it takes: such a thread holding a lock (the allocator's, say)
/// while other work keeps the machine busy makes a normal thread that needs the lock wait.
pub fn idle_this_thread() {
    lower_this_thread();
    #[cfg(target_os = "linux")]
    {
        use nix::libc;
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 names the calling thread; `param` outlives the call. Moving to
        // SCHED_IDLE only lowers the thread, which needs no privilege.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
            tracing::debug!(
                error = %nix::errno::Errno::last(),
                "cannot move a compute thread to SCHED_IDLE"
            );
        }
    }
}

/// Files being validated and stored right now. Counted without a lock, so an ingest never
/// waits on a lock a `SCHED_IDLE` thread may hold.
static INGESTING: AtomicUsize = AtomicUsize::new(0);
/// Set once the daemon stops: models no longer wait for ingest (a stop kills ingest's parse
/// workers only after the jobs have ended, so a job waiting for an ingest would hold it up).
static STOPPING: AtomicBool = AtomicBool::new(false);
/// Where paused models wait; notified when the count falls to zero and when the daemon stops.
static WAKE: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());

/// The longest an in-process model waits for ingest at one step, so that a flood of drops
/// slows embedding down without stopping it.
pub const MAX_YIELD: Duration = Duration::from_secs(2);

/// Held by an ingest worker while it validates and stores a file: in-process models wait for
/// it between steps of their work ([`yield_to_ingest`]).
#[must_use = "ingest counts as running only while this is held"]
pub struct Ingesting(());

/// Count a file as being ingested until the returned guard is dropped.
pub fn ingesting() -> Ingesting {
    INGESTING.fetch_add(1, Ordering::SeqCst);
    Ingesting(())
}

fn wake_models() {
    // Taking the lock orders this after any waiter's check of the condition: a model that saw
    // the old state is already waiting, and hears this.
    let _lock = WAKE.0.lock().unwrap_or_else(PoisonError::into_inner);
    WAKE.1.notify_all();
}

impl Drop for Ingesting {
    fn drop(&mut self) {
        if INGESTING.fetch_sub(1, Ordering::SeqCst) == 1 {
            wake_models();
        }
    }
}

/// Models stop waiting for ingest from now on: the daemon is stopping.
pub fn stop_pausing() {
    STOPPING.store(true, Ordering::SeqCst);
    wake_models();
}

/// Called by an in-process model between steps (MiniLM: before each layer of a group): returns
/// at once when no file is being ingested, else when none is, or after [`MAX_YIELD`], or when
/// the daemon stops. Even at `SCHED_IDLE`, a model computing beside an ingest slows it: they
/// share the machine's caches and memory, and on a virtual machine perhaps one physical core.
/// A 50 MB drop took 1.31–1.98× its quiet time beside MiniLM without this wait, 0.99–1.16×
/// with it (`cargo bench --bench busy`). The cost: while files are ingested back to back,
/// MiniLM does one layer per [`MAX_YIELD`].
pub fn yield_to_ingest() {
    wait_for_ingest(MAX_YIELD);
}

/// [`yield_to_ingest`] waiting at most `max`; true if no file was being ingested (or the daemon
/// was stopping) when it returned.
fn wait_for_ingest(max: Duration) -> bool {
    let must_wait = || INGESTING.load(Ordering::SeqCst) > 0 && !STOPPING.load(Ordering::SeqCst);
    if !must_wait() {
        return true;
    }
    let lock = WAKE.0.lock().unwrap_or_else(PoisonError::into_inner);
    let (_lock, waited) = WAKE
        .1
        .wait_timeout_while(lock, max, |_| must_wait())
        .unwrap_or_else(PoisonError::into_inner);
    !waited.timed_out() || !must_wait()
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

    /// The nice value a new thread spawned here ends at after lowering itself, and what
    /// `then` returns when run on that thread afterwards.
    #[cfg(target_os = "linux")]
    fn lowered_thread<T: Send + 'static>(then: impl FnOnce() -> T + Send + 'static) -> (i32, T) {
        std::thread::spawn(|| {
            lower_this_thread();
            (nice_of_this_thread(), then())
        })
        .join()
        .unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn lowers_only_the_calling_thread() {
        let before = nice_of_this_thread();
        let (lowered, ()) = lowered_thread(|| ());
        assert_eq!(lowered, (before + NICE_STEP).min(19));
        assert_eq!(
            nice_of_this_thread(),
            before,
            "the caller's thread is untouched"
        );
    }

    /// A pool thread spawned by an embedding thread inherits its lowered nice value; lowering
    /// it again must not push it further down (a compute pool started from a job's runner ran
    /// at 19 instead of 10).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_spawned_by_a_lowered_thread_is_not_lowered_twice() {
        let base = nice_of_this_thread();
        let (outer, (inner, ())) = lowered_thread(|| lowered_thread(|| ()));
        assert_eq!(outer, (base + NICE_STEP).min(19));
        assert_eq!(inner, outer);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_compute_thread_runs_idle_and_lowered_and_only_itself() {
        // SAFETY: queries of the calling thread's own scheduling; no memory is passed.
        let policy = || unsafe { nix::libc::sched_getscheduler(0) };
        let base = (policy(), nice_of_this_thread());
        let (nice, idle) = std::thread::spawn(move || {
            idle_this_thread();
            (nice_of_this_thread(), policy())
        })
        .join()
        .unwrap();
        assert_eq!(idle, nix::libc::SCHED_IDLE);
        assert_eq!(nice, (base.1 + NICE_STEP).min(19));
        assert_eq!(
            (policy(), nice_of_this_thread()),
            base,
            "the caller's thread is untouched"
        );
    }

    /// The gate's tests take this: the count and `STOPPING` are global to the process. No
    /// other test of the library takes guards (none runs an ingest worker) or stops pausing.
    static GATE: Mutex<()> = Mutex::new(());

    /// A model's step waits while a file is being ingested, gives up after its bound, and goes
    /// on once none is.
    #[test]
    fn a_model_waits_for_ingest_between_steps() {
        let _gate = GATE.lock().unwrap_or_else(PoisonError::into_inner);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        assert!(
            wait_for_ingest(Duration::from_secs(30)),
            "nothing is ingesting"
        );
        let first = ingesting();
        let second = ingesting();
        // Held: a short bound runs out, and says so.
        assert!(!wait_for_ingest(Duration::from_millis(50)));
        let (done, finished) = std::sync::mpsc::channel();
        let model = std::thread::spawn(move || {
            done.send(wait_for_ingest(Duration::from_secs(30))).unwrap();
        });
        drop(first);
        assert!(
            !wait_for_ingest(Duration::from_millis(50)),
            "one file still ingests"
        );
        drop(second);
        // Woken by the last guard, long before its own bound.
        let woken = finished
            .recv_timeout(deadline - std::time::Instant::now())
            .expect("the step went on once no file was ingesting");
        assert!(woken);
        model.join().unwrap();
    }

    /// Once the daemon stops, a waiting model goes on at once, although a file still ingests:
    /// a stop kills ingest's parse workers only after the jobs have ended.
    #[test]
    fn a_stop_releases_a_model_waiting_for_ingest() {
        let _gate = GATE.lock().unwrap_or_else(PoisonError::into_inner);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let file = ingesting();
        let (done, finished) = std::sync::mpsc::channel();
        let model = std::thread::spawn(move || {
            done.send(wait_for_ingest(Duration::from_secs(30))).unwrap();
        });
        assert!(finished.recv_timeout(Duration::from_millis(100)).is_err());
        stop_pausing();
        let released = finished.recv_timeout(deadline - std::time::Instant::now());
        // Put the process back as it was before asserting, for the other gate test.
        STOPPING.store(false, Ordering::SeqCst);
        drop(file);
        assert_eq!(released, Ok(true), "the stop released the model");
        model.join().unwrap();
    }

    #[test]
    fn leaves_a_core_when_there_are_two() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(compute_threads(), cores.saturating_sub(1).max(1));
    }
}
