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
#[path = "conformance/ignore.rs"]
mod ignore;
#[path = "conformance/rootfs.rs"]
mod rootfs;
#[path = "conformance/tools.rs"]
mod tools;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

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
    /// The case's directory under e2e/conformance, when not its name (a
    /// case built again for another platform).
    dir: Option<&'static str>,
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
    /// BuildKit that accepts it fails the case).
    buildkit_refuses: Option<&'static str>,
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
    platform: None,
    cache: None,
    build_args: &[],
    target: None,
    buildah_dockerfile: None,
    buildkit_dockerfile: None,
    buildkit_refuses: None,
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

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance")
}

/// What every case is built from and with.
struct Suite<'a> {
    registry: &'a str,
    /// The base image reference, given as the build argument `BASE`.
    base: &'a str,
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
    kiln: std::time::Duration,
    kiln_cache: std::time::Duration,
    warm_log: String,
    buildkit: std::time::Duration,
    buildah: std::time::Duration,
}

/// Builds case `name` with kiln, BuildKit and buildah from `base` and
/// compares kiln's image with each reference, and kiln's uncached image
/// with its image from a warm cache; the error is the readable report of
/// every unexpected difference.
fn check(name: &str, case: Case, suite: &Suite) -> Result<String, String> {
    let started = Instant::now();
    let registry = suite.registry;
    let context = cases_dir().join(case.dir.unwrap_or(name));
    if !context.join("Dockerfile").is_file() {
        return Err(format!("{} has no Dockerfile", context.display()));
    }
    let mut build_args = vec![format!("BASE={}", suite.base)];
    build_args.extend(case.build_args.iter().map(|a| a.to_string()));
    let private = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut secrets = Vec::new();
    for (id, content) in case.secrets {
        let file = private.path().join(id);
        std::fs::write(&file, content).map_err(|e| e.to_string())?;
        secrets.push(format!("id={id},src={}", file.display()));
    }
    let mut kiln_flags: Vec<String> = secrets.iter().map(|s| format!("--secret={s}")).collect();
    let mut buildah_flags: Vec<String> = case.buildah_flags.iter().map(|f| f.to_string()).collect();
    for secret in &secrets {
        buildah_flags.extend(["--secret".to_string(), secret.clone()]);
    }
    if case.cache_mounts {
        kiln_flags.push(format!(
            "--cache-dir={}",
            private.path().join("cache").display()
        ));
    }

    let kiln_image = format!("{registry}/kiln/{name}:1");
    let kiln_other_image = format!("{registry}/kiln-cache-check/{name}:1");
    let buildkit_image = format!("{registry}/buildkit/{name}:1");
    let buildah_image = format!("{registry}/buildah/{name}:1");
    let timed = |build: &dyn Fn() -> Result<(), String>| {
        let started = Instant::now();
        build().map(|()| started.elapsed())
    };
    let (kiln, buildkit, buildah) = std::thread::scope(|scope| {
        let kiln = scope.spawn(|| {
            let started = Instant::now();
            let kiln_args = (
                context.as_path(),
                build_args.as_slice(),
                kiln_flags.as_slice(),
            );
            kiln_build(name, case, kiln_args, registry, &kiln_image)?;
            let kiln_time = started.elapsed();
            let started = Instant::now();
            let warm_log = kiln_cache_check(name, case, kiln_args, registry, &kiln_other_image)?;
            Ok::<_, String>((kiln_time, started.elapsed(), warm_log))
        });
        let buildkit = scope.spawn(|| {
            timed(&|| {
                if let Some(error) = case.buildkit_refuses {
                    match suite.buildkit.build(
                        &context,
                        None,
                        &build_args,
                        case.target,
                        case.platform,
                        &secrets,
                        &buildkit_image,
                    ) {
                        Err(report) if report.contains(error) => {}
                        Err(report) => {
                            return Err(format!(
                                "the Dockerfile did not fail with \"{error}\":\n{report}"
                            ));
                        }
                        Ok(()) => {
                            return Err(format!(
                                "the Dockerfile was built; it used to fail with \"{error}\""
                            ));
                        }
                    }
                }
                suite.buildkit.build(
                    &context,
                    case.buildkit_dockerfile,
                    &build_args,
                    case.target,
                    case.platform,
                    &secrets,
                    &buildkit_image,
                )
            })
        });
        let buildah = scope.spawn(|| {
            timed(&|| {
                tools::buildah_build(
                    &context,
                    case.buildah_dockerfile,
                    &build_args,
                    case.target,
                    case.platform,
                    &buildah_flags,
                    &buildah_image,
                )
            })
        });
        (
            kiln.join().expect("the kiln build thread"),
            buildkit.join().expect("the BuildKit build thread"),
            buildah.join().expect("the buildah build thread"),
        )
    });
    let timings = match (kiln, buildkit, buildah) {
        (Ok((kiln, kiln_cache, warm_log)), Ok(buildkit), Ok(buildah)) => Timings {
            kiln,
            kiln_cache,
            warm_log,
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

    let kiln = tools::read_image(&kiln_image)?;
    let kiln_other = tools::read_image(&kiln_other_image)?;
    let buildkit = tools::read_image(&buildkit_image)?;
    let buildah = tools::read_image(&buildah_image)?;
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
        if image.config["architecture"] != architecture {
            return Err(format!(
                "{tool} built for architecture {}, not {architecture}",
                image.config["architecture"]
            ));
        }
    }
    let kiln_side = Side {
        name: "kiln",
        tree: &kiln.tree,
        config: &kiln.config,
    };
    let mut failures = Vec::new();
    // The cache never changes the result: exactly the same image.
    let (cached, uncached) = if case.cache.is_some() {
        ("kiln", "kiln without cache")
    } else {
        ("kiln from a warm cache", "kiln")
    };
    let other_side = Side {
        name: if case.cache.is_some() {
            uncached
        } else {
            cached
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
    let buildkit_tree = ignore::without_buildkit_artefacts(buildkit.tree.clone(), &kiln.tree);
    let buildkit_side = Side {
        name: "BuildKit",
        tree: &buildkit_tree,
        config: &buildkit.config,
    };
    if let Err(report) = expect_differences(
        &buildkit_side,
        &kiln_side,
        config::EnvOrder::Kept,
        case.buildkit_differs_in,
    ) {
        failures.push(report);
    }
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
    if !failures.is_empty() {
        return Err(failures.join("\n"));
    }
    let verdict = |known: &[&str]| {
        if known.is_empty() {
            "identical".to_string()
        } else {
            format!("identical but for {}", known.join(", "))
        }
    };
    Ok(format!(
        "BuildKit: {}; buildah: {}; cache: same image ({}); \
         kiln {:.1}s ({} layers) + {:.1}s cache check, BuildKit {:.1}s ({} layers), \
         buildah {:.1}s ({} layers), {:.1}s in all",
        verdict(case.buildkit_differs_in),
        verdict(case.buildah_differs_in),
        if case.cache.is_some() {
            "as a build without cache"
        } else {
            cache_counts(&timings.warm_log).unwrap_or("no cache counts logged")
        },
        timings.kiln.as_secs_f64(),
        kiln.layers,
        timings.kiln_cache.as_secs_f64(),
        timings.buildkit.as_secs_f64(),
        buildkit.layers,
        timings.buildah.as_secs_f64(),
        buildah.layers,
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
/// the compared one, which must log the expected hits and misses.
fn kiln_build(
    name: &str,
    case: Case,
    (context, build_args, case_flags): KilnArgs,
    registry: &str,
    destination: &str,
) -> Result<(), String> {
    let flags = kiln_flags(case, case_flags);
    let Some(warm) = case.cache else {
        return tools::kiln_build(context, build_args, &flags, destination).map(|_| ());
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
        Ok(())
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
    flags.push("--cache=true".to_string());
    flags.push(format!("--cache-repo={registry}/cache-check/{name}"));
    let warmup = format!("{registry}/kiln-cache-warmup/{name}:1");
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

/// The cases to run: all, or those named in `KILN_CONFORMANCE_CASES`
/// (comma-separated), for working on one case.
fn selected_cases() -> Vec<(&'static str, Case)> {
    let wanted = std::env::var("KILN_CONFORMANCE_CASES").unwrap_or_default();
    let wanted: Vec<&str> = wanted.split(',').filter(|n| !n.is_empty()).collect();
    for name in &wanted {
        assert!(
            CASES.iter().any(|(n, _)| n == name),
            "KILN_CONFORMANCE_CASES names {name}, which is no case"
        );
    }
    CASES
        .iter()
        .filter(|(name, _)| wanted.is_empty() || wanted.contains(name))
        .copied()
        .collect()
}

/// One registry, one fixture push and one buildkitd for the whole suite;
/// cases run on a few worker threads (`KILN_CONFORMANCE_JOBS`, default:
/// the number of CPUs), each building with kiln, BuildKit and buildah at
/// once.
#[test]
fn kiln_builds_what_buildkit_and_buildah_build() {
    let started = Instant::now();
    let registry = registry::TestRegistry::start();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime for the fixture push");
    let fixtures = runtime.block_on(fixtures::push_busybox_index(registry.host()));
    drop(runtime);
    eprintln!(
        "conformance: registry and fixtures ready after {:.1}s",
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
        buildkit: &buildkit,
    };
    let queue = Mutex::new(selected_cases().into_iter());
    let jobs = std::env::var("KILN_CONFORMANCE_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(2);
    let failures = Mutex::new(Vec::new());
    let ran = Mutex::new(0usize);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().expect("case queue").next();
                    let Some((name, case)) = next else { break };
                    let outcome = check(name, case, &suite);
                    *ran.lock().expect("case count") += 1;
                    match outcome {
                        Ok(summary) => eprintln!("case {name}: {summary}"),
                        Err(report) => {
                            eprintln!("case {name}: DIFFERS");
                            failures
                                .lock()
                                .expect("failure list")
                                .push(format!("case {name}: {report}"));
                        }
                    }
                }
            });
        }
    });
    // Stopped (and checked to have left nothing behind) before the
    // verdict, so a failing run cleans up the same way.
    buildkit.stop();
    let failures = failures.into_inner().expect("failure list");
    let ran = ran.into_inner().expect("case count");
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
    let mut on_disk: Vec<String> = std::fs::read_dir(cases_dir())
        .expect("e2e/conformance exists")
        .filter_map(Result::ok)
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = CASES
        .iter()
        .map(|(name, case)| case.dir.unwrap_or(name).to_string())
        .collect();
    listed.sort();
    listed.dedup();
    assert_eq!(
        on_disk, listed,
        "every directory of e2e/conformance is a case listed in CASES, and back"
    );
    let names: std::collections::BTreeSet<&str> = CASES.iter().map(|(n, _)| *n).collect();
    assert_eq!(names.len(), CASES.len(), "case names are unique");
    assert!(
        listed.len() >= 40,
        "the suite has {} cases, fewer than 40",
        listed.len()
    );
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
