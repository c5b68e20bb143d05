//! kiln-operator: turns MultiArchBuilds into one native builder Job per
//! platform and publishes the image index of their results.
//!
//! Two controllers in the shape of kube-rs' controller-rs: the decisions
//! are pure functions (`*/decide.rs`, table-tested), the reconcilers
//! around them (`*/controller.rs`) only read the cluster, act and apply
//! status under the `kiln-operator` field manager.

pub mod build_request;
pub mod config;
pub mod context;
pub mod http;
pub mod metrics;
pub mod multi_arch_build;
pub mod names;
pub mod nodes;
pub mod requeue;
mod run;
#[cfg(test)]
mod test_objects;
pub mod user_namespaces;

pub use run::run;
