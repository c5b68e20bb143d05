//! The Dockerfile front end: parse, expand, scope variables, plan stages.

mod duration;
mod error;
mod expand;
mod model;
mod parse;

pub use duration::{DurationError, parse_duration};
pub use error::{DockerfileError, Problem};
pub use expand::{ExpandError, expand, expand_words};
pub use model::*;
pub use parse::{parse, parse_instruction};
