//! Every flag spelling kaniko's executor accepts parses in kiln: a kaniko
//! user changes the binary name and nothing else. The list is kaniko
//! v1.24.0's `cmd/executor/cmd/root.go` (60 long names, 5 short ones),
//! then the maintained fork's additions, each with a value of the form
//! kaniko takes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::process::Command;

use clap::Parser;
use kiln_builder::cli::Args;
use kiln_builder::cli::kaniko::{InKiln, KANIKO_FLAGS};

/// (spelling, a use of it as kaniko's documentation writes it).
const KANIKO_V1_24: &[(&str, &[&str])] = &[
    ("verbosity", &["--verbosity=debug"]),
    ("-v", &["-v", "debug"]),
    ("log-format", &["--log-format=json"]),
    ("log-timestamp", &["--log-timestamp"]),
    ("force", &["--force"]),
    ("dockerfile", &["--dockerfile=Dockerfile"]),
    ("-f", &["-f", "Dockerfile"]),
    ("context", &["--context=dir:///workspace"]),
    ("-c", &["-c", "/workspace/"]),
    ("context-sub-path", &["--context-sub-path=app"]),
    ("bucket", &["--bucket=my-bucket"]),
    ("-b", &["-b", "my-bucket"]),
    ("destination", &["--destination=127.0.0.1:5000/app:1"]),
    ("-d", &["-d", "127.0.0.1:5000/app:1"]),
    ("snapshot-mode", &["--snapshot-mode=redo"]),
    ("custom-platform", &["--custom-platform=linux/arm64"]),
    ("build-arg", &["--build-arg=A=1"]),
    ("insecure", &["--insecure"]),
    ("skip-tls-verify", &["--skip-tls-verify"]),
    ("insecure-pull", &["--insecure-pull"]),
    ("skip-tls-verify-pull", &["--skip-tls-verify-pull"]),
    ("push-retry", &["--push-retry=3"]),
    (
        "push-ignore-immutable-tag-errors",
        &["--push-ignore-immutable-tag-errors"],
    ),
    ("image-fs-extract-retry", &["--image-fs-extract-retry=2"]),
    ("image-download-retry", &["--image-download-retry=2"]),
    ("kaniko-dir", &["--kaniko-dir=/kaniko2"]),
    ("tar-path", &["--tar-path=/out/image.tar"]),
    ("single-snapshot", &["--single-snapshot"]),
    ("reproducible", &["--reproducible"]),
    ("target", &["--target=build"]),
    ("no-push", &["--no-push"]),
    ("no-push-cache", &["--no-push-cache"]),
    ("cache-repo", &["--cache-repo=127.0.0.1:5000/cache"]),
    ("cache-dir", &["--cache-dir=/cache"]),
    ("digest-file", &["--digest-file=/out/digest"]),
    (
        "image-name-with-digest-file",
        &["--image-name-with-digest-file=/out/name"],
    ),
    (
        "image-name-tag-with-digest-file",
        &["--image-name-tag-with-digest-file=/out/tag"],
    ),
    ("oci-layout-path", &["--oci-layout-path=/out/layout"]),
    ("compression", &["--compression=zstd"]),
    ("compression-level", &["--compression-level=3"]),
    (
        "cache",
        &["--cache=true", "--cache-repo=127.0.0.1:5000/cache"],
    ),
    ("compressed-caching", &["--compressed-caching=false"]),
    ("cleanup", &["--cleanup"]),
    ("cache-ttl", &["--cache-ttl=6h"]),
    ("insecure-registry", &["--insecure-registry=127.0.0.1:5000"]),
    (
        "skip-tls-verify-registry",
        &["--skip-tls-verify-registry=reg"],
    ),
    (
        "registry-certificate",
        &["--registry-certificate=reg=/certs/ca.crt"],
    ),
    (
        "registry-client-cert",
        &["--registry-client-cert=reg=/c/cert.pem,/c/key.pem"],
    ),
    (
        "registry-map",
        &["--registry-map=index.docker.io=mirror.gcr.io"],
    ),
    ("registry-mirror", &["--registry-mirror=mirror.gcr.io"]),
    (
        "skip-default-registry-fallback",
        &["--skip-default-registry-fallback"],
    ),
    ("ignore-var-run", &["--ignore-var-run=false"]),
    ("label", &["--label=a=b"]),
    ("skip-unused-stages", &["--skip-unused-stages"]),
    ("use-new-run", &["--use-new-run"]),
    ("git", &["--git=branch=main,single-branch=true"]),
    ("cache-copy-layers", &["--cache-copy-layers"]),
    ("cache-run-layers", &["--cache-run-layers=false"]),
    ("ignore-path", &["--ignore-path=/var/mail"]),
    ("force-build-metadata", &["--force-build-metadata"]),
    (
        "skip-push-permission-check",
        &["--skip-push-permission-check"],
    ),
    ("snapshotMode", &["--snapshotMode=time"]),
    ("customPlatform", &["--customPlatform=linux/arm64"]),
    ("tarPath", &["--tarPath=/out/image.tar"]),
    ("whitelist-var-run", &["--whitelist-var-run=false"]),
];

/// The maintained fork's additions (osscontainertools/kaniko).
const KANIKO_FORK: &[(&str, &[&str])] = &[
    ("annotation", &["--annotation=a=b"]),
    ("credential-helpers", &["--credential-helpers=env"]),
    ("dryrun", &["--dryrun"]),
    ("image-format", &["--image-format=oci"]),
    ("materialize", &["--materialize"]),
    ("pre-cleanup", &["--pre-cleanup"]),
    ("preserve-context", &["--preserve-context"]),
    ("secret", &["--secret=id=token,env=TOKEN"]),
];

#[test]
fn kaniko_has_65_spellings_and_the_fork_8_more() {
    assert_eq!(KANIKO_V1_24.len(), 65);
    assert_eq!(KANIKO_FORK.len(), 8);
}

#[test]
fn every_kaniko_spelling_parses_and_validates() {
    for (spelling, argv) in KANIKO_V1_24.iter().chain(KANIKO_FORK) {
        let mut all = vec!["kiln", "--destination=127.0.0.1:5000/app:base"];
        all.extend_from_slice(argv);
        let args = Args::try_parse_from(&all)
            .unwrap_or_else(|e| panic!("{spelling}: {all:?} is refused: {e}"));
        if let Err(e) = args.into_options_with_env(&|_| None) {
            panic!("{spelling}: {all:?} fails validation: {e}");
        }
    }
}

#[test]
fn the_readme_table_lists_exactly_kanikos_spellings() {
    let tested: BTreeSet<&str> = KANIKO_V1_24
        .iter()
        .chain(KANIKO_FORK)
        .map(|(s, _)| *s)
        .collect();
    let listed: BTreeSet<&str> = KANIKO_FLAGS.iter().map(|(s, _)| *s).collect();
    assert_eq!(tested, listed);
    // An alias names one of kiln's flags.
    let command = <Args as clap::CommandFactory>::command();
    for (spelling, in_kiln) in KANIKO_FLAGS {
        if let InKiln::Alias(of) = in_kiln {
            assert!(
                command.get_arguments().any(|a| a.get_long() == Some(*of)),
                "{spelling} is an alias of unknown --{of}"
            );
        }
    }
}

/// The binary warns, once and on one line, for each ignored flag that is
/// set, and says nothing of those with kaniko's meaning.
#[test]
fn ignored_flags_warn_on_one_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "--no-push",
            "--use-new-run",
            "--kaniko-dir=/kaniko2",
            "--no-push-cache",
            "--dry-run",
            "--context=/nonexistent-kiln-context",
        ])
        .env_remove("KILN_EMULATION")
        .env_remove("KILN_BUILDER_IMAGE")
        .env_remove("KILN_BUILD_REQUEST")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("for kaniko compatibility"))
        .collect();
    assert_eq!(warnings.len(), 2, "{stderr}");
    assert!(
        warnings[0].contains(
            "--kaniko-dir is accepted for kaniko compatibility and has no effect: kiln keeps \
             nothing in a kaniko directory"
        ),
        "{stderr}"
    );
    assert!(
        warnings[1].contains("--use-new-run is accepted for kaniko compatibility"),
        "{stderr}"
    );
}

/// `--registry-map`: a base image named on an unreachable registry is
/// pulled from the mirror it maps to; with
/// `--skip-default-registry-fallback` a mirror without the image is an
/// error, not a fall back to the original.
#[tokio::test(flavor = "multi_thread")]
async fn registry_map_pulls_from_the_mirror() {
    use support::kiln::{assert_success, context, context_arg, kiln, stderr};
    let mirror = support::TestRegistry::start();
    support::fixtures::push_busybox_index(mirror.host()).await;
    // Nothing listens on port 1: only the mirror can serve the base.
    let ctx = context(
        "FROM 127.0.0.1:1/busybox:latest\nCOPY a /a\n",
        &[("a", "a")],
    );
    let output = kiln(&[
        context_arg(ctx.path()),
        "--no-push".to_string(),
        format!("--registry-map=127.0.0.1:1={}", mirror.host()),
    ])
    .await;
    assert_success(&output);

    let empty = support::TestRegistry::start();
    let output = kiln(&[
        context_arg(ctx.path()),
        "--no-push".to_string(),
        format!("--registry-map=127.0.0.1:1={}", empty.host()),
        "--skip-default-registry-fallback".to_string(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    let error = message.lines().last().unwrap_or_default();
    assert!(
        error.starts_with(&format!(
            "error: fetching manifest {}/busybox:latest: HTTP 404",
            empty.host()
        )),
        "{message}"
    );
    assert!(!error.contains("127.0.0.1:1/"), "fell back: {message}");
}

/// `--no-push-cache`: cached layers are looked up but none is pushed.
#[tokio::test(flavor = "multi_thread")]
async fn no_push_cache_pushes_no_cache_layer() {
    use support::kiln::{assert_success, context, context_arg, kiln};
    let registry = support::TestRegistry::start();
    let fixtures = support::fixtures::push_busybox_index(registry.host()).await;
    let ctx = context(
        &format!("FROM {}\nRUN echo hi > /hi\n", fixtures.index),
        &[],
    );
    let cache = format!("{}/app/cache", registry.host());
    let build = |extra: Option<&str>| {
        let mut args = vec![
            context_arg(ctx.path()),
            format!("--destination={}/app:1", registry.host()),
            "--cache=true".to_string(),
        ];
        args.extend(extra.map(str::to_string));
        args
    };
    assert_success(&kiln(&build(Some("--no-push-cache"))).await);
    assert!(!support::kiln::exists(&format!("{cache}:latest")));
    let listed = Command::new("skopeo")
        .args([
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{cache}"),
        ])
        .output()
        .unwrap();
    assert!(!listed.status.success(), "a cache image was pushed");
    // Without it, the RUN's layer goes to the cache repository.
    assert_success(&kiln(&build(None)).await);
    let listed = Command::new("skopeo")
        .args([
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{cache}"),
        ])
        .output()
        .unwrap();
    assert!(listed.status.success(), "no cache image was pushed");
}

/// `--credential-helpers`: for a registry the docker config has nothing
/// for, kiln runs `docker-credential-NAME get` for each listed NAME in
/// order, as the docker CLI does (server on stdin, JSON on stdout). A
/// helper that is not installed or has no credentials is passed over.
#[tokio::test(flavor = "multi_thread")]
async fn credential_helpers_are_run_for_registries_without_credentials() {
    use std::os::unix::fs::PermissionsExt;
    use support::kiln::{assert_success, context, context_arg, kiln_with_env, stderr};
    let registry = support::TestRegistry::start_with_auth("helper-user", "helper-s3cret");
    let ctx = context("FROM scratch\nCOPY a.txt /\n", &[("a.txt", "a")]);
    let bin = tempfile::tempdir().unwrap();
    let asked = bin.path().join("asked");
    let helper = |name: &str, body: &str| {
        let path = bin.path().join(format!("docker-credential-{name}"));
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    // Records what it was asked and answers with the registry's account.
    helper(
        "kiln-test",
        &format!(
            "read server\necho \"$1 $server\" >> '{}'\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"helper-user\",\"Secret\":\"helper-s3cret\"}}' \"$server\"",
            asked.display()
        ),
    );
    // Knows nothing, as helpers say it.
    helper(
        "kiln-empty",
        "echo 'credentials not found in native keychain' >&2\nexit 1",
    );
    let path = std::env::join_paths(
        std::iter::once(bin.path().to_path_buf())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let env = [("PATH", path.as_os_str())];
    let build = |tag: &str, extra: &[&str]| {
        let mut args = vec![
            context_arg(ctx.path()),
            format!("--destination={}/helped:{tag}", registry.host()),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };

    // Without the flag: no credentials, refused before any step.
    let refused = kiln_with_env(&build("1", &[]), None, &env).await;
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("401"), "{}", stderr(&refused));
    assert!(!asked.exists());

    // An uninstalled helper, one without credentials, then the one with.
    let helped = kiln_with_env(
        &build(
            "2",
            &[
                "--credential-helpers=kiln-not-installed",
                "--credential-helpers=kiln-empty,kiln-test",
            ],
        ),
        None,
        &env,
    )
    .await;
    assert_success(&helped);
    let asked = std::fs::read_to_string(&asked).unwrap();
    assert!(
        asked
            .lines()
            .all(|l| l == format!("get {}", registry.host()))
            && !asked.is_empty(),
        "{asked}"
    );
    assert!(
        !stderr(&helped).contains("for kaniko compatibility"),
        "{}",
        stderr(&helped)
    );
}

/// `--push-ignore-immutable-tag-errors`: a registry with immutable tags
/// (a loopback proxy answering 400 TAG_INVALID to any manifest pushed
/// under a tag) refuses a second image under an existing tag. Without the
/// flag the build fails; with it the build succeeds with a warning, the
/// tag keeps the first image, and nothing claims the tag was pushed.
#[tokio::test(flavor = "multi_thread")]
async fn immutable_tag_refusals_are_ignored_on_request() {
    use support::kiln::{assert_success, context, context_arg, kiln, stderr};
    let registry = support::TestRegistry::start();
    let proxy = support::FaultProxy::immutable_tags(registry.host()).await;
    let first = context("FROM scratch\nCOPY a.txt /\n", &[("a.txt", "first")]);
    let second = context("FROM scratch\nCOPY a.txt /\n", &[("a.txt", "second")]);
    let args = |ctx: &std::path::Path, host: &str, extra: &[&str]| {
        let mut args = vec![context_arg(ctx), format!("--destination={host}/frozen:1")];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let manifest = |host: &str| {
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{host}/frozen:1"))
            .output()
            .unwrap()
            .stdout
    };
    // The tag is created directly, then is immutable behind the proxy.
    assert_success(&kiln(&args(first.path(), registry.host(), &[])).await);
    let kept = manifest(registry.host());
    assert!(!kept.is_empty());

    let refused = kiln(&args(second.path(), proxy.host(), &[])).await;
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("TAG_INVALID"),
        "{}",
        stderr(&refused)
    );

    let ignored = kiln(&args(
        second.path(),
        proxy.host(),
        &["--push-ignore-immutable-tag-errors"],
    ))
    .await;
    assert_success(&ignored);
    let log = stderr(&ignored);
    assert!(
        log.contains(&format!(
            "WARN {}/frozen:1 exists and the registry refused to overwrite it (",
            proxy.host()
        )) && log.contains("; it keeps its image (--push-ignore-immutable-tag-errors)"),
        "{log}"
    );
    assert!(
        !log.contains(&format!("pushed {}/frozen:1", proxy.host())),
        "{log}"
    );
    // stdout names what was pushed; with nothing pushed, the built digest.
    let stdout = String::from_utf8_lossy(&ignored.stdout);
    assert!(
        stdout.starts_with("sha256:") && stdout.lines().count() == 1,
        "{stdout}"
    );
    assert_eq!(manifest(registry.host()), kept, "the tag moved");
    assert!(proxy.faults_injected() >= 2);

    // A refusal that is not about an immutable tag still fails.
    let denied = support::FaultProxy::denying(registry.host(), support::proxy::manifest_put).await;
    let output = kiln(&args(
        second.path(),
        denied.host(),
        &[
            "--push-ignore-immutable-tag-errors",
            "--skip-push-permission-check",
        ],
    ))
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
}

/// `--push-ignore-immutable-tag-errors` for the multi-platform index: the
/// platforms are pushed by digest (which an immutable-tag registry
/// accepts), then the index under the tag, which it refuses. Without the
/// flag the build fails; with it the build succeeds with a warning naming
/// the tag, the tag keeps its first index, and stdout gives the index
/// built rather than a reference that was never pushed.
#[tokio::test(flavor = "multi_thread")]
async fn immutable_tag_refusals_of_an_index_are_ignored_on_request() {
    use support::kiln::{assert_success, context, context_arg, kiln, stderr};
    let registry = support::TestRegistry::start();
    let proxy = support::FaultProxy::immutable_tags(registry.host()).await;
    let first = context("FROM scratch\nCOPY a.txt /\n", &[("a.txt", "first")]);
    let second = context("FROM scratch\nCOPY a.txt /\n", &[("a.txt", "second")]);
    let args = |ctx: &std::path::Path, host: &str, extra: &[&str]| {
        let mut args = vec![
            context_arg(ctx),
            format!("--destination={host}/frozen-index:1"),
            "--platform=linux/amd64,linux/arm64".to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let manifest = |host: &str| {
        let output = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{host}/frozen-index:1"))
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        output.stdout
    };
    assert_success(&kiln(&args(first.path(), registry.host(), &[])).await);
    let kept = manifest(registry.host());
    let kept_index: serde_json::Value = serde_json::from_slice(&kept).unwrap();
    assert_eq!(
        kept_index["manifests"].as_array().unwrap().len(),
        2,
        "{kept_index}"
    );

    let refused = kiln(&args(second.path(), proxy.host(), &[])).await;
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("TAG_INVALID"),
        "{}",
        stderr(&refused)
    );
    let injected = proxy.faults_injected();
    assert!(injected >= 1);

    let ignored = kiln(&args(
        second.path(),
        proxy.host(),
        &["--push-ignore-immutable-tag-errors"],
    ))
    .await;
    assert_success(&ignored);
    assert!(proxy.faults_injected() > injected);
    let log = stderr(&ignored);
    let stdout = String::from_utf8_lossy(&ignored.stdout).into_owned();
    let index_digest = stdout.trim();
    assert!(
        index_digest.starts_with("sha256:") && stdout.lines().count() == 1,
        "{stdout}"
    );
    assert!(
        log.contains(&format!(
            "WARN {}/frozen-index:1 exists and the registry refused to overwrite it (",
            proxy.host()
        )) && log.contains(&format!(
            "; it keeps its image, the index {index_digest} is not published there \
             (--push-ignore-immutable-tag-errors)"
        )),
        "{log}"
    );
    assert!(!log.contains("pushed index"), "{log}");
    assert_eq!(manifest(registry.host()), kept, "the tag moved");
    // The index kiln built is not the one the tag keeps: the test did
    // change the image.
    assert_ne!(format!("sha256:{}", sha256_hex(&kept)), index_digest);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
