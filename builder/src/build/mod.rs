//! The build engine: context → parse → plan → stages → image → outputs.
//!
//! A [`Session`] holds what the platforms of one build share; each platform
//! is built from it and then published. Stages
//! are built in the order the planner gives; each is a [`StageImage`]
//! (config, layers, and a root filesystem only when something reads it).

pub mod copy_dest;

mod attest;
mod base_cache;
mod cache_step;
mod chmod;
mod config_step;
mod copy;
mod copy_step;
mod early_push;
mod error;
mod inplace;
mod outputs;
mod run_mounts;
mod run_step;
mod seam;
mod shared;
mod sources;
mod stage;
#[cfg(test)]
mod stage_tests;
mod state;
mod step;
pub(crate) mod step_log;
mod workdir_step;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

pub use error::BuildError;
use outputs::publish;
pub use outputs::{
    BuildOutcome, DigestFiles, OutputPlan, PushMode, oci_mode, suffixed_tag, write_digest_files,
};
use stage::{
    BuildScope, ContextFiles, LayerFormat, RunSetup, SnapshotRules, finish_stage, open_stage,
};
pub use state::to_oci_descriptor;
use state::{Blobs, StageImage};

use crate::cache::{CacheCounts, CacheSettings, LayerCache, PlatformCache, cache_repository};
use crate::context::{BuildContext, ContextSource, FetchOptions, IgnoreRules, load_ignore_rules};
use crate::dockerfile::{self, Base, BuildVars, Dockerfile, Plan, PlannedStage};
use crate::image::{BlobStore, Timestamps};
use crate::options::BuildOptions;
use crate::options::Isolation;
use crate::platform::Platform;
use crate::registry::{Access, Registry, parse_reference};

/// What every platform of one build shares: the registry client, the work
/// directory and blob store, the fetched context and the parsed Dockerfile.
/// Opened once; each platform is then built from it, possibly concurrently.
pub struct Session {
    registry: Registry,
    store: BlobStore,
    context: BuildContext,
    dockerfile: Dockerfile,
    dockerfile_path: PathBuf,
    /// `sha256:…` of the Dockerfile's bytes, for provenance.
    dockerfile_digest: String,
    ignore: IgnoreRules,
    timestamps: Timestamps,
    now: u64,
    /// The layer cache, with `--cache`.
    cache: Option<Arc<LayerCache>>,
    /// `--cache-dir`'s blob store.
    cache_dir: Option<BlobStore>,
    /// `--sign-key`, opened.
    signer: Option<crate::attest::sign::Signer>,
    /// With `--isolation=inplace`: the container's `/`.
    inplace: Option<inplace::InPlaceRoot>,
    /// Image paths snapshots never capture.
    never_captured: Vec<PathBuf>,
    /// Stages every platform builds alike, built once.
    shared: shared::SharedStages,
    /// Root filesystems being removed in the background; joined before
    /// `work` goes.
    removals: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// `work` is removed if kiln is interrupted (SIGTERM, SIGINT).
    _interruptible: crate::run::interrupt::Registered,
    // Last: dropped after everything that lives inside it.
    work: tempfile::TempDir,
}

/// A platform's finished image, before it is sent anywhere.
pub struct BuiltImage {
    image: StageImage,
    /// Its cache, whose pushes must finish before the build succeeds.
    cache: Option<PlatformCache>,
    platform: Platform,
    started: std::time::Instant,
    /// When the build of this platform started, seconds since 1970.
    started_at: u64,
    /// The images its stages were built from, as resolved.
    bases: Vec<crate::attest::ResolvedBase>,
    /// Its layers being uploaded to the destinations already.
    early_push: Option<early_push::EarlyPush>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Drop for Session {
    fn drop(&mut self) {
        let removals = match self.removals.get_mut() {
            Ok(removals) => std::mem::take(removals),
            Err(poisoned) => std::mem::take(poisoned.into_inner()),
        };
        for removal in removals {
            let _ = removal.join();
        }
    }
}

impl Session {
    /// Removes the root filesystem directories `roots` on a thread of
    /// their own; [`Session`]'s drop waits for it.
    fn remove_in_background(&self, roots: Vec<state::RootFs>) {
        if roots.is_empty() {
            return;
        }
        let removal = std::thread::Builder::new()
            .name("kiln-remove-rootfs".into())
            .spawn(move || drop(roots));
        match (removal, self.removals.lock()) {
            (Ok(handle), Ok(mut removals)) => removals.push(handle),
            (Ok(handle), Err(_)) => {
                let _ = handle.join();
            }
            // No thread: the closure, and the directories, were dropped here.
            (Err(error), _) => warn!("removing root filesystems in the background: {error}"),
        }
    }

    /// Fetches the context, reads and parses the Dockerfile.
    pub async fn open(options: &BuildOptions) -> Result<Session, BuildError> {
        let in_place = options.execution.isolation == Isolation::Inplace;
        if in_place {
            inplace::refuse_outside_container(
                options.execution.force,
                &crate::run::container::ContainerFacts::observe(),
            )?;
        }
        let registry = Registry::new(options.registry.clone())?;
        // In place, the image's /tmp is part of the image: kiln's files go
        // below /kiln, which is never touched nor captured. Never /tmp by
        // default anywhere: the builder image has none.
        let work_parent = crate::work_root::work_root(in_place)?;
        let work = tempfile::Builder::new()
            .prefix("kiln-")
            .tempdir_in(&work_parent)
            .map_err(BuildError::io("creating a work directory in", &work_parent))?;
        let _interruptible = crate::run::interrupt::directory(work.path());
        let store = BlobStore::open(&work.path().join("blobs"))?;
        // A key that cannot be opened stops the build before any work.
        let signer = load_signer(options)?;
        let context = fetch_context(options, &registry, work.path()).await?;
        let dockerfile_path = options.dockerfile_path(&context.root, |p| p.exists());
        let text = crate::context::read_build_file(&context.root, &dockerfile_path)
            .and_then(|bytes| {
                String::from_utf8(bytes)
                    .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"))
            })
            .map_err(|source| BuildError::ReadDockerfile {
                path: dockerfile_path.clone(),
                source,
            })?;
        let dockerfile_digest = crate::image::sha256_digest(text.as_bytes());
        let dockerfile = dockerfile::parse(&text)?;
        let ignore = load_ignore_rules(&context.root, &dockerfile_path)?;
        let timestamps = Timestamps::from_options(
            options.output.reproducible,
            std::env::var("SOURCE_DATE_EPOCH").ok().as_deref(),
        )?;
        let now = unix_now();
        let cache = options.cache.enabled.then(|| {
            Arc::new(LayerCache::new(
                registry.clone(),
                store.clone(),
                CacheSettings {
                    ttl: options.cache.ttl,
                    run_layers: options.cache.run_layers,
                    copy_layers: options.cache.copy_layers,
                    push: options.cache.push,
                },
                now,
            ))
        });
        let cache_dir = open_cache_dir(options)?;
        let mut never_captured = run_step::never_captured(&options.execution);
        let inplace = if in_place {
            // What the build reads from / besides the image.
            never_captured.extend(
                crate::run::container::MARKER_FILES
                    .iter()
                    .map(PathBuf::from),
            );
            never_captured.extend(std::path::absolute(&context.root).ok());
            // KILN_WORK_DIR may name a directory outside /kiln.
            never_captured.push(work_parent.clone());
            // --cache-dir holds the base-image blobs and RUN's cache mounts.
            never_captured.extend(std::path::absolute(&options.cache.dir).ok());
            // Files written after the build: --cleanup must not remove them.
            let output = &options.output;
            never_captured.extend(
                [
                    &output.tar_path,
                    &output.oci_layout_path,
                    &output.digest_file,
                    &output.image_name_with_digest_file,
                    &output.image_name_tag_with_digest_file,
                ]
                .into_iter()
                .flatten()
                .filter_map(|path| std::path::absolute(path).ok()),
            );
            Some(inplace::InPlaceRoot::open(&never_captured)?)
        } else {
            None
        };
        Ok(Session {
            registry,
            store,
            context,
            dockerfile,
            dockerfile_path,
            dockerfile_digest,
            ignore,
            timestamps,
            now,
            cache,
            cache_dir,
            signer,
            inplace,
            never_captured,
            shared: shared::SharedStages::default(),
            removals: std::sync::Mutex::default(),
            _interruptible,
            work,
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// `--sign-key`, opened.
    pub fn signer(&self) -> Option<&crate::attest::sign::Signer> {
        self.signer.as_ref()
    }

    pub fn dockerfile(&self) -> &Dockerfile {
        &self.dockerfile
    }

    /// The variables and the stage plan of a build for `platform`.
    pub fn plan(
        &self,
        options: &BuildOptions,
        platform: &Platform,
    ) -> Result<(BuildVars, Plan), BuildError> {
        let vars = BuildVars::new(
            options.build_args.clone(),
            platform,
            &Platform::host(),
            &self.dockerfile.global_args,
            self.dockerfile.escape,
        )?;
        let plan = dockerfile::plan(
            &self.dockerfile,
            options.target.as_deref(),
            options.skip_unused_stages,
            &vars,
        )?;
        Ok((vars, plan))
    }

    fn blobs(&self) -> Blobs<'_> {
        Blobs {
            registry: &self.registry,
            store: &self.store,
            work_dir: self.work.path(),
            cache_dir: self.cache_dir.as_ref(),
            inplace: self.inplace.as_ref(),
        }
    }

    /// `--cleanup` with `--isolation=inplace`: empties `/` of what the build
    /// unpacked there, everything but the protected paths. Nothing to do
    /// otherwise (work directories always go).
    pub fn clean_up_root(&self) -> Result<(), BuildError> {
        if let Some(inplace) = &self.inplace {
            let removed = inplace.clear()?;
            info!("--cleanup: removed {removed} entries the build unpacked into /");
        }
        Ok(())
    }

    /// Builds every planned stage for `platform` and returns the target's
    /// image, with `--label`s and the creation time applied.
    pub async fn build(
        &self,
        options: &BuildOptions,
        platform: &Platform,
    ) -> Result<BuiltImage, BuildError> {
        let started = std::time::Instant::now();
        let started_at = unix_now();
        let (vars, plan) = self.plan(options, platform)?;
        run_mounts::check_required_secrets(&self.dockerfile, &plan, &vars, &options.secrets)?;
        let cache = match &self.cache {
            Some(cache) => {
                let repository = cache_repository(
                    options.cache.repo.as_deref(),
                    &options.output.destinations,
                    options.cache.arch_repo_suffix.as_deref(),
                    platform,
                )?;
                info!(
                    target: crate::progress::STEP_TARGET,
                    platform = %platform,
                    "[{platform}] layer cache in {repository}"
                );
                Some(cache.for_platform(repository))
            }
            None => None,
        };
        let stages: Vec<String> = plan
            .stages
            .iter()
            .map(|planned| {
                let name = self.dockerfile.stages[planned.index].name.as_deref();
                step_log::stage_name(name, planned.index)
            })
            .collect();
        info!(
            target: crate::progress::STEP_TARGET,
            platform = %platform,
            stages = plan.stages.len(),
            "[{platform}] building {}: stage{} {}",
            self.dockerfile_path.display(),
            if stages.len() == 1 { "" } else { "s" },
            stages.join(", ")
        );
        let early_push = match (&cache, options.output.no_push) {
            (None, false) => {
                early_push::EarlyPush::new(&self.registry, &options.output.destinations)
            }
            _ => None,
        };
        let bases = seam::RegistryBases {
            registry: &self.registry,
            kept: self.cache_dir.as_ref(),
            resolved: std::sync::Mutex::new(Vec::new()),
        };
        let scope = BuildScope {
            dockerfile: &self.dockerfile,
            vars: &vars,
            blobs: self.blobs(),
            bases: &bases,
            context: ContextFiles {
                root: &self.context.root,
                ignore: &self.ignore,
            },
            target_platform: platform,
            pushed_stages: plan.image_stages(),
            early_push: early_push.as_ref(),
            shared: (options.platforms.len() > 1).then_some(&self.shared),
            layers: LayerFormat {
                compression: options.output.compression,
                level: options.output.compression_level,
                timestamps: self.timestamps,
            },
            now: self.now,
            snapshots: SnapshotRules {
                mode: options.execution.snapshot_mode,
                one_per_stage: options.execution.single_snapshot,
                never_captured: self.never_captured.clone(),
            },
            cache: cache.as_ref().map(|cache| cache as &dyn seam::StepCache),
            run: RunSetup {
                runner: Arc::new(seam::Kernel {
                    isolation: options.execution.isolation,
                }),
                secrets: &options.secrets,
                cache_dir: &options.cache.dir,
            },
        };
        if scope.cache.is_some() && scope.snapshots.one_per_stage {
            warn!(
                "--single-snapshot makes one layer per stage: no layer is taken from or stored in the cache"
            );
        }
        let (mut image, others) = build_planned(&scope, &plan).await?;
        // Nothing reads a root filesystem once the image is built (its
        // layers are): removing them (a toolchain stage's can be tens of
        // thousands of files) need not hold up the push.
        // In-place roots (the container's `/`) stay with their images.
        let own_dir =
            |rootfs: &Option<state::RootFs>| matches!(rootfs, Some(state::RootFs::Dir(_)));
        let mut discarded: Vec<state::RootFs> = others
            .into_values()
            .filter(|image| own_dir(&image.rootfs))
            .filter_map(|image| image.rootfs)
            .collect();
        if own_dir(&image.rootfs) {
            discarded.extend(image.rootfs.take());
        }
        self.remove_in_background(discarded);
        for (key, value) in &options.labels {
            image.config.set_label(key, value);
        }
        image.config.set_created(self.timestamps.created(self.now));
        for unused in vars.unused_build_args() {
            warn!("build argument {unused} was not consumed by any ARG");
        }
        Ok(BuiltImage {
            image,
            cache,
            platform: platform.clone(),
            started,
            started_at,
            bases: seam::BaseImages::resolved(&bases),
            early_push,
        })
    }

    /// Sends a built image where `plan` says.
    pub async fn publish(
        &self,
        image: &BuiltImage,
        plan: &OutputPlan<'_>,
    ) -> Result<BuildOutcome, BuildError> {
        if let Some(early) = &image.early_push {
            early.finish().await;
        }
        let mut outcome = publish(&image.image, plan, &self.blobs()).await?;
        if plan.push {
            self.attest_and_sign(image, &outcome, plan).await?;
        }
        let mut cache_counts = None;
        if let Some(cache) = &image.cache {
            let CacheCounts { hits, misses } = cache.finish().await;
            outcome.cache_hits = hits;
            outcome.cache_misses = misses;
            cache_counts = Some((hits, misses));
        }
        let layers = &image.image.layers;
        let summary = step_log::Summary {
            platform: &image.platform,
            digest: &outcome.digest,
            layers: layers.len(),
            compressed_bytes: layers.iter().map(|l| l.descriptor.size).sum(),
            cache: cache_counts,
            elapsed: image.started.elapsed(),
        };
        info!(target: crate::progress::STEP_TARGET, platform = %image.platform, digest = %outcome.digest, "{summary}");
        Ok(outcome)
    }
}

/// Builds the stages of `plan` in its order; returns the target's image
/// and the other stages' (with whatever root filesystems they still hold).
async fn build_planned(
    scope: &BuildScope<'_>,
    plan: &Plan,
) -> Result<(StageImage, BTreeMap<usize, StageImage>), BuildError> {
    let mut built: BTreeMap<usize, StageImage> = BTreeMap::new();
    let alike = match scope.shared {
        Some(_) => plan.platform_independent_stages(scope.dockerfile),
        None => Default::default(),
    };
    let mut opening = Vec::new();
    for (position, planned) in plan.stages.iter().enumerate() {
        // Built already for an ONBUILD trigger of an earlier stage.
        if built.contains_key(&planned.index) {
            continue;
        }
        let needed_later = plan.stages[position + 1..]
            .iter()
            .any(|later| later.depends_on.contains(&planned.index));
        let parent_free = match planned.base {
            Base::Stage(parent) => !plan.stages[position + 1..]
                .iter()
                .any(|later| later.depends_on.contains(&parent)),
            Base::Scratch | Base::Image(_) => false,
        };
        match scope.shared {
            Some(shared) if alike.contains(&planned.index) => {
                build_or_share(
                    scope,
                    shared,
                    planned,
                    &mut built,
                    &mut opening,
                    needed_later,
                )
                .await?
            }
            _ => {
                build_with_trigger_sources(
                    scope,
                    planned,
                    &mut built,
                    &mut opening,
                    needed_later,
                    parent_free,
                )
                .await?
            }
        }
    }
    let target = built
        .remove(&plan.target)
        .ok_or_else(|| BuildError::Other("the target stage was not built".to_string()))?;
    Ok((target, built))
}

/// Puts into `built` a stage every target platform builds alike: built
/// here by the first platform's build to ask, taken from it by the others
/// (its image without root filesystem, and the images it was built from,
/// for their provenance).
async fn build_or_share(
    scope: &BuildScope<'_>,
    shared: &shared::SharedStages,
    planned: &PlannedStage,
    built: &mut BTreeMap<usize, StageImage>,
    opening: &mut Vec<usize>,
    needed_later: bool,
) -> Result<(), BuildError> {
    let cell = shared.cell(format!(
        "{}|{}|{:?}",
        planned.index,
        planned.platform.as_deref().unwrap_or_default(),
        planned.base
    ));
    let mut built_here = false;
    let entry = cell
        .get_or_try_init(|| async {
            let before = scope.bases.resolved().len();
            build_with_trigger_sources(scope, planned, built, opening, needed_later, false).await?;
            built_here = true;
            let image = built
                .get(&planned.index)
                .map(StageImage::detached)
                .ok_or_else(|| BuildError::Other("the shared stage was not built".to_string()))?;
            let resolved = scope.bases.resolved();
            Ok::<_, BuildError>(shared::SharedStage {
                image,
                bases: resolved.get(before..).unwrap_or_default().to_vec(),
                built_for: scope.target_platform.clone(),
            })
        })
        .await?;
    if !built_here {
        let stage = &scope.dockerfile.stages[planned.index];
        info!(
            target: crate::progress::STEP_TARGET,
            platform = %scope.target_platform,
            "[{}] stage {}: the same for every platform, built once (by the {} build)",
            scope.target_platform,
            step_log::stage_name(stage.name.as_deref(), planned.index),
            entry.built_for
        );
        scope.bases.add_resolved(&entry.bases);
        built.insert(planned.index, entry.image.detached());
    }
    Ok(())
}

/// Builds `planned` into `built`. Its base's ONBUILD triggers may copy
/// from stages of this Dockerfile that the plan left out (it cannot see
/// them before the base is pulled, as BuildKit cannot): those are built
/// first, between the stage's FROM and its instructions. `opening` holds
/// the stages being built, so a trigger reading from one of them is a
/// cycle rather than endless recursion.
///
/// With `adopt_parent_root`, a stage built `FROM` an earlier stage that
/// nothing after it reads takes over that stage's root filesystem instead
/// of unpacking the same layers again (`FROM base AS deps`, `FROM deps AS
/// build`: one unpack, not three).
fn build_with_trigger_sources<'a>(
    scope: &'a BuildScope<'a>,
    planned: &'a PlannedStage,
    built: &'a mut BTreeMap<usize, StageImage>,
    opening: &'a mut Vec<usize>,
    needed_later: bool,
    adopt_parent_root: bool,
) -> futures::future::BoxFuture<'a, Result<(), BuildError>> {
    Box::pin(async move {
        let mut opened = open_stage(
            scope,
            planned.index,
            &planned.base,
            planned.platform.as_deref(),
            built,
        )
        .await?;
        if let (true, Base::Stage(parent)) = (adopt_parent_root, &planned.base)
            && let Some(parent) = built.get_mut(parent)
            && matches!(parent.rootfs, Some(state::RootFs::Dir(_)))
        {
            opened.adopt_root(parent.rootfs.take());
        }
        let sources = dockerfile::trigger_dependencies(
            scope.dockerfile,
            planned.index,
            &opened.triggers,
            scope.vars,
        )?;
        let missing: Vec<usize> = sources
            .into_iter()
            .filter(|source| !built.contains_key(source))
            .collect();
        if !missing.is_empty() {
            opening.push(planned.index);
            for extra in dockerfile::plan_stages(scope.dockerfile, &missing, scope.vars)? {
                if built.contains_key(&extra.index) {
                    continue;
                }
                if opening.contains(&extra.index) {
                    let stage = &scope.dockerfile.stages[extra.index];
                    return Err(dockerfile::DockerfileError::at(
                        stage.line,
                        dockerfile::Problem::Cycle(stage.display_name()),
                    )
                    .into());
                }
                build_with_trigger_sources(scope, &extra, built, opening, true, false).await?;
            }
            opening.pop();
        }
        let image = finish_stage(scope, opened, built, needed_later).await?;
        built.insert(planned.index, image);
        Ok(())
    })
}

/// Opens `--sign-key` with `COSIGN_PASSWORD` (empty when unset, as cosign
/// takes it).
pub fn load_signer(
    options: &BuildOptions,
) -> Result<Option<crate::attest::sign::Signer>, crate::attest::sign::SignError> {
    let Some(crate::options::SignKey::File(path)) = &options.output.sign_key else {
        return Ok(None);
    };
    let password = std::env::var("COSIGN_PASSWORD").unwrap_or_default();
    crate::attest::sign::Signer::load(path, password.as_bytes()).map(Some)
}

/// `--cache-dir`'s store of blobs: used when the flag was given, or with
/// `--cache` when the default directory exists (kaniko's `/cache` volume).
fn open_cache_dir(options: &BuildOptions) -> Result<Option<BlobStore>, BuildError> {
    let cache = &options.cache;
    if !(cache.dir_given || (cache.enabled && cache.dir.is_dir())) {
        return Ok(None);
    }
    let store = BlobStore::open(&cache.dir).map_err(|e| {
        BuildError::Other(format!(
            "{e}; pass a writable --cache-dir, or leave the flag out"
        ))
    })?;
    Ok(Some(store))
}

/// Fetches the build context; an `oci://` context is pulled with the
/// build's registry settings.
async fn fetch_context(
    options: &BuildOptions,
    registry: &Registry,
    work: &std::path::Path,
) -> Result<BuildContext, BuildError> {
    let source = ContextSource::parse(&options.context)?;
    let fetch = FetchOptions {
        // The context is one more work directory of the build.
        temp_parent: Some(work.to_path_buf()),
        ..FetchOptions::from_env()
    };
    let sub_path = options.context_sub_path.as_deref();
    let ContextSource::Oci { reference } = &source else {
        return Ok(source.fetch_with(sub_path, &fetch).await?);
    };
    let image = parse_reference(reference)?;
    let (bytes, media_type, _) = registry.fetch_manifest_raw(&image, Access::Pull).await?;
    let manifest = crate::image::parse_manifest(&bytes, Some(&media_type))?;
    let [layer] = manifest.layers.as_slice() else {
        return Err(BuildError::Other(format!(
            "context artifact {reference} has {} layers; a context artifact has exactly one (the context tarball)",
            manifest.layers.len()
        )));
    };
    let path = work.join("context.tar");
    let descriptor = state::to_oci_descriptor(layer)?;
    registry
        .fetch_blob_to_file(&image, &descriptor, &path, Access::Pull)
        .await?;
    let file = File::open(&path).map_err(BuildError::io("opening", &path))?;
    Ok(BuildContext::from_archive(
        std::io::BufReader::new(file),
        sub_path,
        &fetch,
    )?)
}
