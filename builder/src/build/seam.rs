//! Where the stage executor reaches out of the process: the registry (base
//! images, [`BaseImages`]; the layer cache, [`StepCache`]) and the kernel
//! (a RUN command, [`CommandRunner`]). Each is a narrow trait, so the
//! executor's logic — which key a step gets, what a hit restores, what
//! runs — is unit-tested with in-memory fakes, without root and without a
//! network (youki's `Syscall` seam). The build uses [`RegistryBases`],
//! [`PlatformCache`] and [`Kernel`]; layers named by a pulled image or a
//! cache hit are read through the blob store, which has them once fetched.

use std::path::Path;

use futures::future::BoxFuture;

use super::BuildError;
use super::base_cache::pull_base_image;
use crate::cache::{CachedStep, PlatformCache, StepToStore};
use crate::image::BlobStore;
use crate::options::Isolation;
use crate::platform::Platform;
use crate::registry::{PulledImage, Registry};
use crate::run::{RunError, RunOutput, RunSpec, run_in_chroot, run_in_place};

/// Where base images come from: `FROM`, `COPY --from` and
/// `RUN --mount=from=` naming an image.
pub trait BaseImages: Send + Sync {
    /// `reference` resolved for `platform`: its manifest and config.
    fn pull<'a>(
        &'a self,
        reference: &'a str,
        platform: &'a Platform,
    ) -> BoxFuture<'a, Result<PulledImage, BuildError>>;

    /// The images pulled so far, as resolved (the provenance's
    /// dependencies); sources that do not record them have none.
    fn resolved(&self) -> Vec<crate::attest::ResolvedBase> {
        Vec::new()
    }

    /// Records images another platform's build resolved for a stage both
    /// share.
    fn add_resolved(&self, _bases: &[crate::attest::ResolvedBase]) {}
}

/// The real source: the registry, through the bases `--cache-dir` keeps.
pub struct RegistryBases<'a> {
    pub registry: &'a Registry,
    /// `--cache-dir`'s store.
    pub kept: Option<&'a BlobStore>,
    /// Every image pulled, as resolved: the provenance's dependencies.
    pub resolved: std::sync::Mutex<Vec<crate::attest::ResolvedBase>>,
}

impl BaseImages for RegistryBases<'_> {
    /// The images pulled so far, each once, in the order first pulled.
    fn resolved(&self) -> Vec<crate::attest::ResolvedBase> {
        self.resolved
            .lock()
            .map(|resolved| resolved.clone())
            .unwrap_or_default()
    }

    fn add_resolved(&self, bases: &[crate::attest::ResolvedBase]) {
        if let Ok(mut resolved) = self.resolved.lock() {
            for base in bases {
                if !resolved.contains(base) {
                    resolved.push(base.clone());
                }
            }
        }
    }

    fn pull<'a>(
        &'a self,
        reference: &'a str,
        platform: &'a Platform,
    ) -> BoxFuture<'a, Result<PulledImage, BuildError>> {
        Box::pin(async move {
            let pulled = pull_base_image(self.registry, self.kept, reference, platform).await?;
            let base = crate::attest::ResolvedBase {
                reference: reference.to_string(),
                digest: pulled.manifest_digest.clone(),
            };
            if let Ok(mut resolved) = self.resolved.lock()
                && !resolved.contains(&base)
            {
                resolved.push(base);
            }
            Ok(pulled)
        })
    }
}

/// Which of the cache's settings a step's layer falls under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerClass {
    /// RUN and WORKDIR: `--cache-run-layers`.
    Run,
    /// COPY and ADD: `--cache-copy-layers`.
    Copy,
}

/// The layer cache as the steps of one platform's build see it.
pub trait StepCache: Send + Sync {
    /// Whether layers of `class` are looked up and stored.
    fn caches(&self, class: LayerClass) -> bool;

    /// The cached result of the step with `key`, if any (`what` names the
    /// step in the log). Never an error: an unreadable cache is a miss.
    fn lookup<'a>(
        &'a self,
        key: &'a str,
        platform: &'a Platform,
        what: &'a str,
    ) -> BoxFuture<'a, Option<CachedStep>>;

    /// Keeps a missed step's result for later builds.
    fn store(&self, step: StepToStore);
}

impl StepCache for PlatformCache {
    fn caches(&self, class: LayerClass) -> bool {
        match class {
            LayerClass::Run => self.run_layers(),
            LayerClass::Copy => self.copy_layers(),
        }
    }

    fn lookup<'a>(
        &'a self,
        key: &'a str,
        platform: &'a Platform,
        what: &'a str,
    ) -> BoxFuture<'a, Option<CachedStep>> {
        Box::pin(PlatformCache::lookup(self, key, platform, what))
    }

    fn store(&self, step: StepToStore) {
        PlatformCache::store(self, step)
    }
}

/// Runs a RUN's command. Called on a blocking thread; `log` receives its
/// output as it comes.
pub trait CommandRunner: Send + Sync {
    /// Runs `spec` in the stage's root filesystem `root`. `scratch` is an
    /// empty directory of the step's own (in place, where the image's
    /// entries at mount targets wait).
    fn run(
        &self,
        root: &Path,
        spec: &RunSpec,
        scratch: &Path,
        log: &mut dyn FnMut(&[u8]),
    ) -> Result<RunOutput, RunError>;
}

/// The real runner: the command chrooted into the root filesystem, or in
/// the container's own `/` (`--isolation`).
pub struct Kernel {
    pub isolation: Isolation,
}

impl CommandRunner for Kernel {
    fn run(
        &self,
        root: &Path,
        spec: &RunSpec,
        scratch: &Path,
        log: &mut dyn FnMut(&[u8]),
    ) -> Result<RunOutput, RunError> {
        match self.isolation {
            Isolation::Chroot => run_in_chroot(root, spec, log),
            Isolation::Inplace => run_in_place(spec, scratch, log),
        }
    }
}
