//! Secrets and variables that templates read through `get_secret()` and `get_variable()`.
//!
//! Secrets come from a directory holding one file per secret (the Docker / Kubernetes
//! `/run/secrets` convention) and from `CONNECTOR_SECRET_<NAME>` environment variables.
//! Their values never reach a log line or an error message: [`SecretStore::redact`] scrubs
//! any text that is about to leave the process.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Prefix of environment variables that define secrets (`CONNECTOR_SECRET_API_KEY` → `api_key`).
pub(crate) const SECRET_ENV_PREFIX: &str = "CONNECTOR_SECRET_";

/// Errors while reading secrets or variables at start-up.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The secrets directory could not be listed.
    #[error("cannot read the secrets directory {path}: {source}; check --secrets-dir")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// One secret file could not be read.
    #[error("cannot read secret file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The variables file could not be read.
    #[error("cannot read the variables file {path}: {source}; check --variables-file")]
    VariablesFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The variables file is not a JSON object.
    #[error("the variables file {path} must be a JSON object of names to values: {message}")]
    VariablesFormat {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
}

/// Whether `name` can name a secret (docs/spec.md §15): ASCII letters, digits and `_`, at least one.
/// Names are case-sensitive.
pub(crate) fn is_secret_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A secret value; its `Debug` form never shows the value.
#[derive(Clone)]
pub(crate) struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub(crate) fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value, for the one place that must send it upstream.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// All secrets known to the runtime, by name.
#[derive(Debug, Clone, Default)]
pub struct SecretStore {
    secrets: HashMap<String, Secret>,
}

/// Secrets shorter than this are not scrubbed from text: they would match everywhere.
const MIN_REDACTED_LEN: usize = 4;

impl SecretStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces one secret.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.secrets.insert(name.into(), Secret::new(value));
    }

    /// Reads `dir` (one file per secret, the file name is the secret name, a trailing newline
    /// is dropped) and then the `CONNECTOR_SECRET_*` environment variables, which win.
    pub(crate) fn load(dir: Option<&Path>) -> Result<Self, SecretsError> {
        let mut store = SecretStore::new();
        if let Some(dir) = dir {
            store.load_dir(dir)?;
        }
        store.load_env(std::env::vars());
        Ok(store)
    }

    fn load_dir(&mut self, dir: &Path) -> Result<(), SecretsError> {
        let entries = std::fs::read_dir(dir).map_err(|source| SecretsError::Directory {
            path: dir.to_path_buf(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !path.is_file() {
                continue;
            }
            let value = std::fs::read_to_string(&path)
                .map_err(|source| SecretsError::File { path, source })?;
            let value = value.strip_suffix('\n').unwrap_or(&value);
            let value = value.strip_suffix('\r').unwrap_or(value);
            self.insert(name, value);
        }
        Ok(())
    }

    /// Adds secrets from `CONNECTOR_SECRET_<NAME>` variables; the name is lower-cased.
    pub(crate) fn load_env(&mut self, vars: impl Iterator<Item = (String, String)>) {
        for (key, value) in vars {
            if let Some(name) = key.strip_prefix(SECRET_ENV_PREFIX) {
                if !name.is_empty() {
                    self.insert(name.to_ascii_lowercase(), value);
                }
            }
        }
    }

    /// Looks a secret up by name.
    pub(crate) fn get(&self, name: &str) -> Option<&Secret> {
        self.secrets.get(name)
    }

    /// Whether a secret of that name exists.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.secrets.contains_key(name)
    }

    /// Replaces every secret value found in `text` with `[REDACTED]`.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in self.secrets.values() {
            let value = secret.expose();
            if value.len() >= MIN_REDACTED_LEN && out.contains(value) {
                out = out.replace(value, "[REDACTED]");
            }
        }
        out
    }
}

/// Non-secret configuration values read by `get_variable('name')`.
#[derive(Debug, Clone, Default)]
pub struct Variables {
    values: serde_json::Map<String, serde_json::Value>,
}

impl Variables {
    /// No variables.
    pub fn new() -> Self {
        Self::default()
    }

    /// Variables from a JSON object.
    pub fn from_map(values: serde_json::Map<String, serde_json::Value>) -> Self {
        Variables { values }
    }

    /// Reads a JSON file holding one object of names to values.
    pub(crate) fn load(path: Option<&Path>) -> Result<Self, SecretsError> {
        let Some(path) = path else {
            return Ok(Self::new());
        };
        let text = std::fs::read_to_string(path).map_err(|source| SecretsError::VariablesFile {
            path: path.to_path_buf(),
            source,
        })?;
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Object(values)) => Ok(Variables { values }),
            Ok(_) => Err(SecretsError::VariablesFormat {
                path: path.to_path_buf(),
                message: "the top level is not an object".into(),
            }),
            Err(e) => Err(SecretsError::VariablesFormat {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
        }
    }

    /// Looks a variable up by name.
    pub(crate) fn get(&self, name: &str) -> Option<&serde_json::Value> {
        self.values.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_files_and_env_and_env_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("api_key"), "from-file\n").unwrap();
        std::fs::write(dir.path().join("other"), "kept").unwrap();
        let mut store = SecretStore::new();
        store.load_dir(dir.path()).unwrap();
        store.load_env(
            vec![(
                "CONNECTOR_SECRET_API_KEY".to_string(),
                "from-env".to_string(),
            )]
            .into_iter(),
        );
        assert_eq!(store.get("api_key").unwrap().expose(), "from-env");
        assert_eq!(store.get("other").unwrap().expose(), "kept");
        assert_eq!(format!("{:?}", store.get("other").unwrap()), "Secret(***)");
    }

    #[test]
    fn redact_scrubs_every_secret_value() {
        let mut store = SecretStore::new();
        store.insert("k", "hunter22");
        assert_eq!(
            store.redact("token hunter22 leaked"),
            "token [REDACTED] leaked"
        );
    }
}
