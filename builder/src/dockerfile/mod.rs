//! The Dockerfile front end: text → [`Dockerfile`] → [`Plan`], plus the
//! variable machinery the build engine uses while it walks a stage.
//!
//! Pure logic only: everything takes `&str` or values; no I/O.
//!
//! How the engine is meant to drive it, per platform:
//! 1. [`parse`] the Dockerfile. Values in the model are unexpanded.
//! 2. [`BuildVars::new`] with the `--build-arg`s, the target and build
//!    platforms and [`Dockerfile::global_args`].
//! 3. [`plan`] the stages for `--target` (with or without
//!    `--skip-unused-stages`); each [`PlannedStage`] has its base resolved
//!    (expanded FROM) and the stages and images it needs.
//! 4. For each planned stage: [`BuildVars::stage`] with the base image's
//!    config `Env`, then per instruction: `ARG` → [`StageVars::declare_args`],
//!    `ENV` → [`StageVars::apply_env`], the expanded instructions (listed at
//!    [`expand`]) → [`StageVars::expand`] /
//!    [`StageVars::expand_words`] (EXPOSE), `COPY <<EOF` bodies with
//!    `expand: true` → [`expand_heredoc`], `COPY --from` →
//!    [`resolve_from`], RUN → [`RunInstruction::script`] with
//!    [`StageVars::env`] + [`StageVars::run_args`] as environment.
//!    ONBUILD triggers of a base image: [`parse_instruction`] each, run
//!    them first.
//! 5. Warn about [`BuildVars::unused_build_args`].

mod duration;
mod error;
mod expand;
mod model;
mod parse;
mod plan;
mod vars;

pub use duration::{DurationError, parse_duration};
pub use error::{DockerfileError, Problem};
pub use expand::{ExpandError, expand, expand_heredoc, expand_words};
pub use model::*;
pub use parse::{parse, parse_instruction};
pub use plan::{
    Base, FromRef, Plan, PlannedStage, mount_from, plan, plan_stages, resolve_base, resolve_from,
    trigger_dependencies,
};
pub use vars::{BuildVars, StageVars};
