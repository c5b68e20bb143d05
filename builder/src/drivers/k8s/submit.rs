//! The MultiArchBuild a `kiln --driver=k8s` invocation stands for: its
//! flags as the resource's spec. A pure function of the options, tested
//! against the flags users pass.

use std::collections::BTreeMap;
use std::path::Path;

use kiln_crds::{
    BuildSpec, CacheSpec, Compression as SpecCompression, MultiArchBuild, MultiArchBuildSpec,
    OciMode as SpecOciMode, OutputSpec, PushRetrySpec, SchedulingSpec,
};
use kube::api::ObjectMeta;

use crate::context::{ContextError, ContextSource};
use crate::image::{Compression, OciMode};
use crate::options::BuildOptions;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    #[error("--driver=k8s needs --destination: the cluster pushes the images there")]
    NoDestination,
    #[error(
        "--driver=k8s builds in the cluster, which cannot read {flag} on this machine; drop it (the index reference is printed, and kept in the MultiArchBuild's status)"
    )]
    LocalOutput { flag: &'static str },
    #[error(
        "--dockerfile={dockerfile} is outside the context {context}: with --driver=k8s only the context is uploaded, so the Dockerfile must be inside it"
    )]
    DockerfileOutsideContext { dockerfile: String, context: String },
    #[error("{0}")]
    Context(String),
    #[error("--compression=none is not available to cluster builds: use gzip or zstd")]
    Compression,
    #[error("--{flag} cannot be used with --driver=k8s: {reason}")]
    Unavailable {
        flag: &'static str,
        reason: &'static str,
    },
    #[error(
        "--secret cannot be used with --driver=k8s: a MultiArchBuild carries no secrets, and their values must not be written into cluster objects; build with --driver=local, or drop the RUN --mount=type=secret"
    )]
    Secrets,
}

impl From<ContextError> for SubmitError {
    fn from(error: ContextError) -> Self {
        SubmitError::Context(error.to_string())
    }
}

/// Where a local context is uploaded: `--context-repo`, or the first
/// destination's repository with `/context` appended.
pub fn context_repository(options: &BuildOptions) -> Result<String, SubmitError> {
    if let Some(repo) = &options.k8s.context_repo {
        return Ok(repo.clone());
    }
    let first = options
        .output
        .destinations
        .first()
        .ok_or(SubmitError::NoDestination)?;
    Ok(format!("{}/context", crate::drivers::index::name_of(first)))
}

/// `registry/team/app:1.0` → `app-`, the MultiArchBuild's generateName.
fn generate_name(destination: &str) -> String {
    let name = crate::drivers::index::name_of(destination);
    let last = name.rsplit('/').next().unwrap_or("kiln");
    let mut base: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    base.truncate(40);
    let base = base.trim_matches('-');
    if base.is_empty() {
        "kiln-".to_owned()
    } else {
        format!("{base}-")
    }
}

/// The Dockerfile as a path inside the context.
fn dockerfile_in_context(options: &BuildOptions) -> Result<String, SubmitError> {
    let given = Path::new(&options.dockerfile);
    if !given.is_absolute() {
        return Ok(options.dockerfile.clone());
    }
    let context = match ContextSource::parse(&options.context)? {
        ContextSource::Dir { path } => path,
        _ => {
            return Err(SubmitError::DockerfileOutsideContext {
                dockerfile: options.dockerfile.clone(),
                context: options.context.clone(),
            });
        }
    };
    given
        .strip_prefix(&context)
        .map(|p| p.display().to_string())
        .map_err(|_| SubmitError::DockerfileOutsideContext {
            dockerfile: options.dockerfile.clone(),
            context: options.context.clone(),
        })
}

/// The flags set on this command line that a MultiArchBuild has no field
/// for, so the cluster's builds run without them: `--driver=k8s` warns
/// about each (the flags that cannot work at all are refused instead).
/// `--isolation` is not listed: the cluster's builder pods choose theirs.
pub fn dropped_flags(options: &BuildOptions) -> Vec<&'static str> {
    use crate::options::Emulation;
    use crate::snapshot::SnapshotMode;
    let output = &options.output;
    let multi = &options.multi_platform;
    let cache = &options.cache;
    let execution = &options.execution;
    let registry = &options.registry;
    let retry_defaults = crate::registry::RegistryOptions::default();
    [
        ("--annotation", !output.annotations.is_empty()),
        (
            "--skip-push-permission-check",
            output.skip_push_permission_check,
        ),
        ("--skip-unused-stages", options.skip_unused_stages),
        ("--emulation", multi.emulation != Emulation::Auto),
        ("--platform-tags", multi.platform_tags),
        ("--push-by-digest", multi.push_by_digest),
        ("--digests-from", multi.digests_from.is_some()),
        ("--cache-dir", cache.dir_given),
        ("--cache-copy-layers", cache.copy_layers),
        ("--cache-run-layers", !cache.run_layers),
        ("--no-push-cache", !cache.push),
        (
            "--snapshot-mode",
            execution.snapshot_mode != SnapshotMode::Full,
        ),
        ("--single-snapshot", execution.single_snapshot),
        ("--ignore-path", !execution.ignore_paths.is_empty()),
        ("--ignore-var-run", !execution.ignore_var_run),
        ("--force", execution.force),
        ("--cleanup", execution.cleanup),
        ("--insecure", registry.insecure),
        ("--insecure-pull", registry.insecure_pull),
        (
            "--insecure-registry",
            !registry.insecure_registries.is_empty(),
        ),
        ("--skip-tls-verify", registry.skip_tls_verify),
        ("--skip-tls-verify-pull", registry.skip_tls_verify_pull),
        (
            "--skip-tls-verify-registry",
            !registry.skip_tls_verify_registries.is_empty(),
        ),
        (
            "--registry-certificate",
            !registry.registry_certificates.is_empty(),
        ),
        (
            "--registry-client-cert",
            !registry.registry_client_certs.is_empty(),
        ),
        ("--registry-mirror", !registry.registry_mirrors.is_empty()),
        ("--registry-map", !registry.registry_maps.is_empty()),
        (
            "--skip-default-registry-fallback",
            registry.skip_default_registry_fallback,
        ),
        (
            "--image-download-retry",
            registry.image_download_retry != retry_defaults.image_download_retry,
        ),
        (
            "--credential-helpers",
            !registry.credential_helpers.is_empty(),
        ),
    ]
    .into_iter()
    .filter_map(|(flag, set)| set.then_some(flag))
    .collect()
}

/// The MultiArchBuild for `options`, building `context` (the uploaded
/// artifact, or the options' own remote context).
pub fn multi_arch_build(
    options: &BuildOptions,
    context: &str,
) -> Result<MultiArchBuild, SubmitError> {
    let output = &options.output;
    let first = output
        .destinations
        .first()
        .ok_or(SubmitError::NoDestination)?;
    if !options.secrets.is_empty() {
        return Err(SubmitError::Secrets);
    }
    // Both used to be dropped silently, so the cluster built and pushed.
    if options.multi_platform.dry_run {
        return Err(SubmitError::Unavailable {
            flag: "dry-run",
            reason: "a MultiArchBuild always builds; check the build with --driver=local --dry-run",
        });
    }
    if output.no_push {
        return Err(SubmitError::Unavailable {
            flag: "no-push",
            reason: "the cluster's builds push to the destinations, their only output; build with --driver=local",
        });
    }
    for (flag, set) in [
        ("--tar-path", output.tar_path.is_some()),
        ("--oci-layout-path", output.oci_layout_path.is_some()),
        ("--digest-file", output.digest_file.is_some()),
        (
            "--image-name-with-digest-file",
            output.image_name_with_digest_file.is_some(),
        ),
        (
            "--image-name-tag-with-digest-file",
            output.image_name_tag_with_digest_file.is_some(),
        ),
    ] {
        if set {
            return Err(SubmitError::LocalOutput { flag });
        }
    }
    let compression = match output.compression {
        Compression::Gzip => SpecCompression::Gzip,
        Compression::Zstd => SpecCompression::Zstd,
        Compression::None => return Err(SubmitError::Compression),
    };
    let oci_mode = match output.oci_mode {
        OciMode::Oci => SpecOciMode::Oci,
        OciMode::Docker => SpecOciMode::Docker,
        OciMode::Auto => SpecOciMode::Auto,
    };
    let multi = &options.multi_platform;
    let cache = options.cache.enabled.then(|| CacheSpec {
        enabled: true,
        repo: options.cache.repo.clone(),
        ttl: Some(options.cache.ttl.into()),
        arch_repo_suffix: options.cache.arch_repo_suffix.clone(),
    });
    let registry = &options.registry;
    let platforms = if options.platforms.is_empty() {
        vec![crate::platform::Platform::host().to_string()]
    } else {
        options.platforms.iter().map(ToString::to_string).collect()
    };
    let spec = MultiArchBuildSpec {
        platforms,
        build: BuildSpec {
            context: context.to_owned(),
            context_sub_path: options.context_sub_path.clone(),
            dockerfile: dockerfile_in_context(options)?,
            destinations: output.destinations.clone(),
            build_args: options.build_args.clone(),
            target: options.target.clone(),
            labels: options.labels.clone(),
            cache,
            output: OutputSpec {
                oci_mode,
                compression,
                compression_level: output.compression_level,
                publish_index: multi.publish_index,
                legacy_manifest_list: multi.legacy_manifest_list,
                index_annotations: multi.index_annotations.clone(),
                reproducible: output.reproducible,
                push_ignore_immutable_tag_errors: output.push_ignore_immutable_tag_errors,
            },
            scheduling: SchedulingSpec {
                require_native_nodes: multi.require_native_nodes,
                ..SchedulingSpec::default()
            },
            registry_secret_ref: None,
            retries: kiln_crds::spec::DEFAULT_RETRIES,
            timeout: None,
            push_retry: Some(PushRetrySpec {
                count: i32::try_from(registry.push_retry).ok(),
                initial_delay: Some(registry.push_retry_initial_delay.into()),
                max_delay: Some(registry.push_retry_max_delay.into()),
            }),
        },
    };
    Ok(MultiArchBuild {
        metadata: ObjectMeta {
            generate_name: Some(generate_name(first)),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/created-by".to_owned(),
                "kiln-cli".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn options(args: &[&str]) -> BuildOptions {
        let mut all = vec!["kiln", "--driver=local"];
        all.extend_from_slice(args);
        let args = <crate::cli::Args as clap::Parser>::try_parse_from(all).unwrap();
        args.into_options_with_env(&|_| None).unwrap()
    }

    #[test]
    fn flags_become_the_spec() {
        let o = options(&[
            "--context=dir:///work/app",
            "--dockerfile=/work/app/build/Dockerfile",
            "--destination=registry.example/team/app:1.0",
            "--destination=registry.example/team/app:latest",
            "--multi-platform=linux/amd64,linux/arm64",
            "--publish-index",
            "--index-annotations=org.opencontainers.image.description=demo",
            "--build-arg=VERSION=1.0",
            "--label=team=platform",
            "--target=runtime",
            "--compression=zstd",
            "--cache=true",
            "--cache-repo=registry.example/team/app-cache",
            "--arch-cache-repo-suffix=-${ARCH}",
            "--require-native-nodes=false",
        ]);
        let build =
            multi_arch_build(&o, "oci://registry.example/team/app/context@sha256:aa").unwrap();
        assert_eq!(build.metadata.generate_name.as_deref(), Some("app-"));
        let value = serde_json::to_value(&build.spec).unwrap();
        assert_eq!(
            value["platforms"],
            serde_json::json!(["linux/amd64", "linux/arm64/v8"])
        );
        assert_eq!(
            value["context"],
            "oci://registry.example/team/app/context@sha256:aa"
        );
        assert_eq!(value["dockerfile"], "build/Dockerfile");
        assert_eq!(value["destinations"][1], "registry.example/team/app:latest");
        assert_eq!(value["buildArgs"]["VERSION"], "1.0");
        assert_eq!(value["labels"]["team"], "platform");
        assert_eq!(value["target"], "runtime");
        assert_eq!(value["output"]["compression"], "zstd");
        assert_eq!(value["output"]["publishIndex"], true);
        assert_eq!(
            value["output"]["indexAnnotations"]["org.opencontainers.image.description"],
            "demo"
        );
        assert_eq!(value["cache"]["repo"], "registry.example/team/app-cache");
        assert_eq!(value["cache"]["archRepoSuffix"], "-${ARCH}");
        assert_eq!(value["cache"]["ttl"], "1209600s");
        assert_eq!(value["scheduling"]["requireNativeNodes"], false);
        assert_eq!(
            context_repository(&o).unwrap(),
            "registry.example/team/app/context"
        );
    }

    #[test]
    fn immutable_tag_errors_are_ignored_in_the_cluster_on_request() {
        // (flags, pushIgnoreImmutableTagErrors in the spec's JSON)
        let table: [(&[&str], serde_json::Value); 4] = [
            (&[], serde_json::Value::Null),
            (&["--push-ignore-immutable-tag-errors"], true.into()),
            (&["--push-ignore-immutable-tag-errors=true"], true.into()),
            (
                &["--push-ignore-immutable-tag-errors=false"],
                serde_json::Value::Null,
            ),
        ];
        for (flags, want) in table {
            let mut args = vec!["--destination=registry.example/team/app:1"];
            args.extend_from_slice(flags);
            let o = options(&args);
            let build = multi_arch_build(&o, "oci://registry.example/c@sha256:aa").unwrap();
            assert_eq!(
                build.spec.build.output.push_ignore_immutable_tag_errors,
                want == true,
                "{flags:?}"
            );
            let value = serde_json::to_value(&build.spec).unwrap();
            assert_eq!(
                value["output"]["pushIgnoreImmutableTagErrors"], want,
                "{flags:?}"
            );
            assert!(!dropped_flags(&o).contains(&"--push-ignore-immutable-tag-errors"));
        }
    }

    #[test]
    fn flags_without_a_spec_field_are_named() {
        let base = ["--destination=registry.example/team/app:1"];
        assert_eq!(dropped_flags(&options(&base)), Vec::<&str>::new());
        // Flags the spec carries are not named.
        let carried = options(&[
            "--destination=registry.example/team/app:1",
            "--platform=linux/amd64,linux/arm64",
            "--push-retry=3",
            "--reproducible",
            "--cache=true",
            "--legacy-manifest-list",
            "--push-ignore-immutable-tag-errors",
        ]);
        assert_eq!(dropped_flags(&carried), Vec::<&str>::new());
        let dropped = options(&[
            "--destination=registry.example/team/app:1",
            "--annotation=a=b",
            "--no-push-cache",
            "--snapshot-mode=time",
            "--insecure-registry=r.example",
            "--registry-mirror=mirror.gcr.io",
            "--registry-client-cert=r.example=/c.crt,/c.key",
            "--image-download-retry=2",
            "--skip-push-permission-check",
        ]);
        assert_eq!(
            dropped_flags(&dropped),
            [
                "--annotation",
                "--skip-push-permission-check",
                "--no-push-cache",
                "--snapshot-mode",
                "--insecure-registry",
                "--registry-client-cert",
                "--registry-mirror",
                "--image-download-retry",
            ]
        );
    }

    #[test]
    fn the_spec_publishes_an_index_by_default_for_several_platforms() {
        // (flags, publishIndex)
        let table: [(&[&str], bool); 4] = [
            (&["--multi-platform=linux/amd64,linux/arm64"], true),
            (&["--platform=linux/amd64,linux/arm64"], true),
            (
                &[
                    "--platform=linux/amd64,linux/arm64",
                    "--publish-index=false",
                ],
                false,
            ),
            (&["--platform=linux/arm64"], false),
        ];
        for (flags, want) in table {
            let mut args = vec!["--destination=registry.example/team/app:1"];
            args.extend_from_slice(flags);
            let o = options(&args);
            let build = multi_arch_build(&o, "oci://registry.example/c@sha256:aa").unwrap();
            let value = serde_json::to_value(&build.spec).unwrap();
            assert_eq!(value["output"]["publishIndex"], want, "{flags:?}");
        }
    }

    #[test]
    fn refusals() {
        let o = options(&[
            "--context=dir:///a",
            "--destination=r.example/app:1",
            "--digest-file=/tmp/d",
        ]);
        assert_eq!(
            multi_arch_build(&o, "x").unwrap_err(),
            SubmitError::LocalOutput {
                flag: "--digest-file"
            }
        );
        let o = options(&[
            "--context=dir:///a",
            "--destination=r.example/app:1",
            "--dockerfile=/elsewhere/Dockerfile",
        ]);
        assert_eq!(
            multi_arch_build(&o, "x").unwrap_err().to_string(),
            "--dockerfile=/elsewhere/Dockerfile is outside the context dir:///a: with --driver=k8s only the context is uploaded, so the Dockerfile must be inside it"
        );
        let o = options(&["--context=dir:///a", "--no-push"]);
        assert_eq!(
            multi_arch_build(&o, "x").unwrap_err(),
            SubmitError::NoDestination
        );
        let o = options(&["--destination=r.example/app:1", "--dry-run"]);
        assert_eq!(
            multi_arch_build(&o, "x").unwrap_err().to_string(),
            "--dry-run cannot be used with --driver=k8s: a MultiArchBuild always builds; check the build with --driver=local --dry-run"
        );
        let o = options(&["--destination=r.example/app:1", "--no-push"]);
        assert_eq!(
            multi_arch_build(&o, "x").unwrap_err().to_string(),
            "--no-push cannot be used with --driver=k8s: the cluster's builds push to the destinations, their only output; build with --driver=local"
        );
        let o = options(&[
            "--context=dir:///a",
            "--destination=r.example/app:1",
            "--secret=id=npmrc,src=/home/me/.npmrc",
        ]);
        assert_eq!(
            multi_arch_build(&o, "x").unwrap_err().to_string(),
            "--secret cannot be used with --driver=k8s: a MultiArchBuild carries no secrets, and their values must not be written into cluster objects; build with --driver=local, or drop the RUN --mount=type=secret"
        );
    }
}
