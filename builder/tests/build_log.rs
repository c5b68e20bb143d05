//! The build log, as a person and as a CI tool read it: one line per
//! instruction labelled `[platform stage n/N]`, its end (duration,
//! `CACHED`, layer size), a header and a summary per platform, no Rust
//! module paths; and with `--log-format=json` nothing but JSON objects,
//! RUN output and the final error included.
//! Needs root, as RUN with --isolation=chroot does; CI runs as root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::TestRegistry;
use support::fixtures::{self, Fixtures};
use support::kiln::{assert_success, context, context_arg, kiln, stderr};

async fn setup() -> (TestRegistry, Fixtures) {
    let registry = TestRegistry::start();
    let fixtures = fixtures::push_busybox_index(registry.host()).await;
    (registry, fixtures)
}

/// The lines of `log` that start with `prefix`.
fn lines_starting<'a>(log: &'a str, prefix: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.starts_with(prefix)).collect()
}

/// A line without the `[platform stage n/N] ` label it may start with.
fn unlabelled(line: &str) -> &str {
    match line
        .strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
    {
        Some((_, rest)) => rest,
        None => line,
    }
}

/// The lines of `log` that start with `prefix` once unlabelled.
fn unlabelled_lines_starting<'a>(log: &'a str, prefix: &str) -> Vec<&'a str> {
    log.lines()
        .map(unlabelled)
        .filter(|l| l.starts_with(prefix))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn text_log_labels_every_instruction_with_platform_stage_and_step() {
    let (registry, fixtures) = setup().await;
    let platform = kiln_builder::platform::Platform::host().to_string();
    let ctx = context(
        &format!(
            "FROM {} AS build\nENV GREETING=hi\nRUN echo $GREETING > /x\n\
             FROM build\nLABEL a=b\nUSER 1000\nCMD [\"/x\"]\n",
            fixtures.index
        ),
        &[],
    );
    let destination = format!("{}/log:1", registry.host());
    let args = [
        context_arg(ctx.path()),
        format!("--destination={destination}"),
        "--cache=true".to_string(),
    ];
    let output = kiln(&args).await;
    assert_success(&output);
    let log = stderr(&output);

    // No module paths, no span names: `kiln_builder::build::run_step`,
    // `stage{…}:`.
    assert!(!log.contains("kiln_builder"), "{log}");
    assert!(!log.contains("stage{"), "{log}");
    assert!(!log.contains(" INFO "), "{log}");

    // The header names the stages as written (the unnamed one by index).
    let header = lines_starting(&log, &format!("[{platform}] building "));
    assert_eq!(header.len(), 1, "{log}");
    assert!(header[0].ends_with("/Dockerfile: stages build, 1"), "{log}");
    let start_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with(&format!("[{platform} ")))
        .filter(|l| !l.contains("] DONE ") && !l.contains("] CACHED"))
        // The step's other lines (cache lookups, pulls, unpacking) carry
        // its label too; here only the instructions' own.
        .filter(|l| {
            ![
                "cache hit ",
                "cache miss ",
                "cached ",
                "unpacking ",
                "pulled ",
                "pushed ",
            ]
            .iter()
            .any(|other| unlabelled(l).starts_with(other))
        })
        .collect();
    let want = [
        format!("[{platform} build 1/3] FROM {}", fixtures.index),
        format!("[{platform} build 2/3] ENV GREETING=hi"),
        format!("[{platform} build 3/3] RUN echo $GREETING > /x"),
        format!("[{platform} 1 1/4] FROM build"),
        format!("[{platform} 1 2/4] LABEL a=b"),
        format!("[{platform} 1 3/4] USER 1000"),
        format!("[{platform} 1 4/4] CMD [\"/x\"]"),
    ];
    assert_eq!(start_lines, want, "{log}");
    // Each step ends with a line of its own: the RUN with its layer's size.
    let run_end = lines_starting(&log, &format!("[{platform} build 3/3] DONE "));
    assert_eq!(run_end.len(), 1, "{log}");
    assert!(run_end[0].ends_with(" B"), "{log}");
    assert!(run_end[0].contains("s, layer "), "{log}");
    let env_end = lines_starting(&log, &format!("[{platform} build 2/3] DONE "));
    assert_eq!(env_end.len(), 1, "{log}");
    assert!(!env_end[0].contains("layer"), "{log}");
    // The summary: digest, layers (busybox's one and the RUN's), size,
    // cache counts, time.
    let summary = lines_starting(&log, &format!("[{platform}] image sha256:"));
    assert_eq!(summary.len(), 1, "{log}");
    assert!(
        summary[0].contains(": 2 layers, ")
            && summary[0].contains(" compressed, 0 cache hits, 1 cache misses, "),
        "{log}"
    );

    // Again: the RUN comes from the cache.
    let output = kiln(&args).await;
    assert_success(&output);
    let log = stderr(&output);
    let cached = lines_starting(&log, &format!("[{platform} build 3/3] CACHED"));
    assert_eq!(cached.len(), 1, "{log}");
    assert!(cached[0].contains(", layer "), "{log}");
    assert!(
        log.contains(" compressed, 1 cache hits, 0 cache misses, "),
        "{log}"
    );
}

/// Every line of `log` as a JSON object.
fn json_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{log}"));
            assert!(value.is_object(), "{line}");
            value
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn json_log_is_only_json_objects_run_output_and_error_included() {
    let (registry, fixtures) = setup().await;
    let platform = kiln_builder::platform::Platform::host().to_string();
    let ctx = context(
        &format!(
            "FROM {} AS app\nRUN echo kiln-json-one && echo kiln-json-two 1>&2 && touch /made\n",
            fixtures.index
        ),
        &[],
    );
    let output = kiln(&[
        context_arg(ctx.path()),
        format!("--destination={}/json:1", registry.host()),
        "--log-format=json".to_string(),
    ])
    .await;
    assert_success(&output);
    let log = stderr(&output);
    let objects = json_lines(&log);
    for text in ["kiln-json-one", "kiln-json-two"] {
        let found: Vec<_> = objects
            .iter()
            .filter(|o| o["fields"]["message"] == text)
            .collect();
        assert_eq!(found.len(), 1, "{text}: {log}");
        let fields = &found[0]["fields"];
        assert_eq!(fields["platform"], platform.as_str(), "{log}");
        assert_eq!(fields["stage"], "app", "{log}");
        assert_eq!(fields["step"], 2, "{log}");
        assert_eq!(fields["steps"], 2, "{log}");
        assert_eq!(fields["output"], true, "{log}");
    }
    // The step's own lines carry the same fields.
    let done: Vec<_> = objects
        .iter()
        .filter(|o| o["fields"]["cached"] == false && o["fields"]["step"] == 2)
        .collect();
    assert_eq!(done.len(), 1, "{log}");
    assert!(done[0]["fields"]["duration_ms"].is_u64(), "{log}");
    assert!(done[0]["fields"]["layer_bytes"].is_u64(), "{log}");

    // A failing build: its output and its error are objects too, and it
    // exits with the command's code.
    let ctx = context(
        &format!(
            "FROM {}\nRUN echo kiln-json-fails; exit 3\n",
            fixtures.index
        ),
        &[],
    );
    let output = kiln(&[
        context_arg(ctx.path()),
        format!("--destination={}/json:2", registry.host()),
        "--log-format=json".to_string(),
    ])
    .await;
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{log}");
    let objects = json_lines(&log);
    assert_eq!(
        objects
            .iter()
            .filter(|o| o["fields"]["message"] == "kiln-json-fails")
            .count(),
        1,
        "{log}"
    );
    let Some(last) = objects.last() else {
        panic!("no log: {log}")
    };
    assert_eq!(last["level"], "ERROR", "{log}");
    assert_eq!(last["fields"]["exit_code"], 3, "{log}");
    assert_eq!(
        last["fields"]["message"],
        "Dockerfile:2: RUN echo kiln-json-fails; exit 3: RUN failed (exit 3): \
         echo kiln-json-fails; exit 3",
        "{log}"
    );
}

/// `--progress=plain` (and `auto` when stderr is not a terminal, as here):
/// one line per blob pulled or pushed, with its size.
#[tokio::test(flavor = "multi_thread")]
async fn plain_progress_logs_one_line_per_blob() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!("FROM {}\nCOPY a.txt /a.txt\n", fixtures.amd64.reference),
        &[("a.txt", "a")],
    );
    let host = registry.host();
    for progress in ["plain", "auto"] {
        let output = kiln(&[
            context_arg(ctx.path()),
            format!("--destination={host}/{progress}:1"),
            format!("--progress={progress}"),
        ])
        .await;
        assert_success(&output);
        let log = stderr(&output);
        let layer = &fixtures.amd64.layer_digest["sha256:".len()..][..12];
        let pulled = unlabelled_lines_starting(&log, "pulled blob ");
        let first_pull = pulled.first().copied().unwrap_or_default();
        assert_eq!(pulled.len(), 1, "{progress}: {log}");
        assert!(
            first_pull.starts_with(&format!("pulled blob sha256:{layer} {host}/busybox: ")),
            "{progress}: {log}"
        );
        assert!(first_pull.ends_with('s'), "{progress}: {log}");
        assert!(!first_pull.contains("\u{1b}"), "{progress}: {log}");
        // The base layer is mounted from busybox (not uploaded again); the
        // COPY's layer and the config are uploaded.
        let pushed = unlabelled_lines_starting(&log, "pushed blob sha256:");
        assert_eq!(pushed.len(), 2, "{progress}: {log}");
        for line in pushed {
            assert!(
                line.contains(&format!(" {host}/{progress}: ")) && line.contains(" B in "),
                "{progress}: {log}"
            );
        }
    }
}

/// `--progress=tty` under a pseudo-terminal (`script`): a live bar while
/// a layer is pushed (bytes of the total, rate), cleared when it is done,
/// then the blob's line.
#[tokio::test(flavor = "multi_thread")]
async fn tty_progress_draws_bars_under_a_pty() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no `script` (util-linux) to give kiln a pseudo-terminal");
        return;
    }
    let registry = TestRegistry::start();
    let ctx = tempfile::tempdir().unwrap();
    // 3 MB that gzip cannot shrink: the upload takes more than one chunk.
    let mut noise = vec![0u8; 3_000_000];
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for byte in noise.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    std::fs::write(ctx.path().join("noise"), &noise).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY noise /noise\n",
    )
    .unwrap();
    let empty_config = tempfile::tempdir().unwrap();
    let command = format!(
        "{} --context=dir://{} --destination={}/tty:1 --progress=tty",
        env!("CARGO_BIN_EXE_kiln"),
        ctx.path().display(),
        registry.host()
    );
    let output = tokio::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("DOCKER_CONFIG", empty_config.path())
        .env("COLUMNS", "120")
        .output()
        .await
        .unwrap();
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{screen}");
    assert!(screen.contains("pushing sha256:"), "{screen}");
    assert!(screen.contains("B/3.00 MB "), "{screen}");
    assert!(screen.contains("MB/s"), "{screen}");
    // Bars are redrawn in place and cleared: erase-line sequences.
    assert!(screen.contains("\u{1b}[2K"), "{screen}");
    assert!(screen.contains("pushed blob sha256:"), "{screen}");
}

/// Several platforms: a header naming them, then each platform's header,
/// steps and summary.
#[tokio::test(flavor = "multi_thread")]
async fn multi_platform_log_has_a_header_and_a_summary_per_platform() {
    let registry = TestRegistry::start();
    let ctx = context("FROM scratch\nCOPY a.txt /a.txt\n", &[("a.txt", "a")]);
    let output = kiln(&[
        context_arg(ctx.path()),
        format!("--destination={}/multi:1", registry.host()),
        "--platform=linux/amd64,linux/arm64".to_string(),
    ])
    .await;
    assert_success(&output);
    let log = stderr(&output);
    assert_eq!(
        log.lines().next(),
        Some("building 2 platforms: linux/amd64, linux/arm64"),
        "{log}"
    );
    for platform in ["linux/amd64", "linux/arm64"] {
        let steps = [
            format!("[{platform} 0 1/2] FROM scratch"),
            format!("[{platform} 0 2/2] COPY a.txt /a.txt"),
        ];
        for step in steps {
            assert_eq!(lines_starting(&log, &step).len(), 1, "{step}: {log}");
        }
        let summary = lines_starting(&log, &format!("[{platform}] image sha256:"));
        assert_eq!(summary.len(), 1, "{log}");
        assert!(summary[0].contains(": 1 layer, "), "{log}");
    }
}

/// A multi-stage build for two platforms, with the layer cache: every line
/// that belongs to a step (its RUN's output, cache lookups and pushes,
/// pulls, unpacking) carries the step's `[platform stage n/N]` label, and
/// every line of a platform's push its `[platform]`. Only the build's own
/// header, the index and the closing digests are unlabelled.
#[tokio::test(flavor = "multi_thread")]
async fn every_line_of_a_step_carries_its_label() {
    let (registry, fixtures) = setup().await;
    // The tools stage runs natively for both targets ($BUILDPLATFORM).
    let ctx = context(
        &format!(
            "FROM --platform=$BUILDPLATFORM {b} AS tools\nARG TARGETARCH\n\
             RUN echo built-$TARGETARCH > /out.txt && cat /out.txt\n\
             FROM {b} AS final\nCOPY --from=tools /out.txt /out.txt\nENV X=1\n",
            b = fixtures.index
        ),
        &[],
    );
    let output = kiln(&[
        context_arg(ctx.path()),
        format!("--destination={}/labels:1", registry.host()),
        "--platform=linux/amd64,linux/arm64".to_string(),
        "--cache=true".to_string(),
    ])
    .await;
    assert_success(&output);
    let log = stderr(&output);
    let unlabelled_allowed = |line: &str| {
        line.starts_with("building 2 platforms: ")
            || line.starts_with("pushed index ")
            || line.starts_with("linux/amd64: sha256:")
            || line.starts_with("linux/arm64: sha256:")
    };
    let unlabelled: Vec<&str> = log
        .lines()
        .filter(|l| !l.starts_with('[') && !l.starts_with("WARN [") && !unlabelled_allowed(l))
        .collect();
    assert_eq!(unlabelled, Vec::<&str>::new(), "{log}");
    // Lines that were unlabelled before, now behind their step's label.
    for platform in ["linux/amd64", "linux/arm64"] {
        let arch = platform.split('/').nth(1).unwrap();
        for line in [
            format!("[{platform} tools 3/3] built-{arch}"),
            format!("[{platform} tools 3/3] cache miss for RUN echo built-$TARGETARCH"),
            format!("[{platform} tools 3/3] cached RUN echo built-$TARGETARCH"),
            format!("[{platform} final 2/3] unpacking 1 layers into a root filesystem"),
            format!(
                "[{platform}] layer cache in {}/labels/cache",
                registry.host()
            ),
            format!("[{platform}] pushed {}/labels@sha256:", registry.host()),
        ] {
            assert_eq!(lines_starting(&log, &line).len(), 1, "{line}: {log}");
        }
    }
}
