//! The `events` stream: after one line saying what is followed, one line per event until the
//! client closes the connection or the daemon stops.
//!
//! A follower that falls behind the broadcast buffer, or does not take a line within the write
//! timeout, is told (when it can still be told) and dropped: a stalled reader must not make
//! the daemon hold events for it.

use super::auth::Peer;
use super::codec::{Frame, LineCodec};
use super::context::{Shared, in_scope, to_value};
use super::{WRITE_TIMEOUT, write_response};
use crate::protocol::cmd::{GroupAndAll, Scope};
use crate::protocol::{ErrorBody, ErrorCode, Following, Response};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

pub async fn follow<R, W>(
    shared: &Shared,
    peer: Option<Peer>,
    scope: Result<Scope, GroupAndAll>,
    frames: &mut FramedRead<R, LineCodec>,
    send: &mut W,
    shutdown: &CancellationToken,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // Subscribe before answering, so nothing that happens after the answer is missed.
    let mut events = shared.events.subscribe();
    let scoped = match scope {
        Ok(scope) => in_scope(shared, peer, scope).await,
        Err(error) => Err(error.into()),
    };
    let group = match scoped {
        Ok(group) => group,
        Err(error) => {
            let _ = write_response(send, Response::err(error), WRITE_TIMEOUT).await;
            return;
        }
    };
    let first = match to_value(&Following {
        group: group.clone(),
    }) {
        Ok(value) => Response::ok(value),
        Err(error) => Response::err(error),
    };
    if write_response(send, first, WRITE_TIMEOUT).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            // Anything the client sends now is ignored; its closing the connection ends this.
            read = frames.next() => match read {
                Some(Ok(Frame::Line(_) | Frame::TooLong)) => {}
                Some(Err(_)) | None => return,
            },
            received = events.recv() => match received {
                Ok(event) => {
                    if group.as_ref().is_some_and(|g| event.group.as_ref() != Some(g)) {
                        continue;
                    }
                    let line = match to_value(&event) {
                        Ok(value) => Response::ok(value),
                        Err(error) => Response::err(error),
                    };
                    if write_response(send, line, WRITE_TIMEOUT).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    let error = ErrorBody::new(
                        ErrorCode::Lagged,
                        format!(
                            "this follower fell {missed} events behind and was dropped; \
                             reconnect to follow again"
                        ),
                    );
                    let _ = write_response(send, Response::err(error), WRITE_TIMEOUT).await;
                    return;
                }
                Err(RecvError::Closed) => return,
            },
        }
    }
}
