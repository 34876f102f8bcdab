//! `ingestd check-config`: the effective configuration as TOML — every default filled in, paths
//! resolved, sizes exact — with secrets redacted, so it can be pasted into a ticket.
//!
//! What counts as a secret is decided in one place, [`is_secret`].

use crate::config::Config;

/// What a redacted value is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Is the value of a key with this name a secret? Names containing `key`, `secret`, `token` or
/// `password` are, except `*_env` keys, which name an environment variable rather than hold
/// its value (`embedding.openai.api_key_env`).
pub fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    !name.ends_with("_env")
        && ["key", "secret", "token", "password"]
            .iter()
            .any(|word| name.contains(word))
}

/// Replace every secret value in `table` (at any depth) with [`REDACTED`].
pub fn redact(table: &mut toml::Table) {
    for (name, value) in table.iter_mut() {
        match value {
            toml::Value::Table(inner) => redact(inner),
            _ if is_secret(name) => *value = toml::Value::String(REDACTED.into()),
            _ => {}
        }
    }
}

/// A size as it can be written back: "50MB" when it is a whole number of SI units, else bytes.
fn exact_size(size: bytesize::ByteSize) -> toml::Value {
    let bytes = size.as_u64();
    for (unit, name) in [(1_000_000_000, "GB"), (1_000_000, "MB"), (1_000, "KB")] {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return toml::Value::String(format!("{}{name}", bytes / unit));
        }
    }
    toml::Value::Integer(bytes as i64)
}

/// The effective config as TOML, redacted.
pub fn effective_toml(config: &Config) -> String {
    let mut table = toml::Table::try_from(config).expect("a config serializes");
    // bytesize writes sizes rounded for people ("47.7 MiB"); write them exactly.
    if let Some(toml::Value::Table(ingest)) = table.get_mut("ingest") {
        for (key, size) in [
            ("max_file_size", config.ingest.max_file_size),
            ("parse_memory_limit", config.ingest.parse_memory_limit),
            ("max_unzipped_size", config.ingest.max_unzipped_size),
        ] {
            ingest.insert(key.into(), exact_size(size));
        }
    }
    redact(&mut table);
    let source = config
        .file
        .as_ref()
        .map(|f| f.display().to_string())
        .unwrap_or_else(|| "built-in defaults".into());
    format!(
        "# Effective configuration read from {source}\n\
         # (defaults filled in, environment overrides applied, paths resolved, secrets redacted)\n\n{}",
        toml::to_string_pretty(&table).expect("a table prints")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_names_are_secrets() {
        let cases = [
            ("api_key", true),
            ("api_key_file", true),
            ("client_secret", true),
            ("token", true),
            ("auth_token", true),
            ("password", true),
            ("DB_PASSWORD", true),
            ("api_key_env", false),
            ("token_env", false),
            ("base_url", false),
            ("model", false),
            ("socket", false),
        ];
        for (name, secret) in cases {
            assert_eq!(is_secret(name), secret, "{name}");
        }
    }

    #[test]
    fn redaction_reaches_nested_tables_and_spares_env_names() {
        let mut table: toml::Table = "[embedding.openai]\napi_key_env = \"OPENAI_API_KEY\"\n\
                                      api_key_file = \"/etc/ingestd/key\"\nmodel = \"m\"\n\
                                      [x]\npassword = 3\n"
            .parse()
            .unwrap();
        redact(&mut table);
        let openai = &table["embedding"]["openai"];
        assert_eq!(openai["api_key_env"].as_str(), Some("OPENAI_API_KEY"));
        assert_eq!(openai["api_key_file"].as_str(), Some(REDACTED));
        assert_eq!(openai["model"].as_str(), Some("m"));
        assert_eq!(table["x"]["password"].as_str(), Some(REDACTED));
    }

    #[test]
    fn the_printed_config_loads_back_to_the_same_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ingestd.toml");
        std::fs::write(
            &path,
            "[ingest]\nmax_file_size = \"50MiB\"\nmax_unzipped_size = 123456789\n\
             [paths]\ndrop_root = \"drop\"\n",
        )
        .unwrap();
        let config = Config::load_with_env(&path, []).unwrap();
        let printed = effective_toml(&config);
        assert!(printed.contains(&dir.path().join("drop").display().to_string()));
        assert!(printed.contains("settle_ms = 500"), "{printed}");
        std::fs::write(&path, &printed).unwrap();
        let again = Config::load_with_env(&path, []).unwrap();
        assert_eq!(again, config, "{printed}");
    }
}
