//! Configuration: one TOML file, a default for every key, `INGESTD_<SECTION>_<KEY>` overrides,
//! relative paths resolved against the file's folder, and errors that name the key.
//!
//! `config/ingestd.toml` is the commented example and `docs/configuration.md` the reference;
//! a key added here is added there in the same change. Loading is pure apart from reading the
//! file, so tests pass their own environment.

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the daemon looks when neither `--config` nor `$INGESTD_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/ingestd/ingestd.toml";
/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "INGESTD_CONFIG";
/// Environment variable naming the control socket (clients only).
pub const SOCKET_ENV: &str = "INGESTD_SOCKET";
/// Prefix of key overrides: `INGESTD_INGEST_SETTLE_MS=200`.
pub const OVERRIDE_PREFIX: &str = "INGESTD_";

/// Default `ingest.parse_memory_limit`, in MB (see docs/configuration.md for why this size).
pub const DEFAULT_PARSE_MEMORY_MB: u64 = 512;
/// Smallest `ingest.parse_memory_limit`. A worker maps its own program and a reader's buffers
/// before the first byte of a file (about 15 MB); far below this, ordinary files would be
/// rejected as needing too much memory, which is a config mistake, not a verdict on the files.
pub const MIN_PARSE_MEMORY_MB: u64 = 64;
/// Largest `ingest.parse_timeout_secs`: an hour is already far past any file we accept.
pub const MAX_PARSE_TIMEOUT_SECS: u64 = 3600;

/// Formats the daemon can read. `allowed_formats` must be a subset.
pub const KNOWN_FORMATS: &[&str] = &["csv", "tsv", "xls", "xlsx", "xlsm", "parquet"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}: {reason}")]
    Env { var: String, reason: String },
    #[error("config key {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub paths: Paths,
    pub ingest: Ingest,
    pub embedding: Embedding,
    pub server: Server,
    pub catalog: CatalogConfig,
    pub cluster: ClusterConfig,
    /// The file this was read from (not a key).
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Paths {
    pub drop_root: PathBuf,
    pub storage_root: PathBuf,
    pub database: PathBuf,
    pub socket: PathBuf,
    pub audit_log: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Self {
            drop_root: "/var/lib/ingestd/drop".into(),
            storage_root: "/var/lib/ingestd/ingest_sources".into(),
            database: "/var/lib/ingestd/ingestd.sqlite".into(),
            socket: "/run/ingestd/ingestd.sock".into(),
            audit_log: "/var/lib/ingestd/audit.jsonl".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ingest {
    /// Largest file accepted ("50MB" = 50,000,000 bytes; "50MiB" also works).
    pub max_file_size: ByteSize,
    pub allowed_formats: Vec<String>,
    /// How long size and mtime must stay unchanged before a file is taken.
    pub settle_ms: u64,
    /// Stored versions kept per source.
    pub retain_versions: u32,
    /// Files validated and stored at once.
    pub workers: usize,
    /// Most address space a parse worker may map while it reads one file. Reading a file that
    /// needs more fails inside the worker, and the file is rejected as too big to read.
    pub parse_memory_limit: ByteSize,
    /// Longest a parse worker may take over one file before it is killed and the file rejected.
    pub parse_timeout_secs: u64,
    /// Most cells a spreadsheet may hold (rows × columns of its used range).
    pub max_cells: u64,
    /// Most bytes the parts of a zipped spreadsheet may expand to.
    pub max_unzipped_size: ByteSize,
    /// Mode of stored copies, in octal ("0640"); their folders get x wherever r is set
    /// ("0750"). Set explicitly on every file and folder, so the umask never decides.
    pub storage_mode: String,
    /// The user parse workers read as when the daemon runs as root (resolved at start-up; a
    /// missing user stops the start). Ignored when the daemon is not root.
    pub worker_user: String,
}

impl Default for Ingest {
    fn default() -> Self {
        Self {
            max_file_size: ByteSize::mb(50),
            allowed_formats: KNOWN_FORMATS.iter().map(|s| s.to_string()).collect(),
            settle_ms: 500,
            retain_versions: 10,
            workers: 2,
            parse_memory_limit: ByteSize::mb(DEFAULT_PARSE_MEMORY_MB),
            parse_timeout_secs: 30,
            max_cells: 50_000_000,
            max_unzipped_size: ByteSize::gb(1),
            storage_mode: DEFAULT_STORAGE_MODE.into(),
            worker_user: DEFAULT_WORKER_USER.to_string(),
        }
    }
}

/// Default `ingest.storage_mode`.
pub const DEFAULT_STORAGE_MODE: &str = "0640";

/// The user parse workers read as when `ingest.worker_user` is not set.
pub const DEFAULT_WORKER_USER: &str = "nobody";

/// Parse an `ingest.storage_mode` value: octal, read and write for the owner, no execute
/// bits, nothing writable by anyone else.
pub fn parse_storage_mode(text: &str) -> Result<u32, String> {
    let digits = text.trim();
    let mode = (digits.len() >= 3 && digits.len() <= 4)
        .then(|| u32::from_str_radix(digits, 8).ok())
        .flatten()
        .ok_or_else(|| format!("{text:?} is not an octal mode such as \"0640\""))?;
    if mode > 0o777 {
        return Err(format!(
            "{text:?} sets special bits; use permission bits only"
        ));
    }
    if mode & 0o600 != 0o600 {
        return Err(format!("{text:?} must let the owner read and write (0600)"));
    }
    if mode & 0o133 != 0 {
        return Err(format!(
            "{text:?} must not make stored copies executable or writable by others"
        ));
    }
    Ok(mode)
}

impl Ingest {
    /// (file mode, folder mode) for stored copies; the default if the key is invalid (which
    /// `validate` refuses before any config is used).
    pub fn storage_modes(&self) -> (u32, u32) {
        let file = parse_storage_mode(&self.storage_mode).unwrap_or(0o640);
        (file, crate::dirs::dir_mode(file))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Minilm,
    Openai,
    Hashing,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Minilm => "minilm",
            Provider::Openai => "openai",
            Provider::Hashing => "hashing",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Embedding {
    pub provider: Provider,
    pub concurrency: u32,
    pub batch_size: u32,
    pub max_attempts: u32,
    pub model_dir: PathBuf,
    pub auto_fetch: bool,
    pub openai: OpenAi,
}

impl Default for Embedding {
    fn default() -> Self {
        Self {
            provider: Provider::Minilm,
            concurrency: 3,
            batch_size: 32,
            max_attempts: 3,
            model_dir: "/var/lib/ingestd/models/all-MiniLM-L6-v2".into(),
            auto_fetch: false,
            openai: OpenAi::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAi {
    pub base_url: String,
    pub model: String,
    /// Name of the environment variable holding the API key (the key itself is never in here).
    /// An unset or empty variable means no key (local servers need none).
    pub api_key_env: String,
    /// A file holding the API key (a secrets mount, a systemd credential); wins over
    /// `api_key_env` when set.
    pub api_key_file: Option<PathBuf>,
    /// Passed to the server as `dimensions`; 0: the model's own size, learned from one
    /// request.
    pub dimensions: u32,
    /// Longest one request may take, seconds.
    pub timeout_secs: u64,
    /// Requests one job keeps in flight at once (each of `embedding.batch_size` texts).
    pub max_in_flight: u32,
}

impl Default for OpenAi {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:11434".into(),
            model: "nomic-embed-text".into(),
            api_key_env: "OPENAI_API_KEY".into(),
            api_key_file: None,
            dimensions: 0,
            timeout_secs: 60,
            max_in_flight: 4,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Server {
    /// Octal permission bits of the socket file.
    pub socket_mode: String,
    /// Group owning the socket; empty: the daemon's primary group.
    pub socket_group: String,
    /// Users or `@groups` allowed to change state; empty: anyone who can connect.
    pub admins: Vec<String>,
    /// How long a graceful stop may take before the daemon exits anyway.
    pub shutdown_timeout_secs: u64,
    /// Log filter (`info`, `warn,ingestd=debug`); `RUST_LOG`, when set, takes precedence.
    pub log_level: String,
    /// Pid file written by `--daemonize` (and by `--pid-file` in the foreground).
    pub pid_file: PathBuf,
    /// Log file of `--daemonize`; empty: `ingestd.log` beside `paths.database`.
    pub log_file: PathBuf,
    /// Connections served at once, all callers together; more are refused with a reason.
    pub max_connections: u32,
    /// Of `max_connections`, the slots only root, the daemon's user and `admins` may take,
    /// so no flood by other users locks an administrator out.
    pub admin_connections: u32,
    /// Connections one uid that is not an admin may hold at once.
    pub max_connections_per_uid: u32,
    /// `events` followers one uid that is not an admin may hold at once (each is also a
    /// connection).
    pub max_followers_per_uid: u32,
    /// Seconds a new connection has to send its first complete request line.
    pub first_request_timeout_secs: u64,
    /// Seconds a connection may wait between requests before it is closed.
    pub idle_timeout_secs: u64,
    /// Targets one request may name (`rm` targets, `reembed` sources, job ids, columns).
    pub max_targets: u32,
    /// `show --preview` parse workers one uid that is not an admin may run at once.
    pub previews_per_uid: u32,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            socket_mode: "0660".into(),
            socket_group: String::new(),
            admins: Vec::new(),
            shutdown_timeout_secs: 20,
            log_level: "info".into(),
            pid_file: "/run/ingestd/ingestd.pid".into(),
            log_file: PathBuf::new(),
            max_connections: 512,
            admin_connections: 16,
            max_connections_per_uid: 32,
            max_followers_per_uid: 4,
            first_request_timeout_secs: 5,
            idle_timeout_secs: 60,
            max_targets: 1000,
            previews_per_uid: 2,
        }
    }
}

/// Where the catalog lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// `paths.database`, owned by this daemon alone (the embedded default).
    #[default]
    Sqlite,
    /// `catalog.url`, shared by the nodes of a cluster.
    Postgres,
}

/// `[catalog]`: which catalog the daemon runs on, and the PostgreSQL one (`backend =
/// "postgres"`, and what `ingestd catalog migrate` copies into).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogConfig {
    pub backend: Backend,
    /// A libpq URL, e.g. `postgresql:///ingestd?host=/run/postgresql&user=ingestd`; empty:
    /// none. Must not hold a password.
    pub url: String,
    /// A file holding the database password (never logged); unset or empty: none. Optional
    /// like `embedding.openai.api_key_file`, so `check-config` output loads back unchanged.
    pub password_file: Option<PathBuf>,
    /// PostgreSQL: candidates an HNSW search keeps (pgvector's `hnsw.ef_search`), 1–1000;
    /// more is slower and closer to the exact answer.
    pub ef_search: u32,
}

impl CatalogConfig {
    /// `ef_search` unless set: at 100,000 vectors its top-10 overlap with the exact scan is
    /// at least 0.95 (tests/e2e/pg/search.rs).
    pub const DEFAULT_EF_SEARCH: u32 = 100;
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            backend: Backend::default(),
            url: String::new(),
            password_file: None,
            ef_search: Self::DEFAULT_EF_SEARCH,
        }
    }
}

/// `[cluster]`: this daemon as one node of several on a PostgreSQL catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's name; empty: the host name.
    pub node: String,
    /// A processing job whose node stops renewing its lease is taken over after this.
    pub lease_secs: u64,
    /// Every node mounts the same `paths.storage_root`, so any node can run any job.
    pub shared_storage: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            node: String::new(),
            lease_secs: 30,
            shared_storage: false,
        }
    }
}

impl ClusterConfig {
    /// This node's name: `node`, else the host name.
    pub fn node_name(&self) -> String {
        if self.node.trim().is_empty() {
            host_name()
        } else {
            self.node.trim().to_string()
        }
    }
}

/// This machine's host name, the default node name (`cluster.node`, `catalog migrate --node`).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// A PostgreSQL URL (`catalog.url`, `catalog migrate --to`) as the `postgres` crate reads it,
/// refused with the reason when it does not parse, holds a password (URLs are shown in logs and
/// by `check-config`), or names no database.
pub fn pg_url(url: &str) -> Result<postgres::Config, String> {
    let config: postgres::Config = url.parse().map_err(|e| {
        format!(
            "{url:?} is not a PostgreSQL URL ({e}); \
             e.g. \"postgresql:///ingestd?host=/run/postgresql&user=ingestd\""
        )
    })?;
    if config.get_password().is_some() {
        return Err(
            "holds a password; URLs are shown in logs and by check-config, so put the \
                    password in a file named by catalog.password_file instead"
                .into(),
        );
    }
    if config.get_dbname().is_none() {
        return Err(format!(
            "{url:?} names no database (postgresql:///DATABASE?host=…)"
        ));
    }
    Ok(config)
}

impl Config {
    /// The config file to read: `explicit`, else `$INGESTD_CONFIG`, else the system default.
    pub fn locate(explicit: Option<&Path>) -> PathBuf {
        explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(CONFIG_ENV).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
    }

    /// Read `path` with this process's environment overrides.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// Read `path`, apply overrides from `env`, resolve paths, validate.
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
        apply_env_overrides(&mut table, env)?;
        let mut config: Config =
            Config::deserialize(table).map_err(|e: toml::de::Error| ConfigError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let base = match path.parent() {
            // A bare file name (`--config ingestd.toml`) has the empty path as its parent.
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let base = std::path::absolute(&base).unwrap_or(base);
        config.resolve_paths(&base);
        config.file = Some(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()));
        config.validate()?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        for path in [
            &mut self.paths.drop_root,
            &mut self.paths.storage_root,
            &mut self.paths.database,
            &mut self.paths.socket,
            &mut self.paths.audit_log,
            &mut self.embedding.model_dir,
            &mut self.server.pid_file,
            &mut self.server.log_file,
        ] {
            // Empty means "not set" (`server.log_file`), not "the config's folder".
            if path.is_relative() && !path.as_os_str().is_empty() {
                *path = normalize(&base.join(&*path));
            }
        }
        if let Some(path) = self.embedding.openai.api_key_file.as_mut()
            && path.is_relative()
        {
            *path = normalize(&base.join(&*path));
        }
        // `password_file = ""` (the example file's value) means none.
        if self
            .catalog
            .password_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            self.catalog.password_file = None;
        }
        if let Some(path) = self.catalog.password_file.as_mut()
            && path.is_relative()
        {
            *path = normalize(&base.join(&*path));
        }
    }

    /// Check every key whose type alone does not make it valid.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: String| Err(ConfigError::Invalid { key, reason });
        if self.ingest.max_file_size.as_u64() == 0 {
            return invalid("ingest.max_file_size", "must be larger than 0".into());
        }
        if self.ingest.allowed_formats.is_empty() {
            return invalid(
                "ingest.allowed_formats",
                format!("must name at least one of {}", KNOWN_FORMATS.join(", ")),
            );
        }
        for format in &self.ingest.allowed_formats {
            if !KNOWN_FORMATS.contains(&format.as_str()) {
                return invalid(
                    "ingest.allowed_formats",
                    format!(
                        "{format:?} is not a format ingestd reads; known: {}",
                        KNOWN_FORMATS.join(", ")
                    ),
                );
            }
        }
        if !(10..=600_000).contains(&self.ingest.settle_ms) {
            return invalid(
                "ingest.settle_ms",
                format!("{} is out of range 10..=600000", self.ingest.settle_ms),
            );
        }
        if self.ingest.retain_versions == 0 {
            return invalid("ingest.retain_versions", "must be at least 1".into());
        }
        if let Err(reason) = parse_storage_mode(&self.ingest.storage_mode) {
            return invalid("ingest.storage_mode", reason);
        }
        if !(1..=64).contains(&self.ingest.workers) {
            return invalid("ingest.workers", "must be between 1 and 64".into());
        }
        if self.ingest.parse_memory_limit.as_u64() < ByteSize::mb(MIN_PARSE_MEMORY_MB).as_u64() {
            return invalid(
                "ingest.parse_memory_limit",
                format!(
                    "{} is too small: a parse worker needs at least {MIN_PARSE_MEMORY_MB}MB to \
                     read ordinary files",
                    self.ingest.parse_memory_limit.display().si()
                ),
            );
        }
        if !(1..=MAX_PARSE_TIMEOUT_SECS).contains(&self.ingest.parse_timeout_secs) {
            return invalid(
                "ingest.parse_timeout_secs",
                format!(
                    "{} is out of range 1..={MAX_PARSE_TIMEOUT_SECS}",
                    self.ingest.parse_timeout_secs
                ),
            );
        }
        if self.ingest.worker_user.trim().is_empty() {
            return invalid("ingest.worker_user", "must name a user".into());
        }
        if self.ingest.max_cells == 0 {
            return invalid("ingest.max_cells", "must be at least 1".into());
        }
        if self.ingest.max_unzipped_size.as_u64() == 0 {
            return invalid("ingest.max_unzipped_size", "must be larger than 0".into());
        }
        if !(1..=64).contains(&self.embedding.concurrency) {
            return invalid("embedding.concurrency", "must be between 1 and 64".into());
        }
        if !(1..=4096).contains(&self.embedding.batch_size) {
            return invalid("embedding.batch_size", "must be between 1 and 4096".into());
        }
        if !(1..=100).contains(&self.embedding.max_attempts) {
            return invalid("embedding.max_attempts", "must be between 1 and 100".into());
        }
        if !(1..=3600).contains(&self.embedding.openai.timeout_secs) {
            return invalid(
                "embedding.openai.timeout_secs",
                "must be between 1 and 3600".into(),
            );
        }
        if !(1..=64).contains(&self.embedding.openai.max_in_flight) {
            return invalid(
                "embedding.openai.max_in_flight",
                "must be between 1 and 64".into(),
            );
        }
        if self.embedding.openai.dimensions > 65_536 {
            return invalid(
                "embedding.openai.dimensions",
                "must be at most 65536 (0: the model's own size)".into(),
            );
        }
        if let Err(reason) = self.socket_mode() {
            return invalid("server.socket_mode", reason);
        }
        for admin in &self.server.admins {
            if admin.trim().is_empty() || admin == "@" {
                return invalid("server.admins", "names must not be empty".into());
            }
        }
        if !(1..=3600).contains(&self.server.shutdown_timeout_secs) {
            return invalid(
                "server.shutdown_timeout_secs",
                format!(
                    "{} is out of range 1..=3600",
                    self.server.shutdown_timeout_secs
                ),
            );
        }
        if let Err(reason) = check_log_filter(&self.server.log_level) {
            return invalid("server.log_level", reason);
        }
        if self.server.pid_file.as_os_str().is_empty() {
            return invalid("server.pid_file", "must not be empty".into());
        }
        let server = &self.server;
        let counts: [(&str, u64, u64, u64); 9] = [
            (
                "server.max_connections",
                server.max_connections.into(),
                2,
                65_536,
            ),
            (
                "server.admin_connections",
                server.admin_connections.into(),
                1,
                65_535,
            ),
            (
                "server.max_connections_per_uid",
                server.max_connections_per_uid.into(),
                1,
                65_536,
            ),
            (
                "server.max_followers_per_uid",
                server.max_followers_per_uid.into(),
                0,
                65_536,
            ),
            ("catalog.ef_search", self.catalog.ef_search.into(), 1, 1000),
            (
                "server.first_request_timeout_secs",
                server.first_request_timeout_secs,
                1,
                3600,
            ),
            (
                "server.idle_timeout_secs",
                server.idle_timeout_secs,
                1,
                86_400,
            ),
            ("server.max_targets", server.max_targets.into(), 1, 100_000),
            (
                "server.previews_per_uid",
                server.previews_per_uid.into(),
                0,
                1000,
            ),
        ];
        for (key, value, low, high) in counts {
            if !(low..=high).contains(&value) {
                return invalid(key, format!("{value} is out of range {low}..={high}"));
            }
        }
        if !self.catalog.url.trim().is_empty()
            && let Err(reason) = pg_url(&self.catalog.url)
        {
            return invalid("catalog.url", reason);
        }
        if self.catalog.backend == Backend::Postgres && self.catalog.url.trim().is_empty() {
            return invalid(
                "catalog.url",
                "catalog.backend is \"postgres\" but no catalog.url names the database".into(),
            );
        }
        if !(5..=3600).contains(&self.cluster.lease_secs) {
            return invalid(
                "cluster.lease_secs",
                format!("{} is out of range 5..=3600", self.cluster.lease_secs),
            );
        }
        let node = &self.cluster.node;
        if node.len() > 64
            || node
                .chars()
                .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return invalid(
                "cluster.node",
                format!(
                    "{node:?}: at most 64 letters, digits, '-', '_' or '.' (empty: the host name)"
                ),
            );
        }
        if server.admin_connections >= server.max_connections {
            return invalid(
                "server.admin_connections",
                format!(
                    "{} leaves no slot for other users: it must be less than \
                     server.max_connections ({})",
                    server.admin_connections, server.max_connections
                ),
            );
        }
        Ok(())
    }

    /// `server.socket_mode` as permission bits.
    pub fn socket_mode(&self) -> Result<u32, String> {
        let text = self.server.socket_mode.trim();
        let digits = text.strip_prefix("0o").unwrap_or(text);
        match u32::from_str_radix(digits, 8) {
            Ok(mode) if mode <= 0o777 => Ok(mode),
            _ => Err(format!("{text:?} is not an octal permission like \"0660\"")),
        }
    }

    /// The file types that may be dropped and can be read, for messages: ".csv, .tsv, …".
    pub fn accepted_list(&self) -> String {
        self.ingest
            .allowed_formats
            .iter()
            .filter(|f| crate::format::Format::from_extension(f).is_some_and(|f| f.readable()))
            .map(|f| format!(".{f}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A log filter is a comma-separated list of `LEVEL` or `TARGET=LEVEL`. Stricter than
/// `tracing`'s own parser, which takes a misspelt level as a target name and logs nothing.
pub fn check_log_filter(filter: &str) -> Result<(), String> {
    const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];
    if filter.trim().is_empty() {
        return Err(format!("must not be empty; one of {}", LEVELS.join(", ")));
    }
    for directive in filter.split(',').map(str::trim) {
        let (target, level) = match directive.split_once('=') {
            Some((target, level)) => (Some(target), level),
            None => (None, directive),
        };
        let target_ok = target.is_none_or(|t| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        });
        if !target_ok || !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{directive:?} is not LEVEL or TARGET=LEVEL with LEVEL one of {}",
                LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}

/// Lexically remove `.` and `..` so messages show `/repo/data/drop`, not `/repo/config/../data`.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Apply `INGESTD_<SECTION>_<KEY>` variables onto the parsed file. The section and key are found
/// by matching against the defaults, so keys with underscores (`max_file_size`) and nested
/// sections (`embedding.openai`) work; a value is taken as a string where the key is a string,
/// else parsed as a TOML value (`200`, `true`, `["csv","xlsx"]`).
fn apply_env_overrides(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    // Optional keys are left out of the TOML while unset: give them a value so they can be
    // overridden too (their type decides how a value is read; paths are strings).
    let mut with_optional = Config::default();
    with_optional.embedding.openai.api_key_file = Some(PathBuf::new());
    with_optional.catalog.password_file = Some(PathBuf::new());
    let defaults = toml::Table::try_from(with_optional).expect("defaults serialize");
    let mut sections: Vec<(String, Vec<&str>)> = Vec::new();
    collect_sections(&defaults, &mut Vec::new(), &mut sections);
    // Longest section names first so `embedding_openai_model` is not read as `embedding`.
    sections.sort_by_key(|(env_name, _)| std::cmp::Reverse(env_name.len()));

    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(OVERRIDE_PREFIX) && k != CONFIG_ENV && k != SOCKET_ENV)
        .collect();
    vars.sort();
    for (var, value) in vars {
        let rest = var[OVERRIDE_PREFIX.len()..].to_ascii_lowercase();
        let found = sections.iter().find_map(|(env_name, path)| {
            let key = rest.strip_prefix(env_name.as_str())?.strip_prefix('_')?;
            let section = lookup(&defaults, path)?;
            let default = section.get(key)?;
            (!default.is_table()).then(|| (path.clone(), key.to_string(), default.clone()))
        });
        let Some((path, key, default)) = found else {
            return Err(ConfigError::Env {
                var,
                reason: "names no config key (expected INGESTD_<SECTION>_<KEY>, e.g. \
                         INGESTD_INGEST_SETTLE_MS)"
                    .into(),
            });
        };
        let parsed = if default.is_str() {
            toml::Value::String(value)
        } else {
            let doc = format!("v = {value}");
            match doc.parse::<toml::Table>() {
                Ok(mut t) => t.remove("v").expect("v parsed"),
                Err(_) => toml::Value::String(value),
            }
        };
        let mut section = &mut *table;
        for name in &path {
            section = section
                .entry(name.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .ok_or_else(|| ConfigError::Env {
                    var: var.clone(),
                    reason: format!("[{}] in the file is not a table", path.join(".")),
                })?;
        }
        section.insert(key, parsed);
    }
    Ok(())
}

fn collect_sections<'a>(
    table: &'a toml::Table,
    prefix: &mut Vec<&'a str>,
    out: &mut Vec<(String, Vec<&'a str>)>,
) {
    for (name, value) in table {
        if let toml::Value::Table(inner) = value {
            prefix.push(name);
            out.push((prefix.join("_"), prefix.clone()));
            collect_sections(inner, prefix, out);
            prefix.pop();
        }
    }
}

fn lookup<'a>(table: &'a toml::Table, path: &[&str]) -> Option<&'a toml::Table> {
    let mut current = table;
    for name in path {
        current = current.get(*name)?.as_table()?;
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conf").join("ingestd.toml");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        Config::load_with_env(
            &path,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = load("", &[]).unwrap();
        assert_eq!(config.ingest, Ingest::default());
        assert_eq!(config.paths, Paths::default());
    }

    #[test]
    fn the_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/ingestd.toml");
        let config = Config::load_with_env(&path, []).unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(config.paths.drop_root, root.join("data/drop"));
        assert_eq!(config.ingest.max_file_size, ByteSize::mb(50));
    }

    #[test]
    fn the_server_config_loads_with_the_system_layout() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/ingestd.server.toml");
        let config = Config::load_with_env(&path, []).unwrap();
        let defaults = Config::default();
        assert_eq!(config.paths, defaults.paths);
        assert_eq!(config.ingest, defaults.ingest);
        assert_eq!(config.embedding, defaults.embedding);
        assert_eq!(config.server.socket_group, "ingestd");
    }

    #[test]
    fn relative_paths_resolve_against_the_file() {
        let config = load("[paths]\ndrop_root = \"../data/drop\"\n", &[]).unwrap();
        let file_dir = config.file.unwrap().parent().unwrap().to_path_buf();
        assert_eq!(
            config.paths.drop_root,
            file_dir.parent().unwrap().join("data/drop")
        );
    }

    #[test]
    fn a_bare_file_name_resolves_against_the_working_directory() {
        let config = Config::load_with_env(
            Path::new("config/ingestd.toml")
                .strip_prefix("config")
                .unwrap(),
            [],
        );
        // Run from the crate root there is no ./ingestd.toml; the error names it plainly.
        assert!(matches!(config, Err(ConfigError::Read { .. })));
        let base = std::env::current_dir().unwrap();
        let mut c = Config::default();
        c.paths.drop_root = "data/drop".into();
        c.resolve_paths(&std::path::absolute(Path::new(".")).unwrap());
        assert_eq!(c.paths.drop_root, base.join("data/drop"));
    }

    #[test]
    fn env_overrides_win_and_keep_types() {
        let config = load(
            "[ingest]\nsettle_ms = 900\n",
            &[
                ("INGESTD_INGEST_SETTLE_MS", "200"),
                ("INGESTD_INGEST_MAX_FILE_SIZE", "1MB"),
                ("INGESTD_INGEST_ALLOWED_FORMATS", "[\"csv\"]"),
                ("INGESTD_EMBEDDING_OPENAI_MODEL", "true"),
                ("INGESTD_SERVER_SOCKET_MODE", "0600"),
                ("INGESTD_PATHS_DROP_ROOT", "/srv/drop"),
                (
                    "INGESTD_EMBEDDING_OPENAI_API_KEY_FILE",
                    "/run/credentials/key",
                ),
                ("INGESTD_EMBEDDING_OPENAI_DIMENSIONS", "256"),
                ("INGESTD_CONFIG", "/ignored"),
            ],
        )
        .unwrap();
        assert_eq!(
            config.embedding.openai.api_key_file,
            Some(PathBuf::from("/run/credentials/key"))
        );
        assert_eq!(config.embedding.openai.dimensions, 256);
        assert_eq!(config.ingest.settle_ms, 200);
        assert_eq!(config.ingest.max_file_size, ByteSize::mb(1));
        assert_eq!(config.ingest.allowed_formats, vec!["csv"]);
        assert_eq!(config.embedding.openai.model, "true");
        assert_eq!(config.socket_mode(), Ok(0o600));
        assert_eq!(config.paths.drop_root, PathBuf::from("/srv/drop"));
    }

    #[test]
    fn storage_modes_are_octal_private_enough_and_give_folders_x() {
        assert_eq!(parse_storage_mode("0640"), Ok(0o640));
        assert_eq!(parse_storage_mode("600"), Ok(0o600));
        assert_eq!(parse_storage_mode("0644"), Ok(0o644));
        for bad in ["rw", "0400", "0660", "0755", "4640", "06400", "", "0o640"] {
            assert!(parse_storage_mode(bad).is_err(), "{bad}");
        }
        let ingest = Ingest::default();
        assert_eq!(ingest.storage_modes(), (0o640, 0o750));
    }

    #[test]
    fn errors_name_the_key() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            ("[ingest]\nsettle_ms = \"soon\"\n", &[], "settle_ms"),
            ("[ingest]\nsetle_ms = 5\n", &[], "setle_ms"),
            (
                "[ingest]\nallowed_formats = [\"pdf\"]\n",
                &[],
                "ingest.allowed_formats",
            ),
            (
                "[server]\nsocket_mode = \"rw\"\n",
                &[],
                "server.socket_mode",
            ),
            ("[embedding]\nprovider = \"gpt\"\n", &[], "provider"),
            ("[catalog]\nef_search = 0\n", &[], "catalog.ef_search"),
            ("[catalog]\nef_search = 1001\n", &[], "catalog.ef_search"),
            (
                "[ingest]\nstorage_mode = \"0666\"\n",
                &[],
                "ingest.storage_mode",
            ),
            ("", &[("INGESTD_INGEST_NOPE", "1")], "INGESTD_INGEST_NOPE"),
            ("", &[("INGESTD_INGEST_SETTLE_MS", "0")], "ingest.settle_ms"),
            (
                "[ingest]\nparse_memory_limit = \"16MB\"\n",
                &[],
                "ingest.parse_memory_limit",
            ),
            (
                "[ingest]\nparse_memory_limit = \"lots\"\n",
                &[],
                "parse_memory_limit",
            ),
            (
                "[ingest]\nparse_timeout_secs = 0\n",
                &[],
                "ingest.parse_timeout_secs",
            ),
            (
                "",
                &[("INGESTD_INGEST_PARSE_TIMEOUT_SECS", "86400")],
                "ingest.parse_timeout_secs",
            ),
            ("[ingest]\nmax_cells = 0\n", &[], "ingest.max_cells"),
            (
                "[server]\nadmin_connections = 512\n",
                &[],
                "server.admin_connections",
            ),
            (
                "[server]\nmax_connections_per_uid = 0\n",
                &[],
                "server.max_connections_per_uid",
            ),
            (
                "[server]\nfirst_request_timeout_secs = 0\n",
                &[],
                "server.first_request_timeout_secs",
            ),
            ("[server]\nmax_targets = 0\n", &[], "server.max_targets"),
            ("[ingest]\nmax_cells = -1\n", &[], "max_cells"),
            (
                "[ingest]\nmax_unzipped_size = 0\n",
                &[],
                "ingest.max_unzipped_size",
            ),
            ("not toml at all [", &[], "ingestd.toml"),
            (
                "[server]\nshutdown_timeout_secs = 0\n",
                &[],
                "server.shutdown_timeout_secs",
            ),
            ("[server]\nlog_level = \"loud\"\n", &[], "server.log_level"),
            (
                "",
                &[("INGESTD_SERVER_LOG_LEVEL", "info,=debug")],
                "server.log_level",
            ),
        ];
        for (text, env, needle) in cases {
            let err = load(text, env).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?} {env:?}: {err}");
        }
    }

    #[test]
    fn parse_limits_have_defaults_and_take_sizes_and_overrides() {
        let config = load("", &[]).unwrap();
        assert_eq!(config.ingest.parse_memory_limit, ByteSize::mb(512));
        assert_eq!(config.ingest.parse_timeout_secs, 30);
        assert_eq!(config.ingest.max_cells, 50_000_000);
        assert_eq!(config.ingest.max_unzipped_size, ByteSize::gb(1));
        let config = load(
            "[ingest]\nparse_memory_limit = \"1GiB\"\nmax_unzipped_size = 2000000\n",
            &[
                ("INGESTD_INGEST_PARSE_TIMEOUT_SECS", "5"),
                ("INGESTD_INGEST_MAX_CELLS", "1000"),
                ("INGESTD_INGEST_MAX_UNZIPPED_SIZE", "300MB"),
            ],
        )
        .unwrap();
        assert_eq!(config.ingest.parse_memory_limit, ByteSize::gib(1));
        assert_eq!(config.ingest.parse_timeout_secs, 5);
        assert_eq!(config.ingest.max_cells, 1000);
        assert_eq!(config.ingest.max_unzipped_size, ByteSize::mb(300));
    }

    #[test]
    fn service_keys_have_defaults_and_resolve_paths() {
        let config = load("", &[]).unwrap();
        assert_eq!(config.server.shutdown_timeout_secs, 20);
        assert_eq!(config.server.log_level, "info");
        assert_eq!(
            config.server.pid_file,
            PathBuf::from("/run/ingestd/ingestd.pid")
        );
        assert_eq!(config.server.log_file, PathBuf::new());
        let config = load(
            "[server]\npid_file = \"ingestd.pid\"\nlog_file = \"log/ingestd.log\"\n\
             log_level = \"warn,ingestd=debug\"\n",
            &[],
        )
        .unwrap();
        let dir = config.file.as_ref().unwrap().parent().unwrap();
        assert_eq!(config.server.pid_file, dir.join("ingestd.pid"));
        assert_eq!(config.server.log_file, dir.join("log/ingestd.log"));
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let err = Config::load_with_env(Path::new("/nonexistent/ingestd.toml"), []).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(err.to_string().contains("/nonexistent/ingestd.toml"));
    }
}
