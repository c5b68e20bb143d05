//! Multi-platform drivers (`local`, `ci`, `k8s`): how the platforms of one
//! image are built, and the index that names them all.

pub mod ci;
pub mod digests;
pub mod dry_run;
pub mod index;
pub mod k8s;
pub mod local;
pub mod preflight;

use std::sync::Arc;

use crate::build::{self, BuildError, BuildOutcome, Session};
use crate::image::Descriptor;
use crate::options::BuildOptions;
use crate::options::Driver;

/// What a kiln invocation produced.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// One image (a single-platform build).
    Image(BuildOutcome),
    /// Several platforms, each pushed by digest, and the index naming them
    /// (`None` without `--publish-index`).
    Platforms {
        platforms: Vec<local::PlatformBuild>,
        index: Option<index::IndexOutcome>,
    },
    /// The ci driver's index.
    Index(index::IndexOutcome),
    /// `--dry-run`: the plan, as text.
    Plan(String),
    /// `--driver=k8s`: what the cluster published (`name@digest`), or with
    /// `--detach` the MultiArchBuild that will.
    Submitted(Vec<String>),
}

/// Why a driver did not produce its outcome.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Ci(#[from] ci::CiError),
    #[error(transparent)]
    K8s(#[from] k8s::K8sError),
    #[error(transparent)]
    IndexPlan(#[from] index::IndexPlanError),
    #[error(transparent)]
    Publish(#[from] index::PublishError),
}

impl DriverError {
    /// The exit code kiln ends with: a failed RUN's own (see
    /// [`BuildError::exit_code`]); `None` for kiln's own failures.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            DriverError::Build(error) => error.exit_code(),
            _ => None,
        }
    }
}

/// Whether `options` ask for more than a single-platform build.
pub fn is_multi_platform(options: &BuildOptions) -> bool {
    options.platforms.len() > 1 || options.multi_platform.publish_index
}

/// Runs the build `options` describe with the driver they name.
pub async fn run(options: BuildOptions) -> Result<Outcome, DriverError> {
    match options.multi_platform.driver {
        Driver::Ci => Ok(Outcome::Index(ci::run_ci(&options).await?)),
        Driver::K8s => Ok(match k8s::run_k8s(&options).await? {
            k8s::K8sOutcome::Published(references) => Outcome::Submitted(references),
            k8s::K8sOutcome::Detached { namespace, name } => {
                Outcome::Submitted(vec![format!("multiarchbuild/{name} -n {namespace}")])
            }
        }),
        Driver::Local if options.multi_platform.dry_run => {
            Ok(Outcome::Plan(dry_run::dry_run(&options).await?))
        }
        Driver::Local if !is_multi_platform(&options) => {
            Ok(Outcome::Image(local::build_single(&options).await?))
        }
        Driver::Local => run_local(options).await,
    }
}

async fn run_local(mut options: BuildOptions) -> Result<Outcome, DriverError> {
    // `--publish-index` with no platform named: a one-entry index of the
    // host's platform.
    if options.platforms.is_empty() {
        options.platforms.push(crate::platform::Platform::host());
    }
    if let Some(note) = per_platform_tags_note(&options) {
        tracing::info!("{note}");
    }
    let options = Arc::new(options);
    let session = Arc::new(Session::open(&options).await?);
    let platforms = local::build_platforms(Arc::clone(&session), Arc::clone(&options)).await?;
    if !options.multi_platform.publish_index || options.output.no_push {
        return Ok(Outcome::Platforms {
            platforms,
            index: None,
        });
    }
    let children: Vec<(Descriptor, crate::platform::Platform)> = platforms
        .iter()
        .map(|p| {
            let outcome = &p.outcome;
            (
                Descriptor::new(&outcome.media_type, &outcome.digest, outcome.size),
                p.platform.clone(),
            )
        })
        .collect();
    let multi = &options.multi_platform;
    let plan = index::plan_index(
        build::oci_mode(&options),
        multi.legacy_manifest_list,
        &children,
        &multi.index_annotations,
    )?;
    let outcome = index::publish_to_destinations(
        session.registry(),
        &options,
        &children,
        plan,
        session.signer(),
    )
    .await?;
    Ok(Outcome::Platforms {
        platforms,
        index: Some(outcome),
    })
}

/// What a multi-platform build without an index pushes, said before it
/// does: the destination's own tag is left alone.
fn per_platform_tags_note(options: &BuildOptions) -> Option<String> {
    let multi = &options.multi_platform;
    if multi.publish_index || multi.push_by_digest || options.output.no_push {
        return None;
    }
    let first = options.output.destinations.first()?;
    let tags: Vec<String> = options
        .platforms
        .iter()
        .map(|p| build::suffixed_tag(first, &p.slug()))
        .collect();
    Some(format!(
        "--publish-index=false: each platform is pushed under its own tag ({}); nothing is pushed at {first}",
        tags.join(", ")
    ))
}
