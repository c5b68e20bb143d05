//! The image config: parsed from a base image (or empty for `FROM
//! scratch`), changed by the Dockerfile's instructions, serialised
//! deterministically.
//!
//! A superset of the OCI schema: Docker's `Healthcheck`, `OnBuild` and
//! `Shell` are first-class, and every field kiln does not know (in the
//! image or in its `config`) is kept as it came, so nothing of a base image
//! is lost on the way through.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::descriptor::Descriptor;
use super::digest::sha256_digest;
use super::media::ManifestFormat;
use crate::platform::Platform;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the base image config is not valid JSON for an image config: {0}")]
    Parse(serde_json::Error),
    #[error(
        "invalid port {0:?} in EXPOSE (expected PORT, PORT/PROTOCOL or START-END[/PROTOCOL] with a port from 1 to 65535 and protocol tcp, udp or sctp)"
    )]
    Port(String),
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(
        rename = "os.features",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub config: ContainerConfig,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub history: Vec<History>,
    /// Fields of the base image kiln does not model (`container_config`,
    /// `docker_version`, …), written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    /// Whether CMD was set in the current stage: ENTRYPOINT then keeps it;
    /// an inherited CMD it clears (Docker's rule).
    #[serde(skip)]
    cmd_set_in_stage: bool,
}

/// The `config` object: what a container started from the image gets.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(
        default,
        deserialize_with = "object_keys",
        serialize_with = "keys_as_object",
        skip_serializing_if = "BTreeSet::is_empty"
    )]
    pub exposed_ports: BTreeSet<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "object_keys",
        serialize_with = "keys_as_object",
        skip_serializing_if = "BTreeSet::is_empty"
    )]
    pub volumes: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub args_escaped: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub on_build: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Docker's health check; durations in nanoseconds as Docker stores them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["NONE"]` disables an inherited check; otherwise `["CMD", …]` or
    /// `["CMD-SHELL", "…"]`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub diff_ids: Vec<String>,
}

impl Default for RootFs {
    fn default() -> RootFs {
        RootFs {
            kind: "layers".to_string(),
            diff_ids: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// Base images write `null` for empty lists and maps.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `ExposedPorts` and `Volumes` are sets written as `{"key": {}}`.
fn object_keys<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeSet<String>, D::Error> {
    let map: Option<BTreeMap<String, Value>> = Option::deserialize(d)?;
    Ok(map.unwrap_or_default().into_keys().collect())
}

fn keys_as_object<S: Serializer>(keys: &BTreeSet<String>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(keys.len()))?;
    for key in keys {
        map.serialize_entry(key, &Map::new())?;
    }
    map.end()
}

/// Parses a base image's config blob.
pub fn parse_config(bytes: &[u8]) -> Result<ImageConfig, ConfigError> {
    serde_json::from_slice(bytes).map_err(ConfigError::Parse)
}

impl ImageConfig {
    /// The config of `FROM scratch` for `platform`.
    pub fn scratch(platform: &Platform) -> ImageConfig {
        let mut config = ImageConfig::default();
        config.set_platform(platform);
        config
    }

    pub fn set_platform(&mut self, platform: &Platform) {
        self.os = platform.os.clone();
        self.architecture = platform.architecture.clone();
        self.variant = platform.variant.clone();
    }

    /// Starts a new stage on this config: nothing was set in it yet.
    pub fn begin_stage(&mut self) {
        self.cmd_set_in_stage = false;
    }

    /// The value of `key` in the image's environment.
    pub fn env(&self, key: &str) -> Option<&str> {
        self.config
            .env
            .iter()
            .find_map(|entry| match entry.split_once('=') {
                Some((k, v)) if k == key => Some(v),
                _ => None,
            })
    }

    /// Sets `key`, replacing an existing entry in place so the order of
    /// the environment stays that of first definition.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let entry = format!("{key}={value}");
        let existing = self
            .config
            .env
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key);
        match existing {
            Some(slot) => *slot = entry,
            None => self.config.env.push(entry),
        }
    }

    pub fn set_label(&mut self, key: &str, value: &str) {
        self.config
            .labels
            .insert(key.to_string(), value.to_string());
    }

    /// EXPOSE: `80` becomes `80/tcp`, a range adds every port in it.
    pub fn expose(&mut self, spec: &str) -> Result<(), ConfigError> {
        self.config.exposed_ports.extend(normalize_ports(spec)?);
        Ok(())
    }

    pub fn add_volume(&mut self, path: &str) {
        self.config.volumes.insert(path.to_string());
    }

    pub fn set_user(&mut self, user: &str) {
        self.config.user = Some(user.to_string());
    }

    /// The working directory RUN, COPY and WORKDIR start from: the
    /// image's, or `/` when it has none (or an empty one).
    pub fn workdir(&self) -> String {
        self.config
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".to_string())
    }

    /// WORKDIR: a relative path is taken from the current working directory.
    pub fn set_workdir(&mut self, dir: &str) {
        let base = self.config.working_dir.as_deref().unwrap_or("/");
        self.config.working_dir = Some(join_image_path(base, dir));
    }

    pub fn set_cmd(&mut self, cmd: Vec<String>) {
        self.config.cmd = Some(cmd);
        self.cmd_set_in_stage = true;
    }

    /// ENTRYPOINT clears a CMD inherited from the base image, as Docker
    /// does, but keeps one set earlier in this stage.
    pub fn set_entrypoint(&mut self, entrypoint: Vec<String>) {
        self.config.entrypoint = Some(entrypoint);
        if !self.cmd_set_in_stage {
            self.config.cmd = None;
        }
    }

    pub fn set_shell(&mut self, shell: Vec<String>) {
        self.config.shell = Some(shell);
    }

    pub fn set_stop_signal(&mut self, signal: &str) {
        self.config.stop_signal = Some(signal.to_string());
    }

    pub fn set_healthcheck(&mut self, healthcheck: Healthcheck) {
        self.config.healthcheck = Some(healthcheck);
    }

    pub fn add_onbuild(&mut self, trigger: &str) {
        self.config.on_build.push(trigger.to_string());
    }

    /// A base image's ONBUILD triggers, removed from the config: they run
    /// in the stage built on it and are not inherited further.
    pub fn take_onbuild(&mut self) -> Vec<String> {
        std::mem::take(&mut self.config.on_build)
    }

    pub fn set_args_escaped(&mut self, escaped: bool) {
        self.config.args_escaped = escaped;
    }

    /// MAINTAINER: the image author, also recorded in later history.
    pub fn set_author(&mut self, author: &str) {
        self.author = Some(author.to_string());
    }

    /// The image's creation time, seconds since 1970.
    pub fn set_created(&mut self, created: u64) {
        self.created = Some(format_rfc3339(created));
    }

    /// Records one instruction: its layer's diffID, or none for an
    /// instruction that only changed metadata (`empty_layer`).
    pub fn add_history(
        &mut self,
        created: u64,
        created_by: &str,
        comment: Option<&str>,
        diff_id: Option<&str>,
    ) {
        if let Some(diff_id) = diff_id {
            self.rootfs.diff_ids.push(diff_id.to_string());
        }
        self.history.push(History {
            created: Some(format_rfc3339(created)),
            created_by: Some(created_by.to_string()),
            author: self.author.clone(),
            comment: comment.map(str::to_string),
            empty_layer: diff_id.is_none(),
        });
    }

    /// The config blob: compact JSON, fields in a fixed order, maps sorted.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain structs, strings and maps with string keys
        // cannot fail; an empty blob would fail digest checks loudly.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn digest(&self) -> String {
        sha256_digest(&self.to_bytes())
    }

    /// Bytes, digest and descriptor in one go, for writing a manifest.
    pub fn to_blob(&self, format: ManifestFormat) -> super::Blob {
        super::Blob::new(format.config_media_type(), self.to_bytes())
    }

    pub fn descriptor(&self, format: ManifestFormat) -> Descriptor {
        self.to_blob(format).descriptor()
    }
}

/// `80` → `80/tcp`, `53/UDP` → `53/udp`, `8000-8002` → three ports.
pub fn normalize_ports(spec: &str) -> Result<Vec<String>, ConfigError> {
    let bad = || ConfigError::Port(spec.to_string());
    let (ports, proto) = match spec.split_once('/') {
        Some((ports, proto)) => (ports, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad());
    }
    let port = |s: &str| -> Result<u16, ConfigError> {
        match s.parse::<u16>() {
            Ok(p) if p > 0 && s.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
            _ => Err(bad()),
        }
    };
    let (start, end) = match ports.split_once('-') {
        Some((start, end)) => (port(start)?, port(end)?),
        None => {
            let p = port(ports)?;
            (p, p)
        }
    };
    if start > end {
        return Err(bad());
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// Docker's `filepath.Join` + `Clean` for image paths, lexically: `dir`
/// relative to `base` unless absolute, `.`/`..`/`//` collapsed, never above
/// `/`, no trailing slash. WORKDIR, and COPY/ADD destinations, use it.
pub fn join_image_path(base: &str, dir: &str) -> String {
    let joined = if dir.starts_with('/') {
        dir.to_string()
    } else {
        format!("{base}/{dir}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// RFC 3339 in UTC with second precision, as registries and tools expect
/// (`1970-01-01T00:00:00Z`).
pub fn format_rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's
/// `civil_from_days` for non-negative day counts.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rfc3339_formatting() {
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_700_000_000, "2023-11-14T22:13:20Z"),
            (4_107_542_399, "2100-02-28T23:59:59Z"),
        ];
        for (secs, want) in cases {
            assert_eq!(format_rfc3339(secs), want);
        }
    }

    #[test]
    fn ports_are_normalised() {
        let cases: Vec<(&str, Result<Vec<&str>, ()>)> = vec![
            ("80", Ok(vec!["80/tcp"])),
            ("53/udp", Ok(vec!["53/udp"])),
            ("53/UDP", Ok(vec!["53/udp"])),
            ("9000/sctp", Ok(vec!["9000/sctp"])),
            ("8000-8002", Ok(vec!["8000/tcp", "8001/tcp", "8002/tcp"])),
            ("0", Err(())),
            ("65536", Err(())),
            ("+80", Err(())),
            ("80/icmp", Err(())),
            ("90-80", Err(())),
            ("", Err(())),
        ];
        for (spec, want) in cases {
            let got = normalize_ports(spec).map_err(|_| ());
            assert_eq!(got, want.map(|v| strings(&v)), "{spec}");
        }
        assert_eq!(
            normalize_ports("http").unwrap_err().to_string(),
            "invalid port \"http\" in EXPOSE (expected PORT, PORT/PROTOCOL or START-END[/PROTOCOL] with a port from 1 to 65535 and protocol tcp, udp or sctp)"
        );
    }

    #[test]
    fn env_is_replaced_in_place_and_appended_otherwise() {
        let mut c = ImageConfig::default();
        c.config.env = strings(&["PATH=/bin", "A=1", "BARE"]);
        c.set_env("A", "2");
        c.set_env("B", "x=y");
        c.set_env("BARE", "now");
        assert_eq!(
            c.config.env,
            strings(&["PATH=/bin", "A=2", "BARE=now", "B=x=y"])
        );
        assert_eq!(c.env("B"), Some("x=y"));
        assert_eq!(c.env("C"), None);
    }

    #[test]
    fn entrypoint_resets_inherited_cmd_only() {
        let base = br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let mut c = parse_config(base).unwrap();
        c.set_entrypoint(strings(&["/app"]));
        assert_eq!(c.config.cmd, None);

        let mut c = parse_config(base).unwrap();
        c.set_cmd(strings(&["--serve"]));
        c.set_entrypoint(strings(&["/app"]));
        assert_eq!(c.config.cmd, Some(strings(&["--serve"])));

        // A later stage built on this config inherits the CMD again.
        c.begin_stage();
        c.set_entrypoint(strings(&["/other"]));
        assert_eq!(c.config.cmd, None);
    }

    #[test]
    fn workdir_resolution() {
        let cases = [
            (None, "/app", "/app"),
            (None, "app", "/app"),
            (Some("/app"), "src", "/app/src"),
            (Some("/app"), "../x/./y/", "/x/y"),
            (Some("/app"), "/", "/"),
        ];
        for (base, dir, want) in cases {
            let mut c = ImageConfig::default();
            c.config.working_dir = base.map(str::to_string);
            c.set_workdir(dir);
            assert_eq!(
                c.config.working_dir.as_deref(),
                Some(want),
                "{base:?} {dir}"
            );
        }
    }

    #[test]
    fn scratch_config_bytes_are_exact() {
        let mut c = ImageConfig::scratch(&Platform::new("linux", "arm64", None));
        c.set_created(0);
        c.set_env("PATH", "/bin");
        c.expose("80").unwrap();
        c.add_volume("/data");
        c.set_label("b", "2");
        c.set_label("a", "1");
        c.set_entrypoint(strings(&["/app"]));
        c.set_args_escaped(true);
        c.set_healthcheck(Healthcheck {
            test: strings(&["CMD", "true"]),
            interval: Some(30_000_000_000),
            ..Healthcheck::default()
        });
        c.set_shell(strings(&["/bin/sh", "-c"]));
        c.add_onbuild("RUN true");
        c.set_author("me");
        c.add_history(0, "COPY app /app # buildkit", None, Some("sha256:aa"));
        c.add_history(0, "ENTRYPOINT [\"/app\"]", Some("kiln"), None);
        let want = concat!(
            r#"{"created":"1970-01-01T00:00:00Z","author":"me","architecture":"arm64","os":"linux","#,
            r#""config":{"ExposedPorts":{"80/tcp":{}},"Env":["PATH=/bin"],"Entrypoint":["/app"],"Volumes":{"/data":{}},"#,
            r#""Labels":{"a":"1","b":"2"},"ArgsEscaped":true,"Healthcheck":{"Test":["CMD","true"],"Interval":30000000000},"#,
            r#""OnBuild":["RUN true"],"Shell":["/bin/sh","-c"]},"#,
            r#""rootfs":{"type":"layers","diff_ids":["sha256:aa"]},"#,
            r#""history":[{"created":"1970-01-01T00:00:00Z","created_by":"COPY app /app # buildkit","author":"me"},"#,
            r#"{"created":"1970-01-01T00:00:00Z","created_by":"ENTRYPOINT [\"/app\"]","author":"me","comment":"kiln","empty_layer":true}]}"#
        );
        assert_eq!(String::from_utf8(c.to_bytes()).unwrap(), want);
        assert_eq!(c.digest(), sha256_digest(want.as_bytes()));
    }

    #[test]
    fn unknown_base_fields_survive_a_round_trip() {
        let base = br#"{"architecture":"amd64","config":{"Hostname":"","Env":null,"Labels":null,"OnBuild":null,"Entrypoint":null,"Volumes":null,"ExposedPorts":{"443/tcp":{}}},"container_config":{"Cmd":["x"]},"created":"2024-01-01T00:00:00Z","docker_version":"24.0.0","history":[{"created_by":"x","empty_layer":true}],"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:bb"]}}"#;
        let c = parse_config(base).unwrap();
        assert_eq!(
            c.config.exposed_ports,
            BTreeSet::from(["443/tcp".to_string()])
        );
        assert_eq!(c.history.len(), 1);
        let want = concat!(
            r#"{"created":"2024-01-01T00:00:00Z","architecture":"amd64","os":"linux","#,
            r#""config":{"ExposedPorts":{"443/tcp":{}},"Hostname":""},"#,
            r#""rootfs":{"type":"layers","diff_ids":["sha256:bb"]},"#,
            r#""history":[{"created_by":"x","empty_layer":true}],"#,
            r#""container_config":{"Cmd":["x"]},"docker_version":"24.0.0"}"#
        );
        assert_eq!(String::from_utf8(c.to_bytes()).unwrap(), want);
        assert_eq!(parse_config(want.as_bytes()).unwrap(), c);
    }

    #[test]
    fn onbuild_triggers_are_taken_once() {
        let mut c = ImageConfig::default();
        c.add_onbuild("RUN a");
        c.add_onbuild("RUN b");
        assert_eq!(c.take_onbuild(), strings(&["RUN a", "RUN b"]));
        assert_eq!(c.take_onbuild(), Vec::<String>::new());
    }

    #[test]
    fn invalid_base_config_is_reported() {
        assert!(
            parse_config(b"[1]")
                .unwrap_err()
                .to_string()
                .starts_with("the base image config is not valid JSON for an image config: ")
        );
    }
}
