//! Registry access: base images pulled for a platform, blobs and manifests
//! fetched and pushed, credentials from docker's config.json, kaniko's
//! TLS / plain-HTTP / mirror flags, and retries with backoff.
//!
//! One [`Registry`] serves a whole build (and the operator's publishing);
//! it keeps one HTTP client per registry and direction (kaniko's TLS flags
//! and `--registry-client-cert` differ by registry and direction), so
//! connections and tokens are reused. The distribution protocol is kiln's
//! own (`distribution`), so every request, token requests included, leaves
//! through those clients.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kiln_builder::registry::RegistryError> {
//! use kiln_builder::platform::Platform;
//! use kiln_builder::registry::{Access, Registry, RegistryOptions};
//!
//! let registry = Registry::new(RegistryOptions::default())?;
//! let base = registry.pull_image("alpine:3.20", &"linux/arm64".parse().unwrap()).await?;
//! for layer in base.manifest.layers() {
//!     let dest = std::path::Path::new("/tmp").join(layer.digest().to_string());
//!     registry.fetch_blob_to_file(&base.source, layer, &dest, Access::Pull).await?;
//! }
//! # Ok(()) }
//! ```

mod auth;
mod client;
mod distribution;
mod error;
pub mod names;
/// Public for the fuzz targets (`fuzz/fuzz_targets/reference.rs`).
pub mod reference;
pub(crate) use error::error_chain;
mod options;
mod retry;
/// Public for the fuzz targets (`fuzz/fuzz_targets/manifest.rs`): the pure
/// half of pulling, what a registry's manifest bytes are taken to mean.
pub mod select;

pub use auth::{
    TakenDockerConfig, copy_docker_config, install_taken_docker_config, take_docker_config,
};
pub use client::{PulledImage, PushedManifest, Registry, parse_reference};
/// Public for the fuzz targets (`fuzz/fuzz_targets/challenge.rs`): what a
/// registry's `WWW-Authenticate` header and its token server's answer are
/// taken to mean.
pub use distribution::challenge;
pub use error::RegistryError;
pub use oci_spec::distribution::Reference;
pub use options::{Access, ClientCertificate, RegistryOptions};
pub use retry::RetryPolicy;
