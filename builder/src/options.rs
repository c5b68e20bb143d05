//! What the build engine consumes: the validated, typed form of a build
//! request. Nothing here knows about the command line (`cli/` builds these
//! from flags, and gives the enums their flag spellings); a `BuildOptions`
//! could as well come from a `BuildRequest` spec.

use std::collections::BTreeMap;
use std::ffi::OsStr;

pub use crate::work_root::{BUILDER_IMAGE_ENV, in_builder_image};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::image::{Compression, OciMode};
use crate::platform::Platform;
pub use crate::snapshot::SnapshotMode;

/// Where the platforms of a build are built (`--driver`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum Driver {
    #[default]
    Local,
    K8s,
    Ci,
}

/// How RUN executes code for a foreign architecture (`--emulation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum Emulation {
    /// The qemu-user interpreter binfmt_misc has registered, if any, with a
    /// warning; refused without one.
    #[default]
    Auto,
    /// Refused.
    None,
    /// The registered interpreter, which must be there.
    Qemu,
}

/// How RUN is isolated from the machine kiln runs on (`--isolation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Isolation {
    // The stage's root filesystem is a work directory RUN runs in, in a
    // sandbox (namespaces, pivot_root, capabilities, seccomp). Spelled
    // `sandbox`; `chroot`, its name before it was one, is still accepted.
    Chroot,
    // kaniko's model: the image is unpacked over the container's own `/`.
    Inplace,
}

impl Isolation {
    /// The default for a given value of [`BUILDER_IMAGE_ENV`]: in place
    /// inside the builder image (a throw-away container, as kaniko assumes),
    /// chroot anywhere else so the host is never modified.
    pub fn default_for(builder_image: Option<&OsStr>) -> Isolation {
        if in_builder_image(builder_image) {
            Isolation::Inplace
        } else {
            Isolation::Chroot
        }
    }
}

/// Everything one `kiln` invocation asks for, validated.
///
/// Build argument values may be secrets: do not log this struct.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildOptions {
    /// `--context` as given: a plain path, or `dir://`, `tar://`, `git://…#ref`,
    /// `oci://` URLs; fetching and interpreting it is the context module's job.
    pub context: String,
    /// `--context-sub-path`: the directory inside the fetched context that is
    /// the real context.
    pub context_sub_path: Option<String>,
    /// `--dockerfile` as given; see [`BuildOptions::dockerfile_path`].
    pub dockerfile: String,
    /// `--build-arg`; a bare `KEY` has already been read from the environment.
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub skip_unused_stages: bool,
    pub labels: BTreeMap<String, String>,
    /// `--secret`s: where each id's value comes from (read only when a
    /// RUN mounts it).
    pub secrets: Vec<crate::run::secret::SecretSource>,
    /// The target platforms in the order given; empty means the host's.
    pub platforms: Vec<Platform>,
    pub output: OutputOptions,
    pub multi_platform: MultiPlatformOptions,
    pub cache: CacheOptions,
    pub execution: ExecutionOptions,
    /// Registry access: TLS, mirrors, retries (the registry module's own type).
    pub registry: crate::registry::RegistryOptions,
    pub k8s: K8sOptions,
}

impl BuildOptions {
    /// Where the Dockerfile is once the context is a directory on disk
    /// (`context_dir`, with `--context-sub-path` applied). An absolute path
    /// is used as is. A relative one is looked up in the context first, then
    /// in the working directory (so `-f sub/Dockerfile` typed from a shell
    /// works as with `docker build`); when neither has it, the context path
    /// is returned so the error names where kaniko would have looked.
    pub fn dockerfile_path(&self, context_dir: &Path, exists: impl Fn(&Path) -> bool) -> PathBuf {
        let given = Path::new(&self.dockerfile);
        if given.is_absolute() {
            return given.to_path_buf();
        }
        let in_context = context_dir.join(given);
        if !exists(&in_context) && exists(given) {
            return given.to_path_buf();
        }
        in_context
    }
}

/// What is produced and where it goes.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputOptions {
    pub destinations: Vec<String>,
    pub no_push: bool,
    pub tar_path: Option<PathBuf>,
    pub oci_layout_path: Option<PathBuf>,
    pub digest_file: Option<PathBuf>,
    pub image_name_with_digest_file: Option<PathBuf>,
    pub image_name_tag_with_digest_file: Option<PathBuf>,
    pub reproducible: bool,
    pub compression: Compression,
    /// `None` is the compressor's own default level.
    pub compression_level: Option<i32>,
    pub oci_mode: OciMode,
    /// Manifest annotations (`--annotation`).
    pub annotations: BTreeMap<String, String>,
    /// kaniko's `--skip-push-permission-check`.
    pub skip_push_permission_check: bool,
    /// `--push-ignore-immutable-tag-errors`.
    pub push_ignore_immutable_tag_errors: bool,
    /// `--provenance`: attach SLSA provenance to each pushed platform image.
    pub provenance: Option<crate::attest::ProvenanceMode>,
    /// `--sbom`: attach an SPDX SBOM to each pushed platform image.
    pub sbom: bool,
    /// `--sign-key`: a cosign private key to sign what is pushed with.
    pub sign_key: Option<SignKey>,
    /// `--attest-layout`: whether the published index also lists the
    /// documents as BuildKit does.
    pub attest_layout: crate::attest::AttestLayout,
}

/// Where `--sign-key` is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignKey {
    /// A cosign private key file, opened with `COSIGN_PASSWORD`.
    File(PathBuf),
    /// `k8s://<name>`: a Secret of the build's namespace holding
    /// `cosign.key` and `cosign.password`, which the operator reads
    /// (`--driver=k8s`).
    Secret(String),
}

/// How several platforms are built and published together.
#[derive(Clone, Debug, PartialEq)]
pub struct MultiPlatformOptions {
    pub driver: Driver,
    pub publish_index: bool,
    pub legacy_manifest_list: bool,
    pub index_annotations: BTreeMap<String, String>,
    pub digests_from: Option<PathBuf>,
    pub require_native_nodes: bool,
    pub emulation: Emulation,
    pub platform_tags: bool,
    pub push_by_digest: bool,
    pub dry_run: bool,
}

/// Layer cache.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheOptions {
    pub enabled: bool,
    pub repo: Option<String>,
    pub ttl: Duration,
    /// `--cache-dir`: base image and cached layer blobs kept on disk.
    pub dir: PathBuf,
    /// Whether `--cache-dir` was given a value other than its default; the
    /// default `/cache` is used only with `--cache` and when it exists.
    pub dir_given: bool,
    pub copy_layers: bool,
    pub run_layers: bool,
    /// Appended to the cache repository, with `${ARCH}`, `${OS}` and
    /// `${VARIANT}` standing for the platform's (e.g. `-${ARCH}`).
    pub arch_repo_suffix: Option<String>,
    /// Whether new layers are pushed to the cache repository (kaniko's
    /// `--no-push-cache` turns it off).
    pub push: bool,
}

/// How instructions run and how their results are captured.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecutionOptions {
    pub isolation: Isolation,
    pub snapshot_mode: SnapshotMode,
    pub single_snapshot: bool,
    pub ignore_paths: Vec<PathBuf>,
    pub ignore_var_run: bool,
    pub force: bool,
    pub cleanup: bool,
}

/// The Kubernetes driver, and a builder pod reporting to its `BuildRequest`.
#[derive(Clone, Debug, PartialEq)]
pub struct K8sOptions {
    pub namespace: Option<String>,
    pub context_repo: Option<String>,
    pub detach: bool,
    pub build_request: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_image_needs_an_explicit_true() {
        let table = [
            (None, Isolation::Chroot),
            (Some(""), Isolation::Chroot),
            (Some("0"), Isolation::Chroot),
            (Some("false"), Isolation::Chroot),
            (Some("yes"), Isolation::Chroot),
            (Some("1"), Isolation::Inplace),
            (Some("true"), Isolation::Inplace),
        ];
        for (value, want) in table {
            assert_eq!(
                Isolation::default_for(value.map(OsStr::new)),
                want,
                "{value:?}"
            );
        }
    }

    #[test]
    fn dockerfile_is_found_in_context_then_cwd() {
        let context = Path::new("/ctx");
        // (--dockerfile, files that exist, expected path)
        let table: [(&str, &[&str], &str); 6] = [
            (
                "Dockerfile",
                &["/ctx/Dockerfile", "Dockerfile"],
                "/ctx/Dockerfile",
            ),
            ("Dockerfile", &["Dockerfile"], "Dockerfile"),
            ("Dockerfile", &[], "/ctx/Dockerfile"),
            (
                "docker/Dockerfile.prod",
                &["docker/Dockerfile.prod"],
                "docker/Dockerfile.prod",
            ),
            (
                "docker/Dockerfile.prod",
                &["/ctx/docker/Dockerfile.prod"],
                "/ctx/docker/Dockerfile.prod",
            ),
            ("/elsewhere/Dockerfile", &[], "/elsewhere/Dockerfile"),
        ];
        for (dockerfile, existing, want) in table {
            let mut options = crate::cli::validate::tests::options_from(&["kiln", "--no-push"]);
            options.dockerfile = dockerfile.to_string();
            let got =
                options.dockerfile_path(context, |p| existing.iter().any(|e| Path::new(e) == p));
            assert_eq!(got, PathBuf::from(want), "{dockerfile} with {existing:?}");
        }
    }
}
