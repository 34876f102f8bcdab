//! The audit trail's record type and its JSON-lines copy for log shippers.
//!
//! The catalog's `audit` table is the source of truth; each record is appended to
//! `paths.audit_log` after the transaction that wrote it commits, so the file never holds a
//! record the catalog does not. A failed append is logged and the daemon goes on. On a
//! PostgreSQL catalog each node's file holds the records that node wrote, appended when it
//! hears their commit (`catalog::pg::node`).

use crate::clock;
use crate::identity::Actor;
use crate::notices::Notices;
use crate::protocol::AuditEntry;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

    pub fn in_group(mut self, group: &str) -> Self {
        self.group = Some(group.to_string());
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

    /// The shape on the wire and in `audit.jsonl`.
    pub fn to_entry(&self) -> AuditEntry {
        AuditEntry {
            id: None,
            time: clock::rfc3339(self.time_ms),
            actor: self.actor.clone(),
            action: self.action.to_string(),
            group: self.group.clone(),
            source: self.source.clone(),
            version: self.version.clone(),
            job: self.job,
            outcome: self.outcome.to_string(),
            detail: self.detail.clone(),
        }
    }
}

/// Mode of `audit.jsonl` and of the catalog's files: the daemon's user writes, its group reads.
pub const PRIVATE_MODE: u32 = 0o640;

/// Where audit.jsonl write failures are shown (`status` `last_errors`), besides the log. One
/// daemon per process: it is set when the daemon's ingest side is built.
static FAILURES_TO: Mutex<Option<Notices>> = Mutex::new(None);

/// Show audit.jsonl write failures (and the recovery after one) in `status`.
pub fn report_failures_to(notices: &Notices) {
    if let Ok(mut sink) = FAILURES_TO.lock() {
        *sink = Some(notices.clone());
    }
}

fn notice(message: String) {
    match FAILURES_TO.lock().ok().and_then(|sink| sink.clone()) {
        Some(notices) => notices.report(message),
        None => tracing::error!("{message}"),
    }
}

/// Appends records to `audit.jsonl`.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Option<File>,
    /// The last append failed: the next failure is not reported again, a success is.
    failing: bool,
}

impl AuditLog {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            file: None,
            failing: false,
        }
    }

    /// Append one line per record. Opens the file lazily so a log rotated away is recreated.
    pub fn append(&mut self, records: &[AuditRecord]) {
        let entries: Vec<AuditEntry> = records.iter().map(AuditRecord::to_entry).collect();
        self.append_entries(&entries);
    }

    /// Append one line per entry, as written (a PostgreSQL node's records, read back).
    pub fn append_entries(&mut self, entries: &[AuditEntry]) {
        if entries.is_empty() {
            return;
        }
        let mut text = Vec::new();
        for entry in entries {
            if serde_json::to_writer(&mut text, entry).is_ok() {
                text.push(b'\n');
            }
        }
        match self.write(&text) {
            Err(e) => {
                self.file = None;
                if !self.failing {
                    self.failing = true;
                    notice(format!(
                        "cannot append to the audit log {}: {e}; the catalog keeps every \
                         record (`ingestctl audit`), the file misses them until this is fixed",
                        self.path.display()
                    ));
                } else {
                    tracing::error!(path = %self.path.display(), "cannot append to the audit log: {e}");
                }
            }
            Ok(()) if self.failing => {
                self.failing = false;
                notice(format!(
                    "the audit log {} is written again",
                    self.path.display()
                ));
            }
            Ok(()) => {}
        }
    }

    fn write(&mut self, text: &[u8]) -> std::io::Result<()> {
        // Reopen when the file at the path is not the one we hold: rotated away, or replaced.
        let at_path = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        let held = self
            .file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| (m.dev(), m.ino()));
        if self.file.is_none() || at_path != held {
            // 0640 whatever the umask: every record names people and files.
            self.file = Some(crate::dirs::open_private(&self.path, PRIVATE_MODE, true)?);
        }
        match &mut self.file {
            // One write call per batch: O_APPEND keeps lines whole even with other writers.
            Some(file) => file.write_all(text),
            None => Ok(()),
        }
    }
}
