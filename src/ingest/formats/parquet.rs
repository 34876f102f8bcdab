//! Parquet files: columns from the schema, the row count from the footer, verified by reading.
//!
//! Columns are the schema's leaf columns named as `names` describes (nested fields as dotted
//! paths), then put through the shared header rules of [`crate::ingest::columns`]: blank names
//! skipped, duplicates made unique. pandas' unnamed index (`__index_level_0__`) is skipped too.
//!
//! The footer's row count is checked against its row groups, and every row group is then read
//! with arrow-rs's streaming reader, a batch at a time, so a file whose data does not match its
//! footer (truncated pages, corrupt compression, columns of different lengths) is refused now
//! rather than halfway through embedding. Before any page is decompressed, the sizes the footer
//! declares are held against the unzipped-size cap, so a decompression bomb is refused from
//! its metadata. Encrypted files are refused as such, whichever footer mode they use.
//!
//! Rows ([`stream`]) pass the same checks up to the sizes, then come from `rows`, a batch of
//! records at a time, one value per leaf column that became a column.

mod footer;
mod names;
mod rows;

use super::package::human;
use super::rows::Sink;
use super::{Extracted, Format, ReadOptions, Rejection, disguise, sniff};
use crate::ingest::columns;
use ::parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use ::parquet::file::metadata::{
    FileMetaData, ParquetMetaData, ParquetMetaDataBuilder, ParquetMetaDataReader,
};
use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

/// Rows per batch while verifying: small enough that a batch of wide rows stays a few
/// megabytes, large enough that per-batch overhead does not show.
const BATCH_ROWS: usize = 4096;

/// Reason recorded for pandas' unnamed index column.
pub const PANDAS_INDEX: &str = "pandas index";

/// Read the columns and row count of a Parquet file.
pub fn extract(path: &Path, options: &ReadOptions) -> Result<Extracted, Rejection> {
    let (file, metadata) = open(path)?;
    let (columns, skipped, empty_groups) = column_names(&metadata);
    if columns.is_empty() {
        return Err(Rejection::new("it has no columns"));
    }
    let rows = check_sizes(&metadata, options.max_unzipped_bytes)?;
    verify(&file, Arc::new(with_total(&metadata, rows)), rows)?;
    let mut notes = vec![describe(&metadata)];
    let total = metadata.file_metadata().num_rows();
    if u64::try_from(total).ok() != Some(rows) {
        // Old writers left the file total at 0; readers go by the row groups, and so do we.
        notes.push(format!(
            "the footer's total says {total} rows; its row groups hold {rows}, which were read"
        ));
    }
    if !empty_groups.is_empty() {
        notes.push(format!(
            "groups without fields (no column): {}",
            empty_groups.join(", ")
        ));
    }
    Ok(Extracted {
        columns,
        skipped,
        rows,
        notes,
        reading: Default::default(),
    })
}

/// Hand the rows of a Parquet file to `sink`, one value per column of [`extract`].
pub(super) fn stream(
    path: &Path,
    options: &ReadOptions,
    sink: &mut Sink<'_>,
) -> Result<(), Rejection> {
    let (file, metadata) = open(path)?;
    let (columns, _, _) = column_names(&metadata);
    if columns.is_empty() {
        return Err(Rejection::new("it has no columns"));
    }
    check_sizes(&metadata, options.max_unzipped_bytes)?;
    let kept = kept_leaves(&metadata);
    if kept.len() != columns.len() {
        return Err(Rejection::new(
            "its nested columns cannot be laid out as rows",
        ));
    }
    rows::stream(file, &kept, &columns, sink)
}

/// The file and its footer, after the checks that come before parsing it.
fn open(path: &Path) -> Result<(File, ParquetMetaData), Rejection> {
    disguise::check(Format::Parquet, &sniff::identify(path)?)?;
    let unreadable = |e: std::io::Error| Rejection::new(format!("it could not be read: {e}"));
    let mut file = super::input::open(path).map_err(unreadable)?;
    let size = file.metadata().map_err(unreadable)?.len();
    if footer::declares_encryption(&mut file, size)? {
        return Err(Rejection::new(
            "it is an encrypted Parquet file (its columns are encrypted); write it without \
             encryption",
        ));
    }
    let metadata = ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(|e| Rejection::new(format!("its footer cannot be read: {}", plain(&e))))?;
    Ok((file, metadata))
}

/// Column names under the header rules, the skipped ones, and fields that hold no column.
fn column_names(
    metadata: &ParquetMetaData,
) -> (
    Vec<String>,
    Vec<crate::protocol::SkippedColumn>,
    Vec<String>,
) {
    let (mut leaves, empty_groups) = names::leaf_names(metadata.file_metadata().schema_descr());
    let pandas_index: Vec<usize> = leaves
        .iter()
        .enumerate()
        .filter(|(_, name)| is_pandas_index(name))
        .map(|(i, _)| i)
        .collect();
    for &i in &pandas_index {
        leaves[i].clear();
    }
    let (columns, mut skipped) = columns::header_columns(&leaves);
    for skip in &mut skipped {
        if pandas_index.contains(&(skip.position - 1)) {
            skip.reason = PANDAS_INDEX.to_string();
        }
    }
    (columns, skipped, empty_groups)
}

/// The leaf columns that become columns, in order: those [`column_names`] does not skip.
fn kept_leaves(metadata: &ParquetMetaData) -> Vec<usize> {
    let (leaves, _) = names::leaf_names(metadata.file_metadata().schema_descr());
    leaves
        .iter()
        .enumerate()
        .filter(|(_, name)| !is_pandas_index(name) && !columns::is_blank(name))
        .map(|(i, _)| i)
        .collect()
}

/// `__index_level_0__`: the name pandas gives an index it writes without a name.
fn is_pandas_index(name: &str) -> bool {
    name.strip_prefix("__index_level_")
        .and_then(|rest| rest.strip_suffix("__"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The row count (the sum of the row groups'), after checking what the footer declares: data
/// in this file, and decompressed sizes under the cap.
fn check_sizes(metadata: &ParquetMetaData, max_unzipped: u64) -> Result<u64, Rejection> {
    let mut in_groups: i64 = 0;
    let mut unzipped: u64 = 0;
    for group in metadata.row_groups() {
        in_groups = in_groups.saturating_add(group.num_rows());
        for column in group.columns() {
            if let Some(elsewhere) = column.file_path() {
                return Err(Rejection::new(format!(
                    "it is a Parquet summary file: its data lives in other files ({elsewhere}); \
                     drop the data files instead"
                )));
            }
            unzipped =
                unzipped.saturating_add(u64::try_from(column.uncompressed_size()).unwrap_or(0));
        }
    }
    if in_groups < 0 {
        return Err(Rejection::new(format!(
            "it is a damaged Parquet file: its row groups declare {in_groups} rows"
        )));
    }
    if unzipped > max_unzipped {
        return Err(Rejection::new(format!(
            "it expands past {} when decompressed ({} declared)",
            human(max_unzipped),
            human(unzipped)
        )));
    }
    Ok(in_groups as u64)
}

/// The metadata with the file's total set to `rows`: arrow-rs sizes its batches by that total,
/// and a total of 0 (as parquet-rs 0.3 wrote) would make it read nothing.
fn with_total(metadata: &ParquetMetaData, rows: u64) -> ParquetMetaData {
    let file = metadata.file_metadata();
    if u64::try_from(file.num_rows()).ok() == Some(rows) {
        return metadata.clone();
    }
    let total = FileMetaData::new(
        file.version(),
        i64::try_from(rows).unwrap_or(i64::MAX),
        file.created_by().map(str::to_string),
        file.key_value_metadata().cloned(),
        file.schema_descr_ptr(),
        file.column_orders().cloned(),
    );
    ParquetMetaDataBuilder::new(total)
        .set_row_groups(metadata.row_groups().to_vec())
        .build()
}

/// Read every row group, a batch at a time, and check that each holds the rows its footer
/// entry declares.
fn verify(file: &File, metadata: Arc<ParquetMetaData>, rows: u64) -> Result<(), Rejection> {
    let groups = metadata.num_row_groups();
    let arrow = ArrowReaderMetadata::try_new(metadata.clone(), ArrowReaderOptions::new())
        .map_err(|e| Rejection::new(format!("its schema cannot be read: {}", plain(&e))))?;
    let mut total: u64 = 0;
    for group in 0..groups {
        let declared = metadata.row_group(group).num_rows() as u64;
        let at = |what: String| {
            Rejection::new(format!(
                "row group {} of {groups} cannot be read: {what}",
                group + 1
            ))
        };
        let handle = file.try_clone().map_err(|e| at(e.to_string()))?;
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(handle, arrow.clone())
            .with_row_groups(vec![group])
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| at(plain(&e)))?;
        let mut read: u64 = 0;
        for batch in reader {
            read += batch.map_err(|e| at(plain(&e)))?.num_rows() as u64;
        }
        if read != declared {
            return Err(at(format!(
                "it holds {read} rows, its footer says {declared}"
            )));
        }
        total += read;
    }
    debug_assert_eq!(total, rows);
    Ok(())
}

/// One note: row groups, codecs and writer.
fn describe(metadata: &ParquetMetaData) -> String {
    let codecs: BTreeSet<String> = metadata
        .row_groups()
        .iter()
        .flat_map(|g| g.columns().iter().map(|c| c.compression().to_string()))
        // "ZSTD(ZstdLevel(1))": the codec is what matters, the writer's level is noise.
        .map(|codec| codec.split('(').next().unwrap_or_default().to_string())
        .collect();
    let groups = metadata.num_row_groups();
    let mut note = format!(
        "{groups} row {}",
        if groups == 1 { "group" } else { "groups" }
    );
    if !codecs.is_empty() {
        note.push_str(&format!(
            ", compression {}",
            codecs.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    if let Some(writer) = metadata.file_metadata().created_by() {
        note.push_str(&format!(", written by {writer}"));
    }
    note
}

/// A parquet error without the crate's "Parquet error: " and "Arrow: " prefixes.
fn plain(error: &dyn std::fmt::Display) -> String {
    let text = error.to_string();
    let mut text = text.as_str();
    for prefix in [
        "Parquet argument error: ",
        "Parquet error: ",
        "External: ",
        "Arrow: ",
    ] {
        text = text.strip_prefix(prefix).unwrap_or(text);
    }
    text.to_string()
}

#[cfg(test)]
mod tests;
