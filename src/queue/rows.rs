//! The rows of a stored version, for a job or a preview: read by a parse worker, never by the
//! daemon, with the same table rules as validation (so row N is the row `show` counts as N).
//!
//! The stored file passed validation, but it is still a file someone dropped: the reader that
//! accepted it runs again, so it runs where it cannot hurt the daemon, under the same memory
//! limit. The worker streams rows and waits while the embedding side is slow; the parse
//! timeout bounds each wait for the next row, not the whole job.

use crate::catalog::Claimed;
use crate::config::Config;
use crate::embed::EmbedError;
use crate::ingest::formats::Format;
use crate::ingest::isolate::{self, Failure, Limits, ParseWorker, WorkerError};
use std::ops::ControlFlow;

pub use crate::ingest::formats::RowEvent;

/// Stream the rows of the version `job` names. A file that can no longer be read fails the
/// job for good; a worker of ours failing (it could not start, it was killed) is worth
/// another try.
pub fn stream(
    job: &Claimed,
    config: &Config,
    visit: &mut dyn FnMut(RowEvent<'_>) -> ControlFlow<()>,
) -> Result<u64, EmbedError> {
    let format = Format::from_extension(&job.format).ok_or_else(|| {
        EmbedError::Permanent(format!(
            "the stored version has format {:?}, which this ingestd cannot read",
            job.format
        ))
    })?;
    let mut options = isolate::read_options(&config.ingest);
    options.sheet = job.prefs.sheet.clone();
    // Read as the version's columns were read: with the source's options it was read with.
    if let Some(set) = &job.set {
        options.apply(set);
    }
    let limits = Limits::of(&config.ingest);
    ParseWorker::current()
        .stream_rows(format, &job.stored_path, &options, &limits, visit)
        .map_err(|failure| match failure {
            Failure::Rejected(rejection) => EmbedError::Permanent(format!(
                "the stored file {} can no longer be read: {rejection}",
                job.stored_path.display()
            )),
            Failure::Worker(WorkerError::Garbage { detail }) => EmbedError::Permanent(format!(
                "the parse worker sent rows that do not fit the table ({detail})"
            )),
            Failure::Worker(error) => EmbedError::Transient {
                message: error.to_string(),
                retry_after: None,
            },
        })
}
