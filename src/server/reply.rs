//! Writing one response line with bounded memory: the answer goes to the socket in chunks,
//! with backpressure, and is freed as soon as the client stops taking it.
//!
//! A command's answer arrives already encoded, once, from its reply type (`handlers`): one
//! buffer the size of the answer's text, smaller than the JSON tree it replaced. The envelope
//! around it is written on a blocking thread, which hands `CHUNK`-sized pieces through a
//! channel of one to the connection, which writes each within the write timeout. A client
//! that stops reading therefore holds at most the socket buffer and two chunks beyond the
//! answer itself; when a write times out the connection drops the channel, the writer stops
//! at its next chunk and the answer is freed. An answer the catalog keeps encoded (the
//! listings of `ls`, the pages of `jobs`: [`Data::Shared`]) needs no encoding: the connection
//! writes the envelope and then the kept text itself, a chunk at a time, with no copy and no
//! thread. Nothing here decides what the answer is.

use crate::protocol::{ErrorBody, ErrorCode, PROTOCOL_VERSION, Response};
use serde_json::value::RawValue;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Bytes of encoded text handed to the socket at a time.
const CHUNK: usize = 64 * 1024;
/// Answers this small are encoded in place: no thread hop for `status`.
const SMALL: usize = 16 * 1024;

/// A response as the server writes it: the wire shape of [`Response`], with `data` already
/// encoded. A command's answer is encoded once from its reply type (`handlers`); only the
/// small answers that start as JSON trees (events, errors) are converted.
#[derive(Debug, serde::Serialize)]
pub struct Outgoing {
    ok: bool,
    v: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Data>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody>,
}

/// The encoded `data` of an answer.
#[derive(Debug)]
pub enum Data {
    /// Encoded for this answer alone.
    Owned(Box<RawValue>),
    /// Text the catalog keeps and shares between answers (`catalog::memo`): written as it is.
    Shared(Arc<RawValue>),
}

impl Data {
    fn get(&self) -> &str {
        match self {
            Data::Owned(json) => json.get(),
            Data::Shared(json) => json.get(),
        }
    }
}

impl serde::Serialize for Data {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Data::Owned(json) => json.serialize(serializer),
            Data::Shared(json) => json.serialize(serializer),
        }
    }
}

impl Outgoing {
    /// A successful answer carrying `data`.
    pub fn ok(data: Data) -> Self {
        Self {
            ok: true,
            v: PROTOCOL_VERSION,
            data: Some(data),
            error: None,
        }
    }
}

impl From<Response> for Outgoing {
    fn from(response: Response) -> Self {
        let data = match response.data.as_ref().map(serde_json::value::to_raw_value) {
            None => None,
            Some(Ok(data)) => Some(Data::Owned(data)),
            Some(Err(e)) => {
                return Response::err(ErrorBody::new(
                    ErrorCode::Internal,
                    format!("cannot encode the response: {e}"),
                ))
                .into();
            }
        };
        Self {
            ok: response.ok,
            v: response.v,
            data,
            error: response.error,
        }
    }
}

/// Why a response could not be written; the connection ends either way.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteFailed {
    /// The client took no bytes for the whole write timeout.
    TimedOut,
    /// The socket failed (the client went away).
    Closed,
}

/// Write `response` and a newline to `send`, giving up when the client does not take a
/// chunk within `timeout`.
pub async fn write_response<W: AsyncWrite + Unpin>(
    send: &mut W,
    response: impl Into<Outgoing>,
    timeout: Duration,
) -> Result<(), WriteFailed> {
    let response: Outgoing = response.into();
    if looks_small(&response) {
        let mut text = encode(&response);
        text.push(b'\n');
        return write_chunk(send, &text, timeout).await;
    }
    if let Outgoing {
        ok,
        v,
        data: Some(Data::Shared(json)),
        error: None,
    } = &response
    {
        // The fields in the order and form `Outgoing` serializes them (a test holds the two
        // alike), then the kept text as it is.
        let head = format!("{{\"ok\":{ok},\"v\":{v},\"data\":");
        write_chunk(send, head.as_bytes(), timeout).await?;
        for chunk in json.get().as_bytes().chunks(CHUNK) {
            write_chunk(send, chunk, timeout).await?;
        }
        return write_chunk(send, b"}\n", timeout).await;
    }
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1);
    let encoder = tokio::task::spawn_blocking(move || {
        let mut out = std::io::BufWriter::with_capacity(CHUNK, Chunks(tx));
        let done = serde_json::to_writer(&mut out, &response)
            .map_err(std::io::Error::other)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
        // Free the answer here, off the reactor, whatever happened.
        drop(response);
        done
    });
    let mut outcome = Ok(());
    while let Some(chunk) = rx.recv().await {
        if let Err(failed) = write_chunk(send, &chunk, timeout).await {
            outcome = Err(failed);
            break;
        }
    }
    // Dropping the receiver makes the encoder's next send fail, so it stops.
    drop(rx);
    match encoder.await {
        Ok(Ok(())) => outcome,
        // The encoder stopped because we stopped taking chunks: `outcome` says why.
        Ok(Err(_)) if outcome.is_err() => outcome,
        // Encoding failed half way: the line on the wire is cut, so the connection must end.
        Ok(Err(e)) => {
            tracing::warn!("cannot encode a response: {e}");
            Err(WriteFailed::Closed)
        }
        Err(e) => {
            tracing::warn!("the response encoder failed: {e}");
            Err(WriteFailed::Closed)
        }
    }
}

async fn write_chunk<W: AsyncWrite + Unpin>(
    send: &mut W,
    chunk: &[u8],
    timeout: Duration,
) -> Result<(), WriteFailed> {
    match tokio::time::timeout(timeout, send.write_all(chunk)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(WriteFailed::Closed),
        Err(_) => Err(WriteFailed::TimedOut),
    }
}

fn encode(response: &Outgoing) -> Vec<u8> {
    serde_json::to_vec(response).unwrap_or_else(|e| {
        serde_json::to_vec(&Response::err(ErrorBody::new(
            ErrorCode::Internal,
            format!("cannot encode the response: {e}"),
        )))
        .unwrap_or_default()
    })
}

/// Is the answer small enough to encode in place?
fn looks_small(response: &Outgoing) -> bool {
    response
        .data
        .as_ref()
        .is_none_or(|data| data.get().len() <= SMALL)
}

/// The encoder's writer: each buffered chunk goes to the connection, waiting while it is
/// still writing the one before.
struct Chunks(mpsc::Sender<Vec<u8>>);

impl Write for Chunks {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(buf.to_vec())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn big() -> Response {
        let items: Vec<serde_json::Value> = (0..2000)
            .map(|i| serde_json::json!({"i": i, "text": "x".repeat(1000)}))
            .collect();
        Response::ok(serde_json::Value::Array(items))
    }

    #[tokio::test]
    async fn a_large_answer_arrives_whole_and_parses() {
        let (mut client, mut server) = tokio::io::duplex(4096);
        let want = big();
        let writing = tokio::spawn(async move {
            write_response(&mut server, big(), Duration::from_secs(5)).await
        });
        let mut text = Vec::new();
        let mut buf = [0u8; 8192];
        while !text.ends_with(b"\n") {
            let n = client.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early");
            text.extend_from_slice(&buf[..n]);
        }
        assert_eq!(writing.await.unwrap(), Ok(()));
        let got: Response = serde_json::from_slice(&text).unwrap();
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn a_client_that_never_reads_times_out_and_the_encoder_stops() {
        let (_client, mut server) = tokio::io::duplex(1024);
        let started = std::time::Instant::now();
        let outcome = write_response(&mut server, big(), Duration::from_millis(200)).await;
        assert_eq!(outcome, Err(WriteFailed::TimedOut));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// What the connection reads of `response`, written with `write_response`.
    async fn written(response: Outgoing) -> Vec<u8> {
        let (mut client, mut server) = tokio::io::duplex(4096);
        let writing = tokio::spawn(async move {
            write_response(&mut server, response, Duration::from_secs(5)).await
        });
        let mut text = Vec::new();
        client.read_to_end(&mut text).await.unwrap();
        assert_eq!(writing.await.unwrap(), Ok(()));
        text
    }

    #[tokio::test]
    async fn a_kept_answer_is_written_as_serde_writes_the_same_answer() {
        for size in [10, SMALL + 1, 3 * CHUNK + 17] {
            let items: Vec<String> = (0..size / 10).map(|i| format!("{i:08}")).collect();
            let json: Arc<RawValue> = Arc::from(serde_json::value::to_raw_value(&items).unwrap());
            let shared = written(Outgoing::ok(Data::Shared(Arc::clone(&json)))).await;
            let mut want = serde_json::to_vec(&Outgoing::ok(Data::Owned(
                serde_json::value::to_raw_value(&items).unwrap(),
            )))
            .unwrap();
            want.push(b'\n');
            assert_eq!(shared.len(), want.len(), "{size}");
            assert!(shared == want, "{size}: the lines differ");
            let got: Response = serde_json::from_slice(&shared).unwrap();
            assert_eq!(got.data, Some(serde_json::to_value(&items).unwrap()));
        }
    }

    #[tokio::test]
    async fn a_client_that_never_reads_a_kept_answer_times_out() {
        let (_client, mut server) = tokio::io::duplex(1024);
        let items: Vec<String> = (0..100_000).map(|i| format!("{i:08}")).collect();
        let json: Arc<RawValue> = Arc::from(serde_json::value::to_raw_value(&items).unwrap());
        let outcome = write_response(
            &mut server,
            Outgoing::ok(Data::Shared(json)),
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(outcome, Err(WriteFailed::TimedOut));
    }

    #[tokio::test]
    async fn small_answers_and_errors_are_written_in_place() {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let error = Response::err(ErrorBody::new(ErrorCode::BadArgs, "no"));
        write_response(&mut server, error.clone(), Duration::from_secs(1))
            .await
            .unwrap();
        drop(server);
        let mut text = Vec::new();
        client.read_to_end(&mut text).await.unwrap();
        assert_eq!(text.last(), Some(&b'\n'));
        assert_eq!(serde_json::from_slice::<Response>(&text).unwrap(), error);
    }
}
