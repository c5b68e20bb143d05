//! `BuildRequest`: one platform's build. Created by the operator for each
//! platform of a MultiArchBuild (with an owner reference), or by hand for a
//! single-architecture build.

use crate::condition::Condition;
use crate::phase::PlatformPhase;
use crate::platform::{
    PLATFORM_IMMUTABLE_MESSAGE, PLATFORM_IMMUTABLE_RULE, PLATFORM_MAX_LENGTH,
    PLATFORM_MESSAGE_EXPRESSION, PLATFORM_PATTERN, PLATFORM_RULE,
};
use crate::spec::BuildSpec;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired state of a BuildRequest: the build fields and one platform.
// clippy reads the repeated `type_ = "string"` of the printer columns as
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "kiln.dev",
    version = "v1alpha1",
    kind = "BuildRequest",
    plural = "buildrequests",
    shortname = "br",
    category = "kiln",
    namespaced,
    status = "BuildRequestStatus",
    derive = "PartialEq",
    doc = "One platform's image build, run as a builder Job on a node of that platform.",
    selectable = ".spec.platform",
    printcolumn(name = "Platform", type_ = "string", json_path = ".spec.platform"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Digest", type_ = "string", json_path = ".status.digest"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BuildRequestSpec {
    /// Platform to build, `os/arch[/variant]`. Immutable.
    #[schemars(
        length(max = PLATFORM_MAX_LENGTH),
        regex(pattern = PLATFORM_PATTERN),
        extend("x-kubernetes-validations" = [
            {
                "rule": PLATFORM_RULE,
                "messageExpression": PLATFORM_MESSAGE_EXPRESSION,
                "reason": "FieldValueInvalid",
            },
            {
                "rule": PLATFORM_IMMUTABLE_RULE,
                "message": PLATFORM_IMMUTABLE_MESSAGE,
                "reason": "FieldValueForbidden",
            },
        ])
    )]
    pub platform: String,
    /// `metadata.generation` of the owning MultiArchBuild this request was
    /// made for, so results of an older generation are never mixed into a
    /// newer index. `0` for a BuildRequest created by hand.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub build_generation: i64,
    /// Which tags the image is pushed under: the destinations' own
    /// (a BuildRequest made by hand), none (a platform of a MultiArchBuild
    /// whose index carries the tags), or `<tag>-<os>-<arch>` (a
    /// MultiArchBuild without an index).
    #[serde(default, skip_serializing_if = "TagMode::is_default")]
    pub tags: TagMode,
    /// What to build and where to push it.
    #[serde(flatten)]
    pub build: BuildSpec,
}

/// Tags a BuildRequest's image is pushed under.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum TagMode {
    /// The destinations' tags, as a single-platform `kiln` build does.
    #[default]
    Destinations,
    /// No tag: pushed by digest only (`--push-by-digest`).
    None,
    /// `<tag>-<os>-<arch>[-<variant>]` (`--platform-tags`).
    PlatformSuffixed,
}

impl TagMode {
    fn is_default(&self) -> bool {
        *self == TagMode::Destinations
    }
}

/// Observed state of a BuildRequest. The operator writes `phase`,
/// `conditions`, `jobName`, `podName`, `nodeName` and `attempts`; the
/// builder pod writes the result fields under its own field manager.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BuildRequestStatus {
    /// `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Running, Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PlatformPhase>,
    /// kstatus conditions (`Ready`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend(
        "x-kubernetes-list-type" = "map",
        "x-kubernetes-list-map-keys" = ["type"],
    ))]
    pub conditions: Vec<Condition>,
    /// Builder Job of the current attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// Pod of that Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// Node the pod ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Attempts started so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,
    /// Digest of the pushed image manifest (reported by the builder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// `<destination>@<digest>` (reported by the builder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_reference: Option<String>,
    /// Media type of the manifest (reported by the builder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Size in bytes of the manifest (reported by the builder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// Layers taken from the cache (reported by the builder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_hits: Option<i64>,
    /// Layers built because the cache had none (reported by the builder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_misses: Option<i64>,
    /// Wall time of the build (reported by the builder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    /// Failure or progress detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Attempts abandoned or ended by the node rather than by the build
    /// (node NotReady or gone, eviction, node shutdown, preemption), one
    /// entry per attempt. They do not count against `spec.retries`; the
    /// nodes named here are avoided by later attempts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend(
        "x-kubernetes-list-type" = "map",
        "x-kubernetes-list-map-keys" = ["attempt"],
    ))]
    pub disruptions: Vec<Disruption>,
}

/// An attempt that the node, not the build, ended.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Disruption {
    /// The attempt (1-based).
    pub attempt: i32,
    /// The node its pod was on, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// CamelCase cause: `NodeNotReady`, `NodeGone`, `Evicted`, `NodeLost`,
    /// `Shutdown`, `Preempted`, or the pod's `DisruptionTarget` reason.
    pub reason: String,
    /// What the node or the kubelet said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Whether later attempts avoid `node` (node-anti-affinity `NotIn`).
    #[serde(default)]
    pub node_avoided: bool,
}
