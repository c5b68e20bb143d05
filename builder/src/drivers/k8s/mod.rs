//! Kubernetes: a builder pod reporting to its BuildRequest (`report`).
//! The `k8s` driver itself (creating and following a MultiArchBuild from
//! the CLI) lands here too.

pub mod report;
