//! Stages built once for every target platform of one build.
//!
//! A stage on the build's own platform (`FROM --platform=$BUILDPLATFORM`)
//! that sees nothing of the target platform is the same for all of them
//! ([`crate::dockerfile::Plan::platform_independent_stages`]): a
//! cross-compiling toolchain, a code generator. Each platform's build asks
//! [`SharedStages`] for it; the first builds it, the others wait and take
//! its image (config and layers, its layers in the session's blob store)
//! and unpack its files from those layers if they read them, instead of
//! running its steps again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::state::StageImage;
use crate::platform::Platform;

/// A stage as one platform's build left it, for the others.
pub struct SharedStage {
    /// The stage's image without its root filesystem.
    pub image: StageImage,
    /// The images its build pulled, as resolved (the provenance's
    /// dependencies, for every platform that uses the stage).
    pub bases: Vec<crate::attest::ResolvedBase>,
    /// Whose build made it, for the log.
    pub built_for: Platform,
}

/// The shared stages of one session, by key (stage, its platform, its
/// expanded base).
#[derive(Default)]
pub struct SharedStages {
    cells: Mutex<HashMap<String, Arc<OnceCell<SharedStage>>>>,
}

impl SharedStages {
    /// The cell of `key`: empty until a platform's build of it succeeds.
    pub fn cell(&self, key: String) -> Arc<OnceCell<SharedStage>> {
        let mut cells = match self.cells.lock() {
            Ok(cells) => cells,
            Err(poisoned) => poisoned.into_inner(),
        };
        Arc::clone(cells.entry(key).or_default())
    }
}
