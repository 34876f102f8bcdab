//! `ingestd catalog migrate`: resolve the target from the command line and the config, run
//! the copy ([`super::copy`]) and write the report a person reads; `ingestd catalog
//! forget-node`: take a node that is gone for good off the cluster's registry. Never prints a
//! password.

use super::copy::{Outcome, Report};
use super::{PgError, Target};
use crate::config::Config;

use crate::config::host_name;

/// Copy `paths.database` into `to` (else `catalog.url`) as node `node` (else the host name);
/// the report as text.
pub fn migrate(config: &Config, to: Option<&str>, node: Option<&str>) -> Result<String, PgError> {
    let target = target(config, to)?;
    let node = node.map(str::to_string).unwrap_or_else(host_name);
    if node.trim().is_empty() {
        return Err(PgError::Invalid("--node must not be empty".into()));
    }
    let report = super::copy::migrate(&config.paths.database, &target, &node)?;
    Ok(render(&report))
}

/// The database `to` names, else `catalog.url`, with `catalog.password_file`.
fn target(config: &Config, to: Option<&str>) -> Result<Target, PgError> {
    let (key, url) = match to {
        Some(url) => ("--to", url.to_string()),
        None if !config.catalog.url.trim().is_empty() => {
            ("catalog.url", config.catalog.url.clone())
        }
        None => {
            return Err(PgError::Invalid(
                "no database: set catalog.url in the config (catalog migrate also takes --to URL)"
                    .into(),
            ));
        }
    };
    let no_file = std::path::PathBuf::new();
    let password_file = config.catalog.password_file.as_ref().unwrap_or(&no_file);
    Target::new(key, &url, password_file)
}

/// Take node `name` off the registry of the cluster at `catalog.url`, audited; what stays
/// behind as text. Refused while a daemon runs as that node (it holds its name), while a job
/// is processing on it (another node takes it over when its lease runs out), and while its
/// heartbeat is younger than two leases (`cluster.lease_secs`): a node of an older version, or
/// one whose database session was cut, may run without holding its name. Its versions,
/// vectors and audit records stay: they name it, and what it embedded stays searchable.
pub fn forget_node(config: &Config, name: &str) -> Result<String, PgError> {
    use crate::identity::{Actor, Resolve};
    let target = target(config, None)?;
    let mut client = target.connect()?;
    let key = super::node::name_key(name);
    let free: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])?
        .get(0);
    if !free {
        return Err(PgError::Invalid(format!(
            "node {name:?} is running (its daemon holds its name): stop it first"
        )));
    }
    let forgotten = forget_locked(&mut client, config, name, &Actor::daemon());
    // Let the name go however that ended; the end of the connection lets it go too, so a
    // failure here changes nothing of what was done.
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&key]);
    forgotten
}

fn forget_locked(
    client: &mut postgres::Client,
    config: &Config,
    name: &str,
    actor: &crate::identity::Actor,
) -> Result<String, PgError> {
    let mut tx = client.transaction()?;
    let age: Option<i64> = tx
        .query_opt(
            &format!(
                "SELECT ({} - heartbeat_at) / 1000 FROM nodes WHERE name = $1 FOR UPDATE",
                super::NOW_MS
            ),
            &[&name],
        )?
        .map(|r| r.get(0));
    let Some(age) = age else {
        let known: Vec<String> = tx
            .query("SELECT name FROM nodes ORDER BY name", &[])?
            .iter()
            .map(|r| r.get(0))
            .collect();
        return Err(PgError::Invalid(format!(
            "no node {name:?} in the cluster's registry; its nodes: {}",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    };
    let processing: Vec<i64> = tx
        .query(
            "SELECT id FROM jobs WHERE state = 'processing' AND node = $1 ORDER BY id",
            &[&name],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !processing.is_empty() {
        let ids: Vec<String> = processing.iter().map(|id| format!("#{id}")).collect();
        return Err(PgError::Invalid(format!(
            "node {name:?} still has {} job(s) processing ({}): a running node takes them over \
             when their lease runs out (cluster.lease_secs); run this again after that",
            processing.len(),
            ids.join(", ")
        )));
    }
    let alive_within = 2 * config.cluster.lease_secs as i64;
    if age < alive_within {
        return Err(PgError::Invalid(format!(
            "node {name:?} sent a heartbeat {age} s ago, so it may still be running (a node of \
             an older version, or one whose database connection was cut, does not hold its \
             name): stop it, and run this again once its heartbeat is {alive_within} s old"
        )));
    }
    let waiting: i64 = tx
        .query_one(
            "SELECT COUNT(*) FROM jobs j JOIN versions v ON v.id = j.version_id
             WHERE j.state = 'queued' AND v.node = $1",
            &[&name],
        )?
        .get(0);
    let deletes: i64 = tx
        .query_one(
            "SELECT COUNT(*) FROM pending_deletes WHERE node = $1",
            &[&name],
        )?
        .get(0);
    // What those queued jobs' interrupted tries wrote, kept for their next try.
    let kept: i64 = tx
        .query_one(
            "SELECT COALESCE(SUM(n.rows), 0)::bigint FROM generations n
             JOIN jobs j ON j.id = n.job_id JOIN versions v ON v.id = j.version_id
             WHERE n.state = 'retained' AND j.state = 'queued' AND v.node = $1",
            &[&name],
        )?
        .get(0);
    tx.execute("DELETE FROM nodes WHERE name = $1", &[&name])?;
    let mut record = crate::audit::AuditRecord::new(actor.clone(), "forget_node", "ok");
    record.detail = Some(format!("node {name} (last heartbeat {age} s ago)"));
    super::audit(&mut tx, &config.cluster.node_name(), &record)?;
    tx.commit()?;
    let mut out = format!(
        "node {name} taken off the registry (last heartbeat {age} s ago); its versions, vectors \
         and audit records stay\n"
    );
    if waiting > 0 {
        out.push_str(&format!(
            "warning: {waiting} queued job(s) are of files {name} stored: unless the nodes \
             share storage (cluster.shared_storage), they wait until a node can read them \
             (ingestctl cancel ends them, with the {kept} vectors their interrupted tries \
             kept)\n"
        ));
    }
    if deletes > 0 {
        out.push_str(&format!(
            "warning: {deletes} delete(s) of files {name} stored were left for it to carry \
             out; fsck lists them\n"
        ));
    }
    Ok(out)
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
