//! kiln as the operator runs it in a builder Job, against a real registry:
//! `--push-by-digest` leaves no tag behind, `--platform-tags` tags one
//! platform `<tag>-<os>-<arch>`, and `--build-request` writes the digest
//! (or the error) to the termination message even when the Kubernetes API
//! cannot be reached — the operator's fallback. The status written through
//! a real API server is covered by the e2e suite.

mod support;

use std::process::Output;

use support::TestRegistry;
use support::fixtures;
use support::kiln::{assert_success, context, context_arg, exists, stderr};

/// Runs kiln as a builder pod would, with its termination message at
/// `termination` and a kubeconfig naming a loopback port nothing listens
/// on, so the status report fails fast and stays on this machine.
async fn kiln_in_pod(args: &[String], termination: &std::path::Path) -> Output {
    let scratch = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let kubeconfig = scratch.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user:\n    token: t\ncurrent-context: c\n"
        ),
    )
    .unwrap();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env("DOCKER_CONFIG", scratch.path())
        .env("KUBECONFIG", &kubeconfig)
        .env("KILN_TERMINATION_MESSAGE_PATH", termination)
        .env("KILN_BUILD_REQUEST", "builds/app-linux-amd64-g1")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("KILN_EMULATION")
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn push_by_digest_reports_the_digest_and_leaves_no_tag() {
    let registry = TestRegistry::start();
    let fixtures = fixtures::push_busybox_index(registry.host()).await;
    let dir = context(
        &format!(
            "FROM {}\nCOPY hello.txt /hello.txt\n",
            fixtures.amd64.reference
        ),
        &[("hello.txt", "hello\n")],
    );
    let termination = dir.path().join("termination-log");
    let destination = format!("{}/app:1.0", registry.host());
    let output = kiln_in_pod(
        &[
            context_arg(dir.path()),
            format!("--destination={destination}"),
            "--custom-platform=linux/amd64".into(),
            "--push-by-digest".into(),
        ],
        &termination,
    )
    .await;
    assert_success(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let reference = stdout.trim();
    let digest = std::fs::read_to_string(&termination).unwrap();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest:?}"
    );
    assert_eq!(reference, format!("{}/app@{digest}", registry.host()));
    assert!(exists(reference), "the image is in the registry by digest");
    assert!(!exists(&destination), "no tag is left behind");
    let log = stderr(&output);
    assert!(
        log.contains("could not report the result to BuildRequest builds/app-linux-amd64-g1"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn platform_tags_tag_one_platform_with_its_suffix() {
    let registry = TestRegistry::start();
    let fixtures = fixtures::push_busybox_index(registry.host()).await;
    let dir = context(&format!("FROM {}\n", fixtures.arm64.reference), &[]);
    let termination = dir.path().join("termination-log");
    let output = kiln_in_pod(
        &[
            context_arg(dir.path()),
            format!("--destination={}/app:1.0", registry.host()),
            "--custom-platform=linux/arm64".into(),
            "--platform-tags".into(),
        ],
        &termination,
    )
    .await;
    assert_success(&output);
    assert!(exists(&format!("{}/app:1.0-linux-arm64", registry.host())));
    assert!(!exists(&format!("{}/app:1.0", registry.host())));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_build_leaves_its_error_in_the_termination_message() {
    let registry = TestRegistry::start();
    let fixtures = fixtures::push_busybox_index(registry.host()).await;
    let dir = context(
        &format!("FROM {}\nCOPY missing.txt /\n", fixtures.amd64.reference),
        &[],
    );
    let termination = dir.path().join("termination-log");
    let output = kiln_in_pod(
        &[
            context_arg(dir.path()),
            format!("--destination={}/app:1.0", registry.host()),
            "--custom-platform=linux/amd64".into(),
        ],
        &termination,
    )
    .await;
    assert!(!output.status.success());
    let message = std::fs::read_to_string(&termination).unwrap();
    assert!(message.contains("missing.txt"), "{message}");
    let log = stderr(&output);
    assert!(
        log.contains(message.trim()),
        "the termination message is the error the log shows:\n{log}"
    );
}
