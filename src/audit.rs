//! The audit trail's record type and its JSON-lines copy for log shippers.
//!
//! The catalog's `audit` table is the source of truth; each record is appended to
//! `paths.audit_log` after the transaction that wrote it commits, so the file never holds a
//! record the catalog does not. A failed append is logged and the daemon goes on.

use crate::clock;
use crate::identity::Actor;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Who, when, what, on what, outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub time_ms: i64,
    pub actor: Actor,
    /// `add`, `delete`, `reembed`, `retry`, `cancel`, `prefs`, …
    pub action: &'static str,
    pub group: Option<String>,
    pub source: Option<String>,
    pub version: Option<String>,
    pub job: Option<i64>,
    /// `accepted`, `unchanged`, `rejected`, `refused`, `ok`, …
    pub outcome: &'static str,
    pub detail: Option<String>,
}

/// The JSON shape of an audit record, on the wire and in `audit.jsonl`.
#[derive(Debug, Serialize)]
pub struct AuditJson<'a> {
    pub time: String,
    pub actor: &'a Actor,
    pub action: &'a str,
    pub group: Option<&'a str>,
    pub source: Option<&'a str>,
    pub version: Option<&'a str>,
    pub job: Option<i64>,
    pub outcome: &'a str,
    pub detail: Option<&'a str>,
}

impl AuditRecord {
    pub fn new(actor: Actor, action: &'static str, outcome: &'static str) -> Self {
        Self {
            time_ms: clock::now_ms(),
            actor,
            action,
            group: None,
            source: None,
            version: None,
            job: None,
            outcome,
            detail: None,
        }
    }

    pub fn on(mut self, group: &str, source: &str) -> Self {
        self.group = Some(group.to_string());
        self.source = Some(source.to_string());
        self
    }

    pub fn version(mut self, version: Option<String>) -> Self {
        self.version = version;
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn to_json(&self) -> AuditJson<'_> {
        AuditJson {
            time: clock::rfc3339(self.time_ms),
            actor: &self.actor,
            action: self.action,
            group: self.group.as_deref(),
            source: self.source.as_deref(),
            version: self.version.as_deref(),
            job: self.job,
            outcome: self.outcome,
            detail: self.detail.as_deref(),
        }
    }
}

/// Appends records to `audit.jsonl`.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Option<File>,
}

impl AuditLog {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            file: None,
        }
    }

    /// Append one line per record. Opens the file lazily so a log rotated away is recreated.
    pub fn append(&mut self, records: &[AuditRecord]) {
        if records.is_empty() {
            return;
        }
        let mut text = Vec::new();
        for record in records {
            if serde_json::to_writer(&mut text, &record.to_json()).is_ok() {
                text.push(b'\n');
            }
        }
        if let Err(e) = self.write(&text) {
            tracing::error!(path = %self.path.display(), "cannot append to the audit log: {e}");
            self.file = None;
        }
    }

    fn write(&mut self, text: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() || !self.path.exists() {
            self.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        match &mut self.file {
            // One write call per batch: O_APPEND keeps lines whole even with other writers.
            Some(file) => file.write_all(text),
            None => Ok(()),
        }
    }
}
