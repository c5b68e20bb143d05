//! The `kiln` binary as a user meets it: help, usage errors (exit 2),
//! validation errors (`error: …`, exit 1) and the log formats on stderr.
//! Every command here fails before a build would start, so these tests
//! stay valid once the build engine is wired in.

use std::process::{Command, Output};

fn kiln(args: &[&str]) -> Output {
    kiln_with_env(args, &[])
}

fn kiln_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command.args(args);
    for variable in [
        "KILN_EMULATION",
        "KILN_BUILD_REQUEST",
        "KILN_BUILDER_IMAGE",
        "RUST_LOG",
        "KILN_TEST_UNSET",
    ] {
        command.env_remove(variable);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_lists_the_flags_by_group() {
    let output = kiln(&["--help"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let help = stdout(&output);
    for wanted in [
        "--multi-platform <PLATFORMS>",
        "-c, --context <CONTEXT>",
        "-f, --dockerfile <PATH>",
        "-d, --destination <IMAGE>",
        "--cache[=<BOOL>]",
        "[possible values: gzip, zstd]",
        "[default: 336h]",
        "[env: KILN_EMULATION=]",
        "Input:",
        "Output:",
        "Platforms:",
        "Cache:",
        "Execution:",
        "Registry:",
        "Kubernetes driver:",
        "Logging:",
    ] {
        assert!(help.contains(wanted), "--help lacks {wanted:?}:\n{help}");
    }
}

/// Guide 001's "Check supported architectures": `--help | grep platform`
/// answers the question on one line.
#[test]
fn help_grep_platform_names_the_supported_platforms() {
    let output = kiln(&["--help"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let help = stdout(&output);
    let grepped: Vec<&str> = help.lines().filter(|l| l.contains("platform")).collect();
    assert!(
        grepped.contains(
            &"Supported platforms: any os/arch[/variant] (linux/amd64, linux/arm64, linux/s390x, ...)."
        ),
        "{grepped:#?}"
    );
}

#[test]
fn validation_errors_exit_1_with_one_line() {
    let table: &[(&[&str], &[(&str, &str)], &str)] = &[
        (
            &["--platform=linux", "--no-push"],
            &[],
            "error: invalid platform format: linux (expected os/arch)\n",
        ),
        (
            &["--cache=true", "--no-push"],
            &[],
            "error: --cache needs a repository for the cache images: pass --cache-repo=REGISTRY/REPO, or a --destination whose repository gets /cache appended\n",
        ),
        (
            &["--driver=k8s", "--no-push"],
            &[],
            "error: --driver=k8s needs --destination: the cluster pushes the images there\n",
        ),
        (
            &["--emulation=none"],
            &[("KILN_EMULATION", "qemu")],
            "error: no --destination given: pass --destination=<image>, or --no-push\n",
        ),
        (
            &[],
            &[],
            "error: no --destination given: pass --destination=<image>, or --no-push\n",
        ),
        // `--arch-cache-repo-suffix=-${ARCH}` unquoted in a shell without
        // ARCH set: kiln gets `-`.
        (
            &[
                "--destination=127.0.0.1:5000/app:1",
                "--cache",
                "--arch-cache-repo-suffix=-",
            ],
            &[],
            "error: --arch-cache-repo-suffix=\"-\" has no ${ARCH}, ${OS} or ${VARIANT} and ends with '-': the shell replaced the placeholder before kiln saw it. Quote the flag so kiln gets it: '--arch-cache-repo-suffix=-${ARCH}'\n",
        ),
    ];
    for (args, env, want) in table {
        let output = kiln_with_env(args, env);
        assert_eq!(output.status.code(), Some(1), "{args:?} {env:?}");
        assert_eq!(stderr(&output), *want, "{args:?} {env:?}");
        assert_eq!(stdout(&output), "", "{args:?} {env:?}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let table: &[(&[&str], &str)] = &[
        (
            &["--cache", "true"],
            "error: unexpected argument 'true' found",
        ),
        (&["--compression=lz4"], "[possible values: gzip, zstd]"),
        (
            &["--cache-ttl=2d"],
            "invalid duration \"2d\": unknown unit \"d\"",
        ),
        (
            &["--no-such-flag"],
            "error: unexpected argument '--no-such-flag' found",
        ),
    ];
    for (args, want) in table {
        let output = kiln(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&output).contains(want),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

/// A bare `--build-arg` that is unset in the environment logs a warning
/// during validation; the missing destination then stops the run.
const WARNING_ARGS: &[&str] = &["--build-arg=KILN_TEST_UNSET"];
const WARNING: &str = "--build-arg KILN_TEST_UNSET has no value and KILN_TEST_UNSET is not set in the environment; ignoring it";
const NO_DESTINATION: &str =
    "error: no --destination given: pass --destination=<image>, or --no-push\n";

fn warning_run(extra: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let args: Vec<&str> = WARNING_ARGS.iter().chain(extra).copied().collect();
    let output = kiln_with_env(&args, env);
    assert_eq!(output.status.code(), Some(1), "{args:?}");
    let text = stderr(&output);
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert_eq!(
        lines.last().map(|l| format!("{l}\n")).as_deref(),
        Some(NO_DESTINATION),
        "{text}"
    );
    lines[..lines.len() - 1].to_vec()
}

#[test]
fn text_logs_are_plain() {
    let logs = warning_run(&["--log-format=text"], &[]);
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(logs[0].starts_with("WARN "), "{logs:?}");
    assert!(logs[0].contains(WARNING), "{logs:?}");
    assert!(!logs[0].contains('\u{1b}'), "{logs:?}");
}

#[test]
fn color_logs_have_ansi_codes() {
    let logs = warning_run(&["--log-format=color"], &[]);
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(logs[0].contains('\u{1b}'), "{logs:?}");
    assert!(logs[0].contains(WARNING), "{logs:?}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    for (extra, with_time) in [
        (&["--log-format=json"][..], false),
        (&["--log-format=json", "--log-timestamp"][..], true),
    ] {
        let args: Vec<&str> = WARNING_ARGS.iter().chain(extra).copied().collect();
        let output = kiln_with_env(&args, &[]);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        // Every line is an object, the final error included.
        let text = stderr(&output);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        let line = &lines[0];
        assert_eq!(line["level"], "WARN", "{line}");
        assert_eq!(line["fields"]["message"], WARNING, "{line}");
        assert_eq!(line.get("timestamp").is_some(), with_time, "{line}");
        let error = &lines[1];
        assert_eq!(error["level"], "ERROR", "{error}");
        assert_eq!(
            format!(
                "error: {}\n",
                error["fields"]["message"].as_str().unwrap_or_default()
            ),
            NO_DESTINATION,
            "{error}"
        );
        assert_eq!(error["fields"]["exit_code"], 1, "{error}");
        assert_eq!(error.get("timestamp").is_some(), with_time, "{error}");
    }
}

#[test]
fn timestamps_only_when_asked() {
    let logs = warning_run(&["--log-timestamp"], &[]);
    assert_eq!(logs.len(), 1, "{logs:?}");
    // RFC 3339, e.g. 2025-01-31T12:00:00.000000Z
    let stamp = logs[0].split_whitespace().next().unwrap_or_default();
    assert!(
        stamp.len() > 20 && stamp.as_bytes()[4] == b'-' && stamp.contains('T'),
        "{logs:?}"
    );
}

#[test]
fn verbosity_and_rust_log_filter() {
    assert_eq!(
        warning_run(&["--verbosity=error"], &[]),
        Vec::<String>::new()
    );
    assert_eq!(
        warning_run(&["--verbosity=fatal"], &[]),
        Vec::<String>::new()
    );
    assert_eq!(warning_run(&["--verbosity=warn"], &[]).len(), 1);
    assert_eq!(
        warning_run(&[], &[("RUST_LOG", "error")]),
        Vec::<String>::new()
    );
    assert_eq!(
        warning_run(&["--verbosity=error"], &[("RUST_LOG", "warn")]).len(),
        1
    );
}
