//! Conformance suite: every case in `e2e/conformance/<case>/` is built by
//! kiln, by BuildKit (the first reference: what `docker build` runs) and by
//! Debian's buildah (the second opinion) from the same busybox base in one
//! loopback registry; the images are read back with skopeo, and kiln's
//! root filesystem (all layers applied, whiteouts honoured) and config
//! fields must equal each reference's but for the differences the case
//! lists for it. kiln also builds every case again from a warm `--cache`,
//! which must give the same image. See `e2e/conformance/README.md` for the
//! cases, the ignore list and the known differences.
//!
//! The same test builds a second corpus, kaniko's own integration
//! Dockerfiles adapted to run offline (`e2e/conformance-kaniko`, listed in
//! `conformance/kaniko.rs`), with kiln and BuildKit only, its URLs served
//! by a loopback HTTP server (`conformance/http.rs`); see its README.
//!
//! Needs root (RUN isolation of all three), buildah, skopeo and
//! docker-registry, as `scripts/setup.sh` installs them, and Go for the
//! first build of BuildKit and runc (`scripts/tools.sh buildkit runc`,
//! cached by version). Run some cases only with
//! `KILN_CONFORMANCE_CASES=copy_wildcards,volume cargo test -p kiln-e2e --test conformance`.

// A test fails by panicking with a message, as the builder's tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

// The builder's own test registry and busybox fixture, shared by path so
// both suites build from the very same base image; the suite uses part
// of them.
#[path = "../../builder/tests/support/fixtures.rs"]
#[allow(dead_code)]
mod fixtures;
#[path = "../../builder/tests/support/registry.rs"]
#[allow(dead_code)]
mod registry;

#[path = "conformance/buildkit.rs"]
mod buildkit;
#[path = "conformance/config.rs"]
mod config;
#[path = "conformance/http.rs"]
mod http;
#[path = "conformance/ignore.rs"]
mod ignore;
#[path = "conformance/kaniko.rs"]
mod kaniko;
#[path = "conformance/rootfs.rs"]
mod rootfs;
#[path = "conformance/tools.rs"]
mod tools;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A case kiln builds twice with `--cache`: the warm-up build fills the
/// cache repository, the compared build reuses it.
#[derive(Clone, Copy)]
struct Warm {
    /// Build arguments of the warm-up build (instead of the case's), so a
    /// late step can miss while earlier ones hit.
    warmup_args: &'static [&'static str],
    /// What the compared build must log, e.g. `2 cache hits, 1 cache misses`.
    expect: &'static str,
}

/// How one case is built, beyond its directory.
#[derive(Clone, Copy)]
struct Case {
    /// The case's directory in its corpus, when not its name (a case
    /// built again for another platform).
    dir: Option<&'static str>,
    /// The build context, relative to the corpus directory, when not the
    /// case's directory (which still holds the Dockerfile): kaniko's
    /// Dockerfiles share one context, as in kaniko's own test.
    context: Option<&'static str>,
    /// `os/arch` for both tools when not the host's; kiln runs foreign RUN
    /// with `--emulation=qemu`, buildah through binfmt_misc.
    platform: Option<&'static str>,
    /// Build with kiln's layer cache, warmed up first.
    cache: Option<Warm>,
    /// `--build-arg`s given to both tools, besides `BASE`.
    build_args: &'static [&'static str],
    /// `--target` stage, when not the last.
    target: Option<&'static str>,
    /// A Dockerfile of the case's directory that buildah builds instead of
    /// `Dockerfile`: the same steps in a syntax buildah 1.28 lacks
    /// (heredocs). Explained in the README.
    buildah_dockerfile: Option<&'static str>,
    /// A Dockerfile of the case's directory that BuildKit builds instead of
    /// `Dockerfile`, which it refuses with `buildkit_refuses`: the same
    /// steps in a form BuildKit accepts. Explained in the README.
    buildkit_dockerfile: Option<&'static str>,
    /// The error BuildKit gives for the case's `Dockerfile` (checked: a
    /// BuildKit that accepts it fails the case). Without a
    /// `buildkit_dockerfile`, BuildKit has no image to compare.
    buildkit_refuses: Option<&'static str>,
    /// The error kiln must give for the case's `Dockerfile` (a case kaniko
    /// expects to fail, or a documented difference); kiln then has no
    /// image to compare.
    kiln_refuses: Option<&'static str>,
    /// Extra kiln flags: kaniko's flags for the case, which kiln takes as
    /// a drop-in (explained in the README).
    kiln_flags: &'static [&'static str],
    /// What kiln's log must not show: build argument values kaniko's test
    /// checks are never printed (`checkArgsNotPrinted`).
    kiln_log_lacks: &'static [&'static str],
    /// A case of the same corpus whose BuildKit image is this case's
    /// `BASE` (kaniko's test builds the base of `Dockerfile_test_onbuild`
    /// with docker first).
    base_case: Option<&'static str>,
    /// Extra flags for `buildah build` (explained in the README).
    buildah_flags: &'static [&'static str],
    /// Known differences from BuildKit (config fields, `/paths`), each
    /// explained in the README: the case passes only when exactly these
    /// differ, so a fix on either side shows up.
    buildkit_differs_in: &'static [&'static str],
    /// Known differences from buildah, the same way.
    buildah_differs_in: &'static [&'static str],
    /// Secrets `(id, content)`, written to files outside the context and
    /// given to both tools as `--secret id=<id>,src=<file>`.
    secrets: &'static [(&'static str, &'static str)],
    /// Give kiln a private `--cache-dir` (for `RUN --mount=type=cache`);
    /// buildah keeps its cache mounts in its own directory.
    cache_mounts: bool,
}

const PLAIN: Case = Case {
    dir: None,
    context: None,
    platform: None,
    cache: None,
    build_args: &[],
    target: None,
    buildah_dockerfile: None,
    buildkit_dockerfile: None,
    buildkit_refuses: None,
    kiln_refuses: None,
    kiln_flags: &[],
    kiln_log_lacks: &[],
    base_case: None,
    buildah_flags: &[],
    buildkit_differs_in: &[],
    buildah_differs_in: &[],
    secrets: &[],
    cache_mounts: false,
};

/// Every case: its directory under e2e/conformance and how it is built.
const CASES: &[(&str, Case)] = &[
    (
        "cache_full_hit",
        Case {
            cache: Some(Warm {
                warmup_args: &[],
                expect: "3 cache hits, 0 cache misses",
            }),
            ..PLAIN
        },
    ),
    (
        "cache_whiteouts",
        Case {
            build_args: &["BUST=second"],
            cache: Some(Warm {
                warmup_args: &["BUST=first"],
                expect: "2 cache hits, 1 cache misses",
            }),
            ..PLAIN
        },
    ),
    ("add_archive_over_dir", PLAIN),
    ("add_chown_files", PLAIN),
    ("add_local_archives", PLAIN),
    (
        "arg_build_args",
        Case {
            build_args: &["VERSION=2.0", "NODEFAULT=given", "UNDECLARED=ignored"],
            ..PLAIN
        },
    ),
    ("arg_global_scope", PLAIN),
    ("arg_substitution", PLAIN),
    ("cmd_empty", PLAIN),
    ("cmd_entrypoint_exec", PLAIN),
    ("cmd_entrypoint_shell", PLAIN),
    ("comments_and_continuations", PLAIN),
    ("copy_basic", PLAIN),
    (
        "copy_chmod",
        Case {
            buildah_differs_in: &["/modes", "/modes/dir"],
            ..PLAIN
        },
    ),
    ("copy_chown", PLAIN),
    ("copy_dest_slash", PLAIN),
    ("copy_dir_contents", PLAIN),
    ("copy_env_dest", PLAIN),
    (
        "copy_from_image",
        Case {
            buildkit_dockerfile: Some("Dockerfile.buildkit"),
            buildah_differs_in: &["WorkingDir"],
            buildkit_refuses: Some(
                "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround",
            ),
            ..PLAIN
        },
    ),
    ("copy_from_stage", PLAIN),
    ("copy_into_symlinked_dir", PLAIN),
    ("copy_json_form", PLAIN),
    ("copy_overwrite", PLAIN),
    ("copy_symlinks", PLAIN),
    ("copy_wildcards", PLAIN),
    ("copy_workdir_relative", PLAIN),
    ("dockerignore", PLAIN),
    ("entrypoint_resets_cmd", PLAIN),
    ("env_forms", PLAIN),
    ("escape_directive", PLAIN),
    ("expose", PLAIN),
    (
        "expose_protocol_case",
        Case {
            buildah_differs_in: &["ExposedPorts"],
            ..PLAIN
        },
    ),
    ("hardlinks_run", PLAIN),
    (
        "hardlinks_to_base",
        Case {
            buildkit_differs_in: &["/bin/bb", "/bin/busybox", "/etc/passwd", "/etc/passwd-link"],
            buildah_differs_in: &["/bin/bb", "/bin/busybox"],
            ..PLAIN
        },
    ),
    ("healthcheck", PLAIN),
    ("healthcheck_none", PLAIN),
    ("healthcheck_shell", PLAIN),
    (
        "heredoc_copy",
        Case {
            buildah_dockerfile: Some("Dockerfile.buildah"),
            ..PLAIN
        },
    ),
    (
        "heredoc_run",
        Case {
            buildah_dockerfile: Some("Dockerfile.buildah"),
            ..PLAIN
        },
    ),
    ("labels", PLAIN),
    ("multistage_chain", PLAIN),
    (
        "multistage_target",
        Case {
            target: Some("wanted"),
            ..PLAIN
        },
    ),
    ("onbuild", PLAIN),
    (
        "onbuild_copy_from_stage",
        Case {
            buildah_dockerfile: Some("Dockerfile.buildah"),
            buildah_flags: &["--skip-unused-stages=false"],
            ..PLAIN
        },
    ),
    ("replace_dir_with_file", PLAIN),
    ("replace_file_with_dir", PLAIN),
    ("run_as_user", PLAIN),
    ("run_create_remove", PLAIN),
    (
        "run_env_and_args",
        Case {
            build_args: &["GIVEN=from-the-command-line"],
            ..PLAIN
        },
    ),
    (
        "run_device_nodes",
        Case {
            buildah_flags: &["--cap-add", "CAP_MKNOD"],
            ..PLAIN
        },
    ),
    ("run_exec_form", PLAIN),
    ("run_fifo", PLAIN),
    (
        "run_mount_cache_bind",
        Case {
            cache_mounts: true,
            buildah_differs_in: &["/var", "/var/cache"],
            ..PLAIN
        },
    ),
    (
        "run_mount_secret",
        Case {
            secrets: &[("token", "conformance-secret-value\n")],
            buildah_differs_in: &["/run/secrets"],
            ..PLAIN
        },
    ),
    ("run_special_modes", PLAIN),
    (
        "scratch_final",
        Case {
            buildah_differs_in: &["WorkingDir"],
            ..PLAIN
        },
    ),
    (
        "shell",
        Case {
            buildah_differs_in: &["Cmd"],
            ..PLAIN
        },
    ),
    ("stopsignal", PLAIN),
    ("stopsignal_number", PLAIN),
    ("symlinks_run", PLAIN),
    ("user_workdir", PLAIN),
    (
        "volume",
        Case {
            buildah_differs_in: &["/logs", "/more"],
            ..PLAIN
        },
    ),
    ("whiteout_base_files", PLAIN),
    ("whiteout_recreate_dir", PLAIN),
    ("whiteout_same_image", PLAIN),
    ("workdir_env", PLAIN),
    // linux/arm64: kiln under --emulation=qemu, buildah through
    // binfmt_misc, both from the fixture's arm64 busybox.
    (
        "arm64_run_create_remove",
        Case {
            dir: Some("run_create_remove"),
            platform: Some("linux/arm64"),
            buildah_differs_in: &["variant"],
            ..PLAIN
        },
    ),
    (
        "arm64_whiteout_base_files",
        Case {
            dir: Some("whiteout_base_files"),
            platform: Some("linux/arm64"),
            buildah_differs_in: &["variant"],
            ..PLAIN
        },
    ),
    (
        "arm64_copy_from_stage",
        Case {
            dir: Some("copy_from_stage"),
            platform: Some("linux/arm64"),
            buildah_differs_in: &["variant"],
            ..PLAIN
        },
    ),
    (
        "arm64_symlinks_run",
        Case {
            dir: Some("symlinks_run"),
            platform: Some("linux/arm64"),
            buildah_differs_in: &["variant"],
            ..PLAIN
        },
    ),
    (
        "arm64_hardlinks_run",
        Case {
            dir: Some("hardlinks_run"),
            platform: Some("linux/arm64"),
            buildah_differs_in: &["variant"],
            ..PLAIN
        },
    ),
    (
        "arm64_run_env_and_args",
        Case {
            dir: Some("run_env_and_args"),
            platform: Some("linux/arm64"),
            buildah_differs_in: &["variant"],
            build_args: &["GIVEN=from-the-command-line"],
            ..PLAIN
        },
    ),
];

/// A set of cases: the suite's own (`e2e/conformance`) or kaniko's
/// integration Dockerfiles (`e2e/conformance-kaniko`, see `kaniko.rs`).
struct Corpus {
    /// Its name in reports and image repositories.
    name: &'static str,
    /// Its directory under e2e/.
    dir: &'static str,
    /// Where its case directories are, below `dir`.
    cases_dir: &'static str,
    cases: &'static [(&'static str, Case)],
    /// Also build with buildah (the second opinion) and compare.
    buildah: bool,
    /// Also build each case from a warm kiln cache and compare.
    cache_check: bool,
    /// Give the build arguments `REGISTRY` (the loopback registry's
    /// `host:port`) and `HTTP` (the loopback HTTP server's URL) besides
    /// `BASE`: kaniko's Dockerfiles, adapted, name other bases and URLs.
    offline_args: bool,
}

const OWN: Corpus = Corpus {
    name: "conformance",
    dir: "conformance",
    cases_dir: "",
    cases: CASES,
    buildah: true,
    cache_check: true,
    offline_args: false,
};

/// kaniko's integration Dockerfiles, built by kiln and BuildKit (buildah
/// is optional for this corpus and would add minutes), and by kiln again
/// from a warm cache: the cache never changes the result (issue 17).
const KANIKO: Corpus = Corpus {
    name: "kaniko",
    dir: "conformance-kaniko",
    cases_dir: "cases",
    cases: kaniko::CASES,
    buildah: false,
    cache_check: true,
    offline_args: true,
};

const CORPORA: &[&Corpus] = &[&OWN, &KANIKO];

impl Corpus {
    fn root(&self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(self.dir)
    }

    fn case_dir(&self, name: &str, case: Case) -> PathBuf {
        self.root()
            .join(self.cases_dir)
            .join(case.dir.unwrap_or(name))
    }

    /// `<registry>/<tool>/<name>:1` for the suite's own cases,
    /// `<registry>/<tool>/<corpus>/<name>:1` for another corpus's (in
    /// lower case, as repository names must be).
    fn image(&self, registry: &str, tool: &str, name: &str) -> String {
        let name = name.to_lowercase();
        if self.name == OWN.name {
            format!("{registry}/{tool}/{name}:1")
        } else {
            format!("{registry}/{tool}/{}/{name}:1", self.name)
        }
    }
}

/// What every case is built from and with.
struct Suite<'a> {
    registry: &'a str,
    /// The base image reference, given as the build argument `BASE`.
    base: &'a str,
    /// The loopback HTTP server's URL, `http://127.0.0.1:PORT`.
    http: &'a str,
    buildkit: &'a buildkit::BuildKit,
}

/// One side of a comparison: a name for reports and what is compared.
struct Side<'a> {
    name: &'a str,
    tree: &'a rootfs::Tree,
    config: &'a serde_json::Value,
}

/// The paths and fields in which `kiln` differs from `reference`, as
/// (item, readable lines); `env` says whether `Env`'s order counts.
fn differences(reference: &Side, kiln: &Side, env: config::EnvOrder) -> Vec<(String, String)> {
    let names = (reference.name, kiln.name);
    let mut found = config::diff(
        names,
        &config::summary(reference.config, env),
        &config::summary(kiln.config, env),
    );
    found.extend(rootfs::diff(names, reference.tree, kiln.tree));
    found
}

/// Checks that exactly the `known` items differ; the error is the report
/// of every difference found.
fn expect_differences(
    reference: &Side,
    kiln: &Side,
    env: config::EnvOrder,
    known: &[&str],
) -> Result<(), String> {
    let found = differences(reference, kiln, env);
    let mut items: Vec<&str> = found.iter().map(|(item, _)| item.as_str()).collect();
    items.sort_unstable();
    let mut known = known.to_vec();
    known.sort_unstable();
    if items == known {
        return Ok(());
    }
    let lines: Vec<&str> = found.iter().map(|(_, line)| line.as_str()).collect();
    let mut report = format!(
        "{}'s image differs from {}'s\n{}",
        kiln.name,
        reference.name,
        lines.join("\n")
    );
    if !known.is_empty() {
        report.push_str(&format!(
            "\nthe documented known differences are exactly: {}",
            known.join(", ")
        ));
    }
    Err(report)
}

/// How long each tool took for a case, and what kiln's warm build logged.
struct Timings {
    kiln: Duration,
    /// The cache check's time and the log of its build from a warm cache,
    /// for a corpus that has it.
    kiln_cache: Option<(Duration, String)>,
    buildkit: Duration,
    /// For a corpus built with buildah.
    buildah: Option<Duration>,
}

/// Checks that a build failed with `error` in its report.
fn expect_refusal<T>(result: Result<T, String>, error: &str) -> Result<(), String> {
    match result {
        Err(report) if report.contains(error) => Ok(()),
        Err(report) => Err(format!(
            "the Dockerfile did not fail with \"{error}\":\n{report}"
        )),
        Ok(_) => Err(format!(
            "the Dockerfile was built; it is expected to fail with \"{error}\""
        )),
    }
}

/// Where a case's Dockerfile and context are, and what it is built with.
struct Inputs {
    /// The directory holding the case's Dockerfile(s).
    dockerfiles: PathBuf,
    context: PathBuf,
    build_args: Vec<String>,
    /// `id=<id>,src=<file>` for each secret.
    secrets: Vec<String>,
    kiln_flags: Vec<String>,
    buildah_flags: Vec<String>,
    /// Holds the secrets' files and kiln's cache mounts.
    _private: tempfile::TempDir,
}

impl Inputs {
    fn of(corpus: &Corpus, name: &str, case: Case, suite: &Suite) -> Result<Inputs, String> {
        let dockerfiles = corpus.case_dir(name, case);
        if !dockerfiles.join("Dockerfile").is_file() {
            return Err(format!("{} has no Dockerfile", dockerfiles.display()));
        }
        let context = case
            .context
            .map_or_else(|| dockerfiles.clone(), |c| corpus.root().join(c));
        let base = match case.base_case {
            Some(base_case) => build_base(corpus, base_case, suite)?,
            None => suite.base.to_string(),
        };
        let mut build_args = vec![format!("BASE={base}")];
        if corpus.offline_args {
            build_args.push(format!("REGISTRY={}", suite.registry));
            build_args.push(format!("HTTP={}", suite.http));
        }
        build_args.extend(case.build_args.iter().map(|a| a.to_string()));
        let private = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut secrets = Vec::new();
        for (id, content) in case.secrets {
            let file = private.path().join(id);
            std::fs::write(&file, content).map_err(|e| e.to_string())?;
            secrets.push(format!("id={id},src={}", file.display()));
        }
        let mut kiln_flags: Vec<String> = secrets.iter().map(|s| format!("--secret={s}")).collect();
        if context != dockerfiles {
            kiln_flags.push(format!(
                "--dockerfile={}",
                dockerfiles.join("Dockerfile").display()
            ));
        }
        kiln_flags.extend(case.kiln_flags.iter().map(|f| f.to_string()));
        let mut buildah_flags: Vec<String> =
            case.buildah_flags.iter().map(|f| f.to_string()).collect();
        for secret in &secrets {
            buildah_flags.extend(["--secret".to_string(), secret.clone()]);
        }
        if case.cache_mounts {
            kiln_flags.push(format!(
                "--cache-dir={}",
                private.path().join("cache").display()
            ));
        }
        Ok(Inputs {
            dockerfiles,
            context,
            build_args,
            secrets,
            kiln_flags,
            buildah_flags,
            _private: private,
        })
    }
}

/// Builds `base_case` of `corpus` with BuildKit, from the suite's base,
/// and returns its image: the base of a case whose base image is built
/// from another Dockerfile (as kaniko's test set-up does with docker).
fn build_base(corpus: &Corpus, base_case: &str, suite: &Suite) -> Result<String, String> {
    let (_, case) = corpus
        .cases
        .iter()
        .find(|(n, _)| *n == base_case)
        .ok_or_else(|| format!("the base case {base_case} is no case of {}", corpus.name))?;
    let inputs = Inputs::of(corpus, base_case, *case, suite)?;
    let image = corpus.image(suite.registry, "buildkit-base", base_case);
    suite
        .buildkit
        .build(
            &inputs.context,
            &inputs.dockerfiles.join("Dockerfile"),
            &inputs.build_args,
            None,
            None,
            &[],
            &image,
        )
        .map_err(|e| format!("building the base {base_case}: {e}"))?;
    Ok(image)
}

/// Builds case `name` of `corpus` with kiln, BuildKit and (for a corpus
/// that has it) buildah from the suite's base and compares kiln's image
/// with each reference, and kiln's uncached image with its image from a
/// warm cache (for a corpus that has the check); the error is the
/// readable report of every unexpected difference.
fn check(corpus: &Corpus, name: &str, case: Case, suite: &Suite) -> Result<String, String> {
    let started = Instant::now();
    let registry = suite.registry;
    let inputs = Inputs::of(corpus, name, case, suite)?;
    let context = inputs.context.as_path();
    let build_args = &inputs.build_args;

    let kiln_image = corpus.image(registry, "kiln", name);
    let kiln_other_image = corpus.image(registry, "kiln-cache-check", name);
    let buildkit_image = corpus.image(registry, "buildkit", name);
    let buildah_image = corpus.image(registry, "buildah", name);
    let kiln_builds = case.kiln_refuses.is_none();
    let buildkit_builds = case.buildkit_refuses.is_none() || case.buildkit_dockerfile.is_some();
    let timed = |build: &dyn Fn() -> Result<(), String>| {
        let started = Instant::now();
        build().map(|()| started.elapsed())
    };
    let (kiln, buildkit, buildah) = std::thread::scope(|scope| {
        let kiln = scope.spawn(|| {
            let started = Instant::now();
            let kiln_args = (context, build_args.as_slice(), inputs.kiln_flags.as_slice());
            if let Some(error) = case.kiln_refuses {
                let built = kiln_build(name, case, kiln_args, registry, &kiln_image);
                expect_refusal(built, error)?;
                return Ok((started.elapsed(), None));
            }
            let log = kiln_build(name, case, kiln_args, registry, &kiln_image)?;
            if let Some(shown) = case.kiln_log_lacks.iter().find(|v| log.contains(**v)) {
                return Err(format!("kiln's log shows \"{shown}\":\n{log}"));
            }
            let kiln_time = started.elapsed();
            if !corpus.cache_check {
                return Ok((kiln_time, None));
            }
            let started = Instant::now();
            let warm_log = kiln_cache_check(name, case, kiln_args, registry, &kiln_other_image)?;
            Ok::<_, String>((kiln_time, Some((started.elapsed(), warm_log))))
        });
        let buildkit = scope.spawn(|| {
            timed(&|| {
                let build = |dockerfile: &str| {
                    suite.buildkit.build(
                        context,
                        &inputs.dockerfiles.join(dockerfile),
                        build_args,
                        case.target,
                        case.platform,
                        &inputs.secrets,
                        &buildkit_image,
                    )
                };
                if let Some(error) = case.buildkit_refuses {
                    expect_refusal(build("Dockerfile"), error)?;
                }
                match (case.buildkit_refuses, case.buildkit_dockerfile) {
                    (Some(_), None) => Ok(()),
                    (_, dockerfile) => build(dockerfile.unwrap_or("Dockerfile")),
                }
            })
        });
        let buildah = corpus.buildah.then(|| {
            scope.spawn(|| {
                timed(&|| {
                    tools::buildah_build(
                        context,
                        case.buildah_dockerfile,
                        build_args,
                        case.target,
                        case.platform,
                        &inputs.buildah_flags,
                        &buildah_image,
                    )
                })
            })
        });
        (
            kiln.join().expect("the kiln build thread"),
            buildkit.join().expect("the BuildKit build thread"),
            buildah.map(|b| b.join().expect("the buildah build thread")),
        )
    });
    let timings = match (kiln, buildkit, buildah.transpose()) {
        (Ok((kiln, kiln_cache)), Ok(buildkit), Ok(buildah)) => Timings {
            kiln,
            kiln_cache,
            buildkit,
            buildah,
        },
        (kiln, buildkit, buildah) => {
            let failures: Vec<String> = [
                ("kiln", kiln.err()),
                ("BuildKit", buildkit.err()),
                ("buildah", buildah.err()),
            ]
            .into_iter()
            .filter_map(|(tool, error)| error.map(|e| format!("{tool}: {e}")))
            .collect();
            return Err(failures.join("\n"));
        }
    };

    let read = |built: bool, image: &str| built.then(|| tools::read_image(image)).transpose();
    let kiln = read(kiln_builds, &kiln_image)?;
    let kiln_other = read(kiln_builds && corpus.cache_check, &kiln_other_image)?;
    let buildkit = read(buildkit_builds, &buildkit_image)?;
    let buildah = read(corpus.buildah, &buildah_image)?;
    // All sides equal but built for the wrong platform would prove little.
    let architecture = case
        .platform
        .and_then(|p| p.split('/').nth(1))
        .unwrap_or("amd64");
    for (tool, image) in [
        ("kiln", &kiln),
        ("kiln (cache check)", &kiln_other),
        ("BuildKit", &buildkit),
        ("buildah", &buildah),
    ] {
        if let Some(image) = image
            && image.config["architecture"] != architecture
        {
            return Err(format!(
                "{tool} built for architecture {}, not {architecture}",
                image.config["architecture"]
            ));
        }
    }
    let mut failures = Vec::new();
    let mut verdicts = Vec::new();
    let verdict = |known: &[&str]| {
        if known.is_empty() {
            "identical".to_string()
        } else {
            format!("identical but for {}", known.join(", "))
        }
    };
    match (&kiln, &buildkit) {
        (Some(kiln), Some(buildkit)) => {
            let buildkit_tree =
                ignore::without_buildkit_artefacts(buildkit.tree.clone(), &kiln.tree);
            if let Err(report) = expect_differences(
                &Side {
                    name: "BuildKit",
                    tree: &buildkit_tree,
                    config: &buildkit.config,
                },
                &Side {
                    name: "kiln",
                    tree: &kiln.tree,
                    config: &kiln.config,
                },
                config::EnvOrder::Kept,
                case.buildkit_differs_in,
            ) {
                failures.push(report);
            }
            verdicts.push(format!(
                "BuildKit: {} ({} layers, kiln {})",
                verdict(case.buildkit_differs_in),
                buildkit.layers,
                kiln.layers
            ));
        }
        (None, Some(_)) => verdicts.push(format!(
            "kiln fails as documented, BuildKit builds it: \"{}\"",
            case.kiln_refuses.unwrap_or_default()
        )),
        (Some(_), None) => verdicts.push("BuildKit fails as documented, kiln builds it".into()),
        (None, None) => verdicts.push("both fail as documented".into()),
    }
    if let (Some(kiln), Some(kiln_other)) = (&kiln, &kiln_other) {
        // The cache never changes the result: exactly the same image.
        let kiln_side = Side {
            name: "kiln",
            tree: &kiln.tree,
            config: &kiln.config,
        };
        let other_side = Side {
            name: if case.cache.is_some() {
                "kiln without cache"
            } else {
                "kiln from a warm cache"
            },
            tree: &kiln_other.tree,
            config: &kiln_other.config,
        };
        let (reference, compared) = if case.cache.is_some() {
            (&other_side, &kiln_side)
        } else {
            (&kiln_side, &other_side)
        };
        if let Err(report) = expect_differences(reference, compared, config::EnvOrder::Kept, &[]) {
            failures.push(format!("the cache changed the result: {report}"));
        }
        let warm_log = timings.kiln_cache.as_ref().map_or("", |(_, log)| log);
        verdicts.push(format!(
            "cache: same image ({})",
            if case.cache.is_some() {
                "as a build without cache"
            } else {
                cache_counts(warm_log).unwrap_or("no cache counts logged")
            }
        ));
    }
    if let (Some(kiln), Some(buildah)) = (&kiln, &buildah) {
        let buildah_tree = ignore::without_buildah_artefacts(buildah.tree.clone());
        let kiln_tree = ignore::without_buildah_artefacts(kiln.tree.clone());
        if let Err(report) = expect_differences(
            &Side {
                name: "buildah",
                tree: &buildah_tree,
                config: &buildah.config,
            },
            &Side {
                name: "kiln",
                tree: &kiln_tree,
                config: &kiln.config,
            },
            config::EnvOrder::Ignored,
            case.buildah_differs_in,
        ) {
            failures.push(report);
        }
        verdicts.push(format!(
            "buildah: {} ({} layers)",
            verdict(case.buildah_differs_in),
            buildah.layers
        ));
    }
    if !failures.is_empty() {
        return Err(failures.join("\n"));
    }
    let mut times = format!("kiln {:.1}s", timings.kiln.as_secs_f64());
    if let Some((cache, _)) = &timings.kiln_cache {
        times.push_str(&format!(" + {:.1}s cache check", cache.as_secs_f64()));
    }
    times.push_str(&format!(
        ", BuildKit {:.1}s",
        timings.buildkit.as_secs_f64()
    ));
    if let Some(buildah) = timings.buildah {
        times.push_str(&format!(", buildah {:.1}s", buildah.as_secs_f64()));
    }
    Ok(format!(
        "{}; {times}, {:.1}s in all",
        verdicts.join("; "),
        started.elapsed().as_secs_f64()
    ))
}

/// `N cache hits, M cache misses` from a kiln log (its last mention).
fn cache_counts(log: &str) -> Option<&str> {
    let end = log.rfind(" cache misses")? + " cache misses".len();
    let hits = log[..end].rfind(" cache hits")?;
    let start = log[..hits].rfind(|c: char| !c.is_ascii_digit())? + 1;
    Some(&log[start..end])
}

/// kiln's arguments for one case: context, build arguments, flags.
type KilnArgs<'a> = (&'a Path, &'a [String], &'a [String]);

/// kiln's side of a case: one build, or with `cache` a warm-up build and
/// the compared one, which must log the expected hits and misses. Returns
/// the compared build's log.
fn kiln_build(
    name: &str,
    case: Case,
    (context, build_args, case_flags): KilnArgs,
    registry: &str,
    destination: &str,
) -> Result<String, String> {
    let flags = kiln_flags(case, case_flags);
    let Some(warm) = case.cache else {
        return tools::kiln_build(context, build_args, &flags, destination);
    };
    let mut flags = flags;
    flags.push("--cache=true".to_string());
    flags.push(format!("--cache-repo={registry}/cache/{name}"));
    let mut warmup_args = build_args[..1].to_vec();
    warmup_args.extend(warm.warmup_args.iter().map(|a| a.to_string()));
    let warmup = format!("{registry}/kiln-warmup/{name}:1");
    tools::kiln_build(context, &warmup_args, &flags, &warmup)
        .map_err(|e| format!("the warm-up build: {e}"))?;
    let log = tools::kiln_build(context, build_args, &flags, destination)?;
    if log.contains(warm.expect) {
        Ok(log)
    } else {
        Err(format!(
            "the build after the warm-up did not log \"{}\":\n{log}",
            warm.expect
        ))
    }
}

/// The other half of the cache check (issue 17, item 4): for a case built
/// without cache, a warm-up build with `--cache` and a build from the warm
/// cache, which must hit every step; for a `cache` case (whose compared
/// build is from a warm cache), a build without cache. Pushes the image to
/// compare with the case's kiln image to `destination`; returns the log of
/// the build from a warm cache.
fn kiln_cache_check(
    name: &str,
    case: Case,
    (context, build_args, case_flags): KilnArgs,
    registry: &str,
    destination: &str,
) -> Result<String, String> {
    let mut flags = kiln_flags(case, case_flags);
    if case.cache.is_some() {
        tools::kiln_build(context, build_args, &flags, destination)
            .map_err(|e| format!("the build without cache: {e}"))?;
        return Ok(String::new());
    }
    // Repository names are lower case (kaniko's cases are not).
    let repository = name.to_lowercase();
    flags.push("--cache=true".to_string());
    flags.push(format!("--cache-repo={registry}/cache-check/{repository}"));
    let warmup = format!("{registry}/kiln-cache-warmup/{repository}:1");
    tools::kiln_build(context, build_args, &flags, &warmup)
        .map_err(|e| format!("the cache warm-up build: {e}"))?;
    let log = tools::kiln_build(context, build_args, &flags, destination)
        .map_err(|e| format!("the build from a warm cache: {e}"))?;
    match cache_counts(&log) {
        Some(counts) if counts.ends_with(" 0 cache misses") => Ok(log),
        _ => Err(format!(
            "the build from a warm cache did not hit every step:\n{log}"
        )),
    }
}

/// kiln's flags for `case`: the case's own, its target and platform.
fn kiln_flags(case: Case, case_flags: &[String]) -> Vec<String> {
    let mut flags = case_flags.to_vec();
    if let Some(target) = case.target {
        flags.push(format!("--target={target}"));
    }
    if let Some(platform) = case.platform {
        flags.push(format!("--custom-platform={platform}"));
        flags.push("--emulation=qemu".to_string());
    }
    flags
}

/// The cases to run, of every corpus: all, or those named in
/// `KILN_CONFORMANCE_CASES` (comma-separated), for working on one case.
fn selected_cases() -> Vec<(&'static Corpus, &'static str, Case)> {
    let wanted = std::env::var("KILN_CONFORMANCE_CASES").unwrap_or_default();
    let wanted: Vec<&str> = wanted.split(',').filter(|n| !n.is_empty()).collect();
    let all: Vec<(&'static Corpus, &'static str, Case)> = CORPORA
        .iter()
        .flat_map(|corpus| corpus.cases.iter().map(move |(n, c)| (*corpus, *n, *c)))
        .collect();
    for name in &wanted {
        assert!(
            all.iter().any(|(_, n, _)| n == name),
            "KILN_CONFORMANCE_CASES names {name}, which is no case"
        );
    }
    all.into_iter()
        .filter(|(_, name, _)| wanted.is_empty() || wanted.contains(name))
        .collect()
}

/// The names under which the loopback registry also holds the busybox
/// fixture: the bases kaniko's adapted Dockerfiles compose from
/// `${REGISTRY}` and a name of their own (`FROM ${REGISTRY}/${IMAGE}:${TAG}`
/// and the like), which `BASE` cannot stand for.
const KANIKO_BASE_NAMES: &[&str] = &["busybox:1.31", "alpine:3.9", "debian:9.11"];

/// Copies the fixture index `base` to each of [`KANIKO_BASE_NAMES`].
fn push_kaniko_base_names(registry: &str, base: &str) {
    for name in KANIKO_BASE_NAMES {
        let copied = tools::run(
            &format!("skopeo copy of the fixture to {name}"),
            Command::new("skopeo").args([
                "copy",
                "--quiet",
                "--all",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                &format!("docker://{base}"),
                &format!("docker://{registry}/{name}"),
            ]),
        );
        if let Err(message) = copied {
            panic!("{message}");
        }
    }
}

/// One registry, one fixture push, one loopback HTTP server and one
/// buildkitd for both corpora; cases run on a few worker threads
/// (`KILN_CONFORMANCE_JOBS`, default: the number of CPUs), each building
/// with kiln, BuildKit and (for the suite's own cases) buildah at once.
#[test]
fn kiln_builds_what_buildkit_and_buildah_build() {
    let started = Instant::now();
    let registry = registry::TestRegistry::start();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime for the fixture push");
    let fixtures = runtime.block_on(fixtures::push_busybox_index(registry.host()));
    drop(runtime);
    push_kaniko_base_names(registry.host(), &fixtures.index);
    let http = http::HttpServer::start(&KANIKO.root().join("http"));
    eprintln!(
        "conformance: registry, fixtures and HTTP server ready after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // Started from this thread, which outlives every case: the daemon is
    // told to stop when the thread that started it ends.
    let mut buildkit = buildkit::BuildKit::start(registry.host());
    eprintln!(
        "conformance: buildkitd ({} snapshotter) ready after {:.1}s",
        buildkit.snapshotter,
        started.elapsed().as_secs_f64()
    );
    // Built before the workers start, so no case's time includes cargo.
    tools::kiln_binary();
    eprintln!(
        "conformance: kiln binary ready after {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let suite = Suite {
        registry: registry.host(),
        base: &fixtures.index,
        http: &http.url,
        buildkit: &buildkit,
    };
    // The suite's own cases first, then kaniko's: the time the second
    // corpus adds is the wall time after its first case started.
    let queue = Mutex::new(selected_cases().into_iter());
    let jobs = std::env::var("KILN_CONFORMANCE_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(2);
    let failures = Mutex::new(Vec::new());
    let ran = Mutex::new(std::collections::BTreeMap::<&str, usize>::new());
    let corpus_started = Mutex::new(std::collections::BTreeMap::<&str, Instant>::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().expect("case queue").next();
                    let Some((corpus, name, case)) = next else {
                        break;
                    };
                    corpus_started
                        .lock()
                        .expect("corpus start times")
                        .entry(corpus.name)
                        .or_insert_with(Instant::now);
                    let outcome = check(corpus, name, case, &suite);
                    *ran.lock()
                        .expect("case count")
                        .entry(corpus.name)
                        .or_default() += 1;
                    match outcome {
                        Ok(summary) => eprintln!("case {name}: {summary}"),
                        Err(report) => {
                            eprintln!("case {name}: DIFFERS");
                            failures
                                .lock()
                                .expect("failure list")
                                .push(format!("case {name} ({}): {report}", corpus.name));
                        }
                    }
                }
            });
        }
    });
    // Stopped (and checked to have left nothing behind) before the
    // verdict, so a failing run cleans up the same way.
    let stopping = Instant::now();
    buildkit.stop();
    drop(http);
    eprintln!(
        "conformance: buildkitd and the HTTP server stopped in {:.1}s",
        stopping.elapsed().as_secs_f64()
    );
    // Its root (every case's snapshots) is deleted here, not after the
    // verdict, so the log says what the clean-up costs.
    let removing = Instant::now();
    drop(buildkit);
    drop(registry);
    eprintln!(
        "conformance: buildkitd's root and the registry removed in {:.1}s",
        removing.elapsed().as_secs_f64()
    );
    let failures = failures.into_inner().expect("failure list");
    let ran = ran.into_inner().expect("case count");
    for (corpus, count) in &ran {
        let since = corpus_started.lock().expect("corpus start times")[corpus];
        eprintln!(
            "conformance: {count} {corpus} cases, the last {:.1}s from its first case",
            since.elapsed().as_secs_f64()
        );
    }
    let ran: usize = ran.values().sum();
    eprintln!(
        "conformance: {ran} cases, {} differ, {:.1}s wall time with {jobs} jobs",
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {ran} cases differ:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_case_directory_has_a_test() {
    let mut names = std::collections::BTreeSet::new();
    for corpus in CORPORA {
        let cases_dir = corpus.root().join(corpus.cases_dir);
        let mut on_disk: Vec<String> = std::fs::read_dir(&cases_dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", cases_dir.display()))
            .filter_map(Result::ok)
            .filter(|entry| entry.path().is_dir())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = corpus
            .cases
            .iter()
            .map(|(name, case)| case.dir.unwrap_or(name).to_string())
            .collect();
        listed.sort();
        listed.dedup();
        assert_eq!(
            on_disk,
            listed,
            "every directory of {} is a case listed in {}'s cases, and back",
            cases_dir.display(),
            corpus.name
        );
        assert!(
            listed.len() >= 40,
            "{} has {} cases, fewer than 40",
            corpus.name,
            listed.len()
        );
        for (name, case) in corpus.cases {
            assert!(names.insert(*name), "case names are unique: {name}");
            if let Some(base_case) = case.base_case {
                assert!(
                    corpus.cases.iter().any(|(n, _)| *n == base_case),
                    "{name}'s base case {base_case} is a case of {}",
                    corpus.name
                );
            }
        }
    }
}

/// The kaniko table accounts for every one of kaniko's integration
/// Dockerfiles exactly once, each included one is a case (and back), and
/// each case's Dockerfile names the file it was adapted from.
#[test]
fn every_kaniko_dockerfile_is_a_case_or_skipped_with_a_reason() {
    let files: std::collections::BTreeSet<&str> = kaniko::FILES.iter().map(|(f, _)| *f).collect();
    assert_eq!(files.len(), kaniko::FILES.len(), "each file once");
    // kaniko at 236ba5690: 91 files in integration/dockerfiles, 6
    // directories in integration/dockerfiles-with-context.
    assert_eq!(
        kaniko::FILES.len(),
        97,
        "kaniko has 97 integration Dockerfiles"
    );
    let included: Vec<&str> = kaniko::FILES
        .iter()
        .filter(|(_, skipped)| skipped.is_none())
        .map(|(file, _)| kaniko::case_name(file))
        .collect();
    let cases: Vec<&str> = kaniko::CASES.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        included, cases,
        "the included files are the cases, in order"
    );
    for (file, skipped) in kaniko::FILES {
        if let Some(reason) = skipped {
            assert!(!reason.is_empty(), "{file} is skipped with a reason");
            continue;
        }
        let dockerfile = KANIKO
            .case_dir(kaniko::case_name(file), PLAIN)
            .join("Dockerfile");
        let text = std::fs::read_to_string(&dockerfile)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dockerfile.display()));
        assert!(
            text.contains(&format!("# 236ba5690, integration/{file}.")),
            "{} names its source, integration/{file}",
            dockerfile.display()
        );
    }
}

#[test]
fn cache_counts_are_read_from_kiln_logs() {
    let cases = [
        (
            "[linux/amd64] image sha256:abc: 3 layers, 2.1 MB compressed, 2 cache hits, 1 cache misses, 4.2s\n",
            Some("2 cache hits, 1 cache misses"),
        ),
        (
            "step 1\npushed 127.0.0.1:5000/a:1 (12 cache hits, 0 cache misses)\n",
            Some("12 cache hits, 0 cache misses"),
        ),
        ("pushed 127.0.0.1:5000/a:1\n", None),
        ("0 cache misses only", None),
    ];
    for (log, want) in cases {
        assert_eq!(cache_counts(log), want, "{log}");
    }
}
