//! What the runner does with a pod, decided from the pod and the objects it
//! references, without any I/O: the program and arguments, the
//! environment, the files of its volumes and where its paths land on the
//! host. The I/O shell in `runner.rs` fetches, writes and spawns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, KeyToPath, Pod, Volume};

/// Where kube-rs and client-go look for the pod's service-account
/// credentials; the runner hands them a kubeconfig instead (see
/// `runner.rs`).
pub const SERVICE_ACCOUNT_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The kubelet's default `terminationMessagePath`.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// Set in every process: the host file that stands for the container's
/// `terminationMessagePath`. The kiln builder writes its termination
/// message there (its `TERMINATION_LOG_ENV`) instead of
/// `/dev/termination-log`, which on the host is not the pod's.
pub const TERMINATION_MESSAGE_ENV: &str = "KILN_TERMINATION_MESSAGE_PATH";
/// The builder's emulation switch (the same as `kiln --emulation=qemu`).
pub const EMULATION_ENV: &str = "KILN_EMULATION";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "image {image} has no host program in the runner's image table (known: {known}); add it to RunnerConfig::images"
    )]
    UnmappedImage { image: String, known: String },
    #[error(
        "container {container} has no command and image {image} no entrypoint in the runner's table"
    )]
    NoCommand { container: String, image: String },
    #[error(
        "the e2e runner runs pods of exactly one container and no init containers; pod {pod} has {containers} and {init} init"
    )]
    UnsupportedShape {
        pod: String,
        containers: usize,
        init: usize,
    },
    #[error(
        "env {name} of container {container}: field {field} is not supported by the e2e runner"
    )]
    UnsupportedField {
        container: String,
        name: String,
        field: String,
    },
    #[error("env {name} of container {container}: {kind} {object} has no key {key}")]
    MissingKey {
        container: String,
        name: String,
        kind: &'static str,
        object: String,
        key: String,
    },
    #[error("{kind} {object} (referenced by {by}) does not exist")]
    MissingObject {
        kind: &'static str,
        object: String,
        by: String,
    },
    #[error("volume mount {mount} of container {container} names no volume of the pod")]
    MissingVolume { container: String, mount: String },
    #[error(
        "volume {volume} is of a kind the e2e runner does not support (secret, configMap, projected, emptyDir, downwardAPI are)"
    )]
    UnsupportedVolume { volume: String },
    #[error("item path {path} of volume {volume} leaves the volume")]
    UnsafeItemPath { volume: String, path: String },
}

/// A container image as the runner plays it: the host program standing in
/// for the image's entrypoint, and for program paths inside the image that
/// pods name in `command`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostImage {
    /// The image's ENTRYPOINT, as host argv (e.g. the `kiln` binary).
    pub entrypoint: Vec<String>,
    /// Paths inside the image → host programs, e.g. `/kiln/executor` →
    /// `target/debug/kiln`. A `command[0]` not listed runs as it is (so
    /// `/bin/sh` is the host's).
    pub programs: BTreeMap<String, PathBuf>,
    /// Whole argv words replaced before the process starts: what makes
    /// sense in the image but not on the host, e.g. the builder's
    /// `--isolation=inplace` (over the container's own `/`, here the
    /// host's) → `--isolation=chroot`.
    pub replace_args: BTreeMap<String, String>,
    /// Environment the image would carry (its `ENV`), e.g. the CA bundle
    /// `SSL_CERT_FILE` that the real image has built in.
    pub env: BTreeMap<String, String>,
}

/// The repository part of an image reference: no `@digest`, no `:tag`.
pub fn image_repository(image: &str) -> &str {
    let without_digest = image.split_once('@').map_or(image, |(name, _)| name);
    let last_slash = without_digest.rfind('/').map_or(0, |index| index + 1);
    match without_digest[last_slash..].rfind(':') {
        Some(colon) => &without_digest[..last_slash + colon],
        None => without_digest,
    }
}

/// Finds the host image for `image`: an exact reference first, then its
/// repository.
pub fn host_image<'a>(
    images: &'a BTreeMap<String, HostImage>,
    image: &str,
) -> Result<&'a HostImage, PlanError> {
    images
        .get(image)
        .or_else(|| images.get(image_repository(image)))
        .ok_or_else(|| PlanError::UnmappedImage {
            image: image.to_string(),
            known: images.keys().cloned().collect::<Vec<_>>().join(", "),
        })
}

/// Kubernetes' `$(VAR)` expansion in env values, command and args: defined
/// names are replaced, `$$` is a literal `$`, anything else stays.
pub fn expand_references(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(close) = inner.find(')')
            && let Some(value) = env.get(&inner[..close])
        {
            out.push_str(value);
            rest = &inner[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// argv of the container: `command` (its first word mapped through the host
/// image's programs) or the image's entrypoint, then `args`; `$(VAR)`s
/// expanded with the container's env.
///
/// Words of the pod spec that name a container path below a volume mount
/// are rewritten to the host path (`paths`); the words the image mapping
/// gives (its entrypoint, a mapped program, replaced arguments) are host
/// paths already and kept as they are, also when the checkout — and so the
/// program — lives below a path a volume is mounted on (`/tmp`).
pub fn container_argv(
    container: &Container,
    image: &HostImage,
    env: &BTreeMap<String, String>,
    paths: &PathMap,
) -> Result<Vec<String>, PlanError> {
    let from_spec = |word: &String| paths.translate(&expand_references(word, env));
    let mut argv: Vec<String> = match container.command.as_deref() {
        Some([program, rest @ ..]) => {
            let program = image.programs.get(program).map_or_else(
                || paths.translate(program),
                |host| host.display().to_string(),
            );
            std::iter::once(program)
                .chain(rest.iter().map(from_spec))
                .collect()
        }
        _ => image.entrypoint.clone(),
    };
    if argv.is_empty() {
        return Err(PlanError::NoCommand {
            container: container.name.clone(),
            image: container.image.clone().unwrap_or_default(),
        });
    }
    argv.extend(container.args.iter().flatten().map(from_spec));
    for word in argv.iter_mut().skip(1) {
        if let Some(replacement) = image.replace_args.get(word.as_str()) {
            *word = replacement.clone();
        }
    }
    Ok(argv)
}

/// Contents of the Secrets and ConfigMaps a pod references, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodObjects {
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    pub config_maps: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

/// The value of a downward-API `fieldRef` for this pod.
pub fn field_value(pod: &Pod, field_path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let from_map = |map: Option<&BTreeMap<String, String>>, prefix: &str| {
        let key = field_path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(
            map.and_then(|map| map.get(key))
                .cloned()
                .unwrap_or_default(),
        )
    };
    match field_path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|spec| spec.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|spec| spec.service_account_name.clone()),
        "status.hostIP" | "status.podIP" => Some(
            status
                .and_then(|status| status.host_ip.clone())
                .unwrap_or_else(|| "127.0.0.1".to_string()),
        ),
        _ => from_map(meta.labels.as_ref(), "metadata.labels['")
            .or_else(|| from_map(meta.annotations.as_ref(), "metadata.annotations['")),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The container's environment as the kubelet builds it from the spec:
/// `envFrom` first, then `env` in order (later entries may refer to earlier
/// ones with `$(VAR)`).
pub fn container_env(
    pod: &Pod,
    container: &Container,
    objects: &PodObjects,
) -> Result<BTreeMap<String, String>, PlanError> {
    let mut env = BTreeMap::new();
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        let (kind, name, optional, data) = if let Some(reference) = &source.config_map_ref {
            let data = objects.config_maps.get(&reference.name);
            ("ConfigMap", &reference.name, reference.optional, data)
        } else if let Some(reference) = &source.secret_ref {
            let data = objects.secrets.get(&reference.name);
            ("Secret", &reference.name, reference.optional, data)
        } else {
            continue;
        };
        match data {
            Some(data) => {
                for (key, value) in data {
                    env.insert(format!("{prefix}{key}"), text(value));
                }
            }
            None if optional == Some(true) => {}
            None => {
                return Err(PlanError::MissingObject {
                    kind,
                    object: name.clone(),
                    by: format!("envFrom of container {}", container.name),
                });
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            None => expand_references(var.value.as_deref().unwrap_or_default(), &env),
            Some(source) => {
                if let Some(field) = &source.field_ref {
                    field_value(pod, &field.field_path).ok_or_else(|| {
                        PlanError::UnsupportedField {
                            container: container.name.clone(),
                            name: var.name.clone(),
                            field: field.field_path.clone(),
                        }
                    })?
                } else if let Some(selector) = &source.secret_key_ref {
                    match key_value(&objects.secrets, "Secret", &selector.name, &selector.key) {
                        Ok(value) => value,
                        Err(_) if selector.optional == Some(true) => continue,
                        Err((kind, object)) => {
                            return Err(PlanError::MissingKey {
                                container: container.name.clone(),
                                name: var.name.clone(),
                                kind,
                                object,
                                key: selector.key.clone(),
                            });
                        }
                    }
                } else if let Some(selector) = &source.config_map_key_ref {
                    match key_value(
                        &objects.config_maps,
                        "ConfigMap",
                        &selector.name,
                        &selector.key,
                    ) {
                        Ok(value) => value,
                        Err(_) if selector.optional == Some(true) => continue,
                        Err((kind, object)) => {
                            return Err(PlanError::MissingKey {
                                container: container.name.clone(),
                                name: var.name.clone(),
                                kind,
                                object,
                                key: selector.key.clone(),
                            });
                        }
                    }
                } else {
                    return Err(PlanError::UnsupportedField {
                        container: container.name.clone(),
                        name: var.name.clone(),
                        field: "resourceFieldRef".to_string(),
                    });
                }
            }
        };
        env.insert(var.name.clone(), value);
    }
    Ok(env)
}

fn key_value(
    objects: &BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    kind: &'static str,
    name: &str,
    key: &str,
) -> Result<String, (&'static str, String)> {
    objects
        .get(name)
        .and_then(|data| data.get(key))
        .map(|value| text(value))
        .ok_or((kind, name.to_string()))
}

/// A file of a volume: path relative to the volume's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeFile {
    Content {
        path: String,
        bytes: Vec<u8>,
    },
    /// A service-account token the runner requests for the pod (TokenRequest).
    Token {
        path: String,
        audience: Option<String>,
        expiration_seconds: Option<i64>,
    },
}

fn checked_path(volume: &str, path: &str) -> Result<String, PlanError> {
    let unsafe_path = path.is_empty()
        || path.starts_with('/')
        || Path::new(path)
            .components()
            .any(|component| matches!(component, std::path::Component::ParentDir));
    if unsafe_path {
        return Err(PlanError::UnsafeItemPath {
            volume: volume.to_string(),
            path: path.to_string(),
        });
    }
    Ok(path.to_string())
}

/// The files of `data` as a secret/configMap volume shows them: every key,
/// or only the listed `items` under their paths.
fn object_files(
    volume: &str,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
) -> Result<Vec<VolumeFile>, PlanError> {
    match items {
        None | Some([]) => data
            .iter()
            .map(|(key, bytes)| {
                Ok(VolumeFile::Content {
                    path: checked_path(volume, key)?,
                    bytes: bytes.clone(),
                })
            })
            .collect(),
        Some(items) => items
            .iter()
            .filter_map(|item| {
                let bytes = data.get(&item.key)?;
                Some(
                    checked_path(volume, &item.path).map(|path| VolumeFile::Content {
                        path,
                        bytes: bytes.clone(),
                    }),
                )
            })
            .collect(),
    }
}

fn referenced<'a>(
    objects: &'a BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    kind: &'static str,
    name: &str,
    optional: Option<bool>,
    volume: &str,
) -> Result<Option<&'a BTreeMap<String, Vec<u8>>>, PlanError> {
    match objects.get(name) {
        Some(data) => Ok(Some(data)),
        None if optional == Some(true) => Ok(None),
        None => Err(PlanError::MissingObject {
            kind,
            object: name.to_string(),
            by: format!("volume {volume}"),
        }),
    }
}

/// The files a volume holds (an emptyDir holds none).
pub fn volume_files(
    pod: &Pod,
    volume: &Volume,
    objects: &PodObjects,
) -> Result<Vec<VolumeFile>, PlanError> {
    let name = volume.name.as_str();
    if let Some(source) = &volume.secret {
        let secret = source.secret_name.clone().unwrap_or_default();
        return match referenced(&objects.secrets, "Secret", &secret, source.optional, name)? {
            Some(data) => object_files(name, data, source.items.as_deref()),
            None => Ok(Vec::new()),
        };
    }
    if let Some(source) = &volume.config_map {
        return match referenced(
            &objects.config_maps,
            "ConfigMap",
            &source.name,
            source.optional,
            name,
        )? {
            Some(data) => object_files(name, data, source.items.as_deref()),
            None => Ok(Vec::new()),
        };
    }
    if let Some(source) = &volume.downward_api {
        return source
            .items
            .iter()
            .flatten()
            .map(|item| {
                let field = item
                    .field_ref
                    .as_ref()
                    .map(|field| field.field_path.as_str());
                let value = field
                    .and_then(|field| field_value(pod, field))
                    .ok_or_else(|| PlanError::UnsupportedField {
                        container: String::new(),
                        name: name.to_string(),
                        field: field.unwrap_or("resourceFieldRef").to_string(),
                    })?;
                Ok(VolumeFile::Content {
                    path: checked_path(name, &item.path)?,
                    bytes: value.into_bytes(),
                })
            })
            .collect();
    }
    if let Some(projected) = &volume.projected {
        let mut files = Vec::new();
        for source in projected.sources.iter().flatten() {
            if let Some(token) = &source.service_account_token {
                files.push(VolumeFile::Token {
                    path: checked_path(name, &token.path)?,
                    audience: token
                        .audience
                        .clone()
                        .filter(|audience| !audience.is_empty()),
                    expiration_seconds: token.expiration_seconds,
                });
            }
            if let Some(config_map) = &source.config_map
                && let Some(data) = referenced(
                    &objects.config_maps,
                    "ConfigMap",
                    &config_map.name,
                    config_map.optional,
                    name,
                )?
            {
                files.extend(object_files(name, data, config_map.items.as_deref())?);
            }
            if let Some(secret) = &source.secret
                && let Some(data) = referenced(
                    &objects.secrets,
                    "Secret",
                    &secret.name,
                    secret.optional,
                    name,
                )?
            {
                files.extend(object_files(name, data, secret.items.as_deref())?);
            }
            if let Some(downward) = &source.downward_api {
                let as_volume = Volume {
                    name: name.to_string(),
                    downward_api: Some(k8s_openapi::api::core::v1::DownwardAPIVolumeSource {
                        items: downward.items.clone(),
                        ..Default::default()
                    }),
                    ..Volume::default()
                };
                files.extend(volume_files(pod, &as_volume, objects)?);
            }
        }
        return Ok(files);
    }
    if volume.empty_dir.is_some() {
        return Ok(Vec::new());
    }
    Err(PlanError::UnsupportedVolume {
        volume: name.to_string(),
    })
}

/// Container paths → host paths, longest container path first so the most
/// specific mount wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathMap {
    entries: Vec<(String, PathBuf)>,
}

impl PathMap {
    pub fn new(entries: impl IntoIterator<Item = (String, PathBuf)>) -> PathMap {
        let mut entries: Vec<(String, PathBuf)> = entries
            .into_iter()
            .map(|(container, host)| (container.trim_end_matches('/').to_string(), host))
            .collect();
        entries.sort_by(|(a, _), (b, _)| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        PathMap { entries }
    }

    /// The host path for a container path under one of the mounts.
    pub fn host_path(&self, container_path: &str) -> Option<PathBuf> {
        self.entries.iter().find_map(|(mount, host)| {
            if container_path == mount {
                Some(host.clone())
            } else {
                let rest = container_path
                    .strip_prefix(mount.as_str())?
                    .strip_prefix('/')?;
                Some(host.join(rest))
            }
        })
    }

    /// Rewrites a word of argv or an env value that is a container path
    /// under a mount — alone or as the value of `--flag=PATH` — to the
    /// host path; anything else is returned as it is.
    pub fn translate(&self, word: &str) -> String {
        if let Some(host) = self.host_path(word) {
            return host.display().to_string();
        }
        if let Some((flag, value)) = word.split_once('=')
            && let Some(host) = self.host_path(value)
        {
            return format!("{flag}={}", host.display());
        }
        word.to_string()
    }
}

/// Kubernetes architecture name of the host (`GOARCH` spelling).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Environment the runner adds for a pod on a node of `node_arch`: a node
/// of another architecture than the host's runs the builder's RUN steps
/// under emulation.
pub fn emulation_env(node_arch: Option<&str>, host_arch: &str) -> Option<(String, String)> {
    match node_arch {
        Some(arch) if arch != host_arch => Some((EMULATION_ENV.to_string(), "qemu".to_string())),
        _ => None,
    }
}

/// The termination message as the kubelet reports it: the file's content
/// (at most 4096 bytes); with `FallbackToLogsOnError`, a failed container
/// with an empty file gets the end of its log instead.
pub fn termination_message(file: &[u8], policy: Option<&str>, failed: bool, log: &[u8]) -> String {
    const LIMIT: usize = 4096;
    let message = if file.is_empty() && failed && policy == Some("FallbackToLogsOnError") {
        let start = log.len().saturating_sub(2048);
        &log[start..]
    } else {
        &file[..file.len().min(LIMIT)]
    };
    String::from_utf8_lossy(message).trim_end().to_string()
}

/// What follows a container's exit under the pod's restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExit {
    Restart,
    Finish { phase: &'static str },
}

pub fn after_exit(restart_policy: Option<&str>, exit_code: i32) -> AfterExit {
    let phase = if exit_code == 0 {
        "Succeeded"
    } else {
        "Failed"
    };
    match restart_policy {
        Some("Never") => AfterExit::Finish { phase },
        Some("OnFailure") if exit_code == 0 => AfterExit::Finish { phase },
        // Always is the API's default.
        _ => AfterExit::Restart,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn image_repository_drops_tag_and_digest() {
        for (image, expected) in [
            ("kiln", "kiln"),
            ("kiln:1.0", "kiln"),
            ("ghcr.io/kiln/builder:v1", "ghcr.io/kiln/builder"),
            ("localhost:5000/kiln/builder", "localhost:5000/kiln/builder"),
            (
                "localhost:5000/kiln/builder:v1",
                "localhost:5000/kiln/builder",
            ),
            ("r.io/a@sha256:abc", "r.io/a"),
            ("r.io/a:t@sha256:abc", "r.io/a"),
        ] {
            assert_eq!(image_repository(image), expected, "{image}");
        }
    }

    #[test]
    fn host_image_prefers_the_exact_reference() {
        let images = BTreeMap::from([
            (
                "r.io/kiln".to_string(),
                HostImage {
                    entrypoint: vec!["/any".to_string()],
                    ..HostImage::default()
                },
            ),
            (
                "r.io/kiln:debug".to_string(),
                HostImage {
                    entrypoint: vec!["/debug".to_string()],
                    ..HostImage::default()
                },
            ),
        ]);
        assert_eq!(
            host_image(&images, "r.io/kiln:debug").unwrap().entrypoint,
            ["/debug"]
        );
        assert_eq!(
            host_image(&images, "r.io/kiln:1").unwrap().entrypoint,
            ["/any"]
        );
        assert_eq!(
            host_image(&images, "r.io/other:1").unwrap_err().to_string(),
            "image r.io/other:1 has no host program in the runner's image table (known: r.io/kiln, r.io/kiln:debug); add it to RunnerConfig::images"
        );
    }

    #[test]
    fn references_expand_like_the_kubelet() {
        let vars = env(&[("A", "x"), ("EMPTY", "")]);
        for (text, expected) in [
            ("$(A)", "x"),
            ("a-$(A)-b", "a-x-b"),
            ("$(EMPTY)|", "|"),
            ("$(B)", "$(B)"),
            ("$$(A)", "$(A)"),
            ("$$", "$"),
            ("$", "$"),
            ("$(A", "$(A"),
            ("cost: $5", "cost: $5"),
            ("$(A)$(A)", "xx"),
        ] {
            assert_eq!(expand_references(text, &vars), expected, "{text}");
        }
    }

    #[test]
    fn argv_maps_the_image_program_or_uses_the_entrypoint() {
        let image = HostImage {
            entrypoint: vec!["/host/kiln".to_string()],
            programs: BTreeMap::from([("/kiln/executor".to_string(), PathBuf::from("/host/kiln"))]),
            env: BTreeMap::new(),
            replace_args: BTreeMap::new(),
        };
        let container = |command: Option<&[&str]>, args: Option<&[&str]>| Container {
            name: "main".to_string(),
            image: Some("kiln".to_string()),
            command: command.map(|words| words.iter().map(|w| w.to_string()).collect()),
            args: args.map(|words| words.iter().map(|w| w.to_string()).collect()),
            ..Container::default()
        };
        let vars = env(&[("DEST", "r/x:1")]);
        let cases: [(Container, Vec<&str>); 4] = [
            (
                container(None, Some(&["--destination=$(DEST)"])),
                vec!["/host/kiln", "--destination=r/x:1"],
            ),
            (
                container(Some(&["/kiln/executor", "--no-push"]), Some(&["-f", "D"])),
                vec!["/host/kiln", "--no-push", "-f", "D"],
            ),
            (
                container(Some(&["/bin/sh", "-c", "echo $(DEST)"]), None),
                vec!["/bin/sh", "-c", "echo r/x:1"],
            ),
            (container(Some(&[]), None), vec!["/host/kiln"]),
        ];
        for (container, expected) in cases {
            assert_eq!(
                container_argv(&container, &image, &vars, &PathMap::default()).unwrap(),
                expected,
                "{container:?}"
            );
        }
        let host_safe = HostImage {
            replace_args: BTreeMap::from([(
                "--isolation=inplace".to_string(),
                "--isolation=chroot".to_string(),
            )]),
            ..image.clone()
        };
        assert_eq!(
            container_argv(
                &container(None, Some(&["--isolation=inplace", "--no-push"])),
                &host_safe,
                &vars,
                &PathMap::default()
            )
            .unwrap(),
            ["/host/kiln", "--isolation=chroot", "--no-push"]
        );
        // A checkout below /tmp, a pod with a volume on /tmp: the image's
        // program stays the host binary, the pod's own words are mapped.
        let under_tmp = HostImage {
            entrypoint: vec!["/tmp/checkout/target/debug/kiln".to_string()],
            programs: BTreeMap::from([(
                "/kiln/executor".to_string(),
                PathBuf::from("/tmp/checkout/target/debug/kiln"),
            )]),
            env: BTreeMap::new(),
            replace_args: BTreeMap::new(),
        };
        let tmp_volume =
            PathMap::new([("/tmp".to_string(), PathBuf::from("/pods/p1/volumes/tmp"))]);
        for container in [
            container(None, Some(&["--digest-file=/tmp/digest"])),
            container(
                Some(&["/kiln/executor"]),
                Some(&["--digest-file=/tmp/digest"]),
            ),
        ] {
            assert_eq!(
                container_argv(&container, &under_tmp, &vars, &tmp_volume).unwrap(),
                [
                    "/tmp/checkout/target/debug/kiln",
                    "--digest-file=/pods/p1/volumes/tmp/digest"
                ]
            );
        }
        let no_entrypoint = HostImage::default();
        assert_eq!(
            container_argv(
                &container(None, Some(&["x"])),
                &no_entrypoint,
                &vars,
                &PathMap::default()
            )
            .unwrap_err(),
            PlanError::NoCommand {
                container: "main".to_string(),
                image: "kiln".to_string()
            }
        );
    }

    fn sample_pod() -> Pod {
        pod(serde_json::json!({
            "metadata": {
                "name": "p", "namespace": "ns", "uid": "u-1",
                "labels": { "app": "kiln" },
                "annotations": { "note": "n" },
            },
            "spec": { "nodeName": "node-a", "serviceAccountName": "builder", "containers": [] },
        }))
    }

    #[test]
    fn field_refs_read_the_pod() {
        let pod = sample_pod();
        for (field, expected) in [
            ("metadata.name", Some("p")),
            ("metadata.namespace", Some("ns")),
            ("metadata.uid", Some("u-1")),
            ("spec.nodeName", Some("node-a")),
            ("spec.serviceAccountName", Some("builder")),
            ("status.podIP", Some("127.0.0.1")),
            ("metadata.labels['app']", Some("kiln")),
            ("metadata.labels['none']", Some("")),
            ("metadata.annotations['note']", Some("n")),
            ("status.phase", None),
        ] {
            assert_eq!(field_value(&pod, field).as_deref(), expected, "{field}");
        }
    }

    fn objects() -> PodObjects {
        PodObjects {
            secrets: BTreeMap::from([(
                "registry".to_string(),
                BTreeMap::from([
                    (".dockerconfigjson".to_string(), b"{}".to_vec()),
                    ("user".to_string(), b"u".to_vec()),
                ]),
            )]),
            config_maps: BTreeMap::from([(
                "settings".to_string(),
                BTreeMap::from([
                    ("LEVEL".to_string(), b"debug".to_vec()),
                    ("MODE".to_string(), b"fast".to_vec()),
                ]),
            )]),
        }
    }

    #[test]
    fn env_comes_from_values_fields_objects_in_order() {
        let pod = sample_pod();
        let container: Container = serde_json::from_value(serde_json::json!({
            "name": "main",
            "envFrom": [{ "configMapRef": { "name": "settings" }, "prefix": "CFG_" }],
            "env": [
                { "name": "NS", "valueFrom": { "fieldRef": { "fieldPath": "metadata.namespace" } } },
                { "name": "POD", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
                { "name": "REQUEST", "value": "$(NS)/$(POD)" },
                { "name": "USER", "valueFrom": { "secretKeyRef": { "name": "registry", "key": "user" } } },
                { "name": "LEVEL", "valueFrom": { "configMapKeyRef": { "name": "settings", "key": "LEVEL" } } },
                { "name": "GONE", "valueFrom": { "secretKeyRef": { "name": "nope", "key": "k", "optional": true } } },
            ],
        }))
        .unwrap();
        let env = container_env(&pod, &container, &objects()).unwrap();
        assert_eq!(
            env,
            self::env(&[
                ("CFG_LEVEL", "debug"),
                ("CFG_MODE", "fast"),
                ("NS", "ns"),
                ("POD", "p"),
                ("REQUEST", "ns/p"),
                ("USER", "u"),
                ("LEVEL", "debug"),
            ])
        );
    }

    #[test]
    fn env_errors_name_the_variable_and_object() {
        let pod = sample_pod();
        let cases = [
            (
                serde_json::json!({ "name": "X", "valueFrom": { "secretKeyRef": { "name": "registry", "key": "pass" } } }),
                "env X of container main: Secret registry has no key pass",
            ),
            (
                serde_json::json!({ "name": "X", "valueFrom": { "fieldRef": { "fieldPath": "status.phase" } } }),
                "env X of container main: field status.phase is not supported by the e2e runner",
            ),
        ];
        for (var, expected) in cases {
            let container: Container =
                serde_json::from_value(serde_json::json!({ "name": "main", "env": [var] }))
                    .unwrap();
            assert_eq!(
                container_env(&pod, &container, &objects())
                    .unwrap_err()
                    .to_string(),
                expected
            );
        }
    }

    #[test]
    fn volumes_become_files() {
        let pod = sample_pod();
        let volume = |json: serde_json::Value| -> Volume { serde_json::from_value(json).unwrap() };
        let content = |path: &str, bytes: &[u8]| VolumeFile::Content {
            path: path.to_string(),
            bytes: bytes.to_vec(),
        };
        let cases = [
            (
                volume(serde_json::json!({ "name": "docker", "secret": {
                    "secretName": "registry", "items": [{ "key": ".dockerconfigjson", "path": "config.json" }] } })),
                vec![content("config.json", b"{}")],
            ),
            (
                volume(serde_json::json!({ "name": "cfg", "configMap": { "name": "settings" } })),
                vec![content("LEVEL", b"debug"), content("MODE", b"fast")],
            ),
            (
                volume(
                    serde_json::json!({ "name": "opt", "secret": { "secretName": "nope", "optional": true } }),
                ),
                vec![],
            ),
            (
                volume(serde_json::json!({ "name": "scratch", "emptyDir": {} })),
                vec![],
            ),
            (
                volume(
                    serde_json::json!({ "name": "kube-api-access-x", "projected": { "sources": [
                    { "serviceAccountToken": { "path": "token", "expirationSeconds": 3607 } },
                    { "configMap": { "name": "settings", "items": [{ "key": "MODE", "path": "mode" }] } },
                    { "downwardAPI": { "items": [{ "path": "namespace", "fieldRef": { "fieldPath": "metadata.namespace" } }] } },
                ] } }),
                ),
                vec![
                    VolumeFile::Token {
                        path: "token".to_string(),
                        audience: None,
                        expiration_seconds: Some(3607),
                    },
                    content("mode", b"fast"),
                    content("namespace", b"ns"),
                ],
            ),
        ];
        for (volume, expected) in cases {
            assert_eq!(
                volume_files(&pod, &volume, &objects()).unwrap(),
                expected,
                "{}",
                volume.name
            );
        }
        let errors = [
            (
                volume(serde_json::json!({ "name": "v", "secret": { "secretName": "nope" } })),
                "Secret nope (referenced by volume v) does not exist",
            ),
            (
                volume(serde_json::json!({ "name": "v", "hostPath": { "path": "/etc" } })),
                "volume v is of a kind the e2e runner does not support (secret, configMap, projected, emptyDir, downwardAPI are)",
            ),
            (
                volume(
                    serde_json::json!({ "name": "v", "configMap": { "name": "settings",
                    "items": [{ "key": "MODE", "path": "../escape" }] } }),
                ),
                "item path ../escape of volume v leaves the volume",
            ),
        ];
        for (volume, expected) in errors {
            assert_eq!(
                volume_files(&pod, &volume, &objects())
                    .unwrap_err()
                    .to_string(),
                expected
            );
        }
    }

    #[test]
    fn container_paths_translate_to_host_paths() {
        let map = PathMap::new([
            ("/kaniko/.docker".to_string(), PathBuf::from("/h/docker")),
            ("/workspace/".to_string(), PathBuf::from("/h/ws")),
            ("/workspace/out".to_string(), PathBuf::from("/h/out")),
        ]);
        for (word, expected) in [
            ("/kaniko/.docker", "/h/docker"),
            ("/kaniko/.docker/config.json", "/h/docker/config.json"),
            ("/kaniko/.dockerfile", "/kaniko/.dockerfile"),
            ("/workspace", "/h/ws"),
            ("/workspace/Dockerfile", "/h/ws/Dockerfile"),
            ("/workspace/out/digest", "/h/out/digest"),
            (
                "--digest-file=/workspace/out/digest",
                "--digest-file=/h/out/digest",
            ),
            ("--destination=r.io/x:1", "--destination=r.io/x:1"),
            ("relative/workspace", "relative/workspace"),
        ] {
            assert_eq!(map.translate(word), expected, "{word}");
        }
    }

    #[test]
    fn emulation_only_for_a_foreign_architecture() {
        let expected = Some(("KILN_EMULATION".to_string(), "qemu".to_string()));
        assert_eq!(emulation_env(Some("arm64"), "amd64"), expected);
        assert_eq!(emulation_env(Some("s390x"), "amd64"), expected);
        assert_eq!(emulation_env(Some("amd64"), "amd64"), None);
        assert_eq!(emulation_env(None, "amd64"), None);
        assert_eq!(emulation_env(Some("amd64"), "arm64"), expected);
    }

    #[test]
    fn termination_message_follows_the_policy() {
        let long_log: Vec<u8> = std::iter::repeat_n(b'x', 3000).collect();
        // (file, policy, failed, log, expected message)
        type Case<'a> = (&'a [u8], Option<&'a str>, bool, &'a [u8], String);
        let cases: [Case; 6] = [
            (
                b"sha256:abc\n",
                None,
                false,
                b"log",
                "sha256:abc".to_string(),
            ),
            (b"", None, true, b"log", String::new()),
            (
                b"",
                Some("FallbackToLogsOnError"),
                true,
                b"boom\n",
                "boom".to_string(),
            ),
            (
                b"",
                Some("FallbackToLogsOnError"),
                false,
                b"fine",
                String::new(),
            ),
            (
                b"file",
                Some("FallbackToLogsOnError"),
                true,
                b"log",
                "file".to_string(),
            ),
            (
                b"",
                Some("FallbackToLogsOnError"),
                true,
                &long_log,
                "x".repeat(2048),
            ),
        ];
        for (file, policy, failed, log, expected) in cases {
            assert_eq!(
                termination_message(file, policy, failed, log),
                expected,
                "{policy:?} {failed}"
            );
        }
    }

    #[test]
    fn restart_policy_decides_what_follows_an_exit() {
        for (policy, code, expected) in [
            (Some("Never"), 0, AfterExit::Finish { phase: "Succeeded" }),
            (Some("Never"), 3, AfterExit::Finish { phase: "Failed" }),
            (
                Some("OnFailure"),
                0,
                AfterExit::Finish { phase: "Succeeded" },
            ),
            (Some("OnFailure"), 1, AfterExit::Restart),
            (Some("Always"), 0, AfterExit::Restart),
            (None, 1, AfterExit::Restart),
        ] {
            assert_eq!(after_exit(policy, code), expected, "{policy:?} {code}");
        }
    }
}
