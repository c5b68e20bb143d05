//! kiln's own Dockerfile model. The rest of kiln sees only these types,
//! never the parser crate's.
//!
//! Every value is kept *unexpanded* (quotes, escapes and `$VAR`s as
//! written, line continuations already joined): what a value means depends
//! on the ARG/ENV state when the build reaches the instruction, so the
//! build engine expands it then (see [`super::expand`] and
//! [`super::BuildVars`]).

use std::time::Duration;

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The escape character: `\` unless `# escape=`` ` `` says otherwise.
    pub escape: char,
    /// The `# syntax=` directive, if any. kiln does not load frontends; the
    /// value is kept so callers can warn about it.
    pub syntax: Option<String>,
    /// `ARG`s before the first `FROM`, in order.
    pub global_args: Vec<ArgDecl>,
    /// At least one stage.
    pub stages: Vec<Stage>,
}

/// One `FROM` and the instructions up to the next `FROM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub index: usize,
    /// The `AS` name, lowercased as Docker does.
    pub name: Option<String>,
    /// The image (or earlier stage name), unexpanded.
    pub base: String,
    /// `FROM --platform=`, unexpanded.
    pub platform: Option<String>,
    /// 1-based line of the `FROM`.
    pub line: usize,
    pub instructions: Vec<Instruction>,
}

impl Stage {
    /// `builder` for a named stage, `stage 2` otherwise: how messages name it.
    pub fn display_name(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => format!("stage {}", self.index),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line of the instruction keyword.
    pub line: usize,
    /// The instruction as written on its (logical) line, continuations
    /// joined, here-document bodies left out: `RUN apt-get update`. This
    /// is Docker's "original" text, used in history and errors, and for an
    /// `ONBUILD` trigger the text stored in the image config.
    pub text: String,
    pub kind: InstructionKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstructionKind {
    /// `ENV a=1 b="two words"` or the legacy `ENV a some value`.
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    Maintainer(String),
    /// Port specs as written (`80`, `443/udp`, `$PORT`).
    Expose(Vec<String>),
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    Cmd(CommandForm),
    Entrypoint(CommandForm),
    Shell(Vec<String>),
    StopSignal(String),
    Healthcheck(Healthcheck),
    Arg(Vec<ArgDecl>),
    /// The trigger; never `ONBUILD`, `FROM` or `MAINTAINER`.
    Onbuild(Box<Instruction>),
    Copy(CopyInstruction),
    Add(CopyInstruction),
    Run(RunInstruction),
}

/// Exec form (a JSON array) or shell form (a string for the `SHELL`).
/// A line that looks like JSON but is not valid JSON is shell form, as in
/// Docker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandForm {
    Exec(Vec<String>),
    Shell(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    /// Unexpanded default; `None` for a bare `ARG NAME`.
    pub default: Option<String>,
}

/// `COPY` and `ADD`; the ADD-only fields stay at their defaults for COPY.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyInstruction {
    pub sources: Vec<CopySource>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    /// `ADD --checksum=`.
    pub checksum: Option<String>,
    /// `ADD --keep-git-dir`.
    pub keep_git_dir: bool,
    /// `--exclude=` patterns, in order.
    pub exclude: Vec<String>,
    /// `COPY --parents`.
    pub parents: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopySource {
    /// A context path, glob or (ADD) URL, unexpanded.
    Path(String),
    /// `COPY <<EOF /dest`: a file named `name` with `content`.
    Heredoc(Heredoc),
}

/// A here-document. `content` ends with a newline (unless empty) and has
/// its leading tabs already removed for `<<-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word, unquoted: also the file name for COPY.
    pub name: String,
    pub content: String,
    /// False when the delimiter was quoted (`<<"EOF"`): the content is
    /// then used verbatim, otherwise variables in it are expanded (COPY;
    /// for RUN the shell does it).
    pub expand: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInstruction {
    /// For here-document RUNs, the first line as written (`<<EOF`,
    /// `python3 <<EOF`, `cat <<A >a <<B >b`).
    pub command: CommandForm,
    /// In the order their markers appear on the line.
    pub heredocs: Vec<Heredoc>,
    /// Raw `--mount` values, unexpanded (`type=cache,target=/root/.cache`).
    pub mounts: Vec<String>,
    pub network: Option<String>,
    pub security: Option<String>,
}

/// What a RUN executes, following BuildKit's treatment of here-documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunScript {
    /// Execute the argv directly.
    Exec(Vec<String>),
    /// Run the string with the stage's `SHELL` (`/bin/sh -c <string>`).
    Shell(String),
    /// `RUN <<EOF` whose body starts with `#!`: write `content` to a file
    /// named `name`, mode 0755, and execute that file.
    File { name: String, content: String },
}

impl RunInstruction {
    /// The command to execute. A RUN whose whole command is one
    /// here-document runs the body as the script (or as an executable file
    /// when it starts with `#!`); with other here-documents the line and
    /// bodies are handed to the shell together, which resolves them.
    pub fn script(&self) -> RunScript {
        let line = match &self.command {
            CommandForm::Exec(argv) => return RunScript::Exec(argv.clone()),
            CommandForm::Shell(line) => line,
        };
        if let [doc] = self.heredocs.as_slice()
            && super::parse::heredoc_markers(line).len() == 1
            && !line.trim().contains(char::is_whitespace)
        {
            if doc.content.starts_with("#!") {
                return RunScript::File {
                    name: doc.name.clone(),
                    content: doc.content.clone(),
                };
            }
            return RunScript::Shell(doc.content.clone());
        }
        let mut full = line.clone();
        for doc in &self.heredocs {
            full.push('\n');
            full.push_str(&doc.content);
            full.push_str(&doc.name);
        }
        RunScript::Shell(full)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    /// Unset options inherit from the base image. A zero duration is kept
    /// as given: Docker treats it as "inherit" too.
    Check {
        test: CommandForm,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}
