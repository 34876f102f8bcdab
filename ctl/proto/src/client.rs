//! A synchronous client of the control socket, used by `ingestctl` and by the end-to-end tests.
//!
//! It owns one connection and speaks the framing of [`crate::protocol`]: one request line out,
//! one response line back, in order (for `events`, further lines follow the first answer: read
//! them with [`Client::next_data`]). It must never invent protocol shapes of its own, and it
//! never waits without a bound: reads and writes time out (default [`DEFAULT_TIMEOUT`]) so a
//! wedged daemon becomes an error, not a hung terminal. After a transport error (timeout, cut
//! line, oversized line) the connection is out of step with the daemon, so the client refuses
//! further requests on it; connect again.

use crate::protocol::{
    Call, Command, ErrorBody, MAX_RESPONSE_BYTES, PROTOCOL_VERSION, Request, Response,
};
use interprocess::local_socket::{GenericFilePath, Stream, prelude::*};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one request may wait for its answer (and a write for buffer space).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Appended to errors that mean the two ends disagree about the protocol.
const SAME_RELEASE: &str = "; are ingestd and this client from the same release?";

/// Exit code for "the daemon refused or the operation failed" (DESIGN §4).
pub const EXIT_FAILED: u8 = 1;
/// Exit code for "the daemon could not be reached or did not answer" (DESIGN §4).
pub const EXIT_UNREACHABLE: u8 = 3;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting failed: no socket file, nobody listening, no permission, bad path.
    #[error(
        "cannot reach ingestd at {}: {source}; {}",
        socket.display(),
        unreachable_hint(source)
    )]
    Unreachable { socket: PathBuf, source: io::Error },
    /// Connected, but no answer came within the timeout.
    #[error(
        "ingestd at {} did not answer within {} s; it may be overloaded or stuck (check its \
         log, e.g. `journalctl -u ingestd`)",
        socket.display(),
        after.as_secs_f64()
    )]
    Timeout { socket: PathBuf, after: Duration },
    /// The daemon hung up before answering (it stopped, restarted or crashed).
    #[error(
        "ingestd at {} closed the connection without answering; was it stopping or restarting?",
        socket.display()
    )]
    Closed { socket: PathBuf },
    /// The daemon answered with an error; `code` says which kind.
    #[error("{}", .0.message)]
    Daemon(ErrorBody),
    /// Reading or writing the socket failed for another reason.
    #[error("talking to ingestd at {}: {about}: {source}", socket.display())]
    Io {
        socket: PathBuf,
        about: &'static str,
        source: io::Error,
    },
    /// The answer is not a response this client understands.
    #[error(
        "ingestd at {} sent an answer this client cannot use: {message}",
        socket.display()
    )]
    Decode { socket: PathBuf, message: String },
}

impl ClientError {
    /// The `ingestctl` exit code for this error: [`EXIT_UNREACHABLE`] when no answer could be had
    /// from the daemon, [`EXIT_FAILED`] for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Unreachable { .. }
            | ClientError::Timeout { .. }
            | ClientError::Closed { .. } => EXIT_UNREACHABLE,
            ClientError::Daemon(_) | ClientError::Io { .. } | ClientError::Decode { .. } => {
                EXIT_FAILED
            }
        }
    }

    /// The daemon's error, if this is one.
    pub fn daemon_error(&self) -> Option<&ErrorBody> {
        match self {
            ClientError::Daemon(body) => Some(body),
            _ => None,
        }
    }
}

/// What a person can do about a failed connect, by its cause.
fn unreachable_hint(error: &io::Error) -> &'static str {
    match error.kind() {
        io::ErrorKind::NotFound => {
            "is ingestd running? If it uses another socket, pass --socket PATH or set \
             INGESTD_SOCKET"
        }
        io::ErrorKind::ConnectionRefused => {
            "nothing listens there: ingestd is not running, or this path is not its socket \
             (start it, or pass --socket PATH or set INGESTD_SOCKET)"
        }
        io::ErrorKind::PermissionDenied => {
            "you may not use this socket: ask to be added to its group (server.socket_group, \
             server.socket_mode in ingestd's config)"
        }
        _ => "check that ingestd is running and that --socket / INGESTD_SOCKET names its socket",
    }
}

/// One connection to the daemon. Requests on it are answered in order.
#[derive(Debug)]
pub struct Client {
    socket: PathBuf,
    stream: BufReader<Stream>,
    timeout: Option<Duration>,
    /// Set after an error that leaves a response half read or still to come: the next line on
    /// this connection would not belong to the next request.
    out_of_step: bool,
    /// When the connection last carried an answer (or was made): the daemon closes
    /// connections that wait too long for a request (`server.first_request_timeout_secs`,
    /// `server.idle_timeout_secs`), so a request after a pause goes on a new one.
    used: std::time::Instant,
}

/// A connection unused for this long is replaced before the next request: the daemon may
/// be closing it (its shortest wait for a request is 1 s), and a request that crosses the
/// close would be lost as "connection closed".
const REUSE_WITHIN: Duration = Duration::from_millis(500);

impl Client {
    /// Connect to the daemon's socket, with [`DEFAULT_TIMEOUT`] for every later read and write.
    ///
    /// The connect itself does not time out: on a Unix socket it completes at once unless the
    /// daemon's accept backlog is full.
    pub fn connect(socket: &Path) -> Result<Client, ClientError> {
        let unreachable = |source| ClientError::Unreachable {
            socket: socket.to_path_buf(),
            source,
        };
        let name = socket
            .to_fs_name::<GenericFilePath>()
            .map_err(unreachable)?;
        let stream = Stream::connect(name).map_err(unreachable)?;
        let mut client = Client {
            socket: socket.to_path_buf(),
            // The standard 8 KiB. A 64 KiB buffer took each of the daemon's chunks of a large
            // answer in one read, but was written whole (zeroed) before the first read: 16
            // fresh pages for every command (`status`: 192 page faults, now 173), which cost
            // 0.1-0.15 ms on some runs and nothing measurable on others. The extra reads cost
            // a listing of 10,000 sources nothing measurable in `ls`, about 3% in `--json ls`.
            stream: BufReader::new(stream),
            timeout: None,
            out_of_step: false,
            used: std::time::Instant::now(),
        };
        client.set_timeout(Some(DEFAULT_TIMEOUT))?;
        Ok(client)
    }

    /// The socket this client is connected to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Change how long a read or write may wait; `None` waits forever (not for interactive use).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), ClientError> {
        let stream = self.stream.get_ref();
        stream
            .set_recv_timeout(timeout)
            .and_then(|()| stream.set_send_timeout(timeout))
            .map_err(|source| self.io("setting the socket timeout", source))?;
        self.timeout = timeout;
        Ok(())
    }

    /// Send `command` (a [`Command`] or any request of [`crate::protocol::cmd`]) and return the
    /// `data` of the answer as it came (`null` if the daemon sent none), or the daemon's error
    /// as [`ClientError::Daemon`]. For answers passed on untouched (`--json`) and for callers
    /// that hold requests of several kinds; everyone else uses [`Client::call`].
    ///
    /// After a pause (a question on the terminal, a long copy) the request goes on a fresh
    /// connection, since the daemon closes connections that wait long for a request.
    pub fn request<C: Into<Command> + Clone>(&mut self, command: &C) -> Result<Value, ClientError> {
        let line = self.exchange(command.clone().into())?;
        let response = self.parse_response(&line)?;
        self.data_of(response)
    }

    /// Send `request` and decode the `data` of the answer as its reply type: `cmd::Ls`
    /// gives `Vec<SourceSummary>`. The answer is decoded straight into that type, never
    /// through a JSON tree: for a listing of thousands of sources that is most of the
    /// client's time.
    pub fn call<R: Call>(&mut self, request: &R) -> Result<R::Reply, ClientError> {
        let mut line = Vec::new();
        self.call_view(request, &mut line)
    }

    /// [`Client::call`] decoding the answer as `V`, a view of `R::Reply` that may borrow from
    /// the answer's text, which is kept in `line`: strings without escapes are then not
    /// copied. `ingestctl ls` reads a listing of thousands of sources this way, as the few
    /// fields its table shows, with no allocation per string.
    pub fn call_view<'a, R: Call, V: Deserialize<'a>>(
        &mut self,
        request: &R,
        line: &'a mut Vec<u8>,
    ) -> Result<V, ClientError> {
        /// A response whose `data` is the reply type.
        #[derive(Deserialize)]
        struct Typed<T> {
            ok: bool,
            v: u32,
            #[serde(default = "Option::default")]
            data: Option<T>,
        }
        let command: Command = request.clone().into();
        *line = self.exchange(command.clone())?;
        let line: &'a [u8] = line;
        // Checked as UTF-8 once, whole, rather than string by string as a decode from bytes
        // does: that check was a tenth of what a large listing cost to read.
        if let Ok(text) = std::str::from_utf8(line)
            && let Ok(typed) = serde_json::from_str::<Typed<V>>(text)
            && typed.ok
            && typed.v == PROTOCOL_VERSION
            && let Some(data) = typed.data
        {
            return Ok(data);
        }
        // Anything else (an error, another version, no data, a shape this client does not
        // know) is read the general way, which says which it was.
        let response = self.parse_response(line)?;
        let data = self.data_of(response)?;
        V::deserialize(data).map_err(|e| {
            self.decode(format!(
                "the data of {:?} has an unexpected shape ({e}){SAME_RELEASE}",
                command.name()
            ))
        })
    }

    /// Send `request` and return the `data` of the answer as the daemon wrote it (`null` if
    /// it sent none), checked as JSON but not decoded: for `--json`, which prints it. The text
    /// is cut out of the answer's own buffer rather than copied: a listing of thousands of
    /// sources is several hundred kilobytes, and each copy is as many fresh pages.
    pub fn call_text<R: Call>(&mut self, request: &R) -> Result<String, ClientError> {
        #[derive(Deserialize)]
        struct Envelope<'a> {
            ok: bool,
            v: u32,
            #[serde(borrow, default)]
            data: Option<&'a RawValue>,
        }
        let line = self.exchange(request.clone().into())?;
        let line = match String::from_utf8(line) {
            Ok(text) => text,
            Err(e) => return self.data_text(e.as_bytes()),
        };
        // Where `data` lies in the line, as a range of it (`None`: the daemon sent none).
        let data = match serde_json::from_str::<Envelope<'_>>(&line) {
            Ok(envelope) if envelope.ok && envelope.v == PROTOCOL_VERSION => {
                Some(envelope.data.map(|data| {
                    let start = data.get().as_ptr() as usize - line.as_ptr() as usize;
                    start..start + data.get().len()
                }))
            }
            _ => None,
        };
        match data {
            Some(Some(range)) => {
                let mut text = line;
                text.truncate(range.end);
                text.drain(..range.start);
                Ok(text)
            }
            Some(None) => Ok("null".to_string()),
            None => self.data_text(line.as_bytes()),
        }
    }

    /// The `data` of `line` as JSON text, read the general way: anything but a successful
    /// answer of this protocol version (an error, another version, text that is not JSON)
    /// gives the error that says which it was.
    fn data_text(&self, line: &[u8]) -> Result<String, ClientError> {
        let response = self.parse_response(line)?;
        Ok(self.data_of(response)?.to_string())
    }

    /// Send `command` and read the answer's line (without its newline). After a pause the
    /// request goes on a fresh connection (see [`Client::request`]).
    fn exchange(&mut self, command: Command) -> Result<Vec<u8>, ClientError> {
        let mut line =
            serde_json::to_vec(&Request::new(command)).expect("a request always serializes");
        line.push(b'\n');
        if !self.out_of_step && self.used.elapsed() >= REUSE_WITHIN {
            let timeout = self.timeout;
            *self = Client::connect(&self.socket.clone())?;
            self.set_timeout(timeout)?;
        }
        self.write_raw(&line)?;
        let answer = self.read_line()?;
        self.used = std::time::Instant::now();
        Ok(answer)
    }

    /// Write `line` and a newline as they are, and read one response, whatever it says. For
    /// protocol tests: garbage, wrong versions, oversized lines. A `line` holding newlines is
    /// several requests; read the further answers with [`Client::read_response`].
    pub fn send_raw_line(&mut self, line: &[u8]) -> Result<Response, ClientError> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
        self.write_raw(&bytes)?;
        self.read_response()
    }

    /// Write `bytes` to the socket exactly as given (no newline is added).
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.check_in_step()?;
        let result = self
            .stream
            .get_mut()
            .write_all(bytes)
            .and_then(|()| self.stream.get_mut().flush());
        result.map_err(|source| {
            // Part of a line may have gone out: what the daemon answers next is anyone's guess.
            self.out_of_step = true;
            match source.kind() {
                io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted => self.closed(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => self.timed_out(),
                _ => self.io("sending the request", source),
            }
        })
    }

    /// Read one response line (at most [`MAX_RESPONSE_BYTES`] plus its newline) and parse it.
    pub fn read_response(&mut self) -> Result<Response, ClientError> {
        let line = self.read_line()?;
        self.parse_response(&line)
    }

    /// Parse one response line.
    fn parse_response(&self, line: &[u8]) -> Result<Response, ClientError> {
        serde_json::from_slice(line).map_err(|e| {
            let shown = String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
            self.decode(format!("{e} in {shown:?}"))
        })
    }

    /// Read one response line (at most [`MAX_RESPONSE_BYTES`] plus its newline), without its
    /// newline.
    fn read_line(&mut self) -> Result<Vec<u8>, ClientError> {
        self.check_in_step()?;
        let mut line = Vec::new();
        let limit = MAX_RESPONSE_BYTES as u64 + 1;
        let read = (&mut self.stream).take(limit).read_until(b'\n', &mut line);
        let result = match read {
            Err(source) => Err(match source.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => self.timed_out(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => self.closed(),
                _ => self.io("reading the answer", source),
            }),
            Ok(_) if line.last() == Some(&b'\n') => Ok(()),
            Ok(0) => Err(self.closed()),
            Ok(n) if n as u64 == limit => Err(self.decode(format!(
                "an answer line is longer than the protocol's limit of {MAX_RESPONSE_BYTES} bytes; \
                 ask for less (e.g. one group)"
            ))),
            Ok(_) => Err(self.closed()),
        };
        if let Err(error) = result {
            self.out_of_step = true;
            return Err(error);
        }
        line.pop();
        Ok(line)
    }

    /// Read the next line of a streamed answer (the event lines of `events`, after the first
    /// answer that [`Client::request`] returned) and return its `data`, or the daemon's error
    /// as [`ClientError::Daemon`] (e.g. `lagged`). `Ok(None)`: the daemon closed the connection
    /// between two lines, which ends a stream.
    ///
    /// Waits at most the timeout of [`Client::set_timeout`]; a follower that may wait for
    /// events a long time sets `None`.
    pub fn next_data(&mut self) -> Result<Option<Value>, ClientError> {
        self.check_in_step()?;
        let waited = loop {
            match self.stream.fill_buf() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other.map(|buffered| buffered.is_empty()),
            }
        };
        match waited {
            Ok(true) => return Ok(None),
            Ok(false) => {}
            Err(source) => {
                self.out_of_step = true;
                return Err(match source.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => self.timed_out(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                        self.closed()
                    }
                    _ => self.io("reading the answer", source),
                });
            }
        }
        let response = self.read_response()?;
        self.data_of(response).map(Some)
    }

    /// The `data` of a response (`null` if none), or the daemon's error.
    fn data_of(&self, response: Response) -> Result<Value, ClientError> {
        if response.v != PROTOCOL_VERSION {
            return Err(self.decode(format!(
                "it speaks protocol version {}, this client version {PROTOCOL_VERSION}{SAME_RELEASE}",
                response.v
            )));
        }
        match (response.ok, response.data, response.error) {
            (true, data, _) => Ok(data.unwrap_or(Value::Null)),
            (false, _, Some(error)) => Err(ClientError::Daemon(error)),
            (false, _, None) => Err(self.decode("\"ok\":false without an \"error\" object".into())),
        }
    }

    fn check_in_step(&self) -> Result<(), ClientError> {
        if self.out_of_step {
            return Err(self.io(
                "reusing the connection",
                io::Error::new(
                    io::ErrorKind::NotConnected,
                    "an earlier error left it out of step with the daemon; connect again",
                ),
            ));
        }
        Ok(())
    }

    fn timed_out(&self) -> ClientError {
        ClientError::Timeout {
            socket: self.socket.clone(),
            after: self.timeout.unwrap_or_default(),
        }
    }

    fn closed(&self) -> ClientError {
        ClientError::Closed {
            socket: self.socket.clone(),
        }
    }

    fn io(&self, about: &'static str, source: io::Error) -> ClientError {
        ClientError::Io {
            socket: self.socket.clone(),
            about,
            source,
        }
    }

    fn decode(&self, message: String) -> ClientError {
        ClientError::Decode {
            socket: self.socket.clone(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ErrorCode, SourceSummary, cmd};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::thread::JoinHandle;

    /// A one-connection fake daemon: `script` gets the accepted stream (reader and writer).
    struct Fake {
        _dir: tempfile::TempDir,
        socket: PathBuf,
        thread: JoinHandle<()>,
    }

    fn fake(script: impl FnOnce(&mut BufReader<UnixStream>, UnixStream) + Send + 'static) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("d.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let thread = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let writer = stream.try_clone().unwrap();
            script(&mut BufReader::new(stream), writer);
        });
        Fake {
            _dir: dir,
            socket,
            thread,
        }
    }

    fn read_line(reader: &mut BufReader<UnixStream>) -> String {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        line
    }

    /// Answers each request line with the next canned line, recording what it received.
    fn canned(answers: &'static [&'static str]) -> (Fake, std::sync::mpsc::Receiver<String>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let fake = fake(move |reader, mut writer| {
            for answer in answers {
                tx.send(read_line(reader)).unwrap();
                writer.write_all(answer.as_bytes()).unwrap();
                writer.write_all(b"\n").unwrap();
            }
        });
        (fake, rx)
    }

    #[test]
    fn request_sends_one_versioned_line_and_returns_data() {
        let (fake, sent) = canned(&[
            r#"{"ok":true,"v":1,"data":{"answer":42}}"#,
            r#"{"ok":true,"v":1,"data":[]}"#,
        ]);
        let mut client = Client::connect(&fake.socket).unwrap();
        let data = client.request(&cmd::Status {}).unwrap();
        assert_eq!(data, serde_json::json!({"answer": 42}));
        assert_eq!(sent.recv().unwrap(), "{\"v\":1,\"cmd\":\"status\"}\n");

        let rows: Vec<SourceSummary> = client
            .call(&cmd::Ls {
                group: Some("sales".into()),
                all: false,
            })
            .unwrap();
        assert!(rows.is_empty());
        assert_eq!(
            sent.recv().unwrap(),
            "{\"v\":1,\"cmd\":\"ls\",\"group\":\"sales\"}\n"
        );
        fake.thread.join().unwrap();
    }

    #[test]
    fn daemon_errors_come_back_typed_with_exit_code_1() {
        let (fake, _sent) = canned(&[
            r#"{"ok":false,"v":1,"error":{"code":"not_found","message":"no source 'x.csv'"}}"#,
        ]);
        let mut client = Client::connect(&fake.socket).unwrap();
        let err = client
            .request(&cmd::Show {
                source: "x.csv".into(),
                group: None,
                preview: None,
                prefs: None,
            })
            .unwrap_err();
        assert_eq!(err.daemon_error().unwrap().code, ErrorCode::NotFound);
        assert_eq!(err.to_string(), "no source 'x.csv'");
        assert_eq!(err.exit_code(), EXIT_FAILED);
        fake.thread.join().unwrap();
    }

    #[test]
    fn send_raw_line_returns_the_response_whatever_it_says() {
        let (fake, sent) =
            canned(&[r#"{"ok":false,"v":1,"error":{"code":"bad_json","message":"not JSON"}}"#]);
        let mut client = Client::connect(&fake.socket).unwrap();
        let response = client.send_raw_line(b"garbage").unwrap();
        assert!(!response.ok);
        assert_eq!(response.error.unwrap().code, ErrorCode::BadJson);
        assert_eq!(sent.recv().unwrap(), "garbage\n");
        fake.thread.join().unwrap();
    }

    #[test]
    fn missing_socket_is_unreachable_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("nobody.sock");
        let err = Client::connect(&socket).unwrap_err();
        assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
        assert_eq!(err.exit_code(), EXIT_UNREACHABLE);
        let message = err.to_string();
        assert!(message.contains(&*socket.to_string_lossy()), "{message}");
        assert!(message.contains("--socket"), "{message}");
    }

    #[test]
    fn stale_socket_file_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("stale.sock");
        drop(UnixListener::bind(&socket).unwrap());
        let err = Client::connect(&socket).unwrap_err();
        assert_eq!(err.exit_code(), EXIT_UNREACHABLE, "{err}");
        assert!(err.to_string().contains("nothing listens there"), "{err}");
    }

    #[test]
    fn a_silent_daemon_times_out_and_the_connection_is_retired() {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let fake = fake(move |reader, _writer| {
            read_line(reader);
            let _ = wait.recv(); // never answer; hold the connection open
        });
        let mut client = Client::connect(&fake.socket).unwrap();
        client
            .set_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let err = client.request(&cmd::Status {}).unwrap_err();
        assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
        assert_eq!(err.exit_code(), EXIT_UNREACHABLE);
        let again = client.request(&cmd::Status {}).unwrap_err();
        assert!(again.to_string().contains("connect again"), "{again}");
        release.send(()).unwrap();
        fake.thread.join().unwrap();
    }

    #[test]
    fn hang_up_before_answering_is_closed() {
        let fake = fake(|reader, _writer| {
            read_line(reader);
        });
        let mut client = Client::connect(&fake.socket).unwrap();
        let err = client.request(&cmd::Groups {}).unwrap_err();
        assert!(matches!(err, ClientError::Closed { .. }), "{err:?}");
        assert_eq!(err.exit_code(), EXIT_UNREACHABLE);
        fake.thread.join().unwrap();
    }

    #[test]
    fn malformed_answers_are_decode_errors() {
        let cases: &[(&str, &str)] = &[
            ("not json", "not json"),
            (r#"{"ok":false,"v":1}"#, "without an \"error\""),
            (r#"{"ok":true,"v":2,"data":null}"#, "protocol version 2"),
        ];
        for (answer, needle) in cases {
            let answer = answer.to_string();
            let fake = fake(move |reader, mut writer| {
                read_line(reader);
                writeln!(writer, "{answer}").unwrap();
            });
            let mut client = Client::connect(&fake.socket).unwrap();
            let err = client.request(&cmd::Status {}).unwrap_err();
            assert!(matches!(err, ClientError::Decode { .. }), "{err:?}");
            assert!(err.to_string().contains(needle), "{err}");
            assert_eq!(err.exit_code(), EXIT_FAILED);
            fake.thread.join().unwrap();
        }
    }

    #[test]
    fn data_of_the_wrong_shape_is_a_decode_error_naming_the_command() {
        let (fake, _sent) = canned(&[r#"{"ok":true,"v":1,"data":{"not":"a list"}}"#]);
        let mut client = Client::connect(&fake.socket).unwrap();
        let err = client
            .call(&cmd::Ls {
                group: None,
                all: false,
            })
            .unwrap_err();
        assert!(err.to_string().contains("\"ls\""), "{err}");
        fake.thread.join().unwrap();
    }

    #[test]
    fn a_view_borrows_from_the_answer_and_the_text_is_passed_on_as_sent() {
        let (fake, _sent) = canned(&[
            r#"{"v":1,"data":[{"name":"a.csv","x":[1]},{"name":"tab\tb.csv"}],"ok":true}"#,
            r#"{"ok":true,"v":1,"data":[ {"name" : "a.csv"} ]}"#,
            r#"{"v":1,"data":[1],"ok":true}"#,
            r#"{"ok":false,"v":1,"error":{"code":"not_found","message":"no group 'x'"}}"#,
            r#"{"ok":true,"v":2,"data":[]}"#,
        ]);
        let ls = cmd::Ls {
            group: None,
            all: false,
        };
        let mut client = Client::connect(&fake.socket).unwrap();
        #[derive(Deserialize)]
        struct Name<'a> {
            #[serde(borrow)]
            name: std::borrow::Cow<'a, str>,
        }
        let mut line = Vec::new();
        let names: Vec<Name<'_>> = client.call_view(&ls, &mut line).unwrap();
        assert!(matches!(names[0].name, std::borrow::Cow::Borrowed("a.csv")));
        assert_eq!(names[1].name, "tab\tb.csv", "an escaped string is decoded");
        let text = client.call_text(&ls).unwrap();
        assert_eq!(text, r#"[ {"name" : "a.csv"} ]"#, "the daemon's own text");
        let text = client.call_text(&ls).unwrap();
        assert_eq!(text, "[1]", "cut from inside the line");
        let err = client.call_text(&ls).unwrap_err();
        assert_eq!(err.daemon_error().unwrap().code, ErrorCode::NotFound);
        let err = client.call_text(&ls).unwrap_err();
        assert!(err.to_string().contains("protocol version 2"), "{err}");
        fake.thread.join().unwrap();
    }

    #[test]
    fn a_stream_yields_each_line_then_none_when_the_daemon_closes() {
        let fake = fake(|reader, mut writer| {
            read_line(reader);
            writeln!(writer, r#"{{"ok":true,"v":1,"data":{{"group":"g"}}}}"#).unwrap();
            writeln!(writer, r#"{{"ok":true,"v":1,"data":{{"n":1}}}}"#).unwrap();
            writeln!(writer, r#"{{"ok":true,"v":1,"data":{{"n":2}}}}"#).unwrap();
        });
        let mut client = Client::connect(&fake.socket).unwrap();
        let first = client
            .request(&cmd::Events {
                group: Some("g".into()),
                all: false,
            })
            .unwrap();
        assert_eq!(first, serde_json::json!({"group": "g"}));
        for n in [1, 2] {
            let data = client.next_data().unwrap();
            assert_eq!(data, Some(serde_json::json!({ "n": n })));
        }
        fake.thread.join().unwrap();
        assert_eq!(client.next_data().unwrap(), None);
    }

    #[test]
    fn a_stream_ends_with_the_daemons_error() {
        let fake = fake(|reader, mut writer| {
            read_line(reader);
            writeln!(writer, r#"{{"ok":true,"v":1,"data":{{"group":null}}}}"#).unwrap();
            writeln!(
                writer,
                r#"{{"ok":false,"v":1,"error":{{"code":"lagged","message":"too slow"}}}}"#
            )
            .unwrap();
            writer.write_all(b"{\"ok\":true,").unwrap();
        });
        let mut client = Client::connect(&fake.socket).unwrap();
        client
            .request(&cmd::Events {
                group: None,
                all: true,
            })
            .unwrap();
        let err = client.next_data().unwrap_err();
        assert_eq!(err.daemon_error().map(|e| e.code), Some(ErrorCode::Lagged));
        fake.thread.join().unwrap();
        // A line cut by the hang-up is not a clean end.
        let cut = client.next_data().unwrap_err();
        assert!(matches!(cut, ClientError::Closed { .. }), "{cut:?}");
    }

    #[test]
    fn an_oversized_answer_is_refused_without_reading_it_all() {
        let fake = fake(|reader, mut writer| {
            read_line(reader);
            // The client stops reading at the limit and hangs up, so this write may fail.
            let _ = writer.write_all(&vec![b'x'; MAX_RESPONSE_BYTES + 10]);
        });
        let mut client = Client::connect(&fake.socket).unwrap();
        let err = client.request(&cmd::Status {}).unwrap_err();
        assert!(err.to_string().contains("longer than"), "{err}");
        drop(client);
        fake.thread.join().unwrap();
    }
}
