//! The build fields shared by `MultiArchBuild.spec` and `BuildRequest.spec`
//! (flattened into both), mirroring the `kiln` flags they become.

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use kube::core::Duration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// OpenAPI `pattern` of a duration (Go `time.ParseDuration` syntax without
/// sign): `30m`, `1h30m`, `168h`, `1.5s`, `500ms`. Microseconds are `us`,
/// `µs` (micro sign) or `μs` (Greek mu), as in Go.
pub const DURATION_PATTERN: &str = "^([0-9]+(\\.[0-9]+)?(ns|us|\u{b5}s|\u{3bc}s|ms|s|m|h))+$";

/// Default `dockerfile`.
pub const DEFAULT_DOCKERFILE: &str = "Dockerfile";
/// Default `retries` (per platform).
pub const DEFAULT_RETRIES: i32 = 2;

/// CEL rule on `output`: Docker schema 2 has no zstd layers.
pub const OUTPUT_DOCKER_ZSTD_RULE: &str = "!(has(self.ociMode) && has(self.compression) && self.ociMode == 'docker' && self.compression == 'zstd')";
/// Message of [`OUTPUT_DOCKER_ZSTD_RULE`].
pub const OUTPUT_DOCKER_ZSTD_MESSAGE: &str =
    "compression zstd needs OCI media types: set ociMode to oci or auto, or compression to gzip";

/// The CEL rule refusing `attestLayout: buildkit` where no OCI index is
/// published (the CLI refuses the same flags).
pub const OUTPUT_ATTEST_LAYOUT_RULE: &str = "!(has(self.attestLayout) && self.attestLayout == 'buildkit' && ((has(self.publishIndex) && !self.publishIndex) || (has(self.legacyManifestList) && self.legacyManifestList) || (has(self.ociMode) && self.ociMode == 'docker')))";
/// Message of [`OUTPUT_ATTEST_LAYOUT_RULE`].
pub const OUTPUT_ATTEST_LAYOUT_MESSAGE: &str = "attestLayout buildkit lists the attestations in an OCI image index: it needs publishIndex true, ociMode oci or auto, and no legacyManifestList";

fn default_dockerfile() -> String {
    DEFAULT_DOCKERFILE.to_owned()
}

fn default_retries() -> i32 {
    DEFAULT_RETRIES
}

fn default_true() -> bool {
    true
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// What to build and where to push it: everything but the platform(s).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BuildSpec {
    /// Build context: `dir://`, `tar://`, `git://…#ref`, `oci://` or a
    /// registry reference to a context artifact (`--context`).
    #[schemars(length(min = 1))]
    pub context: String,
    /// Sub-directory of the context to build from (`--context-sub-path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_sub_path: Option<String>,
    /// Path of the Dockerfile inside the context (`--dockerfile`).
    #[serde(default = "default_dockerfile")]
    #[schemars(length(min = 1))]
    pub dockerfile: String,
    /// Image references to push to (`--destination`, one per entry). The
    /// index of a MultiArchBuild is pushed to every one of them.
    #[schemars(length(min = 1), inner(length(min = 1)))]
    pub destinations: Vec<String>,
    /// `--build-arg` values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub build_args: BTreeMap<String, String>,
    /// Stage to build (`--target`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Image labels (`--label`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Layer cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheSpec>,
    /// Media types, compression and index publishing.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub output: OutputSpec,
    /// Where builder pods run.
    #[serde(default)]
    #[schemars(extend("default" = {}))]
    pub scheduling: SchedulingSpec,
    /// Secret of type `kubernetes.io/dockerconfigjson` mounted as the
    /// builder's docker config, for pulls and pushes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_secret_ref: Option<SecretRef>,
    /// How many times a failed platform build is retried before the build
    /// fails.
    #[serde(default = "default_retries")]
    #[schemars(range(min = 0))]
    pub retries: i32,
    /// Deadline of one build attempt (the Job's `activeDeadlineSeconds`),
    /// e.g. `30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub timeout: Option<Duration>,
    /// Retries of registry pushes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_retry: Option<PushRetrySpec>,
}

/// Layer cache (`--cache`, `--cache-repo`, `--cache-ttl`,
/// `--arch-cache-repo-suffix`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CacheSpec {
    /// Use and fill the layer cache.
    #[serde(default, skip_serializing_if = "is_false")]
    pub enabled: bool,
    /// Repository of cache images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// How long a cached layer stays valid, e.g. `168h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub ttl: Option<Duration>,
    /// Suffix appended to `repo` per architecture, e.g. `-${ARCH}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch_repo_suffix: Option<String>,
}

/// Media types of what is pushed (`--oci-mode`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OciMode {
    /// OCI manifests, configs and index.
    Oci,
    /// Docker schema 2 manifests and a manifest list.
    Docker,
    /// OCI, and Docker where a registry rejects OCI.
    #[default]
    Auto,
}

impl OciMode {
    /// The wire and flag form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oci => "oci",
            Self::Docker => "docker",
            Self::Auto => "auto",
        }
    }
}

impl fmt::Display for OciMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Layer compression (`--compression`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
}

impl Compression {
    /// The wire and flag form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// SLSA provenance attached to each platform image (`--provenance`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProvenanceMode {
    /// Base images, Dockerfile and context digests, target, platform,
    /// builder and times.
    Min,
    /// `min` plus the build arguments' values (not of names that look like
    /// secrets).
    Max,
}

impl ProvenanceMode {
    /// The wire and flag form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Min => "min",
            Self::Max => "max",
        }
    }
}

/// What is pushed and how (`--oci-mode`, `--compression`,
/// `--compression-level`, `--publish-index`, `--legacy-manifest-list`,
/// `--index-annotations`, `--reproducible`,
/// `--push-ignore-immutable-tag-errors`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": OUTPUT_DOCKER_ZSTD_RULE,
    "message": OUTPUT_DOCKER_ZSTD_MESSAGE,
    "reason": "FieldValueInvalid",
}, {
    "rule": OUTPUT_ATTEST_LAYOUT_RULE,
    "message": OUTPUT_ATTEST_LAYOUT_MESSAGE,
    "reason": "FieldValueInvalid",
}]))]
pub struct OutputSpec {
    /// `oci`, `docker` or `auto`.
    #[serde(default)]
    pub oci_mode: OciMode,
    /// `gzip` or `zstd` (zstd needs OCI media types).
    #[serde(default)]
    pub compression: Compression,
    /// Compression level of the chosen algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression_level: Option<i32>,
    /// Publish an image index of all platforms to every destination.
    #[serde(default = "default_true")]
    pub publish_index: bool,
    /// Publish a Docker manifest list instead of an OCI index. Overrides
    /// `ociMode`: a manifest list can only list Docker manifests, so every
    /// platform is built with Docker media types (`--oci-mode=docker`)
    /// whatever `ociMode` says.
    #[serde(default, skip_serializing_if = "is_false")]
    pub legacy_manifest_list: bool,
    /// Annotations of the published index.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub index_annotations: BTreeMap<String, String>,
    /// Clamp timestamps for reproducible layers and configs.
    #[serde(default, skip_serializing_if = "is_false")]
    pub reproducible: bool,
    /// A push to an existing tag that the registry refuses because its
    /// tags are immutable is not an error (kaniko's
    /// `--push-ignore-immutable-tag-errors`): the tag keeps its image,
    /// with a warning. Applies to every platform's builder and to the
    /// index the operator publishes.
    #[serde(default, skip_serializing_if = "is_false")]
    pub push_ignore_immutable_tag_errors: bool,
    /// Attach SLSA provenance v1 to each platform image as an OCI referrer
    /// (`min` or `max`); none when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<ProvenanceMode>,
    /// Attach an SPDX 2.3 SBOM to each platform image as an OCI referrer.
    #[serde(default, skip_serializing_if = "is_false")]
    pub sbom: bool,
    /// Sign the published index and every platform image in cosign's
    /// format; the operator signs, builder pods never see the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<SigningSpec>,
    /// Where the provenance and SBOM are listed: `referrers` (OCI 1.1
    /// referrers of each platform image only) or `buildkit` (also as
    /// BuildKit's `unknown/unknown` attestation manifests in the index the
    /// operator publishes).
    #[serde(default, skip_serializing_if = "is_default")]
    pub attest_layout: AttestLayout,
}

/// `--attest-layout`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AttestLayout {
    #[default]
    Referrers,
    Buildkit,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// A cosign key pair in a Secret of the build's namespace, with the keys
/// `cosign.key` and `cosign.password`, as `cosign generate-key-pair
/// k8s://<namespace>/<name>` creates it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SigningSpec {
    pub key_secret_ref: SecretRef,
}

impl Default for OutputSpec {
    fn default() -> Self {
        Self {
            oci_mode: OciMode::default(),
            compression: Compression::default(),
            compression_level: None,
            publish_index: true,
            legacy_manifest_list: false,
            index_annotations: BTreeMap::new(),
            reproducible: false,
            push_ignore_immutable_tag_errors: false,
            provenance: None,
            sbom: false,
            signing: None,
            attest_layout: AttestLayout::Referrers,
        }
    }
}

/// Placement of builder pods.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SchedulingSpec {
    /// Build each platform only on nodes of its own architecture; a platform
    /// without such nodes is not started (`NativeNodesAvailable=False`).
    #[serde(default = "default_true")]
    pub require_native_nodes: bool,
    /// Extra node selector, merged with `kubernetes.io/os` and
    /// `kubernetes.io/arch` of the platform.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of builder pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Resources of the builder container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Service account of builder pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Run builder pods in a user namespace of their own (`hostUsers:
    /// false`), so that root in a builder is not root on the node: `auto`
    /// when every node the pod may run on supports it (containerd 2.0 or
    /// later, Linux 6.3 or later, kubelet 1.33 or later), `required` to
    /// refuse to build otherwise, `disabled` never.
    #[serde(default, skip_serializing_if = "UserNamespaces::is_auto")]
    pub user_namespaces: UserNamespaces,
}

/// `scheduling.userNamespaces`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum UserNamespaces {
    /// A user namespace when the cluster supports it, host users otherwise.
    #[default]
    Auto,
    /// A user namespace, or no build: the request waits, saying why.
    Required,
    /// Host users: root in a builder is root on the node.
    Disabled,
}

impl UserNamespaces {
    fn is_auto(&self) -> bool {
        *self == UserNamespaces::Auto
    }
}

impl Default for SchedulingSpec {
    fn default() -> Self {
        Self {
            require_native_nodes: true,
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            resources: None,
            service_account_name: None,
            user_namespaces: UserNamespaces::Auto,
        }
    }
}

/// A Secret in the resource's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// Registry push retries (`--push-retry`, `--push-retry-initial-delay`,
/// `--push-retry-max-delay`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PushRetrySpec {
    /// Retries after the first attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub count: Option<i32>,
    /// Delay before the first retry, e.g. `1s`; doubled per retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub initial_delay: Option<Duration>,
    /// Longest delay between retries, e.g. `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub max_delay: Option<Duration>,
}
