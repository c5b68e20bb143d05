//! Conformance suite: every case in `e2e/conformance/<case>/` is built by
//! kiln and by Debian's buildah from the same busybox base in one loopback
//! registry, both images are read back with skopeo, and their root
//! filesystems (all layers applied, whiteouts honoured) and config fields
//! must be equal. See `e2e/conformance/README.md` for the cases, the
//! ignore list and the known differences.
//!
//! Needs root (RUN isolation of both tools), buildah, skopeo and
//! docker-registry, as `scripts/setup.sh` installs them. Run some cases only with
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
    /// Extra flags for `buildah build` (explained in the README).
    buildah_flags: &'static [&'static str],
    /// Known differences (config fields, `/paths`), each explained in the
    /// README: the case passes only when exactly these differ, so a fix on
    /// either side shows up.
    differs_in: &'static [&'static str],
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
    buildah_flags: &[],
    differs_in: &[],
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
            differs_in: &["/modes"],
            ..PLAIN
        },
    ),
    ("copy_chown", PLAIN),
    ("copy_dest_slash", PLAIN),
    ("copy_dir_contents", PLAIN),
    ("copy_env_dest", PLAIN),
    ("copy_from_image", PLAIN),
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
            differs_in: &["ExposedPorts"],
            ..PLAIN
        },
    ),
    ("hardlinks_run", PLAIN),
    (
        "hardlinks_to_base",
        Case {
            differs_in: &["/bin/bb", "/bin/busybox"],
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
            differs_in: &["/var", "/var/cache"],
            ..PLAIN
        },
    ),
    (
        "run_mount_secret",
        Case {
            secrets: &[("token", "conformance-secret-value\n")],
            differs_in: &["/run/secrets"],
            ..PLAIN
        },
    ),
    ("run_special_modes", PLAIN),
    ("scratch_final", PLAIN),
    (
        "shell",
        Case {
            differs_in: &["Cmd"],
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
            differs_in: &["/logs", "/more"],
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
            ..PLAIN
        },
    ),
    (
        "arm64_whiteout_base_files",
        Case {
            dir: Some("whiteout_base_files"),
            platform: Some("linux/arm64"),
            ..PLAIN
        },
    ),
    (
        "arm64_copy_from_stage",
        Case {
            dir: Some("copy_from_stage"),
            platform: Some("linux/arm64"),
            ..PLAIN
        },
    ),
    (
        "arm64_symlinks_run",
        Case {
            dir: Some("symlinks_run"),
            platform: Some("linux/arm64"),
            ..PLAIN
        },
    ),
    (
        "arm64_hardlinks_run",
        Case {
            dir: Some("hardlinks_run"),
            platform: Some("linux/arm64"),
            ..PLAIN
        },
    ),
    (
        "arm64_run_env_and_args",
        Case {
            dir: Some("run_env_and_args"),
            platform: Some("linux/arm64"),
            build_args: &["GIVEN=from-the-command-line"],
            ..PLAIN
        },
    ),
];

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance")
}

/// Builds case `name` with both tools from `base` and compares the
/// images; the error is the readable report of every difference.
fn check(name: &str, case: Case, registry: &str, base: &str) -> Result<String, String> {
    let started = Instant::now();
    let context = cases_dir().join(case.dir.unwrap_or(name));
    if !context.join("Dockerfile").is_file() {
        return Err(format!("{} has no Dockerfile", context.display()));
    }
    let mut build_args = vec![format!("BASE={base}")];
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
    let buildah_image = format!("{registry}/buildah/{name}:1");
    let (kiln, buildah) = std::thread::scope(|scope| {
        let kiln = scope.spawn(|| {
            let started = Instant::now();
            kiln_build(
                name,
                case,
                &context,
                &build_args,
                &kiln_flags,
                registry,
                &kiln_image,
            )
            .map(|()| started.elapsed())
        });
        let buildah = scope.spawn(|| {
            let started = Instant::now();
            tools::buildah_build(
                &context,
                case.buildah_dockerfile,
                &build_args,
                case.target,
                case.platform,
                &buildah_flags,
                &buildah_image,
            )
            .map(|()| started.elapsed())
        });
        (
            kiln.join().expect("the kiln build thread"),
            buildah.join().expect("the buildah build thread"),
        )
    });
    let (kiln_time, buildah_time) = match (kiln, buildah) {
        (Ok(kiln), Ok(buildah)) => (kiln, buildah),
        (kiln, buildah) => {
            let failures: Vec<String> = [("kiln", kiln.err()), ("buildah", buildah.err())]
                .into_iter()
                .filter_map(|(tool, error)| error.map(|e| format!("{tool}: {e}")))
                .collect();
            return Err(failures.join("\n"));
        }
    };

    let kiln = tools::read_image(&kiln_image)?;
    let buildah = tools::read_image(&buildah_image)?;
    // Both sides equal but built for the wrong platform would prove little.
    let architecture = case
        .platform
        .and_then(|p| p.split('/').nth(1))
        .unwrap_or("amd64");
    for (tool, image) in [("kiln", &kiln), ("buildah", &buildah)] {
        if image.config["architecture"] != architecture {
            return Err(format!(
                "{tool} built for architecture {}, not {architecture}",
                image.config["architecture"]
            ));
        }
    }
    let filesystem = rootfs::diff(
        &ignore::without_artefacts(buildah.tree),
        &ignore::without_artefacts(kiln.tree),
    );
    let configuration = config::diff(
        &config::summary(&buildah.config),
        &config::summary(&kiln.config),
    );
    let differing: Vec<&str> = configuration
        .iter()
        .chain(&filesystem)
        .map(|(item, _)| item.as_str())
        .collect();
    let mut known: Vec<&str> = case.differs_in.to_vec();
    known.sort_unstable();
    let mut found = differing.clone();
    found.sort_unstable();
    if found != known {
        let mut report = Vec::new();
        if !filesystem.is_empty() {
            let lines: Vec<&str> = filesystem.iter().map(|(_, l)| l.as_str()).collect();
            report.push(format!("root filesystem:\n{}", lines.join("\n")));
        }
        if !configuration.is_empty() {
            let lines: Vec<&str> = configuration.iter().map(|(_, l)| l.as_str()).collect();
            report.push(format!("config:\n{}", lines.join("\n")));
        }
        if !known.is_empty() {
            report.push(format!(
                "the documented known differences are exactly: {}",
                known.join(", ")
            ));
        }
        return Err(format!(
            "kiln's image differs from buildah's\n{}",
            report.join("\n")
        ));
    }
    let verdict = if known.is_empty() {
        "equal".to_string()
    } else {
        format!("equal but for the known {}", known.join(", "))
    };
    Ok(format!(
        "{verdict}; kiln {:.1}s ({} layers), buildah {:.1}s ({} layers), {:.1}s in all",
        kiln_time.as_secs_f64(),
        kiln.layers,
        buildah_time.as_secs_f64(),
        buildah.layers,
        started.elapsed().as_secs_f64()
    ))
}

/// kiln's side of a case: one build, or with `cache` a warm-up build and
/// the compared one, which must log the expected hits and misses.
fn kiln_build(
    name: &str,
    case: Case,
    context: &Path,
    build_args: &[String],
    case_flags: &[String],
    registry: &str,
    destination: &str,
) -> Result<(), String> {
    let mut flags = case_flags.to_vec();
    if let Some(target) = case.target {
        flags.push(format!("--target={target}"));
    }
    if let Some(platform) = case.platform {
        flags.push(format!("--custom-platform={platform}"));
        flags.push("--emulation=qemu".to_string());
    }
    let Some(warm) = case.cache else {
        return tools::kiln_build(context, build_args, &flags, destination).map(|_| ());
    };
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

/// One registry and one fixture push for the whole suite; cases run on
/// a few worker threads (`KILN_CONFORMANCE_JOBS`, default: the number of
/// CPUs), each building with kiln and buildah at once.
#[test]
fn kiln_and_buildah_build_the_same_images() {
    let started = Instant::now();
    let registry = registry::TestRegistry::start();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime for the fixture push");
    let fixtures = runtime.block_on(fixtures::push_busybox_index(registry.host()));
    drop(runtime);
    eprintln!(
        "conformance: registry and fixtures ready after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // Built before the workers start, so no case's time includes cargo.
    tools::kiln_binary();
    eprintln!(
        "conformance: kiln binary ready after {:.1}s",
        started.elapsed().as_secs_f64()
    );

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
                    let outcome = check(name, case, registry.host(), &fixtures.index);
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
