use std::time::Duration;

use super::*;

fn s(v: &str) -> String {
    v.to_string()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The single instruction of `FROM scratch\n<line>`.
fn one(line: &str) -> Instruction {
    let df = match parse(&format!("FROM scratch\n{line}\n")) {
        Ok(df) => df,
        Err(e) => panic!("{line}: {e}"),
    };
    assert_eq!(df.stages.len(), 1, "{line}");
    assert_eq!(df.stages[0].instructions.len(), 1, "{line}");
    df.stages[0].instructions[0].clone()
}

fn kind(line: &str) -> InstructionKind {
    one(line).kind
}

fn error(text: &str) -> String {
    match parse(text) {
        Ok(df) => panic!("parsed: {df:?}"),
        Err(e) => e.to_string(),
    }
}

fn copy(sources: &[&str], dest: &str) -> CopyInstruction {
    CopyInstruction {
        sources: sources.iter().map(|p| CopySource::Path(s(p))).collect(),
        dest: s(dest),
        ..CopyInstruction::default()
    }
}

fn run(command: CommandForm) -> RunInstruction {
    RunInstruction {
        command,
        heredocs: vec![],
        mounts: vec![],
        network: None,
        security: None,
    }
}

fn shell(v: &str) -> CommandForm {
    CommandForm::Shell(s(v))
}

fn exec(v: &[&str]) -> CommandForm {
    CommandForm::Exec(strings(v))
}

fn doc(name: &str, content: &str, expand: bool) -> Heredoc {
    Heredoc {
        name: s(name),
        content: s(content),
        expand,
    }
}

#[test]
fn instructions() {
    use InstructionKind as K;
    let cases: Vec<(&str, InstructionKind)> = vec![
        ("ENV a=1", K::Env(pairs(&[("a", "1")]))),
        (
            "ENV a=1 b=\"two words\" c='x y' d=e\\ f",
            K::Env(pairs(&[
                ("a", "1"),
                ("b", "\"two words\""),
                ("c", "'x y'"),
                ("d", "e\\ f"),
            ])),
        ),
        ("ENV a b", K::Env(pairs(&[("a", "b")]))),
        ("ENV a  b c \"d\"", K::Env(pairs(&[("a", "b c \"d\"")]))),
        ("ENV a=", K::Env(pairs(&[("a", "")]))),
        ("ENV a=\"\"", K::Env(pairs(&[("a", "\"\"")]))),
        ("env lower=case", K::Env(pairs(&[("lower", "case")]))),
        (
            "LABEL \"com.example.vendor\"=\"ACME Inc\" version=1.0",
            K::Label(pairs(&[
                ("\"com.example.vendor\"", "\"ACME Inc\""),
                ("version", "1.0"),
            ])),
        ),
        (
            "LABEL description This is text",
            K::Label(pairs(&[("description", "This is text")])),
        ),
        (
            "MAINTAINER Jane <jane@example.com>",
            K::Maintainer(s("Jane <jane@example.com>")),
        ),
        ("EXPOSE 80 443/udp", K::Expose(strings(&["80", "443/udp"]))),
        ("EXPOSE $PORT", K::Expose(strings(&["$PORT"]))),
        ("VOLUME [\"/a\", \"/b\"]", K::Volume(strings(&["/a", "/b"]))),
        ("VOLUME /a /b", K::Volume(strings(&["/a", "/b"]))),
        ("VOLUME [/a]", K::Volume(strings(&["[/a]"]))),
        ("USER app:app", K::User(s("app:app"))),
        ("USER ${UID}", K::User(s("${UID}"))),
        ("WORKDIR /srv/$APP", K::Workdir(s("/srv/$APP"))),
        ("STOPSIGNAL SIGTERM", K::StopSignal(s("SIGTERM"))),
        (
            "CMD [\"nginx\", \"-g\", \"daemon off;\"]",
            K::Cmd(exec(&["nginx", "-g", "daemon off;"])),
        ),
        ("CMD []", K::Cmd(exec(&[]))),
        ("CMD echo $HOME", K::Cmd(shell("echo $HOME"))),
        ("CMD [\"unterminated\"", K::Cmd(shell("[\"unterminated\""))),
        ("CMD ['single']", K::Cmd(shell("['single']"))),
        ("ENTRYPOINT [\"/entry\"]", K::Entrypoint(exec(&["/entry"]))),
        (
            "ENTRYPOINT exec top -b",
            K::Entrypoint(shell("exec top -b")),
        ),
        (
            "SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]",
            K::Shell(strings(&["/bin/bash", "-o", "pipefail", "-c"])),
        ),
        (
            "ARG A",
            K::Arg(vec![ArgDecl {
                name: s("A"),
                default: None,
            }]),
        ),
        (
            "ARG A=1 B \"C\"=x D=\"two words\"",
            K::Arg(vec![
                ArgDecl {
                    name: s("A"),
                    default: Some(s("1")),
                },
                ArgDecl {
                    name: s("B"),
                    default: None,
                },
                ArgDecl {
                    name: s("\"C\""),
                    default: Some(s("x")),
                },
                ArgDecl {
                    name: s("D"),
                    default: Some(s("\"two words\"")),
                },
            ]),
        ),
        ("RUN apt-get update", K::Run(run(shell("apt-get update")))),
        (
            "RUN [\"/bin/true\", \"x\"]",
            K::Run(run(exec(&["/bin/true", "x"]))),
        ),
        (
            "RUN [ -f /x ] && echo",
            K::Run(run(shell("[ -f /x ] && echo"))),
        ),
        (
            "RUN --mount=type=cache,target=/root/.cache --mount=type=secret,id=t --network=none --security=insecure make",
            K::Run(RunInstruction {
                mounts: strings(&["type=cache,target=/root/.cache", "type=secret,id=t"]),
                network: Some(s("none")),
                security: Some(s("insecure")),
                ..run(shell("make"))
            }),
        ),
        ("COPY a b /dest/", K::Copy(copy(&["a", "b"], "/dest/"))),
        (
            "COPY [\"a b\", \"/dest\"]",
            K::Copy(copy(&["a b"], "/dest")),
        ),
        (
            "COPY --from=builder --chown=app:app --chmod=0755 --link --parents --exclude=*.md --exclude=.git ./ /app",
            K::Copy(CopyInstruction {
                from: Some(s("builder")),
                chown: Some(s("app:app")),
                chmod: Some(s("0755")),
                link: true,
                parents: true,
                exclude: strings(&["*.md", ".git"]),
                ..copy(&["./"], "/app")
            }),
        ),
        ("COPY --link=false a /b", K::Copy(copy(&["a"], "/b"))),
        (
            "COPY --link=TRUE a /b",
            K::Copy(CopyInstruction {
                link: true,
                ..copy(&["a"], "/b")
            }),
        ),
        (
            "ADD --checksum=sha256:abc --keep-git-dir=true https://example.com/x.git /src",
            K::Add(CopyInstruction {
                checksum: Some(s("sha256:abc")),
                keep_git_dir: true,
                ..copy(&["https://example.com/x.git"], "/src")
            }),
        ),
        (
            "ADD --chown=1:1 app.tar.gz /",
            K::Add(CopyInstruction {
                chown: Some(s("1:1")),
                ..copy(&["app.tar.gz"], "/")
            }),
        ),
        ("HEALTHCHECK NONE", K::Healthcheck(Healthcheck::None)),
        (
            "HEALTHCHECK CMD curl -f http://localhost/",
            K::Healthcheck(Healthcheck::Check {
                test: shell("curl -f http://localhost/"),
                interval: None,
                timeout: None,
                start_period: None,
                start_interval: None,
                retries: None,
            }),
        ),
        (
            "HEALTHCHECK --interval=1m30s --timeout=500ms --start-period=0s --start-interval=2s --retries=3 CMD [\"/check\"]",
            K::Healthcheck(Healthcheck::Check {
                test: exec(&["/check"]),
                interval: Some(Duration::from_secs(90)),
                timeout: Some(Duration::from_millis(500)),
                start_period: Some(Duration::ZERO),
                start_interval: Some(Duration::from_secs(2)),
                retries: Some(3),
            }),
        ),
    ];
    for (line, want) in cases {
        assert_eq!(kind(line), want, "{line}");
    }
}

#[test]
fn onbuild_triggers_keep_their_own_text() {
    let got = one("ONBUILD  COPY . /app");
    assert_eq!(got.text, "ONBUILD  COPY . /app");
    assert_eq!(
        got.kind,
        InstructionKind::Onbuild(Box::new(Instruction {
            line: 2,
            text: s("COPY . /app"),
            kind: InstructionKind::Copy(copy(&["."], "/app")),
        }))
    );
    let got = one("ONBUILD RUN make \\\n  install");
    assert_eq!(
        got.kind,
        InstructionKind::Onbuild(Box::new(Instruction {
            line: 2,
            text: s("RUN make   install"),
            kind: InstructionKind::Run(run(shell("make   install"))),
        }))
    );
}

#[test]
fn stages_lines_and_text() {
    let text = "\
# syntax=docker/dockerfile:1
ARG BASE=alpine:3.20
ARG TAG

FROM --platform=$BUILDPLATFORM golang:1.22 AS Builder
WORKDIR /src
RUN go build \\
    -o /out/app \\
    ./cmd/app

FROM ${BASE}
COPY --from=builder /out/app /app
";
    let df = parse(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        df,
        Dockerfile {
            escape: '\\',
            syntax: Some(s("docker/dockerfile:1")),
            global_args: vec![
                ArgDecl {
                    name: s("BASE"),
                    default: Some(s("alpine:3.20"))
                },
                ArgDecl {
                    name: s("TAG"),
                    default: None
                },
            ],
            stages: vec![
                Stage {
                    index: 0,
                    name: Some(s("builder")),
                    base: s("golang:1.22"),
                    platform: Some(s("$BUILDPLATFORM")),
                    line: 5,
                    instructions: vec![
                        Instruction {
                            line: 6,
                            text: s("WORKDIR /src"),
                            kind: InstructionKind::Workdir(s("/src")),
                        },
                        Instruction {
                            line: 7,
                            text: s("RUN go build     -o /out/app     ./cmd/app"),
                            kind: InstructionKind::Run(run(shell(
                                "go build     -o /out/app     ./cmd/app"
                            ))),
                        },
                    ],
                },
                Stage {
                    index: 1,
                    name: None,
                    base: s("${BASE}"),
                    platform: None,
                    line: 11,
                    instructions: vec![Instruction {
                        line: 12,
                        text: s("COPY --from=builder /out/app /app"),
                        kind: InstructionKind::Copy(CopyInstruction {
                            from: Some(s("builder")),
                            ..copy(&["/out/app"], "/app")
                        }),
                    }],
                },
            ],
        }
    );
}

#[test]
fn continuation_lines_skip_comments_and_blank_lines() {
    let text = "FROM scratch\nRUN echo a \\\n# a comment\n\n  && echo b\nENV x=1 \\\n    y=2\n";
    let df = parse(text).unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<(usize, String, InstructionKind)> = df.stages[0]
        .instructions
        .iter()
        .map(|i| (i.line, i.text.clone(), i.kind.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                2,
                s("RUN echo a   && echo b"),
                InstructionKind::Run(run(shell("echo a   && echo b")))
            ),
            (
                6,
                s("ENV x=1     y=2"),
                InstructionKind::Env(pairs(&[("x", "1"), ("y", "2")]))
            ),
        ]
    );
}

#[test]
fn escape_directive_backtick() {
    let text = "# escape=`\nFROM mcr.microsoft.com/windows\nCOPY C:\\src\\app C:\\app\nRUN dir `\n    C:\\app\nENV p=C:\\x\\$y\n";
    let df = parse(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(df.escape, '`');
    let kinds: Vec<InstructionKind> = df.stages[0]
        .instructions
        .iter()
        .map(|i| i.kind.clone())
        .collect();
    assert_eq!(
        kinds,
        vec![
            InstructionKind::Copy(copy(&["C:\\src\\app"], "C:\\app")),
            InstructionKind::Run(run(shell("dir     C:\\app"))),
            InstructionKind::Env(pairs(&[("p", "C:\\x\\$y")])),
        ]
    );
    assert_eq!(df.stages[0].instructions[2].line, 6);
}

#[test]
fn directives_only_at_the_top() {
    let df = parse("FROM a\n# escape=`\nRUN a `\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(df.escape, '\\');
    assert_eq!(df.syntax, None);
    let df = parse("# hello\n# escape=`\nFROM a\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(df.escape, '\\');
    let df = parse("\u{feff}#escape=`\nFROM a\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(df.escape, '`');
}

#[test]
fn repeated_byte_order_marks_are_dropped_not_a_panic() {
    // Found by fuzzing: a second mark shifted the parsing crate's offsets
    // against kiln's by three bytes, into the middle of a character.
    let df = parse("\u{feff}\u{feff}\n#\u{da}\nARG \u{e9}\u{e9}=1\nFROM a\nRUN echo \u{e9}\n")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(df.stages.len(), 1);
    assert_eq!(df.global_args.len(), 1);
}

#[test]
fn copy_heredocs() {
    let cases: Vec<(&str, Vec<CopySource>)> = vec![
        (
            "COPY <<EOF /etc/motd\nhello $USER\nEOF",
            vec![CopySource::Heredoc(doc("EOF", "hello $USER\n", true))],
        ),
        (
            "COPY <<-EOT /x\n\t\tindented\n\tEOT",
            vec![CopySource::Heredoc(doc("EOT", "indented\n", true))],
        ),
        (
            "COPY <<\"EOF\" /x\n$not_expanded\nEOF",
            vec![CopySource::Heredoc(doc("EOF", "$not_expanded\n", false))],
        ),
        (
            "COPY <<'EOF' /x\nraw\nEOF",
            vec![CopySource::Heredoc(doc("EOF", "raw\n", false))],
        ),
        (
            "COPY <<A <<B /dir/\na\nA\nb\nB",
            vec![
                CopySource::Heredoc(doc("A", "a\n", true)),
                CopySource::Heredoc(doc("B", "b\n", true)),
            ],
        ),
        (
            "COPY <<EMPTY /x\nEMPTY",
            vec![CopySource::Heredoc(doc("EMPTY", "", true))],
        ),
    ];
    for (line, want) in cases {
        let text = format!("FROM scratch\n{line}\nUSER me\n");
        let df = parse(&text).unwrap_or_else(|e| panic!("{line}: {e}"));
        let instructions = &df.stages[0].instructions;
        match &instructions[0].kind {
            InstructionKind::Copy(c) => assert_eq!(c.sources, want, "{line}"),
            other => panic!("{line}: {other:?}"),
        }
        assert_eq!(
            instructions[1].kind,
            InstructionKind::User(s("me")),
            "{line}"
        );
        assert_eq!(instructions[1].line, line.lines().count() + 2, "{line}");
    }
}

#[test]
fn run_heredocs() {
    let cases: Vec<(&str, &str, Vec<Heredoc>)> = vec![
        (
            "RUN <<EOF\necho hi\nEOF",
            "<<EOF",
            vec![doc("EOF", "echo hi\n", true)],
        ),
        (
            "RUN <<-EOF bash\n\techo hi\n\tEOF",
            "<<-EOF bash",
            vec![doc("EOF", "echo hi\n", true)],
        ),
        (
            "RUN python3 <<'EOF'\nprint('$x')\nEOF",
            "python3 <<'EOF'",
            vec![doc("EOF", "print('$x')\n", false)],
        ),
        (
            "RUN cat <<EOF > /f\nline\nEOF",
            "cat <<EOF > /f",
            vec![doc("EOF", "line\n", true)],
        ),
        (
            "RUN <<A <<B\nfirst\nA\nsecond\nB",
            "<<A <<B",
            vec![doc("A", "first\n", true), doc("B", "second\n", true)],
        ),
        (
            "RUN --mount=type=cache,target=/c cat <<A >a 3<<-\"B\" >b\na\nA\n\tb $x\n\tB",
            "cat <<A >a 3<<-\"B\" >b",
            vec![doc("A", "a\n", true), doc("B", "b $x\n", false)],
        ),
        (
            "RUN echo '<<EOF' \"<<X\" a<<B",
            "echo '<<EOF' \"<<X\" a<<B",
            vec![],
        ),
    ];
    for (line, command, want) in cases {
        let text = format!("FROM scratch\n{line}\nUSER me\n");
        let df = parse(&text).unwrap_or_else(|e| panic!("{line}: {e}"));
        let instructions = &df.stages[0].instructions;
        match &instructions[0].kind {
            InstructionKind::Run(r) => {
                assert_eq!(r.command, shell(command), "{line}");
                assert_eq!(r.heredocs, want, "{line}");
            }
            other => panic!("{line}: {other:?}"),
        }
        assert_eq!(
            instructions[0].text,
            format!(
                "RUN {}",
                line.lines().next().unwrap_or("").trim_start_matches("RUN ")
            ),
            "{line}"
        );
        assert_eq!(instructions.len(), 2, "{line}");
        assert_eq!(
            instructions[1].kind,
            InstructionKind::User(s("me")),
            "{line}"
        );
        assert_eq!(instructions[1].line, line.lines().count() + 2, "{line}");
    }
}

#[test]
fn heredoc_restart_keeps_escape_and_lines() {
    let text = "# escape=`\nFROM a AS one\nRUN cat <<EOF >x\nbody\nEOF\nRUN echo `\n  more\nFROM b AS two\nRUN <<A <<B\na\nA\nb\nB\nENV k=v\n";
    let df = parse(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(df.escape, '`');
    let summary: Vec<(usize, String, usize)> = df
        .stages
        .iter()
        .flat_map(|st| {
            st.instructions
                .iter()
                .map(move |i| (st.index, i.text.clone(), i.line))
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (0, s("RUN cat <<EOF >x"), 3),
            (0, s("RUN echo   more"), 6),
            (1, s("RUN <<A <<B"), 9),
            (1, s("ENV k=v"), 14),
        ]
    );
    assert_eq!(df.stages[1].line, 8);
    assert_eq!(df.stages[1].name.as_deref(), Some("two"));
}

#[test]
fn run_scripts() {
    let cases: Vec<(&str, RunScript)> = vec![
        ("RUN echo hi", RunScript::Shell(s("echo hi"))),
        ("RUN [\"a\", \"b\"]", RunScript::Exec(strings(&["a", "b"]))),
        ("RUN <<EOF\necho hi\nEOF", RunScript::Shell(s("echo hi\n"))),
        (
            "RUN <<run.py\n#!/usr/bin/env python3\nprint(1)\nrun.py",
            RunScript::File {
                name: s("run.py"),
                content: s("#!/usr/bin/env python3\nprint(1)\n"),
            },
        ),
        (
            "RUN <<EOF bash\necho hi\nEOF",
            RunScript::Shell(s("<<EOF bash\necho hi\nEOF")),
        ),
        (
            "RUN cat <<A >a <<B >b\n1\nA\n2\nB",
            RunScript::Shell(s("cat <<A >a <<B >b\n1\nA\n2\nB")),
        ),
    ];
    for (line, want) in cases {
        match kind(line) {
            InstructionKind::Run(r) => assert_eq!(r.script(), want, "{line}"),
            other => panic!("{line}: {other:?}"),
        }
    }
}

#[test]
fn errors_name_the_line() {
    let cases: &[(&str, &str)] = &[
        (
            "FROM a\nRUN x\nFORM b\n",
            "Dockerfile:3: unknown instruction: FORM",
        ),
        (
            "",
            "Dockerfile: no FROM instruction: a Dockerfile needs at least one stage",
        ),
        (
            "# just a comment\nARG A=1\n",
            "Dockerfile: no FROM instruction: a Dockerfile needs at least one stage",
        ),
        (
            "ARG A\nENV B=1\nFROM a\n",
            "Dockerfile:2: no build stage in current context: only ARG may come before the first FROM",
        ),
        (
            "FROM a\nONBUILD ONBUILD RUN x\n",
            "Dockerfile:2: ONBUILD ONBUILD is not allowed",
        ),
        (
            "FROM a\nONBUILD FROM b\n",
            "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger",
        ),
        (
            "FROM a\nONBUILD MAINTAINER me\n",
            "Dockerfile:2: MAINTAINER isn't allowed as an ONBUILD trigger",
        ),
        (
            "FROM a\nONBUILD COPY <<EOF /x\nhi\nEOF\n",
            "Dockerfile:2: here-documents are not supported in ONBUILD triggers",
        ),
        (
            "FROM a\nCOPY --foo a b\n",
            "Dockerfile:2: unknown flag: --foo",
        ),
        (
            "FROM a\nCOPY --checksum=sha256:x a b\n",
            "Dockerfile:2: unknown flag: --checksum",
        ),
        (
            "FROM a\nADD --from=x a b\n",
            "Dockerfile:2: unknown flag: --from",
        ),
        (
            "FROM a\n\nRUN --foo=bar make\n",
            "Dockerfile:3: unknown flag: --foo",
        ),
        ("FROM --foo=x a\n", "Dockerfile:1: unknown flag: --foo"),
        (
            "FROM a\nCOPY --from a b\n",
            "Dockerfile:2: missing a value on flag: --from",
        ),
        (
            "FROM a\nCOPY --from=x --from=y a b\n",
            "Dockerfile:2: duplicate flag specified: --from",
        ),
        (
            "FROM a\nCOPY --link=maybe a b\n",
            "Dockerfile:2: expecting boolean value for flag --link, not: maybe",
        ),
        (
            "FROM a AS x\nFROM b AS X\n",
            "Dockerfile:2: duplicate stage name \"x\"",
        ),
        (
            "FROM a AS 1st\n",
            "Dockerfile:1: invalid name for build stage: \"1st\", name can't start with a number or contain symbols",
        ),
        (
            "FROM a\nENV x\n",
            "Dockerfile:2: ENV must have two arguments",
        ),
        (
            "FROM a\nENV x=1 y\n",
            "Dockerfile:2: syntax error - can't find = in \"y\". Must be of the form: name=value",
        ),
        (
            "FROM a\nENV =1\n",
            "Dockerfile:2: ENV names can not be blank",
        ),
        (
            "FROM a\nARG =1\n",
            "Dockerfile:2: ARG names can not be blank",
        ),
        (
            "FROM a\nRUN\n",
            "Dockerfile:2: RUN requires at least one argument",
        ),
        (
            "FROM a\nVOLUME []\n",
            "Dockerfile:2: VOLUME requires at least one argument",
        ),
        (
            "FROM a\nRUN cat <<EOF\nnever ends\n",
            "Dockerfile:2: here-document \"EOF\" is not terminated: no line \"EOF\" before the end of the file",
        ),
        (
            "FROM a\nHEALTHCHECK --interval=5 CMD x\n",
            "Dockerfile:2: HEALTHCHECK --interval: missing unit in duration \"5\"",
        ),
        (
            "FROM a\nHEALTHCHECK --timeout=10us CMD x\n",
            "Dockerfile:2: HEALTHCHECK --timeout cannot be less than 1ms: \"10us\"",
        ),
        (
            "FROM a\nHEALTHCHECK --retries=-1 CMD x\n",
            "Dockerfile:2: HEALTHCHECK --retries must be a non-negative integer, not \"-1\"",
        ),
        (
            "FROM a\nHEALTHCHECK --foo=1 CMD x\n",
            "Dockerfile:2: unknown flag: --foo",
        ),
        ("# escape=x\nFROM a\n", "Dockerfile:1: invalid escape 'x'"),
        (
            "FROM a\nSHELL /bin/sh\n",
            "Dockerfile:2: expected JSON array",
        ),
        (
            "FROM a\nRUN cat <<EOF >x\nEOF\nFORM b\n",
            "Dockerfile:4: unknown instruction: FORM",
        ),
        (
            "# escape=`\nFROM a\nRUN cat <<EOF >x\nEOF\n\nFORM b\n",
            "Dockerfile:6: unknown instruction: FORM",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(error(text), *want, "{text:?}");
    }
}

#[test]
fn onbuild_trigger_lines() {
    let got = parse_instruction("COPY . /app", '\\');
    assert_eq!(
        got,
        Ok(Instruction {
            line: 1,
            text: s("COPY . /app"),
            kind: InstructionKind::Copy(copy(&["."], "/app")),
        })
    );
    let got = parse_instruction("RUN dir `\n  C:\\", '`').map(|i| i.kind);
    assert_eq!(got, Ok(InstructionKind::Run(run(shell("dir   C:\\")))));
    let cases: &[(&str, &str)] = &[
        (
            "FROM x",
            "ONBUILD trigger \"FROM x\": FROM isn't allowed as an ONBUILD trigger",
        ),
        (
            "MAINTAINER me",
            "ONBUILD trigger \"MAINTAINER me\": MAINTAINER isn't allowed as an ONBUILD trigger",
        ),
        (
            "ONBUILD RUN x",
            "ONBUILD trigger \"ONBUILD RUN x\": ONBUILD ONBUILD is not allowed",
        ),
        (
            "BOGUS x",
            "ONBUILD trigger \"BOGUS x\": unknown instruction: BOGUS",
        ),
        (
            "RUN a\nRUN b",
            "ONBUILD trigger \"RUN a\\nRUN b\": an ONBUILD trigger must be exactly one instruction",
        ),
        (
            "",
            "ONBUILD trigger \"\": an ONBUILD trigger must be exactly one instruction",
        ),
        (
            "COPY --nope a b",
            "ONBUILD trigger \"COPY --nope a b\": unknown flag: --nope",
        ),
    ];
    for (trigger, want) in cases {
        let got = parse_instruction(trigger, '\\').map_err(|e| e.to_string());
        assert_eq!(got, Err(want.to_string()), "{trigger}");
    }
}

#[test]
fn words_markers_and_lines() {
    let cases: &[(&str, &[&str])] = &[
        ("a b", &["a", "b"]),
        ("  a=\"x y\"  b='p q' ", &["a=\"x y\"", "b='p q'"]),
        ("a=\"\" b", &["a=\"\"", "b"]),
        ("a\\ b c", &["a\\ b", "c"]),
        ("\"\"", &["\"\""]),
        ("a\\", &["a"]),
    ];
    for (rest, want) in cases {
        assert_eq!(split_words(rest, '\\'), strings(want), "{rest}");
    }
    let markers = heredoc_markers("cat <<EOF 2<<-'X' <<\"Y\"Z <<E\\F << <<a<b");
    assert_eq!(
        markers,
        vec![
            Marker {
                name: s("EOF"),
                chomp: false,
                expand: true
            },
            Marker {
                name: s("X"),
                chomp: true,
                expand: false
            },
            Marker {
                name: s("YZ"),
                chomp: false,
                expand: false
            },
            Marker {
                name: s("EF"),
                chomp: false,
                expand: true
            },
        ]
    );
    let text = "RUN a \\\n  b \\  \n\n# c\n  c\nNEXT";
    assert_eq!(logical_line(text, 0, '\\'), (s("RUN a   b   c"), 25));
    assert_eq!(logical_line("X \\\n", 0, '\\'), (s("X "), 4));
    assert_eq!(logical_line("X \\", 0, '\\'), (s("X \\"), 3));
}

mod robustness {
    use proptest::prelude::*;

    use super::super::{parse, parse_instruction};

    /// Lines built from Dockerfile fragments, so that the generated files
    /// reach deep into the parser rather than failing on the first word.
    fn fragment() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "FROM alpine AS a",
            "FROM a",
            "# escape=`",
            "ARG X=1",
            "RUN echo \\",
            "RUN cat <<EOF >f",
            "RUN <<A <<-B",
            "COPY <<EOF /x",
            "COPY --from=a / /",
            "EOF",
            "\tB",
            "A",
            "ENV a=\"b c\" d",
            "ONBUILD RUN x",
            "HEALTHCHECK --interval=1s CMD [\"x\"]",
            "  # comment",
            "",
            "é ü `",
            "\\",
        ])
        .prop_map(str::to_string)
    }

    proptest! {
        #[test]
        fn parse_never_panics(lines in prop::collection::vec(fragment(), 0..12), tail in ".{0,16}") {
            let text = format!("{}\n{tail}", lines.join("\n"));
            let _ = parse(&text);
            let _ = parse_instruction(&text, '\\');
            let _ = parse_instruction(&text, '`');
        }

        #[test]
        fn parse_never_panics_on_noise(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }
    }
}

#[test]
fn error_messages_quote_only_the_start_of_long_input() {
    // Found by fuzzing: a here-document marker (or any other quoted part)
    // thousands of characters long was printed whole.
    let marker = "M".repeat(10_000);
    for dockerfile in [
        format!("FROM a\nRUN <<{marker}\necho\n"),
        format!("FROM a\nCOPY <<{marker} /x\nhello\n"),
        format!("FROM a\nRUN --{marker}=1 true\n"),
    ] {
        let err = parse(&dockerfile).unwrap_err().to_string();
        assert!(err.starts_with("Dockerfile:"), "{err}");
        assert!(err.contains("MMMMMMMM"), "{err}");
        assert!(err.chars().count() < 1100, "{} bytes: {err}", err.len());
    }
}
