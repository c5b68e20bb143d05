//! Which stages a build needs, and in what order.
//!
//! A stage depends on another through `FROM <earlier stage name>`,
//! `COPY --from=<name or index>` and `RUN --mount=...,from=<name or index>`.
//! Values are expanded first: FROM lines in the global scope, `--from`
//! values in the stage's own ARG/ENV scope as far as the Dockerfile
//! defines it (ENV inherited from a base image is not known yet when
//! planning). A `--from` naming no stage is an image reference, as in
//! Docker.

use super::error::{DockerfileError, Problem};
use super::model::{Dockerfile, Instruction, InstructionKind, Stage};
use super::vars::BuildVars;
use crate::run::mount_spec::{csv_fields, unquote};

/// Where a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    Scratch,
    /// An earlier stage, by index.
    Stage(usize),
    /// An image reference, expanded.
    Image(String),
}

/// What a `--from` (COPY or RUN --mount) refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromRef {
    Stage(usize),
    Image(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStage {
    pub index: usize,
    pub base: Base,
    /// `FROM --platform=`, expanded.
    pub platform: Option<String>,
    /// Stages this one needs built first (base and `--from`), ascending.
    pub depends_on: Vec<usize>,
    /// Images used by `--from` that are not stages, in order of use.
    pub images: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Index of the stage whose result is the build's result.
    pub target: usize,
    /// Every stage to build, each after the stages it depends on.
    pub stages: Vec<PlannedStage>,
}

impl Plan {
    /// The stages every target platform of one build builds alike, which
    /// one build can serve to all (BuildKit gets the same from its
    /// content-addressed graph): not the target, on a platform of their
    /// own (`FROM --platform=$BUILDPLATFORM`, or a fixed one), declaring
    /// none of the `TARGET*` arguments (the only values that differ
    /// between the target platforms inside a stage), and built only from
    /// stages that are alike too. A `FROM` line that names a `TARGET*`
    /// global argument differs in its expanded base, which the sharing key
    /// includes. Not seen here: ONBUILD triggers of a base image that
    /// declare a `TARGET*` argument.
    pub fn platform_independent_stages(
        &self,
        df: &Dockerfile,
    ) -> std::collections::BTreeSet<usize> {
        let mut alike = std::collections::BTreeSet::new();
        for planned in &self.stages {
            let declares_target = df.stages[planned.index].instructions.iter().any(|i| {
                matches!(&i.kind, InstructionKind::Arg(decls)
                    if decls.iter().any(|d| d.name.starts_with("TARGET")))
            });
            if planned.index != self.target
                && planned.platform.is_some()
                && !declares_target
                && planned.depends_on.iter().all(|d| alike.contains(d))
            {
                alike.insert(planned.index);
            }
        }
        alike
    }

    /// The stages whose layers make up the result: the target and every
    /// stage it is built `FROM`, target first. The others are only read
    /// from (`COPY --from`, mounts).
    pub fn image_stages(&self) -> Vec<usize> {
        let mut chain = vec![self.target];
        let mut current = self.target;
        while let Some(Base::Stage(parent)) = self
            .stages
            .iter()
            .find(|s| s.index == current)
            .map(|s| &s.base)
        {
            if chain.contains(parent) {
                break;
            }
            chain.push(*parent);
            current = *parent;
        }
        chain
    }
}

/// Plans the build of `target` (by name; default: the last stage).
/// With `skip_unused` (kiln's default, BuildKit's behaviour), only the
/// target and what it depends on are built; without it
/// (`--skip-unused-stages=false`), every stage up to the target is, as
/// kaniko does by default.
pub fn plan(
    df: &Dockerfile,
    target: Option<&str>,
    skip_unused: bool,
    vars: &BuildVars,
) -> Result<Plan, DockerfileError> {
    let target = find_target(df, target)?;
    let roots: Vec<usize> = if skip_unused {
        vec![target]
    } else {
        (0..=target).collect()
    };
    let stages = plan_stages(df, &roots, vars)?;
    Ok(Plan { target, stages })
}

fn find_target(df: &Dockerfile, target: Option<&str>) -> Result<usize, DockerfileError> {
    let Some(target) = target else {
        return Ok(df.stages.len().saturating_sub(1));
    };
    let wanted = target.to_lowercase();
    if let Some(stage) = df
        .stages
        .iter()
        .find(|s| s.name.as_deref() == Some(wanted.as_str()))
    {
        return Ok(stage.index);
    }
    let names: Vec<&str> = df.stages.iter().filter_map(|s| s.name.as_deref()).collect();
    Err(DockerfileError::UnknownTarget {
        target: target.to_string(),
        stages: if names.is_empty() {
            "none are named".to_string()
        } else {
            names.join(", ")
        },
    })
}

/// Resolves an expanded `--from` value seen in stage `current`: a stage
/// index (must be an earlier stage), a stage name (any other stage), or
/// else an image reference. The build engine should use this too, so it
/// agrees with the plan.
pub fn resolve_from(df: &Dockerfile, current: usize, value: &str) -> Result<FromRef, Problem> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let index: usize = value.parse().map_err(|_| Problem::StageIndexOutOfRange {
            index: usize::MAX,
            count: df.stages.len(),
        })?;
        if index >= df.stages.len() {
            return Err(Problem::StageIndexOutOfRange {
                index,
                count: df.stages.len(),
            });
        }
        if index >= current {
            return Err(Problem::LaterStageIndex { index });
        }
        return Ok(FromRef::Stage(index));
    }
    let name = value.to_lowercase();
    match df
        .stages
        .iter()
        .find(|s| s.name.as_deref() == Some(name.as_str()))
    {
        Some(stage) if stage.index == current => Err(Problem::Cycle(name)),
        Some(stage) => Ok(FromRef::Stage(stage.index)),
        None => Ok(FromRef::Image(value.to_string())),
    }
}

/// Resolves an expanded FROM image of stage `current`: `scratch`, an
/// earlier stage's name, or an image (`FROM alpine AS alpine` is the image).
pub fn resolve_base(df: &Dockerfile, current: usize, image: &str) -> Base {
    if image == "scratch" {
        return Base::Scratch;
    }
    let name = image.to_lowercase();
    df.stages
        .iter()
        .take(current)
        .find(|s| s.name.as_deref() == Some(name.as_str()))
        .map_or_else(|| Base::Image(image.to_string()), |s| Base::Stage(s.index))
}

fn analyse(
    df: &Dockerfile,
    stage: &Stage,
    vars: &BuildVars,
) -> Result<PlannedStage, DockerfileError> {
    let index = stage.index;
    let at_from = |problem: Problem| DockerfileError::at(stage.line, problem);
    let image = vars
        .expand_global(&stage.base)
        .map_err(|e| at_from(e.into()))?;
    if image.is_empty() {
        return Err(at_from(Problem::BlankBase(stage.base.clone())));
    }
    let base = resolve_base(df, index, &image);
    let platform = stage
        .platform
        .as_ref()
        .map(|p| vars.expand_global(p))
        .transpose()
        .map_err(|e| at_from(e.into()))?;
    let mut depends_on = Vec::new();
    if let Base::Stage(i) = base {
        depends_on.push(i);
    }
    let mut images = Vec::new();
    for from in uses_of_other_images(df, index, &stage.instructions, vars)? {
        match from {
            FromRef::Stage(i) => depends_on.push(i),
            FromRef::Image(image) => {
                if !images.contains(&image) {
                    images.push(image);
                }
            }
        }
    }
    depends_on.sort_unstable();
    depends_on.dedup();
    Ok(PlannedStage {
        index,
        base,
        platform,
        depends_on,
        images,
    })
}

/// What `instructions` of stage `current` read from other stages or
/// images (`COPY --from`, `RUN --mount=from=`), in order, with the
/// stage's ARG and ENV values applied as planning knows them.
fn uses_of_other_images(
    df: &Dockerfile,
    current: usize,
    instructions: &[Instruction],
    vars: &BuildVars,
) -> Result<Vec<FromRef>, DockerfileError> {
    let mut uses = Vec::new();
    let mut scope = vars.planning_stage();
    for instruction in instructions {
        let at = |problem: Problem| DockerfileError::at(instruction.line, problem);
        let raw_froms: Vec<&str> = match &instruction.kind {
            InstructionKind::Arg(decls) => {
                scope.declare_args(decls).map_err(|e| at(e.into()))?;
                continue;
            }
            InstructionKind::Env(pairs) => {
                scope.apply_env(pairs).map_err(|e| at(e.into()))?;
                continue;
            }
            InstructionKind::Copy(copy) => copy.from.as_deref().into_iter().collect(),
            InstructionKind::Run(run) => run.mounts.iter().filter_map(|m| mount_from(m)).collect(),
            _ => continue,
        };
        for raw in raw_froms {
            let value = scope.expand(raw).map_err(|e| at(e.into()))?;
            uses.push(resolve_from(df, current, &value).map_err(at)?);
        }
    }
    Ok(uses)
}

/// The stages the base's ONBUILD `triggers` of stage `current` read from
/// (`ONBUILD COPY --from=<stage>`), which planning could not see: they are
/// known only once the base is pulled.
pub fn trigger_dependencies(
    df: &Dockerfile,
    current: usize,
    triggers: &[Instruction],
    vars: &BuildVars,
) -> Result<Vec<usize>, DockerfileError> {
    let mut stages: Vec<usize> = uses_of_other_images(df, current, triggers, vars)?
        .into_iter()
        .filter_map(|from| match from {
            FromRef::Stage(index) => Some(index),
            FromRef::Image(_) => None,
        })
        .collect();
    stages.sort_unstable();
    stages.dedup();
    Ok(stages)
}

/// The stages `roots` need, each after its dependencies: the plan of a
/// build whose targets are `roots`.
pub fn plan_stages(
    df: &Dockerfile,
    roots: &[usize],
    vars: &BuildVars,
) -> Result<Vec<PlannedStage>, DockerfileError> {
    let mut analysed = Vec::with_capacity(df.stages.len());
    for stage in &df.stages {
        analysed.push(analyse(df, stage, vars)?);
    }
    let mut state = vec![Visit::New; df.stages.len()];
    let mut order = Vec::new();
    for &root in roots {
        visit(df, &analysed, root, &mut state, &mut order)?;
    }
    Ok(order
        .into_iter()
        .filter_map(|index| analysed.get(index).cloned())
        .collect())
}

/// The `from=` field of a raw `--mount` value (comma-separated
/// `key=value` fields; a field may be double-quoted, as in CSV).
pub fn mount_from(mount: &str) -> Option<&str> {
    csv_fields(mount).into_iter().find_map(|field| {
        let (key, value) = unquote(field.trim()).split_once('=')?;
        key.trim().eq_ignore_ascii_case("from").then_some(value)
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Visit {
    New,
    Active,
    Done,
}

/// Depth-first, dependencies in ascending order, so the result is stable.
fn visit(
    df: &Dockerfile,
    analysed: &[PlannedStage],
    index: usize,
    state: &mut [Visit],
    order: &mut Vec<usize>,
) -> Result<(), DockerfileError> {
    match state.get(index) {
        Some(Visit::Done) | None => return Ok(()),
        Some(Visit::Active) => {
            let stage = &df.stages[index];
            return Err(DockerfileError::at(
                stage.line,
                Problem::Cycle(stage.display_name()),
            ));
        }
        Some(Visit::New) => {}
    }
    state[index] = Visit::Active;
    if let Some(stage) = analysed.get(index) {
        for &dep in &stage.depends_on {
            visit(df, analysed, dep, state, order)?;
        }
    }
    state[index] = Visit::Done;
    order.push(index);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::dockerfile::parse;
    use crate::platform::Platform;

    fn vars_for(df: &Dockerfile, args: &[(&str, &str)]) -> BuildVars {
        let args: BTreeMap<String, String> = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let p = Platform::new("linux", "arm64", None);
        match BuildVars::new(
            args,
            &p,
            &Platform::new("linux", "amd64", None),
            &df.global_args,
            df.escape,
        ) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    fn plan_of(
        text: &str,
        target: Option<&str>,
        skip_unused: bool,
        args: &[(&str, &str)],
    ) -> Result<Plan, String> {
        let df = parse(text).map_err(|e| e.to_string())?;
        let vars = vars_for(&df, args);
        plan(&df, target, skip_unused, &vars).map_err(|e| e.to_string())
    }

    #[test]
    fn the_image_is_made_of_the_target_and_the_stages_it_is_from() {
        let text = "\
FROM alpine AS base
RUN true
FROM base AS deps
RUN true
FROM golang AS builder
COPY --from=deps / /
FROM deps AS final
COPY --from=builder /app /app
";
        let plan = plan_of(text, None, true, &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan.image_stages(), [3, 1, 0]);
        let plan = plan_of(text, Some("builder"), true, &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan.image_stages(), [2]);
    }

    #[test]
    fn stages_on_the_build_platform_without_target_arguments_are_alike() {
        let text = "\
FROM --platform=$BUILDPLATFORM debian AS toolchain
RUN apt-get install gcc
FROM --platform=$BUILDPLATFORM toolchain AS generic
RUN make
FROM --platform=$BUILDPLATFORM toolchain AS cross
ARG TARGETARCH
RUN make ARCH=$TARGETARCH
FROM --platform=$BUILDPLATFORM alpine AS after-cross
COPY --from=cross /out /out
FROM debian AS native
RUN make
FROM busybox
COPY --from=generic /a /a
COPY --from=after-cross /out /out
COPY --from=native /n /n
";
        let df = parse(text).unwrap_or_else(|e| panic!("{e}"));
        let vars = vars_for(&df, &[]);
        let plan = plan(&df, None, true, &vars).unwrap_or_else(|e| panic!("{e}"));
        let alike: Vec<usize> = plan.platform_independent_stages(&df).into_iter().collect();
        // toolchain and generic; not cross (TARGETARCH), nor what is built
        // from it, nor native (the target's platform), nor the target.
        assert_eq!(alike, [0, 1]);
    }

    fn order(text: &str, target: Option<&str>, skip_unused: bool) -> Result<Vec<usize>, String> {
        plan_of(text, target, skip_unused, &[]).map(|p| p.stages.iter().map(|s| s.index).collect())
    }

    const MULTI: &str = "\
ARG GO=1.22
FROM golang:${GO} AS deps
RUN go mod download
FROM deps AS builder
RUN go build
FROM alpine AS unused
RUN echo never
FROM alpine AS tools
FROM scratch AS final
COPY --from=builder /app /app
COPY --from=tools /bin/sh /bin/sh
COPY --from=0 /go/pkg /pkg
";

    #[test]
    fn orders_and_skips() {
        type Case<'a> = (Option<&'a str>, bool, Result<Vec<usize>, &'a str>);
        let cases: &[Case] = &[
            (None, true, Ok(vec![0, 1, 3, 4])),
            (None, false, Ok(vec![0, 1, 2, 3, 4])),
            (Some("builder"), true, Ok(vec![0, 1])),
            (Some("BUILDER"), true, Ok(vec![0, 1])),
            (Some("tools"), false, Ok(vec![0, 1, 2, 3])),
            (Some("deps"), false, Ok(vec![0])),
            (
                Some("x"),
                true,
                Err("target stage \"x\" not found; stages: deps, builder, unused, tools, final"),
            ),
        ];
        for (target, skip, want) in cases {
            let want = want.clone().map_err(str::to_string);
            assert_eq!(order(MULTI, *target, *skip), want, "{target:?} {skip}");
        }
    }

    #[test]
    fn planned_stages_resolve_bases_and_images() {
        let text = "\
ARG BASE=alpine
ARG REG=registry.example.com
FROM --platform=$BUILDPLATFORM ${BASE}:3 AS Alpine
FROM alpine AS base2
ARG SRC=alpine
RUN --mount=type=bind,from=${SRC},target=/x --mount=type=cache,target=/c \\
    --mount=type=bind,\"from=$REG/tools:1\",target=/t true
COPY --from=nginx:latest /etc/nginx /etc/nginx
FROM scratch
COPY --from=base2 / /
";
        let got = plan_of(text, None, true, &[]);
        assert_eq!(
            got,
            Ok(Plan {
                target: 2,
                stages: vec![
                    PlannedStage {
                        index: 0,
                        base: Base::Image("alpine:3".to_string()),
                        platform: Some("linux/amd64".to_string()),
                        depends_on: vec![],
                        images: vec![],
                    },
                    PlannedStage {
                        index: 1,
                        base: Base::Stage(0),
                        platform: None,
                        depends_on: vec![0],
                        images: vec!["/tools:1".to_string(), "nginx:latest".to_string()],
                    },
                    PlannedStage {
                        index: 2,
                        base: Base::Scratch,
                        platform: None,
                        depends_on: vec![1],
                        images: vec![],
                    },
                ],
            })
        );
        // `REG` is global and not redeclared in the stage: it expands to
        // nothing there, and a build arg for SRC changes the mount source.
        let got = plan_of(
            text,
            Some("base2"),
            true,
            &[("SRC", "busybox"), ("BASE", "debian")],
        );
        let images = got.map(|p| {
            p.stages
                .iter()
                .map(|s| (s.base.clone(), s.images.clone()))
                .collect::<Vec<_>>()
        });
        assert_eq!(
            images,
            Ok(vec![
                (Base::Image("debian:3".to_string()), vec![]),
                (
                    Base::Stage(0),
                    vec![
                        "busybox".to_string(),
                        "/tools:1".to_string(),
                        "nginx:latest".to_string()
                    ]
                ),
            ])
        );
    }

    #[test]
    fn from_alias_of_itself_is_an_image() {
        let got = plan_of("FROM node AS node\nFROM node AS app\n", None, true, &[]);
        let bases = got.map(|p| p.stages.iter().map(|s| s.base.clone()).collect::<Vec<_>>());
        assert_eq!(
            bases,
            Ok(vec![Base::Image("node".to_string()), Base::Stage(0)])
        );
    }

    #[test]
    fn forward_references_by_name_are_ordered() {
        let text = "FROM scratch AS a\nCOPY --from=b /x /x\nFROM alpine AS b\n";
        assert_eq!(order(text, Some("a"), true), Ok(vec![1, 0]));
        assert_eq!(order(text, None, false), Ok(vec![1, 0]));
    }

    #[test]
    fn plan_errors() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            (
                "FROM a\nCOPY --from=5 /x /x\n",
                None,
                "Dockerfile:2: invalid stage index 5: the Dockerfile has 1 stage(s)",
            ),
            (
                "FROM a\nCOPY --from=0 /x /x\n",
                None,
                "Dockerfile:2: stage index 0 is not an earlier stage: only stages before this one can be used",
            ),
            (
                "FROM a\nFROM b\nRUN --mount=from=1 true\n",
                None,
                "Dockerfile:3: stage index 1 is not an earlier stage: only stages before this one can be used",
            ),
            (
                "FROM a AS me\nCOPY --from=ME /x /x\n",
                None,
                "Dockerfile:2: circular dependency detected on stage: me",
            ),
            (
                "FROM a AS one\nCOPY --from=two / /\nFROM b AS two\nCOPY --from=one / /\n",
                None,
                "Dockerfile:3: circular dependency detected on stage: two",
            ),
            (
                "ARG EMPTY\nFROM ${EMPTY}\n",
                None,
                "Dockerfile:2: base name (${EMPTY}) should not be blank",
            ),
            ("FROM a:${\n", None, "Dockerfile:1: missing '}' in \"a:${\""),
            (
                "FROM a\nCOPY --from=${X:?set-X} / /\n",
                None,
                "Dockerfile:2: X: set-X",
            ),
            (
                "FROM a\nFROM b\n",
                Some("t"),
                "target stage \"t\" not found; stages: none are named",
            ),
        ];
        for (text, target, want) in cases {
            assert_eq!(
                plan_of(text, *target, true, &[]),
                Err(want.to_string()),
                "{text}"
            );
        }
    }

    #[test]
    fn planning_does_not_consume_build_args() {
        let df = match parse("FROM a AS unused\nARG X\nFROM b\nARG Y\n") {
            Ok(df) => df,
            Err(e) => panic!("{e}"),
        };
        let vars = vars_for(&df, &[("X", "1"), ("Y", "2")]);
        let got = plan(&df, None, true, &vars).map(|p| p.stages.len());
        assert_eq!(got, Ok(1));
        assert_eq!(
            vars.unused_build_args(),
            vec!["X".to_string(), "Y".to_string()]
        );
    }

    #[test]
    fn mount_from_fields() {
        let cases: &[(&str, Option<&str>)] = &[
            ("type=bind,from=builder,target=/x", Some("builder")),
            ("FROM=Up,type=cache", Some("Up")),
            ("\"from=a,b\",target=/x", Some("a,b")),
            ("type=cache,target=/root/.cache", None),
            ("", None),
        ];
        for (mount, want) in cases {
            assert_eq!(mount_from(mount), *want, "{mount}");
        }
    }
}
