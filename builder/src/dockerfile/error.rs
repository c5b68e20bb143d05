use super::duration::DurationError;
use super::expand::ExpandError;

/// Why a Dockerfile (or an ONBUILD trigger) cannot be used. Messages
/// quote the Dockerfile, which may be hostile or hold what its author
/// would not print: each quoted part is cut to its start (see
/// [`bounded`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerfileError {
    /// A problem at a 1-based line of the Dockerfile.
    #[error("Dockerfile:{line}: {}", bounded(&.problem.to_string(), MAX_PROBLEM_CHARS))]
    Line { line: usize, problem: Problem },
    #[error("Dockerfile: no FROM instruction: a Dockerfile needs at least one stage")]
    NoStage,
    /// A problem in an ONBUILD trigger read from a base image's config.
    #[error("ONBUILD trigger {:?}: {}", bounded(.trigger, MAX_QUOTE_CHARS), bounded(&.problem.to_string(), MAX_PROBLEM_CHARS))]
    Trigger { trigger: String, problem: Problem },
    #[error("target stage {:?} not found; stages: {}", bounded(.target, MAX_QUOTE_CHARS), bounded(.stages, MAX_PROBLEM_CHARS))]
    UnknownTarget { target: String, stages: String },
}

/// How much of one quoted word or line a message shows.
pub const MAX_QUOTE_CHARS: usize = 200;
/// How much of a problem's whole description a message shows.
const MAX_PROBLEM_CHARS: usize = 1000;

use crate::context::excerpt as bounded;

/// What is wrong at a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Reported by the syntax parser.
    #[error("{0}")]
    Syntax(String),
    #[error("unknown flag: --{0}")]
    UnknownFlag(String),
    #[error("missing a value on flag: --{0}")]
    MissingFlagValue(String),
    #[error("duplicate flag specified: --{0}")]
    DuplicateFlag(String),
    #[error("expecting boolean value for flag --{flag}, not: {value}")]
    BadBool { flag: String, value: String },
    #[error("{0} requires at least one argument")]
    NoArguments(&'static str),
    #[error("duplicate stage name {0:?}")]
    DuplicateStage(String),
    #[error(
        "invalid name for build stage: {0:?}, name can't start with a number or contain symbols"
    )]
    InvalidStageName(String),
    #[error("{0} isn't allowed as an ONBUILD trigger")]
    OnbuildTrigger(&'static str),
    #[error("here-documents are not supported in ONBUILD triggers")]
    OnbuildHeredoc,
    #[error("an ONBUILD trigger must be exactly one instruction")]
    NotOneInstruction,
    #[error("{0} names can not be blank")]
    BlankName(&'static str),
    #[error("{0} must have two arguments")]
    TwoArguments(&'static str),
    #[error("syntax error - can't find = in {0:?}. Must be of the form: name=value")]
    MissingEquals(String),
    #[error("here-document {0:?} is not terminated: no line {0:?} before the end of the file")]
    UnterminatedHeredoc(String),
    #[error("HEALTHCHECK --{flag}: {source}")]
    Duration {
        flag: &'static str,
        source: DurationError,
    },
    #[error("HEALTHCHECK --{flag} cannot be less than 1ms: {value:?}")]
    DurationTooShort { flag: &'static str, value: String },
    #[error("HEALTHCHECK --retries must be a non-negative integer, not {0:?}")]
    Retries(String),
    #[error("{0}")]
    Expand(#[from] ExpandError),
    #[error("base name ({0}) should not be blank")]
    BlankBase(String),
    #[error("invalid stage index {index}: the Dockerfile has {count} stage(s)")]
    StageIndexOutOfRange { index: usize, count: usize },
    #[error("stage index {index} is not an earlier stage: only stages before this one can be used")]
    LaterStageIndex { index: usize },
    #[error("circular dependency detected on stage: {0}")]
    Cycle(String),
}

impl DockerfileError {
    pub(crate) fn at(line: usize, problem: impl Into<Problem>) -> Self {
        DockerfileError::Line {
            line,
            problem: problem.into(),
        }
    }
}
