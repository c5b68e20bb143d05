//! The one mapping between kiln's flags and a MultiArchBuild, both ways:
//! the MultiArchBuild a `kiln --driver=k8s` invocation stands for (its
//! flags as the resource's spec), and the flags each builder pod the
//! operator starts gets from its BuildRequest's spec. Pure functions; a
//! property test checks that flags → spec → builder flags gives back
//! what the spec carries.

use std::collections::BTreeMap;
use std::path::Path;

use kiln_crds::{
    BuildRequest, BuildSpec, CacheSpec, Compression as SpecCompression, MultiArchBuild,
    MultiArchBuildSpec, OciMode as SpecOciMode, OutputSpec, PushRetrySpec, SchedulingSpec, TagMode,
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
        ("--skip-unused-stages", !options.skip_unused_stages),
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
                provenance: output.provenance.map(|mode| match mode {
                    crate::attest::ProvenanceMode::Min => kiln_crds::spec::ProvenanceMode::Min,
                    crate::attest::ProvenanceMode::Max => kiln_crds::spec::ProvenanceMode::Max,
                }),
                sbom: output.sbom,
                // The operator signs; builder pods never get the key.
                signing: match &output.sign_key {
                    Some(crate::options::SignKey::Secret(name)) => {
                        Some(kiln_crds::spec::SigningSpec {
                            key_secret_ref: kiln_crds::spec::SecretRef { name: name.clone() },
                        })
                    }
                    _ => None,
                },
                // The operator lists the documents when it publishes the
                // index; builder pods attach them as referrers either way.
                attest_layout: match output.attest_layout {
                    crate::attest::AttestLayout::Referrers => {
                        kiln_crds::spec::AttestLayout::Referrers
                    }
                    crate::attest::AttestLayout::BuildKit => {
                        kiln_crds::spec::AttestLayout::Buildkit
                    }
                },
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

/// The `kiln` arguments of one BuildRequest: its spec as flags.
pub fn builder_args(request: &BuildRequest) -> Vec<String> {
    let spec = &request.spec;
    let build = &spec.build;
    let mut args = vec![
        format!("--context={}", build.context),
        format!("--dockerfile={}", build.dockerfile),
    ];
    if let Some(sub) = &build.context_sub_path {
        args.push(format!("--context-sub-path={sub}"));
    }
    args.extend(
        build
            .destinations
            .iter()
            .map(|d| format!("--destination={d}")),
    );
    args.push(format!("--custom-platform={}", spec.platform));
    match spec.tags {
        TagMode::Destinations => {}
        TagMode::None => args.push("--push-by-digest=true".into()),
        TagMode::PlatformSuffixed => args.push("--platform-tags=true".into()),
    }
    args.extend(
        build
            .build_args
            .iter()
            .map(|(k, v)| format!("--build-arg={k}={v}")),
    );
    if let Some(target) = &build.target {
        args.push(format!("--target={target}"));
    }
    args.extend(build.labels.iter().map(|(k, v)| format!("--label={k}={v}")));
    if let Some(cache) = build.cache.as_ref().filter(|c| c.enabled) {
        args.push("--cache=true".into());
        if let Some(repo) = &cache.repo {
            args.push(format!("--cache-repo={repo}"));
        }
        if let Some(ttl) = &cache.ttl {
            args.push(format!("--cache-ttl={ttl}"));
        }
        if let Some(suffix) = &cache.arch_repo_suffix {
            args.push(format!("--arch-cache-repo-suffix={suffix}"));
        }
    }
    let output = &build.output;
    // A Docker manifest list can list only Docker manifests: with
    // legacyManifestList the platforms are built as such, as the CLI's
    // local driver does (`kiln_builder::build::oci_mode`); under `auto` or
    // `oci` they would be OCI manifests the index could not list.
    if output.legacy_manifest_list {
        args.push("--oci-mode=docker".into());
    } else {
        args.push(format!("--oci-mode={}", output.oci_mode));
    }
    args.push(format!("--compression={}", output.compression));
    if let Some(level) = output.compression_level {
        args.push(format!("--compression-level={level}"));
    }
    if output.reproducible {
        args.push("--reproducible=true".into());
    }
    if output.push_ignore_immutable_tag_errors {
        args.push("--push-ignore-immutable-tag-errors=true".into());
    }
    if let Some(mode) = output.provenance {
        args.push(format!("--provenance={}", mode.as_str()));
    }
    if output.sbom {
        args.push("--sbom=true".into());
    }
    if let Some(retry) = &build.push_retry {
        if let Some(count) = retry.count {
            args.push(format!("--push-retry={count}"));
        }
        if let Some(delay) = &retry.initial_delay {
            args.push(format!("--push-retry-initial-delay={}", millis(delay)));
        }
        if let Some(delay) = &retry.max_delay {
            args.push(format!("--push-retry-max-delay={}", millis(delay)));
        }
    }
    if !build.scheduling.require_native_nodes {
        // Without native nodes the pod may land on any architecture: RUN of
        // a foreign platform then needs qemu-user on that node.
        args.push("--emulation=qemu".into());
    }
    args.push(format!(
        "--build-request={}/{}",
        request.metadata.namespace.as_deref().unwrap_or_default(),
        request.metadata.name.as_deref().unwrap_or_default()
    ));
    args
}

/// kaniko's retry delays are milliseconds.
fn millis(duration: &kube::core::Duration) -> u128 {
    std::time::Duration::from(*duration).as_millis()
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
            serde_json::json!(["linux/amd64", "linux/arm64"])
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

    mod round_trip {
        //! flags → MultiArchBuild spec → a builder's flags (what the
        //! operator gives each platform's pod) → options: everything the
        //! spec carries comes back as it was given.
        use proptest::prelude::*;

        use super::*;

        const NAME: &str = "[a-z][a-z0-9_]{0,6}";
        const VALUE: &str = "[a-zA-Z0-9 ./:=-]{0,12}";

        fn flags() -> impl Strategy<Value = Vec<String>> {
            (
                (
                    prop::collection::btree_map(NAME, VALUE, 0..3),
                    proptest::option::of(NAME),
                    prop::collection::btree_map(NAME, VALUE, 0..3),
                    proptest::option::of("sub/[a-z]{1,4}"),
                    prop::sample::subsequence(
                        vec!["linux/amd64", "linux/arm64", "linux/arm/v7", "linux/s390x"],
                        1..4,
                    ),
                    prop::collection::vec("[a-z]{1,5}", 1..3),
                ),
                (
                    any::<bool>(),
                    proptest::option::of("cache/[a-z]{1,5}"),
                    proptest::option::of(1u32..400),
                    proptest::option::of(prop::sample::select(vec!["-${ARCH}", "-${OS}-${ARCH}"])),
                ),
                (
                    prop::sample::select(vec!["oci", "docker", "auto"]),
                    prop::sample::select(vec!["gzip", "zstd"]),
                    proptest::option::of(1i32..9),
                    any::<bool>(),
                    any::<bool>(),
                    any::<bool>(),
                    any::<bool>(),
                ),
                (
                    0u32..5,
                    1u64..5000,
                    5000u64..90000,
                    prop::sample::select(vec!["false", "min", "max", "mode=max", "true"]),
                    any::<bool>(),
                    any::<bool>(),
                ),
            )
                .prop_map(
                    |(
                        (build_args, target, labels, sub_path, platforms, tags),
                        (cache, cache_repo, ttl_hours, suffix),
                        (oci, compression, level, reproducible, immutable, legacy, native),
                        (retries, initial, max, provenance, signed, sbom),
                    )| {
                        // Docker manifests (and so manifest lists) cannot
                        // carry zstd layers: kiln refuses the pair.
                        let docker = legacy || oci == "docker";
                        let compression = if docker { "gzip" } else { compression };
                        let mut flags = vec![
                            "--context=dir:///work/app".to_owned(),
                            format!("--platform={}", platforms.join(",")),
                            format!("--oci-mode={oci}"),
                            format!("--compression={compression}"),
                            format!("--reproducible={reproducible}"),
                            format!("--push-ignore-immutable-tag-errors={immutable}"),
                            format!("--legacy-manifest-list={legacy}"),
                            format!("--require-native-nodes={native}"),
                            format!("--push-retry={retries}"),
                            format!("--push-retry-initial-delay={initial}"),
                            format!("--push-retry-max-delay={max}"),
                            format!("--provenance={provenance}"),
                            format!("--sbom={sbom}"),
                        ];
                        if signed {
                            flags.push("--sign-key=k8s://cosign-key".to_owned());
                        }
                        // BuildKit's layout needs an OCI index and a
                        // document to list; `reproducible` picks it where
                        // allowed, for variety without another input.
                        if reproducible && !docker && (provenance != "false" || sbom) {
                            flags.push("--attest-layout=buildkit".to_owned());
                        }
                        if legacy {
                            // A manifest list lists Docker manifests only.
                            flags.retain(|f| !f.starts_with("--oci-mode"));
                            flags.push("--oci-mode=docker".to_owned());
                        }
                        flags.extend(
                            tags.iter()
                                .map(|t| format!("--destination=registry.example/app:{t}")),
                        );
                        flags.extend(
                            build_args
                                .iter()
                                .map(|(k, v)| format!("--build-arg={k}={v}")),
                        );
                        flags.extend(labels.iter().map(|(k, v)| format!("--label={k}={v}")));
                        if let Some(target) = target {
                            flags.push(format!("--target={target}"));
                        }
                        if let Some(sub) = sub_path {
                            flags.push(format!("--context-sub-path={sub}"));
                        }
                        if let Some(level) = level {
                            flags.push(format!("--compression-level={level}"));
                        }
                        if cache {
                            flags.push("--cache=true".to_owned());
                            if let Some(repo) = cache_repo {
                                flags.push(format!("--cache-repo=registry.example/{repo}"));
                            }
                            if let Some(hours) = ttl_hours {
                                flags.push(format!("--cache-ttl={hours}h"));
                            }
                            if let Some(suffix) = suffix {
                                flags.push(format!("--arch-cache-repo-suffix={suffix}"));
                            }
                        }
                        flags
                    },
                )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]
            #[test]
            fn what_the_spec_carries_reaches_every_builder(flags in flags()) {
                // `k8s://` keys are for --driver=k8s, which these options
                // are parsed without: the key is set as that driver's
                // validation leaves it.
                let signed = flags.iter().any(|f| f.starts_with("--sign-key="));
                let given: Vec<&str> = flags
                    .iter()
                    .map(String::as_str)
                    .filter(|f| !f.starts_with("--sign-key="))
                    .collect();
                let mut options_given = options(&given);
                if signed {
                    options_given.output.sign_key =
                        Some(crate::options::SignKey::Secret("cosign-key".into()));
                }
                let build = multi_arch_build(&options_given, "oci://registry.example/ctx@sha256:00").unwrap();
                prop_assert_eq!(
                    build.spec.build.output.signing.as_ref().map(|s| s.key_secret_ref.name.as_str()),
                    options_given.output.sign_key.as_ref().map(|_| "cosign-key")
                );
                prop_assert_eq!(
                    build.spec.build.output.attest_layout == kiln_crds::spec::AttestLayout::Buildkit,
                    options_given.output.attest_layout == crate::attest::AttestLayout::BuildKit
                );
                prop_assert_eq!(build.spec.platforms.len(), options_given.platforms.len());
                for platform in &build.spec.platforms {
                    let request = BuildRequest::new(
                        "app-linux-amd64-g1",
                        kiln_crds::BuildRequestSpec {
                            platform: platform.clone(),
                            build_generation: 1,
                            tags: TagMode::None,
                            build: build.spec.build.clone(),
                        },
                    );
                    let args = builder_args(&request);
                    let mut again: Vec<&str> = args.iter().map(String::as_str).collect();
                    // What only a pod has: the BuildRequest to report to.
                    again.retain(|a| !a.starts_with("--build-request="));
                    let back = options(&again);
                    let o = &options_given;
                    prop_assert_eq!(&back.context, &build.spec.build.context);
                    prop_assert_eq!(&back.dockerfile, &build.spec.build.dockerfile);
                    prop_assert_eq!(&back.context_sub_path, &o.context_sub_path);
                    prop_assert_eq!(&back.output.destinations, &o.output.destinations);
                    prop_assert_eq!(
                        back.platforms.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        vec![platform.clone()]
                    );
                    prop_assert_eq!(&back.build_args, &o.build_args);
                    prop_assert_eq!(&back.target, &o.target);
                    prop_assert_eq!(&back.labels, &o.labels);
                    prop_assert_eq!(back.cache.enabled, o.cache.enabled);
                    if o.cache.enabled {
                        prop_assert_eq!(&back.cache.repo, &o.cache.repo);
                        prop_assert_eq!(back.cache.ttl, o.cache.ttl);
                        prop_assert_eq!(&back.cache.arch_repo_suffix, &o.cache.arch_repo_suffix);
                    }
                    prop_assert_eq!(back.output.oci_mode, o.output.oci_mode);
                    prop_assert_eq!(back.output.compression, o.output.compression);
                    prop_assert_eq!(back.output.compression_level, o.output.compression_level);
                    prop_assert_eq!(back.output.reproducible, o.output.reproducible);
                    prop_assert_eq!(
                        back.output.push_ignore_immutable_tag_errors,
                        o.output.push_ignore_immutable_tag_errors
                    );
                    prop_assert_eq!(back.output.provenance, o.output.provenance);
                    prop_assert_eq!(back.output.sbom, o.output.sbom);
                    // The signing key stays with the operator: no builder
                    // argument names it.
                    prop_assert!(back.output.sign_key.is_none());
                    prop_assert!(!args.iter().any(|a| a.contains("sign-key")));
                    // The operator lists the documents in the index: builder
                    // pods attach referrers whatever the layout.
                    prop_assert!(!args.iter().any(|a| a.contains("attest-layout")));
                    prop_assert_eq!(back.registry.push_retry, o.registry.push_retry);
                    prop_assert_eq!(
                        back.registry.push_retry_initial_delay,
                        o.registry.push_retry_initial_delay
                    );
                    prop_assert_eq!(back.registry.push_retry_max_delay, o.registry.push_retry_max_delay);
                    // Each builder pushes its platform by digest: the index
                    // carries the tags.
                    prop_assert!(back.multi_platform.push_by_digest);
                    if !o.multi_platform.require_native_nodes {
                        prop_assert_eq!(back.multi_platform.emulation, crate::options::Emulation::Qemu);
                    }
                }
            }
        }
    }
}
