//! Which socket to talk to: `--socket`, else `$INGESTD_SOCKET` (both through clap), else the
//! socket named by ingestd's config, found the way the daemon finds it (DESIGN §5).
//!
//! Only the socket path is taken from the config; `ingestctl` must never act on other keys,
//! since it may run with a different environment than the daemon.

use ingestd::config::{Config, ConfigError};
use std::path::{Path, PathBuf};

/// No socket was given and the config that would name one cannot be loaded.
#[derive(Debug, thiserror::Error)]
#[error(
    "no socket given and ingestd's config cannot be loaded to find one: {source}\nPass \
     --socket PATH or set INGESTD_SOCKET, or name ingestd's config with --config PATH or \
     INGESTD_CONFIG."
)]
pub struct NoSocket {
    #[source]
    source: ConfigError,
}

/// The socket to connect to. `socket` is `--socket` or `$INGESTD_SOCKET`; `config` is
/// `--config` or `$INGESTD_CONFIG`.
pub fn resolve(socket: Option<&Path>, config: Option<&Path>) -> Result<PathBuf, NoSocket> {
    if let Some(socket) = socket {
        return Ok(socket.to_path_buf());
    }
    let path = Config::locate(config);
    let config = Config::load(&path).map_err(|source| NoSocket { source })?;
    Ok(config.paths.socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_socket_wins_without_reading_the_config() {
        let socket = resolve(
            Some(Path::new("/run/x.sock")),
            Some(Path::new("/nonexistent/ingestd.toml")),
        )
        .unwrap();
        assert_eq!(socket, PathBuf::from("/run/x.sock"));
    }

    #[test]
    fn the_socket_comes_from_the_config_relative_to_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ingestd.toml");
        std::fs::write(&path, "[paths]\nsocket = \"run/d.sock\"\n").unwrap();
        let want = std::path::absolute(dir.path().join("run/d.sock")).unwrap();
        assert_eq!(resolve(None, Some(&path)).unwrap(), want);
    }

    #[test]
    fn an_unloadable_config_says_what_to_do() {
        let err = resolve(None, Some(Path::new("/nonexistent/ingestd.toml"))).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("/nonexistent/ingestd.toml"), "{message}");
        assert!(message.contains("--socket"), "{message}");
    }
}
