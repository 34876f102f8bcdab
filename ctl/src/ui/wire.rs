//! One connection of the UI to the control socket that reads each answer's line straight
//! into the [`Reply`] its request expects (see `reply`). The protocol's client hands back a
//! `serde_json::Value` tree, which for the `ls` of 10,000 sources took about 30 MB; this
//! connection keeps only the line and the typed result.
//!
//! The request line is the protocol's own `Request`, the limits and the error messages are
//! the protocol client's (`ClientError`). It sends what it is given and never retries; the
//! workers in `net` decide that.

use super::proto::{ClientError, Command, MAX_RESPONSE_BYTES, Request};
use super::reply::{self, Failure, Reply};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A connection unused for this long is replaced before the next request, as the protocol's
/// client does: the daemon closes connections that wait long for a request (1 s at the
/// least), and a request that crossed the close would be lost.
const REUSE_WITHIN: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub struct Wire {
    socket: PathBuf,
    stream: BufReader<UnixStream>,
    timeout: Duration,
    used: Instant,
}

/// How a call went wrong.
#[derive(Debug)]
pub enum CallError {
    /// The daemon answered, with an error or in a shape this client cannot read.
    Answered(Failure),
    /// No answer: the connection failed; it must not be used again.
    Transport(String),
}

impl Wire {
    pub fn connect(socket: &Path, timeout: Duration) -> Result<Wire, String> {
        let stream = UnixStream::connect(socket).map_err(|source| {
            ClientError::Unreachable {
                socket: socket.to_path_buf(),
                source,
            }
            .to_string()
        })?;
        let set = stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(timeout)));
        set.map_err(|e| format!("setting the socket timeout: {e}"))?;
        Ok(Wire {
            socket: socket.to_path_buf(),
            stream: BufReader::new(stream),
            timeout,
            used: Instant::now(),
        })
    }

    /// Send `command`, read its answer as the [`Reply`] it calls for.
    pub fn call(&mut self, command: &Command) -> Result<Reply, CallError> {
        if self.used.elapsed() >= REUSE_WITHIN {
            *self = Wire::connect(&self.socket, self.timeout).map_err(CallError::Transport)?;
        }
        let mut line = serde_json::to_vec(&Request::new(command.clone()))
            .expect("a request always serializes");
        line.push(b'\n');
        let sent = self
            .stream
            .get_mut()
            .write_all(&line)
            .and_then(|()| self.stream.get_mut().flush());
        sent.map_err(|e| CallError::Transport(self.failed(e, "sending the request")))?;
        let answer = self.read_line()?;
        self.used = Instant::now();
        reply::decode(command, &answer).map_err(CallError::Answered)
    }

    fn read_line(&mut self) -> Result<Vec<u8>, CallError> {
        let mut line = Vec::new();
        let limit = MAX_RESPONSE_BYTES as u64 + 1;
        let read = (&mut self.stream).take(limit).read_until(b'\n', &mut line);
        match read {
            Err(e) => Err(CallError::Transport(self.failed(e, "reading the answer"))),
            Ok(_) if line.last() == Some(&b'\n') => {
                line.pop();
                Ok(line)
            }
            Ok(n) if n as u64 == limit => Err(CallError::Transport(format!(
                "an answer line is longer than the protocol's limit of {MAX_RESPONSE_BYTES} bytes"
            ))),
            Ok(_) => Err(CallError::Transport(
                ClientError::Closed {
                    socket: self.socket.clone(),
                }
                .to_string(),
            )),
        }
    }

    /// The message of a transport error, in the protocol client's words.
    fn failed(&self, error: io::Error, about: &'static str) -> String {
        let socket = self.socket.clone();
        match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout {
                socket,
                after: self.timeout,
            },
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted => ClientError::Closed { socket },
            _ => ClientError::Io {
                socket,
                about,
                source: error,
            },
        }
        .to_string()
    }
}
