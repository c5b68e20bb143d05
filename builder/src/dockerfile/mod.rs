//! The Dockerfile front end: parse, expand, scope variables, plan stages.

mod duration;
mod error;
mod expand;
mod model;
mod parse;
mod plan;
mod vars;

pub use duration::{DurationError, parse_duration};
pub use error::{DockerfileError, Problem};
pub use expand::{ExpandError, expand, expand_words};
pub use model::*;
pub use parse::{parse, parse_instruction};
pub use plan::{Base, FromRef, Plan, PlannedStage, mount_from, plan, resolve_base, resolve_from};
pub use vars::{BuildVars, StageVars};
