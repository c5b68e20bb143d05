//! The build engine: context → parse → plan → stages → image → outputs.
//!
//! `run` drives one single-platform build from validated options. Stages
//! are built in the order the planner gives; each is a [`StageImage`]
//! (config, layers, and a root filesystem only when something reads it).

pub mod copy_dest;

mod copy;
mod error;
mod outputs;
mod sources;
mod stage;
mod state;

use std::collections::BTreeMap;
use std::fs::File;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

pub use error::BuildError;
pub use outputs::BuildOutcome;
use outputs::{OutputPlan, publish};
use stage::{BuildScope, build_stage};
use state::{Blobs, StageImage};

use crate::cli::BuildOptions;
use crate::cli::options::{Compression as CliCompression, OciMode as CliOciMode};
use crate::context::{BuildContext, ContextSource, FetchOptions, load_ignore_rules};
use crate::dockerfile::{self, BuildVars};
use crate::image::{BlobStore, Compression, OciMode, Timestamps};
use crate::platform::Platform;
use crate::registry::{Access, Registry, parse_reference};

/// Builds the image `options` describe for its (single) platform and sends
/// it to the outputs.
pub async fn run(options: &BuildOptions) -> Result<BuildOutcome, BuildError> {
    let target_platform = options
        .platforms
        .first()
        .cloned()
        .unwrap_or_else(Platform::host);
    let build_platform = Platform::host();
    let registry = Registry::new(options.registry.clone())?;

    let work = tempfile::Builder::new()
        .prefix("kiln-")
        .tempdir()
        .map_err(BuildError::io(
            "creating a work directory in",
            std::env::temp_dir(),
        ))?;
    let store = BlobStore::open(&work.path().join("blobs"))?;

    let context = fetch_context(options, &registry, work.path()).await?;
    let dockerfile_path = options.dockerfile_path(&context.root, |p| p.exists());
    let text =
        std::fs::read_to_string(&dockerfile_path).map_err(|source| BuildError::ReadDockerfile {
            path: dockerfile_path.clone(),
            source,
        })?;
    let dockerfile = dockerfile::parse(&text)?;
    let ignore = load_ignore_rules(&context.root, &dockerfile_path)?;

    let vars = BuildVars::new(
        options.build_args.clone(),
        &target_platform,
        &build_platform,
        &dockerfile.global_args,
        dockerfile.escape,
    )?;
    let plan = dockerfile::plan(
        &dockerfile,
        options.target.as_deref(),
        options.skip_unused_stages,
        &vars,
    )?;
    info!(
        platform = %target_platform,
        stages = plan.stages.len(),
        "building {}",
        dockerfile_path.display()
    );

    let timestamps = Timestamps::from_options(
        options.output.reproducible,
        std::env::var("SOURCE_DATE_EPOCH").ok().as_deref(),
    )?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let scope = BuildScope {
        dockerfile: &dockerfile,
        vars: &vars,
        blobs: Blobs {
            registry: &registry,
            store: &store,
            work_dir: work.path(),
        },
        context_root: &context.root,
        ignore: &ignore,
        target_platform: &target_platform,
        timestamps,
        compression: match options.output.compression {
            CliCompression::Gzip => Compression::Gzip,
            CliCompression::Zstd => Compression::Zstd,
        },
        compression_level: options.output.compression_level,
        now,
    };

    let mut built: BTreeMap<usize, StageImage> = BTreeMap::new();
    for (position, planned) in plan.stages.iter().enumerate() {
        let needed_later = plan.stages[position + 1..]
            .iter()
            .any(|later| later.depends_on.contains(&planned.index));
        let image = build_stage(
            &scope,
            planned.index,
            &planned.base,
            planned.platform.as_deref(),
            &mut built,
            needed_later,
        )
        .await?;
        built.insert(planned.index, image);
    }
    let mut final_image = built
        .remove(&plan.target)
        .ok_or_else(|| BuildError::Other("the target stage was not built".to_string()))?;
    for (key, value) in &options.labels {
        final_image.config.set_label(key, value);
    }
    final_image.config.set_created(timestamps.created(now));
    for unused in vars.unused_build_args() {
        warn!("build argument {unused} was not consumed by any ARG");
    }

    let output = &options.output;
    let outputs = OutputPlan {
        destinations: &output.destinations,
        push: !output.no_push,
        oci_mode: match output.oci_mode {
            CliOciMode::Oci => OciMode::Oci,
            CliOciMode::Docker => OciMode::Docker,
            CliOciMode::Auto => OciMode::Auto,
        },
        annotations: &output.annotations,
        tar_path: output.tar_path.as_deref(),
        oci_layout_path: output.oci_layout_path.as_deref(),
        digest_file: output.digest_file.as_deref(),
        image_name_with_digest_file: output.image_name_with_digest_file.as_deref(),
        image_name_tag_with_digest_file: output.image_name_tag_with_digest_file.as_deref(),
    };
    publish(&final_image, &outputs, &scope.blobs).await
}

/// Fetches the build context; an `oci://` context is pulled with the
/// build's registry settings.
async fn fetch_context(
    options: &BuildOptions,
    registry: &Registry,
    work: &std::path::Path,
) -> Result<BuildContext, BuildError> {
    let source = ContextSource::parse(&options.context)?;
    let fetch = FetchOptions::from_env();
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
