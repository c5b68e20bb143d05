//! `MultiArchBuild`: what a user applies. The operator turns it into one
//! BuildRequest per platform and publishes the index of their images.

use crate::condition::Condition;
use crate::phase::{Phase, PlatformPhase};
use crate::platform::{
    PLATFORM_MAX_LENGTH, PLATFORM_PATTERN, PLATFORMS_MAX_ITEMS, PLATFORMS_MESSAGE_EXPRESSION,
    PLATFORMS_RULE, PLATFORMS_UNIQUE_MESSAGE_EXPRESSION, PLATFORMS_UNIQUE_RULE,
};
use crate::spec::BuildSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired state of a MultiArchBuild: one image built natively per
/// platform, published as one index.
// clippy reads the repeated `type_ = "string"` of the printer columns as
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "kiln.dev",
    version = "v1alpha1",
    kind = "MultiArchBuild",
    plural = "multiarchbuilds",
    shortname = "mab",
    category = "kiln",
    namespaced,
    status = "MultiArchBuildStatus",
    derive = "PartialEq",
    doc = "A multi-architecture image build: one native build per platform, published as one image index.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Platforms", type_ = "string", json_path = ".spec.platforms"),
    printcolumn(name = "Digest", type_ = "string", json_path = ".status.index.digest"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MultiArchBuildSpec {
    /// Platforms to build, `os/arch[/variant]` (`linux/amd64`,
    /// `linux/arm64/v8`); the index lists them in this order.
    #[schemars(
        length(min = 1, max = PLATFORMS_MAX_ITEMS),
        inner(length(max = PLATFORM_MAX_LENGTH), regex(pattern = PLATFORM_PATTERN)),
        extend("x-kubernetes-validations" = [
            {
                "rule": PLATFORMS_RULE,
                "messageExpression": PLATFORMS_MESSAGE_EXPRESSION,
                "reason": "FieldValueInvalid",
            },
            {
                "rule": PLATFORMS_UNIQUE_RULE,
                "messageExpression": PLATFORMS_UNIQUE_MESSAGE_EXPRESSION,
                "reason": "FieldValueDuplicate",
            },
        ])
    )]
    pub platforms: Vec<String>,
    /// What to build and where to push it.
    #[serde(flatten)]
    pub build: BuildSpec,
}

/// Observed state of a MultiArchBuild, written by the operator.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MultiArchBuildStatus {
    /// `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Building, Publishing, Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// `Ready`, `NativeNodesAvailable`, `PlatformsBuilt`, `IndexPublished`,
    /// and kstatus' `Reconciling` (while building or publishing) and
    /// `Stalled` (failed until the spec changes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend(
        "x-kubernetes-list-type" = "map",
        "x-kubernetes-list-map-keys" = ["type"],
    ))]
    pub conditions: Vec<Condition>,
    /// One entry per platform of the spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend(
        "x-kubernetes-list-type" = "map",
        "x-kubernetes-list-map-keys" = ["platform"],
    ))]
    pub platforms: Vec<PlatformStatus>,
    /// The published index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexStatus>,
}

/// Progress of one platform of a MultiArchBuild.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlatformStatus {
    /// The platform, as in the spec.
    pub platform: String,
    /// Name of the BuildRequest building it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_request: Option<String>,
    /// Pending, Running, Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PlatformPhase>,
    /// Digest of the platform's image manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Attempts started so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,
    /// Why the platform is waiting or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the first attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the platform succeeded or finally failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
}

impl PlatformStatus {
    /// An entry with only its key set.
    pub fn new(platform: impl Into<String>) -> Self {
        Self {
            platform: platform.into(),
            build_request: None,
            phase: None,
            digest: None,
            attempts: None,
            message: None,
            started_at: None,
            completed_at: None,
        }
    }
}

/// The image index (or Docker manifest list) pushed to the destinations.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IndexStatus {
    /// `sha256:…` of the index bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Media type of the index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// `<first destination>@<digest>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}
