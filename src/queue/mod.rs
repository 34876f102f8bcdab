//! The embedding queue at run time: a scheduler task that starts jobs (FIFO within a group,
//! round-robin across groups, at most `embedding.concurrency` at once) and a thread per
//! processing job that streams rows, embeds them and writes a generation (`runner`).
//!
//! The catalog is the queue: jobs are rows, a claim is a transaction, and a restart finds
//! them where they were. This module holds only what lives while the daemon runs: which jobs
//! are processing and how to ask one to stop. The scheduler sleeps until the catalog says a
//! job may be startable (queued, retried, a worker freed) or a backoff ends; it never polls.

mod reuse;
pub mod rows;
mod runner;

use crate::catalog::{Catalog, Ending};
use crate::embed::configured::Providers;
use crate::service::live::LiveConfig;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Why a processing job is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Stop {
    Run = 0,
    Cancel = 1,
    Shutdown = 2,
}

/// A processing job's stop request, checked by its runner between batches.
#[derive(Debug, Default)]
pub struct StopFlag(AtomicU8);

impl StopFlag {
    fn get(&self) -> Stop {
        match self.0.load(Ordering::Acquire) {
            1 => Stop::Cancel,
            2 => Stop::Shutdown,
            _ => Stop::Run,
        }
    }

    fn set(&self, stop: Stop) {
        // A cancel is never downgraded to a shutdown: a cancelled job must not be requeued.
        let _ = self
            .0
            .compare_exchange(0, stop as u8, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// What the rest of the daemon holds of the queue.
pub struct Queue {
    running: Mutex<HashMap<i64, Arc<StopFlag>>>,
    /// Notified each time a processing job ends.
    ended: Notify,
    concurrency: AtomicUsize,
    pub providers: Arc<Providers>,
}

impl Queue {
    pub fn new(config: &crate::config::Config) -> Arc<Self> {
        Arc::new(Self {
            running: Mutex::new(HashMap::new()),
            ended: Notify::new(),
            concurrency: AtomicUsize::new(config.embedding.concurrency.max(1) as usize),
            providers: Arc::new(Providers::new(config.embedding.clone())),
        })
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Arc<StopFlag>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Jobs processing right now.
    pub fn processing(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.running().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Most jobs processing at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency.load(Ordering::Relaxed)
    }

    /// New settings from a reload: the cap applies to the next start; a changed provider is
    /// used by jobs started from now on.
    pub fn reconfigure(&self, config: &crate::config::Config) {
        self.concurrency.store(
            config.embedding.concurrency.max(1) as usize,
            Ordering::Relaxed,
        );
        self.providers.reconfigure(&config.embedding);
    }

    /// Ask processing jobs to stop within one batch (they were marked `cancelled` in the
    /// catalog already) and wait until they have, at most `timeout`. Returns the ids still
    /// running after it.
    pub async fn stop_jobs(&self, ids: &[i64], timeout: Duration) -> Vec<i64> {
        for id in ids {
            if let Some(flag) = self.running().get(id) {
                flag.set(Stop::Cancel);
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let ended = self.ended.notified();
            let left: Vec<i64> = {
                let running = self.running();
                ids.iter()
                    .copied()
                    .filter(|id| running.contains_key(id))
                    .collect()
            };
            if left.is_empty() {
                return left;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                return left;
            }
        }
    }
}

/// Run the scheduler until `stop`; then let processing jobs finish for up to `grace()` (asked
/// at the stop, so a reload counts) and return the rest to the queue. Returns when every
/// runner has ended.
pub async fn run(
    queue: Arc<Queue>,
    catalog: Catalog,
    config: LiveConfig,
    stop: CancellationToken,
    grace: impl Fn() -> Duration,
) {
    let wake = catalog.wake();
    loop {
        let free = queue.concurrency().saturating_sub(queue.running().len());
        if free > 0 {
            match catalog.claim(free, queue.concurrency()).await {
                Ok(claimed) => {
                    for job in claimed {
                        let try_id = job.try_id;
                        if let Err(id) = start(&queue, &catalog, &config, job) {
                            // No thread for it: back to the queue after a pause.
                            let pause = Ending::Retry {
                                error: "the daemon could not start a worker thread".into(),
                                at_ms: crate::clock::now_ms() + 5_000,
                            };
                            let requeued = catalog.finish_job(id, try_id, None, pause).await;
                            if let Err(error) = requeued {
                                tracing::error!(job = id, "cannot requeue embedding job: {error}");
                            }
                        }
                    }
                }
                Err(error) => tracing::error!("cannot start embedding jobs: {error}"),
            }
        }
        let next_due = catalog
            .next_due()
            .await
            .ok()
            .flatten()
            .map(|at| Duration::from_millis((at - crate::clock::now_ms()).max(0) as u64 + 1));
        let sleep = next_due.unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
            _ = stop.cancelled() => break,
        }
    }
    let left = queue.processing();
    if left.is_empty() {
        return;
    }
    let grace = grace();
    tracing::info!(
        jobs = ?left,
        grace_secs = grace.as_secs(),
        "waiting for processing embedding jobs to finish"
    );
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        let ended = queue.ended.notified();
        if queue.running().is_empty() {
            return;
        }
        if tokio::time::timeout_at(deadline, ended).await.is_err() {
            break;
        }
    }
    let left = queue.processing();
    tracing::info!(jobs = ?left, "returning unfinished embedding jobs to the queue");
    for flag in queue.running().values() {
        flag.set(Stop::Shutdown);
    }
    loop {
        let ended = queue.ended.notified();
        if queue.running().is_empty() {
            return;
        }
        ended.await;
    }
}

/// Start one claimed job on its own thread (with the config as it is now); `Err(job)` if no
/// thread could be started.
fn start(
    queue: &Arc<Queue>,
    catalog: &Catalog,
    config: &LiveConfig,
    job: crate::catalog::Claimed,
) -> Result<(), i64> {
    let flag = Arc::new(StopFlag::default());
    let id = job.job;
    queue.running().insert(id, Arc::clone(&flag));
    let (queue_, catalog_, config_) = (Arc::clone(queue), catalog.clone(), config.get());
    let spawned = std::thread::Builder::new()
        .name(format!("embed-job-{id}"))
        .spawn(move || {
            // Embedding yields to ingest and the control socket; the writer, HTTP and parse
            // threads this one starts inherit it.
            crate::embed::priority::lower_this_thread();
            let (generation, ending) =
                runner::run(&job, &catalog_, &queue_.providers, &flag, &config_);
            report(&catalog_, &job, generation, ending);
            {
                // Only this run's entry: never one a later run of the same job put there.
                let mut running = queue_.running();
                if running.get(&id).is_some_and(|f| Arc::ptr_eq(f, &flag)) {
                    running.remove(&id);
                }
            }
            queue_.ended.notify_waiters();
            catalog_.wake().notify_one();
        });
    if let Err(error) = spawned {
        tracing::error!(job = id, "cannot start a thread for embedding job: {error}");
        queue.running().remove(&id);
        return Err(id);
    }
    Ok(())
}

fn report(
    catalog: &Catalog,
    job: &crate::catalog::Claimed,
    generation: Option<i64>,
    ending: Ending,
) {
    let id = job.job;
    let log = ending.clone();
    match catalog.finish_job_blocking(id, job.try_id, generation, ending) {
        Ok(finished) => tracing::info!(
            job = id,
            group = %job.group,
            source = %job.source,
            version = job.version_no,
            ending = ?log,
            ?finished,
            "embedding job ended"
        ),
        Err(error) => tracing::error!(job = id, "cannot record the end of embedding job: {error}"),
    }
}
