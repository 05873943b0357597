//! API credentials: from the environment, or from a file re-read when it
//! changes on disk so keys rotate without a restart.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Environment variable holding the API key.
pub const ENV_API_KEY: &str = "EXOSCALE_API_KEY";
/// Environment variable holding the API secret.
pub const ENV_API_SECRET: &str = "EXOSCALE_API_SECRET";
/// Environment variable naming a credentials file (or a mounted Secret's directory).
pub const ENV_CREDENTIALS_FILE: &str = "EXOSCALE_API_CREDENTIALS_FILE";

/// An API key and its secret. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    api_key: String,
    api_secret: String,
}

impl Credentials {
    /// Builds credentials; both parts must be non-empty.
    pub fn new(api_key: impl Into<String>, api_secret: impl Into<String>) -> Result<Self> {
        let (api_key, api_secret) = (api_key.into(), api_secret.into());
        if api_key.trim().is_empty() || api_secret.trim().is_empty() {
            return Err(Error::Credentials("API key and secret must both be non-empty".into()));
        }
        Ok(Credentials { api_key: api_key.trim().to_owned(), api_secret: api_secret.trim().to_owned() })
    }

    /// The API key (not secret; it names the key in logs and signatures).
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// The secret; only for signing.
    pub fn api_secret(&self) -> &str {
        &self.api_secret
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("api_key", &self.api_key).field("api_secret", &"<redacted>").finish()
    }
}

#[derive(Deserialize)]
struct CredentialsFile {
    api_key: String,
    api_secret: String,
}

/// Where credentials come from.
pub enum CredentialSource {
    /// Fixed for the process' lifetime.
    Static(Credentials),
    /// A JSON file `{"api_key","api_secret"}`, or a directory holding files
    /// `api-key` and `api-secret` (a mounted Kubernetes Secret); re-read
    /// whenever its modification time or size changes.
    File { path: PathBuf, cached: Mutex<Option<(FileStamp, Credentials)>> },
}

impl fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Static(c) => f.debug_tuple("Static").field(c).finish(),
            CredentialSource::File { path, .. } => f.debug_struct("File").field("path", path).finish(),
        }
    }
}

/// What identifies a version of the credentials on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp(Vec<(Option<SystemTime>, u64)>);

impl CredentialSource {
    /// A file (or mounted Secret directory) source; it is read on first use.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        CredentialSource::File { path: path.into(), cached: Mutex::new(None) }
    }

    /// Key and secret from the environment win; else the credentials file named there.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// `from_env` over any variable lookup (for tests and config layering).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        match (lookup(ENV_API_KEY), lookup(ENV_API_SECRET)) {
            (Some(key), Some(secret)) if !key.is_empty() && !secret.is_empty() => {
                Ok(CredentialSource::Static(Credentials::new(key, secret)?))
            }
            _ => match lookup(ENV_CREDENTIALS_FILE).filter(|p| !p.is_empty()) {
                Some(path) => {
                    let source = CredentialSource::file(path);
                    source.current()?;
                    Ok(source)
                }
                None => Err(Error::Credentials(format!(
                    "set {ENV_API_KEY} and {ENV_API_SECRET}, or {ENV_CREDENTIALS_FILE}"
                ))),
            },
        }
    }

    /// The credentials to sign the next request with.
    pub fn current(&self) -> Result<Credentials> {
        match self {
            CredentialSource::Static(c) => Ok(c.clone()),
            CredentialSource::File { path, cached } => {
                let stamp = stamp(path)?;
                let mut cached = cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some((seen, creds)) = cached.as_ref()
                    && *seen == stamp
                {
                    return Ok(creds.clone());
                }
                let creds = read(path)?;
                if cached.is_some() {
                    tracing::info!(path = %path.display(), api_key = creds.api_key(), "credentials changed on disk, reloaded");
                }
                *cached = Some((stamp, creds.clone()));
                Ok(creds)
            }
        }
    }
}

fn secret_files(path: &Path) -> [PathBuf; 2] {
    [path.join("api-key"), path.join("api-secret")]
}

fn stamp(path: &Path) -> Result<FileStamp> {
    let files: Vec<PathBuf> = if path.is_dir() { secret_files(path).to_vec() } else { vec![path.to_owned()] };
    files
        .iter()
        .map(|f| {
            let meta =
                std::fs::metadata(f).map_err(|e| Error::Credentials(format!("cannot read {}: {e}", f.display())))?;
            Ok((meta.modified().ok(), meta.len()))
        })
        .collect::<Result<Vec<_>>>()
        .map(FileStamp)
}

fn read(path: &Path) -> Result<Credentials> {
    let read = |f: &Path| {
        std::fs::read_to_string(f).map_err(|e| Error::Credentials(format!("cannot read {}: {e}", f.display())))
    };
    if path.is_dir() {
        let [key, secret] = secret_files(path);
        return Credentials::new(read(&key)?, read(&secret)?);
    }
    let file: CredentialsFile = serde_json::from_str(&read(path)?).map_err(|e| {
        Error::Credentials(format!("{}: expected JSON {{\"api_key\", \"api_secret\"}}: {e}", path.display()))
    })?;
    Credentials::new(file.api_key, file.api_secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let c = Credentials::new("EXOkey", "topsecret").unwrap();
        let shown = format!("{c:?} {:?}", CredentialSource::Static(c.clone()));
        assert!(!shown.contains("topsecret"), "{shown}");
        assert!(shown.contains("EXOkey"));
    }

    #[test]
    fn env_wins_over_file_and_empty_is_rejected() {
        let env = |k: &str| match k {
            ENV_API_KEY => Some("k".to_string()),
            ENV_API_SECRET => Some("s".to_string()),
            ENV_CREDENTIALS_FILE => Some("/nonexistent".to_string()),
            _ => None,
        };
        assert_eq!(CredentialSource::from_lookup(env).unwrap().current().unwrap().api_key(), "k");
        assert!(CredentialSource::from_lookup(|_| None).is_err());
        assert!(Credentials::new("", "s").is_err());
    }

    #[test]
    fn file_is_reread_when_it_changes() {
        let dir = std::env::temp_dir().join(format!("creds-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("creds.json");
        std::fs::write(&file, r#"{"api_key":"EXOone","api_secret":"s1","name":"x"}"#).unwrap();
        let source = CredentialSource::file(&file);
        assert_eq!(source.current().unwrap().api_key(), "EXOone");
        // A different size guarantees a new stamp even within one mtime tick.
        std::fs::write(&file, r#"{"api_key":"EXOtwo2","api_secret":"s2"}"#).unwrap();
        let now = source.current().unwrap();
        assert_eq!((now.api_key(), now.api_secret()), ("EXOtwo2", "s2"));
        std::fs::write(&file, "not json").unwrap();
        let err = source.current().unwrap_err().to_string();
        assert!(err.contains("expected JSON"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn secret_directory_is_supported() {
        let dir = std::env::temp_dir().join(format!("creds-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("api-key"), "EXOdir\n").unwrap();
        std::fs::write(dir.join("api-secret"), "sdir\n").unwrap();
        let c = CredentialSource::file(&dir).current().unwrap();
        assert_eq!((c.api_key(), c.api_secret()), ("EXOdir", "sdir"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
