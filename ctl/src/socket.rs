//! Which socket to talk to: `--socket`, else `$INGESTD_SOCKET` (both through clap), else the
//! socket named by ingestd's config, found the way the daemon finds it (DESIGN §5): the same
//! file (`--config`, `$INGESTD_CONFIG`, `/etc/ingestd/ingestd.toml`), the same
//! `INGESTD_PATHS_SOCKET` override, the same default, relative to the same folder.
//!
//! Only `paths.socket` is read from the config; `ingestctl` must never act on other keys (it
//! may run with a different environment than the daemon), so a config the daemon would refuse
//! for another key still names its socket here. The tests hold each rule against the daemon's
//! own resolution.

use serde::Deserialize;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Environment variable naming ingestd's config file (the daemon reads it too).
pub const CONFIG_ENV: &str = "INGESTD_CONFIG";
/// Environment variable naming the control socket (clients only).
pub const SOCKET_ENV: &str = "INGESTD_SOCKET";
/// Where the daemon looks for its config when neither `--config` nor `$INGESTD_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/ingestd/ingestd.toml";
/// The daemon's override of `paths.socket` (`INGESTD_<SECTION>_<KEY>`).
pub const SOCKET_OVERRIDE_ENV: &str = "INGESTD_PATHS_SOCKET";
/// `paths.socket` when the config does not set it.
pub const DEFAULT_SOCKET: &str = "/run/ingestd/ingestd.sock";

/// No socket was given and the config that would name one cannot be read.
#[derive(Debug, thiserror::Error)]
#[error(
    "no socket given and ingestd's config cannot be loaded to find one: {problem}\nPass \
     --socket PATH or set INGESTD_SOCKET, or name ingestd's config with --config PATH or \
     INGESTD_CONFIG."
)]
pub struct NoSocket {
    problem: String,
}

/// The part of ingestd's config read here; every other key is ignored.
#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default)]
    paths: Paths,
}

#[derive(Debug, Default, Deserialize)]
struct Paths {
    socket: Option<PathBuf>,
}

/// The socket to connect to. `socket` is `--socket` or `$INGESTD_SOCKET`; `config` is
/// `--config` or `$INGESTD_CONFIG`.
pub fn resolve(socket: Option<&Path>, config: Option<&Path>) -> Result<PathBuf, NoSocket> {
    if let Some(socket) = socket {
        return Ok(socket.to_path_buf());
    }
    let path = locate(config, std::env::var_os(CONFIG_ENV));
    socket_of(&path, std::env::var_os(SOCKET_OVERRIDE_ENV))
}

/// The config file the daemon would read: `explicit`, else `env` (`$INGESTD_CONFIG`), else
/// the system default.
fn locate(explicit: Option<&Path>, env: Option<OsString>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| env.map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
}

/// `paths.socket` of the config at `path`, overridden by `env` (`$INGESTD_PATHS_SOCKET`), and
/// resolved against the config's folder when relative.
fn socket_of(path: &Path, env: Option<OsString>) -> Result<PathBuf, NoSocket> {
    // Said as the daemon says it, so the two point at the same problem the same way.
    let text = std::fs::read_to_string(path).map_err(|e| NoSocket {
        problem: format!("cannot read config file {}: {e}", path.display()),
    })?;
    let file: File = toml::from_str(&text).map_err(|e| NoSocket {
        problem: format!("config file {} is not valid: {e}", path.display()),
    })?;
    let socket = env
        .map(PathBuf::from)
        .or(file.paths.socket)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    // Empty means "not set" to the daemon, not "the config's folder".
    if socket.is_absolute() || socket.as_os_str().is_empty() {
        return Ok(socket);
    }
    let base = match path.parent() {
        // A bare file name (`--config ingestd.toml`) has the empty path as its parent.
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = std::path::absolute(&base).unwrap_or(base);
    Ok(normalize(&base.join(socket)))
}

/// Lexically remove `.` and `..`, as the daemon does, so both name the same path.
fn normalize(path: &Path) -> PathBuf {
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

#[cfg(test)]
mod tests {
    use super::*;
    use ingestd::config::Config;

    /// The socket the daemon itself resolves from the config at `path`, with `env` set.
    fn daemons(path: &Path, env: &[(&str, &str)]) -> PathBuf {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load_with_env(path, env).unwrap().paths.socket
    }

    fn ours(path: &Path, env: &[(&str, &str)]) -> PathBuf {
        let found = env
            .iter()
            .find(|(k, _)| *k == SOCKET_OVERRIDE_ENV)
            .map(|(_, v)| OsString::from(v));
        socket_of(path, found).unwrap()
    }

    fn config(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("ingestd.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn the_names_are_the_daemons() {
        assert_eq!(CONFIG_ENV, ingestd::config::CONFIG_ENV);
        assert_eq!(SOCKET_ENV, ingestd::config::SOCKET_ENV);
        assert_eq!(DEFAULT_CONFIG_PATH, ingestd::config::DEFAULT_CONFIG_PATH);
        assert_eq!(
            PathBuf::from(DEFAULT_SOCKET),
            Config::default().paths.socket
        );
        assert_eq!(
            SOCKET_OVERRIDE_ENV,
            format!("{}PATHS_SOCKET", ingestd::config::OVERRIDE_PREFIX)
        );
    }

    #[test]
    fn the_config_file_is_found_as_the_daemon_finds_it() {
        let explicit = Path::new("/a/ingestd.toml");
        let env = || Some(OsString::from("/b/ingestd.toml"));
        assert_eq!(locate(Some(explicit), env()), explicit);
        assert_eq!(locate(None, env()), Path::new("/b/ingestd.toml"));
        assert_eq!(locate(None, None), Path::new(DEFAULT_CONFIG_PATH));
        // The daemon's own rule, given no `--config` and whatever this process's environment.
        assert_eq!(
            locate(None, std::env::var_os(CONFIG_ENV)),
            Config::locate(None)
        );
        assert_eq!(Config::locate(Some(explicit)), locate(Some(explicit), None));
    }

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
    fn an_absolute_socket_is_taken_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = config(dir.path(), "[paths]\nsocket = \"/run/y/d.sock\"\n");
        assert_eq!(ours(&path, &[]), daemons(&path, &[]));
        assert_eq!(ours(&path, &[]), Path::new("/run/y/d.sock"));
    }

    #[test]
    fn a_relative_socket_resolves_against_the_config_folder() {
        let dir = tempfile::tempdir().unwrap();
        for socket in ["run/d.sock", "./d.sock", "../data/./x/../d.sock"] {
            let path = config(dir.path(), &format!("[paths]\nsocket = \"{socket}\"\n"));
            assert_eq!(ours(&path, &[]), daemons(&path, &[]), "{socket}");
        }
        let path = config(dir.path(), "[paths]\nsocket = \"run/d.sock\"\n");
        let want = std::path::absolute(dir.path().join("run/d.sock")).unwrap();
        assert_eq!(ours(&path, &[]), want);
    }

    #[test]
    fn without_the_key_the_socket_is_the_default() {
        let dir = tempfile::tempdir().unwrap();
        for text in [
            "",
            "[paths]\ndrop_root = \"drop\"\n",
            "[ingest]\nsettle_ms = 100\n",
        ] {
            let path = config(dir.path(), text);
            assert_eq!(ours(&path, &[]), daemons(&path, &[]), "{text:?}");
            assert_eq!(ours(&path, &[]), Path::new(DEFAULT_SOCKET));
        }
    }

    #[test]
    fn the_environment_override_wins_and_resolves_like_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = config(dir.path(), "[paths]\nsocket = \"/run/file.sock\"\n");
        for value in ["/run/env.sock", "rel/env.sock"] {
            let env = [(SOCKET_OVERRIDE_ENV, value)];
            assert_eq!(ours(&path, &env), daemons(&path, &env), "{value}");
        }
        let env = [(SOCKET_OVERRIDE_ENV, "/run/env.sock")];
        assert_eq!(ours(&path, &env), Path::new("/run/env.sock"));
    }

    #[test]
    fn other_keys_are_never_read() {
        let dir = tempfile::tempdir().unwrap();
        // The daemon refuses this file (an unknown key, an invalid value); the socket is
        // still named in it, and that is all a client needs.
        let path = config(
            dir.path(),
            "[paths]\nsocket = \"/run/z.sock\"\nbogus = 1\n[ingest]\nsettle_ms = \"soon\"\n",
        );
        assert!(Config::load_with_env(&path, Vec::new()).is_err());
        assert_eq!(ours(&path, &[]), Path::new("/run/z.sock"));
    }

    #[test]
    fn an_unreadable_config_says_what_to_do() {
        let err = resolve(None, Some(Path::new("/nonexistent/ingestd.toml"))).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("/nonexistent/ingestd.toml"), "{message}");
        assert!(message.contains("--socket"), "{message}");
        let dir = tempfile::tempdir().unwrap();
        let path = config(dir.path(), "[paths]\nsocket = 7\n");
        let message = socket_of(&path, None).unwrap_err().to_string();
        assert!(message.contains("socket"), "{message}");
        assert!(message.contains("ingestd.toml"), "{message}");
    }
}
