//! The control socket: accept connections, frame requests, answer each with one line.
//!
//! Every connection is its own task, admitted against per-uid caps with slots kept for
//! administrators (`slots`); a malformed or oversized line gets a structured error and the
//! connection goes on; a client that is slow to send its first request, idles, or stops
//! reading its answer is timed out, and answers are written with bounded memory (`reply`).

mod auth;
mod codec;
mod commands;
mod context;
mod handlers;
mod refusals;
mod reply;
mod slots;
mod stream;
#[cfg(test)]
mod tests;

pub use auth::Peer;
pub use context::{Shared, SocketLimits};

use reply::{Outgoing, write_response};
use slots::Slots;

use crate::protocol::{self, Command, ErrorBody, ErrorCode, MAX_LINE_BYTES, Response, cmd};
use codec::{Frame, LineCodec};
use futures_util::StreamExt;
use interprocess::local_socket::tokio::{Listener, Stream};
use interprocess::local_socket::traits::StreamCommon as _;
use interprocess::local_socket::traits::tokio::Listener as _;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use interprocess::os::unix::local_socket::ListenerOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// A client that takes no bytes of its response for this long is dropped, and the response
/// with it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a refused connection is given to take the line saying why.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a refused connection waits for the caller's request before it is closed.
const REFUSE_LINGER: Duration = Duration::from_millis(250);
/// Refused connections that may linger at once.
const MAX_LINGERING: usize = 256;
/// How often ended refusal windows are summarized into the audit trail.
const REFUSAL_FLUSH: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("another ingestd is already serving {0}; stop it first or use another paths.socket")]
    AlreadyRunning(PathBuf),
    #[error("server.socket_group: there is no group named {0:?} on this system")]
    NoSuchGroup(String),
    #[error("cannot create the control socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Bind the control socket, replacing a stale socket file but never a live daemon's, with
/// exactly `mode` and, if `group` is not empty, owned by that group.
pub fn bind(path: &Path, mode: u32, group: &str) -> Result<Listener, ServerError> {
    let bind_err = |source| ServerError::Bind {
        path: path.to_path_buf(),
        source,
    };
    if std::fs::symlink_metadata(path).is_ok() {
        if answers_status(path) {
            return Err(ServerError::AlreadyRunning(path.to_path_buf()));
        }
        tracing::info!(socket = %path.display(), "removing a stale socket file");
        std::fs::remove_file(path).map_err(bind_err)?;
    }
    if let Some(parent) = path.parent() {
        // Created 0755 whatever the umask: who may connect is the socket's own mode and group.
        crate::dirs::create_all(parent, 0o755).map_err(|e| bind_err(std::io::Error::other(e)))?;
    }
    let name = path.to_fs_name::<GenericFilePath>().map_err(bind_err)?;
    let listener = ListenerOptions::new()
        .name(name)
        .mode(mode as nix::libc::mode_t)
        .create_tokio()
        .map_err(bind_err)?;
    // The mode given at bind time passes through the umask; set it exactly.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(bind_err)?;
    if !group.is_empty() {
        let gid = match nix::unistd::Group::from_name(group) {
            Ok(Some(g)) => g.gid,
            _ => return Err(ServerError::NoSuchGroup(group.to_string())),
        };
        nix::unistd::chown(path, None, Some(gid)).map_err(|e| bind_err(std::io::Error::from(e)))?;
    }
    Ok(listener)
}

/// Serve on a listening socket passed by the service manager (socket activation). Its path is
/// systemd's: the returned listener never unlinks it. Needs the async runtime.
pub fn adopt(fd: std::os::fd::OwnedFd, path: &Path) -> Result<Listener, ServerError> {
    use interprocess::os::unix::uds_local_socket::tokio::Listener as UdsListener;
    let listener = UdsListener::try_from(fd).map_err(|source| ServerError::Bind {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Listener::from(listener))
}

/// Does a daemon answer `status` on `path`? A bare connect is not proof: a process that merely
/// inherited a dead daemon's listening socket accepts connections but never answers.
fn answers_status(path: &Path) -> bool {
    use std::io::{BufRead, Write};
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(path) else {
        return false;
    };
    let limit = Some(Duration::from_secs(2));
    if stream.set_read_timeout(limit).is_err() || stream.set_write_timeout(limit).is_err() {
        return false;
    }
    let request = format!(
        "{{\"v\":{},\"cmd\":\"status\"}}\n",
        protocol::PROTOCOL_VERSION
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(stream);
    if reader.read_line(&mut line).is_err() {
        return false;
    }
    serde_json::from_str::<Response>(&line).is_ok()
}

/// Accept and serve connections until `shutdown` fires.
pub async fn serve(listener: Listener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let slots = Arc::new(Slots::default());
    let mut connections = tokio::task::JoinSet::new();
    let flusher = tokio::spawn(flush_refusals(Arc::clone(&shared), shutdown.clone()));
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Reap finished connection tasks so the set does not grow.
        while connections.try_join_next().is_some() {}
        let shared = Arc::clone(&shared);
        let slots = Arc::clone(&slots);
        let stop = shutdown.child_token();
        // Never wait here for a slot: the accept loop must keep taking connections so an
        // administrator's is seen even while every other slot is held.
        connections.spawn(async move {
            let peer = stream.peer_creds().ok().and_then(|c| {
                Some(Peer {
                    uid: c.euid()?,
                    gid: c.egid()?,
                })
            });
            let config = shared.config();
            let privileged = shared.limits.admins.privileged(&config, peer).await;
            let limits = slots::Limits::of(&config.server);
            let span = tracing::debug_span!("connection", uid = peer.map(|p| p.uid));
            match slots.admit(peer.map(|p| p.uid), privileged, &limits) {
                Ok(slot) => {
                    let timeouts = Timeouts {
                        first: Duration::from_secs(config.server.first_request_timeout_secs),
                        idle: Duration::from_secs(config.server.idle_timeout_secs),
                    };
                    drop(config);
                    connection(stream, peer, slot, limits, timeouts, shared, stop)
                        .instrument(span)
                        .await;
                }
                Err(denied) => {
                    drop(config);
                    refuse(stream, denied).instrument(span).await;
                }
            }
        });
    }
    connections.shutdown().await;
    let _ = flusher.await;
}

/// How long a connection may wait for its first request, and between requests.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    first: Duration,
    idle: Duration,
}

/// Tell a caller over its limits why, briefly, and close.
///
/// The reason is written first; then the connection lingers a moment for the caller's
/// request line, because closing a socket with a request still unread makes the caller's
/// read fail with a reset before it sees the reason. Lingering is itself capped
/// (`MAX_LINGERING`): in a flood of refused connections the rest are closed at once.
async fn refuse(stream: Stream, denied: slots::Denied) {
    static LINGERING: AtomicUsize = AtomicUsize::new(0);
    tracing::debug!("connection refused: {denied}");
    let (recv, mut send) = tokio::io::split(stream);
    let error = ErrorBody::new(ErrorCode::Refused, denied.to_string());
    if write_response(&mut send, Response::err(error), REFUSE_TIMEOUT)
        .await
        .is_err()
    {
        return;
    }
    if LINGERING.fetch_add(1, Ordering::Relaxed) < MAX_LINGERING {
        let mut frames = FramedRead::new(recv, LineCodec::new(MAX_LINE_BYTES));
        let _ = tokio::time::timeout(REFUSE_LINGER, frames.next()).await;
    }
    LINGERING.fetch_sub(1, Ordering::Relaxed);
}

/// Write the summaries of refusal windows that have ended, until the stop; then the rest.
async fn flush_refusals(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(REFUSAL_FLUSH);
    loop {
        let everything = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tick.tick() => false,
        };
        let records = shared
            .limits
            .refusals
            .due(std::time::Instant::now(), everything);
        if !records.is_empty() {
            let _ = shared.catalog.audit(records).await;
        }
        if everything {
            return;
        }
    }
}

async fn connection(
    stream: Stream,
    peer: Option<Peer>,
    mut slot: slots::Slot,
    limits: slots::Limits,
    timeouts: Timeouts,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let (recv, mut send) = tokio::io::split(stream);
    let mut frames = FramedRead::new(recv, LineCodec::new(MAX_LINE_BYTES));
    let mut wait = timeouts.first;
    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => break,
            // The wait covers a half-written line too: bytes without a newline are no request.
            next = tokio::time::timeout(wait, frames.next()) => match next {
                Ok(Some(Ok(frame))) => frame,
                // Closed, broken or idle: nothing to answer.
                Ok(Some(Err(_))) | Ok(None) | Err(_) => break,
            },
        };
        wait = timeouts.idle;
        let response: Outgoing = match frame {
            Frame::TooLong => Response::err(ErrorBody::new(
                ErrorCode::LineTooLong,
                format!("request line is longer than {MAX_LINE_BYTES} bytes and was skipped"),
            ))
            .into(),
            Frame::Line(line) if line.iter().all(u8::is_ascii_whitespace) => continue,
            Frame::Line(line) => match protocol::parse_request(&line) {
                Ok(Command::Events(events)) => match slot.follow(&limits) {
                    Ok(()) => {
                        // The connection becomes the event stream until either side ends it.
                        stream::follow(
                            &shared,
                            peer,
                            cmd::Scoped::scope(&events),
                            &mut frames,
                            &mut send,
                            &shutdown,
                        )
                        .await;
                        break;
                    }
                    Err(denied) => {
                        Response::err(ErrorBody::new(ErrorCode::Refused, denied.to_string())).into()
                    }
                },
                Ok(command) => match handlers::handle(&shared, peer, command).await {
                    Ok(data) => Outgoing::ok(data),
                    Err(error) => Response::err(error).into(),
                },
                Err(error) => Response::err(error).into(),
            },
        };
        if write_response(&mut send, response, WRITE_TIMEOUT)
            .await
            .is_err()
        {
            break;
        }
    }
}
