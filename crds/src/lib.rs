//! Custom resources of kiln (group `kiln.dev`): `MultiArchBuild` and
//! `BuildRequest`. Filled by the operator issue; the crate exists so the
//! workspace has its final shape from the start.

/// API group of every kiln resource.
pub const GROUP: &str = "kiln.dev";
/// Served and stored version.
pub const VERSION: &str = "v1alpha1";
