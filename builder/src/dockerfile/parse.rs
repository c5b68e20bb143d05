//! From text to [`Dockerfile`]: the `parse-dockerfile` crate does the
//! syntax (directives, escape character, continuations, JSON forms,
//! here-documents); this file converts its output into kiln's model and
//! adds what the crate leaves out: flag validation, ENV/LABEL/ARG word
//! splitting, stage-name rules, ONBUILD limits, and RUN here-documents
//! whose marker is not at the start of the command (`RUN python3 <<EOF`)
//! or that come after the first one (`RUN <<A <<B`).

use std::collections::BTreeMap;
use std::ops::Range;

use parse_dockerfile as pd;

use super::duration::parse_duration;
use super::error::{DockerfileError, Problem};
use super::model::*;

/// Parses a whole Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, DockerfileError> {
    // Every leading byte-order mark: the parsing crate drops one more
    // itself, which would shift its offsets against ours.
    let src = text.trim_start_matches('\u{feff}');
    let (escape, syntax) = directives(src)?;
    let items = parse_items(src, escape)?;
    assemble(items, escape, syntax)
}

/// Parses one instruction line, as stored for an ONBUILD trigger in an
/// image config (`COPY . /app`). `escape` is the escape character of the
/// Dockerfile being built.
pub fn parse_instruction(text: &str, escape: char) -> Result<Instruction, DockerfileError> {
    let trigger_error = |problem| DockerfileError::Trigger {
        trigger: text.to_string(),
        problem,
    };
    let header = if escape == '`' {
        "# escape=`\nFROM scratch\n"
    } else {
        "FROM scratch\n"
    };
    let doc = format!("{header}{text}\n");
    let items = parse_items(&doc, escape).map_err(|e| match e {
        DockerfileError::Line { problem, .. } | DockerfileError::Trigger { problem, .. } => {
            trigger_error(problem)
        }
        other => other,
    })?;
    let mut instructions = items.into_iter().filter_map(|item| match item {
        Item::Instruction(i) => Some(i),
        Item::From(_) => None,
    });
    match (instructions.next(), instructions.next()) {
        (Some(mut only), None) => {
            // The line within the trigger, not within our wrapper document.
            only.line = 1;
            if has_heredocs(&only) {
                return Err(trigger_error(Problem::OnbuildHeredoc));
            }
            check_trigger(&only).map_err(trigger_error)?;
            Ok(only)
        }
        _ => Err(trigger_error(match text.split_whitespace().next() {
            Some(word) if word.eq_ignore_ascii_case("FROM") => Problem::OnbuildTrigger("FROM"),
            _ => Problem::NotOneInstruction,
        })),
    }
}

/// Reads the escape and syntax directives with the crate's own rules by
/// handing it only the leading comment block: the rest of the file may
/// need our help (see [`parse_items`]).
fn directives(src: &str) -> Result<(char, Option<String>), DockerfileError> {
    let mut head_end = 0;
    for line in src.split_inclusive('\n') {
        if !line.starts_with('#') {
            break;
        }
        head_end += line.len();
    }
    let probe = format!("{}\nFROM scratch\n", src[..head_end].trim_end_matches('\n'));
    let doc = pd::parse(&probe).map_err(crate_error_at(|line| line))?;
    let escape = doc
        .parser_directives
        .escape
        .as_ref()
        .map_or('\\', |d| d.value.value);
    let syntax = doc
        .parser_directives
        .syntax
        .as_ref()
        .map(|d| d.value.value.to_string());
    Ok((escape, syntax))
}

fn crate_error_at(map_line: impl Fn(usize) -> usize) -> impl Fn(pd::Error) -> DockerfileError {
    move |e| {
        if e.line() == 0 {
            return DockerfileError::NoStage;
        }
        let message = format!("{e:#}");
        // Docker's wording for the two errors users hit most.
        let message = match message.strip_prefix("unknown instruction '") {
            // The word is quoted from the file, which may not be a
            // Dockerfile at all (a credentials file): only its start.
            Some(rest) => format!(
                "unknown instruction: {}",
                crate::context::excerpt(rest.trim_end_matches('\''), 24)
            ),
            None if message == "expected FROM" => {
                "no build stage in current context: only ARG may come before the first FROM"
                    .to_string()
            }
            None => message,
        };
        DockerfileError::at(map_line(e.line()), Problem::Syntax(message))
    }
}

/// A FROM line before stages are assembled.
struct FromLine {
    line: usize,
    base: String,
    platform: Option<String>,
    name: Option<String>,
}

enum Item {
    From(FromLine),
    Instruction(Instruction),
}

/// Byte offset → 1-based line.
struct Lines(Vec<usize>);

impl Lines {
    fn new(src: &str) -> Lines {
        let mut starts = vec![0];
        starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        Lines(starts)
    }
    fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&start| start <= offset)
    }
}

/// Where the crate's current input sits in the real source. After a RUN
/// whose here-documents we collected ourselves, parsing restarts behind
/// them on a copy of the remaining text headed by a synthetic
/// `FROM scratch` (and escape directive), so that the crate neither
/// re-reads the bodies as instructions nor complains about a missing FROM.
struct Ctx<'s> {
    src: &'s str,
    lines: &'s Lines,
    escape: char,
    /// Offset in `src` of the first byte after the synthetic header.
    base: usize,
    header_len: usize,
}

impl Ctx<'_> {
    fn off(&self, chunk_offset: usize) -> usize {
        (self.base + chunk_offset).saturating_sub(self.header_len)
    }
    fn line(&self, chunk_offset: usize) -> usize {
        self.lines.line(self.off(chunk_offset))
    }
}

enum Converted {
    Item(Item),
    /// A RUN with here-document bodies the crate did not collect: collect
    /// them from `resume` on, in `src` coordinates.
    MoreHeredocs {
        instruction: Instruction,
        missing: Vec<Marker>,
        resume: usize,
    },
}

fn parse_items(src: &str, escape: char) -> Result<Vec<Item>, DockerfileError> {
    let lines = Lines::new(src);
    let header = if escape == '`' {
        "# escape=`\nFROM scratch\n"
    } else {
        "FROM scratch\n"
    };
    let header_lines = header.matches('\n').count();
    let mut items = Vec::new();
    let mut base: Option<usize> = None;
    'chunks: loop {
        let owned;
        let (chunk, cx) = match base {
            None => (
                src,
                Ctx {
                    src,
                    lines: &lines,
                    escape,
                    base: 0,
                    header_len: 0,
                },
            ),
            Some(at) => {
                owned = format!("{header}{}", &src[at..]);
                (
                    owned.as_str(),
                    Ctx {
                        src,
                        lines: &lines,
                        escape,
                        base: at,
                        header_len: header.len(),
                    },
                )
            }
        };
        let first_line = base.map_or(1, |at| lines.line(at));
        let skip = usize::from(base.is_some());
        let map_line = |line: usize| {
            if base.is_some() {
                first_line + line.saturating_sub(header_lines + 1)
            } else {
                line
            }
        };
        let iter = pd::parse_iter(chunk).map_err(crate_error_at(map_line))?;
        for parsed in iter.skip(skip) {
            let instruction = parsed.map_err(crate_error_at(map_line))?;
            match convert(&instruction, &cx)? {
                Converted::Item(item) => items.push(item),
                Converted::MoreHeredocs {
                    mut instruction,
                    missing,
                    resume,
                } => {
                    let mut at = resume;
                    for marker in missing {
                        let (content, next) =
                            collect_heredoc(src, at, &marker).ok_or_else(|| {
                                DockerfileError::at(
                                    instruction.line,
                                    Problem::UnterminatedHeredoc(crate::context::excerpt(
                                        &marker.name,
                                        super::error::MAX_QUOTE_CHARS,
                                    )),
                                )
                            })?;
                        if let InstructionKind::Run(run) = &mut instruction.kind {
                            run.heredocs.push(Heredoc {
                                name: marker.name,
                                content,
                                expand: marker.expand,
                            });
                        }
                        at = next;
                    }
                    items.push(Item::Instruction(instruction));
                    base = Some(at);
                    continue 'chunks;
                }
            }
        }
        return Ok(items);
    }
}

fn assemble(
    items: Vec<Item>,
    escape: char,
    syntax: Option<String>,
) -> Result<Dockerfile, DockerfileError> {
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for item in items {
        match item {
            Item::From(from) => {
                if let Some(name) = &from.name {
                    if !valid_stage_name(name) {
                        return Err(DockerfileError::at(
                            from.line,
                            Problem::InvalidStageName(name.clone()),
                        ));
                    }
                    if stages.iter().any(|s| s.name.as_ref() == Some(name)) {
                        return Err(DockerfileError::at(
                            from.line,
                            Problem::DuplicateStage(name.clone()),
                        ));
                    }
                }
                stages.push(Stage {
                    index: stages.len(),
                    name: from.name,
                    base: from.base,
                    platform: from.platform,
                    line: from.line,
                    instructions: Vec::new(),
                });
            }
            Item::Instruction(instruction) => match stages.last_mut() {
                Some(stage) => stage.instructions.push(instruction),
                None => match instruction.kind {
                    InstructionKind::Arg(decls) => global_args.extend(decls),
                    // The crate already refuses anything but ARG before
                    // the first FROM.
                    _ => {
                        return Err(DockerfileError::at(
                            instruction.line,
                            Problem::Syntax(
                                "no build stage in current context: only ARG may come before the first FROM"
                                    .to_string(),
                            ),
                        ));
                    }
                },
            },
        }
    }
    if stages.is_empty() {
        return Err(DockerfileError::NoStage);
    }
    Ok(Dockerfile {
        escape,
        syntax,
        global_args,
        stages,
    })
}

/// Docker's rule: `^[a-z][a-z0-9-_.]*$` (names are lowercased first).
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

fn keyword_span(instruction: &pd::Instruction<'_>) -> Option<Range<usize>> {
    use pd::Instruction as I;
    Some(
        match instruction {
            I::Add(i) => &i.add,
            I::Arg(i) => &i.arg,
            I::Cmd(i) => &i.cmd,
            I::Copy(i) => &i.copy,
            I::Entrypoint(i) => &i.entrypoint,
            I::Env(i) => &i.env,
            I::Expose(i) => &i.expose,
            I::From(i) => &i.from,
            I::Healthcheck(i) => &i.healthcheck,
            I::Label(i) => &i.label,
            I::Maintainer(i) => &i.maintainer,
            I::Onbuild(i) => &i.onbuild,
            I::Run(i) => &i.run,
            I::Shell(i) => &i.shell,
            I::Stopsignal(i) => &i.stopsignal,
            I::User(i) => &i.user,
            I::Volume(i) => &i.volume,
            I::Workdir(i) => &i.workdir,
            _ => return None,
        }
        .span
        .clone(),
    )
}

fn convert(instruction: &pd::Instruction<'_>, cx: &Ctx<'_>) -> Result<Converted, DockerfileError> {
    use pd::Instruction as I;
    let Some(keyword) = keyword_span(instruction) else {
        // A newer parser version with an instruction kiln does not know.
        return Err(DockerfileError::at(
            1,
            Problem::Syntax("unsupported instruction".to_string()),
        ));
    };
    let start = keyword.start;
    let line = cx.line(start);
    let (text, line_end) = logical_line(cx.src, cx.off(start), cx.escape);
    let text = text.trim_end().to_string();
    let at = |problem: Problem| DockerfileError::at(line, problem);
    let escape = cx.escape;
    let kind = match instruction {
        I::From(from) => {
            let flags = Flags::parse(&from.options, &[("platform", Kind::Str)]).map_err(at)?;
            return Ok(Converted::Item(Item::From(FromLine {
                line,
                base: from.image.value.to_string(),
                platform: flags.string("platform"),
                name: from.as_.as_ref().map(|(_, name)| name.value.to_lowercase()),
            })));
        }
        I::Arg(arg) => {
            InstructionKind::Arg(parse_arg_decls(&arg.arguments.value, escape).map_err(at)?)
        }
        I::Env(env) => InstructionKind::Env(
            parse_name_values(&env.arguments.value, "ENV", escape).map_err(at)?,
        ),
        I::Label(label) => InstructionKind::Label(
            parse_name_values(&label.arguments.value, "LABEL", escape).map_err(at)?,
        ),
        I::Maintainer(m) => InstructionKind::Maintainer(m.name.value.to_string()),
        I::Expose(e) => {
            InstructionKind::Expose(e.arguments.iter().map(|a| a.value.to_string()).collect())
        }
        I::Volume(v) => {
            let values: Vec<String> = match &v.arguments {
                pd::JsonOrStringArray::Json(json) => {
                    json.value.iter().map(|a| a.value.to_string()).collect()
                }
                pd::JsonOrStringArray::String(words) => {
                    words.iter().map(|a| a.value.to_string()).collect()
                }
            };
            if values.is_empty() {
                return Err(at(Problem::NoArguments("VOLUME")));
            }
            InstructionKind::Volume(values)
        }
        I::User(u) => InstructionKind::User(u.arguments.value.to_string()),
        I::Workdir(w) => InstructionKind::Workdir(w.arguments.value.to_string()),
        I::Stopsignal(s) => InstructionKind::StopSignal(s.arguments.value.to_string()),
        I::Cmd(c) => InstructionKind::Cmd(command_form(&c.arguments, escape, "CMD").map_err(at)?),
        I::Entrypoint(e) => InstructionKind::Entrypoint(
            command_form(&e.arguments, escape, "ENTRYPOINT").map_err(at)?,
        ),
        I::Shell(s) => {
            InstructionKind::Shell(s.arguments.iter().map(|a| a.value.to_string()).collect())
        }
        I::Healthcheck(h) => InstructionKind::Healthcheck(healthcheck(h, escape).map_err(at)?),
        I::Onbuild(o) => {
            let inner = match convert(&o.instruction, cx)? {
                Converted::Item(Item::Instruction(inner)) => inner,
                Converted::Item(Item::From(_)) => return Err(at(Problem::OnbuildTrigger("FROM"))),
                Converted::MoreHeredocs { .. } => return Err(at(Problem::OnbuildHeredoc)),
            };
            if has_heredocs(&inner) {
                return Err(at(Problem::OnbuildHeredoc));
            }
            check_trigger(&inner).map_err(at)?;
            InstructionKind::Onbuild(Box::new(inner))
        }
        I::Copy(c) => InstructionKind::Copy(
            copy_instruction(&c.options, &c.src, &c.dest, false, cx).map_err(at)?,
        ),
        I::Add(a) => InstructionKind::Add(
            copy_instruction(&a.options, &a.src, &a.dest, true, cx).map_err(at)?,
        ),
        I::Run(run) => {
            let flags = Flags::parse(
                &run.options,
                &[
                    ("mount", Kind::List),
                    ("network", Kind::Str),
                    ("security", Kind::Str),
                ],
            )
            .map_err(at)?;
            let (command, markers) = match &run.arguments {
                pd::Command::Exec(argv) => (
                    CommandForm::Exec(argv.value.iter().map(|a| a.value.to_string()).collect()),
                    Vec::new(),
                ),
                _ => {
                    // The crate's span starts after a leading here-document
                    // marker, so take the command from the source instead.
                    let after_flags = run
                        .options
                        .iter()
                        .map(|f| f.span().end)
                        .max()
                        .unwrap_or(keyword.end);
                    let (line_text, _) = logical_line(cx.src, cx.off(after_flags), escape);
                    let command = line_text.trim().to_string();
                    if command.is_empty() {
                        return Err(at(Problem::NoArguments("RUN")));
                    }
                    let markers = heredoc_markers(&command);
                    (CommandForm::Shell(command), markers)
                }
            };
            let heredocs: Vec<Heredoc> = run
                .here_docs
                .iter()
                .map(|doc| crate_heredoc(doc, cx))
                .collect();
            let resume = match run.here_docs.last() {
                Some(doc) => line_after(cx.src, cx.off(doc.span.end)),
                None => line_end,
            };
            let found = heredocs.len();
            let kind = InstructionKind::Run(RunInstruction {
                command,
                heredocs,
                mounts: flags.list("mount"),
                network: flags.string("network"),
                security: flags.string("security"),
            });
            if markers.len() > found {
                return Ok(Converted::MoreHeredocs {
                    instruction: Instruction { line, text, kind },
                    missing: markers.into_iter().skip(found).collect(),
                    resume,
                });
            }
            kind
        }
        _ => {
            return Err(at(Problem::Syntax("unsupported instruction".to_string())));
        }
    };
    Ok(Converted::Item(Item::Instruction(Instruction {
        line,
        text,
        kind,
    })))
}

fn has_heredocs(instruction: &Instruction) -> bool {
    match &instruction.kind {
        InstructionKind::Run(run) => !run.heredocs.is_empty(),
        InstructionKind::Copy(copy) | InstructionKind::Add(copy) => copy
            .sources
            .iter()
            .any(|s| matches!(s, CopySource::Heredoc(_))),
        _ => false,
    }
}

/// Docker's ONBUILD limits (ONBUILD ONBUILD is refused by the crate).
fn check_trigger(trigger: &Instruction) -> Result<(), Problem> {
    match trigger.kind {
        InstructionKind::Maintainer(_) => Err(Problem::OnbuildTrigger("MAINTAINER")),
        InstructionKind::Onbuild(_) => Err(Problem::Syntax(
            "ONBUILD ONBUILD is not allowed".to_string(),
        )),
        _ => Ok(()),
    }
}

fn command_form(
    command: &pd::Command<'_>,
    escape: char,
    instruction: &'static str,
) -> Result<CommandForm, Problem> {
    match command {
        pd::Command::Exec(argv) => Ok(CommandForm::Exec(
            argv.value.iter().map(|a| a.value.to_string()).collect(),
        )),
        pd::Command::Shell(shell) => {
            let joined = logical_line(shell.value, 0, escape).0.trim().to_string();
            if joined.is_empty() {
                return Err(Problem::NoArguments(instruction));
            }
            Ok(CommandForm::Shell(joined))
        }
        _ => Err(Problem::Syntax(format!("unsupported {instruction} form"))),
    }
}

fn healthcheck(h: &pd::HealthcheckInstruction<'_>, escape: char) -> Result<Healthcheck, Problem> {
    let command = match &h.arguments {
        pd::HealthcheckArguments::Cmd { arguments, .. } => arguments,
        // Docker ignores options given with NONE.
        _ => return Ok(Healthcheck::None),
    };
    let flags = Flags::parse(
        &h.options,
        &[
            ("interval", Kind::Str),
            ("timeout", Kind::Str),
            ("start-period", Kind::Str),
            ("start-interval", Kind::Str),
            ("retries", Kind::Str),
        ],
    )?;
    let duration = |flag: &'static str| -> Result<Option<std::time::Duration>, Problem> {
        let Some(value) = flags.string(flag) else {
            return Ok(None);
        };
        let d = parse_duration(&value).map_err(|source| Problem::Duration { flag, source })?;
        if !d.is_zero() && d < std::time::Duration::from_millis(1) {
            return Err(Problem::DurationTooShort { flag, value });
        }
        Ok(Some(d))
    };
    let retries = match flags.string("retries") {
        None => None,
        Some(value) => Some(
            value
                .parse::<u32>()
                .map_err(|_| Problem::Retries(value.clone()))?,
        ),
    };
    Ok(Healthcheck::Check {
        test: command_form(command, escape, "HEALTHCHECK CMD")?,
        interval: duration("interval")?,
        timeout: duration("timeout")?,
        start_period: duration("start-period")?,
        start_interval: duration("start-interval")?,
        retries,
    })
}

fn copy_instruction(
    options: &[pd::Flag<'_>],
    sources: &[pd::Source<'_>],
    dest: &pd::UnescapedString<'_>,
    add: bool,
    cx: &Ctx<'_>,
) -> Result<CopyInstruction, Problem> {
    let spec: &[(&str, Kind)] = if add {
        &[
            ("chown", Kind::Str),
            ("chmod", Kind::Str),
            ("link", Kind::Bool),
            ("checksum", Kind::Str),
            ("keep-git-dir", Kind::Bool),
            ("exclude", Kind::List),
        ]
    } else {
        &[
            ("from", Kind::Str),
            ("chown", Kind::Str),
            ("chmod", Kind::Str),
            ("link", Kind::Bool),
            ("parents", Kind::Bool),
            ("exclude", Kind::List),
        ]
    };
    let flags = Flags::parse(options, spec)?;
    let sources = sources
        .iter()
        .map(|source| match source {
            pd::Source::HereDoc(doc) => Ok(CopySource::Heredoc(crate_heredoc(doc, cx))),
            pd::Source::Path(path) => Ok(CopySource::Path(path.value.to_string())),
            _ => Err(Problem::Syntax("unsupported COPY source".to_string())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CopyInstruction {
        sources,
        dest: dest.value.to_string(),
        from: flags.string("from"),
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link"),
        checksum: flags.string("checksum"),
        keep_git_dir: flags.bool("keep-git-dir"),
        exclude: flags.list("exclude"),
        parents: flags.bool("parents"),
    })
}

/// The crate does not keep a here-document's name; its body span ends
/// where the delimiter line starts (after any stripped tabs), so the name
/// is read from there.
fn crate_heredoc(doc: &pd::HereDoc<'_>, cx: &Ctx<'_>) -> Heredoc {
    let at = cx.off(doc.span.end);
    let rest = &cx.src[at.min(cx.src.len())..];
    let name = rest.split('\n').next().unwrap_or("").trim_end_matches('\r');
    Heredoc {
        name: name.to_string(),
        content: doc.value.to_string(),
        expand: doc.expand,
    }
}

/// Offset of the line after the one containing `at`.
fn line_after(src: &str, at: usize) -> usize {
    match src.get(at..).and_then(|rest| rest.find('\n')) {
        Some(i) => at + i + 1,
        None => src.len(),
    }
}

/// Reads a here-document body starting at `at`; returns the content and
/// the offset after the delimiter line.
fn collect_heredoc(src: &str, mut at: usize, marker: &Marker) -> Option<(String, usize)> {
    let mut content = String::new();
    while at < src.len() {
        let next = line_after(src, at);
        let raw = &src[at..next];
        let line = if marker.chomp {
            raw.trim_start_matches('\t')
        } else {
            raw
        };
        if line.trim_end_matches('\n').trim_end_matches('\r') == marker.name {
            return Some((content, next));
        }
        content.push_str(line);
        at = next;
    }
    None
}

/// The logical line starting at `start`: physical lines ending in the
/// escape character are joined (the escape and the newline removed), and
/// blank or comment lines inside a continuation are dropped, as Docker
/// does. Returns the joined text and the offset after the line.
pub(crate) fn logical_line(src: &str, start: usize, escape: char) -> (String, usize) {
    let mut out = String::new();
    let mut at = start.min(src.len());
    loop {
        let next = line_after(src, at);
        let has_newline = src[at..next].ends_with('\n');
        let line = src[at..next].trim_end_matches('\n').trim_end_matches('\r');
        let trimmed = line.trim_end_matches([' ', '\t']);
        match trimmed.strip_suffix(escape) {
            Some(body) if has_newline => {
                out.push_str(body);
                at = next;
                while at < src.len() {
                    let following = line_after(src, at);
                    let text = src[at..following].trim_start();
                    if text.is_empty() || text.starts_with('#') {
                        at = following;
                    } else {
                        break;
                    }
                }
                if at >= src.len() {
                    return (out, at);
                }
            }
            _ => {
                out.push_str(line);
                return (out, next);
            }
        }
    }
}

/// Docker's word splitting for ENV, LABEL and ARG: whitespace separates
/// words except inside quotes or after the escape character; quotes and
/// escapes stay in the word (expansion removes them later).
fn split_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut quote: Option<char> = None;
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
                word.push(c);
            } else if c == escape && q != '\'' {
                if let Some(next) = chars.next() {
                    word.push(c);
                    word.push(next);
                }
            } else {
                word.push(c);
            }
            continue;
        }
        if c.is_whitespace() {
            if in_word && (quoted || !word.is_empty()) {
                words.push(std::mem::take(&mut word));
            }
            in_word = false;
            quoted = false;
            continue;
        }
        in_word = true;
        if c == '\'' || c == '"' {
            quote = Some(c);
            quoted = true;
            word.push(c);
        } else if c == escape {
            if let Some(next) = chars.next() {
                word.push(c);
                word.push(next);
            }
        } else {
            word.push(c);
        }
    }
    if in_word && (quoted || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// `ENV`/`LABEL` arguments: `k=v ...`, or the legacy `k some value` when
/// the first word has no `=`.
fn parse_name_values(
    rest: &str,
    instruction: &'static str,
    escape: char,
) -> Result<Vec<(String, String)>, Problem> {
    let words = split_words(rest, escape);
    let Some(first) = words.first() else {
        return Err(Problem::NoArguments(instruction));
    };
    if !first.contains('=') {
        let rest = rest.trim();
        let Some((name, value)) = rest.split_once(|c: char| " \t\r\u{b}\u{c}".contains(c)) else {
            return Err(Problem::TwoArguments(instruction));
        };
        return Ok(vec![(
            name.to_string(),
            value
                .trim_start_matches(|c: char| " \t\r\u{b}\u{c}".contains(c))
                .to_string(),
        )]);
    }
    words
        .into_iter()
        .map(|word| {
            let Some((name, value)) = word.split_once('=') else {
                return Err(Problem::MissingEquals(word));
            };
            if name.is_empty() {
                return Err(Problem::BlankName(instruction));
            }
            Ok((name.to_string(), value.to_string()))
        })
        .collect()
}

fn parse_arg_decls(rest: &str, escape: char) -> Result<Vec<ArgDecl>, Problem> {
    let words = split_words(rest, escape);
    if words.is_empty() {
        return Err(Problem::NoArguments("ARG"));
    }
    words
        .into_iter()
        .map(|word| match word.split_once('=') {
            Some(("", _)) => Err(Problem::BlankName("ARG")),
            Some((name, value)) => Ok(ArgDecl {
                name: name.to_string(),
                default: Some(value.to_string()),
            }),
            None => Ok(ArgDecl {
                name: word,
                default: None,
            }),
        })
        .collect()
}

/// A here-document marker found on a RUN line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    pub name: String,
    /// `<<-`: leading tabs are stripped from body and delimiter lines.
    pub chomp: bool,
    pub expand: bool,
}

/// The here-document markers on a shell command line, as BuildKit finds
/// them: shell words of the form `[n]<<[-]WORD` (quotes inside WORD
/// disable expansion of the body).
pub(crate) fn heredoc_markers(line: &str) -> Vec<Marker> {
    raw_shell_words(line)
        .iter()
        .filter_map(|word| {
            let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
            let rest = rest.strip_prefix("<<")?;
            let (chomp, rest) = match rest.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, rest),
            };
            if rest.is_empty() || rest.contains('<') {
                return None;
            }
            let (name, quoted) = unquote(rest);
            (!name.is_empty()).then_some(Marker {
                name,
                chomp,
                expand: !quoted,
            })
        })
        .collect()
}

/// Splits on whitespace outside quotes, keeping quotes and backslash
/// escapes in the words.
fn raw_shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => {
                quote = None;
                word.push(c);
            }
            Some('"') if c == '\\' => {
                word.push(c);
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            Some(_) => word.push(c),
            None if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            None => {
                if c == '\'' || c == '"' {
                    quote = Some(c);
                }
                word.push(c);
                if c == '\\'
                    && let Some(next) = chars.next()
                {
                    word.push(next);
                }
            }
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Removes shell quoting from a word; reports whether quotes were used.
fn unquote(word: &str) -> (String, bool) {
    let mut out = String::new();
    let mut quoted = false;
    let mut quote: Option<char> = None;
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some('"') if c == '\\' => match chars.next() {
                Some(next @ ('"' | '\\' | '$')) => out.push(next),
                Some(next) => {
                    out.push(c);
                    out.push(next);
                }
                None => out.push(c),
            },
            Some(_) => out.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                quoted = true;
            }
            None if c == '\\' => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            None => out.push(c),
        }
    }
    (out, quoted)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Bool,
    List,
}

/// Validated instruction flags (`--from=x`, `--link`, `--exclude=a`…).
struct Flags {
    strings: BTreeMap<&'static str, String>,
    lists: BTreeMap<&'static str, Vec<String>>,
    bools: BTreeMap<&'static str, bool>,
}

impl Flags {
    fn parse(flags: &[pd::Flag<'_>], spec: &[(&'static str, Kind)]) -> Result<Flags, Problem> {
        let mut parsed = Flags {
            strings: BTreeMap::new(),
            lists: BTreeMap::new(),
            bools: BTreeMap::new(),
        };
        for flag in flags {
            let name = flag.name.value.as_ref();
            let Some(&(key, kind)) = spec.iter().find(|(key, _)| *key == name) else {
                return Err(Problem::UnknownFlag(name.to_string()));
            };
            let value = flag.value.as_ref().map(|v| v.value.to_string());
            match kind {
                Kind::Bool => {
                    let on = match value.as_deref() {
                        None => true,
                        Some(v) if v.eq_ignore_ascii_case("true") => true,
                        Some(v) if v.eq_ignore_ascii_case("false") => false,
                        Some(v) => {
                            return Err(Problem::BadBool {
                                flag: key.to_string(),
                                value: v.to_string(),
                            });
                        }
                    };
                    if parsed.bools.insert(key, on).is_some() {
                        return Err(Problem::DuplicateFlag(key.to_string()));
                    }
                }
                Kind::Str => {
                    let value = value.ok_or_else(|| Problem::MissingFlagValue(key.to_string()))?;
                    if parsed.strings.insert(key, value).is_some() {
                        return Err(Problem::DuplicateFlag(key.to_string()));
                    }
                }
                Kind::List => {
                    let value = value.ok_or_else(|| Problem::MissingFlagValue(key.to_string()))?;
                    parsed.lists.entry(key).or_default().push(value);
                }
            }
        }
        Ok(parsed)
    }

    fn string(&self, key: &str) -> Option<String> {
        self.strings.get(key).cloned()
    }
    fn list(&self, key: &str) -> Vec<String> {
        self.lists.get(key).cloned().unwrap_or_default()
    }
    fn bool(&self, key: &str) -> bool {
        self.bools.get(key).copied().unwrap_or(false)
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
