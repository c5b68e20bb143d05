//! `--secret` sources, as docker buildx spells them, and secret values
//! that never print.
//!
//! - `id=ID,src=PATH` (also `source=`, and `type=file`): the file's bytes;
//! - `id=ID,env=VAR` (also `type=env,src=VAR`): an environment variable;
//! - bare `id=ID`: the environment variable `ID`.
//!
//! A value is read only when a RUN mounts it ([`SecretSource::read`]) and
//! lives in a [`SecretValue`], whose `Debug` shows its length, never its
//! bytes, so no `{:?}` at any log level can reveal it.

use std::fmt;
use std::path::PathBuf;

/// Where one `--secret` comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretSource {
    pub id: String,
    pub from: SecretFrom,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretFrom {
    File(PathBuf),
    Env(String),
}

/// A secret's bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Vec<u8>);

impl SecretValue {
    pub fn new(bytes: Vec<u8>) -> SecretValue {
        SecretValue(bytes)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue(<{} bytes redacted>)", self.0.len())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("invalid --secret \"{0}\": it needs id=NAME, e.g. --secret id=npmrc,src=$HOME/.npmrc")]
    MissingId(String),
    #[error("invalid --secret \"{spec}\": unknown key \"{key}\" (use id, src, env or type)")]
    UnknownKey { spec: String, key: String },
    #[error("invalid --secret \"{0}\": expected comma-separated key=value fields")]
    NotKeyValue(String),
    #[error("invalid --secret \"{spec}\": type={kind} is not a secret type (use file or env)")]
    Type { spec: String, kind: String },
    #[error("invalid --secret \"{0}\": give either src=<file> or env=<variable>, not both")]
    Both(String),
    #[error("secret \"{id}\": cannot read {path}: {message}; check --secret id={id},src=<file>")]
    Read {
        id: String,
        path: PathBuf,
        message: String,
    },
    #[error(
        "secret \"{id}\": the environment variable {var} is not set; export it, or pass \
         --secret id={id},src=<file>"
    )]
    EnvNotSet { id: String, var: String },
}

/// Parses one `--secret` value.
pub fn parse_secret_flag(spec: &str) -> Result<SecretSource, SecretError> {
    let mut id = None;
    let mut src = None;
    let mut env = None;
    let mut kind = None;
    for field in spec.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| SecretError::NotKeyValue(spec.to_string()))?;
        let value = value.to_string();
        match key.trim().to_ascii_lowercase().as_str() {
            "id" => id = Some(value),
            "src" | "source" => src = Some(value),
            "env" => env = Some(value),
            "type" => kind = Some(value),
            other => {
                return Err(SecretError::UnknownKey {
                    spec: spec.to_string(),
                    key: other.to_string(),
                });
            }
        }
    }
    let id = id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| SecretError::MissingId(spec.to_string()))?;
    let from = match (kind.as_deref(), src, env) {
        (_, Some(_), Some(_)) => return Err(SecretError::Both(spec.to_string())),
        (None | Some("file"), Some(path), None) => SecretFrom::File(PathBuf::from(path)),
        (Some("env"), Some(var), None) | (None | Some("env"), None, Some(var)) => {
            SecretFrom::Env(var)
        }
        (None | Some("env"), None, None) => SecretFrom::Env(id.clone()),
        (Some("file"), None, None) => SecretFrom::File(PathBuf::from(&id)),
        (Some(other), _, _) => {
            return Err(SecretError::Type {
                spec: spec.to_string(),
                kind: other.to_string(),
            });
        }
    };
    Ok(SecretSource { id, from })
}

impl SecretSource {
    /// The secret's bytes: the file read now, or the variable looked up
    /// with `env` (the process environment in a build).
    pub fn read(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<SecretValue, SecretError> {
        match &self.from {
            SecretFrom::File(path) => {
                std::fs::read(path)
                    .map(SecretValue)
                    .map_err(|err| SecretError::Read {
                        id: self.id.clone(),
                        path: path.clone(),
                        message: err.to_string(),
                    })
            }
            SecretFrom::Env(var) => env(var)
                .map(|value| SecretValue(value.into_bytes()))
                .ok_or_else(|| SecretError::EnvNotSet {
                    id: self.id.clone(),
                    var: var.clone(),
                }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn file(id: &str, path: &str) -> SecretSource {
        SecretSource {
            id: id.to_string(),
            from: SecretFrom::File(PathBuf::from(path)),
        }
    }

    fn env(id: &str, var: &str) -> SecretSource {
        SecretSource {
            id: id.to_string(),
            from: SecretFrom::Env(var.to_string()),
        }
    }

    #[test]
    fn valid_flags() {
        let table = [
            (
                "id=npmrc,src=/home/me/.npmrc",
                file("npmrc", "/home/me/.npmrc"),
            ),
            ("id=npmrc,source=rel/.npmrc", file("npmrc", "rel/.npmrc")),
            ("type=file,id=a,src=/a", file("a", "/a")),
            ("type=file,id=/etc/token", file("/etc/token", "/etc/token")),
            ("id=token,env=GH_TOKEN", env("token", "GH_TOKEN")),
            ("type=env,id=token,src=GH_TOKEN", env("token", "GH_TOKEN")),
            ("id=TOKEN", env("TOKEN", "TOKEN")),
            (" id=a , src=/x ", file("a", "/x")),
        ];
        for (spec, want) in table {
            assert_eq!(parse_secret_flag(spec), Ok(want), "{spec}");
        }
    }

    #[test]
    fn invalid_flags_have_exact_errors() {
        let table = [
            (
                "src=/a",
                "invalid --secret \"src=/a\": it needs id=NAME, e.g. --secret id=npmrc,src=$HOME/.npmrc",
            ),
            (
                "id=,src=/a",
                "invalid --secret \"id=,src=/a\": it needs id=NAME, e.g. --secret id=npmrc,src=$HOME/.npmrc",
            ),
            (
                "id=a,path=/a",
                "invalid --secret \"id=a,path=/a\": unknown key \"path\" (use id, src, env or type)",
            ),
            (
                "id=a,/a",
                "invalid --secret \"id=a,/a\": expected comma-separated key=value fields",
            ),
            (
                "id=a,type=ssh",
                "invalid --secret \"id=a,type=ssh\": type=ssh is not a secret type (use file or env)",
            ),
            (
                "id=a,src=/a,env=A",
                "invalid --secret \"id=a,src=/a,env=A\": give either src=<file> or env=<variable>, not both",
            ),
        ];
        for (spec, want) in table {
            assert_eq!(
                parse_secret_flag(spec).map_err(|e| e.to_string()),
                Err(want.to_string()),
                "{spec}"
            );
        }
    }

    #[test]
    fn reading_files_and_variables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, b"s3cr3t\n").unwrap();
        let lookup = |name: &str| (name == "SET").then(|| "from-env".to_string());

        let value = file("t", path.to_str().unwrap()).read(&lookup).unwrap();
        assert_eq!(value.bytes(), b"s3cr3t\n");
        assert_eq!(format!("{value:?}"), "SecretValue(<7 bytes redacted>)");
        assert_eq!(env("t", "SET").read(&lookup).unwrap().bytes(), b"from-env");
        assert_eq!(
            env("t", "UNSET").read(&lookup).map_err(|e| e.to_string()),
            Err(
                "secret \"t\": the environment variable UNSET is not set; export it, or pass \
                 --secret id=t,src=<file>"
                    .to_string()
            )
        );
        let missing = dir.path().join("missing");
        let err = file("t", missing.to_str().unwrap())
            .read(&lookup)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "secret \"t\": cannot read {}: No such file or directory (os error 2); check \
                 --secret id=t,src=<file>",
                missing.display()
            )
        );
    }
}
