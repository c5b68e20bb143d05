//! Guide 001's `--driver=local` examples (`../shared/seeds/`), run as
//! written with only the registry changed to one on loopback and the
//! context to a temporary directory, each checked for the image its text
//! promises.
//!
//! The Dockerfile has no RUN, so every platform builds on any machine
//! whatever binfmt_misc holds; what runs under emulation is
//! `run_emulation.rs`'s subject.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::TestRegistry;
use support::fixtures::{self, Fixtures};
use support::kiln::{assert_success, context, exists, kiln, skopeo_json, stderr};

async fn setup() -> (TestRegistry, Fixtures) {
    let registry = TestRegistry::start();
    let fixtures = fixtures::push_busybox_index(registry.host()).await;
    (registry, fixtures)
}

fn app_context(fixtures: &Fixtures) -> tempfile::TempDir {
    context(
        &format!("FROM {}\nCOPY app.txt /app.txt\n", fixtures.index),
        &[("app.txt", "app")],
    )
}

/// The raw manifest at `reference`.
fn raw(reference: &str) -> serde_json::Value {
    skopeo_json(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ])
}

/// The `os/architecture[/variant]` of each entry of the index at `reference`.
fn index_platforms(reference: &str) -> Vec<String> {
    let index = raw(reference);
    assert_eq!(
        index["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{reference}: {index}"
    );
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut text = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(variant) = p["variant"].as_str() {
                text.push('/');
                text.push_str(variant);
            }
            text
        })
        .collect()
}

fn tags(repository: &str) -> Vec<String> {
    let listed = skopeo_json(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{repository}"),
    ]);
    let mut tags: Vec<String> = listed["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    tags.sort();
    tags
}

/// Guide 001, "Quick Start" (the same command as "Basic local build",
/// "Use supported platforms only" and the migration guide's "After"):
/// the multi-platform image is at the destination's tag.
#[tokio::test(flavor = "multi_thread")]
async fn quick_start_publishes_the_multi_platform_image_at_the_tag() {
    let (registry, fixtures) = setup().await;
    let workspace = app_context(&fixtures);
    let image = format!("{}/myrepo/myimage:latest", registry.host());
    let output = kiln(&[
        format!("--dockerfile={}/Dockerfile", workspace.path().display()),
        format!("--context={}", workspace.path().display()),
        format!("--destination={image}"),
        "--platform=linux/amd64,linux/arm64".to_string(),
        "--driver=local".to_string(),
    ])
    .await;
    assert_success(&output);
    assert_eq!(
        index_platforms(&image),
        ["linux/amd64", "linux/arm64/v8"],
        "{}",
        stderr(&output)
    );
    // Only the tag asked for; the platforms are in the index by digest.
    assert_eq!(
        tags(&format!("{}/myrepo/myimage", registry.host())),
        ["latest"]
    );
    let log = stderr(&output);
    assert!(
        log.contains(&format!("pushed index {image}@sha256:")),
        "{log}"
    );
}

/// The migration guide's GitHub Actions step and "If not, rebuild with
/// OCI mode" say `--publish-index=true` outright: the same image.
#[tokio::test(flavor = "multi_thread")]
async fn explicit_publish_index_and_oci_mode_give_the_same_index() {
    let (registry, fixtures) = setup().await;
    let workspace = app_context(&fixtures);
    let image = format!("{}/myrepo/myimage:latest", registry.host());
    let output = kiln(&[
        format!("--dockerfile={}/Dockerfile", workspace.path().display()),
        format!("--context={}", workspace.path().display()),
        format!("--destination={image}"),
        "--platform=linux/amd64,linux/arm64".to_string(),
        "--driver=local".to_string(),
        "--oci-mode=oci".to_string(),
        "--publish-index=true".to_string(),
    ])
    .await;
    assert_success(&output);
    assert_eq!(index_platforms(&image), ["linux/amd64", "linux/arm64/v8"]);
}

/// `--publish-index=false` keeps one tag per platform, says so, and never
/// claims the destination's own tag.
#[tokio::test(flavor = "multi_thread")]
async fn publish_index_false_pushes_per_platform_tags_and_says_so() {
    let (registry, fixtures) = setup().await;
    let workspace = app_context(&fixtures);
    let repository = format!("{}/myrepo/myimage", registry.host());
    let image = format!("{repository}:latest");
    let output = kiln(&[
        format!("--context={}", workspace.path().display()),
        format!("--destination={image}"),
        "--platform=linux/amd64,linux/arm64".to_string(),
        "--driver=local".to_string(),
        "--publish-index=false".to_string(),
    ])
    .await;
    assert_success(&output);
    assert_eq!(
        tags(&repository),
        ["latest-linux-amd64", "latest-linux-arm64-v8"]
    );
    assert!(!exists(&image));
    let log = stderr(&output);
    assert!(
        log.contains(&format!(
            "--publish-index=false: each platform is pushed under its own tag \
             ({repository}:latest-linux-amd64, {repository}:latest-linux-arm64-v8); \
             nothing is pushed at {image}"
        )),
        "{log}"
    );
    assert!(!log.contains(&format!("{image}@")), "{log}");
    assert!(
        log.contains(&format!(
            "pushed {repository}:latest-linux-arm64-v8@sha256:"
        )),
        "{log}"
    );
}

/// One platform with `--publish-index=true` is a one-entry index (and
/// with no platform named, the host's).
#[tokio::test(flavor = "multi_thread")]
async fn one_platform_with_publish_index_is_a_one_entry_index() {
    let (registry, fixtures) = setup().await;
    let workspace = app_context(&fixtures);
    let image = format!("{}/one:arm", registry.host());
    let output = kiln(&[
        format!("--context={}", workspace.path().display()),
        format!("--destination={image}"),
        "--platform=linux/arm64".to_string(),
        "--publish-index=true".to_string(),
    ])
    .await;
    assert_success(&output);
    assert_eq!(index_platforms(&image), ["linux/arm64/v8"]);

    let image = format!("{}/one:host", registry.host());
    let output = kiln(&[
        format!("--context={}", workspace.path().display()),
        format!("--destination={image}"),
        "--publish-index".to_string(),
    ])
    .await;
    assert_success(&output);
    let host = kiln_builder::platform::Platform::host().to_string();
    assert_eq!(index_platforms(&image), [host]);
}
