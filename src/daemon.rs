//! Wiring and lifecycle: open the catalog, recover, bind the socket, start the watcher, the
//! ingest workers and the server, then stop them in order when `shutdown` resolves.
//!
//! Critical errors (the catalog cannot open, the socket cannot bind, the drop root cannot be
//! watched) return from `run`; everything after start-up is a runtime error that is recorded
//! and survived. Shutdown stops taking new files first, lets workers finish the file in hand,
//! then closes the catalog and removes the socket. Nothing here touches process-global signal
//! state: the caller decides what `shutdown` is, and hands reload requests and a passed
//! listener in through [`Service`].

use crate::catalog::{Catalog, CatalogError};
use crate::config::{Config, LiveConfig};
use crate::events::Events;
use crate::inflight::InFlight;
use crate::ingest::{Ingestor, Workers, recover};
use crate::notices::Notices;
use crate::queue::Queue;
use crate::server::{self, ServerError, Shared};
use crate::service::{self, Service, notify};
use crate::watch::{self, WatchContext, WatchError};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot {about} {path}: {source}")]
    Io {
        about: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Watch(#[from] WatchError),
    #[error("{0}")]
    Model(String),
    #[error("start-up task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error(transparent)]
    WorkerUser(#[from] crate::ingest::isolate::sandbox::UserError),
}

/// What version retention needs from the config (`ingest.retain_versions`).
fn retention(config: &Config) -> crate::catalog::retain::Retention {
    crate::catalog::retain::Retention {
        keep: config.ingest.retain_versions,
        storage_root: config.paths.storage_root.clone(),
    }
}

/// Resolve the user parse workers read as (a critical error as root when it is missing), and
/// run one probe worker so `status` says what confines them.
async fn start_parse_workers(config: &Config) -> Result<(), DaemonError> {
    use crate::ingest::isolate::{self, sandbox};
    sandbox::configure(sandbox::resolve(&config.ingest.worker_user)?);
    let limits = isolate::Limits::of(&config.ingest);
    let report =
        tokio::task::spawn_blocking(move || isolate::ParseWorker::current().probe(&limits)).await?;
    match &report.error {
        Some(error) => {
            tracing::error!(%error, "parse workers cannot confine themselves; no file will be read")
        }
        None => tracing::info!(
            uid = report.uid,
            landlock = %report.landlock,
            seccomp = report.seccomp,
            "parse workers are sandboxed"
        ),
    }
    sandbox::set_report(report);
    Ok(())
}

/// How long a stop waits for processing embedding jobs before returning them to the queue:
/// three quarters of `server.shutdown_timeout_secs`, leaving the rest to requeue them.
fn job_grace(config: &Config) -> Duration {
    Duration::from_secs(config.server.shutdown_timeout_secs) * 3 / 4
}

/// Apply reloaded embedding settings to the queue (cap, attempts, provider settings).
fn service_reconfigure(
    live: &LiveConfig,
    queue: &Arc<Queue>,
    catalog: &Catalog,
    stop: CancellationToken,
) {
    let mut changes = live.subscribe();
    let (queue, catalog) = (Arc::clone(queue), catalog.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                _ = stop.cancelled() => return,
            }
            let config = Arc::clone(&changes.borrow_and_update());
            queue.reconfigure(&config);
            let max_attempts = config.embedding.max_attempts;
            let retention = retention(&config);
            let _ = catalog
                .call(move |db| {
                    db.queue.max_attempts = max_attempts;
                    db.retention = retention;
                    db.queue.wake.notify_one();
                    Ok(())
                })
                .await;
        }
    });
}

/// Removes the socket file when the daemon stops, however it stops.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Create a folder the daemon needs, with exactly `mode` (never the umask) where it creates one.
fn create_dir(path: &Path, mode: u32, about: &'static str) -> Result<(), DaemonError> {
    crate::ingest::dirs::create_all(path, mode).map_err(|e| DaemonError::Io {
        about,
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })
}

/// Run the daemon until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    run_with(config, shutdown, Service::default()).await
}

/// Run the daemon until `shutdown` resolves, as `service` says (reloads, a passed listener,
/// the log filter).
pub async fn run_with(
    config: Config,
    shutdown: impl Future<Output = ()>,
    service: Service,
) -> Result<(), DaemonError> {
    let Service {
        reloads,
        log_filter,
        log_from_env,
        listener: passed_listener,
    } = service;
    let started = Instant::now();
    let started_ms = crate::clock::now_ms();
    let config = Arc::new(config);
    start_parse_workers(&config).await?;
    let paths = &config.paths;
    let (_, folder_mode) = config.ingest.storage_modes();
    create_dir(&paths.drop_root, folder_mode, "create the drop root")?;
    create_dir(&paths.storage_root, folder_mode, "create the storage root")?;
    for file in [&paths.database, &paths.audit_log] {
        if let Some(parent) = file.parent() {
            create_dir(parent, folder_mode, "create the folder of")?;
        }
    }

    let events = Events::default();
    let (catalog, catalog_thread) =
        Catalog::open(&paths.database, &paths.audit_log, events.clone())?;
    let recovered = {
        let config = Arc::clone(&config);
        let catalog = catalog.clone();
        tokio::task::spawn_blocking(move || recover::recover(&config, &catalog)).await??
    };
    tracing::debug!(?recovered, "start-up recovery done");

    // The embedding queue: jobs a stop left processing go back to the queue, and the model
    // is checked (fetched, with auto_fetch) before the daemon says it is ready.
    let max_attempts = config.embedding.max_attempts;
    let retention = retention(&config);
    let (requeued, dropped) = catalog
        .call(move |db| {
            db.queue.max_attempts = max_attempts;
            db.retention = retention;
            // Prunes a stop interrupted are finished before anything else is stored.
            db.finish_prunes()?;
            db.recover_jobs()
        })
        .await?;
    if requeued + dropped > 0 {
        tracing::info!(
            requeued,
            unfinished_generations_removed = dropped,
            "embedding jobs interrupted by the last stop were queued again"
        );
    }
    {
        let (embedding, file) = (config.embedding.clone(), config.file.clone());
        tokio::task::spawn_blocking(move || {
            crate::embed::configured::preflight(&embedding, file.as_deref())
        })
        .await?
        .map_err(DaemonError::Model)?;
    }
    let queue = Queue::new(&config);

    // The control socket: passed by the service manager (its path is systemd's to keep), or
    // bound here and removed at exit.
    let (listener, socket_file) = match passed_listener {
        Some(fd) => {
            tracing::info!(socket = %paths.socket.display(), "serving the socket passed by systemd");
            (server::adopt(fd, &paths.socket)?, None)
        }
        None => {
            let mode = config.socket_mode().unwrap_or(0o660);
            // Binding may wait up to 2 s for an old socket's owner to answer: not on the reactor.
            let listener = {
                let (path, group) = (paths.socket.clone(), config.server.socket_group.clone());
                tokio::task::spawn_blocking(move || server::bind(&path, mode, &group)).await??
            };
            (listener, Some(SocketFile(paths.socket.clone())))
        }
    };
    // What may change on reload is read through this handle by ingest, watch and server.
    let live = LiveConfig::new(Arc::clone(&config));

    let notices = Notices::default();
    let in_flight = InFlight::default();
    // One cap on parse workers, shared by ingest and previews.
    let parse_slots = crate::ingest::isolate::slots::ParseSlots::new(config.ingest.workers);
    let ingestor = Arc::new(
        Ingestor::new(
            live.clone(),
            catalog.clone(),
            in_flight.clone(),
            notices.clone(),
        )
        .with_parse_slots(parse_slots.clone()),
    );
    let ((files_tx, files_rx), (done_tx, done_rx)) = watch::channels(config.ingest.workers);
    let workers = Workers::start(config.ingest.workers, ingestor, files_rx, done_tx.clone())
        .map_err(|e| DaemonError::Io {
            about: "start ingest workers for",
            path: paths.drop_root.clone(),
            source: e,
        })?;
    let watcher = watch::start(
        WatchContext {
            root: paths.drop_root.clone(),
            settle: Duration::from_millis(config.ingest.settle_ms),
            live: Some(live.clone()),
            catalog: catalog.clone(),
            in_flight: in_flight.clone(),
            notices: notices.clone(),
            events: events.clone(),
        },
        files_tx,
        done_rx,
        done_tx,
    )?;

    let shared = Arc::new(Shared {
        config: live.clone(),
        catalog: catalog.clone(),
        in_flight: in_flight.clone(),
        notices: notices.clone(),
        events,
        queue: Arc::clone(&queue),
        started_ms,
        started,
        limits: crate::server::SocketLimits::sharing(parse_slots),
    });
    // ---- the embedding queue: starts jobs until the stop, then drains ----
    let stop_queue = CancellationToken::new();
    let scheduler = tokio::spawn(crate::queue::run(
        Arc::clone(&queue),
        catalog.clone(),
        live.clone(),
        stop_queue.clone(),
        {
            let live = live.clone();
            move || job_grace(&live.get())
        },
    ));
    service_reconfigure(&live, &queue, &catalog, stop_queue.clone());
    let stop = CancellationToken::new();
    let server = tokio::spawn(server::serve(listener, shared, stop.clone()));

    // ---- service manager: ready, watchdog and status, reloads ----
    let mut service_tasks = Vec::new();
    if notify::enabled() {
        let summary = notify::summary(&catalog, &in_flight)
            .await
            .unwrap_or_default();
        notify::ready(&format!("ready: {summary}"));
        service_tasks.push(tokio::spawn(notify::heartbeat(
            catalog.clone(),
            in_flight.clone(),
            notify::watchdog_interval(),
            stop.clone(),
        )));
    }
    if let Some(requests) = reloads {
        service_tasks.push(tokio::spawn(service::reload::serve(
            live.clone(),
            notices.clone(),
            log_filter,
            log_from_env,
            requests,
            stop.clone(),
        )));
    }
    drop(catalog);
    tracing::info!(
        drop_root = %config.paths.drop_root.display(),
        socket = %config.paths.socket.display(),
        startup_ms = started.elapsed().as_millis() as u64,
        "ingestd is ready"
    );

    shutdown.await;
    notify::stopping();
    tracing::info!("stopping: no new files are taken; finishing the files in hand");
    stop.cancel();
    let _ = server.await;
    for task in service_tasks {
        let _ = task.await;
    }
    // Every step below shares this deadline; whatever is not done by then is abandoned, and
    // the files it held stay in the drop folder for the next start. Processing embedding jobs
    // get most of it to finish; the rest are returned to the queue.
    stop_queue.cancel();
    let deadline = Duration::from_secs(live.get().server.shutdown_timeout_secs);
    let watcher_stopped = tokio::task::spawn_blocking(move || watcher.stop());
    let stopping = async move {
        // Jobs first: their row streams run in parse workers, which are killed below.
        let _ = scheduler.await;
        watcher_stopped.await?;
        tokio::task::spawn_blocking(move || {
            // A file being read stays in the drop folder; waiting out its parse timeout would
            // only delay the stop.
            let killed = crate::ingest::isolate::kill_running_workers();
            if killed > 0 {
                tracing::info!(
                    killed,
                    "stopped parse workers; their files stay in the drop folder"
                );
            }
            workers.join();
            // Every catalog handle is gone now: the thread finishes its queue and ends.
            catalog_thread.join();
        })
        .await
    };
    match tokio::time::timeout(deadline, stopping).await {
        Ok(joined) => joined?,
        Err(_) => tracing::warn!(
            timeout_secs = deadline.as_secs(),
            "stopping took longer than server.shutdown_timeout_secs; exiting anyway"
        ),
    }
    drop(socket_file);
    tracing::info!("stopped");
    Ok(())
}
