//! Wiring and lifecycle: open the catalog, recover, bind the socket, start the watcher, the
//! ingest workers and the server, then stop them in order when `shutdown` resolves.
//!
//! Start-up is a row of small steps, each returning what it started. Critical errors (the
//! catalog cannot open, the socket cannot bind, the drop root cannot be watched) return from
//! `run`. After start-up, a bad file or a failed embedding call is a runtime error that is
//! recorded and survived; but the long-lived async tasks (server, queue, reloads, heartbeat)
//! run under one [`Supervisor`], and the first of them to panic or end is critical too: the
//! daemon tells systemd why, stops in the usual order and `run` returns the failure, so the
//! process exits non-zero and `Restart=on-failure` brings it back. Shutdown stops taking new
//! requests and files first, lets workers finish the file in hand, then closes the catalog and
//! removes the socket. Nothing here touches process-global signal state: the caller decides
//! what `shutdown` is, and hands reload requests and a passed listener in through [`Service`].

use crate::catalog::{Catalog, CatalogError, CatalogThread};
use crate::config::Config;
use crate::events::Events;
use crate::ingest::isolate::slots::ParseSlots;
use crate::ingest::{Ingestor, Workers, recover};
use crate::notices::Notices;
use crate::queue::Queue;
use crate::server::{self, ServerError, Shared};
use crate::service::live::LiveConfig;
use crate::service::supervisor::{Supervisor, TaskFailure};
use crate::service::{self, Service, notify};
use crate::watch::inflight::InFlight;
use crate::watch::{self, WatchContext, WatchError, WatchHandle};
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
    /// A supervised task panicked or ended while the daemon ran.
    #[error(transparent)]
    Task(#[from] TaskFailure),
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

/// Apply reloaded embedding settings to the queue (cap, attempts, provider settings), until
/// `stop`.
async fn reconfigure(
    live: LiveConfig,
    queue: Arc<Queue>,
    catalog: Catalog,
    stop: CancellationToken,
) {
    let mut changes = live.subscribe();
    loop {
        tokio::select! {
            // The sender lives in `live`, held by this task, so this never fails; if it did,
            // there would be nothing left to follow, and ending before the stop would read as
            // a failure.
            changed = changes.changed() => if changed.is_err() { break },
            _ = stop.cancelled() => return,
        }
        let config = Arc::clone(&changes.borrow_and_update());
        queue.reconfigure(&config);
        let max_attempts = config.embedding.max_attempts;
        let retention = retention(&config);
        let _ = catalog.configure(max_attempts, retention).await;
        catalog.set_ef_search(config.catalog.ef_search);
    }
    stop.cancelled().await;
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
    crate::dirs::create_all(path, mode).map_err(|e| DaemonError::Io {
        about,
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })
}

/// Run the daemon until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    run_with(config, shutdown, Service::default()).await
}

/// Run the daemon until `shutdown` resolves or one of its tasks fails, as `service` says
/// (reloads, a passed listener, the log filter). A failed task is returned as an error after
/// the same ordered stop a signal gets, so the binary exits non-zero.
pub async fn run_with(
    config: Config,
    shutdown: impl Future<Output = ()>,
    service: Service,
) -> Result<(), DaemonError> {
    let mut running = start(config, service).await?;
    let failure = tokio::select! {
        () = shutdown => None,
        failure = running.supervisor.next_ended() => Some(failure),
    };
    match &failure {
        None => notify::stopping(),
        Some(failure) => {
            tracing::error!(
                task = failure.task,
                "{failure}; stopping so that the service manager restarts ingestd"
            );
            notify::failing(&failure.reason());
        }
    }
    let failures = running.stop().await?;
    match failure.or(failures.into_iter().next()) {
        Some(failure) => Err(DaemonError::Task(failure)),
        None => Ok(()),
    }
}

/// What start-up leaves running, and what a stop must end, in the order it ends them.
struct Running {
    supervisor: Supervisor,
    /// Ends the socket server and the service tasks: the first step of a stop.
    stop: CancellationToken,
    /// Ends the embedding queue, once nobody can ask for more work.
    stop_queue: CancellationToken,
    live: LiveConfig,
    watcher: WatchHandle,
    workers: Workers,
    catalog_thread: CatalogThread,
    socket_file: Option<SocketFile>,
}

/// The task a stop leaves for last: processing jobs get most of the stop's deadline.
const QUEUE_TASK: &str = "queue";

/// Start-up, step by step; any error here is critical and the daemon does not start.
async fn start(config: Config, service: Service) -> Result<Running, DaemonError> {
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
    create_folders(&config)?;
    let events = Events::default();
    let (catalog, catalog_thread) = open_catalog(&config, events.clone()).await?;
    check_model(&config).await?;
    let queue = Queue::new(&config);
    let (listener, socket_file) = open_socket(&config, passed_listener).await?;
    // What may change on reload is read through this handle by ingest, watch and server.
    let live = LiveConfig::new(Arc::clone(&config));
    let notices = Notices::default();
    let in_flight = InFlight::default();
    // One cap on parse workers, shared by ingest and previews.
    let parse_slots = ParseSlots::new(config.ingest.workers);
    let (workers, watcher) =
        start_ingest(&live, &catalog, &in_flight, &notices, &events, &parse_slots)?;

    let mut supervisor = Supervisor::default();
    let (stop, stop_queue) = (CancellationToken::new(), CancellationToken::new());
    // ---- the embedding queue: starts jobs until the stop, then drains ----
    supervisor.spawn(
        QUEUE_TASK,
        crate::queue::run(
            Arc::clone(&queue),
            catalog.clone(),
            live.clone(),
            stop_queue.clone(),
            {
                let live = live.clone();
                move || job_grace(&live.get())
            },
        ),
    );
    supervisor.spawn(
        "reconfigure",
        reconfigure(
            live.clone(),
            Arc::clone(&queue),
            catalog.clone(),
            stop.clone(),
        ),
    );
    let shared = Arc::new(Shared {
        config: live.clone(),
        catalog: catalog.clone(),
        in_flight: in_flight.clone(),
        notices: notices.clone(),
        events,
        queue,
        started_ms,
        started,
        limits: crate::server::SocketLimits::sharing(parse_slots),
    });
    supervisor.spawn("server", server::serve(listener, shared, stop.clone()));

    // ---- service manager: ready, watchdog and status, reloads ----
    if notify::enabled() {
        let files = in_flight.clone();
        let in_flight = move || files.len();
        let summary = notify::summary(&catalog, &in_flight)
            .await
            .unwrap_or_default();
        notify::ready(&format!("ready: {summary}"));
        supervisor.spawn(
            "heartbeat",
            notify::heartbeat(
                catalog.clone(),
                in_flight,
                notify::watchdog_interval(),
                stop.clone(),
            ),
        );
    }
    if let Some(requests) = reloads {
        supervisor.spawn(
            "reload",
            service::reload::serve(
                live.clone(),
                notices.clone(),
                log_filter,
                log_from_env,
                requests,
                stop.clone(),
            ),
        );
    }
    tracing::info!(
        drop_root = %config.paths.drop_root.display(),
        socket = %config.paths.socket.display(),
        startup_ms = started.elapsed().as_millis() as u64,
        tasks = ?supervisor.running(),
        "ingestd is ready"
    );
    Ok(Running {
        supervisor,
        stop,
        stop_queue,
        live,
        watcher,
        workers,
        catalog_thread,
        socket_file,
    })
}

/// The drop and storage roots, and the folders of the database and the audit log.
fn create_folders(config: &Config) -> Result<(), DaemonError> {
    let paths = &config.paths;
    let (_, folder_mode) = config.ingest.storage_modes();
    create_dir(&paths.drop_root, folder_mode, "create the drop root")?;
    create_dir(&paths.storage_root, folder_mode, "create the storage root")?;
    for file in [&paths.database, &paths.audit_log] {
        if let Some(parent) = file.parent() {
            create_dir(parent, folder_mode, "create the folder of")?;
        }
    }
    Ok(())
}

/// Open the catalog and its thread, recover what the last run left half done (files, prunes,
/// embedding jobs that were processing), and set the queue's limits from the config.
async fn open_catalog(
    config: &Arc<Config>,
    events: Events,
) -> Result<(Catalog, CatalogThread), DaemonError> {
    let paths = &config.paths;
    let (catalog, catalog_thread) = match config.catalog.backend {
        crate::config::Backend::Sqlite => Catalog::open(&paths.database, &paths.audit_log, events)?,
        crate::config::Backend::Postgres => {
            let no_file = std::path::PathBuf::new();
            let password_file = config.catalog.password_file.as_ref().unwrap_or(&no_file);
            let target =
                crate::catalog::pg::Target::new("catalog.url", &config.catalog.url, password_file)
                    .map_err(CatalogError::from)?;
            let member = crate::catalog::pg::queue::Member {
                name: config.cluster.node_name(),
                lease: std::time::Duration::from_secs(config.cluster.lease_secs),
                shared_storage: config.cluster.shared_storage,
            };
            tracing::info!(
                node = %member.name,
                url = %target.url(),
                "joining the cluster's catalog in PostgreSQL"
            );
            let (storage_root, target_) = (paths.storage_root.clone(), target);
            let audit_log = paths.audit_log.clone();
            tokio::task::spawn_blocking(move || {
                Catalog::open_postgres(target_, member, storage_root, events, &audit_log)
            })
            .await??
        }
    };
    let recovered = {
        let config = Arc::clone(config);
        let catalog = catalog.clone();
        tokio::task::spawn_blocking(move || recover::recover(&config, &catalog)).await??
    };
    tracing::debug!(?recovered, "start-up recovery done");
    // Jobs a stop left processing go back to the queue.
    let max_attempts = config.embedding.max_attempts;
    let retention = retention(config);
    // Prunes a stop interrupted are finished before anything else is stored.
    let (requeued, dropped) = catalog.start_up(max_attempts, retention).await?;
    catalog.set_ef_search(config.catalog.ef_search);
    if requeued + dropped > 0 {
        tracing::info!(
            requeued,
            unfinished_generations_removed = dropped,
            "embedding jobs interrupted by the last stop were queued again"
        );
    }
    Ok((catalog, catalog_thread))
}

/// The model is checked (fetched, with auto_fetch) before the daemon says it is ready.
async fn check_model(config: &Config) -> Result<(), DaemonError> {
    let (embedding, file) = (config.embedding.clone(), config.file.clone());
    tokio::task::spawn_blocking(move || {
        crate::embed::configured::preflight(&embedding, file.as_deref())
    })
    .await?
    .map_err(DaemonError::Model)
}

/// The control socket: passed by the service manager (its path is systemd's to keep), or
/// bound here and removed at exit.
async fn open_socket(
    config: &Config,
    passed: Option<std::os::fd::OwnedFd>,
) -> Result<
    (
        interprocess::local_socket::tokio::Listener,
        Option<SocketFile>,
    ),
    DaemonError,
> {
    let paths = &config.paths;
    if let Some(fd) = passed {
        tracing::info!(socket = %paths.socket.display(), "serving the socket passed by systemd");
        return Ok((server::adopt(fd, &paths.socket)?, None));
    }
    let mode = config.socket_mode().unwrap_or(0o660);
    // Binding may wait up to 2 s for an old socket's owner to answer: not on the reactor.
    let (path, group) = (paths.socket.clone(), config.server.socket_group.clone());
    let listener = tokio::task::spawn_blocking(move || server::bind(&path, mode, &group)).await??;
    Ok((listener, Some(SocketFile(paths.socket.clone()))))
}

/// The ingest worker threads and the watcher thread that feeds them.
fn start_ingest(
    live: &LiveConfig,
    catalog: &Catalog,
    in_flight: &InFlight,
    notices: &Notices,
    events: &Events,
    parse_slots: &ParseSlots,
) -> Result<(Workers, WatchHandle), DaemonError> {
    let config = live.get();
    let paths = &config.paths;
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
    Ok((workers, watcher))
}

impl Running {
    /// The ordered stop: no new requests or files, then the embedding queue drains, the
    /// watcher and the ingest workers finish the file in hand, and the catalog is flushed.
    /// Returns the tasks that panicked while stopping.
    async fn stop(self) -> Result<Vec<TaskFailure>, DaemonError> {
        let Running {
            mut supervisor,
            stop,
            stop_queue,
            live,
            watcher,
            workers,
            catalog_thread,
            socket_file,
        } = self;
        tracing::info!("stopping: no new files are taken; finishing the files in hand");
        stop.cancel();
        // A job paused behind an ingest would hold up the stop: the ingest's parse worker is
        // killed only after the jobs have ended.
        crate::embed::priority::stop_pausing();
        let mut failures = supervisor.join_all_but(&[QUEUE_TASK]).await;
        // Every step below shares this deadline; whatever is not done by then is abandoned,
        // and the files it held stay in the drop folder for the next start. Processing
        // embedding jobs get most of it to finish; the rest are returned to the queue.
        stop_queue.cancel();
        let deadline = Duration::from_secs(live.get().server.shutdown_timeout_secs);
        let watcher_stopped = tokio::task::spawn_blocking(move || watcher.stop());
        let stopping = async {
            // Jobs first: their row streams run in parse workers, which are killed below.
            failures.extend(supervisor.join_all_but(&[]).await);
            watcher_stopped.await?;
            tokio::task::spawn_blocking(move || {
                // A file being read stays in the drop folder; waiting out its parse timeout
                // would only delay the stop.
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
        Ok(failures)
    }
}
