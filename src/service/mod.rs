//! Running as a service: what the `ingestd` binary hands the daemon beyond its config (reload
//! requests, the log filter handle, a listener passed by systemd), the config in force while it
//! runs ([`live`]), and the pieces that speak to
//! the service manager and the operator: sd_notify and the watchdog ([`notify`]), config reload
//! ([`reload`]), the pid file of `--daemonize` ([`pidfile`]), socket activation
//! ([`activation`]), `ingestd check-config` ([`check`]) and the supervision of the daemon's
//! long-lived tasks ([`supervisor`]).
//!
//! Nothing here installs signal handlers: the binary turns signals into a shutdown future and
//! reload requests, so tests can run the daemon in-process without process-global state.

pub mod activation;
pub mod check;
pub mod live;
pub mod notify;
pub mod pidfile;
pub mod reload;
pub mod supervisor;

use std::os::fd::OwnedFd;

/// Changes the log filter of the running process (`server.log_level` on reload).
pub type LogFilter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// How the daemon is run, beyond its config. `Service::default()` is a plain in-process daemon:
/// no reloads, its own socket, a fixed log filter.
#[derive(Default)]
pub struct Service {
    /// Each message asks for a config reload (the binary sends one per SIGHUP).
    pub reloads: Option<tokio::sync::mpsc::Receiver<()>>,
    /// Applies `server.log_level` when a reload changes it.
    pub log_filter: Option<LogFilter>,
    /// The log filter comes from `RUST_LOG`, which `server.log_level` does not override.
    pub log_from_env: bool,
    /// A listening socket passed by the service manager (socket activation): served as it is,
    /// never unlinked or bound again.
    pub listener: Option<OwnedFd>,
}
