//! ARG and ENV scoping, driven by the build engine as it walks a stage.
//!
//! Docker's rules, as implemented here:
//! - The global scope holds the automatic platform ARGs (`TARGETPLATFORM`,
//!   `TARGETOS`, `TARGETARCH`, `TARGETVARIANT`, `BUILDPLATFORM`, `BUILDOS`,
//!   `BUILDARCH`, `BUILDVARIANT`) and the ARGs before the first FROM. It
//!   expands FROM lines (image and `--platform`) and nothing else.
//! - Inside a stage nothing global is visible until the stage declares it:
//!   `ARG NAME` (no default) takes the global value, or the platform value
//!   for the automatic ARGs.
//! - A `--build-arg` overrides an ARG's default, globally and in stages.
//!   The automatic platform ARGs always describe the build's platforms and
//!   cannot be overridden by `--build-arg`.
//! - ENV (from the base image config and ENV instructions) always wins
//!   over an ARG of the same name when expanding.
//! - Docker's predefined proxy ARGs (`HTTP_PROXY`, `no_proxy`, ...) reach
//!   RUN without an ARG declaration and are never reported as unused.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use super::expand::{ExpandError, expand, expand_heredoc, expand_words};
use super::model::ArgDecl;
use crate::platform::Platform;

const PREDEFINED_PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The variables of one build (one platform): build args, platform ARGs
/// and the global scope. Cheap to clone; stages share it.
#[derive(Debug, Clone)]
pub struct BuildVars {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    escape: char,
    build_args: BTreeMap<String, String>,
    platform_args: Vec<(String, String)>,
    /// Platform ARGs, then the global ARG declarations; the last entry of
    /// a name wins. `None`: declared without a value.
    global: Vec<(String, Option<String>)>,
    /// Build args some ARG declaration consumed. Stages may be driven from
    /// several threads, hence the lock.
    used: Mutex<BTreeSet<String>>,
}

impl Shared {
    fn platform_value(&self, name: &str) -> Option<String> {
        self.platform_args
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    fn global_value(&self, name: &str) -> Option<String> {
        self.global
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.clone())
    }

    /// The value an `ARG` declaration takes; `scope` expands its default.
    fn resolve(
        &self,
        decl: &ArgDecl,
        scope: &dyn Fn(&str) -> Option<String>,
        inherit_global: bool,
        mark_used: bool,
    ) -> Result<Option<String>, ExpandError> {
        // The automatic platform value fills a declaration without a
        // default; a default the Dockerfile gives (`ARG TARGETARCH=x86_64`)
        // stands, as in BuildKit.
        if decl.default.is_none()
            && let Some(value) = self.platform_value(&decl.name)
        {
            return Ok(Some(value));
        }
        if let Some(value) = self.build_args.get(&decl.name) {
            if mark_used {
                self.used
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(decl.name.clone());
            }
            return Ok(Some(value.clone()));
        }
        if let Some(default) = &decl.default {
            return expand(default, self.escape, scope).map(Some);
        }
        Ok(if inherit_global {
            self.global_value(&decl.name)
        } else {
            None
        })
    }
}

fn platform_args(target: &Platform, build: &Platform) -> Vec<(String, String)> {
    let mut args = Vec::new();
    for (prefix, platform) in [("TARGET", target), ("BUILD", build)] {
        // An explicit `linux/arm64/v8` keeps its variant in the image, but
        // BuildKit presents it without one here, and Dockerfiles match on
        // `linux/arm64`.
        let variant = match platform.variant.as_deref() {
            Some("v8") if platform.architecture == "arm64" => "",
            Some(variant) => variant,
            None => "",
        };
        let mut full = format!("{}/{}", platform.os, platform.architecture);
        if !variant.is_empty() {
            full = format!("{full}/{variant}");
        }
        args.push((format!("{prefix}PLATFORM"), full));
        args.push((format!("{prefix}OS"), platform.os.clone()));
        args.push((format!("{prefix}ARCH"), platform.architecture.clone()));
        args.push((format!("{prefix}VARIANT"), variant.to_string()));
    }
    args
}

impl BuildVars {
    /// Sets up the global scope: platform ARGs, then `global_args` (the
    /// Dockerfile's ARGs before the first FROM) in order, each default
    /// expanded with what precedes it.
    pub fn new(
        build_args: BTreeMap<String, String>,
        target: &Platform,
        build: &Platform,
        global_args: &[ArgDecl],
        escape: char,
    ) -> Result<BuildVars, ExpandError> {
        let platform_args = platform_args(target, build);
        let mut shared = Shared {
            escape,
            build_args,
            global: platform_args
                .iter()
                .map(|(n, v)| (n.clone(), Some(v.clone())))
                .collect(),
            platform_args,
            used: Mutex::new(BTreeSet::new()),
        };
        // An ARG's name is taken as written, never expanded: BuildKit
        // expands only the default (buildMetaArgs, dispatchArg), so
        // `ARG ${name}=value` declares a variable named `${name}`.
        for decl in global_args {
            let value = {
                let scope = |name: &str| shared.global_value(name);
                shared.resolve(decl, &scope, false, true)?
            };
            shared.global.push((decl.name.clone(), value));
        }
        Ok(BuildVars {
            shared: Arc::new(shared),
        })
    }

    /// The global scope, for expanding FROM lines and planning.
    pub fn global_lookup(&self, name: &str) -> Option<String> {
        self.shared.global_value(name)
    }

    /// Expands a FROM image or `--platform` value in the global scope.
    pub fn expand_global(&self, word: &str) -> Result<String, ExpandError> {
        expand(word, self.shared.escape, &|name| self.global_lookup(name))
    }

    /// A fresh scope for a stage whose base image config has `base_env`
    /// (`KEY=VALUE` entries, as in an OCI config's `Env`).
    pub fn stage(&self, base_env: &[String]) -> StageVars {
        self.stage_inheriting(base_env, &[])
    }

    /// A scope for a stage `FROM` another stage of the build, which starts
    /// with the ARGs that stage declared (`parent_args`, its
    /// [`StageVars::args`]) as BuildKit's does: its dispatch state copies
    /// the base stage's build args, and their values are in the state's
    /// environment (kaniko's issue 1911).
    pub fn stage_inheriting(
        &self,
        base_env: &[String],
        parent_args: &[(String, Option<String>)],
    ) -> StageVars {
        let mut vars = StageVars {
            shared: Arc::clone(&self.shared),
            env: Vec::new(),
            args: parent_args.to_vec(),
            planning: false,
        };
        for entry in base_env {
            let (name, value) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
            vars.set_env(name, value);
        }
        vars
    }

    /// A stage scope for the planner: it resolves ARGs like the build
    /// will, but does not count build args as consumed, since the planner
    /// also looks at stages that will not be built.
    pub(crate) fn planning_stage(&self) -> StageVars {
        StageVars {
            planning: true,
            ..self.stage(&[])
        }
    }

    /// `--build-arg`s no ARG has consumed so far, sorted; Docker and kaniko
    /// warn about these after the build.
    pub fn unused_build_args(&self) -> Vec<String> {
        let used = self
            .shared
            .used
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.shared
            .build_args
            .keys()
            .filter(|name| !used.contains(*name) && !PREDEFINED_PROXY_ARGS.contains(&name.as_str()))
            .cloned()
            .collect()
    }
}

/// The variables of one stage as the build proceeds through it.
#[derive(Debug, Clone)]
pub struct StageVars {
    shared: Arc<Shared>,
    env: Vec<(String, String)>,
    args: Vec<(String, Option<String>)>,
    planning: bool,
}

impl StageVars {
    /// What `$name` means at this point of the stage: ENV first, then the
    /// ARGs the stage declared.
    pub fn lookup(&self, name: &str) -> Option<String> {
        if let Some((_, value)) = self.env.iter().find(|(n, _)| n == name) {
            return Some(value.clone());
        }
        self.args
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.clone())
    }

    pub fn expand(&self, word: &str) -> Result<String, ExpandError> {
        expand(word, self.shared.escape, &|name| self.lookup(name))
    }

    /// The ARGs the stage declared so far (its parent stage's first), with
    /// their values: what a stage `FROM` this one starts with.
    pub fn args(&self) -> &[(String, Option<String>)] {
        &self.args
    }

    /// The value of the latest declaration of ARG `name`, if it has one.
    fn arg_value(&self, name: &str) -> Option<String> {
        self.args
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.clone())
    }

    /// Expands a `COPY <<EOF` body whose delimiter was not quoted: quotes
    /// stay as written (see [`super::expand_heredoc`]).
    pub fn expand_heredoc(&self, content: &str) -> Result<String, ExpandError> {
        expand_heredoc(content, &|name| self.lookup(name))
    }

    /// Word-splitting expansion, for EXPOSE.
    pub fn expand_words(&self, text: &str) -> Result<Vec<String>, ExpandError> {
        expand_words(text, self.shared.escape, &|name| self.lookup(name))
    }

    /// Processes an `ARG` instruction. Declarations are applied one after
    /// the other (`ARG a=1 b=$a` gives b=1). Returns each name with the
    /// value it took, for history and cache keys.
    pub fn declare_args(
        &mut self,
        decls: &[ArgDecl],
    ) -> Result<Vec<(String, Option<String>)>, ExpandError> {
        let mut resolved = Vec::new();
        // The name as written, as in BuildKit (see `BuildVars::new`).
        for decl in decls {
            let value = {
                let scope = |name: &str| self.lookup(name);
                self.shared.resolve(decl, &scope, true, !self.planning)?
            };
            // A bare `ARG NAME` that finds no value keeps the one the stage
            // already has (an earlier ARG, or its parent stage's): BuildKit
            // then leaves the variable in the state's environment as it is.
            let value = value.or_else(|| self.arg_value(&decl.name));
            self.args.push((decl.name.clone(), value.clone()));
            resolved.push((decl.name.clone(), value));
        }
        Ok(resolved)
    }

    /// Processes an `ENV` instruction: every key and value is expanded
    /// with the state *before* the instruction (`ENV a=2 b=$a` gives b the
    /// old a), then all are set. Returns the expanded pairs.
    pub fn apply_env(
        &mut self,
        pairs: &[(String, String)],
    ) -> Result<Vec<(String, String)>, ExpandError> {
        let expanded = pairs
            .iter()
            .map(|(k, v)| Ok((self.expand(k)?, self.expand(v)?)))
            .collect::<Result<Vec<_>, ExpandError>>()?;
        for (name, value) in &expanded {
            self.set_env(name, value);
        }
        Ok(expanded)
    }

    /// Sets one (already expanded) environment variable, keeping the
    /// position of an existing one as Docker does in the image config.
    pub fn set_env(&mut self, name: &str, value: &str) {
        match self.env.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value.to_string(),
            None => self.env.push((name.to_string(), value.to_string())),
        }
    }

    /// The stage's environment, in image-config order.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The environment as `KEY=VALUE` entries for the image config.
    pub fn env_list(&self) -> Vec<String> {
        self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// The ARG values a RUN sees as extra environment (besides [`env`]):
    /// declared ARGs with a value that no ENV shadows, in declaration
    /// order, then any predefined proxy ARGs given as `--build-arg` and not
    /// declared. Also what a RUN's cache key must include.
    ///
    /// [`env`]: StageVars::env
    pub fn run_args(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (name, value) in &self.args {
            let Some(value) = value else { continue };
            if self.env.iter().any(|(n, _)| n == name) {
                continue;
            }
            match out.iter_mut().find(|(n, _)| n == name) {
                Some(entry) => entry.1 = value.clone(),
                None => out.push((name.clone(), value.clone())),
            }
        }
        for name in PREDEFINED_PROXY_ARGS {
            if let Some(value) = self.shared.build_args.get(name)
                && !out.iter().any(|(n, _)| n == name)
                && !self.env.iter().any(|(n, _)| n == name)
            {
                out.push((name.to_string(), value.clone()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        v.to_string()
    }

    fn decl(name: &str, default: Option<&str>) -> ArgDecl {
        ArgDecl {
            name: s(name),
            default: default.map(s),
        }
    }

    fn build_args(v: &[(&str, &str)]) -> BTreeMap<String, String> {
        v.iter().map(|(k, v)| (s(k), s(v))).collect()
    }

    fn target() -> Platform {
        Platform::new("linux", "arm", Some("v7"))
    }

    fn host() -> Platform {
        Platform::new("linux", "amd64", None)
    }

    fn vars(args: &[(&str, &str)], globals: &[ArgDecl]) -> BuildVars {
        match BuildVars::new(build_args(args), &target(), &host(), globals, '\\') {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn global_scope_expands_from_lines() {
        let globals = [
            decl("BASE", Some("alpine")),
            decl("TAG", Some("3.20-$TARGETARCH")),
            decl("UNSET", None),
            decl("REF", Some("${BASE}:${TAG}")),
        ];
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (&[], "${REF}", "alpine:3.20-arm"),
            (&[("BASE", "debian")], "${REF}", "debian:3.20-arm"),
            (&[("REF", "busybox")], "$REF", "busybox"),
            (&[], "${UNSET:-scratch}", "scratch"),
            (&[("UNSET", "x")], "${UNSET:-scratch}", "x"),
            (
                &[],
                "$TARGETPLATFORM|$TARGETOS|$TARGETARCH|$TARGETVARIANT",
                "linux/arm/v7|linux|arm|v7",
            ),
            (
                &[],
                "$BUILDPLATFORM|$BUILDOS|$BUILDARCH|${BUILDVARIANT-unset}",
                "linux/amd64|linux|amd64|",
            ),
            (&[("TARGETARCH", "s390x")], "$TARGETARCH", "arm"),
        ];
        for (args, word, want) in cases {
            let v = vars(args, &globals);
            assert_eq!(
                v.expand_global(word).as_deref(),
                Ok(*want),
                "{word} {args:?}"
            );
        }
    }

    #[test]
    fn stage_sees_globals_only_after_redeclaring() {
        let v = vars(
            &[("FROM_CLI", "cli")],
            &[decl("VERSION", Some("1.0")), decl("FROM_CLI", None)],
        );
        let mut st = v.stage(&[]);
        let steps: Vec<(Option<ArgDecl>, &str, &str)> = vec![
            (None, "[$VERSION|$TARGETARCH|$FROM_CLI]", "[||]"),
            (Some(decl("VERSION", None)), "[$VERSION]", "[1.0]"),
            (Some(decl("TARGETARCH", None)), "[$TARGETARCH]", "[arm]"),
            (
                Some(decl("BUILDPLATFORM", None)),
                "[$BUILDPLATFORM]",
                "[linux/amd64]",
            ),
            (Some(decl("FROM_CLI", None)), "[$FROM_CLI]", "[cli]"),
            (Some(decl("VERSION", Some("2.0"))), "[$VERSION]", "[2.0]"),
            (Some(decl("LOCAL", None)), "[${LOCAL-unset}]", "[unset]"),
        ];
        for (declare, word, want) in steps {
            if let Some(d) = declare
                && let Err(e) = st.declare_args(&[d])
            {
                panic!("{e}");
            }
            assert_eq!(st.expand(word).as_deref(), Ok(want), "{word}");
        }
        assert_eq!(v.unused_build_args(), Vec::<String>::new());
    }

    #[test]
    fn build_arg_overrides_default_and_args_chain() {
        let v = vars(&[("B", "cli")], &[]);
        let mut st = v.stage(&[]);
        let got = st.declare_args(&[
            decl("A", Some("1")),
            decl("B", Some("2")),
            decl("C", Some("$A-$B")),
        ]);
        assert_eq!(
            got,
            Ok(vec![
                (s("A"), Some(s("1"))),
                (s("B"), Some(s("cli"))),
                (s("C"), Some(s("1-cli"))),
            ])
        );
        assert_eq!(st.expand("$C").as_deref(), Ok("1-cli"));
    }

    #[test]
    fn env_wins_over_arg() {
        let v = vars(&[("X", "cli")], &[]);
        let mut st = v.stage(&["PATH=/usr/bin".to_string(), "X=base".to_string()]);
        assert_eq!(st.expand("$X").as_deref(), Ok("base"));
        let _ = st.declare_args(&[decl("X", None), decl("Y", Some("argy"))]);
        assert_eq!(st.expand("$X $Y").as_deref(), Ok("base argy"));
        let applied = st.apply_env(&[(s("Y"), s("env-$Y"))]);
        assert_eq!(applied, Ok(vec![(s("Y"), s("env-argy"))]));
        let _ = st.declare_args(&[decl("Y", Some("later"))]);
        assert_eq!(st.expand("$Y").as_deref(), Ok("env-argy"));
        assert_eq!(
            st.env_list(),
            vec![s("PATH=/usr/bin"), s("X=base"), s("Y=env-argy")]
        );
    }

    #[test]
    fn env_instruction_uses_state_before_it() {
        let v = vars(&[], &[]);
        let mut st = v.stage(&["A=0".to_string(), "NOEQ".to_string()]);
        let applied = st.apply_env(&[
            (s("A"), s("1")),
            (s("B"), s("$A")),
            (s("\"C\""), s("\"two words\"")),
        ]);
        assert_eq!(
            applied,
            Ok(vec![
                (s("A"), s("1")),
                (s("B"), s("0")),
                (s("C"), s("two words"))
            ])
        );
        assert_eq!(
            st.env(),
            &[
                (s("A"), s("1")),
                (s("NOEQ"), s("")),
                (s("B"), s("0")),
                (s("C"), s("two words")),
            ]
        );
        assert_eq!(
            st.expand_heredoc("a=$A \"$B\" '$C'\n").as_deref(),
            Ok("a=1 \"0\" 'two words'\n")
        );
        assert_eq!(
            st.apply_env(&[(s("D"), s("${A"))])
                .map_err(|e| e.to_string()),
            Err(s("missing '}' in \"${A\""))
        );
    }

    #[test]
    fn run_args_and_unused_build_args() {
        let v = vars(
            &[
                ("USED", "u"),
                ("NEVER", "n"),
                ("ALSO_NEVER", "a"),
                ("HTTP_PROXY", "http://proxy:3128"),
                ("no_proxy", "localhost"),
            ],
            &[decl("GLOBAL_ONLY", None)],
        );
        let mut st = v.stage(&["SHADOW=env".to_string()]);
        let _ = st.declare_args(&[
            decl("USED", None),
            decl("SHADOW", Some("arg")),
            decl("EMPTY", None),
            decl("D", Some("d")),
            decl("no_proxy", Some("override")),
        ]);
        assert_eq!(
            st.run_args(),
            vec![
                (s("USED"), s("u")),
                (s("D"), s("d")),
                (s("no_proxy"), s("localhost")),
                (s("HTTP_PROXY"), s("http://proxy:3128")),
            ]
        );
        assert_eq!(v.unused_build_args(), vec![s("ALSO_NEVER"), s("NEVER")]);
    }

    #[test]
    fn platform_args_use_buildkit_forms() {
        let cases: &[(Platform, &str)] = &[
            (
                Platform::new("linux", "arm64", None),
                "linux/arm64|linux|arm64|",
            ),
            (
                Platform::new("linux", "arm64", Some("v9")),
                "linux/arm64/v9|linux|arm64|v9",
            ),
            (
                Platform::new("linux", "arm", Some("v6")),
                "linux/arm/v6|linux|arm|v6",
            ),
            (
                Platform::new("linux", "x86_64", None),
                "linux/amd64|linux|amd64|",
            ),
            (
                Platform::new("windows", "amd64", None),
                "windows/amd64|windows|amd64|",
            ),
        ];
        for (platform, want) in cases {
            let v = match BuildVars::new(BTreeMap::new(), platform, platform, &[], '\\') {
                Ok(v) => v,
                Err(e) => panic!("{e}"),
            };
            let word = "$TARGETPLATFORM|$TARGETOS|$TARGETARCH|$TARGETVARIANT";
            assert_eq!(v.expand_global(word).as_deref(), Ok(*want), "{platform}");
            let word = "$BUILDPLATFORM|$BUILDOS|$BUILDARCH|$BUILDVARIANT";
            assert_eq!(v.expand_global(word).as_deref(), Ok(*want), "{platform}");
        }
    }

    #[test]
    fn an_explicit_default_of_a_platform_arg_stands() {
        let v = vars(&[], &[decl("TARGETOS", Some("plan9"))]);
        assert_eq!(v.expand_global("$TARGETOS").as_deref(), Ok("plan9"));
        let mut st = v.stage(&[]);
        let got = st.declare_args(&[
            decl("TARGETARCH", Some("x86_64")),
            decl("TARGETVARIANT", None),
            decl("BUILDARCH", Some("$TARGETARCH-build")),
        ]);
        assert_eq!(
            got,
            Ok(vec![
                (s("TARGETARCH"), Some(s("x86_64"))),
                (s("TARGETVARIANT"), Some(s("v7"))),
                (s("BUILDARCH"), Some(s("x86_64-build"))),
            ])
        );
        // A --build-arg still overrides the default.
        let v = vars(&[("TARGETARCH", "cli")], &[]);
        let mut st = v.stage(&[]);
        let got = st.declare_args(&[decl("TARGETARCH", Some("x86_64"))]);
        assert_eq!(got, Ok(vec![(s("TARGETARCH"), Some(s("cli")))]));
    }

    /// BuildKit v0.35 expands an ARG's default but never its name
    /// (`dispatch` leaves ARG out of word expansion; `buildMetaArgs` and
    /// `dispatchArg` expand only the value): `ARG ${NAME}=mint` declares a
    /// variable literally named `${NAME}`, which no `$flavour` reaches and
    /// no `--build-arg flavour=…` sets. kaniko's Dockerfile_test_scratch
    /// (`ARG ${src}=context/bar/${baz}`) in the conformance suite.
    #[test]
    fn an_arg_name_is_not_expanded() {
        let v = vars(
            &[("built", "from-cli")],
            &[decl("NAME", Some("flavour")), decl("${NAME}", Some("mint"))],
        );
        assert_eq!(v.expand_global("[$flavour]").as_deref(), Ok("[]"));
        let mut st = v.stage(&[]);
        let got = st.declare_args(&[
            decl("KEY", Some("built")),
            decl("$KEY", Some("default-$KEY")),
            decl("${KEY}_too", Some("x")),
        ]);
        assert_eq!(
            got,
            Ok(vec![
                (s("KEY"), Some(s("built"))),
                (s("$KEY"), Some(s("default-built"))),
                (s("${KEY}_too"), Some(s("x"))),
            ])
        );
        assert_eq!(st.expand("[$built|$built_too]").as_deref(), Ok("[|]"));
        assert_eq!(v.unused_build_args(), vec![s("built")]);
    }

    /// kaniko's issue 1911 as BuildKit builds it: a stage FROM another
    /// stage sees the ARGs that stage declared, a default may use them,
    /// and a bare `ARG NAME` keeps the value it finds (in one stage too).
    #[test]
    fn a_stage_from_a_stage_inherits_its_args() {
        let v = vars(&[], &[decl("OTHER", Some("fix"))]);
        let mut base = v.stage(&[]);
        assert!(base.declare_args(&[decl("NAME", Some("base"))]).is_ok());
        let mut dev = v.stage_inheriting(&[], base.args());
        assert_eq!(dev.expand("$NAME").as_deref(), Ok("base"));
        assert_eq!(
            dev.declare_args(&[decl("NAME", Some("$NAME-dev"))]),
            Ok(vec![(s("NAME"), Some(s("base-dev")))])
        );
        let mut custom = v.stage_inheriting(&[], dev.args());
        assert_eq!(
            custom.declare_args(&[decl("NAME", None), decl("OTHER", None)]),
            Ok(vec![
                (s("NAME"), Some(s("base-dev"))),
                (s("OTHER"), Some(s("fix")))
            ])
        );
        assert_eq!(custom.expand("$NAME $OTHER").as_deref(), Ok("base-dev fix"));
        assert_eq!(
            custom.run_args(),
            vec![(s("NAME"), s("base-dev")), (s("OTHER"), s("fix"))]
        );
        // A stage FROM an image starts with none.
        assert_eq!(v.stage(&[]).expand("[$NAME]").as_deref(), Ok("[]"));
        let mut one = v.stage(&[]);
        assert!(
            one.declare_args(&[decl("A", Some("1")), decl("A", None)])
                .is_ok()
        );
        assert_eq!(one.expand("$A").as_deref(), Ok("1"));
    }

    #[test]
    fn bad_global_default_is_an_error() {
        let got = BuildVars::new(
            BTreeMap::new(),
            &target(),
            &host(),
            &[decl("A", Some("${"))],
            '\\',
        )
        .map(|_| ())
        .map_err(|e| e.to_string());
        assert_eq!(got, Err(s("missing '}' in \"${\"")));
    }
}
