//! The API key: a string that never prints. `Debug` and `Display` show `***`, so a key held
//! in settings cannot leak through `{:?}` in a log line, a panic or `check-config`.
//!
//! The only way to the real value is [`Secret::expose`], used once, to build the
//! `Authorization` header.

use crate::embed::EmbedError;
use std::fmt;
use std::path::Path;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The key from environment variable `var`. Unset or empty is an error naming the
    /// variable (never its value).
    pub fn from_env(var: &str) -> Result<Self, EmbedError> {
        match std::env::var(var) {
            Ok(value) if !value.trim().is_empty() => Ok(Self(value.trim().to_owned())),
            Ok(_) => Err(EmbedError::Permanent(format!(
                "environment variable {var} (the embedding API key) is empty"
            ))),
            Err(std::env::VarError::NotPresent) => Err(EmbedError::Permanent(format!(
                "environment variable {var} (the embedding API key) is not set"
            ))),
            Err(std::env::VarError::NotUnicode(_)) => Err(EmbedError::Permanent(format!(
                "environment variable {var} (the embedding API key) is not valid UTF-8"
            ))),
        }
    }

    /// The key from a file (a secrets mount, a systemd credential). Surrounding whitespace,
    /// such as the trailing newline editors add, is not part of the key.
    pub fn from_file(path: &Path) -> Result<Self, EmbedError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            EmbedError::Permanent(format!(
                "cannot read the embedding API key file {}: {e}",
                path.display()
            ))
        })?;
        let key = text.trim();
        if key.is_empty() {
            return Err(EmbedError::Permanent(format!(
                "the embedding API key file {} is empty",
                path.display()
            )));
        }
        Ok(Self(key.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints() {
        let s = Secret::new("sk-very-secret");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(***)");
        assert_eq!(s.expose(), "sk-very-secret");
    }

    #[test]
    fn from_file_trims_and_names_the_file_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "sk-file\n").unwrap();
        assert_eq!(Secret::from_file(&path).unwrap().expose(), "sk-file");
        std::fs::write(&path, " \n").unwrap();
        let err = Secret::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("is empty") && err.contains("key"), "{err}");
        let missing = dir.path().join("missing");
        let err = Secret::from_file(&missing).unwrap_err().to_string();
        assert!(err.contains("cannot read"), "{err}");
    }

    #[test]
    fn from_env_names_the_variable() {
        let err = Secret::from_env("SURELY_UNSET_TEST_KEY_VAR").unwrap_err();
        assert!(matches!(err, EmbedError::Permanent(_)));
        let message = err.to_string();
        assert!(message.contains("SURELY_UNSET_TEST_KEY_VAR"), "{message}");
        assert!(message.ends_with("is not set"), "{message}");
    }
}
