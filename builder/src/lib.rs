//! kiln's builder: Dockerfile → OCI image, without a daemon or privileges.
//!
//! The modules follow the data: a build `context` is fetched, the
//! `dockerfile` is parsed and planned, base images come from the `registry`,
//! instructions change a stage's filesystem (`fs`, `run`), `image` turns the
//! result into layers, config and manifests (and `sbom` lists the packages
//! in them), and `build` drives all of it.
//! `cli` maps kaniko's flags onto that; `drivers` coordinates platforms;
//! `work_root` says where kiln's own temporary files go.

pub mod attest;
pub mod build;
pub mod cache;
pub mod cli;
pub mod context;
pub mod dockerfile;
pub mod drivers;
pub mod fs;
pub mod image;
pub mod options;
pub mod platform;
pub mod progress;
pub mod registry;
pub mod run;
pub mod sbom;
pub mod snapshot;
pub mod tls;
pub mod work_root;
