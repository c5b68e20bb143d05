//! `--driver=local` multi-platform builds against a real registry: every
//! platform built on this machine, pushed by digest, one index naming them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use support::TestRegistry;
use support::fixtures::{self, Fixtures};
use support::kiln::{assert_success, context, context_arg, kiln, layers_for, skopeo_json, stderr};

async fn setup() -> (TestRegistry, Fixtures) {
    let registry = TestRegistry::start();
    let fixtures = fixtures::push_busybox_index(registry.host()).await;
    (registry, fixtures)
}

/// The marker file each fixture layer carries says which platform it is.
fn marker(reference: &str, arch: &str, path: &str) -> String {
    layers_for(reference, Some(arch))
        .into_iter()
        .rev()
        .find_map(|layer| layer.get(path).map(|entry| entry.4.clone()))
        .unwrap_or_else(|| panic!("{path} not in {reference} for {arch}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_platforms_make_one_oci_index() {
    let (registry, fixtures) = setup().await;
    // The `tools` stage runs for the build platform (the cross-compilation
    // pattern); the final stage for each target platform.
    let dockerfile = format!(
        "FROM --platform=$BUILDPLATFORM {base} AS tools\n\
         ARG TARGETARCH\n\
         COPY app.txt /out/app-$TARGETARCH.txt\n\
         FROM {base}\n\
         COPY --from=tools /out/ /opt/\n\
         COPY --from=tools /etc/kiln-fixture-arch /opt/built-on\n",
        base = fixtures.index
    );
    let ctx = context(&dockerfile, &[("app.txt", "app")]);
    let image = format!("{}/multi:1.0", registry.host());
    let out = tempfile::tempdir().unwrap();
    let digest_file = out.path().join("digest");
    let output = kiln(&[
        context_arg(ctx.path()),
        format!("--destination={image}"),
        "--multi-platform=linux/amd64,linux/arm64".to_string(),
        "--publish-index=true".to_string(),
        "--oci-mode=oci".to_string(),
        "--reproducible".to_string(),
        "--index-annotations=org.opencontainers.image.title=multi".to_string(),
        format!("--digest-file={}", digest_file.display()),
    ])
    .await;
    assert_success(&output);
    let index_digest = std::fs::read_to_string(&digest_file).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("{}/multi@{index_digest}", registry.host())
    );

    let index = skopeo_json(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(
        index["annotations"]["org.opencontainers.image.title"],
        "multi"
    );
    let children = index["manifests"].as_array().unwrap();
    assert_eq!(children.len(), 2);
    assert_eq!(children[0]["platform"]["architecture"], "amd64");
    assert_eq!(children[1]["platform"]["architecture"], "arm64");
    assert!(children[1]["platform"].get("variant").is_none(), "{index}");
    for (child, arch) in children.iter().zip(["amd64", "arm64"]) {
        let child_ref = format!(
            "{}/multi@{}",
            registry.host(),
            child["digest"].as_str().unwrap()
        );
        let config = skopeo_json(&[
            "inspect",
            "--config",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{child_ref}"),
        ]);
        assert_eq!(config["architecture"], arch);
    }
    let arm = skopeo_json(&[
        "inspect",
        "--tls-verify=false",
        "--override-arch",
        "arm64",
        &format!("docker://{image}"),
    ]);
    assert_eq!(arm["Architecture"], "arm64");
    // Each platform's base is its own; the tools stage ran for the build
    // platform (amd64) in both.
    assert_eq!(
        marker(&image, "arm64", "etc/kiln-fixture-arch").trim(),
        "arm64"
    );
    assert_eq!(marker(&image, "arm64", "opt/built-on").trim(), "amd64");
    assert_eq!(marker(&image, "arm64", "opt/app-arm64.txt"), "app");
    assert_eq!(marker(&image, "amd64", "opt/app-amd64.txt"), "app");

    // Platforms are pushed by digest only: the repository has one tag.
    let tags = skopeo_json(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/multi", registry.host()),
    ]);
    assert_eq!(tags["Tags"], serde_json::json!(["1.0"]));

    // The same inputs give the same index.
    let again = tempfile::tempdir().unwrap();
    let digest_again = again.path().join("digest");
    assert_success(
        &kiln(&[
            context_arg(ctx.path()),
            format!("--destination={}/multi:again", registry.host()),
            "--multi-platform=linux/amd64,linux/arm64".to_string(),
            "--publish-index".to_string(),
            "--oci-mode=oci".to_string(),
            "--reproducible".to_string(),
            "--index-annotations=org.opencontainers.image.title=multi".to_string(),
            format!("--digest-file={}", digest_again.display()),
        ])
        .await,
    );
    assert_eq!(std::fs::read_to_string(digest_again).unwrap(), index_digest);
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_manifest_list_and_platform_tags() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!("FROM {}\nCOPY app.txt /\n", fixtures.index),
        &[("app.txt", "app")],
    );
    let image = format!("{}/legacy:2.0", registry.host());
    assert_success(
        &kiln(&[
            context_arg(ctx.path()),
            format!("--destination={image}"),
            "--platform=linux/amd64,linux/arm64".to_string(),
            "--publish-index=true".to_string(),
            "--legacy-manifest-list=true".to_string(),
            "--platform-tags".to_string(),
        ])
        .await,
    );
    let list = skopeo_json(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]);
    assert_eq!(
        list["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    for child in list["manifests"].as_array().unwrap() {
        assert_eq!(
            child["mediaType"],
            "application/vnd.docker.distribution.manifest.v2+json"
        );
    }
    let tags = skopeo_json(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/legacy", registry.host()),
    ]);
    let mut tags: Vec<String> = tags["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    tags.sort();
    assert_eq!(tags, ["2.0", "2.0-linux-amd64", "2.0-linux-arm64"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_run_is_refused_before_any_work() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!("FROM {}\nCOPY app.txt /\nRUN make\n", fixtures.index),
        &[("app.txt", "app")],
    );
    let output = kiln(&[
        context_arg(ctx.path()),
        format!("--destination={}/foreign:1", registry.host()),
        "--multi-platform=linux/amd64,linux/arm64".to_string(),
        "--publish-index".to_string(),
        "--emulation=none".to_string(),
    ])
    .await;
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains("linux/arm64 cannot be built on this linux/amd64 machine"),
        "{message}"
    );
    assert!(message.contains("Dockerfile:3 `RUN make`"), "{message}");
    assert!(
        message.contains("--driver=k8s") && message.contains("--emulation=qemu"),
        "{message}"
    );
    // A single foreign platform is refused the same way.
    let output = kiln(&[
        context_arg(ctx.path()),
        format!("--destination={}/foreign:arm", registry.host()),
        "--custom-platform=linux/arm64".to_string(),
        "--emulation=none".to_string(),
    ])
    .await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains(
            "linux/arm64 cannot be built on this linux/amd64 machine: Dockerfile:3 `RUN make`"
        ),
        "{}",
        stderr(&output)
    );
    let listed = Command::new("skopeo")
        .args([
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{}/foreign", registry.host()),
        ])
        .output()
        .unwrap();
    assert!(!listed.status.success(), "nothing may be pushed");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_failing_platform_publishes_no_index() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!("FROM {}\nCOPY app.txt /\n", fixtures.index),
        &[("app.txt", "app")],
    );
    let image = format!("{}/partial:1", registry.host());
    let output = kiln(&[
        context_arg(ctx.path()),
        format!("--destination={image}"),
        "--multi-platform=linux/amd64,linux/s390x".to_string(),
        "--publish-index".to_string(),
    ])
    .await;
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("linux/s390x"), "{message}");
    assert!(message.contains("no index published"), "{message}");
    let index = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{image}"),
        ])
        .output()
        .unwrap();
    assert!(
        !index.status.success(),
        "no index may be pushed from partial results"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_checks_everything_and_builds_nothing() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!(
            "FROM --platform=$BUILDPLATFORM {base} AS tools\nRUN make\nFROM {base}\nCOPY --from=tools /etc/passwd /x\n",
            base = fixtures.index
        ),
        &[("app.txt", "app")],
    );
    let image = format!("{}/dry:1", registry.host());
    let output = kiln(&[
        context_arg(ctx.path()),
        format!("--destination={image}"),
        "--multi-platform=linux/amd64,linux/arm64".to_string(),
        "--publish-index".to_string(),
        "--dry-run".to_string(),
    ])
    .await;
    assert_success(&output);
    let plan = String::from_utf8_lossy(&output.stdout);
    assert!(plan.contains("plan for 2 platform(s)"), "{plan}");
    // RUN only in the build-platform stage: both platforms run here.
    assert!(plan.contains("linux/arm64: runs here"), "{plan}");
    assert!(
        plan.contains(&format!(
            "stage tools for linux/amd64: FROM {} ({})",
            fixtures.index, fixtures.amd64.manifest_digest
        )),
        "{plan}"
    );
    assert!(
        plan.contains(&format!(
            "stage 1 for linux/arm64: FROM {} ({})",
            fixtures.index, fixtures.arm64.manifest_digest
        )),
        "{plan}"
    );
    assert!(plan.contains(&format!("push access: {image} ok")), "{plan}");
    let listed = Command::new("skopeo")
        .args([
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{}/dry", registry.host()),
        ])
        .output()
        .unwrap();
    assert!(!listed.status.success(), "a dry run pushes nothing");

    // A base without the platform fails the dry run, naming it.
    let output = kiln(&[
        context_arg(ctx.path()),
        format!("--destination={image}"),
        "--multi-platform=linux/amd64,linux/s390x".to_string(),
        "--dry-run".to_string(),
    ])
    .await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no entry for platform linux/s390x"),
        "{}",
        stderr(&output)
    );
}

/// `--emulation=auto` (the default) on a machine with no interpreter
/// registered (kiln is pointed at an empty binfmt_misc) refuses a foreign
/// RUN before any work, saying how to register one or build natively.
#[tokio::test(flavor = "multi_thread")]
async fn auto_emulation_without_an_interpreter_is_refused() {
    let (registry, fixtures) = setup().await;
    let ctx = context(&format!("FROM {}\nRUN make\n", fixtures.index), &[]);
    let binfmt = support::kiln::empty_binfmt_misc();
    let output = support::kiln::kiln_with_env(
        &[
            context_arg(ctx.path()),
            format!("--destination={}/auto:1", registry.host()),
            "--custom-platform=linux/s390x".to_string(),
        ],
        None,
        &[("KILN_BINFMT_MISC_DIR", binfmt.path().as_os_str())],
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    let host = kiln_builder::platform::Platform::host();
    let message = stderr(&output);
    assert!(
        message.contains(&format!(
            "error: linux/s390x cannot be built on this {host} machine: Dockerfile:2 `RUN make` \
             runs code for linux/s390x, and no qemu-user interpreter for linux/s390x is \
             registered in binfmt_misc ({} has no entry for ELF machine 22): install \
             qemu-user-static and register qemu-s390x with the F flag",
            binfmt.path().display()
        )) && message.contains("or build on native nodes with --driver=k8s"),
        "{message}"
    );
    let listed = Command::new("skopeo")
        .args([
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{}/auto", registry.host()),
        ])
        .output()
        .unwrap();
    assert!(!listed.status.success(), "nothing may be pushed");
}

/// Push access is checked before any build step, as kaniko does: with no
/// credentials for a registry that wants them, kiln stops before its first
/// instruction, and `--dry-run` says the same. `--skip-push-permission-check`
/// builds anyway (and the push is then refused).
#[tokio::test(flavor = "multi_thread")]
async fn push_access_is_checked_before_any_step() {
    let locked = TestRegistry::start_with_auth("owner", "s3cret");
    let ctx = context("FROM scratch\nCOPY app.txt /\n", &[("app.txt", "app")]);
    let image = format!("{}/private:1", locked.host());
    let args = |extra: &[&str]| {
        let mut args = vec![context_arg(ctx.path()), format!("--destination={image}")];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    // One (empty) docker config for every run, so the messages compare.
    let config = tempfile::tempdir().unwrap();
    let kiln = |args: Vec<String>| {
        let config = config.path().to_path_buf();
        async move { support::kiln::kiln_with_config(&args, Some(&config)).await }
    };
    let output = kiln(args(&[])).await;
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    let last = message.lines().last().unwrap_or_default().to_string();
    assert!(
        last.starts_with("error: ")
            && last.contains("401")
            && last.contains(locked.host())
            && last.ends_with("; nothing was built (--skip-push-permission-check builds anyway)"),
        "{message}"
    );
    assert!(!message.contains("COPY app.txt"), "a step ran: {message}");

    let dry = kiln(args(&["--dry-run"])).await;
    assert_eq!(dry.status.code(), Some(1));
    assert_eq!(
        stderr(&dry).lines().last().unwrap_or_default(),
        last,
        "the dry run refuses with the build's message"
    );

    let skipped = kiln(args(&["--skip-push-permission-check"])).await;
    assert_eq!(skipped.status.code(), Some(1));
    let message = stderr(&skipped);
    assert!(message.contains("COPY app.txt"), "the build ran: {message}");
    assert!(!message.contains("nothing was built"), "{message}");
}

/// A base image without one of the platforms stops a multi-platform build
/// before any platform is built or pushed.
#[tokio::test(flavor = "multi_thread")]
async fn a_base_missing_a_platform_is_refused_before_any_work() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!("FROM {}\nCOPY app.txt /\n", fixtures.index),
        &[("app.txt", "app")],
    );
    let output = kiln(&[
        context_arg(ctx.path()),
        format!("--destination={}/nos390x:1", registry.host()),
        "--platform=linux/amd64,linux/s390x".to_string(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    let last = message.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!(
            "error: linux/s390x cannot be built: Dockerfile:1: image {} has no entry for \
             platform linux/s390x",
            fixtures.index
        )) && last.ends_with(
            "nothing was built, no index published. Drop linux/s390x from the platforms, or use \
             a base image that has it"
        ),
        "{message}"
    );
    assert!(!message.contains("COPY app.txt"), "a step ran: {message}");
    let listed = Command::new("skopeo")
        .args([
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{}/nos390x", registry.host()),
        ])
        .output()
        .unwrap();
    assert!(!listed.status.success(), "nothing may be pushed");
}

/// The tags of `repository` on `host`; empty when the repository has none
/// (or does not exist).
fn tags(host: &str, repository: &str) -> Vec<String> {
    let listed = Command::new("skopeo")
        .args([
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{host}/{repository}"),
        ])
        .output()
        .unwrap();
    if !listed.status.success() {
        return Vec::new();
    }
    let json: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    json["Tags"]
        .as_array()
        .map(|tags| {
            tags.iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A registry that refuses OCI manifests stops an `--oci-mode=oci` build
/// before its first step, `--dry-run` refuses with the same message, and
/// the check leaves no tag. Past the check (`--skip-push-permission-check`)
/// the build itself is refused at the push with the same words; with the
/// default `--oci-mode=auto` it falls back to Docker media types and
/// passes, without the check. A registry that accepts OCI passes the
/// check, and again no tag is left.
#[tokio::test(flavor = "multi_thread")]
async fn a_registry_refusing_oci_is_found_before_any_step() {
    let registry = TestRegistry::start();
    let proxy = support::FaultProxy::refusing_oci(registry.host()).await;
    let ctx = context("FROM scratch\nCOPY app.txt /\n", &[("app.txt", "app")]);
    let args = |host: &str, extra: &[&str]| {
        let mut args = vec![
            context_arg(ctx.path()),
            format!("--destination={host}/oci-refused:1"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    // The probe: a `{}` config and an OCI manifest without layers, pushed
    // by digest.
    let config_digest = fixtures::sha256_digest(b"{}");
    let probe = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":2}},"layers":[]}}"#
    );
    let probe_digest = fixtures::sha256_digest(probe.as_bytes());
    let expected = format!(
        "error: registry doesn't support OCI media types: pushing manifest to {}/oci-refused@{probe_digest}: \
         HTTP 400 Bad Request (MANIFEST_INVALID: manifest invalid); use --oci-mode=docker \
         --legacy-manifest-list=true; nothing was built",
        proxy.host()
    );

    for extra in [&["--oci-mode=oci"][..], &["--oci-mode=oci", "--dry-run"]] {
        let output = kiln(&args(proxy.host(), extra)).await;
        assert_eq!(output.status.code(), Some(1), "{extra:?}");
        let message = stderr(&output);
        assert_eq!(
            message.lines().last().unwrap_or_default(),
            expected,
            "{extra:?}: {message}"
        );
        assert!(!message.contains("COPY app.txt"), "a step ran: {message}");
    }
    assert_eq!(tags(registry.host(), "oci-refused"), Vec::<String>::new());

    let skipped = kiln(&args(
        proxy.host(),
        &["--oci-mode=oci", "--skip-push-permission-check"],
    ))
    .await;
    assert_eq!(skipped.status.code(), Some(1));
    let message = stderr(&skipped);
    assert!(message.contains("COPY app.txt"), "the build ran: {message}");
    assert!(
        message.lines().last().unwrap_or_default().starts_with(&format!(
            "error: registry doesn't support OCI media types: pushing manifest to {}/oci-refused:1: \
             HTTP 400 Bad Request (MANIFEST_INVALID: manifest invalid); use --oci-mode=docker \
             --legacy-manifest-list=true",
            proxy.host()
        )),
        "{message}"
    );
    assert_eq!(tags(registry.host(), "oci-refused"), Vec::<String>::new());

    let auto = kiln(&args(proxy.host(), &[])).await;
    assert_success(&auto);
    assert_eq!(tags(registry.host(), "oci-refused"), vec!["1".to_string()]);

    let accepting = kiln(&args(registry.host(), &["--oci-mode=oci", "--dry-run"])).await;
    assert_success(&accepting);
    assert!(
        String::from_utf8_lossy(&accepting.stdout).contains(&format!(
            "push access: {}/oci-refused:1 ok, OCI manifests accepted\n",
            registry.host()
        )),
        "{}",
        String::from_utf8_lossy(&accepting.stdout)
    );
    assert_eq!(
        tags(registry.host(), "oci-refused"),
        vec!["1".to_string()],
        "the check moved or added a tag"
    );
    // This registry allows deletes: the probe manifest is gone too.
    assert!(
        fixtures::get_manifest(registry.host(), "oci-refused", &probe_digest)
            .await
            .is_none(),
        "the probe manifest was left behind"
    );
}

/// A `$BUILDPLATFORM` stage that sees nothing of the target platform is
/// built once for all of them: its RUN runs once, and both platforms'
/// images get its files. The stages' root filesystems, removed in the
/// background while the images are pushed, are all gone when kiln exits.
#[tokio::test(flavor = "multi_thread")]
async fn a_build_platform_stage_runs_once_for_every_target() {
    let (registry, fixtures) = setup().await;
    let dockerfile = format!(
        "FROM --platform=$BUILDPLATFORM {base} AS tools\n\
         RUN echo tool > /tool && cp /etc/kiln-fixture-arch /tool-arch\n\
         FROM {base}\n\
         COPY --from=tools /tool /tool-arch /opt/\n",
        base = fixtures.index
    );
    let ctx = context(&dockerfile, &[]);
    let image = format!("{}/shared:1", registry.host());
    let work = tempfile::tempdir().unwrap();
    let output = support::kiln::kiln_with_env(
        &[
            context_arg(ctx.path()),
            format!("--destination={image}"),
            "--platform=linux/amd64,linux/arm64".to_string(),
        ],
        None,
        &[("KILN_WORK_DIR", work.path().as_os_str())],
    )
    .await;
    assert_success(&output);
    let left: Vec<_> = std::fs::read_dir(work.path()).unwrap().collect();
    assert!(left.is_empty(), "left in the work root: {left:?}");
    let log = stderr(&output);
    let runs = log.matches("RUN echo tool").count();
    let shared = log
        .matches("the same for every platform, built once")
        .count();
    assert_eq!((runs, shared), (1, 1), "{log}");
    let host = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    for arch in ["amd64", "arm64"] {
        assert_eq!(marker(&image, arch, "opt/tool").trim(), "tool");
        assert_eq!(marker(&image, arch, "opt/tool-arch").trim(), host);
        assert_eq!(marker(&image, arch, "etc/kiln-fixture-arch").trim(), arch);
    }
}
