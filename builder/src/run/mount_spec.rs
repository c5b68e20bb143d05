//! `RUN --mount` values, spelled as BuildKit spells them, parsed into what
//! to mount. Pure: the caller passes the expansion of `$VAR`s (the stage's
//! ARG/ENV scope), applied to each field's value after the comma split,
//! as BuildKit does, so a variable holding a comma cannot add a field.
//!
//! The types and their keys:
//! - `bind` (the default): `target|dst|destination`, `source|src` (default
//!   the root of `from`), `from` (a stage or an image; default the build
//!   context), `rw|readwrite` (writes allowed and discarded), `ro|readonly`.
//! - `cache`: `id` (default the target), `target…`, `sharing=shared|private|locked`,
//!   `from` + `source` (what a new cache starts with), `mode` (0755),
//!   `uid`, `gid`, `ro|readonly`, `rw|readwrite`.
//! - `secret`: `id` (default the target's base name), `target…` (default
//!   `/run/secrets/<id>` unless `env` is given), `env`, `required`,
//!   `mode` (0400), `uid`, `gid`.
//! - `tmpfs`: `target…`, `size` (bytes, or with a `k`, `m`, `g` suffix).
//! - `ssh` is refused: kiln forwards no SSH agent.

use std::fmt;

/// One `--mount`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountSpec {
    Bind(BindMount),
    Cache(CacheMount),
    Secret(SecretMount),
    Tmpfs(TmpfsMount),
}

/// `type=bind`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindMount {
    /// As written: absolute, or relative to the RUN's WORKDIR.
    pub target: String,
    /// Path inside `from` (or the context); `/` when not given.
    pub source: String,
    /// A stage name or index, or an image reference; `None` is the
    /// build context.
    pub from: Option<String>,
    /// `rw`: the command may write, and what it writes is thrown away.
    pub read_write: bool,
}

/// `type=cache`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheMount {
    /// The cache's name; the target when not given.
    pub id: String,
    pub target: String,
    pub sharing: Sharing,
    /// With `source`: what a cache starts with when it is created.
    pub from: Option<String>,
    pub source: Option<String>,
    /// Of the cache directory when it is created.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub read_only: bool,
}

/// How concurrent users of one cache share it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sharing {
    /// Everyone at once (the default).
    #[default]
    Shared,
    /// A user finding the cache in use gets another instance of it.
    Private,
    /// A user finding the cache in use waits for it.
    Locked,
}

/// `type=secret`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretMount {
    pub id: String,
    /// As written; see [`SecretMount::file_target`].
    pub target: Option<String>,
    /// The environment variable to expose the secret in.
    pub env: Option<String>,
    /// A required secret that was not supplied fails the build; an
    /// optional one is skipped.
    pub required: bool,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl SecretMount {
    /// Where the secret is mounted as a file: the target, else
    /// `/run/secrets/<id>` unless the secret goes to `env` only.
    pub fn file_target(&self) -> Option<String> {
        match (&self.target, &self.env) {
            (Some(target), _) => Some(target.clone()),
            (None, Some(_)) => None,
            (None, None) => Some(format!("/run/secrets/{}", self.id)),
        }
    }
}

/// `type=tmpfs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TmpfsMount {
    pub target: String,
    /// Bytes; the kernel's default (half the memory) when `None`.
    pub size: Option<u64>,
}

impl MountSpec {
    /// The target as written (a secret's default file target included),
    /// `None` for a secret given to `env` only.
    pub fn target(&self) -> Option<String> {
        match self {
            MountSpec::Bind(bind) => Some(bind.target.clone()),
            MountSpec::Cache(cache) => Some(cache.target.clone()),
            MountSpec::Secret(secret) => secret.file_target(),
            MountSpec::Tmpfs(tmpfs) => Some(tmpfs.target.clone()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountSpecError {
    #[error("unknown mount type \"{0}\": use bind, cache, secret or tmpfs")]
    UnknownType(String),
    #[error(
        "--mount=type=ssh is not supported: kiln forwards no SSH agent; pass credentials as a \
         secret (--mount=type=secret with --secret) instead"
    )]
    Ssh,
    #[error("unknown key \"{key}\" for --mount=type={kind} (known keys: {known})")]
    UnknownKey {
        key: String,
        kind: &'static str,
        known: &'static str,
    },
    #[error("invalid --mount field \"{0}\": expected key=value")]
    NotKeyValue(String),
    #[error("--mount=type={0} needs a target: add target=/path")]
    MissingTarget(&'static str),
    #[error("--mount=type=secret needs id=NAME (or a target to take the name from)")]
    SecretWithoutId,
    #[error("invalid mode \"{0}\" in --mount: expected an octal file mode such as 0755")]
    Mode(String),
    #[error("invalid {key} \"{value}\" in --mount: expected a number")]
    Number { key: &'static str, value: String },
    #[error("invalid {key} \"{value}\" in --mount: use true or false")]
    Bool { key: &'static str, value: String },
    #[error("invalid sharing \"{0}\" in --mount: use shared, private or locked")]
    Sharing(String),
    #[error("invalid size \"{0}\" in --mount=type=tmpfs: use bytes or a number with k, m or g")]
    Size(String),
    #[error("cannot expand \"{value}\" in --mount: {message}")]
    Expand { value: String, message: String },
}

const BIND_KEYS: &str = "type, target, source, from, rw, ro";
const CACHE_KEYS: &str = "type, id, target, sharing, from, source, mode, uid, gid, ro, rw";
const SECRET_KEYS: &str = "type, id, target, env, required, mode, uid, gid";
const TMPFS_KEYS: &str = "type, target, size";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bind,
    Cache,
    Secret,
    Tmpfs,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Bind => "bind",
            Kind::Cache => "cache",
            Kind::Secret => "secret",
            Kind::Tmpfs => "tmpfs",
        }
    }

    fn known(self) -> &'static str {
        match self {
            Kind::Bind => BIND_KEYS,
            Kind::Cache => CACHE_KEYS,
            Kind::Secret => SECRET_KEYS,
            Kind::Tmpfs => TMPFS_KEYS,
        }
    }
}

/// Parses one raw `--mount` value; `expand` expands a field's value.
pub fn parse_mount(
    raw: &str,
    expand: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<MountSpec, MountSpecError> {
    let mut fields = Vec::new();
    for field in csv_fields(raw) {
        let field = unquote(field.trim());
        if field.is_empty() {
            continue;
        }
        let (key, value) = match field.split_once('=') {
            Some((key, value)) => (key.trim().to_ascii_lowercase(), Some(value)),
            None => (field.to_ascii_lowercase(), None),
        };
        let value = match value {
            Some(value) => Some(expand(value).map_err(|message| MountSpecError::Expand {
                value: value.to_string(),
                message,
            })?),
            None => None,
        };
        fields.push((key, value));
    }

    let kind = match fields.iter().rev().find(|(key, _)| key == "type") {
        None => Kind::Bind,
        Some((_, value)) => match value.as_deref().unwrap_or("").to_ascii_lowercase().as_str() {
            "bind" => Kind::Bind,
            "cache" => Kind::Cache,
            "secret" => Kind::Secret,
            "tmpfs" => Kind::Tmpfs,
            "ssh" => return Err(MountSpecError::Ssh),
            other => return Err(MountSpecError::UnknownType(other.to_string())),
        },
    };

    let mut fields_seen = Fields::default();
    for (key, value) in fields {
        fields_seen.take(kind, &key, value)?;
    }
    fields_seen.finish(kind)
}

/// The fields of one mount as given, before defaults.
#[derive(Default)]
struct Fields {
    target: Option<String>,
    source: Option<String>,
    from: Option<String>,
    id: Option<String>,
    env: Option<String>,
    read_only: Option<bool>,
    required: Option<bool>,
    sharing: Option<Sharing>,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    size: Option<u64>,
}

impl Fields {
    fn take(&mut self, kind: Kind, key: &str, value: Option<String>) -> Result<(), MountSpecError> {
        let unknown = || MountSpecError::UnknownKey {
            key: key.to_string(),
            kind: kind.name(),
            known: kind.known(),
        };
        let allowed: &[Kind] = match key {
            "type" => return Ok(()),
            "target" | "dst" | "destination" => {
                &[Kind::Bind, Kind::Cache, Kind::Secret, Kind::Tmpfs]
            }
            "source" | "src" | "from" => &[Kind::Bind, Kind::Cache],
            "ro" | "readonly" | "rw" | "readwrite" => &[Kind::Bind, Kind::Cache],
            "id" | "mode" | "uid" | "gid" => &[Kind::Cache, Kind::Secret],
            "sharing" => &[Kind::Cache],
            "env" | "required" => &[Kind::Secret],
            "size" => &[Kind::Tmpfs],
            _ => return Err(unknown()),
        };
        if !allowed.contains(&kind) {
            return Err(unknown());
        }
        // Only the boolean keys may stand alone (`ro`, `rw`, `required`).
        let is_bool = matches!(key, "ro" | "readonly" | "rw" | "readwrite" | "required");
        let value = match (value, is_bool) {
            (Some(value), _) => value,
            (None, true) => "true".to_string(),
            (None, false) => return Err(MountSpecError::NotKeyValue(key.to_string())),
        };
        match key {
            "target" | "dst" | "destination" => self.target = Some(value),
            "source" | "src" => self.source = Some(value),
            "from" => self.from = Some(value),
            "id" => self.id = Some(value),
            "env" => self.env = Some(value),
            "ro" | "readonly" => self.read_only = Some(parse_bool("ro", &value)?),
            "rw" | "readwrite" => self.read_only = Some(!parse_bool("rw", &value)?),
            "required" => self.required = Some(parse_bool("required", &value)?),
            "sharing" => {
                self.sharing = Some(match value.to_ascii_lowercase().as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    _ => return Err(MountSpecError::Sharing(value)),
                })
            }
            "mode" => {
                self.mode = Some(
                    u32::from_str_radix(&value, 8)
                        .ok()
                        .filter(|mode| *mode <= 0o7777)
                        .ok_or(MountSpecError::Mode(value))?,
                )
            }
            "uid" => self.uid = Some(parse_id("uid", value)?),
            "gid" => self.gid = Some(parse_id("gid", value)?),
            "size" => self.size = Some(parse_size(&value).ok_or(MountSpecError::Size(value))?),
            _ => return Err(unknown()),
        }
        Ok(())
    }

    fn finish(self, kind: Kind) -> Result<MountSpec, MountSpecError> {
        let target = self.target.filter(|t| !t.is_empty());
        let need_target =
            |target: Option<String>| target.ok_or(MountSpecError::MissingTarget(kind.name()));
        Ok(match kind {
            Kind::Bind => MountSpec::Bind(BindMount {
                target: need_target(target)?,
                source: self
                    .source
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "/".to_string()),
                from: self.from.filter(|f| !f.is_empty()),
                read_write: self.read_only == Some(false),
            }),
            Kind::Cache => {
                let target = need_target(target)?;
                MountSpec::Cache(CacheMount {
                    // BuildKit's default id is the target cleaned: `/x/` and
                    // `/x` are one cache.
                    id: self
                        .id
                        .filter(|id| !id.is_empty())
                        .unwrap_or_else(|| clean_target(&target)),
                    target,
                    sharing: self.sharing.unwrap_or_default(),
                    from: self.from.filter(|f| !f.is_empty()),
                    source: self.source.filter(|s| !s.is_empty()),
                    mode: self.mode.unwrap_or(0o755),
                    uid: self.uid.unwrap_or(0),
                    gid: self.gid.unwrap_or(0),
                    read_only: self.read_only.unwrap_or(false),
                })
            }
            Kind::Secret => {
                let id = match self.id.filter(|id| !id.is_empty()) {
                    Some(id) => id,
                    None => target
                        .as_deref()
                        .and_then(|t| t.trim_end_matches('/').rsplit('/').next())
                        .filter(|name| !name.is_empty())
                        .map(str::to_string)
                        .ok_or(MountSpecError::SecretWithoutId)?,
                };
                MountSpec::Secret(SecretMount {
                    id,
                    target,
                    env: self.env.filter(|e| !e.is_empty()),
                    required: self.required.unwrap_or(false),
                    mode: self.mode.unwrap_or(0o400),
                    uid: self.uid.unwrap_or(0),
                    gid: self.gid.unwrap_or(0),
                })
            }
            Kind::Tmpfs => MountSpec::Tmpfs(TmpfsMount {
                target: need_target(target)?,
                size: self.size,
            }),
        })
    }
}

/// The canonical text of a mount, every default spelled out: what the
/// layer cache's key sees (an id, never a secret's value).
impl fmt::Display for MountSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MountSpec::Bind(b) => write!(
                f,
                "type=bind,target={:?},source={:?},from={:?},rw={}",
                b.target, b.source, b.from, b.read_write
            ),
            MountSpec::Cache(c) => write!(
                f,
                "type=cache,id={:?},target={:?},sharing={:?},from={:?},source={:?},mode={:o},uid={},gid={},ro={}",
                c.id, c.target, c.sharing, c.from, c.source, c.mode, c.uid, c.gid, c.read_only
            ),
            MountSpec::Secret(s) => write!(
                f,
                "type=secret,id={:?},target={:?},env={:?},required={},mode={:o},uid={},gid={}",
                s.id,
                s.file_target(),
                s.env,
                s.required,
                s.mode,
                s.uid,
                s.gid
            ),
            MountSpec::Tmpfs(t) => write!(f, "type=tmpfs,target={:?},size={:?}", t.target, t.size),
        }
    }
}

/// A mount target as an absolute in-image path: a relative one is taken
/// from `workdir`, as BuildKit does. `.` and `..` are resolved lexically
/// and never climb above `/`.
pub fn absolute_target(target: &str, workdir: &str) -> String {
    crate::image::config::join_image_path(workdir, target)
}

/// Go's `strconv.ParseBool` spellings, which BuildKit accepts.
fn parse_bool(key: &'static str, value: &str) -> Result<bool, MountSpecError> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(MountSpecError::Bool {
            key,
            value: value.to_string(),
        }),
    }
}

fn parse_id(key: &'static str, value: String) -> Result<u32, MountSpecError> {
    value
        .parse()
        .map_err(|_| MountSpecError::Number { key, value })
}

/// Bytes, or a number with a binary unit `k`, `m`, `g`, `t` (optionally
/// followed by `b` or `ib`), as docker's `RAMInBytes` reads a size.
fn parse_size(value: &str) -> Option<u64> {
    let lower = value.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let number: u64 = number.parse().ok()?;
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return None,
    };
    number.checked_mul(1u64 << shift)
}

/// Comma-separated fields; a double-quoted stretch may hold commas.
pub(crate) fn csv_fields(line: &str) -> Vec<&str> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                fields.push(&line[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    fields.push(&line[start..]);
    fields
}

/// A field without the double quotes around it, if it has them.
pub(crate) fn unquote(field: &str) -> &str {
    field
        .strip_prefix('"')
        .and_then(|f| f.strip_suffix('"'))
        .unwrap_or(field)
}

/// `target` cleaned lexically (`//`, `.`, `..` and trailing slashes), as
/// Go's `path.Clean`; a relative target stays relative.
fn clean_target(target: &str) -> String {
    let cleaned = crate::image::config::join_image_path("/", target);
    if target.starts_with('/') {
        cleaned
    } else {
        match cleaned.trim_start_matches('/') {
            "" => ".".to_string(),
            relative => relative.to_string(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<MountSpec, MountSpecError> {
        parse_mount(raw, &mut |value: &str| {
            if value.contains("$BAD") {
                return Err("BAD is not set".to_string());
            }
            Ok(value
                .replace("${ID}", "npm")
                .replace("$DIR", "/root/.cache"))
        })
    }

    fn bind(target: &str, source: &str, from: Option<&str>, read_write: bool) -> MountSpec {
        MountSpec::Bind(BindMount {
            target: target.to_string(),
            source: source.to_string(),
            from: from.map(str::to_string),
            read_write,
        })
    }

    fn cache(id: &str, target: &str) -> CacheMount {
        CacheMount {
            id: id.to_string(),
            target: target.to_string(),
            sharing: Sharing::Shared,
            from: None,
            source: None,
            mode: 0o755,
            uid: 0,
            gid: 0,
            read_only: false,
        }
    }

    fn secret(id: &str) -> SecretMount {
        SecretMount {
            id: id.to_string(),
            target: None,
            env: None,
            required: false,
            mode: 0o400,
            uid: 0,
            gid: 0,
        }
    }

    #[test]
    fn valid_mounts() {
        let table: Vec<(&str, MountSpec)> = vec![
            ("target=/src", bind("/src", "/", None, false)),
            (
                "type=bind,source=app,target=/src,rw",
                bind("/src", "app", None, true),
            ),
            (
                "type=bind,src=/out,dst=/in,from=build,readonly",
                bind("/in", "/out", Some("build"), false),
            ),
            (
                "type=bind,destination=rel,readwrite=true",
                bind("rel", "/", None, true),
            ),
            (
                "TYPE=Bind,\"target=/a,b\",rw=false",
                bind("/a,b", "/", None, false),
            ),
            (
                "type=cache,target=$DIR",
                MountSpec::Cache(cache("/root/.cache", "/root/.cache")),
            ),
            // The default id is the target cleaned, as path.Clean does.
            (
                "type=cache,target=/x/",
                MountSpec::Cache(cache("/x", "/x/")),
            ),
            (
                "type=cache,target=//var/./cache/../lib//",
                MountSpec::Cache(cache("/var/lib", "//var/./cache/../lib//")),
            ),
            (
                "type=cache,target=rel/dir/",
                MountSpec::Cache(cache("rel/dir", "rel/dir/")),
            ),
            (
                "type=cache,id=go,target=/go/pkg,sharing=locked,mode=0700,uid=1000,gid=100,ro",
                MountSpec::Cache(CacheMount {
                    sharing: Sharing::Locked,
                    mode: 0o700,
                    uid: 1000,
                    gid: 100,
                    read_only: true,
                    ..cache("go", "/go/pkg")
                }),
            ),
            (
                "type=cache,target=/c,from=seed,source=/data,sharing=private",
                MountSpec::Cache(CacheMount {
                    sharing: Sharing::Private,
                    from: Some("seed".to_string()),
                    source: Some("/data".to_string()),
                    ..cache("/c", "/c")
                }),
            ),
            ("type=secret,id=${ID}", MountSpec::Secret(secret("npm"))),
            (
                "type=secret,target=/root/.npmrc,required,mode=0440,uid=1,gid=2",
                MountSpec::Secret(SecretMount {
                    target: Some("/root/.npmrc".to_string()),
                    required: true,
                    mode: 0o440,
                    uid: 1,
                    gid: 2,
                    ..secret(".npmrc")
                }),
            ),
            (
                "type=secret,id=token,env=TOKEN,required=false",
                MountSpec::Secret(SecretMount {
                    env: Some("TOKEN".to_string()),
                    ..secret("token")
                }),
            ),
            (
                "type=tmpfs,target=/scratch,size=64m",
                MountSpec::Tmpfs(TmpfsMount {
                    target: "/scratch".to_string(),
                    size: Some(64 << 20),
                }),
            ),
            (
                "type=tmpfs,target=/t,size=4096",
                MountSpec::Tmpfs(TmpfsMount {
                    target: "/t".to_string(),
                    size: Some(4096),
                }),
            ),
            (
                "type=tmpfs,target=/t,size=1GiB",
                MountSpec::Tmpfs(TmpfsMount {
                    target: "/t".to_string(),
                    size: Some(1 << 30),
                }),
            ),
        ];
        for (raw, want) in table {
            assert_eq!(parse(raw), Ok(want), "{raw}");
        }
    }

    #[test]
    fn invalid_mounts_have_exact_errors() {
        let table = [
            (
                "type=cache,target=/c,colour=red",
                "unknown key \"colour\" for --mount=type=cache (known keys: type, id, target, \
                 sharing, from, source, mode, uid, gid, ro, rw)",
            ),
            (
                "type=bind,target=/c,mode=0755",
                "unknown key \"mode\" for --mount=type=bind (known keys: type, target, source, \
                 from, rw, ro)",
            ),
            (
                "type=secret,id=a,sharing=locked",
                "unknown key \"sharing\" for --mount=type=secret (known keys: type, id, target, \
                 env, required, mode, uid, gid)",
            ),
            (
                "type=tmpfs,target=/t,required",
                "unknown key \"required\" for --mount=type=tmpfs (known keys: type, target, size)",
            ),
            (
                "type=cache,id=x",
                "--mount=type=cache needs a target: add target=/path",
            ),
            (
                "source=.",
                "--mount=type=bind needs a target: add target=/path",
            ),
            (
                "type=tmpfs,target=",
                "--mount=type=tmpfs needs a target: add target=/path",
            ),
            (
                "type=cache,target=/c,mode=0999",
                "invalid mode \"0999\" in --mount: expected an octal file mode such as 0755",
            ),
            (
                "type=secret,id=a,mode=rwx",
                "invalid mode \"rwx\" in --mount: expected an octal file mode such as 0755",
            ),
            (
                "type=cache,target=/c,mode=17777",
                "invalid mode \"17777\" in --mount: expected an octal file mode such as 0755",
            ),
            (
                "type=volume,target=/v",
                "unknown mount type \"volume\": use bind, cache, secret or tmpfs",
            ),
            (
                "type=ssh",
                "--mount=type=ssh is not supported: kiln forwards no SSH agent; pass credentials \
                 as a secret (--mount=type=secret with --secret) instead",
            ),
            (
                "type=cache,target=/c,uid=me",
                "invalid uid \"me\" in --mount: expected a number",
            ),
            (
                "type=bind,target=/c,rw=yes",
                "invalid rw \"yes\" in --mount: use true or false",
            ),
            (
                "type=cache,target=/c,sharing=exclusive",
                "invalid sharing \"exclusive\" in --mount: use shared, private or locked",
            ),
            (
                "type=tmpfs,target=/t,size=lots",
                "invalid size \"lots\" in --mount=type=tmpfs: use bytes or a number with k, m or g",
            ),
            (
                "type=secret,env=TOKEN",
                "--mount=type=secret needs id=NAME (or a target to take the name from)",
            ),
            (
                "type=bind,target",
                "invalid --mount field \"target\": expected key=value",
            ),
            (
                "type=bind,target=$BAD",
                "cannot expand \"$BAD\" in --mount: BAD is not set",
            ),
        ];
        for (raw, want) in table {
            assert_eq!(
                parse(raw).map_err(|e| e.to_string()),
                Err(want.to_string()),
                "{raw}"
            );
        }
    }

    #[test]
    fn secret_file_targets() {
        let file = |raw: &str| match parse(raw).unwrap() {
            MountSpec::Secret(secret) => secret.file_target(),
            other => panic!("not a secret: {other:?}"),
        };
        assert_eq!(file("type=secret,id=a"), Some("/run/secrets/a".to_string()));
        assert_eq!(file("type=secret,id=a,env=A"), None);
        assert_eq!(
            file("type=secret,id=a,env=A,target=/a"),
            Some("/a".to_string())
        );
    }

    #[test]
    fn canonical_text_spells_out_defaults() {
        let text = |raw: &str| parse(raw).unwrap().to_string();
        assert_eq!(
            text("type=cache,target=/c"),
            "type=cache,id=\"/c\",target=\"/c\",sharing=Shared,from=None,source=None,mode=755,uid=0,gid=0,ro=false"
        );
        assert_eq!(
            text("type=cache,target=/c"),
            text("type=cache,id=/c,dst=/c,mode=755")
        );
        assert_eq!(
            text("type=secret,id=a"),
            "type=secret,id=\"a\",target=Some(\"/run/secrets/a\"),env=None,required=false,mode=400,uid=0,gid=0"
        );
        assert_ne!(text("target=/a,rw"), text("target=/a"));
    }

    #[test]
    fn targets_are_made_absolute_from_the_workdir() {
        let table = [
            ("/abs", "/work", "/abs"),
            ("rel", "/work", "/work/rel"),
            ("./a/../b/", "/work", "/work/b"),
            ("../../..", "/work", "/"),
            ("/x//y/.", "/", "/x/y"),
        ];
        for (target, workdir, want) in table {
            assert_eq!(
                absolute_target(target, workdir),
                want,
                "{target} in {workdir}"
            );
        }
    }
}
