//! The flags of `kiln`, spelled and defaulted as kaniko's executor does so
//! a kaniko command line works unchanged; kiln's own flags sit beside them.
//!
//! Booleans follow pflag: `--cache`, `--cache=true` and `--cache=false` all
//! work, and a value needs the `=` (`--cache true` is a stray argument, as
//! with kaniko). Repeatable flags take one value per occurrence.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};
use serde::Serialize;

use super::logging::{LogFormat, Verbosity};
use super::values::{parse_bool, parse_duration};
use crate::options::{
    BUILDER_IMAGE_ENV, Compression, Driver, Emulation, Isolation, OciMode, SnapshotMode,
    in_builder_image,
};

/// Environment variable that selects `--emulation` (kiln's builder Jobs set it).
pub const EMULATION_ENV: &str = "KILN_EMULATION";
/// Environment variable naming the `BuildRequest` a builder pod reports to.
pub const BUILD_REQUEST_ENV: &str = "KILN_BUILD_REQUEST";

/// kaniko's executor works in `/workspace/`; outside the builder image there
/// is no such convention, so the current directory is the natural context.
fn default_context() -> String {
    if in_builder_image(std::env::var_os(BUILDER_IMAGE_ENV).as_deref()) {
        "/workspace/".to_string()
    } else {
        ".".to_string()
    }
}

fn default_isolation() -> Isolation {
    Isolation::default_for(std::env::var_os(BUILDER_IMAGE_ENV).as_deref())
}

// Serialising an `Args` gives one entry per flag, keyed by the flag's long
// name (every field is named after its flag); that is how flags set to
// something other than their default are found (see `UNSUPPORTED`).

/// Builds container images from a Dockerfile without a daemon or privileges.
///
/// kiln accepts kaniko's executor flags, and adds multi-platform builds
/// published as one image index.
#[derive(Debug, Clone, PartialEq, Parser, Serialize)]
#[command(
    name = "kiln",
    version,
    max_term_width = 100,
    after_help = "Supported platforms: any os/arch[/variant] (linux/amd64, linux/arm64, linux/s390x, ...).\n\
                  RUN for a platform this machine cannot execute needs a registered qemu-user\n\
                  interpreter (--emulation=auto, the default) or native nodes (--driver=k8s)."
)]
pub struct Args {
    #[command(flatten, next_help_heading = "Input")]
    #[serde(flatten)]
    pub input: InputArgs,
    #[command(flatten, next_help_heading = "Output")]
    #[serde(flatten)]
    pub output: OutputArgs,
    #[command(flatten, next_help_heading = "Platforms")]
    #[serde(flatten)]
    pub platforms: PlatformArgs,
    #[command(flatten, next_help_heading = "Cache")]
    #[serde(flatten)]
    pub cache: CacheArgs,
    #[command(flatten, next_help_heading = "Execution")]
    #[serde(flatten)]
    pub execution: ExecutionArgs,
    #[command(flatten, next_help_heading = "Registry")]
    #[serde(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten, next_help_heading = "Kubernetes driver")]
    #[serde(flatten)]
    pub k8s: K8sArgs,
    #[command(flatten, next_help_heading = "Logging")]
    #[serde(flatten)]
    pub logging: LoggingArgs,
    #[command(flatten, next_help_heading = "kaniko compatibility")]
    #[serde(flatten)]
    pub kaniko: KanikoArgs,
}

#[derive(Debug, Clone, PartialEq, clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct InputArgs {
    /// Build context: a directory path, dir://PATH, tar://PATH.tar.gz, git://HOST/REPO.git#REF or
    /// oci://IMAGE. Default: the current directory, or /workspace/ inside kiln's builder image (as
    /// kaniko).
    #[arg(short = 'c', long, value_name = "CONTEXT", default_value_t = default_context())]
    pub context: String,

    /// Directory inside the context to use as the context, e.g. `services/api` for a monorepo.
    #[arg(long, value_name = "PATH")]
    pub context_sub_path: Option<String>,

    /// Path of the Dockerfile: absolute, or relative to the context (falling back to the current
    /// directory when the context has no such file).
    #[arg(short = 'f', long, value_name = "PATH", default_value = "Dockerfile")]
    pub dockerfile: String,

    /// Build argument KEY=VALUE for ARG instructions; a bare KEY takes its value from the
    /// environment. Repeatable.
    #[arg(long, value_name = "KEY[=VALUE]")]
    pub build_arg: Vec<String>,

    /// Stage to build, by name (`FROM … AS NAME`); later stages are not built. Default: the last
    /// stage.
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,

    /// Build only the stages the target stage depends on (the default, as BuildKit does);
    /// `--skip-unused-stages=false` builds every stage before the target, as kaniko does by
    /// default.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "true",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub skip_unused_stages: bool,

    /// Label KEY=VALUE added to the image config, as a LABEL instruction would. Repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,

    /// Secret for RUN --mount=type=secret: `id=ID,src=FILE`, `id=ID,env=VAR`, or `id=ID` (the
    /// environment variable ID). Never stored in a layer, the history, the cache key or a log.
    /// Repeatable.
    #[arg(long, value_name = "SPEC")]
    pub secret: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct OutputArgs {
    /// Image reference to push to, e.g. `ghcr.io/org/app:1.2.3`. Repeatable; required unless
    /// --no-push.
    #[arg(short = 'd', long, value_name = "IMAGE")]
    pub destination: Vec<String>,

    /// Build without pushing anything (the image can still go to --tar-path or --oci-layout-path).
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub no_push: bool,

    /// Also write the image as a `docker load`-able tarball to this file.
    #[arg(long, value_name = "FILE", alias = "tarPath")]
    pub tar_path: Option<PathBuf>,

    /// Also write the image into an OCI image layout directory at this path.
    #[arg(long, value_name = "DIR")]
    pub oci_layout_path: Option<PathBuf>,

    /// Write the digest of the built image (`sha256:…`) to this file, e.g. for --driver=ci.
    #[arg(long, value_name = "FILE")]
    pub digest_file: Option<PathBuf>,

    /// Write `IMAGE@sha256:…` for every destination to this file, one per line.
    #[arg(long, value_name = "FILE")]
    pub image_name_with_digest_file: Option<PathBuf>,

    /// Write `IMAGE:TAG@sha256:…` for every destination to this file, one per line.
    #[arg(long, value_name = "FILE")]
    pub image_name_tag_with_digest_file: Option<PathBuf>,

    /// Make the image byte-for-byte reproducible: timestamps are zeroed (or set from
    /// SOURCE_DATE_EPOCH) in layers and config.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub reproducible: bool,

    /// Compression of the layers kiln pushes or caches, on every core (gzip in 128 KiB blocks as
    /// pigz writes it, one ordinary gzip stream whose bytes do not depend on the core count). zstd
    /// needs --oci-mode=oci or auto. Layers of stages that are only copied from are not compressed
    /// unless --cache stores them.
    #[arg(long, value_enum, value_name = "ALGORITHM", default_value_t = Compression::Gzip)]
    pub compression: Compression,

    /// Compression level: 0-9 for gzip, 1-22 for zstd; -1 or unset is the algorithm's default.
    #[arg(long, value_name = "LEVEL", allow_negative_numbers = true)]
    pub compression_level: Option<i32>,

    /// Media types: oci (OCI manifests and indexes), docker (Docker v2 schema 2 and manifest
    /// lists) or auto (OCI, Docker where a registry refuses OCI).
    #[arg(long, value_enum, value_name = "MODE", default_value_t = OciMode::Auto)]
    pub oci_mode: OciMode,

    /// Annotation KEY=VALUE on the image manifest, e.g.
    /// `org.opencontainers.image.source=https://github.com/org/app`. Repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pub annotation: Vec<String>,

    /// Attach SLSA provenance v1 (an in-toto statement) to each pushed platform image as an OCI
    /// referrer: min (base images, Dockerfile and context digests, target, platform, builder) or
    /// max (min plus build-argument values; names that look like secrets are recorded without
    /// their values). Also spelled mode=min, mode=max, true (min) and false (none, the default).
    #[arg(long, value_name = "MODE")]
    pub provenance: Option<String>,

    /// Attach an SBOM (SPDX 2.3 JSON) of each pushed platform image as an OCI referrer: the OS
    /// packages of its dpkg, apk and rpm databases and the Python, npm, Go and Rust (cargo
    /// auditable) packages found in its files, read from the layers without running anything.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub sbom: bool,

    /// Sign every pushed platform image and the index in cosign's format with this cosign private
    /// key (`cosign generate-key-pair`; its password from COSIGN_PASSWORD), so `cosign verify --key
    /// cosign.pub` accepts them; with --provenance the statements are also pushed signed, for
    /// `cosign verify-attestation`. A key that cannot be opened stops kiln before it builds. With
    /// --driver=k8s: `k8s://<secret>`, a Secret of the build's namespace with cosign.key and
    /// cosign.password (`cosign generate-key-pair k8s://<namespace>/<secret>`) that the operator
    /// signs with.
    #[arg(long, value_name = "FILE|k8s://SECRET")]
    pub sign_key: Option<String>,

    /// Where the --provenance and --sbom documents are listed: referrers (the default: as OCI 1.1
    /// referrers of each platform image, which `oras discover` and cosign read; the index lists
    /// only the platform images) or buildkit (also in the published index as BuildKit stores them,
    /// one `unknown/unknown` attestation manifest per platform, for Docker's tools that read only
    /// that layout; implies --publish-index, needs an OCI index). With --driver=ci the index job
    /// collects what the platform jobs attached.
    #[arg(long, value_name = "LAYOUT")]
    pub attest_layout: Option<String>,
}

#[derive(Debug, Clone, PartialEq, clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PlatformArgs {
    /// Platform to build for as os/arch[/variant], e.g. `linux/arm64` (kaniko's flag). Default: the
    /// platform kiln runs on.
    #[arg(long, value_name = "PLATFORM", alias = "customPlatform")]
    pub custom_platform: Option<String>,

    /// Platform to build for, or a comma list of them (then the same as --multi-platform), e.g.
    /// `linux/amd64,linux/arm64`.
    #[arg(long, value_name = "PLATFORMS")]
    pub platform: Option<String>,

    /// Comma list of platforms to build and combine into one multi-platform image, e.g.
    /// `linux/amd64,linux/arm64,linux/arm/v7`.
    #[arg(long, value_name = "PLATFORMS")]
    pub multi_platform: Option<String>,

    /// Where platforms are built: local (this machine), k8s (one Job per platform on native nodes)
    /// or ci (nothing is built; publish the digests from --digests-from).
    #[arg(long, value_enum, value_name = "DRIVER", default_value_t = Driver::Local)]
    pub driver: Driver,

    /// Push an image index (or Docker manifest list) referring to every platform's image to each
    /// --destination. Default: true when more than one platform is built, and with --driver=ci;
    /// false pushes each platform under its own tag (`app:1.2.3-linux-arm64`) instead.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub publish_index: Option<bool>,

    /// Publish a Docker manifest list instead of an OCI image index.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub legacy_manifest_list: bool,

    /// Annotation KEY=VALUE on the published image index, e.g.
    /// `org.opencontainers.image.revision=$GIT_SHA`. Repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pub index_annotations: Vec<String>,

    /// Directory of per-platform digest files (`linux-amd64.digest`, as written by --digest-file)
    /// for --driver=ci.
    #[arg(long, value_name = "DIR")]
    pub digests_from: Option<PathBuf>,

    /// With --driver=k8s, refuse to start a platform that has no node of its architecture instead
    /// of building it elsewhere.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "true",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub require_native_nodes: bool,

    /// How RUN executes for a foreign architecture with --driver=local: auto (under the qemu-user
    /// interpreter the kernel has registered in binfmt_misc, with a warning, and refused when
    /// none is), none (refuse the build) or qemu (require the interpreter; install
    /// qemu-user-static and register it with the F flag first). Also KILN_EMULATION.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = Emulation::Auto, env = EMULATION_ENV)]
    pub emulation: Emulation,

    /// Also push each platform's image under a tag with the platform appended, e.g.
    /// `app:1.2.3-linux-arm64`.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub platform_tags: bool,

    /// Push the image by digest only, under none of the destinations' tags: for one platform of
    /// an index published elsewhere (the operator sets it). Prints `name@digest`.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub push_by_digest: bool,

    /// Check the flags, platforms and Dockerfile, print what would be built, and stop.
    #[arg(
        long,
        alias = "dryrun",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CacheArgs {
    /// Reuse RUN layers (and COPY/ADD layers with --cache-copy-layers) from earlier builds,
    /// stored in --cache-repo; new layers are pushed there.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub cache: bool,

    /// Repository holding cached layers, e.g. `ghcr.io/org/app/cache`. Default: the first
    /// --destination's repository with `/cache` appended.
    #[arg(long, value_name = "REPO")]
    pub cache_repo: Option<String>,

    /// How long a cached layer stays usable, as a Go duration: `168h`, `2h30m`.
    #[arg(long, value_name = "DURATION", default_value = "336h", value_parser = parse_duration)]
    pub cache_ttl: Duration,

    /// Directory kept between builds: layer blobs (base images' and cached ones) by digest,
    /// checked against it when read, so a rebuild does not download them again; base images
    /// themselves, so a base pinned by digest needs no registry and a tag whose registry cannot
    /// be reached is used as last pulled (with a warning); RUN --mount=type=cache directories, in
    /// `run-mounts/<os>-<arch>[-<variant>]/<id>`. Used when given, or with --cache when the
    /// default directory exists.
    #[arg(long, value_name = "DIR", default_value = "/cache")]
    pub cache_dir: PathBuf,

    /// Cache the layers of COPY and ADD as well as those of RUN.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub cache_copy_layers: bool,

    /// Cache the layers of RUN instructions.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "true",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub cache_run_layers: bool,

    /// Suffix for a per-architecture cache repository; `${ARCH}`, `${OS}` and `${VARIANT}` become
    /// the platform's, e.g. `-${ARCH}` gives `…/cache-arm64`. Quote it in a shell
    /// (`'--arch-cache-repo-suffix=-${ARCH}'`): a suffix that lost its placeholder is refused.
    #[arg(long, value_name = "SUFFIX")]
    pub arch_cache_repo_suffix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ExecutionArgs {
    /// How RUN is isolated: sandbox (also spelled chroot: in a work directory, with its own
    /// namespaces, pivot_root, a container runtime's default capabilities and seccomp; the host
    /// is untouched; needs root) or inplace (as kaniko: each stage is unpacked over this
    /// container's own /, after removing what is there except /kiln, /kaniko, /proc, /sys, /dev,
    /// /var/run, mount points and --ignore-paths; RUN is a plain exec needing no privilege;
    /// refused outside a container unless --force). Default: inplace inside kiln's builder
    /// image, else sandbox.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = default_isolation())]
    pub isolation: Isolation,

    /// How RUN's changes are found: full (metadata, and file content where metadata cannot
    /// decide), redo (metadata only: mode, owner, size, times, inode) or time (modification time
    /// only; fastest, misses changes that keep the mtime).
    #[arg(long, value_enum, value_name = "MODE", default_value_t = SnapshotMode::Full, alias = "snapshotMode")]
    pub snapshot_mode: SnapshotMode,

    /// Take one snapshot at the end of each stage instead of one per instruction.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub single_snapshot: bool,

    /// Path that is neither replaced by the image nor captured in layers, e.g. a mounted volume.
    /// Repeatable.
    #[arg(long, value_name = "PATH")]
    pub ignore_path: Vec<PathBuf>,

    /// Leave /var/run out of the image, as kaniko does.
    #[arg(
        long,
        alias = "whitelist-var-run",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "true",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub ignore_var_run: bool,

    /// Run --isolation=inplace even when no container is detected (no /.dockerenv,
    /// /run/.containerenv, $container, $KUBERNETES_SERVICE_HOST or container cgroup): the image
    /// is then unpacked over this machine's own /, deleting what is there. For disposable VMs
    /// and sandboxes only. No effect with --isolation=sandbox.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub force: bool,

    /// With --isolation=inplace: when the build ends (successful or not), remove what it
    /// unpacked into / (everything but the never-touched paths), so the container can build
    /// again. No effect with --isolation=sandbox, whose work directories are always removed.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub cleanup: bool,
}

#[derive(Debug, Clone, PartialEq, clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegistryArgs {
    /// Push to registries over plain HTTP.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub insecure: bool,

    /// Pull base images over plain HTTP.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub insecure_pull: bool,

    /// Registry reached over plain HTTP for pulls and pushes, e.g. `localhost:5000`. Repeatable.
    #[arg(long, value_name = "HOST")]
    pub insecure_registry: Vec<String>,

    /// Push without verifying registries' TLS certificates.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub skip_tls_verify: bool,

    /// Pull without verifying registries' TLS certificates.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub skip_tls_verify_pull: bool,

    /// Registry whose TLS certificate is not verified, for pulls and pushes. Repeatable.
    #[arg(long, value_name = "HOST")]
    pub skip_tls_verify_registry: Vec<String>,

    /// Extra CA certificate for one registry, as HOST=FILE, e.g.
    /// `my.registry:5000=/certs/ca.crt`. Repeatable.
    #[arg(long, value_name = "HOST=FILE")]
    pub registry_certificate: Vec<String>,

    /// Mirror tried before Docker Hub for its images, e.g. `mirror.gcr.io`. Repeatable; tried in
    /// order.
    #[arg(long, value_name = "HOST")]
    pub registry_mirror: Vec<String>,

    /// Extra attempts to push an image after a failed push; 0 means no retry.
    #[arg(long, value_name = "COUNT", default_value_t = 0)]
    pub push_retry: u32,

    /// Milliseconds before the first push retry; doubles on each further retry.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub push_retry_initial_delay: u64,

    /// Upper bound in milliseconds of the delay between push retries.
    #[arg(long, value_name = "MS", default_value_t = 30000)]
    pub push_retry_max_delay: u64,

    /// Extra attempts to download a base image after a failed download; 0 means no retry.
    #[arg(long, value_name = "COUNT", default_value_t = 0)]
    pub image_download_retry: u32,

    /// Docker config.json read when kiln starts and then removed, so that no RUN step can read
    /// the registry credentials; used instead of $DOCKER_CONFIG, ~/.docker and /kaniko/.docker.
    /// The operator's builder pods set it.
    #[arg(long, value_name = "FILE")]
    pub take_docker_config: Option<PathBuf>,

    /// Copy the docker config.json FROM to a new file TO (mode 0600), then exit without building:
    /// what the init container of the operator's builder pods runs (the builder image has no
    /// `cp`).
    #[arg(long, num_args = 2, value_names = ["FROM", "TO"])]
    pub copy_docker_config: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct K8sArgs {
    /// Namespace of the MultiArchBuild created by --driver=k8s. Default: the current kube
    /// context's namespace.
    #[arg(long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Repository a local --context is uploaded to (as an OCI artifact) for --driver=k8s.
    /// Default: the first destination's repository with /context appended.
    #[arg(long, value_name = "REPO")]
    pub context_repo: Option<String>,

    /// With --driver=k8s, exit once the MultiArchBuild is created instead of following it.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub detach: bool,

    /// BuildRequest (NAMESPACE/NAME) whose status receives this build's result; set by the
    /// operator in builder Jobs.
    #[arg(long, value_name = "NAMESPACE/NAME", env = BUILD_REQUEST_ENV)]
    pub build_request: Option<String>,
}

#[derive(Debug, Clone, PartialEq, clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoggingArgs {
    /// Log level; panic and fatal are the same as error.
    #[arg(short = 'v', long, value_enum, value_name = "LEVEL", default_value_t = Verbosity::Info)]
    pub verbosity: Verbosity,

    /// Log format on stderr: text (plain), color (with ANSI colours) or json (one object per
    /// line, RUN output and the final error included, each step line with its platform, stage
    /// and step).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Start each log line with a timestamp.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub log_timestamp: bool,

    /// Pull and push progress on stderr: tty draws a live bar per blob (bytes, rate), plain logs
    /// one line per blob pulled or pushed (its size and time), auto is tty when stderr is a
    /// terminal and the log is not json, plain otherwise.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = crate::progress::Progress::Auto)]
    pub progress: crate::progress::Progress,
}

/// kaniko's flags that kiln has no flag of its own for: each has kaniko's
/// meaning, or is accepted and ignored with a warning saying why (see
/// `super::kaniko`). Their spellings are kaniko's.
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct KanikoArgs {
    /// kaniko's build context from a bucket: `NAME` is `--context=gs://NAME`, a URL is the context
    /// (kiln reads no gs:// or s3:// context; download it and use tar://FILE).
    #[arg(short = 'b', long, value_name = "BUCKET")]
    pub bucket: Option<String>,

    /// For a git context, kaniko's clone options `branch=NAME[,single-branch=BOOL,
    /// recurse-submodules=BOOL,insecure-skip-tls=BOOL]`: the branch is the ref fetched when the
    /// URL has no `#ref`; the other options are ignored with a warning.
    #[arg(long, value_name = "OPTIONS")]
    pub git: Option<String>,

    /// Map a registry to mirrors tried before it for pulls, `REGISTRY=MIRROR[;REGISTRY=MIRROR]`,
    /// e.g. `index.docker.io=mirror.gcr.io`. Repeatable.
    #[arg(long, value_name = "REGISTRY=MIRROR")]
    pub registry_map: Vec<String>,

    /// Pull only from the --registry-mirror / --registry-map mirrors, never falling back to the
    /// image's own registry.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub skip_default_registry_fallback: bool,

    /// Push no layer to the cache repository (cached layers are still used).
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub no_push_cache: bool,

    /// Skip the check that every destination accepts pushes before the build starts.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub skip_push_permission_check: bool,

    /// Output media types, as kaniko's fork spells --oci-mode: oci or docker.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub image_format: Option<ImageFormat>,

    /// Ignored (kaniko's working directory; kiln keeps nothing there).
    #[arg(long, value_name = "DIR")]
    pub kaniko_dir: Option<PathBuf>,

    /// Ignored (kaniko's experimental RUN change detection; kiln's is --snapshot-mode).
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub use_new_run: bool,

    /// Ignored (kaniko's in-memory compression of cached layers; kiln's are files on disk).
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "true",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub compressed_caching: bool,

    /// A push of an existing tag that the registry refuses because the tag is immutable is not
    /// an error: the tag keeps its image, with a warning.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub push_ignore_immutable_tag_errors: bool,

    /// Ignored (kiln unpacks base images from verified local blobs; downloads are retried with
    /// --image-download-retry).
    #[arg(long, value_name = "COUNT", default_value_t = 0)]
    pub image_fs_extract_retry: u32,

    /// A TLS client certificate (mutual TLS) for one registry, as PEM files of the certificate and
    /// its private key, e.g. my.registry.url=/path/to/client.crt,/path/to/client.key; presented
    /// on every connection to that registry, its token server on the same host included.
    /// Repeatable.
    #[arg(long, value_name = "REGISTRY=CERT,KEY")]
    pub registry_client_cert: Vec<String>,

    /// Ignored (kaniko's metadata-only layers; kiln's image config records metadata).
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub force_build_metadata: bool,

    /// Credential helpers (docker-credential-NAME on PATH) asked, in order, for a registry the
    /// docker config has no credentials for. Repeatable or comma-separated.
    #[arg(long, value_name = "HELPER")]
    pub credential_helpers: Vec<String>,

    /// Ignored (the fork's unpacking of a fully cached build; kiln never needs it).
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub materialize: bool,

    /// Ignored: with --isolation=inplace kiln always empties / before unpacking a stage.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub pre_cleanup: bool,

    /// Ignored (the fork's restore of the context between stages; kiln's context is never
    /// changed by a build).
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = parse_bool,
    )]
    pub preserve_context: bool,
}

/// `--image-format`: the output media types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum ImageFormat {
    Oci,
    Docker,
}
