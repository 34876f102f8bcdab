//! One processing job, start to end, on its own thread: stream the version's rows, render each
//! to text with the group's preferences, embed the texts the source does not have yet in
//! batches (the others reuse their vectors, see [`super::reuse`]), and write every row as a
//! new generation in chunks. Returns how the job ended; the caller records it (the swap).
//!
//! Memory stays bounded by one window of texts and one chunk of vectors, plus the reuse table,
//! whatever the file's size. A window is `batch_size` texts times the provider's requests in
//! flight. Between windows the runner checks its stop flag, so a cancel takes effect within
//! one window. Errors are classified once, here: transient ones with tries left become a
//! retry after a backoff, everything else fails the job with its reason. A try that stops
//! early still writes every row it embedded, so the next try reuses them.

use super::reuse::Reuse;
use super::{Stop, StopFlag, rows};
use crate::catalog::jobs::{NewRow, Origin, RowVector, Written, text_hash};
use crate::catalog::{Begun, Catalog, Claimed, Ending};
use crate::config::Config;
use crate::embed::backoff::Backoff;
use crate::embed::configured::Providers;
use crate::embed::render::Renderer;
use crate::embed::{EmbedError, Provider};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most rows written to the catalog in one transaction (fewer once `FLUSH_EVERY` passes).
const CHUNK_ROWS: usize = 2048;
/// Longest embedded rows wait in the writer before they are written, so progress stays
/// current even while the provider is slow to answer.
const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// Chunks of written rows: (rows, rows of the file gone through so far).
type Chunk = (Vec<NewRow>, u64);

/// Writes a generation's rows on a thread of its own, behind the embedding, so the runner
/// embeds the next window while the catalog stores the last ones. The runner hands over each
/// window's rows as soon as they are embedded; the thread gathers them into one transaction
/// of up to `CHUNK_ROWS` rows, and writes what it has once `FLUSH_EVERY` has passed since the
/// oldest of them came, whether or not more come: a provider call that takes minutes does not
/// keep the rows before it (and the job's progress) out of the catalog. At most one window
/// waits in the channel and one chunk in the thread, so memory stays bounded and a slow disk
/// slows the embedding down.
struct Writer {
    chunk: Vec<NewRow>,
    /// Rows of the file gone through (embedded or skipped as empty).
    done: u64,
    sender: Option<std::sync::mpsc::SyncSender<Chunk>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Writer {
    fn start(
        catalog: &Catalog,
        job: i64,
        try_id: Option<i64>,
        generation: i64,
    ) -> Result<Self, String> {
        let (sender, windows) = std::sync::mpsc::sync_channel::<Chunk>(1);
        let catalog = catalog.clone();
        let write = move |rows: Vec<NewRow>, done: u64| -> Result<(), String> {
            let written = catalog
                .write_vectors_blocking(job, try_id, generation, rows, done)
                .map_err(|e| format!("cannot write vectors to the catalog: {e}"))?;
            if written == Written::Stopped {
                // Cancelled or deleted meanwhile: the job's end is decided by the catalog,
                // which knows why; this only stops the try.
                return Err(format!(
                    "job {job} stopped: its generation {generation} is no longer being written"
                ));
            }
            Ok(())
        };
        let thread = std::thread::Builder::new()
            .name(format!("embed-write-{job}"))
            .spawn(move || gather_and_write(&windows, write))
            .map_err(|e| format!("cannot start a writer thread: {e}"))?;
        Ok(Self {
            chunk: Vec::new(),
            done: 0,
            sender: Some(sender),
            thread: Some(thread),
        })
    }

    /// Hand the rows embedded so far to the writer thread. `force` hands over the progress
    /// even when no row is pending (the end of the file).
    fn flush(&mut self, force: bool) -> Result<(), String> {
        if self.chunk.is_empty() && !force {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.chunk);
        let sent = self
            .sender
            .as_ref()
            .is_some_and(|s| s.send((rows, self.done)).is_ok());
        if sent {
            Ok(())
        } else {
            // The writer stopped: its error says why.
            self.finish()
        }
    }

    /// Wait until everything handed over is written.
    fn finish(&mut self) -> Result<(), String> {
        self.sender = None;
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err("the vector writer thread panicked".into()),
            None => Ok(()),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // A job that stops early still waits for its last chunk, so the generation it
        // reports is complete when it is discarded.
        let _ = self.finish();
    }
}

/// The writer thread's loop: gather windows into chunks of up to [`CHUNK_ROWS`] rows and
/// `write` each one when it is full, when [`FLUSH_EVERY`] has passed since its oldest row
/// came, or when the runner is done (the channel closes).
fn gather_and_write(
    windows: &std::sync::mpsc::Receiver<Chunk>,
    mut write: impl FnMut(Vec<NewRow>, u64) -> Result<(), String>,
) -> Result<(), String> {
    use std::sync::mpsc::RecvTimeoutError;
    let mut pending: Vec<NewRow> = Vec::new();
    let mut done = None;
    let mut oldest: Option<Instant> = None;
    loop {
        let next = match oldest {
            None => windows.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(since) => windows.recv_timeout(FLUSH_EVERY.saturating_sub(since.elapsed())),
        };
        let closed = match next {
            Ok((rows, through)) => {
                oldest.get_or_insert_with(Instant::now);
                pending.extend(rows);
                done = Some(through);
                if pending.len() < CHUNK_ROWS {
                    continue;
                }
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        if let Some(through) = done.take() {
            write(std::mem::take(&mut pending), through)?;
        }
        oldest = None;
        if closed {
            return Ok(());
        }
    }
}

/// Why the stream stopped early.
enum Halt {
    Stop(Stop),
    Embed(EmbedError),
    Catalog(String),
}

/// Rows rendered but not yet handed to the writer, in row order: each either waits for its
/// text to be embedded or copies a vector the source already has.
struct Window {
    rows: Vec<(u64, String, [u8; 16], Option<Origin>)>,
    /// The texts to send, in row order.
    texts: Vec<String>,
    /// Texts per provider call: the batch size times the requests it keeps in flight.
    size: usize,
}

impl Window {
    fn push(&mut self, reuse: &mut Reuse, row: u64, text: String) {
        let hash = text_hash(&text);
        let origin = reuse.origin(hash, row);
        if origin.is_none() {
            self.texts.push(text.clone());
        }
        self.rows.push((row, text, hash, origin));
    }

    /// Full: enough texts for one provider call, or a chunk's worth of copies.
    fn full(&self) -> bool {
        self.texts.len() >= self.size || self.rows.len() >= CHUNK_ROWS
    }

    /// Embed the new texts and hand every row to the writer, in row order.
    fn embed(&mut self, writer: &mut Writer, provider: &Arc<dyn Provider>) -> Result<(), Halt> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let vectors = if self.texts.is_empty() {
            Vec::new()
        } else {
            provider.embed(&self.texts).map_err(Halt::Embed)?
        };
        if vectors.len() != self.texts.len() {
            return Err(Halt::Embed(EmbedError::Permanent(format!(
                "the provider returned {} vectors for {} texts",
                vectors.len(),
                self.texts.len()
            ))));
        }
        self.texts.clear();
        let mut vectors = vectors.into_iter();
        for (row, text, text_hash, origin) in self.rows.drain(..) {
            let vector = match origin {
                Some((generation, row)) => RowVector::Copy { generation, row },
                // As many vectors as texts: checked above.
                None => RowVector::Embedded(vectors.next().unwrap_or_default()),
            };
            writer.chunk.push(NewRow {
                row,
                text,
                text_hash,
                vector,
            });
        }
        writer.flush(false).map_err(Halt::Catalog)
    }
}

/// Run `job`; returns the generation it wrote (if it began one) and how it ended.
pub(super) fn run(
    job: &Claimed,
    catalog: &Catalog,
    providers: &Providers,
    stop: &StopFlag,
    config: &Config,
) -> (Option<i64>, Ending) {
    // The batch size the provider was built with: an OpenAI-compatible provider refuses
    // larger batches, and a reload may change the setting while this job runs.
    let (provider, batch_size) = match providers.get_with_batch() {
        Ok(p) => p,
        Err(error) => return (None, ending_of(job, Halt::Embed(error))),
    };
    let identity = provider.identity().clone();
    let id = job.job;
    let begun = catalog.begin_generation_blocking(id, job.try_id, identity.clone());
    let generation = match begun {
        Ok(Begun::Started(generation)) => generation,
        Ok(Begun::Refused(refusal)) => return (None, Ending::Failed(refusal)),
        // Cancelled between its claim and now.
        Ok(Begun::Cancelled) => return (None, Ending::Cancelled),
        Err(error) => return (None, ending_of(job, Halt::Catalog(error.to_string()))),
    };
    let known = match catalog.reusable_texts_blocking(id, generation, &identity) {
        Ok(known) => known,
        Err(error) => {
            let reason = format!("cannot read the vectors to reuse: {error}");
            return (Some(generation), ending_of(job, Halt::Catalog(reason)));
        }
    };
    let mut reuse = Reuse::new(known, generation);
    let mut writer = match Writer::start(catalog, job.job, job.try_id, generation) {
        Ok(writer) => writer,
        Err(error) => return (Some(generation), ending_of(job, Halt::Catalog(error))),
    };
    let mut window = Window {
        rows: Vec::new(),
        texts: Vec::new(),
        size: batch_size * provider.max_in_flight().max(1),
    };
    let mut renderer: Option<Renderer> = None;
    let mut halt: Option<Halt> = None;
    let mut row_no: u64 = 0;

    let streamed = rows::stream(job, config, &mut |event| {
        match event {
            rows::RowEvent::Columns(columns) => {
                renderer = Some(Renderer::new(&job.source, &job.prefs, columns));
            }
            rows::RowEvent::Row(cells) => {
                row_no += 1;
                let text = renderer
                    .get_or_insert_with(|| Renderer::new(&job.source, &job.prefs, &job.columns))
                    .render(cells);
                if !text.is_empty() {
                    window.push(&mut reuse, row_no, text);
                }
                if window.full() {
                    writer.done = row_no;
                    if let Err(h) = window.embed(&mut writer, &provider) {
                        halt = Some(h);
                        return ControlFlow::Break(());
                    }
                    match stop.get() {
                        Stop::Run => {}
                        other => {
                            halt = Some(Halt::Stop(other));
                            return ControlFlow::Break(());
                        }
                    }
                }
            }
        }
        ControlFlow::Continue(())
    });
    let halt = match (halt, streamed) {
        (Some(h), _) => Some(h),
        (None, Err(error)) => Some(Halt::Embed(error)),
        (None, Ok(_)) => {
            writer.done = row_no;
            window.embed(&mut writer, &provider).err()
        }
    };
    if let Some(h) = halt {
        // Keep what this try embedded: a retry (or the try after a stop) reuses it. A cancel
        // or a permanent failure discards the generation anyway.
        if !matches!(h, Halt::Catalog(_)) {
            let _ = writer.flush(true).and_then(|()| writer.finish());
        }
        return (Some(generation), ending_of(job, h));
    }
    if let Err(reason) = writer.flush(true).and_then(|()| writer.finish()) {
        return (Some(generation), ending_of(job, Halt::Catalog(reason)));
    }
    tracing::info!(
        job = id,
        rows = row_no,
        embedded = reuse.embedded,
        reused = reuse.reused,
        "all rows written"
    );
    // Every row is written: only a cancel still stops it (a shutdown keeps finished work).
    match stop.get() {
        Stop::Cancel => (Some(generation), Ending::Cancelled),
        _ => (Some(generation), Ending::Done),
    }
}

/// How a halted job ends: retried after a backoff while tries are left, else failed.
fn ending_of(job: &Claimed, halt: Halt) -> Ending {
    let (error, retry_after) = match halt {
        Halt::Stop(Stop::Cancel) => return Ending::Cancelled,
        Halt::Stop(_) => return Ending::Interrupted,
        Halt::Embed(EmbedError::Permanent(error)) => return Ending::Failed(error),
        Halt::Embed(EmbedError::Transient {
            message,
            retry_after,
        }) => (message, retry_after),
        // The catalog failing under a job (disk full, I/O error) may pass.
        Halt::Catalog(error) => (error, None),
    };
    if job.attempt >= job.max_attempts {
        return Ending::Failed(format!(
            "gave up after {} attempt{}: {error}",
            job.attempt,
            if job.attempt == 1 { "" } else { "s" }
        ));
    }
    let wait = Backoff::default().delay(job.attempt, retry_after, &mut || fastrand::f64());
    Ending::Retry {
        error: format!(
            "attempt {} of {} failed: {error}; retrying in {:.1} s",
            job.attempt,
            job.max_attempts,
            wait.as_secs_f64()
        ),
        at_ms: crate::clock::now_ms() + wait.as_millis() as i64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: u64) -> NewRow {
        NewRow {
            row: n,
            text: format!("row {n}"),
            text_hash: text_hash(&format!("row {n}")),
            vector: RowVector::Embedded(vec![0.0; 4]),
        }
    }

    /// The test's ends of a writer loop: where windows go in, what was written (rows, done),
    /// and the loop's thread.
    type TestWriter = (
        std::sync::mpsc::SyncSender<Chunk>,
        std::sync::mpsc::Receiver<(usize, u64)>,
        std::thread::JoinHandle<Result<(), String>>,
    );

    /// Runs the writer loop on a thread; each write is reported as (rows, done).
    fn writer() -> TestWriter {
        let (sender, windows) = std::sync::mpsc::sync_channel::<Chunk>(1);
        let (report, writes) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            gather_and_write(&windows, |rows, done| {
                report.send((rows.len(), done)).unwrap();
                Ok(())
            })
        });
        (sender, writes, thread)
    }

    #[test]
    fn rows_are_written_once_the_flush_time_passes_while_the_next_window_is_slow() {
        let (sender, writes, thread) = writer();
        sender.send(((0..8).map(row).collect(), 8)).unwrap();
        sender.send(((8..16).map(row).collect(), 16)).unwrap();
        // No more windows come (the provider is slow); the rows still reach the catalog.
        let first = writes
            .recv_timeout(FLUSH_EVERY * 20)
            .expect("written in time");
        assert_eq!(first, (16, 16));
        drop(sender);
        thread.join().unwrap().unwrap();
        assert!(writes.try_recv().is_err(), "nothing written twice");
    }

    #[test]
    fn a_full_chunk_is_written_at_once_and_the_rest_when_the_runner_is_done() {
        let (sender, writes, thread) = writer();
        let started = Instant::now();
        for w in 0..(CHUNK_ROWS as u64 / 512) {
            sender
                .send(((w * 512..(w + 1) * 512).map(row).collect(), (w + 1) * 512))
                .unwrap();
        }
        let full = writes.recv_timeout(FLUSH_EVERY * 20).unwrap();
        assert_eq!(full, (CHUNK_ROWS, CHUNK_ROWS as u64));
        assert!(started.elapsed() < FLUSH_EVERY * 20);
        sender.send((vec![row(5000)], 5001)).unwrap();
        // The end of the file: progress with no rows is handed over too.
        sender.send((Vec::new(), 5003)).unwrap();
        drop(sender);
        thread.join().unwrap().unwrap();
        assert_eq!(writes.try_recv().unwrap(), (1, 5003));
        assert!(writes.try_recv().is_err());
    }

    #[test]
    fn a_writer_that_fails_stops_the_loop_with_its_reason() {
        let (sender, windows) = std::sync::mpsc::sync_channel::<Chunk>(1);
        let thread = std::thread::spawn(move || {
            gather_and_write(&windows, |_, _| Err("disk full".to_string()))
        });
        sender.send((vec![row(1)], 1)).unwrap();
        drop(sender);
        assert_eq!(thread.join().unwrap().unwrap_err(), "disk full");
    }

    fn claimed(attempt: u32, max_attempts: u32) -> Claimed {
        Claimed {
            set: None,
            try_id: None,
            job: 1,
            group: "g".into(),
            source: "s.csv".into(),
            version_no: 1,
            stored_path: Default::default(),
            format: "csv".into(),
            columns: Vec::new(),
            rows_total: 0,
            prefs: Default::default(),
            switch_model: false,
            attempt,
            max_attempts,
        }
    }

    fn transient(retry_after: Option<Duration>) -> Halt {
        Halt::Embed(EmbedError::Transient {
            message: "HTTP 503".into(),
            retry_after,
        })
    }

    /// (try, tries allowed, why it halted) → how it ends. A retry is shown without its time,
    /// which is checked apart.
    #[test]
    fn a_halted_try_is_retried_while_tries_are_left_and_fails_after() {
        let cases = [
            (1, 3, Halt::Stop(Stop::Cancel), Ending::Cancelled),
            (3, 3, Halt::Stop(Stop::Cancel), Ending::Cancelled),
            (1, 3, Halt::Stop(Stop::Shutdown), Ending::Interrupted),
            (3, 3, Halt::Stop(Stop::Shutdown), Ending::Interrupted),
            (
                1,
                3,
                Halt::Embed(EmbedError::Permanent("HTTP 400".into())),
                Ending::Failed("HTTP 400".into()),
            ),
            (
                1,
                3,
                transient(None),
                Ending::Retry {
                    error: "attempt 1 of 3 failed: HTTP 503".into(),
                    at_ms: 0,
                },
            ),
            (
                3,
                3,
                transient(None),
                Ending::Failed("gave up after 3 attempts: HTTP 503".into()),
            ),
            (
                1,
                1,
                Halt::Catalog("disk full".into()),
                Ending::Failed("gave up after 1 attempt: disk full".into()),
            ),
            (
                2,
                3,
                Halt::Catalog("disk full".into()),
                Ending::Retry {
                    error: "attempt 2 of 3 failed: disk full".into(),
                    at_ms: 0,
                },
            ),
        ];
        for (attempt, max, halt, expected) in cases {
            let what = format!("try {attempt}/{max}");
            let ending = match ending_of(&claimed(attempt, max), halt) {
                Ending::Retry { error, at_ms } => {
                    assert!(at_ms >= crate::clock::now_ms() - 1_000, "{what}: {at_ms}");
                    let error = error.split("; retrying in").next().unwrap().to_string();
                    Ending::Retry { error, at_ms: 0 }
                }
                other => other,
            };
            assert_eq!(ending, expected, "{what}");
        }
    }

    #[test]
    fn a_retry_waits_at_least_what_the_server_asked() {
        let before = crate::clock::now_ms();
        let Ending::Retry { error, at_ms } =
            ending_of(&claimed(1, 3), transient(Some(Duration::from_secs(20))))
        else {
            panic!("a transient error with tries left is retried");
        };
        assert!(
            at_ms >= before + 20_000,
            "{at_ms} is not 20 s after {before}"
        );
        assert!(error.ends_with("retrying in 20.0 s"), "{error}");
    }
}
