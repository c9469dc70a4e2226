//! Loading a role's typed config: a TOML file (optional) whose unknown fields are rejected;
//! command-line flags and `TESSERA_*` variables override it in each role's own code.

use serde::de::DeserializeOwned;
use std::path::Path;

/// A config file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file's path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this role.
    #[error("invalid config {path}: {source}")]
    Parse {
        /// The file's path.
        path: String,
        /// Why.
        source: Box<toml::de::Error>,
    },
    /// A value breaks a rule of the role.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// Reads a TOML config file that must exist (for configs without defaults).
pub fn load_required<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.display().to_string(),
        source: Box::new(source),
    })
}

/// Reads a TOML config file, or the type's defaults when no file is given.
pub fn load<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T, ConfigError> {
    match path {
        Some(path) => load_required(path),
        None => Ok(T::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Sample {
        port: u16,
    }

    #[test]
    fn unknown_fields_are_rejected_and_defaults_apply() {
        let dir = std::env::temp_dir().join(format!("tessera-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(&good, "port = 7").unwrap();
        assert_eq!(load::<Sample>(Some(&good)).unwrap(), Sample { port: 7 });
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "prot = 7").unwrap();
        assert!(matches!(
            load::<Sample>(Some(&bad)),
            Err(ConfigError::Parse { .. })
        ));
        assert_eq!(load::<Sample>(None).unwrap(), Sample::default());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
