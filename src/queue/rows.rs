//! The rows of a stored version, streamed to a job with the same table rules as validation.
//!
//! TEMPORARY: reads CSV in-process until the parse worker streams rows.

use crate::catalog::Claimed;
use crate::config::Config;
use std::ops::ControlFlow;

pub enum RowEvent<'a> {
    Columns(&'a [String]),
    Row(&'a [String]),
}

pub fn stream(
    job: &Claimed,
    _config: &Config,
    visit: &mut dyn FnMut(RowEvent<'_>) -> ControlFlow<()>,
) -> Result<u64, String> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(&job.stored_path)
        .map_err(|e| e.to_string())?;
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| e.to_string())?
        .iter()
        .map(str::to_string)
        .collect();
    if visit(RowEvent::Columns(&header)).is_break() {
        return Ok(0);
    }
    let mut n = 0;
    for record in reader.records() {
        let record = record.map_err(|e| e.to_string())?;
        let cells: Vec<String> = record.iter().map(str::to_string).collect();
        if cells.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        n += 1;
        if visit(RowEvent::Row(&cells)).is_break() {
            break;
        }
    }
    Ok(n)
}
