//! `ingestd catalog migrate`: resolve the target from the command line and the config, run
//! the copy ([`super::copy`]) and write the report a person reads. Never prints a password.

use super::copy::{Outcome, Report};
use super::{PgError, Target};
use crate::config::Config;

use crate::config::host_name;

/// Copy `paths.database` into `to` (else `catalog.url`) as node `node` (else the host name);
/// the report as text.
pub fn migrate(config: &Config, to: Option<&str>, node: Option<&str>) -> Result<String, PgError> {
    let (key, url) = match to {
        Some(url) => ("--to", url.to_string()),
        None if !config.catalog.url.trim().is_empty() => {
            ("catalog.url", config.catalog.url.clone())
        }
        None => {
            return Err(PgError::Invalid(
                "no target: give --to URL, or set catalog.url in the config".into(),
            ));
        }
    };
    let no_file = std::path::PathBuf::new();
    let password_file = config.catalog.password_file.as_ref().unwrap_or(&no_file);
    let target = Target::new(key, &url, password_file)?;
    let node = node.map(str::to_string).unwrap_or_else(host_name);
    if node.trim().is_empty() {
        return Err(PgError::Invalid("--node must not be empty".into()));
    }
    let report = super::copy::migrate(&config.paths.database, &target, &node)?;
    Ok(render(&report))
}

/// The report: one line per table with both sides' rows and checksums.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let what = match report.outcome {
        Outcome::Copied => "copied",
        Outcome::AlreadyCopied => "already copied by an earlier run; nothing was written",
    };
    out.push_str(&format!(
        "{} -> {}: {what}\nPostgreSQL schema {}, pgvector {}\n\n",
        report.sqlite.display(),
        report.url,
        report.schema,
        report.pgvector
    ));
    out.push_str(&format!(
        "{:<15} {:>10} {:>10}  {:<16}  {}\n",
        "table", "sqlite", "postgres", "sha256", "check"
    ));
    for table in &report.tables {
        let check = if table.matches() { "ok" } else { "DIFFERS" };
        let sum = if table.matches() {
            table.sqlite.checksum[..16].to_string()
        } else {
            format!(
                "{} / {}",
                &table.sqlite.checksum[..16],
                &table.postgres.checksum[..16]
            )
        };
        out.push_str(&format!(
            "{:<15} {:>10} {:>10}  {:<16}  {check}\n",
            table.table, table.sqlite.rows, table.postgres.rows, sum
        ));
    }
    if !report.indexes.is_empty() {
        out.push_str(&format!("\nHNSW indexes: {}\n", report.indexes.join(", ")));
    }
    if report.orphan_vectors > 0 {
        out.push_str(&format!(
            "\n{} vectors of generations that no longer exist were not copied (ingestd fsck \
             reports them)\n",
            report.orphan_vectors
        ));
    }
    out
}
