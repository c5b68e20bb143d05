//! Custom resources of kiln (group `kiln.dev`, version `v1alpha1`):
//! `MultiArchBuild` (what a user applies) and `BuildRequest` (one platform's
//! build), their shared build fields, status and condition types, and the
//! rendering of their CustomResourceDefinitions that `crdgen` commits.

pub mod buildrequest;
pub mod condition;
pub mod multiarchbuild;
pub mod phase;
pub mod platform;
pub mod render;
pub mod spec;

pub use buildrequest::{BuildRequest, BuildRequestSpec, BuildRequestStatus, Disruption, TagMode};
pub use condition::{Condition, ConditionStatus};
pub use multiarchbuild::{
    IndexStatus, MultiArchBuild, MultiArchBuildSpec, MultiArchBuildStatus, PlatformStatus,
};
pub use phase::{Phase, PlatformPhase};
pub use platform::platform_is_valid;
pub use render::{CrdFile, RenderError, render_crds};
pub use spec::{
    BuildSpec, CacheSpec, Compression, OciMode, OutputSpec, PushRetrySpec, SchedulingSpec,
    SecretRef,
};

/// API group of every kiln resource.
pub const GROUP: &str = "kiln.dev";
/// Served and stored version.
pub const VERSION: &str = "v1alpha1";
