//! Wiring and lifecycle: open the catalog, recover, bind the socket, start the watcher, the
//! ingest workers and the server, then stop them in order when `shutdown` resolves.
//!
//! Critical errors (the catalog cannot open, the socket cannot bind, the drop root cannot be
//! watched) return from `run`; everything after start-up is a runtime error that is recorded
//! and survived. Shutdown stops taking new files first, lets workers finish the file in hand,
//! then closes the catalog and removes the socket. Nothing here touches process-global signal
//! state: the caller decides what `shutdown` is.

use crate::catalog::{Catalog, CatalogError};
use crate::config::Config;
use crate::events::Events;
use crate::inflight::InFlight;
use crate::ingest::{Ingestor, Workers, recover};
use crate::notices::Notices;
use crate::queue::Queue;
use crate::server::{self, ServerError, Shared};
use crate::watch::{self, WatchContext, WatchError};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
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
}

/// How long a stop waits for processing embedding jobs before returning them to the queue.
const JOB_GRACE: Duration = Duration::from_secs(20);

/// Removes the socket file when the daemon stops, however it stops.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn create_dir(path: &Path, about: &'static str) -> Result<(), DaemonError> {
    std::fs::create_dir_all(path).map_err(|source| DaemonError::Io {
        about,
        path: path.to_path_buf(),
        source,
    })
}

/// Run the daemon until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    let started = Instant::now();
    let started_ms = crate::clock::now_ms();
    let config = Arc::new(config);
    let paths = &config.paths;
    create_dir(&paths.drop_root, "create the drop root")?;
    create_dir(&paths.storage_root, "create the storage root")?;
    for file in [&paths.database, &paths.audit_log] {
        if let Some(parent) = file.parent() {
            create_dir(parent, "create the folder of")?;
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
    let (requeued, dropped) = catalog
        .call(move |db| {
            db.queue.max_attempts = max_attempts;
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

    let mode = config.socket_mode().unwrap_or(0o660);
    // Binding may wait up to 2 s for an old socket's owner to answer: not on the reactor.
    let listener = {
        let (path, group) = (paths.socket.clone(), config.server.socket_group.clone());
        tokio::task::spawn_blocking(move || server::bind(&path, mode, &group)).await??
    };
    let socket_file = SocketFile(paths.socket.clone());

    let notices = Notices::default();
    let in_flight = InFlight::default();
    let ingestor = Arc::new(Ingestor::new(
        Arc::clone(&config),
        catalog.clone(),
        in_flight.clone(),
        notices.clone(),
    ));
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
        config: RwLock::new(Arc::clone(&config)),
        catalog: catalog.clone(),
        in_flight,
        notices,
        events,
        queue: Arc::clone(&queue),
        started_ms,
        started,
    });
    let stop_queue = CancellationToken::new();
    let scheduler = tokio::spawn(crate::queue::run(
        queue,
        catalog.clone(),
        Arc::clone(&config),
        stop_queue.clone(),
        JOB_GRACE,
    ));
    drop(catalog);
    let stop = CancellationToken::new();
    let server = tokio::spawn(server::serve(listener, shared, stop.clone()));
    tracing::info!(
        drop_root = %config.paths.drop_root.display(),
        socket = %config.paths.socket.display(),
        startup_ms = started.elapsed().as_millis() as u64,
        "ingestd is ready"
    );

    shutdown.await;
    tracing::info!("stopping: no new files are taken; finishing the files in hand");
    stop.cancel();
    let _ = server.await;
    // Processing jobs may finish within the grace period; the rest go back to the queue.
    stop_queue.cancel();
    let _ = scheduler.await;
    tokio::task::spawn_blocking(move || {
        watcher.stop();
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
        catalog_thread.join();
    })
    .await?;
    drop(socket_file);
    tracing::info!("stopped");
    Ok(())
}
