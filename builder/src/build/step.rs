//! The step driver: every instruction of a stage goes through [`drive`],
//! which applies the layer cache once for all of them (BuildKit's solver:
//! each operation gives its cache inputs and its execution).
//!
//! An instruction kind ([`StepWork`]) says what its key reads besides the
//! chain ([`CacheInputs`]) and does its work ([`Executed`]); the driver
//! computes the key, looks it up and restores a hit, or executes and
//! commits the layer, hands it to the cache, extends the key chain and
//! keeps the root filesystem current. A step never does any of that
//! itself: when each handler did, their copies drifted apart (WORKDIR /
//! once returned early past the key update every other step made,
//! 67ae663).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::BuildError;
use super::cache_step::{remember, restore, step_key};
use super::config_step::ConfigStep;
use super::copy_step::{CopySources, CopyStep};
use super::run_step::RunStep;
use super::seam::{LayerClass, StepCache};
use super::stage::BuildScope;
use super::state::{BlobSource, LayerRecord, StageImage};
use super::step_log::Step;
use super::workdir_step::WorkdirStep;
use crate::dockerfile::{Instruction, StageVars};
use crate::image::{Layer, LayerPlan};
use crate::platform::Platform;
use crate::snapshot::Snapshotter;

/// One stage while it is built: what its steps share besides the build's
/// [`BuildScope`].
pub struct StageContext<'s, 'a> {
    pub scope: &'s BuildScope<'a>,
    /// The stage's index in the Dockerfile: `--from` names resolve from it.
    pub index: usize,
    /// The platform the stage is built for (`FROM --platform`).
    pub platform: &'s Platform,
    /// The stages built before it, for `--from`: their root filesystems
    /// are unpacked when first read.
    pub built: &'s mut BTreeMap<usize, StageImage>,
}

/// One instruction of a stage, as it is applied.
pub struct StepContext<'s> {
    pub instruction: &'s Instruction,
    /// Whether the root filesystem must stay current after this step: a
    /// later step of the stage, or another stage, reads it.
    pub keep_rootfs: bool,
    /// The step's line in the build's log (RUN's output goes out under it).
    pub log: &'s Step<'s>,
}

/// What a step's key reads besides the key before it, the instruction,
/// and the build args and environment it sees.
pub enum CacheInputs {
    /// A config-only step: never looked up nor stored (it costs nothing),
    /// but a link of the key chain, since what follows depends on it.
    Link,
    /// A step that may write a layer, cached under `class`'s setting;
    /// `files` is what it reads, as `(name, digest)`.
    Layer {
        class: LayerClass,
        files: Vec<(String, String)>,
    },
    /// Sources known only by fetching them (ADD of URLs): the key is taken
    /// after the step, from the layer it wrote, and never looked up.
    WrittenLayer,
}

/// What a step's execution did.
pub enum Executed {
    /// Only the config changed; `history` says whether that is recorded
    /// (ARG is not).
    Config { history: bool },
    /// Files planned as a layer (COPY, ADD, WORKDIR) that are not yet in
    /// the root filesystem.
    Plan(PlannedLayer),
    /// The root filesystem changed in place (RUN) and the stage's
    /// snapshotter found these changes (`None`: nothing changed); it now
    /// holds the root filesystem as it is, the next RUN's baseline.
    Snapshot {
        plan: Option<LayerPlan>,
        baseline: Snapshotter,
    },
    /// The root filesystem changed in place and the stage's one snapshot
    /// takes it at its end (`--single-snapshot`).
    InRoot,
}

/// A layer planned by a step, and the root filesystem it applies to.
pub struct PlannedLayer {
    pub plan: LayerPlan,
    pub rootfs: PathBuf,
    /// What the plan's entries are read from when it would be gone once
    /// the step returns (staged here-documents, an image's files): kept
    /// until the layer is written.
    pub sources: Option<CopySources>,
}

/// The instruction kinds, each with its cache inputs and its execution.
pub enum StepWork<'s> {
    Config(ConfigStep<'s>),
    Workdir(WorkdirStep),
    Copy(CopyStep<'s>),
    Run(RunStep<'s>),
}

impl StepWork<'_> {
    async fn cache_inputs(
        &self,
        stage: &StageContext<'_, '_>,
        vars: &StageVars,
    ) -> Result<CacheInputs, BuildError> {
        match self {
            StepWork::Config(_) => Ok(CacheInputs::Link),
            StepWork::Workdir(work) => Ok(work.cache_inputs()),
            StepWork::Copy(work) => work.cache_inputs(stage, vars),
            StepWork::Run(work) => work.cache_inputs(stage).await,
        }
    }

    async fn execute(
        self,
        stage: &mut StageContext<'_, '_>,
        step: &StepContext<'_>,
        image: &mut StageImage,
        vars: &mut StageVars,
    ) -> Result<Executed, BuildError> {
        match self {
            StepWork::Config(work) => work.execute(image, vars),
            StepWork::Workdir(work) => work.execute(stage.scope, image).await,
            StepWork::Copy(work) => work.execute(stage, image, vars).await,
            StepWork::Run(work) => work.execute(stage, step, image, vars).await,
        }
    }
}

/// A step's key, as far as it is known before the step runs.
enum PlannedKey<'c> {
    /// A link of the chain (see [`CacheInputs::Link`]).
    Link(String),
    /// A layer's key, looked up in and stored to `cache` when there is one
    /// for its class.
    Layer {
        key: String,
        cache: Option<&'c dyn StepCache>,
    },
    /// Taken from the layer the step writes.
    FromWrittenLayer,
}

/// Applies one step to `image`: the key, then a hit restored or the step
/// executed and its layer committed and remembered, then the chain moved
/// on. True when the step came from the cache.
pub async fn drive(
    work: StepWork<'_>,
    stage: &mut StageContext<'_, '_>,
    step: &StepContext<'_>,
    image: &mut StageImage,
    vars: &mut StageVars,
) -> Result<bool, BuildError> {
    let scope = stage.scope;
    let text = &step.instruction.text;
    // Keys are taken before anything is unpacked: a hit needs no files.
    let planned = match scope.cache {
        None => None,
        Some(cache) => Some(match work.cache_inputs(stage, vars).await? {
            CacheInputs::Link => PlannedKey::Link(key_of(stage, step, image, vars, &[])),
            CacheInputs::Layer { class, files } => PlannedKey::Layer {
                key: key_of(stage, step, image, vars, &files),
                // With --single-snapshot the stage has one layer in the end.
                cache: Some(cache).filter(|c| c.caches(class) && !scope.snapshots.one_per_stage),
            },
            CacheInputs::WrittenLayer => PlannedKey::FromWrittenLayer,
        }),
    };
    if let Some(PlannedKey::Layer {
        key,
        cache: Some(cache),
    }) = &planned
        && let Some(hit) = cache.lookup(key, stage.platform, text).await
    {
        restore(scope, image, hit, step.keep_rootfs).await?;
        image.cache_key = key.clone();
        return Ok(true);
    }

    let executed = work.execute(stage, step, image, vars).await?;
    let written = record(scope, step, image, executed)?;

    match planned {
        None => {}
        Some(PlannedKey::Link(key)) => image.cache_key = key,
        Some(PlannedKey::Layer { key, cache }) => {
            if let Some(cache) = cache {
                remember(
                    cache,
                    scope,
                    stage.platform,
                    key.clone(),
                    image,
                    written.layer.as_ref(),
                    text,
                )?;
            }
            image.cache_key = key;
        }
        Some(PlannedKey::FromWrittenLayer) => {
            // The layer stands for the files (none: nothing was copied).
            let files = [(
                "(layer)".to_string(),
                written.diff_id.unwrap_or_else(|| "(none)".to_string()),
            )];
            image.cache_key = key_of(stage, step, image, vars, &files);
        }
    }
    if let (Some(layer), Some(rootfs)) = (&written.layer, &written.planned_rootfs) {
        layer_written(scope, image, layer, rootfs, step.keep_rootfs)?;
    }
    Ok(false)
}

fn key_of(
    stage: &StageContext<'_, '_>,
    step: &StepContext<'_>,
    image: &StageImage,
    vars: &StageVars,
    files: &[(String, String)],
) -> String {
    step_key(
        stage.scope,
        stage.platform,
        image,
        step.instruction,
        vars,
        files,
    )
}

/// What [`record`] wrote.
struct Written {
    /// The layer committed to the image.
    layer: Option<Layer>,
    /// The diffID of the files the step wrote, for a key taken from them.
    diff_id: Option<String>,
    /// The root filesystem a committed layer was planned for rather than
    /// written into.
    planned_rootfs: Option<PathBuf>,
}

/// Records an executed step in the image: its layer committed, or only
/// its history entry.
fn record(
    scope: &BuildScope<'_>,
    step: &StepContext<'_>,
    image: &mut StageImage,
    executed: Executed,
) -> Result<Written, BuildError> {
    let text = &step.instruction.text;
    let mut written = Written {
        layer: None,
        diff_id: None,
        planned_rootfs: None,
    };
    match executed {
        Executed::Config { history } => {
            if history {
                image.config.add_history(scope.created(), text, None, None);
            }
        }
        Executed::InRoot => image.config.add_history(scope.created(), text, None, None),
        Executed::Snapshot { plan, baseline } => {
            image.snapshotter = Some(baseline);
            written.layer = commit_layer(scope, image, plan, text)?;
            written.diff_id = written.layer.as_ref().map(|l| l.diff_id.clone());
        }
        Executed::Plan(planned) if scope.snapshots.one_per_stage => {
            // The stage's one snapshot captures these files; they only
            // need to be in the root filesystem now.
            // Written only to be applied: never compressed.
            let layer = scope
                .layers
                .for_layers_that_leave(false)
                .write(planned.plan, &scope.blobs.store.tmp_dir_created()?)?;
            scope.blobs.apply(&layer.path, &planned.rootfs)?;
            std::fs::remove_file(&layer.path).map_err(BuildError::io("removing", &layer.path))?;
            written.diff_id = Some(layer.diff_id);
            image.config.add_history(scope.created(), text, None, None);
        }
        Executed::Plan(planned) => {
            let PlannedLayer {
                plan,
                rootfs,
                sources,
            } = planned;
            written.layer = commit_layer(scope, image, Some(plan), text)?;
            // The layer is written: its sources can go.
            drop(sources);
            written.diff_id = written.layer.as_ref().map(|l| l.diff_id.clone());
            written.planned_rootfs = Some(rootfs);
        }
    }
    Ok(written)
}

/// After a step wrote `layer` as a plan rather than by changing `rootfs`:
/// the layer is applied to the root filesystem while something will read
/// it again, which is dropped otherwise rather than kept stale. Either way
/// the snapshot baseline no longer matches it.
fn layer_written(
    scope: &BuildScope<'_>,
    image: &mut StageImage,
    layer: &Layer,
    rootfs: &std::path::Path,
    keep_rootfs: bool,
) -> Result<(), BuildError> {
    image.snapshotter = None;
    if keep_rootfs {
        scope.blobs.apply(&layer.path, rootfs)?;
    } else {
        image.rootfs = None;
    }
    Ok(())
}

/// Writes `plan` as the instruction's layer, stores it and records it in
/// the image (layer list, history with its diffID). No plan, or an empty
/// one, records a history entry without a layer: no empty layers.
pub fn commit_layer(
    scope: &BuildScope<'_>,
    image: &mut StageImage,
    plan: Option<LayerPlan>,
    created_by: &str,
) -> Result<Option<Layer>, BuildError> {
    let created = scope.created();
    let Some(plan) = plan.filter(|p| !p.is_empty()) else {
        image.config.add_history(created, created_by, None, None);
        return Ok(None);
    };
    let layer = scope
        .layers
        .for_layers_that_leave(image.layers_leave_build)
        .write(plan, &scope.blobs.store.tmp_dir_created()?)?;
    let layer = scope.blobs.store.put_layer(layer)?;
    if let (Some(early), true) = (scope.early_push, image.layers_leave_build) {
        early.layer(
            &layer.digest,
            layer.size,
            scope.blobs.store.path(&layer.digest)?,
        );
    }
    let descriptor = crate::image::Descriptor::new(
        crate::image::ManifestFormat::Oci.layer_media_type(layer.compression)?,
        &layer.digest,
        layer.size,
    );
    image
        .config
        .add_history(created, created_by, None, Some(&layer.diff_id));
    image.layers.push(LayerRecord {
        descriptor,
        source: BlobSource::Local,
    });
    Ok(Some(layer))
}
