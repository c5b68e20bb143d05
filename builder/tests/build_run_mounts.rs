//! `RUN --mount` and `--secret` end to end: `kiln` builds on the busybox
//! fixture in a real registry on loopback, RUN chrooted with its mounts
//! (bind mounts in the RUN's own mount namespace), and what was pushed is
//! read back with skopeo and from the registry's own storage. Needs root,
//! as --isolation=chroot does; CI runs as root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use support::TestRegistry;
use support::fixtures::{self, Fixtures};
use support::kiln::{
    Entry, assert_success, context, context_arg, exists, kiln, layers, skopeo, stderr,
};

async fn setup() -> (TestRegistry, Fixtures) {
    let registry = TestRegistry::start();
    let fixtures = fixtures::push_busybox_index(registry.host()).await;
    (registry, fixtures)
}

/// Every path of every layer except the base's.
fn paths_above_base(layers: &[BTreeMap<String, Entry>]) -> Vec<String> {
    layers[1..]
        .iter()
        .flat_map(|layer| layer.keys().cloned())
        .collect()
}

/// The content of `path` in the last layer that has it.
fn file(layers: &[BTreeMap<String, Entry>], path: &str) -> String {
    layers
        .iter()
        .rev()
        .find_map(|layer| layer.get(path).map(|entry| entry.4.clone()))
        .unwrap_or_else(|| panic!("{path} is in no layer"))
}

/// Every blob the registry stores, decompressed when it is gzip or zstd.
fn registry_blobs(registry: &TestRegistry) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&registry.storage_dir(), &mut files);
    files
        .into_iter()
        .filter(|path| path.file_name().is_some_and(|n| n == "data"))
        .map(|path| {
            let raw = std::fs::read(&path).unwrap();
            let mut plain = Vec::new();
            if raw.starts_with(&[0x1f, 0x8b]) {
                flate2::read::GzDecoder::new(&raw[..])
                    .read_to_end(&mut plain)
                    .unwrap();
            } else if raw.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                zstd::stream::read::Decoder::new(&raw[..])
                    .unwrap()
                    .read_to_end(&mut plain)
                    .unwrap();
            } else {
                plain = raw;
            }
            (path, plain)
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn config_of(image: &str) -> String {
    String::from_utf8(skopeo(&[
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_mount_persists_between_builds_and_is_in_no_layer() {
    let (registry, fixtures) = setup().await;
    let cache_dir = tempfile::tempdir().unwrap();
    let dockerfile = format!(
        "FROM {base} AS seed\n\
         RUN mkdir /seed && echo seeded > /seed/s\n\
         FROM {base}\n\
         ARG CACHE=/var/cache/app\n\
         RUN --mount=type=cache,target=$CACHE,id=app,mode=0750,uid=1000 \
         echo run >> $CACHE/log && wc -l < $CACHE/log > /runs && stat -c '%a %u' $CACHE > /cache-owner\n\
         RUN --mount=type=cache,target=/seeded,from=seed,source=/seed cat /seeded/s > /seen && echo more >> /seeded/s\n",
        base = fixtures.index
    );
    let ctx = context(&dockerfile, &[]);
    for (build, want_runs) in [(1, "1"), (2, "2")] {
        let image = format!("{}/cache-mount:{build}", registry.host());
        let output = kiln(&[
            context_arg(ctx.path()),
            format!("--destination={image}"),
            format!("--cache-dir={}", cache_dir.path().display()),
        ])
        .await;
        assert_success(&output);
        let layers = layers(&image);
        assert_eq!(file(&layers, "runs").trim(), want_runs, "build {build}");
        assert_eq!(file(&layers, "cache-owner"), "750 1000\n");
        // Seeded from the stage when created, then kept.
        let want_seen = if build == 1 {
            "seeded\n"
        } else {
            "seeded\nmore\n"
        };
        assert_eq!(file(&layers, "seen"), want_seen, "build {build}");
        // Only what the commands wrote outside the caches: no stub for
        // /var/cache/app or /seeded, no log.
        assert_eq!(
            paths_above_base(&layers),
            ["cache-owner", "runs", "seen"],
            "build {build}"
        );
    }
    // One folder per platform, then the id.
    let log = cache_dir.path().join("run-mounts/linux-amd64/app/log");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "run\nrun\n");
}

/// As in BuildKit: the default id is the target cleaned (`/x/` and `/x`
/// are one cache), and an existing cache takes each mount's owner and mode.
#[tokio::test(flavor = "multi_thread")]
async fn cache_mount_ids_are_clean_targets_and_owner_and_mode_hold_on_every_use() {
    let (registry, fixtures) = setup().await;
    let cache_dir = tempfile::tempdir().unwrap();
    let dockerfile = format!(
        "FROM {base}\n\
         RUN --mount=type=cache,target=/x/ echo one > /x/note\n\
         RUN --mount=type=cache,target=/x,mode=0700,uid=2,gid=3 \
         cat /x/note > /seen && stat -c '%a %u %g' /x > /owner\n",
        base = fixtures.index
    );
    let ctx = context(&dockerfile, &[]);
    let image = format!("{}/cache-mount-ids:1", registry.host());
    let output = kiln(&[
        context_arg(ctx.path()),
        format!("--destination={image}"),
        format!("--cache-dir={}", cache_dir.path().display()),
    ])
    .await;
    assert_success(&output);
    let layers = layers(&image);
    assert_eq!(file(&layers, "seen"), "one\n");
    assert_eq!(file(&layers, "owner"), "700 2 3\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_mounts_are_separate_per_platform() {
    let arm64: kiln_builder::platform::Platform = "linux/arm64".parse().unwrap();
    kiln_builder::run::emulation::find_interpreter(
        Path::new(kiln_builder::run::emulation::BINFMT_MISC_DIR),
        &arm64,
    )
    .expect("qemu-aarch64 registered in binfmt_misc (scripts/setup.sh does it)");
    let (registry, fixtures) = setup().await;
    let cache_dir = tempfile::tempdir().unwrap();
    let dockerfile = format!(
        "FROM {}\nRUN --mount=type=cache,target=/c,id=shared uname -m >> /c/arch && cat /c/arch > /seen\n",
        fixtures.index
    );
    let ctx = context(&dockerfile, &[]);
    for build in ["a", "b"] {
        let output = kiln(&[
            context_arg(ctx.path()),
            format!("--destination={}/cache-arch:{build}", registry.host()),
            "--multi-platform=linux/amd64,linux/arm64".to_string(),
            "--emulation=qemu".to_string(),
            "--publish-index=true".to_string(),
            format!("--cache-dir={}", cache_dir.path().display()),
        ])
        .await;
        assert_success(&output);
    }
    let read = |platform: &str| {
        std::fs::read_to_string(
            cache_dir
                .path()
                .join("run-mounts")
                .join(platform)
                .join("shared/arch"),
        )
        .unwrap()
    };
    assert_eq!(read("linux-amd64"), "x86_64\nx86_64\n");
    assert_eq!(read("linux-arm64"), "aarch64\naarch64\n");
    let mut platforms: Vec<String> = std::fs::read_dir(cache_dir.path().join("run-mounts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    platforms.sort();
    assert_eq!(platforms, ["linux-amd64", "linux-arm64"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bind_mounts_from_the_context_and_a_stage() {
    let (registry, fixtures) = setup().await;
    let dockerfile = format!(
        "FROM {base} AS tools\n\
         RUN echo tool > /tool.txt\n\
         FROM {base}\n\
         WORKDIR /work\n\
         RUN --mount=type=bind,source=data,target=/data cat /data/a.txt > /from-context && ls /data > /listing\n\
         RUN --mount=type=bind,from=tools,source=/tool.txt,target=/t.txt cat /t.txt > /from-stage\n\
         RUN --mount=type=bind,from={base},source=/etc/passwd,target=/mnt-passwd grep -c '^app:' /mnt-passwd > /from-image\n\
         RUN --mount=target=/data,source=data sh -c 'if echo x > /data/new; then echo writable; else echo read-only; fi > /ro-check'\n\
         RUN --mount=source=data,target=rel,rw sh -c 'echo changed > rel/a.txt && echo new > rel/b.txt && cat rel/a.txt > /rw-saw'\n\
         RUN --mount=type=bind,source=data,target=/data cat /data/a.txt > /after-rw\n\
         RUN --mount=type=tmpfs,target=/scratch,size=1m sh -c 'echo x > /scratch/f && grep \" /scratch \" /proc/mounts | cut -d\" \" -f3 > /tmpfs-type'\n",
        base = fixtures.index
    );
    let ctx = context(
        &dockerfile,
        &[
            ("data/a.txt", "from the context\n"),
            ("data/secret.key", "ignored\n"),
            (".dockerignore", "data/*.key\n"),
        ],
    );
    let image = format!("{}/bind:1", registry.host());
    let output = kiln(&[context_arg(ctx.path()), format!("--destination={image}")]).await;
    assert_success(&output);
    let layers = layers(&image);
    assert_eq!(file(&layers, "from-context"), "from the context\n");
    // .dockerignore applies to binds of the context as to COPY.
    assert_eq!(file(&layers, "listing"), "a.txt\n");
    assert_eq!(file(&layers, "from-stage"), "tool\n");
    assert_eq!(file(&layers, "from-image"), "1\n");
    assert_eq!(file(&layers, "ro-check"), "read-only\n");
    assert_eq!(file(&layers, "rw-saw"), "changed\n");
    assert_eq!(file(&layers, "after-rw"), "from the context\n");
    assert_eq!(file(&layers, "tmpfs-type"), "tmpfs\n");
    // The rw writes went nowhere: not the context, not the image.
    assert_eq!(
        std::fs::read_to_string(ctx.path().join("data/a.txt")).unwrap(),
        "from the context\n"
    );
    assert!(!ctx.path().join("data/b.txt").exists());
    assert!(!ctx.path().join("data/new").exists());
    let paths = paths_above_base(&layers);
    for path in &paths {
        assert!(
            !(path.starts_with("data")
                || path.starts_with("t.txt")
                || path.starts_with("mnt-passwd")
                || path.starts_with("work/rel")
                || path.starts_with("scratch")),
            "a mount left {path} in a layer: {paths:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_readable_in_run_and_nowhere_else() {
    let (registry, fixtures) = setup().await;
    let value = "s3cr3t-VALUE-4711";
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("token");
    std::fs::write(&secret_file, value).unwrap();
    // The Dockerfile holds only the value's digest: the instruction text
    // is logged and recorded in the history.
    let digest = fixtures::sha256_digest(value.as_bytes());
    let hex = digest.trim_start_matches("sha256:");
    let dockerfile = format!(
        "FROM {}\n\
         RUN --mount=type=secret,id=token test \"$(sha256sum < /run/secrets/token | cut -c1-64)\" = {hex} && stat -c '%a %u %g' /run/secrets/token > /file-mode\n\
         RUN --mount=type=secret,id=token,target=/etc/tok,mode=0440,uid=1000,gid=1000 stat -c '%a %u %g' /etc/tok > /custom-mode\n\
         USER app\n\
         RUN --mount=type=secret,id=from-env,env=TOKEN,target=/run/secrets/from-env,uid=1000 test \"$(echo -n $TOKEN | sha256sum | cut -c1-64)\" = {hex} && cat /run/secrets/from-env > /dev/null && echo ok > /tmp/env-ok\n\
         RUN --mount=type=secret,id=only-env,env=ONLY test \"$(echo -n $ONLY | sha256sum | cut -c1-64)\" = {hex} && test ! -e /run/secrets/only-env && echo ok > /tmp/only-env-ok\n\
         RUN --mount=type=secret,id=not-given echo skipped > /tmp/optional\n",
        fixtures.index
    );
    let ctx = context(&dockerfile, &[]);
    let image = format!("{}/secret:1", registry.host());
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            context_arg(ctx.path()),
            format!("--destination={image}"),
            format!("--secret=id=token,src={}", secret_file.display()),
            "--secret=id=from-env,env=KILN_TEST_SECRET".to_string(),
            "--secret=id=only-env,env=KILN_TEST_SECRET".to_string(),
            "--verbosity=trace".to_string(),
        ])
        .env("DOCKER_CONFIG", secrets.path())
        .env("KILN_TEST_SECRET", value)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("KILN_BUILDER_IMAGE")
        .output()
        .await
        .unwrap();
    assert_success(&output);
    let log = stderr(&output);
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "trace level logs: {log}"
    );
    assert!(!log.contains(value), "the secret reached the log:\n{log}");

    let layers = layers(&image);
    assert_eq!(file(&layers, "file-mode"), "400 0 0\n");
    assert_eq!(file(&layers, "custom-mode"), "440 1000 1000\n");
    assert_eq!(file(&layers, "tmp/env-ok"), "ok\n");
    assert_eq!(file(&layers, "tmp/only-env-ok"), "ok\n");
    assert_eq!(file(&layers, "tmp/optional"), "skipped\n");
    let paths = paths_above_base(&layers);
    for path in &paths {
        assert!(
            !(path.starts_with("run") || path == "etc/tok" || path.starts_with("etc/")),
            "a secret mount left {path} in a layer: {paths:?}"
        );
    }
    let config = config_of(&image);
    assert!(
        !config.contains(value),
        "the secret is in the config: {config}"
    );
    let blobs = registry_blobs(&registry);
    assert!(blobs.len() > 4, "the registry holds the pushed blobs");
    for (path, bytes) in &blobs {
        assert!(
            !contains(bytes, value.as_bytes()),
            "the secret is in {}",
            path.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_required_secret_fails_before_anything_runs() {
    let (registry, fixtures) = setup().await;
    let dockerfile = format!(
        "FROM {}\nRUN echo first-run-ran\nRUN --mount=type=secret,id=npmrc,required cat /run/secrets/npmrc\n",
        fixtures.index
    );
    let ctx = context(&dockerfile, &[]);
    let image = format!("{}/no-secret:1", registry.host());
    let output = kiln(&[context_arg(ctx.path()), format!("--destination={image}")]).await;
    assert!(!output.status.success());
    let log = stderr(&output);
    assert!(
        log.contains(
            "RUN --mount=type=secret,id=npmrc,required: secret \"npmrc\" was not supplied; pass \
             --secret id=npmrc,src=<file>"
        ),
        "{log}"
    );
    assert!(log.contains("Dockerfile:3"), "{log}");
    assert!(!log.contains("first-run-ran"), "a RUN ran: {log}");
    assert!(!exists(&image));

    // Another id does not count.
    let other = tempfile::NamedTempFile::new().unwrap();
    let output = kiln(&[
        context_arg(ctx.path()),
        format!("--destination={image}"),
        format!("--secret=id=pip,src={}", other.path().display()),
    ])
    .await;
    assert!(!output.status.success());
    assert!(stderr(&output).contains("secret \"npmrc\" was not supplied"));
    assert!(!exists(&image));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_bind_source_misses_the_layer_cache() {
    let (registry, fixtures) = setup().await;
    let cache_dir = tempfile::tempdir().unwrap();
    let secret = tempfile::NamedTempFile::new().unwrap();
    let dockerfile = format!(
        "FROM {}\n\
         RUN --mount=type=bind,source=src,target=/src cat /src/main.c > /built\n\
         RUN --mount=type=cache,target=/c --mount=type=secret,id=s echo other > /other\n",
        fixtures.index
    );
    let ctx = context(
        &dockerfile,
        &[("src/main.c", "v1\n"), ("unrelated.txt", "a")],
    );
    let build = |tag: &str, secret_value: &str| {
        std::fs::write(secret.path(), secret_value).unwrap();
        let args = vec![
            context_arg(ctx.path()),
            format!("--destination={}/bind-cache:{tag}", registry.host()),
            "--cache=true".to_string(),
            format!("--cache-repo={}/bind-cache/cache", registry.host()),
            format!("--cache-dir={}", cache_dir.path().display()),
            format!("--secret=id=s,src={}", secret.path().display()),
        ];
        async move { kiln(&args).await }
    };
    let output = build("1", "first").await;
    assert_success(&output);
    assert!(
        stderr(&output).contains("0 cache hits, 2 cache misses"),
        "{}",
        stderr(&output)
    );

    // Another secret value, another file outside the source: both hit.
    std::fs::write(ctx.path().join("unrelated.txt"), "b").unwrap();
    let output = build("2", "second").await;
    assert_success(&output);
    assert!(
        stderr(&output).contains("2 cache hits, 0 cache misses"),
        "{}",
        stderr(&output)
    );

    // A changed file under the bind's source misses, and the RUN sees it.
    std::fs::write(ctx.path().join("src/main.c"), "v2\n").unwrap();
    let output = build("3", "second").await;
    assert_success(&output);
    assert!(
        stderr(&output).contains("0 cache hits, 2 cache misses"),
        "{}",
        stderr(&output)
    );
    let image = format!("{}/bind-cache:3", registry.host());
    assert_eq!(file(&layers(&image), "built"), "v2\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_mounts_are_clear_errors_and_push_nothing() {
    let (registry, fixtures) = setup().await;
    let table = [
        (
            "RUN --mount=source=nope,target=/x true",
            "RUN --mount=source=nope,target=/x: source nope does not exist in the build context; \
             check source= and from=",
        ),
        (
            "RUN --mount=type=cache,target=/c,colour=red true",
            "unknown key \"colour\" for --mount=type=cache",
        ),
        (
            "RUN --mount=type=ssh true",
            "--mount=type=ssh is not supported",
        ),
        (
            "RUN --mount=type=cache,target=/a --mount=type=tmpfs,target=/a/b true",
            "its target /a/b and the target /a of another mount overlap",
        ),
        (
            "RUN --mount=type=tmpfs,target=/ true",
            "RUN --mount=type=tmpfs,target=/: cannot mount over /",
        ),
        (
            "RUN --mount=type=tmpfs,target=/etc/passwd true",
            "cannot mount RUN --mount target /etc/passwd: ",
        ),
    ];
    let cache_dir = tempfile::tempdir().unwrap();
    for (n, (run, want)) in table.iter().enumerate() {
        let ctx = context(&format!("FROM {}\n{run}\n", fixtures.index), &[]);
        let image = format!("{}/bad-mount:{n}", registry.host());
        // With the layer cache too: its key reads bind sources first.
        for cache in ["--cache=false", "--cache=true"] {
            let output = kiln(&[
                context_arg(ctx.path()),
                format!("--destination={image}"),
                cache.to_string(),
                format!("--cache-dir={}", cache_dir.path().display()),
            ])
            .await;
            assert!(!output.status.success(), "{run} {cache}");
            let log = stderr(&output);
            assert!(log.contains(want), "{run} {cache}: {log}");
            assert!(log.contains("Dockerfile:2"), "{run} {cache}: {log}");
            assert!(!exists(&image));
        }
    }
}
