//! `--isolation=inplace` in the build engine: the container's own `/` is
//! the root filesystem of the stage being built.
//!
//! # One stage owns `/` at a time
//!
//! [`InPlaceRoot`] records which stage's state `/` holds, as a *claim*
//! number. A stage that needs its files (RUN, the destination of a COPY,
//! the `--single-snapshot` baseline) asks `Blobs::stage_root`: if `/` still
//! holds its claim, nothing happens; otherwise `/` is emptied of everything
//! not protected ([`crate::fs::inplace::clear_root`]: what the builder image
//! or the previous stage left there) and the stage's layers, those it
//! committed so far included, are unpacked over it with the protected paths
//! skipped (the unpacker's `protected_paths`; whiteouts spare them too),
//! under a new claim.
//!
//! Files of other stages (`COPY --from=<stage>`) and images
//! (`COPY --from=<image>`) never come from `/`: they are unpacked from their
//! layers into a work directory under `/kiln/work` (`crate::work_root`), like every root
//! filesystem of `--isolation=chroot`. Every layer of a finished stage is in
//! the local blob store, so this costs one unpack and no download. Several
//! platforms of one build take `/` one after the other (the local driver
//! builds them one at a time in this mode).
//!
//! # What is protected
//!
//! The snapshot ignore list (`/proc`, `/sys`, `/dev`, `/kiln`, `/kaniko`,
//! `/var/run` unless `--ignore-var-run=false`, `--ignore-path`s), the
//! container runtimes' marker files (so the container is still recognised
//! as one for the next build), the build context, `--cache-dir` (base
//! blobs and RUN cache mounts) and the output files (`--tar-path`,
//! `--oci-layout-path`, the digest files) when they are below `/`, and
//! every mount point of the container, read from
//! `/proc/self/mountinfo` at start (an in-place build refuses to run
//! without it: removing what is below an unknown mount point would destroy
//! a volume's content).
//!
//! # `--cleanup`
//!
//! When the build ends (succeeded or not), `/` is emptied the same way, so
//! the container holds only its protected paths and can build again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::info;

use super::BuildError;
use crate::fs::inplace::{MOUNT_TABLE, clear_root, protected_paths};
use crate::run::container::ContainerFacts;

/// The root filesystem an in-place build writes to.
const ROOT: &str = "/";

/// The refusal outside a container, unless `force`; `facts` are what
/// [`ContainerFacts::observe`] saw.
pub fn refuse_outside_container(force: bool, facts: &ContainerFacts) -> Result<(), BuildError> {
    match (facts.evidence(), force) {
        (Some(evidence), _) => {
            info!("--isolation=inplace: in a container ({evidence})");
            Ok(())
        }
        (None, true) => {
            tracing::warn!(
                "--isolation=inplace --force: no container detected; the image is unpacked over this machine's own /"
            );
            Ok(())
        }
        (None, false) => Err(BuildError::NotInContainer),
    }
}

/// Which stage's files `/` holds, and what in `/` is never touched.
#[derive(Debug)]
pub struct InPlaceRoot {
    /// Image paths never removed, written or captured.
    protected: Vec<PathBuf>,
    /// The claim whose files `/` holds; 0 when none does (the builder
    /// image's own files, or a stage that failed half-way).
    owner: AtomicU64,
    next: AtomicU64,
}

impl InPlaceRoot {
    /// Protects `configured` (image paths) and every mount point of the
    /// container, from [`MOUNT_TABLE`].
    pub fn open(configured: &[PathBuf]) -> Result<InPlaceRoot, BuildError> {
        let table = std::fs::read_to_string(MOUNT_TABLE).map_err(|source| {
            BuildError::Other(format!(
                "--isolation=inplace needs the mount table {MOUNT_TABLE} to leave the container's \
                 mount points alone, and it cannot be read: {source}; mount /proc, or use \
                 --isolation=sandbox"
            ))
        })?;
        let protected = protected_paths(configured, &table);
        info!(
            "--isolation=inplace: never touched nor captured: {}",
            protected
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(InPlaceRoot {
            protected,
            owner: AtomicU64::new(0),
            next: AtomicU64::new(1),
        })
    }

    pub fn root(&self) -> &Path {
        Path::new(ROOT)
    }

    /// The protected image paths (for the unpacker and snapshots).
    pub fn protected(&self) -> &[PathBuf] {
        &self.protected
    }

    /// Whether `/` holds the files of `claim`.
    pub fn holds(&self, claim: u64) -> bool {
        claim != 0 && self.owner.load(Ordering::SeqCst) == claim
    }

    /// Empties `/` for a new owner and returns its claim; the caller
    /// unpacks the owner's layers and then calls [`InPlaceRoot::confirm`].
    pub fn take(&self) -> Result<u64, BuildError> {
        self.clear()?;
        Ok(self.next.fetch_add(1, Ordering::SeqCst))
    }

    /// `/` now holds the files of `claim`.
    pub fn confirm(&self, claim: u64) {
        self.owner.store(claim, Ordering::SeqCst);
    }

    /// Removes everything from `/` but the protected paths (`--cleanup`,
    /// and before a stage takes `/`).
    pub fn clear(&self) -> Result<u64, BuildError> {
        self.owner.store(0, Ordering::SeqCst);
        let removed = clear_root(self.root(), &self.protected)?;
        tracing::debug!(removed, "emptied / but for its protected paths");
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_depends_on_evidence_and_force() {
        let none = ContainerFacts::default();
        let docker = ContainerFacts {
            dockerenv: true,
            ..ContainerFacts::default()
        };
        let cases = [
            (
                &none,
                false,
                Some(
                    "--isolation=inplace unpacks the image over this machine's own / and removes \
                 what else is there, and no container was detected (no /.dockerenv, \
                 /run/.containerenv, $container, $KUBERNETES_SERVICE_HOST, \
                 KILN_BUILDER_IMAGE=1 or container cgroup); run it in a container (kiln's \
                 builder image) or pass --force",
                ),
            ),
            (&none, true, None),
            (&docker, false, None),
            (&docker, true, None),
        ];
        for (facts, force, want) in cases {
            let got = refuse_outside_container(force, facts)
                .err()
                .map(|e| e.to_string());
            assert_eq!(got.as_deref(), want, "{facts:?} force={force}");
        }
    }
}
