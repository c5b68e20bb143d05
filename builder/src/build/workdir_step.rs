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
use super::cache_step::{remember, restore_hit, run_layer_cache, step_key};
use super::stage::{BuildScope, commit_layer, layer_written};
use super::state::StageImage;
use crate::dockerfile::{Instruction, StageVars};
use crate::image::{EntryKind, EntryMeta, LayerPlan};
use crate::platform::Platform;

/// Mode of the directories WORKDIR creates.
const WORKDIR_MODE: u32 = 0o755;

pub async fn workdir_step(
    scope: &BuildScope<'_>,
    platform: &Platform,
    instruction: &Instruction,
    dir: &str,
    image: &mut StageImage,
    vars: &StageVars,
    keep_rootfs: bool,
) -> Result<(), BuildError> {
    image.config.set_workdir(dir);
    let workdir = image.config.workdir();
    let key = scope
        .cache
        .map(|_| step_key(scope, platform, image, instruction, vars, &[]));
    if workdir == "/" {
        // Nothing to create, but later steps' keys depend on it.
        if let Some(key) = key {
            image.cache_key = key;
        }
        image
            .config
            .add_history(scope.created(), &instruction.text, None, None);
        return Ok(());
    }

    let cache = run_layer_cache(scope);
    if restore_hit(
        scope,
        cache,
        key.as_ref(),
        platform,
        image,
        instruction,
        keep_rootfs,
    )
    .await?
    {
        return Ok(());
    }

    let rootfs = scope.blobs.stage_root(image).await?;
    let (uid, gid) = match image.config.config.user.as_deref() {
        Some(user) if !user.is_empty() => crate::fs::resolve_user(&rootfs, user)?,
        _ => (0, 0),
    };
    if let Some(key) = &key {
        image.cache_key = key.clone();
    }
    if scope.single_snapshot {
        // The stage's one snapshot captures the directories.
        crate::fs::create_dir_all_in_root(&rootfs, &workdir, WORKDIR_MODE, uid, gid)?;
        image
            .config
            .add_history(scope.created(), &instruction.text, None, None);
        return Ok(());
    }

    let plan = missing_dirs_plan(&rootfs, &workdir, uid, gid, scope.now)?;
    let layer = commit_layer(scope, image, Some(plan), &instruction.text)?;
    if let (Some(cache), Some(key)) = (cache, key) {
        remember(
            cache,
            scope,
            platform,
            key,
            image,
            layer.as_ref(),
            &instruction.text,
        )?;
    }
    if let Some(layer) = layer {
        layer_written(scope, image, &layer, &rootfs, keep_rootfs)?;
    }
    Ok(())
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
