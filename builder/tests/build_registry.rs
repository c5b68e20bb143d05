//! `kiln` end to end against a real registry (Debian's docker-registry on
//! loopback): Dockerfiles built from the busybox fixtures, pushed, and read
//! back with skopeo — config fields, layer contents, platforms, outputs,
//! reproducibility, retries and the errors users meet.

mod support;

use std::path::Path;

use support::fixtures::{self, Fixtures};
use support::kiln::{assert_success, context, kiln_with_config, layers, skopeo, stderr};
use support::{FaultProxy, TestRegistry, proxy, write_docker_config};

fn args(context: &Path, extra: &[&str]) -> Vec<String> {
    let mut all = vec![format!("--context=dir://{}", context.display())];
    all.extend(extra.iter().map(|s| s.to_string()));
    all
}

async fn setup() -> (TestRegistry, Fixtures) {
    let registry = TestRegistry::start();
    let fixtures = fixtures::push_busybox_index(registry.host()).await;
    (registry, fixtures)
}

fn raw_manifest(reference: &str) -> serde_json::Value {
    serde_json::from_slice(&skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]))
    .unwrap()
}

fn config(reference: &str) -> serde_json::Value {
    serde_json::from_slice(&skopeo(&[
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn builds_on_busybox_and_pushes_config_and_layers() {
    let (registry, fixtures) = setup().await;
    let dockerfile = format!(
        r#"ARG BASE={base}
FROM $BASE
ARG VERSION=0.0.1
LABEL org.example.version=$VERSION maintainer="kiln tests"
ENV APP_HOME=/srv/app PATH=/srv/app/bin:$PATH
WORKDIR $APP_HOME
COPY --chown=app:app app.txt ./
COPY --chmod=0750 bin /srv/app/bin/
COPY <<EOF /etc/motd
welcome to ${{VERSION}}
EOF
EXPOSE 8080 9090/udp
VOLUME /data
USER app
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --retries=3 CMD ["/bin/true"]
ONBUILD COPY . /onbuild
ENTRYPOINT ["/srv/app/bin/run"]
CMD run --fast
"#,
        base = fixtures.index
    );
    let ctx = context(
        &dockerfile,
        &[
            ("app.txt", "application\n"),
            ("bin/run", "#!/bin/sh\n"),
            ("secret.key", "k"),
        ],
    );
    std::fs::write(ctx.path().join(".dockerignore"), "*.key\n").unwrap();
    let image = format!("{}/app:1.0", registry.host());
    let out = tempfile::tempdir().unwrap();
    let digest_file = out.path().join("digest");
    let name_file = out.path().join("name");
    let tag_file = out.path().join("name-tag");
    let output = kiln_with_config(
        &args(
            ctx.path(),
            &[
                &format!("--destination={image}"),
                "--build-arg=VERSION=2.0",
                "--label=org.example.team=platform",
                &format!("--digest-file={}", digest_file.display()),
                &format!("--image-name-with-digest-file={}", name_file.display()),
                &format!("--image-name-tag-with-digest-file={}", tag_file.display()),
            ],
        ),
        None,
    )
    .await;
    assert_success(&output);

    let digest = std::fs::read_to_string(&digest_file).unwrap();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    assert_eq!(
        std::fs::read_to_string(&name_file).unwrap(),
        format!("{}/app@{digest}\n", registry.host())
    );
    assert_eq!(
        std::fs::read_to_string(&tag_file).unwrap(),
        format!("{}/app:1.0@{digest}\n", registry.host())
    );

    let manifest = raw_manifest(&image);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let manifest_layers = manifest["layers"].as_array().unwrap();
    assert_eq!(
        manifest_layers.len(),
        5,
        "base + WORKDIR's directory + three COPY layers"
    );
    assert_eq!(
        manifest_layers[0]["digest"],
        fixtures.amd64.layer_digest.as_str()
    );

    let config = config(&image);
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    let c = &config["config"];
    assert_eq!(
        c["Env"][0],
        "PATH=/srv/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    assert_eq!(c["Env"][1], "APP_HOME=/srv/app");
    assert_eq!(c["WorkingDir"], "/srv/app");
    assert_eq!(c["User"], "app");
    assert_eq!(c["Labels"]["org.example.version"], "2.0");
    assert_eq!(c["Labels"]["maintainer"], "kiln tests");
    assert_eq!(c["Labels"]["org.example.team"], "platform");
    assert_eq!(
        c["ExposedPorts"],
        serde_json::json!({"8080/tcp": {}, "9090/udp": {}})
    );
    assert_eq!(c["Volumes"], serde_json::json!({"/data": {}}));
    assert_eq!(c["StopSignal"], "SIGTERM");
    assert_eq!(
        c["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/bin/true"])
    );
    assert_eq!(c["Healthcheck"]["Interval"], 30_000_000_000u64);
    assert_eq!(c["Healthcheck"]["Retries"], 3);
    assert_eq!(c["OnBuild"], serde_json::json!(["COPY . /onbuild"]));
    assert_eq!(c["Entrypoint"], serde_json::json!(["/srv/app/bin/run"]));
    assert_eq!(c["Cmd"], serde_json::json!(["/bin/sh", "-c", "run --fast"]));
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 5);
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        fixtures.amd64.diff_id.as_str()
    );

    let layers = layers(&image);
    assert_eq!(
        layers[1]["srv/app/"],
        ('d', 0o755, 0, 0, String::new()),
        "WORKDIR creates its directory, root's as no USER is set yet"
    );
    // uid/gid 1000 is `app` in the fixture's /etc/passwd and /etc/group.
    assert_eq!(
        layers[2]["srv/app/app.txt"],
        ('f', 0o644, 1000, 1000, "application\n".to_string())
    );
    assert_eq!(
        layers[3]["srv/app/bin/run"],
        ('f', 0o750, 0, 0, "#!/bin/sh\n".to_string())
    );
    assert_eq!(
        layers[4]["etc/motd"],
        ('f', 0o644, 0, 0, "welcome to 2.0\n".to_string())
    );
    for layer in &layers[1..] {
        assert!(
            !layer.keys().any(|k| k.ends_with("secret.key")),
            "ignored file leaked: {layer:?}"
        );
    }
}

/// `linux/arm64` picks the base index's `arm64/v8` entry and writes no
/// variant, as BuildKit (containerd's normaliser) does; `linux/arm64/v8`
/// spelled out keeps it.
#[tokio::test(flavor = "multi_thread")]
async fn builds_the_arm64_entry_of_the_base_index() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!("FROM {}\nCOPY a.txt /a.txt\n", fixtures.index),
        &[("a.txt", "a")],
    );
    for (platform, tag, variant) in [
        ("linux/arm64", "plain", None),
        ("linux/arm64/v8", "explicit", Some("v8")),
    ] {
        let image = format!("{}/arm:{tag}", registry.host());
        let output = kiln_with_config(
            &args(
                ctx.path(),
                &[
                    &format!("--destination={image}"),
                    &format!("--custom-platform={platform}"),
                ],
            ),
            None,
        )
        .await;
        assert_success(&output);
        let config = config(&image);
        assert_eq!(config["architecture"], "arm64");
        assert_eq!(
            config.get("variant").and_then(|v| v.as_str()),
            variant,
            "{platform}: {config}"
        );
        let manifest = raw_manifest(&image);
        assert_eq!(
            manifest["layers"][0]["digest"],
            fixtures.arm64.layer_digest.as_str()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_stage_with_target_skips_unused_stages() {
    let (registry, fixtures) = setup().await;
    let dockerfile = format!(
        "FROM {base} AS build\nCOPY src/ /src/\n\
         FROM scratch AS unused\nCOPY missing-file /x\n\
         FROM scratch AS final\nCOPY --from=build /src/main.txt /app/main.txt\nCOPY --from=build /etc/passwd /etc/passwd\n\
         FROM final AS debug\nCOPY debug.txt /\n",
        base = fixtures.index
    );
    let ctx = context(
        &dockerfile,
        &[("src/main.txt", "main"), ("debug.txt", "debug")],
    );
    let image = format!("{}/multi:final", registry.host());
    let output = kiln_with_config(
        &args(
            ctx.path(),
            &[
                &format!("--destination={image}"),
                "--target=final",
                "--skip-unused-stages",
            ],
        ),
        None,
    )
    .await;
    assert_success(&output);
    let layers = layers(&image);
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0]["app/main.txt"].4, "main");
    assert!(layers[1]["etc/passwd"].4.contains("app:x:1000:1000"));
    assert!(!layers.iter().any(|l| l.contains_key("debug.txt")));

    let missing = kiln_with_config(&args(ctx.path(), &["--no-push", "--target=nope"]), None).await;
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("target stage \"nope\" not found"),
        "{}",
        stderr(&missing)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reproducible_builds_give_the_same_digest_and_file_outputs_are_readable() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!("FROM {}\nCOPY . /ctx/\n", fixtures.index),
        &[("x/y.txt", "y"), ("z.txt", "z")],
    );
    let mut digests = Vec::new();
    for tag in ["one", "two"] {
        let out = tempfile::tempdir().unwrap();
        let digest_file = out.path().join("digest");
        // Touch the files between builds: --reproducible must not care.
        std::fs::write(ctx.path().join("z.txt"), "z").unwrap();
        let output = kiln_with_config(
            &args(
                ctx.path(),
                &[
                    &format!("--destination={}/repro:{tag}", registry.host()),
                    "--reproducible",
                    &format!("--digest-file={}", digest_file.display()),
                ],
            ),
            None,
        )
        .await;
        assert_success(&output);
        digests.push(std::fs::read_to_string(digest_file).unwrap());
    }
    assert_eq!(digests[0], digests[1]);

    let out = tempfile::tempdir().unwrap();
    let tar_path = out.path().join("image.tar");
    let layout = out.path().join("layout");
    let output = kiln_with_config(
        &args(
            ctx.path(),
            &[
                "--no-push",
                &format!("--destination={}/repro:tar", registry.host()),
                &format!("--tar-path={}", tar_path.display()),
                &format!("--oci-layout-path={}", layout.display()),
                "--reproducible",
            ],
        ),
        None,
    )
    .await;
    assert_success(&output);
    let from_tar: serde_json::Value = serde_json::from_slice(&skopeo(&[
        "inspect",
        &format!("docker-archive:{}", tar_path.display()),
    ]))
    .unwrap();
    assert_eq!(from_tar["Architecture"], "amd64");
    assert_eq!(from_tar["Layers"].as_array().unwrap().len(), 2);
    let from_layout: serde_json::Value = serde_json::from_slice(&skopeo(&[
        "inspect",
        &format!("oci:{}:tar", layout.display()),
    ]))
    .unwrap();
    assert_eq!(
        from_layout["Digest"],
        digests[0].as_str(),
        "the layout holds the same image that was pushed"
    );
    // --no-push: nothing under that tag in the registry.
    let pushed = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{}/repro:tar", registry.host()),
        ])
        .output()
        .unwrap();
    assert!(!pushed.status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_media_types_on_request() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!("FROM {}\nCOPY a /a\n", fixtures.docker_list),
        &[("a", "a")],
    );
    let image = format!("{}/docker:latest", registry.host());
    let output = kiln_with_config(
        &args(
            ctx.path(),
            &[&format!("--destination={image}"), "--oci-mode=docker"],
        ),
        None,
    )
    .await;
    assert_success(&output);
    let manifest = raw_manifest(&image);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    for layer in manifest["layers"].as_array().unwrap() {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn push_retries_through_a_failing_proxy() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!("FROM {}\nCOPY a /a\n", fixtures.index),
        &[("a", "a")],
    );

    let proxy = FaultProxy::start(registry.host(), 2, proxy::manifest_put).await;
    let image = format!("{}/retry:ok", proxy.host());
    let output = kiln_with_config(
        &args(
            ctx.path(),
            &[
                &format!("--destination={image}"),
                "--push-retry=3",
                "--push-retry-initial-delay=10",
            ],
        ),
        None,
    )
    .await;
    assert_success(&output);
    assert_eq!(proxy.faults_injected(), 2);

    let proxy = FaultProxy::start(registry.host(), 2, proxy::manifest_put).await;
    let image = format!("{}/retry:fails", proxy.host());
    let output = kiln_with_config(
        &args(
            ctx.path(),
            &[&format!("--destination={image}"), "--push-retry=0"],
        ),
        None,
    )
    .await;
    assert!(!output.status.success());
    assert!(stderr(&output).contains("503"), "{}", stderr(&output));
    let pushed = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{}/retry:fails", registry.host()),
        ])
        .output()
        .unwrap();
    assert!(
        !pushed.status.success(),
        "nothing may be pushed under the tag after a failed push"
    );
}

/// A stage FROM scratch starts with Docker's default PATH, as BuildKit's
/// empty image and buildah do (found by the conformance suite).
#[tokio::test(flavor = "multi_thread")]
async fn scratch_stage_starts_with_the_default_path() {
    let registry = TestRegistry::start();
    let ctx = context(
        "FROM scratch\nCOPY a /a\nENV PATH=$PATH:/extra OTHER=1\n",
        &[("a", "a")],
    );
    let image = format!("{}/scratch-path:1", registry.host());
    assert_success(
        &kiln_with_config(
            &args(ctx.path(), &[&format!("--destination={image}")]),
            None,
        )
        .await,
    );
    assert_eq!(
        config(&image)["config"]["Env"],
        serde_json::json!([
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/extra",
            "OTHER=1"
        ])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_from_docker_config() {
    let registry = TestRegistry::start_with_auth("builder", "s3cret");
    let ctx = context("FROM scratch\nCOPY a /a\n", &[("a", "a")]);
    let image = format!("{}/private:latest", registry.host());

    let good = tempfile::tempdir().unwrap();
    write_docker_config(good.path(), registry.host(), "builder", "s3cret");
    assert_success(
        &kiln_with_config(
            &args(ctx.path(), &[&format!("--destination={image}")]),
            Some(good.path()),
        )
        .await,
    );

    let bad = tempfile::tempdir().unwrap();
    write_docker_config(bad.path(), registry.host(), "builder", "wrong");
    let output = kiln_with_config(
        &args(ctx.path(), &[&format!("--destination={image}")]),
        Some(bad.path()),
    )
    .await;
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("401"), "{message}");
    assert!(message.contains(registry.host()), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_fails_clearly_and_pushes_nothing() {
    let (registry, fixtures) = setup().await;
    let host = registry.host().to_string();
    let dest = |name: &str| format!("--destination={host}/{name}:latest");
    // (Dockerfile, extra flags, text the error must contain)
    let cases: Vec<(String, Vec<String>, &str)> = vec![
        (
            "FROM scratch\nCOPY nothere /x\n".into(),
            vec![dest("missing-file")],
            "nothere",
        ),
        (
            "FROM scratch\nFORM x\n".into(),
            vec![dest("syntax")],
            "Dockerfile:2",
        ),
        (
            "FROM scratch\nCOPY --from=nostage /a /a\n".into(),
            vec![dest("nostage")],
            "nostage",
        ),
        (
            "FROM scratch\n".into(),
            vec![dest("badplatform"), "--platform=linux".into()],
            "invalid platform format: linux (expected os/arch)",
        ),
        (
            format!("FROM {}\nCOPY a /a\n", fixtures.index),
            vec!["--destination=127.0.0.1:1/unreachable:latest".into()],
            "127.0.0.1:1",
        ),
        (
            "FROM scratch\nRUN echo hi\n".into(),
            vec![dest("run")],
            "exec /bin/sh: no such file or directory in the image",
        ),
        (
            format!("FROM {}/does-not-exist:1\n", host),
            vec![dest("nobase")],
            "does-not-exist",
        ),
    ];
    for (dockerfile, flags, expected) in cases {
        let ctx = context(&dockerfile, &[("a", "a")]);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let output = kiln_with_config(&args(ctx.path(), &flags), None).await;
        assert!(!output.status.success(), "{dockerfile:?} should fail");
        let message = stderr(&output);
        assert!(
            message.contains(expected),
            "{dockerfile:?}: expected {expected:?} in {message}"
        );
        assert!(
            message.starts_with("error: ") || message.contains("\nerror: "),
            "{message}"
        );
    }
    // A missing Dockerfile names the path it looked at.
    let ctx = tempfile::tempdir().unwrap();
    let output = kiln_with_config(&args(ctx.path(), &[&dest("nodockerfile")]), None).await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("Dockerfile"),
        "{}",
        stderr(&output)
    );

    let catalog: serde_json::Value = reqwest_catalog(&host).await;
    let repos: Vec<&str> = catalog["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r.as_str())
        .collect();
    assert_eq!(
        repos,
        ["busybox", "busybox-docker"],
        "nothing but the fixtures may have been pushed"
    );
}

async fn reqwest_catalog(host: &str) -> serde_json::Value {
    let output = tokio::process::Command::new("curl")
        .args(["-fsS", &format!("http://{host}/v2/_catalog")])
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn base_layers_are_mounted_not_downloaded_when_nothing_reads_them() {
    let (registry, fixtures) = setup().await;
    let proxy = FaultProxy::recording(registry.host()).await;
    let base = fixtures.index.replace(registry.host(), proxy.host());
    let ctx = context(&format!("FROM {base}\nLABEL stage=metadata-only\n"), &[]);
    let image = format!("{}/mounted:1", proxy.host());
    assert_success(
        &kiln_with_config(
            &args(ctx.path(), &[&format!("--destination={image}")]),
            None,
        )
        .await,
    );
    let layer = &fixtures.amd64.layer_digest;
    let requests = proxy.requests();
    assert!(
        !requests
            .iter()
            .any(|r| r.starts_with("GET ") && r.contains(&format!("/blobs/{layer}"))),
        "the base layer was downloaded: {requests:#?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("POST /v2/mounted/blobs/uploads/")
                && r.contains(&format!("mount={}", layer.replace(':', "%3A")))),
        "the base layer was not mounted: {requests:#?}"
    );
    let manifest = raw_manifest(&image.replace(proxy.host(), registry.host()));
    assert_eq!(manifest["layers"][0]["digest"], layer.as_str());
}

/// A layer goes to the destination as soon as it is written, while the
/// build goes on: a build whose RUN fails after a COPY has uploaded the
/// COPY's layer already (and publishes nothing). With `--cache` layers go
/// to the cache repository instead, and nothing is uploaded early.
#[tokio::test(flavor = "multi_thread")]
async fn layers_are_uploaded_while_the_build_goes_on() {
    let (registry, fixtures) = setup().await;
    let proxy = FaultProxy::recording(registry.host()).await;
    let base = fixtures.index.replace(registry.host(), proxy.host());
    let ctx = context(
        // The RUN takes long enough for the upload started before it.
        &format!("FROM {base}\nCOPY a.txt /a.txt\nRUN sleep 2; exit 3\n"),
        &[("a.txt", "uploaded before the build ended")],
    );
    for (extra, early) in [(&[][..], true), (&["--cache"][..], false)] {
        let before = proxy.requests().len();
        let image = format!("{}/early:1", proxy.host());
        let mut flags = vec![format!("--destination={image}")];
        flags.extend(extra.iter().map(|f| f.to_string()));
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let output = kiln_with_config(&args(ctx.path(), &flags), None).await;
        assert!(!output.status.success(), "{}", stderr(&output));
        let requests = proxy.requests()[before..].to_vec();
        let uploaded = requests
            .iter()
            .any(|r| r.starts_with("PUT /v2/early/blobs/uploads/"));
        assert_eq!(uploaded, early, "{extra:?}: {requests:#?}");
        assert!(
            !requests
                .iter()
                .any(|r| r.starts_with("PUT /v2/early/manifests/")),
            "{requests:#?}"
        );
    }
}
