//! The control socket: accept connections, frame requests, answer each with one line.
//!
//! Every connection is its own task with a cap on how many run at once; a malformed or
//! oversized line gets a structured error and the connection goes on; a client that stops
//! reading or sending is timed out, never allowed to hold the daemon.

mod auth;
mod codec;
mod handlers;
mod jobs;
mod manage;
mod read;
mod stream;

pub use auth::Peer;
pub use handlers::Shared;

use crate::protocol::{self, Command, ErrorBody, ErrorCode, MAX_LINE_BYTES, Response};
use codec::{Frame, LineCodec};
use futures_util::StreamExt;
use interprocess::local_socket::tokio::{Listener, Stream};
use interprocess::local_socket::traits::StreamCommon as _;
use interprocess::local_socket::traits::tokio::Listener as _;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use interprocess::os::unix::local_socket::ListenerOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 512;
/// A connection with no request for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// A client that does not take its response within this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

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
        std::fs::create_dir_all(parent).map_err(bind_err)?;
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
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = tokio::task::JoinSet::new();
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
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let shared = Arc::clone(&shared);
        let stop = shutdown.child_token();
        connections.spawn(async move {
            let peer = stream.peer_creds().ok().and_then(|c| {
                Some(Peer {
                    uid: c.euid()?,
                    gid: c.egid()?,
                })
            });
            connection(stream, peer, shared, stop)
                .instrument(tracing::debug_span!(
                    "connection",
                    uid = peer.map(|p| p.uid)
                ))
                .await;
            drop(permit);
        });
    }
    connections.shutdown().await;
}

async fn connection(
    stream: Stream,
    peer: Option<Peer>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let (recv, mut send) = tokio::io::split(stream);
    let mut frames = FramedRead::new(recv, LineCodec::new(MAX_LINE_BYTES));
    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = tokio::time::timeout(IDLE_TIMEOUT, frames.next()) => match next {
                Ok(Some(Ok(frame))) => frame,
                // Closed, broken or idle: nothing to answer.
                Ok(Some(Err(_))) | Ok(None) | Err(_) => break,
            },
        };
        let response = match frame {
            Frame::TooLong => Response::err(ErrorBody::new(
                ErrorCode::LineTooLong,
                format!("request line is longer than {MAX_LINE_BYTES} bytes and was skipped"),
            )),
            Frame::Line(line) if line.iter().all(u8::is_ascii_whitespace) => continue,
            Frame::Line(line) => match protocol::parse_request(&line) {
                Ok(Command::Events { group, all }) => {
                    // The connection becomes the event stream until either side ends it.
                    stream::follow(&shared, peer, group, all, &mut frames, &mut send, &shutdown)
                        .await;
                    break;
                }
                Ok(command) => match handlers::handle(&shared, peer, command).await {
                    Ok(data) => Response::ok(data),
                    Err(error) => Response::err(error),
                },
                Err(error) => Response::err(error),
            },
        };
        if write_response(&mut send, &response).await.is_err() {
            break;
        }
    }
}

/// Write one response line, giving up on a client that does not read it in time.
async fn write_response<W: tokio::io::AsyncWrite + Unpin>(
    send: &mut W,
    response: &Response,
) -> Result<(), ()> {
    let mut text = match serde_json::to_vec(response) {
        Ok(text) => text,
        Err(e) => serde_json::to_vec(&Response::err(ErrorBody::new(
            ErrorCode::Internal,
            format!("cannot encode the response: {e}"),
        )))
        .unwrap_or_default(),
    };
    text.push(b'\n');
    match tokio::time::timeout(WRITE_TIMEOUT, send.write_all(&text)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}
