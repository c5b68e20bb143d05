//! The Dockerfile front end through its public API, the way the build
//! engine drives it: parse, set up variables for a platform, plan, then
//! walk each planned stage expanding what Docker expands.

use std::collections::BTreeMap;
use std::time::Duration;

use kiln_builder::dockerfile::{
    Base, BuildVars, CommandForm, CopySource, Dockerfile, FromRef, Healthcheck, InstructionKind,
    PlannedStage, RunScript, StageVars, expand_heredoc, parse, plan, resolve_from,
};
use kiln_builder::platform::Platform;

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/dockerfile/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => panic!("{path}: {e}"),
    }
}

fn s(v: &str) -> String {
    v.to_string()
}

/// A stand-in for the engine: one line per effect of each instruction.
fn walk(df: &Dockerfile, index: usize, vars: &mut StageVars) -> Result<Vec<String>, String> {
    let mut events = Vec::new();
    for instruction in &df.stages[index].instructions {
        let x = |w: &str| {
            vars.expand(w)
                .map_err(|e| format!("line {}: {e}", instruction.line))
        };
        let event = match &instruction.kind {
            InstructionKind::Arg(decls) => {
                let got = vars.declare_args(decls).map_err(|e| e.to_string())?;
                let shown: Vec<String> = got
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("<unset>")))
                    .collect();
                format!("ARG {}", shown.join(" "))
            }
            InstructionKind::Env(pairs) => {
                let got = vars.apply_env(pairs).map_err(|e| e.to_string())?;
                let shown: Vec<String> = got.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("ENV {}", shown.join(" "))
            }
            InstructionKind::Label(pairs) => {
                let mut shown = Vec::new();
                for (k, v) in pairs {
                    shown.push(format!("{}={}", x(k)?, x(v)?));
                }
                format!("LABEL {}", shown.join(" | "))
            }
            InstructionKind::Workdir(dir) => format!("WORKDIR {}", x(dir)?),
            InstructionKind::User(user) => format!("USER {}", x(user)?),
            InstructionKind::Expose(ports) => {
                let mut all = Vec::new();
                for p in ports {
                    all.extend(vars.expand_words(p).map_err(|e| e.to_string())?);
                }
                format!("EXPOSE {}", all.join(","))
            }
            InstructionKind::Copy(copy) => {
                let from = match &copy.from {
                    Some(from) => match resolve_from(df, index, &x(from)?) {
                        Ok(FromRef::Stage(i)) => format!(" from stage {i}"),
                        Ok(FromRef::Image(image)) => format!(" from image {image}"),
                        Err(e) => return Err(e.to_string()),
                    },
                    None => String::new(),
                };
                let mut sources = Vec::new();
                for source in &copy.sources {
                    sources.push(match source {
                        CopySource::Path(p) => x(p)?,
                        CopySource::Heredoc(doc) if doc.expand => {
                            let body = expand_heredoc(&doc.content, &|n| vars.lookup(n))
                                .map_err(|e| e.to_string())?;
                            format!("<<{}:{body:?}", doc.name)
                        }
                        CopySource::Heredoc(doc) => format!("<<{}:{:?}", doc.name, doc.content),
                    });
                }
                let chmod = match &copy.chmod {
                    Some(mode) => format!(" mode {}", x(mode)?),
                    None => String::new(),
                };
                format!(
                    "COPY{from}{chmod} {} -> {}",
                    sources.join(" "),
                    x(&copy.dest)?
                )
            }
            InstructionKind::Run(run) => {
                let script = match run.script() {
                    RunScript::Shell(script) => format!("sh -c {script:?}"),
                    RunScript::Exec(argv) => format!("exec {argv:?}"),
                    RunScript::File { name, .. } => format!("file {name}"),
                };
                let args: Vec<String> = vars
                    .run_args()
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                format!(
                    "RUN {script} args [{}] mounts {}",
                    args.join(" "),
                    run.mounts.len()
                )
            }
            InstructionKind::Healthcheck(Healthcheck::Check {
                test: CommandForm::Exec(argv),
                interval,
                timeout,
                ..
            }) => format!("HEALTHCHECK {argv:?} every {interval:?} timeout {timeout:?}"),
            InstructionKind::Entrypoint(CommandForm::Exec(argv)) => format!("ENTRYPOINT {argv:?}"),
            InstructionKind::Cmd(CommandForm::Exec(argv)) => format!("CMD {argv:?}"),
            other => format!("{other:?}"),
        };
        events.push(event);
    }
    Ok(events)
}

#[test]
fn multistage_build_for_arm64_on_amd64() {
    let df = match parse(&fixture("multistage.Dockerfile")) {
        Ok(df) => df,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1.7"));
    let build_args: BTreeMap<String, String> = [("VERSION", "1.2.3"), ("UNUSED", "x")]
        .iter()
        .map(|(k, v)| (s(k), s(v)))
        .collect();
    let vars = match BuildVars::new(
        build_args,
        &Platform::new("linux", "arm64", None),
        &Platform::new("linux", "amd64", None),
        &df.global_args,
        df.escape,
    ) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    };

    let planned = plan(&df, None, true, &vars).map(|p| (p.target, p.stages));
    assert_eq!(
        planned,
        Ok((
            2,
            vec![
                PlannedStage {
                    index: 0,
                    base: Base::Image(s("golang:1.22-alpine")),
                    platform: Some(s("linux/amd64")),
                    depends_on: vec![],
                    images: vec![],
                },
                PlannedStage {
                    index: 2,
                    base: Base::Image(s("alpine:3.20")),
                    platform: None,
                    depends_on: vec![0],
                    images: vec![],
                },
            ]
        ))
    );

    let mut build = vars.stage(&[s("PATH=/usr/local/go/bin:/usr/bin")]);
    assert_eq!(
        walk(&df, 0, &mut build),
        Ok(vec![
            s("ARG TARGETOS=linux TARGETARCH=arm64"),
            s("ARG VERSION=1.2.3"),
            s("WORKDIR /src"),
            s(
                "RUN sh -c \"go mod download\" args [TARGETOS=linux TARGETARCH=arm64 VERSION=1.2.3] mounts 2"
            ),
            s("COPY . -> ."),
            s(
                "RUN sh -c \"set -e\\nGOOS=$TARGETOS GOARCH=$TARGETARCH go build -ldflags \\\"-X main.version=$VERSION\\\" -o /out/app ./cmd/app\\n\" args [TARGETOS=linux TARGETARCH=arm64 VERSION=1.2.3] mounts 0"
            ),
        ])
    );

    let mut runtime = vars.stage(&[s("PATH=/usr/bin")]);
    assert_eq!(
        walk(&df, 2, &mut runtime),
        Ok(vec![
            s("ARG VERSION=1.2.3"),
            s("ENV APP_HOME=/srv/app APP_VERSION=1.2.3"),
            s(
                "LABEL org.opencontainers.image.version=1.2.3 | org.opencontainers.image.title=demo app"
            ),
            s("COPY from stage 0 mode 0755 /out/app -> /srv/app/bin/app"),
            s("COPY <<CONF:\"home=/srv/app\\nversion=\\\"1.2.3\\\"\\n\" -> /srv/app/app.conf"),
            s("EXPOSE 8080,9090/tcp"),
            s("USER 65532:65532"),
            format!(
                "HEALTHCHECK [\"/srv/app/bin/app\", \"health\"] every {:?} timeout {:?}",
                Some(Duration::from_secs(30)),
                Some(Duration::from_secs(3))
            ),
            s("ENTRYPOINT [\"/srv/app/bin/app\"]"),
        ])
    );
    assert_eq!(
        runtime.env_list(),
        vec![
            s("PATH=/usr/bin"),
            s("APP_HOME=/srv/app"),
            s("APP_VERSION=1.2.3")
        ]
    );
    assert_eq!(vars.unused_build_args(), vec![s("UNUSED")]);
}

#[test]
fn test_target_builds_only_what_it_needs() {
    let df = match parse(&fixture("multistage.Dockerfile")) {
        Ok(df) => df,
        Err(e) => panic!("{e}"),
    };
    let p = Platform::new("linux", "amd64", None);
    let vars = match BuildVars::new(BTreeMap::new(), &p, &p, &df.global_args, df.escape) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    };
    let order = |target: Option<&str>, skip: bool| {
        plan(&df, target, skip, &vars)
            .map(|p| p.stages.iter().map(|s| s.index).collect::<Vec<_>>())
            .map_err(|e| e.to_string())
    };
    assert_eq!(order(Some("test"), true), Ok(vec![0, 1]));
    assert_eq!(order(None, false), Ok(vec![0, 1, 2]));
    assert_eq!(
        order(Some("prod"), true),
        Err(s(
            "target stage \"prod\" not found; stages: build, test, runtime"
        ))
    );
}

#[test]
fn windows_escape_directive() {
    let df = match parse(&fixture("windows.Dockerfile")) {
        Ok(df) => df,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(df.escape, '`');
    let p = Platform::new("windows", "amd64", None);
    let vars = match BuildVars::new(BTreeMap::new(), &p, &p, &df.global_args, df.escape) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    };
    let mut stage = vars.stage(&[]);
    assert_eq!(
        walk(&df, 0, &mut stage),
        Ok(vec![
            s("ARG DIR=C:\\app"),
            s("WORKDIR C:\\app"),
            s("COPY bin\\ -> C:\\app\\bin\\"),
            s(
                "RUN sh -c \"powershell -Command     Write-Host hello;     Write-Host world\" args [DIR=C:\\app] mounts 0"
            ),
            s("CMD [\"C:\\\\app\\\\bin\\\\app.exe\"]"),
        ])
    );
    assert_eq!(df.stages[0].instructions[3].line, 7);
}
