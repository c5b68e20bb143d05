//! From parsed flags to [`BuildOptions`]: value formats, rules that involve
//! several flags, and flags whose feature is not built yet.

use std::collections::{BTreeMap, BTreeSet};

use crate::attest::{AttestLayout, ProvenanceMode};
use crate::registry::{ClientCertificate, RegistryOptions};
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};

use super::args::Args;
use crate::options::{
    BuildOptions, CacheOptions, Compression, Driver, ExecutionOptions, K8sOptions,
    MultiPlatformOptions, OciMode, OutputOptions, SignKey,
};
use crate::platform::{self, Platform, PlatformError};

/// Flags that are accepted but whose feature is not built yet. Setting one
/// to anything but its default fails with `flag --X is not supported yet`.
/// Delete a name here when its feature lands; nothing else needs to change.
pub const UNSUPPORTED: &[&str] = &[];

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error("--custom-platform takes one platform, got \"{0}\": use --multi-platform for a list")]
    CustomPlatformList(String),
    #[error(
        "--{first}={first_value} and --{second}={second_value} name different platforms: give the list once"
    )]
    PlatformConflict {
        first: &'static str,
        first_value: String,
        second: &'static str,
        second_value: String,
    },
    #[error("invalid --{flag} \"{value}\": expected KEY=VALUE")]
    KeyValue { flag: &'static str, value: String },
    #[error("invalid --build-arg \"{0}\": expected KEY=VALUE or KEY")]
    BuildArg(String),
    #[error(transparent)]
    Secret(#[from] crate::run::secret::SecretError),
    #[error(
        "--compression=zstd cannot be used with --oci-mode=docker: Docker manifests have no zstd layers; use --oci-mode=oci or --compression=gzip"
    )]
    ZstdWithDocker,
    #[error(
        "--compression-level={level} is out of range for {compression}: use {min} to {max}, or -1 for the default"
    )]
    CompressionLevel {
        compression: &'static str,
        level: i32,
        min: i32,
        max: i32,
    },
    #[error(
        "--index-annotations cannot be used with --legacy-manifest-list: Docker manifest lists have no annotations; drop one of them"
    )]
    IndexAnnotationsWithLegacy,
    #[error(
        "--push-retry-initial-delay={initial} is larger than --push-retry-max-delay={max} (milliseconds)"
    )]
    RetryDelays { initial: u64, max: u64 },
    #[error("flag --{0} is not supported yet")]
    Unsupported(&'static str),
    #[error("no --destination given: pass --destination=<image>, or --no-push")]
    NoDestination,
    #[error(transparent)]
    CacheRepository(#[from] crate::cache::RepoError),
    #[error(
        "invalid --git \"{0}\": expected kaniko's branch=NAME,single-branch=BOOL,recurse-submodules=BOOL,insecure-skip-tls=BOOL"
    )]
    GitOptions(String),
    #[error(
        "invalid --registry-map \"{0}\": expected REGISTRY=MIRROR, e.g. index.docker.io=mirror.gcr.io"
    )]
    RegistryMap(String),
    #[error(
        "invalid --registry-client-cert \"{0}\": expected REGISTRY=CERT,KEY, e.g. my.registry.url=/path/to/client.crt,/path/to/client.key"
    )]
    RegistryClientCert(String),
    #[error(
        "--image-format={image_format} and --oci-mode={oci_mode} ask for different media types: give one of them"
    )]
    ImageFormatConflict {
        image_format: &'static str,
        oci_mode: &'static str,
    },
    #[error("invalid --provenance \"{0}\": expected min, max, mode=min, mode=max, true or false")]
    Provenance(String),
    #[error(
        "--driver=k8s signs with a key the operator reads from a Secret, never with a file: pass --sign-key=k8s://<secret> (made by cosign generate-key-pair k8s://<namespace>/<secret>)"
    )]
    SignKeyFileWithK8s,
    #[error(
        "--sign-key=k8s://… names a Secret the operator reads, for --driver=k8s; with --driver=local or ci give a cosign key file"
    )]
    SignKeySecretWithoutK8s,
    #[error("invalid --attest-layout \"{0}\": expected referrers or buildkit")]
    AttestLayout(String),
    #[error(
        "--attest-layout=buildkit lists the attestations in the image index, which --publish-index=false does not publish; drop one of them"
    )]
    AttestLayoutWithoutIndex,
    #[error(
        "--attest-layout=buildkit needs an OCI index: a Docker manifest list ({0}) cannot carry BuildKit's attestation manifests; drop one of them"
    )]
    AttestLayoutDockerList(&'static str),
    #[error(
        "--attest-layout=buildkit lists the --provenance and --sbom documents in the index; ask for at least one of them"
    )]
    AttestLayoutWithoutDocuments,
    #[error("could not compare the flags with their defaults")]
    Defaults(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// `--sign-key`: a file, or with `--driver=k8s` a Secret (`k8s://name`;
/// cosign's `k8s://namespace/name` is taken, the namespace being the
/// build's).
fn sign_key(given: Option<&str>, driver: Driver) -> Result<Option<SignKey>, CliError> {
    let Some(given) = given else {
        return Ok(None);
    };
    match (given.strip_prefix("k8s://"), driver) {
        (Some(secret), Driver::K8s) => Ok(Some(SignKey::Secret(
            secret.rsplit('/').next().unwrap_or(secret).to_string(),
        ))),
        (Some(_), _) => Err(CliError::SignKeySecretWithoutK8s),
        (None, Driver::K8s) => Err(CliError::SignKeyFileWithK8s),
        (None, _) => Ok(Some(SignKey::File(PathBuf::from(given)))),
    }
}

/// `--attest-layout`.
fn attest_layout(given: Option<&str>) -> Result<AttestLayout, CliError> {
    match given.map(str::trim) {
        None | Some("referrers") => Ok(AttestLayout::Referrers),
        Some("buildkit") => Ok(AttestLayout::BuildKit),
        Some(other) => Err(CliError::AttestLayout(other.to_string())),
    }
}

/// `--provenance` as buildx spells it.
fn provenance_mode(given: Option<&str>) -> Result<Option<ProvenanceMode>, CliError> {
    match given.map(str::trim) {
        None | Some("false") => Ok(None),
        Some("min" | "mode=min" | "true") => Ok(Some(ProvenanceMode::Min)),
        Some("max" | "mode=max") => Ok(Some(ProvenanceMode::Max)),
        Some(other) => Err(CliError::Provenance(other.to_string())),
    }
}

impl Args {
    /// Validates the flags against each other and types them, reading bare
    /// `--build-arg KEY`s from the process environment.
    pub fn into_options(self) -> Result<BuildOptions, CliError> {
        self.into_options_with_env(&|key| std::env::var(key).ok())
    }

    /// [`Args::into_options`] with the environment given as a lookup, so
    /// tests need not touch the process environment.
    pub fn into_options_with_env(
        self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<BuildOptions, CliError> {
        let platforms = self.platform_list()?;
        let build_args = build_args(&self.input.build_arg, env)?;
        let labels = key_values("label", &self.input.label)?;
        let secrets = self
            .input
            .secret
            .iter()
            .map(|spec| crate::run::secret::parse_secret_flag(spec))
            .collect::<Result<Vec<_>, _>>()?;
        let annotations = key_values("annotation", &self.output.annotation)?;
        let provenance = provenance_mode(self.output.provenance.as_deref())?;
        let sign_key = sign_key(self.output.sign_key.as_deref(), self.platforms.driver)?;
        let attest_layout = attest_layout(self.output.attest_layout.as_deref())?;
        let index_annotations = key_values("index-annotations", &self.platforms.index_annotations)?;
        let certificates: Vec<(String, PathBuf)> =
            key_values("registry-certificate", &self.registry.registry_certificate)?
                .into_iter()
                .map(|(host, file)| (host, PathBuf::from(file)))
                .collect();
        let compression_level = self.compression_level()?;

        if self.output.compression == Compression::Zstd && self.image_format()? == OciMode::Docker {
            return Err(CliError::ZstdWithDocker);
        }
        if self.platforms.legacy_manifest_list && !index_annotations.is_empty() {
            return Err(CliError::IndexAnnotationsWithLegacy);
        }
        if attest_layout == AttestLayout::BuildKit {
            if self.platforms.publish_index == Some(false) {
                return Err(CliError::AttestLayoutWithoutIndex);
            }
            if self.platforms.legacy_manifest_list {
                return Err(CliError::AttestLayoutDockerList("--legacy-manifest-list"));
            }
            if self.image_format()? == OciMode::Docker {
                return Err(CliError::AttestLayoutDockerList("--oci-mode=docker"));
            }
            // The ci driver's index job collects what the platform jobs
            // attached; every other build makes the documents itself.
            if self.platforms.driver != Driver::Ci && provenance.is_none() && !self.output.sbom {
                return Err(CliError::AttestLayoutWithoutDocuments);
            }
        }
        let registry = &self.registry;
        if registry.push_retry_initial_delay > registry.push_retry_max_delay {
            return Err(CliError::RetryDelays {
                initial: registry.push_retry_initial_delay,
                max: registry.push_retry_max_delay,
            });
        }
        if let Some(flag) = self.first_unsupported()? {
            return Err(CliError::Unsupported(flag));
        }
        if self.output.destination.is_empty() && !self.output.no_push {
            return Err(CliError::NoDestination);
        }
        // Checked even without --cache: the flag says a suffix was meant.
        if let Some(suffix) = &self.cache.arch_cache_repo_suffix {
            crate::cache::check_suffix(suffix)?;
        }
        if self.cache.cache {
            // Every platform's cache repository can be named before any work.
            let host = [Platform::host()];
            let targets = if platforms.is_empty() {
                &host[..]
            } else {
                &platforms[..]
            };
            for platform in targets {
                crate::cache::cache_repository(
                    self.cache.cache_repo.as_deref(),
                    &self.output.destination,
                    self.cache.arch_cache_repo_suffix.as_deref(),
                    platform,
                )?;
            }
        }
        let changed = self.changed_flags()?;
        let cache_dir_given = changed.contains("cache-dir");
        for warning in super::kaniko::ignored_warnings(&changed) {
            tracing::warn!("{warning}");
        }
        let context = self.kaniko_context()?;
        let oci_mode = self.image_format()?;
        let registry_maps = registry_maps(&self.kaniko.registry_map)?;
        let client_certificates = client_certificates(&self.kaniko.registry_client_cert)?;
        // Several platforms are one image: its index goes to the destination
        // unless asked otherwise; the ci driver's only product is an index.
        let publish_index = self.platforms.publish_index.unwrap_or(
            platforms.len() > 1
                || self.platforms.driver == Driver::Ci
                || attest_layout == AttestLayout::BuildKit,
        );

        let Args {
            input,
            output,
            platforms: multi,
            cache,
            execution,
            registry,
            k8s,
            logging: _,
            kaniko,
        } = self;
        Ok(BuildOptions {
            context,
            context_sub_path: input.context_sub_path,
            dockerfile: input.dockerfile,
            build_args,
            target: input.target,
            skip_unused_stages: input.skip_unused_stages,
            labels,
            secrets,
            platforms,
            output: OutputOptions {
                destinations: output.destination,
                no_push: output.no_push,
                tar_path: output.tar_path,
                oci_layout_path: output.oci_layout_path,
                digest_file: output.digest_file,
                image_name_with_digest_file: output.image_name_with_digest_file,
                image_name_tag_with_digest_file: output.image_name_tag_with_digest_file,
                reproducible: output.reproducible,
                compression: output.compression,
                compression_level,
                oci_mode,
                annotations,
                skip_push_permission_check: kaniko.skip_push_permission_check,
                push_ignore_immutable_tag_errors: kaniko.push_ignore_immutable_tag_errors,
                provenance,
                sbom: output.sbom,
                sign_key,
                attest_layout,
            },
            multi_platform: MultiPlatformOptions {
                driver: multi.driver,
                publish_index,
                legacy_manifest_list: multi.legacy_manifest_list,
                index_annotations,
                digests_from: multi.digests_from,
                require_native_nodes: multi.require_native_nodes,
                emulation: multi.emulation,
                platform_tags: multi.platform_tags,
                push_by_digest: multi.push_by_digest,
                dry_run: multi.dry_run,
            },
            cache: CacheOptions {
                enabled: cache.cache,
                repo: cache.cache_repo,
                ttl: cache.cache_ttl,
                dir: cache.cache_dir,
                dir_given: cache_dir_given,
                copy_layers: cache.cache_copy_layers,
                run_layers: cache.cache_run_layers,
                arch_repo_suffix: cache.arch_cache_repo_suffix,
                push: !kaniko.no_push_cache,
            },
            execution: ExecutionOptions {
                isolation: execution.isolation,
                snapshot_mode: execution.snapshot_mode,
                single_snapshot: execution.single_snapshot,
                ignore_paths: execution.ignore_path,
                ignore_var_run: execution.ignore_var_run,
                force: execution.force,
                cleanup: execution.cleanup,
            },
            registry: RegistryOptions {
                insecure: registry.insecure,
                insecure_pull: registry.insecure_pull,
                insecure_registries: registry.insecure_registry,
                skip_tls_verify: registry.skip_tls_verify,
                skip_tls_verify_pull: registry.skip_tls_verify_pull,
                skip_tls_verify_registries: registry.skip_tls_verify_registry,
                registry_certificates: certificates,
                registry_client_certs: client_certificates,
                registry_mirrors: registry.registry_mirror,
                registry_maps,
                skip_default_registry_fallback: kaniko.skip_default_registry_fallback,
                push_retry: registry.push_retry,
                push_retry_initial_delay: Duration::from_millis(registry.push_retry_initial_delay),
                push_retry_max_delay: Duration::from_millis(registry.push_retry_max_delay),
                image_download_retry: registry.image_download_retry,
                docker_config_dir: None,
                credential_helpers: credential_helpers(&kaniko.credential_helpers),
            },
            k8s: K8sOptions {
                namespace: k8s.namespace,
                context_repo: k8s.context_repo,
                detach: k8s.detach,
                build_request: k8s.build_request,
            },
        })
    }

    /// `--context`, or kaniko's `--bucket` (a bucket name is a gs://
    /// context); a `git://` context without `#ref` gets `--git`'s branch.
    fn kaniko_context(&self) -> Result<String, CliError> {
        let mut context = match &self.kaniko.bucket {
            Some(bucket) if bucket.contains("://") => bucket.clone(),
            Some(bucket) => format!("gs://{bucket}"),
            None => self.input.context.clone(),
        };
        let Some(git) = &self.kaniko.git else {
            return Ok(context);
        };
        let mut branch = None;
        for option in git.split(',').filter(|o| !o.is_empty()) {
            match option.split_once('=') {
                Some(("branch", name)) if !name.is_empty() => branch = Some(name),
                Some((
                    key @ ("single-branch" | "recurse-submodules" | "insecure-skip-tls"),
                    value,
                )) if super::values::parse_bool(value).is_ok() => tracing::warn!(
                    "--git {key}={value} is accepted for kaniko compatibility and has no effect: kiln fetches the one ref it builds"
                ),
                _ => return Err(CliError::GitOptions(git.clone())),
            }
        }
        if let Some(branch) = branch
            && context.starts_with("git://")
            && !context.contains('#')
        {
            context = format!("{context}#{branch}");
        }
        Ok(context)
    }

    /// `--oci-mode`, or the fork's `--image-format` when given.
    fn image_format(&self) -> Result<OciMode, CliError> {
        use super::args::ImageFormat;
        let oci_mode = self.output.oci_mode;
        let Some(format) = self.kaniko.image_format else {
            return Ok(oci_mode);
        };
        let (wanted, name) = match format {
            ImageFormat::Oci => (OciMode::Oci, "oci"),
            ImageFormat::Docker => (OciMode::Docker, "docker"),
        };
        if oci_mode != OciMode::Auto && oci_mode != wanted {
            return Err(CliError::ImageFormatConflict {
                image_format: name,
                oci_mode: match oci_mode {
                    OciMode::Oci => "oci",
                    OciMode::Docker => "docker",
                    OciMode::Auto => "auto",
                },
            });
        }
        Ok(wanted)
    }

    /// The target platforms from whichever of `--custom-platform`,
    /// `--platform` and `--multi-platform` are given; when several are, they
    /// must name the same platforms in the same order.
    fn platform_list(&self) -> Result<Vec<Platform>, CliError> {
        let given = [
            ("custom-platform", &self.platforms.custom_platform),
            ("platform", &self.platforms.platform),
            ("multi-platform", &self.platforms.multi_platform),
        ];
        let mut chosen: Option<(&'static str, &String, Vec<Platform>)> = None;
        for (flag, value) in given {
            let Some(value) = value else { continue };
            let list = platform::parse_list(value)?;
            if flag == "custom-platform" && list.len() > 1 {
                return Err(CliError::CustomPlatformList(value.clone()));
            }
            match &chosen {
                Some((first, first_value, first_list))
                    if first_list.len() != list.len()
                        || first_list.iter().zip(&list).any(|(a, b)| !a.same_as(b)) =>
                {
                    return Err(CliError::PlatformConflict {
                        first,
                        first_value: first_value.to_string(),
                        second: flag,
                        second_value: value.clone(),
                    });
                }
                Some(_) => {}
                None => chosen = Some((flag, value, list)),
            }
        }
        Ok(chosen.map(|(_, _, list)| list).unwrap_or_default())
    }

    fn compression_level(&self) -> Result<Option<i32>, CliError> {
        let Some(level) = self.output.compression_level else {
            return Ok(None);
        };
        // kaniko's own default is -1, so scripts pass it explicitly.
        if level == -1 {
            return Ok(None);
        }
        let (compression, min, max) = match self.output.compression {
            Compression::Gzip => ("gzip", 0, 9),
            Compression::Zstd => ("zstd", 1, 22),
            // Not a --compression value (skipped by the parser): no levels.
            Compression::None => ("none", 0, 0),
        };
        if !(min..=max).contains(&level) {
            return Err(CliError::CompressionLevel {
                compression,
                level,
                min,
                max,
            });
        }
        Ok(Some(level))
    }

    /// The first flag of [`UNSUPPORTED`] whose value differs from its
    /// default.
    fn first_unsupported(&self) -> Result<Option<&'static str>, CliError> {
        let changed = self.changed_flags()?;
        Ok(UNSUPPORTED
            .iter()
            .copied()
            .find(|flag| changed.contains(*flag)))
    }

    /// Long names of the flags whose value differs from the default, by
    /// comparing typed values (so `--cache=false` and `--cache-ttl=336h0m`
    /// count as unchanged).
    pub fn changed_flags(&self) -> Result<BTreeSet<String>, CliError> {
        let current = flag_values(self)?;
        let defaults = flag_values(&Args::defaults()?)?;
        Ok(current
            .into_iter()
            .filter(|(flag, value)| defaults.get(flag) != Some(value))
            .map(|(flag, _)| flag)
            .collect())
    }

    /// Every flag at its default. Environment variables bound to flags are
    /// ignored here: a value from the environment counts as set.
    pub fn defaults() -> Result<Args, CliError> {
        let command = Args::command().mut_args(|arg| arg.env(None));
        let matches = command
            .try_get_matches_from(["kiln"])
            .map_err(|e| CliError::Defaults(Box::new(e)))?;
        Args::from_arg_matches(&matches).map_err(|e| CliError::Defaults(Box::new(e)))
    }
}

fn flag_values(args: &Args) -> Result<BTreeMap<String, serde_json::Value>, CliError> {
    match serde_json::to_value(args).map_err(|e| CliError::Defaults(Box::new(e)))? {
        serde_json::Value::Object(map) => Ok(map.into_iter().collect()),
        other => Err(CliError::Defaults(
            format!("flags serialised to {other} instead of an object").into(),
        )),
    }
}

/// kaniko's `--registry-map` values, `REGISTRY=MIRROR` joined by `;`, as
/// (registry, mirror) pairs in the order given.
fn registry_maps(values: &[String]) -> Result<Vec<(String, String)>, CliError> {
    let mut maps = Vec::new();
    for value in values {
        for entry in value.split(';').filter(|e| !e.trim().is_empty()) {
            match entry.split_once('=') {
                Some((registry, mirror)) if !registry.is_empty() && !mirror.is_empty() => {
                    maps.push((registry.trim().to_string(), mirror.trim().to_string()));
                }
                _ => return Err(CliError::RegistryMap(entry.to_string())),
            }
        }
    }
    Ok(maps)
}

/// kaniko's `--registry-client-cert=REGISTRY=CERT,KEY` (repeatable): the
/// PEM certificate and key files presented to `REGISTRY` (`host[:port]`).
/// The files are read when the build starts (`Registry::new`).
fn client_certificates(values: &[String]) -> Result<Vec<ClientCertificate>, CliError> {
    values
        .iter()
        .map(|value| {
            let invalid = || CliError::RegistryClientCert(value.clone());
            let (registry, files) = value.split_once('=').ok_or_else(invalid)?;
            let (cert, key) = files.split_once(',').ok_or_else(invalid)?;
            let (registry, cert, key) = (registry.trim(), cert.trim(), key.trim());
            if registry.is_empty() || cert.is_empty() || key.is_empty() || key.contains(',') {
                return Err(invalid());
            }
            Ok(ClientCertificate {
                registry: registry.to_string(),
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
            })
        })
        .collect()
}

/// `KEY=VALUE` pairs of a repeatable flag; a later duplicate key wins, as
/// when the flag is repeated to override an earlier value.
fn key_values(flag: &'static str, values: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    values
        .iter()
        .map(|entry| match entry.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
            _ => Err(CliError::KeyValue {
                flag,
                value: entry.clone(),
            }),
        })
        .collect()
}

/// `--build-arg`s: `KEY=VALUE`, `KEY=` (empty), or a bare `KEY` whose value
/// comes from the environment, as kaniko does; an unset one is left out so
/// the Dockerfile's ARG default applies.
fn build_args(
    values: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, CliError> {
    let mut args = BTreeMap::new();
    for entry in values {
        let (key, value) = match entry.split_once('=') {
            Some((key, value)) => (key, Some(value.to_string())),
            None => (entry.as_str(), env(entry)),
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(CliError::BuildArg(entry.clone()));
        }
        match value {
            Some(value) => {
                args.insert(key.to_string(), value);
            }
            None => tracing::warn!(
                "--build-arg {key} has no value and {key} is not set in the environment; ignoring it"
            ),
        }
    }
    Ok(args)
}

/// `--credential-helpers` values: repeatable and comma-separated, as the
/// kaniko fork takes them; an empty value (`--credential-helpers=`) adds
/// none.
fn credential_helpers(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::ffi::OsStr;

    use clap::Parser;

    use super::*;
    use crate::cli::logging::{LogFormat, Verbosity};
    use crate::options::{
        BUILDER_IMAGE_ENV, Driver, Emulation, Isolation, SnapshotMode, in_builder_image,
    };

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn test_env(key: &str) -> Option<String> {
        (key == "FROM_ENV").then(|| "env value".to_string())
    }

    fn validate(argv: &[&str]) -> Result<BuildOptions, String> {
        let args = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
        args.into_options_with_env(&test_env)
            .map_err(|e| e.to_string())
    }

    /// Options for a command line that must be valid.
    pub(crate) fn options_from(argv: &[&str]) -> BuildOptions {
        let args = Args::try_parse_from(argv).unwrap();
        args.into_options_with_env(&no_env).unwrap()
    }

    fn defaults_in_builder_image() -> bool {
        in_builder_image(std::env::var_os(BUILDER_IMAGE_ENV).as_deref())
    }

    /// What `kiln --no-push` stands for, written out field by field.
    fn default_options() -> BuildOptions {
        let builder_image = defaults_in_builder_image();
        BuildOptions {
            context: if builder_image { "/workspace/" } else { "." }.to_string(),
            context_sub_path: None,
            dockerfile: "Dockerfile".to_string(),
            build_args: BTreeMap::new(),
            target: None,
            skip_unused_stages: true,
            labels: BTreeMap::new(),
            secrets: vec![],
            platforms: vec![],
            output: OutputOptions {
                destinations: vec![],
                no_push: true,
                tar_path: None,
                oci_layout_path: None,
                digest_file: None,
                image_name_with_digest_file: None,
                image_name_tag_with_digest_file: None,
                reproducible: false,
                compression: Compression::Gzip,
                compression_level: None,
                oci_mode: OciMode::Auto,
                annotations: BTreeMap::new(),
                skip_push_permission_check: false,
                push_ignore_immutable_tag_errors: false,
                provenance: None,
                sbom: false,
                sign_key: None,
                attest_layout: AttestLayout::Referrers,
            },
            multi_platform: MultiPlatformOptions {
                driver: Driver::Local,
                publish_index: false,
                legacy_manifest_list: false,
                index_annotations: BTreeMap::new(),
                digests_from: None,
                require_native_nodes: true,
                emulation: Emulation::Auto,
                platform_tags: false,
                push_by_digest: false,
                dry_run: false,
            },
            cache: CacheOptions {
                enabled: false,
                repo: None,
                ttl: Duration::from_secs(336 * 3600),
                dir: PathBuf::from("/cache"),
                dir_given: false,
                copy_layers: false,
                run_layers: true,
                arch_repo_suffix: None,
                push: true,
            },
            execution: ExecutionOptions {
                isolation: if builder_image {
                    Isolation::Inplace
                } else {
                    Isolation::Chroot
                },
                snapshot_mode: SnapshotMode::Full,
                single_snapshot: false,
                ignore_paths: vec![],
                ignore_var_run: true,
                force: false,
                cleanup: false,
            },
            registry: RegistryOptions {
                insecure: false,
                insecure_pull: false,
                insecure_registries: vec![],
                skip_tls_verify: false,
                skip_tls_verify_pull: false,
                skip_tls_verify_registries: vec![],
                registry_certificates: vec![],
                registry_client_certs: vec![],
                registry_mirrors: vec![],
                registry_maps: vec![],
                skip_default_registry_fallback: false,
                push_retry: 0,
                push_retry_initial_delay: Duration::from_millis(1000),
                push_retry_max_delay: Duration::from_millis(30000),
                image_download_retry: 0,
                docker_config_dir: None,
                credential_helpers: vec![],
            },
            k8s: K8sOptions {
                namespace: None,
                context_repo: None,
                detach: false,
                build_request: None,
            },
        }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn platforms(list: &[&str]) -> Vec<Platform> {
        list.iter().map(|p| p.parse().unwrap()).collect()
    }

    type Edit = fn(&mut BuildOptions);

    #[test]
    fn flags_map_to_options() {
        let table: &[(&[&str], Edit)] = &[
            (&["kiln", "--no-push"], |_| {}),
            (
                &[
                    "kiln",
                    "-d",
                    "reg/app:1",
                    "--destination=reg/app:2",
                    "--destination",
                    "reg/app:3",
                ],
                |o| {
                    o.output.no_push = false;
                    o.output.destinations =
                        vec!["reg/app:1".into(), "reg/app:2".into(), "reg/app:3".into()];
                },
            ),
            (
                &[
                    "kiln",
                    "--no-push",
                    "-c",
                    "dir:///src",
                    "-f",
                    "docker/Dockerfile",
                ],
                |o| {
                    o.context = "dir:///src".into();
                    o.dockerfile = "docker/Dockerfile".into();
                },
            ),
            (
                &[
                    "kiln",
                    "--no-push",
                    "--context=git://github.com/org/app.git#main",
                    "--dockerfile=Dockerfile.prod",
                    "--context-sub-path=services/api",
                ],
                |o| {
                    o.context = "git://github.com/org/app.git#main".into();
                    o.dockerfile = "Dockerfile.prod".into();
                    o.context_sub_path = Some("services/api".into());
                },
            ),
            (
                &[
                    "kiln",
                    "--no-push",
                    "--build-arg",
                    "A=1",
                    "--build-arg=B=x=y",
                    "--build-arg=C=",
                    "--build-arg=FROM_ENV",
                    "--build-arg=UNSET_IN_ENV",
                    "--build-arg=A=2",
                ],
                |o| {
                    o.build_args = map(&[
                        ("A", "2"),
                        ("B", "x=y"),
                        ("C", ""),
                        ("FROM_ENV", "env value"),
                    ])
                },
            ),
            (
                &[
                    "kiln",
                    "--no-push",
                    "--cache",
                    "--cache-repo=127.0.0.1:5000/cache",
                    "--cache-ttl=2h30m",
                    "--cache-dir=/var/cache/kiln",
                    "--cache-copy-layers",
                    "--cache-run-layers=false",
                    "--arch-cache-repo-suffix=-${ARCH}",
                ],
                |o| {
                    o.cache = CacheOptions {
                        enabled: true,
                        repo: Some("127.0.0.1:5000/cache".into()),
                        ttl: Duration::from_secs(9000),
                        dir: PathBuf::from("/var/cache/kiln"),
                        dir_given: true,
                        copy_layers: true,
                        run_layers: false,
                        arch_repo_suffix: Some("-${ARCH}".into()),
                        push: true,
                    };
                },
            ),
            (
                &[
                    "kiln",
                    "--no-push",
                    "--target=build",
                    "--skip-unused-stages=false",
                ],
                |o| {
                    o.target = Some("build".into());
                    o.skip_unused_stages = false;
                },
            ),
            (
                &[
                    "kiln",
                    "--no-push",
                    "--label=a=1",
                    "--label",
                    "b=two words",
                    "--label=a=3",
                ],
                |o| o.labels = map(&[("a", "3"), ("b", "two words")]),
            ),
            (
                &[
                    "kiln",
                    "--no-push",
                    "--tar-path=/out/image.tar",
                    "--oci-layout-path",
                    "/out/layout",
                    "--digest-file=/out/linux-amd64.digest",
                    "--image-name-with-digest-file=/out/name",
                    "--image-name-tag-with-digest-file=/out/name-tag",
                    "--reproducible=true",
                ],
                |o| {
                    o.output.tar_path = Some("/out/image.tar".into());
                    o.output.oci_layout_path = Some("/out/layout".into());
                    o.output.digest_file = Some("/out/linux-amd64.digest".into());
                    o.output.image_name_with_digest_file = Some("/out/name".into());
                    o.output.image_name_tag_with_digest_file = Some("/out/name-tag".into());
                    o.output.reproducible = true;
                },
            ),
            (
                &[
                    "kiln",
                    "--no-push",
                    "--compression=zstd",
                    "--compression-level=19",
                    "--oci-mode=oci",
                ],
                |o| {
                    o.output.compression = Compression::Zstd;
                    o.output.compression_level = Some(19);
                    o.output.oci_mode = OciMode::Oci;
                },
            ),
            (&["kiln", "--no-push", "--compression-level=-1"], |_| {}),
            (
                &[
                    "kiln",
                    "--no-push",
                    "--compression-level",
                    "0",
                    "--oci-mode=docker",
                ],
                |o| {
                    o.output.compression_level = Some(0);
                    o.output.oci_mode = OciMode::Docker;
                },
            ),
            (
                &[
                    "kiln",
                    "--no-push",
                    "--annotation=org.opencontainers.image.source=https://example.com/app",
                    "--annotation=empty=",
                ],
                |o| {
                    o.output.annotations = map(&[
                        ("empty", ""),
                        ("org.opencontainers.image.source", "https://example.com/app"),
                    ])
                },
            ),
            (
                &["kiln", "--no-push", "--custom-platform=linux/aarch64"],
                |o| o.platforms = platforms(&["linux/arm64"]),
            ),
            (&["kiln", "--no-push", "--platform", "linux/amd64"], |o| {
                o.platforms = platforms(&["linux/amd64"])
            }),
            (
                &[
                    "kiln",
                    "--no-push",
                    "--platform=linux/arm64",
                    "--custom-platform=linux/arm64/v8",
                ],
                |o| o.platforms = platforms(&["linux/arm64/v8"]),
            ),
            (
                &[
                    "kiln",
                    "--no-push",
                    "--insecure",
                    "--insecure-pull=true",
                    "--insecure-registry=localhost:5000",
                    "--insecure-registry",
                    "registry.local",
                    "--skip-tls-verify=1",
                    "--skip-tls-verify-pull=T",
                    "--skip-tls-verify-registry=self-signed.example",
                    "--registry-certificate=my.registry:5000=/certs/ca.crt",
                    "--registry-mirror=mirror.gcr.io",
                    "--registry-mirror=mirror.example",
                    "--push-retry=3",
                    "--push-retry-initial-delay=2000",
                    "--push-retry-max-delay=60000",
                    "--image-download-retry=2",
                ],
                |o| {
                    o.registry = RegistryOptions {
                        insecure: true,
                        insecure_pull: true,
                        insecure_registries: vec!["localhost:5000".into(), "registry.local".into()],
                        skip_tls_verify: true,
                        skip_tls_verify_pull: true,
                        skip_tls_verify_registries: vec!["self-signed.example".into()],
                        registry_certificates: vec![(
                            "my.registry:5000".to_string(),
                            PathBuf::from("/certs/ca.crt"),
                        )],
                        registry_client_certs: vec![],
                        registry_mirrors: vec!["mirror.gcr.io".into(), "mirror.example".into()],
                        registry_maps: vec![],
                        skip_default_registry_fallback: false,
                        push_retry: 3,
                        push_retry_initial_delay: Duration::from_secs(2),
                        push_retry_max_delay: Duration::from_secs(60),
                        image_download_retry: 2,
                        docker_config_dir: None,
                        credential_helpers: vec![],
                    }
                },
            ),
            (
                &[
                    "kiln",
                    "--no-push",
                    "--push-retry-initial-delay=5000",
                    "--push-retry-max-delay=5000",
                ],
                |o| {
                    o.registry.push_retry_initial_delay = Duration::from_secs(5);
                    o.registry.push_retry_max_delay = Duration::from_secs(5);
                },
            ),
            // Logging flags are consumed before options are built.
            (
                &[
                    "kiln",
                    "--no-push",
                    "--verbosity=debug",
                    "--log-format=json",
                    "--log-timestamp",
                ],
                |_| {},
            ),
            // Not-yet-supported flags set explicitly to their defaults.
            (
                &[
                    "kiln",
                    "--no-push",
                    "--driver=local",
                    "--publish-index=false",
                    "--legacy-manifest-list=false",
                    "--require-native-nodes",
                    "--emulation=auto",
                    "--platform-tags=false",
                    "--dry-run=false",
                    "--cache=false",
                    "--cache-ttl=20160m",
                    "--cache-dir=/cache",
                    "--cache-copy-layers=f",
                    "--cache-run-layers=true",
                    "--snapshot-mode=full",
                    "--single-snapshot=false",
                    "--ignore-var-run",
                    "--force=false",
                    "--detach=false",
                    "--cleanup=false",
                ],
                |_| {},
            ),
        ];
        for (argv, edit) in table {
            let mut want = default_options();
            edit(&mut want);
            assert_eq!(validate(argv), Ok(want), "{argv:?}");
        }
    }

    #[test]
    fn logging_flags_parse() {
        let table: &[(&[&str], Verbosity, LogFormat, bool)] = &[
            (&["kiln"], Verbosity::Info, LogFormat::Text, false),
            (
                &["kiln", "--verbosity=panic", "--log-format=color"],
                Verbosity::Panic,
                LogFormat::Color,
                false,
            ),
            (
                &["kiln", "--verbosity", "fatal"],
                Verbosity::Fatal,
                LogFormat::Text,
                false,
            ),
            (
                &["kiln", "--verbosity=error"],
                Verbosity::Error,
                LogFormat::Text,
                false,
            ),
            (
                &["kiln", "--verbosity=warning"],
                Verbosity::Warn,
                LogFormat::Text,
                false,
            ),
            (
                &["kiln", "--verbosity=warn", "--log-timestamp"],
                Verbosity::Warn,
                LogFormat::Text,
                true,
            ),
            (
                &["kiln", "--verbosity=debug", "--log-format=json"],
                Verbosity::Debug,
                LogFormat::Json,
                false,
            ),
            (
                &["kiln", "--verbosity=trace", "--log-timestamp=false"],
                Verbosity::Trace,
                LogFormat::Text,
                false,
            ),
        ];
        for (argv, verbosity, format, timestamps) in table {
            let logging = Args::try_parse_from(*argv).unwrap().logging;
            assert_eq!(
                (logging.verbosity, logging.log_format, logging.log_timestamp),
                (*verbosity, *format, *timestamps),
                "{argv:?}"
            );
        }
    }

    #[test]
    fn invalid_combinations_are_explained() {
        let table: &[(&[&str], &str)] = &[
            (
                &["kiln", "--platform=linux", "--no-push"],
                "invalid platform format: linux (expected os/arch)",
            ),
            // A malformed platform is reported before an unsupported flag.
            (
                &["kiln", "--cache", "--multi-platform=linux/amd64,arm64"],
                "invalid platform format: arm64 (expected os/arch)",
            ),
            (
                &[
                    "kiln",
                    "--no-push",
                    "--multi-platform=linux/arm64,linux/aarch64",
                ],
                "duplicate platform linux/arm64 in the platform list",
            ),
            (
                &["kiln", "--no-push", "--platform="],
                "the platform list is empty",
            ),
            (
                &[
                    "kiln",
                    "--no-push",
                    "--custom-platform=linux/amd64,linux/arm64",
                ],
                "--custom-platform takes one platform, got \"linux/amd64,linux/arm64\": use --multi-platform for a list",
            ),
            (
                &[
                    "kiln",
                    "--no-push",
                    "--platform=linux/amd64",
                    "--multi-platform=linux/amd64,linux/arm64",
                ],
                "--platform=linux/amd64 and --multi-platform=linux/amd64,linux/arm64 name different platforms: give the list once",
            ),
            (
                &[
                    "kiln",
                    "--no-push",
                    "--multi-platform=linux/arm64,linux/amd64",
                    "--platform=linux/amd64,linux/arm64",
                ],
                "--platform=linux/amd64,linux/arm64 and --multi-platform=linux/arm64,linux/amd64 name different platforms: give the list once",
            ),
            (
                &[
                    "kiln",
                    "--no-push",
                    "--custom-platform=linux/arm64",
                    "--platform=linux/amd64",
                ],
                "--custom-platform=linux/arm64 and --platform=linux/amd64 name different platforms: give the list once",
            ),
            (
                &["kiln", "--no-push", "--label=novalue"],
                "invalid --label \"novalue\": expected KEY=VALUE",
            ),
            (
                &["kiln", "--no-push", "--label==value"],
                "invalid --label \"=value\": expected KEY=VALUE",
            ),
            (
                &["kiln", "--no-push", "--annotation=x"],
                "invalid --annotation \"x\": expected KEY=VALUE",
            ),
            (
                &[
                    "kiln",
                    "--no-push",
                    "--index-annotations=org.opencontainers.image.title",
                ],
                "invalid --index-annotations \"org.opencontainers.image.title\": expected KEY=VALUE",
            ),
            (
                &["kiln", "--no-push", "--registry-certificate=/certs/ca.crt"],
                "invalid --registry-certificate \"/certs/ca.crt\": expected KEY=VALUE",
            ),
            (
                &["kiln", "--no-push", "--build-arg==x"],
                "invalid --build-arg \"=x\": expected KEY=VALUE or KEY",
            ),
            (
                &["kiln", "--no-push", "--build-arg=A B=x"],
                "invalid --build-arg \"A B=x\": expected KEY=VALUE or KEY",
            ),
            (
                &[
                    "kiln",
                    "--no-push",
                    "--compression=zstd",
                    "--oci-mode=docker",
                ],
                "--compression=zstd cannot be used with --oci-mode=docker: Docker manifests have no zstd layers; use --oci-mode=oci or --compression=gzip",
            ),
            (
                &["kiln", "--no-push", "--compression-level=10"],
                "--compression-level=10 is out of range for gzip: use 0 to 9, or -1 for the default",
            ),
            (
                &[
                    "kiln",
                    "--no-push",
                    "--compression=zstd",
                    "--compression-level=0",
                ],
                "--compression-level=0 is out of range for zstd: use 1 to 22, or -1 for the default",
            ),
            (
                &[
                    "kiln",
                    "--no-push",
                    "--compression=zstd",
                    "--compression-level=23",
                ],
                "--compression-level=23 is out of range for zstd: use 1 to 22, or -1 for the default",
            ),
            (
                &[
                    "kiln",
                    "--no-push",
                    "--legacy-manifest-list",
                    "--index-annotations=a=b",
                ],
                "--index-annotations cannot be used with --legacy-manifest-list: Docker manifest lists have no annotations; drop one of them",
            ),
            (
                &["kiln", "--no-push", "--push-retry-initial-delay=60000"],
                "--push-retry-initial-delay=60000 is larger than --push-retry-max-delay=30000 (milliseconds)",
            ),
            (
                &["kiln"],
                "no --destination given: pass --destination=<image>, or --no-push",
            ),
            (
                &["kiln", "--no-push", "--cache"],
                "--cache needs a repository for the cache images: pass --cache-repo=REGISTRY/REPO, or a --destination whose repository gets /cache appended",
            ),
            (
                &[
                    "kiln",
                    "-d=r/app",
                    "--cache",
                    "--multi-platform=linux/amd64,linux/arm64",
                    "--arch-cache-repo-suffix=-${CPU}",
                ],
                "--arch-cache-repo-suffix=-${CPU}: unknown variable ${CPU}; use ${ARCH}, ${OS} or ${VARIANT}",
            ),
            (
                &["kiln", "--no-push=false"],
                "no --destination given: pass --destination=<image>, or --no-push",
            ),
            (
                &["kiln", "--tar-path=/out/image.tar"],
                "no --destination given: pass --destination=<image>, or --no-push",
            ),
        ];
        for (argv, want) in table {
            assert_eq!(validate(argv), Err(want.to_string()), "{argv:?}");
        }
    }

    /// One command line per not-yet-supported flag, setting it to something
    /// other than its default.
    const UNSUPPORTED_USES: &[(&str, &str)] = &[];

    #[test]
    fn unsupported_flags_are_refused() {
        for (flag_use, flag) in UNSUPPORTED_USES {
            let argv = ["kiln", "--no-push", flag_use];
            let want = format!("flag --{flag} is not supported yet");
            assert_eq!(validate(&argv), Err(want), "{argv:?}");
        }
    }

    #[test]
    fn provenance_modes_and_the_sign_key_are_checked() {
        for (given, want) in [
            ("--provenance=min", Ok(Some(ProvenanceMode::Min))),
            ("--provenance=mode=max", Ok(Some(ProvenanceMode::Max))),
            ("--provenance=true", Ok(Some(ProvenanceMode::Min))),
            ("--provenance=false", Ok(None)),
            (
                "--provenance=full",
                Err("invalid --provenance \"full\": expected min, max, mode=min, mode=max, true or false".to_string()),
            ),
        ] {
            let got = validate(&["kiln", "--no-push", given]).map(|o| o.output.provenance);
            assert_eq!(got, want, "{given}");
        }
        let sign_key = |driver: &str, key: &str| {
            validate(&["kiln", driver, "--destination=r.example/a", key]).map(|o| o.output.sign_key)
        };
        assert_eq!(
            sign_key("--driver=local", "--sign-key=cosign.key"),
            Ok(Some(SignKey::File("cosign.key".into())))
        );
        assert_eq!(
            sign_key("--driver=k8s", "--sign-key=k8s://team/cosign"),
            Ok(Some(SignKey::Secret("cosign".into())))
        );
        assert_eq!(
            sign_key("--driver=k8s", "--sign-key=cosign.key"),
            Err(CliError::SignKeyFileWithK8s.to_string())
        );
        assert_eq!(
            sign_key("--driver=ci", "--sign-key=k8s://cosign"),
            Err(CliError::SignKeySecretWithoutK8s.to_string())
        );
    }

    #[test]
    fn the_buildkit_attestation_layout_needs_an_oci_index_and_documents() {
        let layout = |flags: &[&str]| {
            let mut argv = vec!["kiln", "--destination=r.example/a:1"];
            argv.extend_from_slice(flags);
            validate(&argv).map(|o| (o.output.attest_layout, o.multi_platform.publish_index))
        };
        assert_eq!(
            layout(&["--provenance=min"]),
            Ok((AttestLayout::Referrers, false))
        );
        // An index, even of one platform: that is where the entries go.
        assert_eq!(
            layout(&["--provenance=min", "--attest-layout=buildkit"]),
            Ok((AttestLayout::BuildKit, true))
        );
        assert_eq!(
            layout(&[
                "--sbom",
                "--attest-layout=buildkit",
                "--platform=linux/amd64,linux/arm64"
            ]),
            Ok((AttestLayout::BuildKit, true))
        );
        // The ci driver's index job collects what the platform jobs attached.
        assert_eq!(
            layout(&[
                "--driver=ci",
                "--attest-layout=buildkit",
                "--platform=linux/amd64",
                "--digests-from=d"
            ]),
            Ok((AttestLayout::BuildKit, true))
        );
        for (flags, error) in [
            (
                &["--attest-layout=bk"][..],
                CliError::AttestLayout("bk".into()),
            ),
            (
                &["--attest-layout=buildkit"][..],
                CliError::AttestLayoutWithoutDocuments,
            ),
            (
                &[
                    "--provenance=min",
                    "--attest-layout=buildkit",
                    "--publish-index=false",
                ][..],
                CliError::AttestLayoutWithoutIndex,
            ),
            (
                &[
                    "--provenance=min",
                    "--attest-layout=buildkit",
                    "--legacy-manifest-list",
                ][..],
                CliError::AttestLayoutDockerList("--legacy-manifest-list"),
            ),
            (
                &[
                    "--provenance=min",
                    "--attest-layout=buildkit",
                    "--oci-mode=docker",
                ][..],
                CliError::AttestLayoutDockerList("--oci-mode=docker"),
            ),
        ] {
            assert_eq!(layout(flags), Err(error.to_string()), "{flags:?}");
        }
    }

    #[test]
    fn publish_index_defaults_to_true_for_several_platforms_and_the_ci_driver() {
        // (flags, publish_index)
        let table: &[(&[&str], bool)] = &[
            (&[], false),
            (&["--platform=linux/arm64"], false),
            (&["--custom-platform=linux/arm64"], false),
            (&["--platform=linux/amd64,linux/arm64"], true),
            (&["--multi-platform=linux/amd64,linux/arm64"], true),
            (
                &[
                    "--platform=linux/amd64,linux/arm64",
                    "--publish-index=false",
                ],
                false,
            ),
            (&["--platform=linux/arm64", "--publish-index"], true),
            (&["--publish-index=true"], true),
            (&["--driver=ci"], true),
            (&["--driver=ci", "--publish-index=false"], false),
            (
                &["--driver=k8s", "--platform=linux/amd64,linux/arm64"],
                true,
            ),
        ];
        for (flags, want) in table {
            let mut argv = vec!["kiln", "--no-push"];
            argv.extend_from_slice(flags);
            let got = validate(&argv).map(|o| o.multi_platform.publish_index);
            assert_eq!(got, Ok(*want), "{argv:?}");
        }
    }

    #[test]
    fn kaniko_flags_take_kaniko_meanings() {
        let table: &[(&[&str], Edit)] = &[
            (&["--bucket=my-bucket"], |o| {
                o.context = "gs://my-bucket".into()
            }),
            (&["-b", "s3://b/ctx.tar.gz"], |o| {
                o.context = "s3://b/ctx.tar.gz".into()
            }),
            (
                &["--context=git://github.com/org/app.git", "--git=branch=dev"],
                |o| o.context = "git://github.com/org/app.git#dev".into(),
            ),
            (
                &[
                    "--context=git://github.com/org/app.git#main",
                    "--git=branch=dev,single-branch=true",
                ],
                |o| o.context = "git://github.com/org/app.git#main".into(),
            ),
            (
                &[
                    "--registry-map=index.docker.io=mirror.gcr.io;ghcr.io=127.0.0.1:5000",
                    "--registry-map=quay.io=q.example",
                    "--skip-default-registry-fallback",
                ],
                |o| {
                    o.registry.registry_maps = vec![
                        ("index.docker.io".into(), "mirror.gcr.io".into()),
                        ("ghcr.io".into(), "127.0.0.1:5000".into()),
                        ("quay.io".into(), "q.example".into()),
                    ];
                    o.registry.skip_default_registry_fallback = true;
                },
            ),
            (&["--no-push-cache"], |o| o.cache.push = false),
            (&["--skip-push-permission-check"], |o| {
                o.output.skip_push_permission_check = true
            }),
            (&["--image-format=docker"], |o| {
                o.output.oci_mode = OciMode::Docker
            }),
            (&["--image-format=oci", "--oci-mode=oci"], |o| {
                o.output.oci_mode = OciMode::Oci
            }),
            (&["--snapshotMode=time"], |o| {
                o.execution.snapshot_mode = SnapshotMode::Time
            }),
            (&["--customPlatform=linux/arm64"], |o| {
                o.platforms = platforms(&["linux/arm64"])
            }),
            (&["--tarPath=/out/i.tar"], |o| {
                o.output.tar_path = Some(PathBuf::from("/out/i.tar"))
            }),
            (&["--whitelist-var-run=false"], |o| {
                o.execution.ignore_var_run = false
            }),
            (&["--dryrun"], |o| o.multi_platform.dry_run = true),
            (&["-v", "debug", "--use-new-run", "--kaniko-dir=/k"], |_| {}),
            (
                &[
                    "--registry-client-cert=my.registry.url=/path/to/client.crt,/path/to/client.key",
                    "--registry-client-cert",
                    "127.0.0.1:5443=/c/a.pem,/c/a-key.pem",
                ],
                |o| {
                    o.registry.registry_client_certs = vec![
                        ClientCertificate {
                            registry: "my.registry.url".into(),
                            cert: PathBuf::from("/path/to/client.crt"),
                            key: PathBuf::from("/path/to/client.key"),
                        },
                        ClientCertificate {
                            registry: "127.0.0.1:5443".into(),
                            cert: PathBuf::from("/c/a.pem"),
                            key: PathBuf::from("/c/a-key.pem"),
                        },
                    ];
                },
            ),
        ];
        for (flags, edit) in table {
            let mut argv = vec!["kiln", "--no-push"];
            argv.extend_from_slice(flags);
            let mut want = default_options();
            edit(&mut want);
            assert_eq!(validate(&argv), Ok(want), "{argv:?}");
        }
        let refused: &[(&[&str], &str)] = &[
            (
                &["--git=branch=dev,depth=1"],
                "invalid --git \"branch=dev,depth=1\": expected kaniko's branch=NAME,single-branch=BOOL,recurse-submodules=BOOL,insecure-skip-tls=BOOL",
            ),
            (
                &["--registry-map=mirror.gcr.io"],
                "invalid --registry-map \"mirror.gcr.io\": expected REGISTRY=MIRROR, e.g. index.docker.io=mirror.gcr.io",
            ),
            (
                &["--image-format=oci", "--oci-mode=docker"],
                "--image-format=oci and --oci-mode=docker ask for different media types: give one of them",
            ),
            (
                &["--registry-client-cert=/c/client.crt,/c/client.key"],
                "invalid --registry-client-cert \"/c/client.crt,/c/client.key\": expected REGISTRY=CERT,KEY, e.g. my.registry.url=/path/to/client.crt,/path/to/client.key",
            ),
            (
                &["--registry-client-cert=reg.example=/c/client.crt"],
                "invalid --registry-client-cert \"reg.example=/c/client.crt\": expected REGISTRY=CERT,KEY, e.g. my.registry.url=/path/to/client.crt,/path/to/client.key",
            ),
            (
                &["--registry-client-cert==/c/client.crt,/c/client.key"],
                "invalid --registry-client-cert \"=/c/client.crt,/c/client.key\": expected REGISTRY=CERT,KEY, e.g. my.registry.url=/path/to/client.crt,/path/to/client.key",
            ),
            (
                &["--registry-client-cert=reg.example=/c/client.crt,"],
                "invalid --registry-client-cert \"reg.example=/c/client.crt,\": expected REGISTRY=CERT,KEY, e.g. my.registry.url=/path/to/client.crt,/path/to/client.key",
            ),
            (
                &["--registry-client-cert=reg.example=/a.crt,/a.key,/b.key"],
                "invalid --registry-client-cert \"reg.example=/a.crt,/a.key,/b.key\": expected REGISTRY=CERT,KEY, e.g. my.registry.url=/path/to/client.crt,/path/to/client.key",
            ),
        ];
        for (flags, want) in refused {
            let mut argv = vec!["kiln", "--no-push"];
            argv.extend_from_slice(flags);
            assert_eq!(validate(&argv), Err(want.to_string()), "{argv:?}");
        }
    }

    #[test]
    fn isolation_force_and_cleanup_reach_the_options() {
        let table: [(&[&str], Isolation, bool, bool); 5] = [
            (&["--isolation=chroot"], Isolation::Chroot, false, false),
            (&["--isolation=sandbox"], Isolation::Chroot, false, false),
            (&["--isolation=inplace"], Isolation::Inplace, false, false),
            (
                &["--isolation=inplace", "--force", "--cleanup"],
                Isolation::Inplace,
                true,
                true,
            ),
            (
                &["--isolation=chroot", "--force=true", "--cleanup=false"],
                Isolation::Chroot,
                true,
                false,
            ),
        ];
        for (flags, isolation, force, cleanup) in table {
            let mut argv = vec!["kiln", "--no-push"];
            argv.extend_from_slice(flags);
            let mut want = default_options();
            want.execution.isolation = isolation;
            want.execution.force = force;
            want.execution.cleanup = cleanup;
            assert_eq!(validate(&argv), Ok(want), "{argv:?}");
        }
    }

    #[test]
    fn every_unsupported_flag_has_a_use_and_exists() {
        let used: BTreeSet<&str> = UNSUPPORTED_USES.iter().map(|(_, flag)| *flag).collect();
        let listed: BTreeSet<&str> = UNSUPPORTED.iter().copied().collect();
        assert_eq!(used, listed);
        let defaults = flag_values(&Args::defaults().unwrap()).unwrap();
        let command = Args::command();
        for flag in UNSUPPORTED {
            assert!(
                defaults.contains_key(*flag),
                "--{flag} is not a field of Args"
            );
            assert!(
                command.get_arguments().any(|a| a.get_long() == Some(flag)),
                "--{flag} is not a flag"
            );
        }
    }

    #[test]
    fn changed_flags_compare_typed_values() {
        let table: &[(&[&str], &[&str])] = &[
            (&["kiln"], &[]),
            (
                &[
                    "kiln",
                    "--cache=false",
                    "--cache-ttl=336h0m0s",
                    "--cache-dir=/cache",
                ],
                &[],
            ),
            (
                &["kiln", "--cache=t", "--cache-ttl=1h", "-d", "a"],
                &["cache", "cache-ttl", "destination"],
            ),
            (
                &["kiln", "--verbosity=warning", "--push-retry=0"],
                &["verbosity"],
            ),
        ];
        for (argv, want) in table {
            let changed = Args::try_parse_from(*argv)
                .unwrap()
                .changed_flags()
                .unwrap();
            let want: BTreeSet<String> = want.iter().map(|f| f.to_string()).collect();
            assert_eq!(changed, want, "{argv:?}");
        }
    }

    #[test]
    fn every_flag_is_a_field_and_documented() {
        let mut command = Args::command();
        command.build();
        let fields = flag_values(&Args::defaults().unwrap()).unwrap();
        let mut longs = BTreeSet::new();
        for arg in command.get_arguments() {
            let name = arg.get_long().unwrap_or_default();
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(!help.trim().is_empty(), "--{name} has no help");
            if name == "help" || name == "version" {
                continue;
            }
            assert!(
                arg.get_help_heading().is_some(),
                "--{name} has no group heading"
            );
            longs.insert(name.to_string());
        }
        let fields: BTreeSet<String> = fields.into_keys().collect();
        assert_eq!(longs, fields);
    }

    #[test]
    fn design_flags_are_all_accepted() {
        // The flag table of DESIGN.md, group by group.
        let design = [
            "context context-sub-path dockerfile build-arg target skip-unused-stages label secret",
            "destination no-push tar-path oci-layout-path digest-file image-name-with-digest-file \
             image-name-tag-with-digest-file reproducible compression compression-level oci-mode annotation",
            "custom-platform platform multi-platform driver publish-index legacy-manifest-list \
             index-annotations digests-from require-native-nodes emulation platform-tags push-by-digest dry-run",
            "cache cache-repo cache-ttl cache-dir cache-copy-layers cache-run-layers arch-cache-repo-suffix",
            "isolation snapshot-mode single-snapshot ignore-path ignore-var-run force cleanup",
            "insecure insecure-pull insecure-registry skip-tls-verify skip-tls-verify-pull \
             skip-tls-verify-registry registry-certificate registry-mirror push-retry \
             push-retry-initial-delay push-retry-max-delay image-download-retry \
             take-docker-config copy-docker-config",
            "namespace context-repo detach build-request",
            "verbosity log-format log-timestamp progress",
            "bucket git registry-map skip-default-registry-fallback no-push-cache \
             skip-push-permission-check image-format kaniko-dir use-new-run compressed-caching \
             push-ignore-immutable-tag-errors image-fs-extract-retry registry-client-cert \
             force-build-metadata credential-helpers materialize pre-cleanup preserve-context",
            // Beyond DESIGN.md's table: issue 15's supply-chain documents.
            "provenance sbom sign-key attest-layout",
        ];
        let command = Args::command();
        let mut count = 0;
        for flag in design.iter().flat_map(|group| group.split_whitespace()) {
            count += 1;
            assert!(
                command.get_arguments().any(|a| a.get_long() == Some(flag)),
                "--{flag} is missing"
            );
        }
        let defined = command.get_arguments().count();
        assert_eq!(count, defined, "flags beyond the design table");
        let shorts: BTreeMap<char, &str> = command
            .get_arguments()
            .filter_map(|a| Some((a.get_short()?, a.get_long()?)))
            .collect();
        assert_eq!(
            shorts,
            [
                ('b', "bucket"),
                ('c', "context"),
                ('d', "destination"),
                ('f', "dockerfile"),
                ('v', "verbosity")
            ]
            .into_iter()
            .collect()
        );
    }

    #[test]
    fn booleans_are_pflag_style() {
        let command = Args::command();
        let booleans: Vec<&str> = command
            .get_arguments()
            .filter(|a| a.get_value_names().is_some_and(|names| names == ["BOOL"]))
            .filter_map(|a| a.get_long())
            .collect();
        assert_eq!(booleans.len(), 33, "{booleans:?}");
        for flag in booleans {
            let table = [
                (format!("--{flag}"), true),
                (format!("--{flag}=true"), true),
                (format!("--{flag}=1"), true),
                (format!("--{flag}=false"), false),
                (format!("--{flag}=F"), false),
            ];
            for (arg, want) in table {
                let args = Args::try_parse_from(["kiln", arg.as_str()]).unwrap();
                let values = flag_values(&args).unwrap();
                assert_eq!(
                    values.get(flag),
                    Some(&serde_json::Value::Bool(want)),
                    "{arg}"
                );
            }
            let separate = Args::try_parse_from(["kiln", &format!("--{flag}"), "true"]);
            let kind = separate.map(|_| ()).map_err(|e| e.kind());
            assert_eq!(
                kind,
                Err(clap::error::ErrorKind::UnknownArgument),
                "--{flag} true"
            );
            let bad = Args::try_parse_from(["kiln", &format!("--{flag}=yes")])
                .map(|_| ())
                .map_err(|e| e.to_string());
            assert_eq!(
                bad,
                Err(format!(
                    "error: invalid value 'yes' for '--{flag}[=<BOOL>]': invalid boolean \"yes\": use true or false\n\nFor more information, try '--help'.\n"
                ))
            );
        }
    }

    #[test]
    fn closed_sets_list_their_values() {
        let table = [
            ("--compression=lz4", "[possible values: gzip, zstd]"),
            ("--oci-mode=v1", "[possible values: oci, docker, auto]"),
            ("--driver=ssh", "[possible values: local, k8s, ci]"),
            ("--emulation=rosetta", "[possible values: auto, none, qemu]"),
            ("--isolation=vm", "[possible values: sandbox, inplace]"),
            (
                "--snapshot-mode=fast",
                "[possible values: full, redo, time]",
            ),
            (
                "--verbosity=loud",
                "[possible values: panic, fatal, error, warn, info, debug, trace]",
            ),
            ("--log-format=xml", "[possible values: text, color, json]"),
            ("--image-format=v2", "[possible values: oci, docker]"),
        ];
        for (arg, want) in table {
            let error = Args::try_parse_from(["kiln", arg])
                .map(|_| ())
                .map_err(|e| e.to_string());
            let message = error.err().unwrap_or_default();
            assert!(message.contains(want), "{arg}: {message}");
            assert!(
                message.starts_with("error: invalid value '"),
                "{arg}: {message}"
            );
        }
    }

    #[test]
    fn secrets_are_parsed_in_order_and_bad_ones_refused() {
        use crate::run::secret::{SecretFrom, SecretSource};
        let options = validate(&[
            "kiln",
            "--no-push",
            "--secret=id=npmrc,src=/home/me/.npmrc",
            "--secret",
            "id=TOKEN",
        ])
        .unwrap();
        assert_eq!(
            options.secrets,
            [
                SecretSource {
                    id: "npmrc".to_string(),
                    from: SecretFrom::File(PathBuf::from("/home/me/.npmrc")),
                },
                SecretSource {
                    id: "TOKEN".to_string(),
                    from: SecretFrom::Env("TOKEN".to_string()),
                },
            ]
        );
        assert_eq!(
            validate(&["kiln", "--no-push", "--secret=src=/x"]).map(|o| o.secrets),
            Err(
                "invalid --secret \"src=/x\": it needs id=NAME, e.g. --secret id=npmrc,src=$HOME/.npmrc"
                    .to_string()
            )
        );
    }

    #[test]
    fn bare_build_args_read_the_given_environment() {
        let args = Args::try_parse_from([
            "kiln",
            "--no-push",
            "--build-arg=FROM_ENV",
            "--build-arg=OTHER",
        ])
        .unwrap();
        let got = args.into_options_with_env(&test_env).unwrap().build_args;
        assert_eq!(got, map(&[("FROM_ENV", "env value")]));
        let args = Args::try_parse_from(["kiln", "--no-push", "--build-arg=FROM_ENV"]).unwrap();
        let got = args.into_options_with_env(&no_env).unwrap().build_args;
        assert_eq!(got, BTreeMap::new());
    }

    #[test]
    fn isolation_default_follows_the_builder_image_variable() {
        let defaults = Args::defaults().unwrap();
        let want = Isolation::default_for(std::env::var_os(BUILDER_IMAGE_ENV).as_deref());
        assert_eq!(defaults.execution.isolation, want);
        assert_eq!(
            Isolation::default_for(Some(OsStr::new("1"))),
            Isolation::Inplace
        );
    }
}
