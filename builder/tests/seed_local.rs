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
        ["linux/amd64", "linux/arm64"],
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
    assert_eq!(index_platforms(&image), ["linux/amd64", "linux/arm64"]);
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
        ["latest-linux-amd64", "latest-linux-arm64"]
    );
    assert!(!exists(&image));
    let log = stderr(&output);
    assert!(
        log.contains(&format!(
            "--publish-index=false: each platform is pushed under its own tag \
             ({repository}:latest-linux-amd64, {repository}:latest-linux-arm64); \
             nothing is pushed at {image}"
        )),
        "{log}"
    );
    assert!(!log.contains(&format!("{image}@")), "{log}");
    assert!(
        log.contains(&format!("pushed {repository}:latest-linux-arm64@sha256:")),
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
    assert_eq!(index_platforms(&image), ["linux/arm64"]);

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

/// What one guide-001 example must leave in the registry.
enum Promised {
    /// An index at the tag with exactly these platforms.
    Index(&'static [&'static str]),
    /// A single-platform image at the tag, for this architecture.
    Image(&'static str),
}

/// The rest of guide 001's local-driver command lines, flag for flag
/// (`$(date +%s)` tags and `gcr.io/myrepo` replaced by the loopback
/// registry). A `FROM scratch` Dockerfile, so s390x builds anywhere.
#[tokio::test(flavor = "multi_thread")]
async fn every_local_example_of_guide_001_gives_its_image() {
    let registry = TestRegistry::start();
    let host = registry.host().to_string();
    let workspace = context(
        "FROM scratch\nCOPY app.txt /app.txt\n",
        &[("app.txt", "app")],
    );
    let dockerfile = format!("--dockerfile={}/Dockerfile", workspace.path().display());
    let ctx = format!("--context={}", workspace.path().display());
    let cache_repo = format!("--cache-repo={host}/myrepo/cache");
    type Example = (&'static str, Vec<String>, Promised);
    let examples: Vec<Example> = vec![
        (
            "Local Driver / Advanced Configuration",
            vec![
                format!("--destination={host}/myrepo/advanced:latest"),
                "--platform=linux/amd64,linux/arm64,linux/s390x".into(),
                "--driver=local".into(),
                "--cache=true".into(),
                cache_repo.clone(),
                "--cache-ttl=168h".into(),
                "--compression=zstd".into(),
                "--push-retry=3".into(),
            ],
            Promised::Index(&["linux/amd64", "linux/arm64", "linux/s390x"]),
        ),
        (
            "Development Workflow (build-dev.sh)",
            vec![
                format!("--destination={host}/myrepo/myimage:dev"),
                "--platform=linux/amd64,linux/arm64".into(),
                "--driver=local".into(),
                "--cache=true".into(),
                cache_repo.clone(),
                "--verbosity=info".into(),
            ],
            Promised::Index(&["linux/amd64", "linux/arm64"]),
        ),
        (
            "Custom Platform Validation",
            vec![
                format!("--destination={host}/myrepo/validated:latest"),
                "--platform=linux/amd64,linux/arm64".into(),
                "--driver=local".into(),
                "--require-native-nodes=false".into(),
                "--verbosity=debug".into(),
            ],
            Promised::Index(&["linux/amd64", "linux/arm64"]),
        ),
        (
            "Error Handling and Retries (build-robust.sh)",
            vec![
                format!("--destination={host}/myrepo/robust:latest"),
                "--platform=linux/amd64,linux/arm64".into(),
                "--driver=local".into(),
                "--cache=true".into(),
                "--push-retry=5".into(),
                "--push-retry-initial-delay=2000".into(),
                "--push-retry-max-delay=60000".into(),
            ],
            Promised::Index(&["linux/amd64", "linux/arm64"]),
        ),
        (
            "QEMU emulation is slow: one platform",
            vec![
                format!("--destination={host}/myrepo/single:latest"),
                "--platform=linux/amd64".into(),
                "--driver=local".into(),
            ],
            Promised::Image("amd64"),
        ),
        (
            "Migration Guide, Before (single arch)",
            vec![format!("--destination={host}/myrepo/before:latest")],
            Promised::Image(match std::env::consts::ARCH {
                "aarch64" => "arm64",
                "x86_64" => "amd64",
                other => other,
            }),
        ),
    ];
    for (name, flags, promised) in examples {
        let mut args = vec![dockerfile.clone(), ctx.clone()];
        args.extend(flags.iter().cloned());
        let output = kiln(&args).await;
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let image = flags[0].trim_start_matches("--destination=").to_string();
        match promised {
            Promised::Index(platforms) => {
                assert_eq!(index_platforms(&image), platforms, "{name}");
            }
            Promised::Image(arch) => {
                let config = skopeo_json(&[
                    "inspect",
                    "--config",
                    "--raw",
                    "--tls-verify=false",
                    &format!("docker://{image}"),
                ]);
                assert_eq!(config["architecture"], arch, "{name}");
            }
        }
    }
}

/// Guide 000's command lines with the local driver: its basic
/// multi-platform build, the migration guide's "After" with the
/// per-architecture cache (`-${ARCH}` as kiln must receive it, quoted),
/// its production OCI configuration and its legacy Docker compatibility.
#[tokio::test(flavor = "multi_thread")]
async fn guide_000_examples_give_their_images() {
    let registry = TestRegistry::start();
    let host = registry.host().to_string();
    let workspace = context(
        "FROM scratch\nCOPY app.txt /app.txt\n",
        &[("app.txt", "app")],
    );
    let ctx = format!("--context=dir://{}", workspace.path().display());

    // Basic Multi-Platform Build.
    let image = format!("{host}/org/app:1.2.3");
    let output = kiln(&[
        ctx.clone(),
        "--dockerfile=Dockerfile".to_string(),
        format!("--destination={image}"),
        "--multi-platform=linux/amd64,linux/arm64".to_string(),
        "--driver=local".to_string(),
        "--publish-index=true".to_string(),
        "--oci-mode=oci".to_string(),
    ])
    .await;
    assert_success(&output);
    assert_eq!(index_platforms(&image), ["linux/amd64", "linux/arm64"]);

    // Migration Guide: After, with "Update Cache Strategy".
    let image = format!("{host}/registry/app:1.0.0");
    let output = kiln(&[
        ctx.clone(),
        format!("--destination={image}"),
        "--multi-platform=linux/amd64,linux/arm64".to_string(),
        "--publish-index=true".to_string(),
        "--cache=true".to_string(),
        format!("--cache-repo={host}/registry/cache"),
        "--arch-cache-repo-suffix=-${ARCH}".to_string(),
    ])
    .await;
    assert_success(&output);
    assert_eq!(index_platforms(&image), ["linux/amd64", "linux/arm64"]);
    let log = stderr(&output);
    for arch in ["amd64", "arm64"] {
        assert!(
            log.contains(&format!("layer cache in {host}/registry/cache-{arch}")),
            "{log}"
        );
    }

    // Production OCI Configuration (given with a context and destination,
    // and no platform: a one-entry index of this machine's platform).
    let image = format!("{host}/org/production:1.0");
    let output = kiln(&[
        ctx.clone(),
        format!("--destination={image}"),
        "--oci-mode=oci".to_string(),
        "--compression=zstd".to_string(),
        "--publish-index=true".to_string(),
        "--index-annotations=org.opencontainers.image.source=https://github.com/org/repo"
            .to_string(),
        "--index-annotations=org.opencontainers.image.licenses=Apache-2.0".to_string(),
    ])
    .await;
    assert_success(&output);
    let host_platform = kiln_builder::platform::Platform::host().to_string();
    assert_eq!(index_platforms(&image), [host_platform]);
    let index = raw(&image);
    assert_eq!(
        index["annotations"],
        serde_json::json!({
            "org.opencontainers.image.source": "https://github.com/org/repo",
            "org.opencontainers.image.licenses": "Apache-2.0",
        })
    );
    let child = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest = raw(&format!("{host}/org/production@{child}"));
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );

    // Legacy Docker Compatibility.
    let image = format!("{host}/registry/legacy:1.0.0");
    let output = kiln(&[
        ctx.clone(),
        format!("--destination={image}"),
        "--multi-platform=linux/amd64,linux/arm64".to_string(),
        "--oci-mode=docker".to_string(),
        "--compression=gzip".to_string(),
        "--legacy-manifest-list=true".to_string(),
    ])
    .await;
    assert_success(&output);
    assert_eq!(
        raw(&image)["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
}

/// Guide 001's "Check build context" and "Validate Dockerfile"
/// (Troubleshooting): `--no-push` with no destination builds the image
/// and prints its digest, pushing nothing; a broken Dockerfile is
/// refused with its line.
#[tokio::test(flavor = "multi_thread")]
async fn check_context_and_validate_dockerfile_build_without_pushing() {
    let (registry, fixtures) = setup().await;
    let workspace = app_context(&fixtures);
    let dockerfile = format!("--dockerfile={}/Dockerfile", workspace.path().display());
    let ctx = format!("--context={}", workspace.path().display());
    for verbosity in ["--verbosity=info", "--verbosity=debug"] {
        let output = kiln(&[
            dockerfile.clone(),
            ctx.clone(),
            "--no-push".to_string(),
            verbosity.to_string(),
        ])
        .await;
        assert_success(&output);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let digest = stdout.trim();
        assert!(
            digest.starts_with("sha256:") && digest.len() == 71,
            "{verbosity}: {stdout}"
        );
        let log = stderr(&output);
        assert!(!log.contains("pushed "), "{verbosity}: {log}");
        if verbosity.ends_with("debug") {
            assert!(log.contains("DEBUG "), "{log}");
        }
    }
    // Nothing reached the registry but the fixtures.
    let catalog = std::process::Command::new("curl")
        .args(["-fsS", &format!("http://{}/v2/_catalog", registry.host())])
        .output()
        .unwrap();
    let catalog: serde_json::Value = serde_json::from_slice(&catalog.stdout).unwrap();
    assert_eq!(
        catalog["repositories"],
        serde_json::json!(["busybox", "busybox-docker"])
    );

    std::fs::write(
        workspace.path().join("Dockerfile"),
        format!("FROM {}\nCOPY --chmod=nope app.txt /\n", fixtures.index),
    )
    .unwrap();
    let broken = kiln(&[
        dockerfile,
        ctx,
        "--no-push".to_string(),
        "--verbosity=debug".to_string(),
    ])
    .await;
    assert_eq!(broken.status.code(), Some(1), "{}", stderr(&broken));
    assert!(
        stderr(&broken).contains("Dockerfile:2"),
        "{}",
        stderr(&broken)
    );
}
