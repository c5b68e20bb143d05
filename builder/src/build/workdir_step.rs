//! WORKDIR: sets the working directory and, as Docker (BuildKit) and
//! buildah do, creates it when the image lacks it, owned by the stage's
//! USER, mode 0755, in a layer of its own. A directory that already exists
//! gives no layer.
//!
//! Knowing whether it exists needs the root filesystem, so a WORKDIR is
//! cached like a RUN (under `--cache-run-layers`): a fully cached rebuild
//! still never unpacks the base for it.

use std::path::Path;

use super::BuildError;
use super::seam::LayerClass;
use super::stage::BuildScope;
use super::state::StageImage;
use super::step::{CacheInputs, Executed, PlannedLayer};
use crate::image::{EntryKind, EntryMeta, LayerPlan};

/// Mode of the directories WORKDIR creates.
const WORKDIR_MODE: u32 = 0o755;

/// A WORKDIR, its directory already set in the config.
pub struct WorkdirStep {
    /// The working directory it sets, absolute.
    workdir: String,
}

impl WorkdirStep {
    /// Sets the working directory `dir` (expanded; relative to the current
    /// one) in `image`'s config, hit or miss.
    pub fn set(image: &mut StageImage, dir: &str) -> WorkdirStep {
        image.config.set_workdir(dir);
        WorkdirStep {
            workdir: image.config.workdir(),
        }
    }

    /// `/` always exists: nothing to create, nothing to cache, but later
    /// steps' keys depend on it like on any config change.
    pub fn cache_inputs(&self) -> CacheInputs {
        if self.workdir == "/" {
            CacheInputs::Link
        } else {
            CacheInputs::Layer {
                class: LayerClass::Run,
                files: Vec::new(),
            }
        }
    }

    /// Plans the missing directories, owned by the stage's USER.
    pub async fn execute(
        self,
        scope: &BuildScope<'_>,
        image: &mut StageImage,
    ) -> Result<Executed, BuildError> {
        if self.workdir == "/" {
            return Ok(Executed::Config { history: true });
        }
        let rootfs = scope.blobs.stage_root(image).await?;
        let (uid, gid) = match image.config.config.user.as_deref() {
            Some(user) if !user.is_empty() => crate::fs::resolve_user(&rootfs, user)?,
            _ => (0, 0),
        };
        if scope.snapshots.one_per_stage {
            // The stage's one snapshot captures the directories.
            crate::fs::create_dir_all_in_root(&rootfs, &self.workdir, WORKDIR_MODE, uid, gid)?;
            return Ok(Executed::InRoot);
        }
        let plan = missing_dirs_plan(&rootfs, &self.workdir, uid, gid, scope.now)?;
        Ok(Executed::Plan(PlannedLayer {
            plan,
            rootfs,
            sources: None,
        }))
    }
}

/// The directories of `workdir` missing in `rootfs`, as layer entries. The
/// root filesystem itself changes only when the layer is applied to it,
/// as for COPY.
fn missing_dirs_plan(
    rootfs: &Path,
    workdir: &str,
    uid: u32,
    gid: u32,
    now: u64,
) -> Result<LayerPlan, BuildError> {
    let mut plan = LayerPlan::new();
    for dir in crate::fs::missing_dirs_in_root(rootfs, workdir)? {
        plan.push(
            &dir,
            EntryKind::Dir,
            EntryMeta::new(WORKDIR_MODE, u64::from(uid), u64::from(gid), now),
        )?;
    }
    Ok(plan)
}
