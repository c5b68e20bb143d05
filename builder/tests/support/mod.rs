//! Shared support for kiln's integration tests: a real registry on
//! loopback, a fault-injecting proxy, and hand-built fixture images.
//!
//! Use it from a test file with `mod support;`:
//!
//! ```ignore
//! mod support;
//! use support::{FaultProxy, TestRegistry, fixtures};
//!
//! #[tokio::test]
//! async fn pulls_busybox() {
//!     let registry = TestRegistry::start();
//!     let images = fixtures::push_busybox_index(registry.host()).await;
//!     // images.index == "127.0.0.1:PORT/busybox:latest"
//!     let registry = kiln_builder::registry::Registry::new(support::isolated_options()).unwrap();
//!     let base = registry.pull_image(&images.index, &"linux/arm64".parse().unwrap()).await.unwrap();
//! }
//! ```
//!
//! Registries listen on 127.0.0.1 with plain HTTP; kiln treats loopback
//! registries as plain HTTP without flags. Nothing here touches process-wide
//! state (environment variables, current directory), so tests in one binary
//! may run in parallel.

// Each test binary uses only part of this module, and test support fails
// by panicking with a message.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod fixtures;
pub mod kiln;
pub mod proxy;
pub mod registry;
pub mod tools;

#[allow(unused_imports)]
pub use proxy::FaultProxy;
#[allow(unused_imports)]
pub use registry::{TestRegistry, isolated_options, write_docker_config};
