//! Config reload (SIGHUP): read the same file again, put in force what can change while the
//! daemon runs, and report what cannot.
//!
//! A reload never half-applies. An invalid file changes nothing; a valid one is merged into the
//! running config key by key from the table below: a *live* key takes its new value, a
//! *restart* key keeps its old one and is reported with the reason. The merged config replaces
//! the running one in a single step, so every reader sees all of it or none of it. A key that
//! is missing from the table cannot be applied by accident: a test checks that every key of
//! `Config` is in it.

use super::LogFilter;
use super::live::LiveConfig;
use crate::config::Config;
use crate::notices::Notices;
use crate::protocol::{RefusedKey, ReloadInfo};
use std::sync::Arc;

const PATHS: &str = "paths are opened at start; restart ingestd to move them";
const SOCKET: &str = "the control socket is created at start; restart ingestd to change it";
const WORKERS: &str = "ingest worker threads start with the daemon; restart ingestd to change it";
const WORKER_USER: &str =
    "the parse workers' user is resolved at start; restart ingestd to change it";
const MODEL: &str = "the embedding model is loaded at start; restart ingestd to switch it";
const CATALOG: &str = "the catalog is opened at start; restart ingestd to change it";
const CLUSTER: &str = "a node joins the cluster at start; restart ingestd to change it";
const FILES: &str = "the pid and log files are opened at start; restart ingestd to change them";

/// One config key: its name, whether it can change live, and how to compare and take it.
struct Key {
    name: &'static str,
    /// `None`: applied live. `Some(reason)`: needs a restart.
    restart: Option<&'static str>,
    differs: fn(&Config, &Config) -> bool,
    take: fn(&mut Config, &Config),
}

macro_rules! key {
    ($name:literal, $restart:expr, $($field:ident).+) => {
        Key {
            name: $name,
            restart: $restart,
            differs: |old, new| old.$($field).+ != new.$($field).+,
            take: |merged, new| merged.$($field).+ = new.$($field).+.clone(),
        }
    };
}

/// Every key of the config, live or not. Embedding settings are live: the embedding queue reads
/// them from [`LiveConfig`] for each job.
static KEYS: &[Key] = &[
    key!("paths.drop_root", Some(PATHS), paths.drop_root),
    key!("paths.storage_root", Some(PATHS), paths.storage_root),
    key!("paths.database", Some(PATHS), paths.database),
    key!("paths.socket", Some(SOCKET), paths.socket),
    key!("paths.audit_log", Some(PATHS), paths.audit_log),
    key!("ingest.max_file_size", None, ingest.max_file_size),
    key!("ingest.allowed_formats", None, ingest.allowed_formats),
    key!("ingest.settle_ms", None, ingest.settle_ms),
    key!("ingest.retain_versions", None, ingest.retain_versions),
    key!("ingest.workers", Some(WORKERS), ingest.workers),
    key!("ingest.parse_memory_limit", None, ingest.parse_memory_limit),
    key!("ingest.parse_timeout_secs", None, ingest.parse_timeout_secs),
    key!("ingest.max_cells", None, ingest.max_cells),
    key!("ingest.max_unzipped_size", None, ingest.max_unzipped_size),
    key!("ingest.storage_mode", None, ingest.storage_mode),
    key!("ingest.worker_user", Some(WORKER_USER), ingest.worker_user),
    key!("embedding.provider", Some(MODEL), embedding.provider),
    key!("embedding.concurrency", None, embedding.concurrency),
    key!("embedding.batch_size", None, embedding.batch_size),
    key!("embedding.max_attempts", None, embedding.max_attempts),
    key!("embedding.model_dir", Some(MODEL), embedding.model_dir),
    key!("embedding.auto_fetch", Some(MODEL), embedding.auto_fetch),
    key!("embedding.openai.base_url", None, embedding.openai.base_url),
    key!("embedding.openai.model", None, embedding.openai.model),
    key!(
        "embedding.openai.api_key_env",
        None,
        embedding.openai.api_key_env
    ),
    key!(
        "embedding.openai.api_key_file",
        None,
        embedding.openai.api_key_file
    ),
    key!(
        "embedding.openai.dimensions",
        None,
        embedding.openai.dimensions
    ),
    key!(
        "embedding.openai.timeout_secs",
        None,
        embedding.openai.timeout_secs
    ),
    key!(
        "embedding.openai.max_in_flight",
        None,
        embedding.openai.max_in_flight
    ),
    key!("server.socket_mode", Some(SOCKET), server.socket_mode),
    key!("server.socket_group", Some(SOCKET), server.socket_group),
    key!("server.admins", None, server.admins),
    key!(
        "server.shutdown_timeout_secs",
        None,
        server.shutdown_timeout_secs
    ),
    key!("server.log_level", None, server.log_level),
    key!("server.pid_file", Some(FILES), server.pid_file),
    key!("server.log_file", Some(FILES), server.log_file),
    key!("server.max_connections", None, server.max_connections),
    key!("server.admin_connections", None, server.admin_connections),
    key!(
        "server.max_connections_per_uid",
        None,
        server.max_connections_per_uid
    ),
    key!(
        "server.max_followers_per_uid",
        None,
        server.max_followers_per_uid
    ),
    key!(
        "server.first_request_timeout_secs",
        None,
        server.first_request_timeout_secs
    ),
    key!("server.idle_timeout_secs", None, server.idle_timeout_secs),
    key!("server.max_targets", None, server.max_targets),
    key!("server.previews_per_uid", None, server.previews_per_uid),
    key!("catalog.backend", Some(CATALOG), catalog.backend),
    key!("catalog.url", Some(CATALOG), catalog.url),
    key!(
        "catalog.password_file",
        Some(CATALOG),
        catalog.password_file
    ),
    key!("catalog.ef_search", None, catalog.ef_search),
    key!("cluster.node", Some(CLUSTER), cluster.node),
    key!("cluster.lease_secs", Some(CLUSTER), cluster.lease_secs),
    key!(
        "cluster.shared_storage",
        Some(CLUSTER),
        cluster.shared_storage
    ),
];

/// What a reload would do: the config to put in force and the changed keys, sorted by fate.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub merged: Config,
    pub applied: Vec<String>,
    pub refused: Vec<RefusedKey>,
}

/// Merge `new` into `old`. With `log_from_env`, the log filter is `RUST_LOG`'s and
/// `server.log_level` cannot change it.
pub fn plan(old: &Config, new: &Config, log_from_env: bool) -> Plan {
    let mut merged = old.clone();
    let (mut applied, mut refused) = (Vec::new(), Vec::new());
    for key in KEYS.iter().filter(|key| (key.differs)(old, new)) {
        let restart = match key.name {
            "server.log_level" if log_from_env => {
                Some("RUST_LOG is set in the daemon's environment and takes precedence")
            }
            _ => key.restart,
        };
        match restart {
            None => {
                (key.take)(&mut merged, new);
                applied.push(key.name.to_string());
            }
            Some(reason) => refused.push(RefusedKey {
                key: key.name.to_string(),
                reason: reason.to_string(),
            }),
        }
    }
    Plan {
        merged,
        applied,
        refused,
    }
}

/// Re-read the running config's file (and the environment) and apply what can change live.
/// Blocking (reads the file): call it off the reactor.
pub fn reload(live: &LiveConfig, log_filter: Option<&LogFilter>, log_from_env: bool) -> ReloadInfo {
    let old = live.get();
    let file = old.file.clone().unwrap_or_else(|| Config::locate(None));
    let mut info = ReloadInfo {
        at: crate::clock::rfc3339(crate::clock::now_ms()),
        file: file.display().to_string(),
        ..ReloadInfo::default()
    };
    let new = match Config::load(&file) {
        Ok(new) => new,
        Err(error) => {
            info.error = Some(format!("{error}; nothing was changed"));
            return info;
        }
    };
    let plan = plan(&old, &new, log_from_env);
    // The only step that can fail after validation comes first, so a failure changes nothing.
    if plan.applied.iter().any(|k| k == "server.log_level")
        && let Some(set) = log_filter
        && let Err(error) = set(&plan.merged.server.log_level)
    {
        info.error = Some(format!(
            "config key server.log_level: {error}; nothing was changed"
        ));
        return info;
    }
    live.set(Arc::new(plan.merged));
    info.applied = plan.applied;
    info.refused = plan.refused;
    info
}

/// Log a reload's outcome, record it for `status`, and show an error in `last_errors`.
pub fn report(live: &LiveConfig, notices: &Notices, info: ReloadInfo) {
    match &info.error {
        Some(error) => {
            tracing::error!(file = %info.file, "config reload failed: {error}");
            notices.report(format!("config reload failed: {error}"));
        }
        None => {
            let refused: Vec<String> = info
                .refused
                .iter()
                .map(|r| format!("{} ({})", r.key, r.reason))
                .collect();
            tracing::info!(
                file = %info.file,
                applied = %list(&info.applied),
                refused = %list(&refused),
                "config reloaded"
            );
            for key in &info.refused {
                tracing::warn!(key = %key.key, "not applied on reload: {}", key.reason);
            }
        }
    }
    live.set_last_reload(info);
}

/// Until `stop` or the sender is gone: one reload per request, off the reactor, each reported
/// in the log and in `status`, and bracketed for the service manager by `RELOADING=1` …
/// `READY=1`.
pub async fn serve(
    live: LiveConfig,
    notices: Notices,
    log_filter: Option<LogFilter>,
    log_from_env: bool,
    mut requests: tokio::sync::mpsc::Receiver<()>,
    stop: tokio_util::sync::CancellationToken,
) {
    let log_filter = log_filter.map(Arc::new);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            request = requests.recv() => if request.is_none() {
                // No more requests can come (SIGHUP could not be handled): reloads are off,
                // which is not a reason to stop the daemon, so wait for the stop.
                stop.cancelled().await;
                break;
            },
        }
        super::notify::reloading();
        let (config, filter) = (live.clone(), log_filter.clone());
        let done =
            tokio::task::spawn_blocking(move || reload(&config, filter.as_deref(), log_from_env))
                .await;
        match done {
            Ok(info) => report(&live, &notices, info),
            Err(error) => tracing::error!("config reload task failed: {error}"),
        }
        super::notify::reloaded();
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytesize::ByteSize;

    fn changed(edit: fn(&mut Config)) -> Config {
        let mut config = Config::default();
        edit(&mut config);
        config
    }

    #[test]
    fn which_keys_are_live_and_which_need_a_restart() {
        type Edit = fn(&mut Config);
        // (what changes, the key, applied live?)
        let cases: &[(Edit, &str, bool)] = &[
            (
                |c| c.catalog.url = "postgresql:///ingestd".into(),
                "catalog.url",
                false,
            ),
            (
                |c| c.catalog.password_file = Some("/etc/ingestd/pw".into()),
                "catalog.password_file",
                false,
            ),
            (|c| c.catalog.ef_search = 400, "catalog.ef_search", true),
            (
                |c| c.ingest.max_file_size = ByteSize::kb(1),
                "ingest.max_file_size",
                true,
            ),
            (
                |c| c.ingest.allowed_formats = vec!["csv".into()],
                "ingest.allowed_formats",
                true,
            ),
            (|c| c.ingest.settle_ms = 50, "ingest.settle_ms", true),
            (
                |c| c.ingest.parse_timeout_secs = 5,
                "ingest.parse_timeout_secs",
                true,
            ),
            (
                |c| c.ingest.parse_memory_limit = ByteSize::gb(1),
                "ingest.parse_memory_limit",
                true,
            ),
            (|c| c.ingest.max_cells = 10, "ingest.max_cells", true),
            (
                |c| c.ingest.max_unzipped_size = ByteSize::mb(1),
                "ingest.max_unzipped_size",
                true,
            ),
            (
                |c| c.server.admins = vec!["@ops".into()],
                "server.admins",
                true,
            ),
            (
                |c| c.server.log_level = "debug".into(),
                "server.log_level",
                true,
            ),
            (
                |c| c.server.shutdown_timeout_secs = 5,
                "server.shutdown_timeout_secs",
                true,
            ),
            (|c| c.embedding.batch_size = 8, "embedding.batch_size", true),
            (
                |c| c.embedding.openai.model = "m".into(),
                "embedding.openai.model",
                true,
            ),
            (
                |c| c.paths.storage_root = "/x".into(),
                "paths.storage_root",
                false,
            ),
            (
                |c| c.paths.drop_root = "/x".into(),
                "paths.drop_root",
                false,
            ),
            (|c| c.paths.database = "/x".into(), "paths.database", false),
            (|c| c.paths.socket = "/x".into(), "paths.socket", false),
            (
                |c| c.server.socket_mode = "0600".into(),
                "server.socket_mode",
                false,
            ),
            (
                |c| c.server.socket_group = "ops".into(),
                "server.socket_group",
                false,
            ),
            (|c| c.ingest.workers = 8, "ingest.workers", false),
            (
                |c| c.embedding.provider = crate::config::Provider::Hashing,
                "embedding.provider",
                false,
            ),
            (
                |c| c.server.pid_file = "/x".into(),
                "server.pid_file",
                false,
            ),
        ];
        let old = Config::default();
        for (edit, key, live) in cases {
            let new = changed(*edit);
            let plan = plan(&old, &new, false);
            if *live {
                assert_eq!(plan.applied, vec![key.to_string()], "{key}");
                assert!(plan.refused.is_empty(), "{key}");
                assert_eq!(plan.merged, new, "{key}: the new value is in force");
            } else {
                assert!(plan.applied.is_empty(), "{key}");
                assert_eq!(plan.refused.len(), 1, "{key}");
                assert_eq!(plan.refused[0].key, *key);
                assert!(plan.refused[0].reason.contains("restart"), "{key}");
                assert_eq!(plan.merged, old, "{key}: the old value stays");
            }
        }
    }

    #[test]
    fn a_mixed_change_applies_the_live_keys_and_keeps_the_rest() {
        let old = Config::default();
        let new = changed(|c| {
            c.ingest.max_file_size = ByteSize::kb(1);
            c.paths.storage_root = "/elsewhere".into();
        });
        let plan = plan(&old, &new, false);
        assert_eq!(plan.applied, vec!["ingest.max_file_size"]);
        assert_eq!(plan.refused[0].key, "paths.storage_root");
        assert_eq!(plan.merged.ingest.max_file_size, ByteSize::kb(1));
        assert_eq!(plan.merged.paths.storage_root, old.paths.storage_root);
    }

    #[test]
    fn rust_log_keeps_the_log_level() {
        let new = changed(|c| c.server.log_level = "debug".into());
        let plan = plan(&Config::default(), &new, true);
        assert!(plan.applied.is_empty());
        assert!(plan.refused[0].reason.contains("RUST_LOG"));
    }

    #[test]
    fn no_change_is_an_empty_plan() {
        let plan = plan(&Config::default(), &Config::default(), false);
        assert!(plan.applied.is_empty() && plan.refused.is_empty());
    }

    /// Flattened `section.key` names of the default config.
    fn leaf_keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (name, value) in table {
            let full = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            match value {
                toml::Value::Table(inner) => leaf_keys(inner, &full, out),
                _ => out.push(full),
            }
        }
    }

    #[test]
    fn every_config_key_is_classified() {
        // Optional keys are left out of the TOML when unset: set them, so they count.
        let mut config = Config::default();
        config.embedding.openai.api_key_file = Some("/k".into());
        config.catalog.password_file = Some("/p".into());
        let table = toml::Table::try_from(config).unwrap();
        let mut keys = Vec::new();
        leaf_keys(&table, "", &mut keys);
        for key in &keys {
            assert!(
                KEYS.iter().any(|k| k.name == key),
                "{key} is not in the reload table: decide whether it can change live"
            );
        }
        assert_eq!(
            keys.len(),
            KEYS.len(),
            "the table names a key the config lacks"
        );
    }

    /// `section.key` of every row of the key tables in docs/configuration.md: the tables under
    /// a `` ### `[section]` `` heading whose first column is `key`.
    fn documented_keys() -> Vec<String> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
        let text = std::fs::read_to_string(path).expect("read docs/configuration.md");
        let mut section: Option<&str> = None;
        let mut in_key_table = false;
        let mut keys = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') {
                // A `[section]` heading opens a section; any other heading at its level or
                // above closes it. Deeper headings (`#### Parse workers`) stay inside it.
                let title = line.trim_start_matches('#').trim();
                let level = line.len() - line.trim_start_matches('#').len();
                if let Some(name) = title.strip_prefix("`[").and_then(|t| t.strip_suffix("]`")) {
                    section = Some(name);
                } else if level <= 3 {
                    section = None;
                }
                in_key_table = false;
                continue;
            }
            if !line.starts_with('|') {
                in_key_table = false;
                continue;
            }
            let first = line.split('|').nth(1).unwrap_or("").trim();
            if first == "key" {
                in_key_table = section.is_some();
                continue;
            }
            if !in_key_table || first.starts_with("---") {
                continue;
            }
            let name = first.trim_matches('`');
            keys.push(format!("{}.{name}", section.unwrap()));
        }
        keys
    }

    #[test]
    fn docs_list_every_config_key_and_no_other() {
        let documented = documented_keys();
        // The parser itself: it must find the tables, or the checks below prove nothing.
        assert!(documented.len() > 30, "{documented:?}");
        assert!(documented.contains(&"embedding.openai.max_in_flight".to_string()));
        let missing: Vec<&str> = KEYS
            .iter()
            .map(|k| k.name)
            .filter(|name| !documented.iter().any(|d| d == name))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/configuration.md lacks {missing:?}: add a row to its section's table"
        );
        let unknown: Vec<&String> = documented
            .iter()
            .filter(|d| !KEYS.iter().any(|k| k.name == d.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "docs/configuration.md documents {unknown:?}, which the config does not have"
        );
        let mut unique = documented.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), documented.len(), "a key is documented twice");
    }

    #[test]
    fn an_invalid_file_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ingestd.toml");
        std::fs::write(&path, "[ingest]\nmax_file_size = \"1MB\"\n").unwrap();
        let live = LiveConfig::new(Arc::new(Config::load_with_env(&path, []).unwrap()));
        std::fs::write(&path, "[ingest]\nmax_file_size = \"2MB\"\nsettle_ms = 0\n").unwrap();
        let info = reload(&live, None, false);
        assert!(
            info.error.as_deref().unwrap().contains("ingest.settle_ms"),
            "{info:?}"
        );
        assert_eq!(live.get().ingest.max_file_size, ByteSize::mb(1));
        std::fs::write(&path, "[ingest]\nmax_file_size = \"2MB\"\n").unwrap();
        let info = reload(&live, None, false);
        assert_eq!(info.error, None);
        assert_eq!(info.applied, vec!["ingest.max_file_size"]);
        assert_eq!(live.get().ingest.max_file_size, ByteSize::mb(2));
    }
}
