//! RUN end to end: `kiln` builds on the busybox fixture (a real static
//! busybox for amd64), runs commands chrooted into the stage's root
//! filesystem, and the registry receives exactly what they changed.
//! Needs root, as --isolation=chroot does; CI runs as root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::TestRegistry;
use support::fixtures::{self, Fixtures};
use support::kiln::{assert_success, context, context_arg, kiln, layers, skopeo_json, stderr};

async fn setup() -> (TestRegistry, Fixtures) {
    let registry = TestRegistry::start();
    let fixtures = fixtures::push_busybox_index(registry.host()).await;
    (registry, fixtures)
}

#[tokio::test(flavor = "multi_thread")]
async fn run_changes_become_layers() {
    let (registry, fixtures) = setup().await;
    let dockerfile = format!(
        r#"FROM {base}
ARG GREETING=hello
ENV STAGE=build
WORKDIR /work
RUN echo "$GREETING from $STAGE in $(pwd)" > /work/out.txt && chmod 640 /work/out.txt
RUN rm /etc/os-release && mkdir -p /var/empty-dir
USER app
RUN id -u > /tmp/uid
RUN <<EOF
echo heredoc > /tmp/heredoc.txt
EOF
RUN true
"#,
        base = fixtures.index
    );
    let ctx = context(&dockerfile, &[]);
    let image = format!("{}/run:1", registry.host());
    let output = kiln(&[
        context_arg(ctx.path()),
        format!("--destination={image}"),
        "--build-arg=GREETING=hi".to_string(),
    ])
    .await;
    assert_success(&output);

    let layers = layers(&image);
    // base, WORKDIR's new directory, then one layer per RUN that changed
    // something: `RUN true` changed nothing and adds none.
    assert_eq!(
        layers.len(),
        6,
        "{:#?}",
        layers
            .iter()
            .map(|l| l.keys().collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        layers[1]
            .iter()
            .map(|(path, e)| (path.as_str(), e.0, e.1, e.2))
            .collect::<Vec<_>>(),
        [("work/", 'd', 0o755, 0)],
        "WORKDIR's layer holds only its directory"
    );
    let layers = &layers[1..];
    let out = &layers[1]["work/out.txt"];
    assert_eq!(
        (out.0, out.1, out.4.as_str()),
        ('f', 0o640, "hi from build in /work\n")
    );
    assert!(
        layers[2].contains_key("etc/.wh.os-release"),
        "{:?}",
        layers[2].keys()
    );
    assert!(
        layers[2].contains_key("var/empty-dir/"),
        "{:?}",
        layers[2].keys()
    );
    assert_eq!(layers[3]["tmp/uid"].4, "1000\n");
    assert_eq!(layers[3]["tmp/uid"].2, 1000, "written by the USER");
    assert_eq!(layers[4]["tmp/heredoc.txt"].4, "heredoc\n");
    for layer in layers {
        for path in layer.keys() {
            assert!(
                !(path.starts_with("proc/")
                    || path.starts_with("sys/")
                    || path.starts_with("dev/")
                    || path.starts_with("etc/resolv.conf")
                    || path.starts_with(".kiln-run")),
                "captured {path}"
            );
        }
    }
    let config = skopeo_json(&[
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]);
    let history = config["history"].as_array().unwrap();
    let run_true = history
        .iter()
        .find(|h| h["created_by"] == "RUN true")
        .unwrap();
    assert_eq!(run_true["empty_layer"], true);
}

/// WORKDIR creates what is missing (parents too, owned by the USER, mode
/// 0755, through symlinks where they point), in a layer of its own, as
/// Docker and buildah do; an existing directory gives no layer.
#[tokio::test(flavor = "multi_thread")]
async fn workdir_creates_missing_directories() {
    let (registry, fixtures) = setup().await;
    let dockerfile = format!(
        "FROM {base}\nRUN mkdir /srv && ln -s /srv /srvlink\nWORKDIR /tmp\nUSER app\nWORKDIR /srvlink/app/cache\nUSER root\nWORKDIR /opt\nWORKDIR rel/sub\n",
        base = fixtures.index
    );
    let ctx = context(&dockerfile, &[]);
    let image = format!("{}/workdir:1", registry.host());
    let output = kiln(&[context_arg(ctx.path()), format!("--destination={image}")]).await;
    assert_success(&output);

    let layers = layers(&image);
    let listing = |layer: &std::collections::BTreeMap<String, support::kiln::Entry>| {
        layer
            .iter()
            .map(|(path, e)| (path.clone(), e.0, e.1, e.2, e.3))
            .collect::<Vec<_>>()
    };
    // base, the RUN's symlink, then WORKDIR /srvlink/app/cache, /opt and
    // rel/sub; /tmp exists and adds none.
    assert_eq!(
        layers.len(),
        5,
        "{:#?}",
        layers.iter().map(listing).collect::<Vec<_>>()
    );
    assert_eq!(
        listing(&layers[2]),
        [
            ("srv/app/".to_string(), 'd', 0o755, 1000, 1000),
            ("srv/app/cache/".to_string(), 'd', 0o755, 1000, 1000),
        ]
    );
    assert_eq!(
        listing(&layers[3]),
        [("opt/".to_string(), 'd', 0o755, 0, 0)]
    );
    assert_eq!(
        listing(&layers[4]),
        [
            ("opt/rel/".to_string(), 'd', 0o755, 0, 0),
            ("opt/rel/sub/".to_string(), 'd', 0o755, 0, 0),
        ]
    );
    let config = skopeo_json(&[
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]);
    assert_eq!(config["config"]["WorkingDir"], "/opt/rel/sub");
    let tmp = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["created_by"] == "WORKDIR /tmp")
        .unwrap();
    assert_eq!(tmp["empty_layer"], true);
}

/// A failed RUN ends kiln with the command's own exit code, as a shell
/// script or `docker build` would, and its output is printed once (as it
/// ran), not again in the error.
#[tokio::test(flavor = "multi_thread")]
async fn failing_run_exits_with_its_code_and_prints_its_output_once() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!(
            "FROM {}\nRUN echo kiln-run-marker-line; exit 42\n",
            fixtures.index
        ),
        &[],
    );
    let output = kiln(&[
        context_arg(ctx.path()),
        format!("--destination={}/code:1", registry.host()),
    ])
    .await;
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(42), "{message}");
    // Once, behind the step's label.
    let label = format!("[{} 0 2/2] ", kiln_builder::platform::Platform::host());
    let printed = message
        .lines()
        .filter(|l| *l == format!("{label}kiln-run-marker-line"))
        .count();
    assert_eq!(printed, 1, "{message}");
    assert!(
        message.ends_with(
            "error: Dockerfile:2: RUN echo kiln-run-marker-line; exit 42: RUN failed (exit 42): \
             echo kiln-run-marker-line; exit 42\n"
        ),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_run_stops_the_build_and_pushes_nothing() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!(
            "FROM {}\nRUN echo about to fail && exit 7\n",
            fixtures.index
        ),
        &[],
    );
    let image = format!("{}/fails:1", registry.host());
    let output = kiln(&[context_arg(ctx.path()), format!("--destination={image}")]).await;
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains("RUN failed (exit 7): echo about to fail && exit 7"),
        "{message}"
    );
    assert!(
        message.contains("about to fail"),
        "the output is shown: {message}"
    );
    assert!(message.contains("Dockerfile:2"), "{message}");
    assert!(!support::kiln::exists(&image));

    // A missing shell and an unknown USER are clear errors too.
    let ctx = context("FROM scratch\nCOPY Dockerfile /\nRUN echo hi\n", &[]);
    let output = kiln(&[context_arg(ctx.path()), "--no-push".to_string()]).await;
    assert!(!output.status.success());
    assert!(stderr(&output).contains("/bin/sh"), "{}", stderr(&output));
    let ctx = context(
        &format!("FROM {}\nUSER ghost\nRUN true\n", fixtures.index),
        &[],
    );
    let output = kiln(&[context_arg(ctx.path()), "--no-push".to_string()]).await;
    assert!(!output.status.success());
    assert!(stderr(&output).contains("ghost"), "{}", stderr(&output));
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_from_a_stage_that_ran_commands() {
    let (registry, fixtures) = setup().await;
    let dockerfile = format!(
        "FROM {base} AS build\nCOPY src.txt /src/\nRUN cat /src/src.txt /src/src.txt > /src/built.txt\n\
         FROM {base} AS unused\nRUN exit 1\n\
         FROM registry.invalid/never/pulled:1 AS unresolved\nRUN exit 1\n\
         FROM scratch\nCOPY --from=build /src/built.txt /app/built.txt\n",
        base = fixtures.index
    );
    let ctx = context(&dockerfile, &[("src.txt", "x\n")]);
    let image = format!("{}/stages:1", registry.host());
    // Stages the target does not need are neither built nor pulled, as in
    // BuildKit: kiln's default.
    let output = kiln(&[context_arg(ctx.path()), format!("--destination={image}")]).await;
    assert_success(&output);
    let layers = layers(&image);
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0]["app/built.txt"].4, "x\nx\n");
    // kaniko's default builds every stage: the unused one fails.
    let output = kiln(&[
        context_arg(ctx.path()),
        format!("--destination={image}"),
        "--skip-unused-stages=false".to_string(),
    ])
    .await;
    assert!(!output.status.success(), "every stage was built");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("exit 1"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn run_network_none_sees_only_loopback() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!(
            "FROM {}\nRUN --network=none cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' > /ifaces\n",
            fixtures.index
        ),
        &[],
    );
    let image = format!("{}/net:1", registry.host());
    assert_success(&kiln(&[context_arg(ctx.path()), format!("--destination={image}")]).await);
    assert_eq!(layers(&image)[1]["ifaces"].4, "lo\n");

    // The test registry listens on the host's loopback: reachable from a
    // RUN on the default network, not from one with --network=none (its
    // loopback is its own). (The fixture's busybox wget crashes with -q
    // or -T, hence the plain form.)
    let probe = |network: &str, file: &str| {
        format!(
            "RUN {network} sh -c 'if wget -O /dev/null http://{host}/v2/; then echo reached; else echo unreachable; fi > /{file}'\n",
            host = registry.host()
        )
    };
    let ctx = context(
        &format!(
            "FROM {}\n{}{}",
            fixtures.index,
            probe("", "default"),
            probe("--network=none", "none")
        ),
        &[],
    );
    let image = format!("{}/net:2", registry.host());
    assert_success(&kiln(&[context_arg(ctx.path()), format!("--destination={image}")]).await);
    let layers = layers(&image);
    assert_eq!(layers[1]["default"].4, "reached\n");
    assert_eq!(layers[2]["none"].4, "unreachable\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fifo_made_by_run_survives_the_round_trip() {
    let (registry, fixtures) = setup().await;
    let ctx = context(&format!("FROM {}\nRUN mkfifo /pipe\n", fixtures.index), &[]);
    let image = format!("{}/fifo:1", registry.host());
    assert_success(&kiln(&[context_arg(ctx.path()), format!("--destination={image}")]).await);
    // A later stage unpacks the layer with kiln's own unpacker.
    let ctx = context(
        &format!("FROM {image}\nRUN test -p /pipe && echo ok > /checked\n"),
        &[],
    );
    let child = format!("{}/fifo:child", registry.host());
    assert_success(&kiln(&[context_arg(ctx.path()), format!("--destination={child}")]).await);
    assert_eq!(layers(&child).last().unwrap()["checked"].4, "ok\n");
}

/// COPY --from a stage's FIFO (named, and inside a copied directory)
/// copies the FIFO as a FIFO, as Docker does; reading it would block the
/// build forever.
#[tokio::test(flavor = "multi_thread")]
async fn copy_from_a_fifo_copies_the_fifo_without_reading_it() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!(
            "FROM {} AS make
RUN mkdir /dir && mkfifo /pipe /dir/inner
             FROM {}
COPY --from=make /pipe /copied
COPY --from=make /dir /dir
",
            fixtures.index, fixtures.index
        ),
        &[],
    );
    let image = format!("{}/fifo:copied", registry.host());
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        kiln(&[context_arg(ctx.path()), format!("--destination={image}")]),
    )
    .await
    .expect("COPY --from a FIFO blocked the build");
    assert_success(&output);
    let layers = layers(&image);
    let copied = layers
        .iter()
        .find(|layer| layer.contains_key("copied"))
        .unwrap();
    assert_eq!(copied["copied"].0, 'p');
    let dir = layers
        .iter()
        .find(|layer| layer.contains_key("dir/inner"))
        .unwrap();
    assert_eq!(dir["dir/inner"].0, 'p');
}

#[tokio::test(flavor = "multi_thread")]
async fn every_snapshot_mode_captures_a_new_file() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!(
            "FROM {}\nRUN echo new > /new.txt && rm /etc/os-release\n",
            fixtures.index
        ),
        &[],
    );
    for mode in ["full", "redo", "time"] {
        let image = format!("{}/modes:{mode}", registry.host());
        assert_success(
            &kiln(&[
                context_arg(ctx.path()),
                format!("--destination={image}"),
                format!("--snapshot-mode={mode}"),
            ])
            .await,
        );
        let layers = layers(&image);
        assert_eq!(layers.len(), 2, "{mode}");
        assert_eq!(layers[1]["new.txt"].4, "new\n", "{mode}");
        assert!(
            layers[1].contains_key("etc/.wh.os-release"),
            "{mode}: {:?}",
            layers[1].keys()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn single_snapshot_makes_one_layer_for_the_stage() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!(
            "FROM {}\nCOPY a.txt /a.txt\nRUN echo b > /b.txt\nRUN rm /etc/os-release\n",
            fixtures.index
        ),
        &[("a.txt", "a\n")],
    );
    let image = format!("{}/single:1", registry.host());
    assert_success(
        &kiln(&[
            context_arg(ctx.path()),
            format!("--destination={image}"),
            "--single-snapshot".to_string(),
        ])
        .await,
    );
    let layers = layers(&image);
    assert_eq!(layers.len(), 2, "base + one layer");
    assert_eq!(layers[1]["a.txt"].4, "a\n");
    assert_eq!(layers[1]["b.txt"].4, "b\n");
    assert!(
        layers[1].contains_key("etc/.wh.os-release"),
        "{:?}",
        layers[1].keys()
    );
    let config = skopeo_json(&[
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]);
    let with_layers: Vec<&str> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["empty_layer"] != true)
        .map(|h| h["created_by"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(with_layers.len(), 2, "{with_layers:?}");
    assert_eq!(
        with_layers[1],
        "single snapshot of the stage (--single-snapshot)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ignored_paths_are_never_captured() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!(
            "FROM {}\nRUN mkdir -p /data /cache /var/run && echo x > /data/x && echo y > /cache/y && echo z > /var/run/z\n",
            fixtures.index
        ),
        &[],
    );
    let image = format!("{}/ignored:default", registry.host());
    assert_success(
        &kiln(&[
            context_arg(ctx.path()),
            format!("--destination={image}"),
            "--ignore-path=/data".to_string(),
        ])
        .await,
    );
    let layer = &layers(&image)[1];
    assert_eq!(layer["cache/y"].4, "y\n");
    assert!(
        !layer
            .keys()
            .any(|k| k.starts_with("data") || k.starts_with("var/run/")),
        "{:?}",
        layer.keys()
    );

    let image = format!("{}/ignored:var-run", registry.host());
    assert_success(
        &kiln(&[
            context_arg(ctx.path()),
            format!("--destination={image}"),
            "--ignore-var-run=false".to_string(),
        ])
        .await,
    );
    let layer = &layers(&image)[1];
    assert_eq!(layer["var/run/z"].4, "z\n");
    assert_eq!(layer["data/x"].4, "x\n");
}
