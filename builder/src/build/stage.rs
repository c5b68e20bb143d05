//! Running one stage: resolve its base, trigger the base's ONBUILD
//! instructions, then apply each instruction to the config or as a layer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tracing::{Instrument, info_span};

use super::BuildError;
use super::config_step::ConfigStep;
use super::copy_step::CopyStep;
use super::run_step::RunStep;
use super::seam::{BaseImages, CommandRunner, StepCache};
use super::state::{BlobSource, Blobs, LayerRecord, StageImage, from_oci_descriptor};
use super::step::{StageContext, StepContext, StepWork, commit_layer, drive};
use super::step_log::{self, Step, StepEnd};
use super::workdir_step::WorkdirStep;
use crate::cache::{BaseOf, base_key};
use crate::context::IgnoreRules;
use crate::dockerfile::{
    self, Base, BuildVars, Dockerfile, Instruction, InstructionKind, StageVars,
};
use crate::image::{Compression, ImageConfig, Layer, LayerPlan, Timestamps, parse_config};
use crate::platform::Platform;
use crate::registry::Access;
use crate::snapshot::Snapshotter;

/// What every stage of one build (one platform) shares.
pub struct BuildScope<'a> {
    pub dockerfile: &'a Dockerfile,
    pub vars: &'a BuildVars,
    pub target_platform: &'a Platform,
    /// Build time, seconds since 1970, before timestamp rules.
    pub now: u64,
    pub blobs: Blobs<'a>,
    pub bases: &'a dyn BaseImages,
    /// The build context COPY, ADD and bind mounts read.
    pub context: ContextFiles<'a>,
    pub layers: LayerFormat,
    /// The stages whose layers end up in the build's image: the target
    /// and the stages it is built `FROM`. Without a cache the others'
    /// layers are never pushed, and are not compressed.
    pub pushed_stages: Vec<usize>,
    /// Uploads the image's layers to the destinations as they are made.
    pub early_push: Option<&'a super::early_push::EarlyPush>,
    /// With several target platforms: the stages they build alike, built
    /// once for all of them.
    pub shared: Option<&'a super::shared::SharedStages>,
    pub snapshots: SnapshotRules,
    /// The layer cache, with `--cache`.
    pub cache: Option<&'a dyn StepCache>,
    pub run: RunSetup<'a>,
}

impl BuildScope<'_> {
    /// The time history entries are dated.
    pub(super) fn created(&self) -> u64 {
        self.layers.timestamps.created(self.now)
    }
}

/// The build context, as COPY and ADD see it.
#[derive(Clone, Copy)]
pub struct ContextFiles<'a> {
    pub root: &'a Path,
    /// `.dockerignore`.
    pub ignore: &'a IgnoreRules,
}

/// How layers are written (`--compression`, `--compression-level`,
/// `--reproducible`, `SOURCE_DATE_EPOCH`).
#[derive(Clone, Copy, Debug)]
pub struct LayerFormat {
    pub compression: Compression,
    pub level: Option<i32>,
    pub timestamps: Timestamps,
}

impl LayerFormat {
    /// This format, or uncompressed for a layer that never leaves the
    /// build (compressing it would be work nobody reads).
    pub(super) fn for_layers_that_leave(self, leave: bool) -> LayerFormat {
        match leave {
            true => self,
            false => LayerFormat {
                compression: Compression::None,
                level: None,
                ..self
            },
        }
    }

    /// Writes `plan` as a layer blob in `dir`.
    pub(super) fn write(self, plan: LayerPlan, dir: &Path) -> Result<Layer, BuildError> {
        Ok(plan.write_layer(dir, self.compression, self.level, self.timestamps)?)
    }
}

/// How the changes of RUN are found.
pub struct SnapshotRules {
    /// `--snapshot-mode`.
    pub mode: crate::snapshot::SnapshotMode,
    /// `--single-snapshot`: one layer per stage, taken at its end.
    pub one_per_stage: bool,
    /// Image paths snapshots never capture (`--ignore-path`, …).
    pub never_captured: Vec<PathBuf>,
}

/// What RUN needs besides the stage's root filesystem.
pub struct RunSetup<'a> {
    /// What runs the commands (`--isolation`).
    pub runner: std::sync::Arc<dyn CommandRunner>,
    /// `--secret`s, for `RUN --mount=type=secret`.
    pub secrets: &'a [crate::run::secret::SecretSource],
    /// `--cache-dir`, under which `RUN --mount=type=cache` directories live.
    pub cache_dir: &'a Path,
}

/// A stage whose base is resolved and whose instructions are known (the
/// base's ONBUILD triggers first): what remains is to run them.
pub struct OpenedStage<'d> {
    index: usize,
    image: StageImage,
    vars: StageVars,
    platform: Platform,
    name: String,
    /// The stage's tracing span, entered again to run its instructions.
    span: tracing::Span,
    /// The base's triggers, parsed; they read from `--from` stages the
    /// plan could not know of.
    pub triggers: Vec<Instruction>,
    own: &'d [Instruction],
}

/// Resolves the base of stage `index` given the stages built before it
/// (FROM, step 1 of the stage).
pub async fn open_stage<'d>(
    scope: &BuildScope<'d>,
    index: usize,
    base: &Base,
    platform: Option<&str>,
    built: &BTreeMap<usize, StageImage>,
) -> Result<OpenedStage<'d>, BuildError> {
    let stage = &scope.dockerfile.stages[index];
    let name = step_log::stage_name(stage.name.as_deref(), index);
    let span = info_span!("stage", platform = %scope.target_platform, stage = %name);
    resolve_stage_base(scope, index, base, platform, built, name, span.clone())
        .instrument(span)
        .await
}

impl OpenedStage<'_> {
    /// Gives the stage `rootfs`, the current root filesystem of the stage
    /// it is built `FROM`, which nothing else reads any more.
    pub fn adopt_root(&mut self, rootfs: Option<super::state::RootFs>) {
        if self.image.rootfs.is_none() {
            self.image.rootfs = rootfs;
        }
    }
}

/// Runs the instructions of an opened stage and returns its image.
pub async fn finish_stage(
    scope: &BuildScope<'_>,
    opened: OpenedStage<'_>,
    built: &mut BTreeMap<usize, StageImage>,
    needed_later: bool,
) -> Result<StageImage, BuildError> {
    let span = opened.span.clone();
    run_instructions(scope, opened, built, needed_later)
        .instrument(span)
        .await
}

async fn resolve_stage_base<'d>(
    scope: &BuildScope<'d>,
    index: usize,
    base: &Base,
    platform: Option<&str>,
    built: &BTreeMap<usize, StageImage>,
    stage_name: String,
    span: tracing::Span,
) -> Result<OpenedStage<'d>, BuildError> {
    let dockerfile: &'d Dockerfile = scope.dockerfile;
    let stage = &dockerfile.stages[index];
    let stage_platform = match platform {
        Some(text) => text
            .parse::<Platform>()
            .map_err(|e| BuildError::Instruction {
                line: stage.line,
                instruction: "FROM".to_string(),
                source: Box::new(e.into()),
            })?,
        None => scope.target_platform.clone(),
    };
    // FROM is step 1. The base's ONBUILD triggers, known once it is
    // resolved, run before the stage's own instructions and are counted
    // with them from then on.
    let total = 1 + stage.instructions.len();
    let from_step = Step {
        platform: scope.target_platform,
        stage: &stage_name,
        number: 1,
        total,
    };
    from_step.started(&format!("FROM {}", describe_base(scope.dockerfile, base)));
    let started = std::time::Instant::now();
    let mut image = match base {
        Base::Scratch => {
            let mut config = ImageConfig::scratch(&stage_platform);
            // BuildKit's empty image says WorkingDir "/" (the same meaning
            // as none); an image FROM scratch carries it on.
            config.config.working_dir = Some("/".to_string());
            StageImage {
                config,
                layers: Vec::new(),
                rootfs: None,
                snapshotter: None,
                cache_key: base_key(BaseOf::Scratch),
                args: Vec::new(),
                layers_leave_build: true,
            }
        }
        Base::Stage(parent) => built.get(parent).map(StageImage::fork).ok_or_else(|| {
            BuildError::Other(format!("stage {parent} was not built before stage {index}"))
        })?,
        Base::Image(reference) => {
            let mut image = pull_base(scope, reference, &stage_platform)
                .instrument(from_step.span())
                .await?;
            // The image is built for the stage's platform as the user
            // spelled it, not for the base entry's: `linux/arm64` from an
            // `arm64/v8` base writes no variant, as BuildKit does.
            image.config.set_platform(&stage_platform);
            image
        }
    };
    // BuildKit gives every stage whose base sets no PATH (scratch, or an
    // image built without one) the default PATH; the image's users and
    // its RUN steps expect one.
    if image.config.env("PATH").is_none() {
        image.config.set_env("PATH", crate::run::DEFAULT_PATH);
    }
    image.config.begin_stage();
    image.layers_leave_build = scope.cache.is_some() || scope.pushed_stages.contains(&index);
    let from_end = StepEnd {
        cached: false,
        layer_bytes: None,
    };
    from_step.finished(from_end, started.elapsed());

    let vars = scope
        .vars
        .stage_inheriting(&image.config.config.env, &image.args);
    let mut triggers = Vec::new();
    for trigger in image.config.take_onbuild() {
        let mut parsed = dockerfile::parse_instruction(&trigger, dockerfile.escape)?;
        parsed.line = stage.line;
        triggers.push(parsed);
    }
    Ok(OpenedStage {
        index,
        image,
        vars,
        platform: stage_platform,
        name: stage_name,
        span,
        triggers,
        own: &stage.instructions,
    })
}

async fn run_instructions(
    scope: &BuildScope<'_>,
    opened: OpenedStage<'_>,
    built: &mut BTreeMap<usize, StageImage>,
    needed_later: bool,
) -> Result<StageImage, BuildError> {
    let OpenedStage {
        index,
        mut image,
        mut vars,
        platform: stage_platform,
        name: stage_name,
        span: _,
        triggers,
        own,
    } = opened;
    // The base's triggers run first, as if written after FROM.
    let mut instructions = triggers;
    instructions.extend(own.iter().cloned());

    let last_fs_instruction = instructions.iter().rposition(|i| writes_files(&i.kind));
    // --single-snapshot: one layer for the whole stage, from a baseline of
    // the base's files taken before any instruction.
    let mut single = None;
    if scope.snapshots.one_per_stage {
        let root = scope.blobs.stage_root(&mut image).await?;
        let baseline = Snapshotter::new(&root, &scope.snapshots.never_captured)?;
        single = Some(baseline);
    }
    let total = 1 + instructions.len();
    let mut stage = StageContext {
        scope,
        index,
        platform: &stage_platform,
        built,
    };
    for (position, instruction) in instructions.iter().enumerate() {
        // The root filesystem must stay current only while something will
        // look at it again: a later COPY in this stage, or another stage.
        let keep_rootfs = single.is_some()
            || needed_later
            || last_fs_instruction.is_some_and(|last| position < last);
        let step = Step {
            platform: scope.target_platform,
            stage: &stage_name,
            number: position + 2,
            total,
        };
        step.started(&instruction.text);
        let started = std::time::Instant::now();
        let layers_before = image.layers.len();
        let context = StepContext {
            instruction,
            keep_rootfs,
            log: &step,
        };
        let cached = run_instruction(&mut stage, &context, &mut image, &mut vars)
            .instrument(step.span())
            .await
            .map_err(|error| at_line(instruction, error))?;
        let end = StepEnd {
            cached,
            layer_bytes: (image.layers.len() > layers_before)
                .then(|| image.layers.last().map(|l| l.descriptor.size))
                .flatten(),
        };
        step.finished(end, started.elapsed());
    }
    if let Some(snapshotter) = &mut single {
        let plan = snapshotter.take(scope.snapshots.mode)?;
        commit_layer(
            scope,
            &mut image,
            plan,
            "single snapshot of the stage (--single-snapshot)",
        )?;
    }
    image.args = vars.args().to_vec();
    Ok(image)
}

/// Instructions that may change the root filesystem (WORKDIR creates its
/// directory when missing).
fn writes_files(kind: &InstructionKind) -> bool {
    matches!(
        kind,
        InstructionKind::Copy(_)
            | InstructionKind::Add(_)
            | InstructionKind::Run(_)
            | InstructionKind::Workdir(_)
    )
}

fn describe_base(dockerfile: &Dockerfile, base: &Base) -> String {
    match base {
        Base::Scratch => "scratch".to_string(),
        Base::Stage(index) => {
            step_log::stage_name(dockerfile.stages[*index].name.as_deref(), *index)
        }
        Base::Image(reference) => reference.clone(),
    }
}

/// Gives an error the Dockerfile line it happened at, unless it has one.
fn at_line(instruction: &Instruction, error: BuildError) -> BuildError {
    match error {
        BuildError::Instruction { .. }
        | BuildError::RunFailed { .. }
        | BuildError::Dockerfile(_) => error,
        other => BuildError::Instruction {
            line: instruction.line,
            instruction: instruction.text.clone(),
            source: Box::new(other),
        },
    }
}

pub(super) async fn pull_base(
    scope: &BuildScope<'_>,
    reference: &str,
    platform: &Platform,
) -> Result<StageImage, BuildError> {
    let pulled = scope.bases.pull(reference, platform).await?;
    let config = parse_config(&pulled.config_bytes)?;
    let mut layers = Vec::with_capacity(pulled.manifest.layers().len());
    if pulled.manifest.layers().len() != config.rootfs.diff_ids.len() {
        return Err(BuildError::Other(format!(
            "image {reference}: the manifest has {} layers but the config lists {} diff_ids",
            pulled.manifest.layers().len(),
            config.rootfs.diff_ids.len()
        )));
    }
    for descriptor in pulled.manifest.layers() {
        layers.push(LayerRecord {
            descriptor: from_oci_descriptor(descriptor)?,
            source: BlobSource::Remote(pulled.source.clone(), Access::Pull),
        });
    }
    Ok(StageImage {
        config,
        layers,
        rootfs: None,
        snapshotter: None,
        cache_key: base_key(BaseOf::Image {
            manifest_digest: &pulled.manifest_digest,
        }),
        args: Vec::new(),
        layers_leave_build: true,
    })
}

/// Applies `instruction` to the stage: its kind's work, prepared here
/// (flags checked, `--from` resolved), then [`drive`]n. True when the step
/// came from the cache.
async fn run_instruction(
    stage: &mut StageContext<'_, '_>,
    step: &StepContext<'_>,
    image: &mut StageImage,
    vars: &mut StageVars,
) -> Result<bool, BuildError> {
    let work = match &step.instruction.kind {
        InstructionKind::Workdir(dir) => {
            let dir = vars.expand(dir)?;
            StepWork::Workdir(WorkdirStep::set(image, &dir))
        }
        InstructionKind::Copy(copy) => {
            StepWork::Copy(CopyStep::prepare(stage, copy, false, image, vars).await?)
        }
        InstructionKind::Add(copy) => {
            StepWork::Copy(CopyStep::prepare(stage, copy, true, image, vars).await?)
        }
        InstructionKind::Run(run) => StepWork::Run(RunStep::new(run, image, vars)?),
        kind => StepWork::Config(ConfigStep { kind }),
    };
    drive(work, stage, step, image, vars).await
}
