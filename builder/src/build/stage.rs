//! Running one stage: resolve its base, trigger the base's ONBUILD
//! instructions, then apply each instruction to the config or as a layer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tracing::{Instrument, info_span, warn};

use super::BuildError;
use super::base_cache::pull_base_image;
use super::cache_step::{remember, restore, source_digests, step_key};
use super::copy::{Ownership, SourceRoot, parse_chmod, plan_copy};
use super::run_step::run_step;
use super::seam::{CommandRunner, LayerClass, StepCache};
use super::sources::{AddSources, stage_add_sources};
use super::state::{BlobSource, Blobs, LayerRecord, StageImage, from_oci_descriptor};
use super::step_log::{self, Step, StepEnd};
use super::workdir_step::workdir_step;
use crate::cache::{BaseOf, base_key};
use crate::context::IgnoreRules;
use crate::dockerfile::{
    self, Base, BuildVars, CommandForm, CopyInstruction, CopySource, Dockerfile, FromRef,
    Healthcheck, Instruction, InstructionKind, StageVars,
};
use crate::image::{Compression, ImageConfig, LayerPlan, Timestamps, parse_config};
use crate::platform::Platform;
use crate::registry::Access;
use crate::snapshot::Snapshotter;

/// What every stage of one build shares.
pub struct BuildScope<'a> {
    pub dockerfile: &'a Dockerfile,
    pub vars: &'a BuildVars,
    pub blobs: Blobs<'a>,
    pub context_root: &'a Path,
    pub ignore: &'a IgnoreRules,
    pub target_platform: &'a Platform,
    pub timestamps: Timestamps,
    pub compression: Compression,
    pub compression_level: Option<i32>,
    /// Build time, seconds since 1970, before timestamp rules.
    pub now: u64,
    /// How RUN's changes are found (`--snapshot-mode`).
    pub snapshot_mode: crate::snapshot::SnapshotMode,
    /// `--single-snapshot`: one layer per stage, taken at its end.
    pub single_snapshot: bool,
    /// Image paths snapshots never capture (`--ignore-path`, …).
    pub never_captured: Vec<PathBuf>,
    /// The layer cache, with `--cache`.
    pub cache: Option<&'a dyn StepCache>,
    /// What runs RUN's commands (`--isolation`).
    pub runner: std::sync::Arc<dyn CommandRunner>,
    /// `--secret`s, for `RUN --mount=type=secret`.
    pub secrets: &'a [crate::run::secret::SecretSource],
    /// `--cache-dir`, under which `RUN --mount=type=cache` directories live.
    pub run_cache_dir: &'a Path,
}

impl BuildScope<'_> {
    pub(super) fn created(&self) -> u64 {
        self.timestamps.created(self.now)
    }
}

/// Builds stage `index` given the stages built before it.
pub async fn build_stage(
    scope: &BuildScope<'_>,
    index: usize,
    base: &Base,
    platform: Option<&str>,
    built: &mut BTreeMap<usize, StageImage>,
    needed_later: bool,
) -> Result<StageImage, BuildError> {
    let stage = &scope.dockerfile.stages[index];
    let name = step_log::stage_name(stage.name.as_deref(), index);
    let span = info_span!("stage", platform = %scope.target_platform, stage = %name);
    run_stage(scope, index, base, platform, built, needed_later)
        .instrument(span)
        .await
}

async fn run_stage(
    scope: &BuildScope<'_>,
    index: usize,
    base: &Base,
    platform: Option<&str>,
    built: &mut BTreeMap<usize, StageImage>,
    needed_later: bool,
) -> Result<StageImage, BuildError> {
    let stage = &scope.dockerfile.stages[index];
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
    let stage_name = step_log::stage_name(stage.name.as_deref(), index);
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
            // Docker (BuildKit's empty image) and buildah start a scratch
            // stage with the default PATH; the image's users expect it.
            config.set_env("PATH", crate::run::DEFAULT_PATH);
            StageImage {
                config,
                layers: Vec::new(),
                rootfs: None,
                snapshotter: None,
                cache_key: base_key(BaseOf::Scratch),
            }
        }
        Base::Stage(parent) => built.get(parent).map(StageImage::fork).ok_or_else(|| {
            BuildError::Other(format!("stage {parent} was not built before stage {index}"))
        })?,
        Base::Image(reference) => {
            pull_base(scope, reference, &stage_platform)
                .instrument(from_step.span())
                .await?
        }
    };
    image.config.begin_stage();
    let from_end = StepEnd {
        cached: false,
        layer_bytes: None,
    };
    from_step.finished(from_end, started.elapsed());

    let mut vars = scope.vars.stage(&image.config.config.env);
    let triggers = image.config.take_onbuild();
    let mut instructions: Vec<Instruction> =
        Vec::with_capacity(triggers.len() + stage.instructions.len());
    for trigger in &triggers {
        let mut parsed = dockerfile::parse_instruction(trigger, scope.dockerfile.escape)?;
        parsed.line = stage.line;
        instructions.push(parsed);
    }
    instructions.extend(stage.instructions.iter().cloned());

    let last_fs_instruction = instructions.iter().rposition(|i| writes_files(&i.kind));
    // --single-snapshot: one layer for the whole stage, from a baseline of
    // the base's files taken before any instruction.
    let mut single = None;
    if scope.single_snapshot {
        let root = scope.blobs.stage_root(&mut image).await?;
        let baseline = Snapshotter::new(&root, &scope.never_captured)?;
        single = Some(baseline);
    }
    let total = 1 + instructions.len();
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
        let hits_before = scope.cache.map(|cache| cache.hits());
        let layers_before = image.layers.len();
        run_instruction(
            scope,
            index,
            &stage_platform,
            instruction,
            &mut image,
            &mut vars,
            built,
            keep_rootfs,
            &step,
        )
        .instrument(step.span())
        .await
        .map_err(|error| at_line(instruction, error))?;
        let end = StepEnd {
            cached: scope.cache.map(|cache| cache.hits()) > hits_before,
            layer_bytes: (image.layers.len() > layers_before)
                .then(|| image.layers.last().map(|l| l.descriptor.size))
                .flatten(),
        };
        step.finished(end, started.elapsed());
    }
    if let Some(snapshotter) = &mut single {
        let plan = snapshotter.take(scope.snapshot_mode)?;
        commit_layer(
            scope,
            &mut image,
            plan,
            "single snapshot of the stage (--single-snapshot)",
        )?;
    }
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
    let pulled = pull_base_image(
        scope.blobs.registry,
        scope.blobs.cache_dir,
        reference,
        platform,
    )
    .await?;
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
    })
}

#[allow(clippy::too_many_arguments)]
async fn run_instruction(
    scope: &BuildScope<'_>,
    stage_index: usize,
    platform: &Platform,
    instruction: &Instruction,
    image: &mut StageImage,
    vars: &mut StageVars,
    built: &mut BTreeMap<usize, StageImage>,
    keep_rootfs: bool,
    step: &Step<'_>,
) -> Result<(), BuildError> {
    let is_metadata = !writes_files(&instruction.kind);
    // Metadata instructions are never cached (they cost nothing) but they
    // are links of the key chain: what follows depends on them.
    if scope.cache.is_some() && is_metadata {
        image.cache_key = step_key(scope, platform, image, instruction, vars, &[]);
    }
    let config = &mut image.config;
    let created = scope.created();
    let mut record = true;
    match &instruction.kind {
        InstructionKind::Env(pairs) => {
            for (key, value) in vars.apply_env(pairs)? {
                config.set_env(&key, &value);
            }
        }
        InstructionKind::Label(pairs) => {
            for (key, value) in pairs {
                config.set_label(&vars.expand(key)?, &vars.expand(value)?);
            }
        }
        InstructionKind::Maintainer(author) => config.set_author(author),
        InstructionKind::Expose(ports) => {
            for port in ports {
                for word in vars.expand_words(port)? {
                    config.expose(&word)?;
                }
            }
        }
        InstructionKind::Volume(paths) => {
            for path in paths {
                config.add_volume(&vars.expand(path)?);
            }
        }
        InstructionKind::User(user) => config.set_user(&vars.expand(user)?),
        InstructionKind::Workdir(dir) => {
            let dir = vars.expand(dir)?;
            return workdir_step(scope, platform, instruction, &dir, image, vars, keep_rootfs)
                .await;
        }
        InstructionKind::Cmd(form) => {
            let shell = shell_of(config);
            config.set_cmd(command_vector(form, &shell));
        }
        InstructionKind::Entrypoint(form) => {
            let shell = shell_of(config);
            config.set_entrypoint(command_vector(form, &shell));
        }
        InstructionKind::Shell(shell) => config.set_shell(shell.clone()),
        InstructionKind::StopSignal(signal) => config.set_stop_signal(&vars.expand(signal)?),
        InstructionKind::Healthcheck(check) => {
            let shell = shell_of(config);
            config.set_healthcheck(healthcheck(check, &shell));
        }
        InstructionKind::Arg(decls) => {
            vars.declare_args(decls)?;
            // Docker records no history for ARG.
            record = false;
        }
        InstructionKind::Onbuild(trigger) => config.add_onbuild(&trigger.text),
        InstructionKind::Copy(copy) | InstructionKind::Add(copy) => {
            let is_add = matches!(instruction.kind, InstructionKind::Add(_));
            return copy_instruction(
                scope,
                stage_index,
                platform,
                instruction,
                copy,
                is_add,
                image,
                vars,
                built,
                keep_rootfs,
            )
            .await;
        }
        InstructionKind::Run(run) => {
            return run_step(
                scope,
                stage_index,
                platform,
                instruction,
                run,
                image,
                vars,
                built,
                keep_rootfs,
                step,
            )
            .await;
        }
    }
    if record {
        image
            .config
            .add_history(created, &instruction.text, None, None);
    }
    Ok(())
}

/// The shell for shell-form commands: the stage's SHELL, else `/bin/sh -c`.
fn shell_of(config: &ImageConfig) -> Vec<String> {
    config
        .config
        .shell
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string()])
}

fn command_vector(form: &CommandForm, shell: &[String]) -> Vec<String> {
    match form {
        CommandForm::Exec(args) => args.clone(),
        CommandForm::Shell(command) => {
            let mut args = shell.to_vec();
            args.push(command.clone());
            args
        }
    }
}

fn healthcheck(check: &Healthcheck, shell: &[String]) -> crate::image::config::Healthcheck {
    let nanos = |d: &Option<std::time::Duration>| {
        d.map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    };
    match check {
        Healthcheck::None => crate::image::config::Healthcheck {
            test: vec!["NONE".to_string()],
            ..Default::default()
        },
        Healthcheck::Check {
            test,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let test = match test {
                CommandForm::Exec(args) => {
                    let mut v = vec!["CMD".to_string()];
                    v.extend(args.iter().cloned());
                    v
                }
                CommandForm::Shell(command) => {
                    // Docker stores shell-form checks as CMD-SHELL and lets the
                    // runtime pick the shell; the SHELL only matters to RUN.
                    let _ = shell;
                    vec!["CMD-SHELL".to_string(), command.clone()]
                }
            };
            crate::image::config::Healthcheck {
                test,
                interval: nanos(interval),
                timeout: nanos(timeout),
                start_period: nanos(start_period),
                start_interval: nanos(start_interval),
                retries: retries.map(i64::from),
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn copy_instruction(
    scope: &BuildScope<'_>,
    stage_index: usize,
    platform: &Platform,
    instruction: &Instruction,
    copy: &CopyInstruction,
    is_add: bool,
    image: &mut StageImage,
    vars: &mut StageVars,
    built: &mut BTreeMap<usize, StageImage>,
    keep_rootfs: bool,
) -> Result<(), BuildError> {
    let name = if is_add { "ADD" } else { "COPY" };
    let dest = vars.expand(&copy.dest)?;
    let workdir = image.config.workdir();
    let chmod = copy
        .chmod
        .as_deref()
        .map(|c| {
            vars.expand(c)
                .map_err(BuildError::from)
                .and_then(|c| parse_chmod(&c).map_err(BuildError::Other))
        })
        .transpose()?;
    if !copy.exclude.is_empty() {
        return Err(BuildError::Other(format!(
            "{name} --exclude is not supported yet"
        )));
    }
    if copy.parents {
        return Err(BuildError::Other(format!(
            "{name} --parents is not supported yet"
        )));
    }

    // Where the sources are: the context, another stage, or an image
    // (pulled now, unpacked only if the copy runs).
    let from = match &copy.from {
        None => None,
        Some(from) => {
            let from = vars.expand(from)?;
            let found = dockerfile::resolve_from(scope.dockerfile, stage_index, &from)?;
            Some((from, found))
        }
    };
    let mut from_image: Option<StageImage> = match &from {
        Some((_, FromRef::Image(reference))) => {
            Some(pull_base(scope, reference, scope.target_platform).await?)
        }
        _ => None,
    };

    // The key is known before the copy when its sources are: files of the
    // context (by content), another stage (by that stage's key) or an image
    // (by its digest); here-documents are part of the instruction. URLs
    // are only known by downloading them: then the key is taken after the
    // copy, from the layer it wrote, and the layer is not cached.
    let downloads = copy.sources.iter().any(|source| {
        matches!(source, CopySource::Path(p) if p.starts_with("http://") || p.starts_with("https://"))
    });
    let mut key_before = None;
    if let Some(cache) = scope.cache
        && !downloads
    {
        let files = match &from {
            None => {
                let patterns = copy
                    .sources
                    .iter()
                    .filter_map(|source| match source {
                        CopySource::Path(pattern) => Some(vars.expand(pattern)),
                        CopySource::Heredoc(_) => None,
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                source_digests(scope.context_root, scope.ignore, &patterns)?
            }
            Some((name, FromRef::Stage(source))) => {
                let source_image = built
                    .get(source)
                    .ok_or_else(|| BuildError::Other(format!("stage {name} was not built")))?;
                vec![("(stage)".to_string(), source_image.cache_key.clone())]
            }
            Some((_, FromRef::Image(_))) => from_image
                .iter()
                .map(|pulled| ("(image)".to_string(), pulled.cache_key.clone()))
                .collect(),
        };
        let key = step_key(scope, platform, image, instruction, vars, &files);
        if cache.caches(LayerClass::Copy)
            && !scope.single_snapshot
            && let Some(step) = cache.lookup(&key, platform, &instruction.text).await
        {
            restore(scope, image, step, keep_rootfs).await?;
            image.cache_key = key;
            return Ok(());
        }
        key_before = Some(key);
    }

    // Sources from another stage or an image: that root filesystem.
    let from_root: Option<PathBuf> = match &from {
        None => None,
        Some((name, FromRef::Stage(source))) => {
            let source_image = built
                .get_mut(source)
                .ok_or_else(|| BuildError::Other(format!("stage {name} was not built")))?;
            Some(scope.blobs.rootfs(source_image).await?.to_path_buf())
        }
        Some((name, FromRef::Image(_))) => {
            let pulled = from_image
                .as_mut()
                .ok_or_else(|| BuildError::Other(format!("image {name} was not pulled")))?;
            Some(scope.blobs.rootfs(pulled).await?.to_path_buf())
        }
    };

    let empty_rules = IgnoreRules::empty();
    let staging = tempfile::Builder::new()
        .prefix("sources-")
        .tempdir_in(scope.blobs.work_dir)
        .map_err(BuildError::io(
            "creating a staging directory in",
            scope.blobs.work_dir,
        ))?;
    let mut context_patterns = Vec::new();
    let mut staged_patterns = Vec::new();
    for source in &copy.sources {
        match source {
            CopySource::Path(pattern) => context_patterns.push(vars.expand(pattern)?),
            CopySource::Heredoc(doc) => {
                let content = if doc.expand {
                    vars.expand_heredoc(&doc.content)?
                } else {
                    doc.content.clone()
                };
                let path = staging.path().join(&doc.name);
                std::fs::write(&path, content)
                    .map_err(BuildError::io("writing here-document", &path))?;
                set_mode(&path, 0o644)?;
                staged_patterns.push(doc.name.clone());
            }
        }
    }
    let (source_root, rules) = match &from_root {
        Some(root) => (root.as_path(), &empty_rules),
        None => (scope.context_root, scope.ignore),
    };
    let AddSources {
        plain,
        archives,
        downloads,
    } = if is_add {
        stage_add_sources(
            source_root,
            rules,
            context_patterns,
            copy.checksum.as_deref(),
            staging.path(),
        )
        .await?
    } else {
        AddSources {
            plain: context_patterns,
            archives: Vec::new(),
            downloads: Vec::new(),
        }
    };
    staged_patterns.extend(downloads);

    let rootfs = scope.blobs.stage_root(image).await?;
    let chown = match &copy.chown {
        Some(spec) => Some(crate::fs::resolve_user(&rootfs, &vars.expand(spec)?)?),
        None => None,
    };
    let ownership = Ownership { chown, chmod };
    let mut roots = Vec::new();
    if !plain.is_empty() {
        roots.push(SourceRoot {
            root: source_root,
            rules,
            patterns: plain,
            as_directory: false,
            keep_owner: from_root.is_some(),
        });
    }
    if !staged_patterns.is_empty() {
        roots.push(SourceRoot {
            root: staging.path(),
            rules: &empty_rules,
            patterns: staged_patterns,
            as_directory: false,
            keep_owner: false,
        });
    }
    for archive in &archives {
        roots.push(SourceRoot {
            root: archive.as_path(),
            rules: &empty_rules,
            patterns: vec![".".to_string()],
            as_directory: true,
            keep_owner: true,
        });
    }
    let plan = plan_copy(name, &roots, &dest, &workdir, ownership, &rootfs, scope.now)?;
    if plan.is_empty() {
        warn!("{name} copied nothing; no layer written");
    }
    if scope.single_snapshot {
        // The stage's one snapshot captures these files; they only need to
        // be in the root filesystem now.
        let layer = plan.write_layer(
            &scope.blobs.store.tmp_dir_created()?,
            scope.compression,
            scope.compression_level,
            scope.timestamps,
        )?;
        scope.blobs.apply(&layer.path, &rootfs)?;
        image.cache_key = match key_before {
            Some(key) => key,
            None => after_the_fact_key(
                scope,
                platform,
                image,
                instruction,
                vars,
                Some(&layer.diff_id),
            ),
        };
        std::fs::remove_file(&layer.path).map_err(BuildError::io("removing", &layer.path))?;
        image
            .config
            .add_history(scope.created(), &instruction.text, None, None);
        return Ok(());
    }
    let layer = commit_layer(scope, image, Some(plan), &instruction.text)?;
    if let Some(cache) = scope.cache {
        match key_before {
            Some(key) => {
                if cache.caches(LayerClass::Copy) {
                    remember(
                        cache,
                        scope,
                        platform,
                        key.clone(),
                        image,
                        layer.as_ref(),
                        &instruction.text,
                    )?;
                }
                image.cache_key = key;
            }
            None => {
                let diff_id = layer.as_ref().map(|l| l.diff_id.as_str());
                image.cache_key =
                    after_the_fact_key(scope, platform, image, instruction, vars, diff_id);
            }
        }
    }
    if let Some(layer) = layer {
        layer_written(scope, image, &layer, &rootfs, keep_rootfs)?;
    }
    Ok(())
}

/// After a step wrote `layer` as a plan (COPY, ADD, WORKDIR) rather than by
/// changing `rootfs`: the layer is applied to the root filesystem while
/// something will read it again, which is dropped otherwise rather than
/// kept stale. Either way the snapshot baseline no longer matches it.
pub(super) fn layer_written(
    scope: &BuildScope<'_>,
    image: &mut StageImage,
    layer: &crate::image::Layer,
    rootfs: &Path,
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

/// The key of a COPY/ADD whose sources were only known by copying them:
/// the layer it wrote stands for the files (no layer: nothing copied).
fn after_the_fact_key(
    scope: &BuildScope<'_>,
    platform: &Platform,
    image: &StageImage,
    instruction: &Instruction,
    vars: &StageVars,
    diff_id: Option<&str>,
) -> String {
    let files = [(
        "(layer)".to_string(),
        diff_id.unwrap_or("(none)").to_string(),
    )];
    step_key(scope, platform, image, instruction, vars, &files)
}

/// Writes `plan` as the instruction's layer, stores it and records it in
/// the image (layer list, history with its diffID). No plan, or an empty
/// one, records a history entry without a layer: no empty layers.
pub(super) fn commit_layer(
    scope: &BuildScope<'_>,
    image: &mut StageImage,
    plan: Option<LayerPlan>,
    created_by: &str,
) -> Result<Option<crate::image::Layer>, BuildError> {
    let created = scope.created();
    let Some(plan) = plan.filter(|p| !p.is_empty()) else {
        image.config.add_history(created, created_by, None, None);
        return Ok(None);
    };
    let layer = plan.write_layer(
        &scope.blobs.store.tmp_dir_created()?,
        scope.compression,
        scope.compression_level,
        scope.timestamps,
    )?;
    let layer = scope.blobs.store.put_layer(layer)?;
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

fn set_mode(path: &Path, mode: u32) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(BuildError::io("setting mode of", path))
}
