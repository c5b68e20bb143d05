//! The layer cache end to end (`--cache` and friends): `kiln` builds on
//! the busybox fixture against a real registry on loopback, twice or more,
//! and the second build must take its layers from the cache repository
//! instead of running anything. RUN needs root (--isolation=chroot), as CI
//! has.

// Tests fail by panicking, with the value that was wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::fixtures::{self, Fixtures};
use support::kiln::{
    assert_success, context, context_arg, files, kiln, kiln_with_config, skopeo_json, stderr,
};
use support::{FaultProxy, TestRegistry};

async fn setup() -> (TestRegistry, Fixtures) {
    let registry = TestRegistry::start();
    let fixtures = fixtures::push_busybox_index(registry.host()).await;
    (registry, fixtures)
}

/// Digests of the layers of `reference`'s manifest (`arch` picks one
/// platform of an index).
fn layer_digests(reference: &str, arch: Option<&str>) -> Vec<String> {
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    let source = format!("docker://{reference}");
    let manifest = match arch {
        Some(arch) => {
            let index = skopeo_json(&[args.clone(), vec![source.as_str()]].concat());
            let child = index["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["platform"]["architecture"] == arch)
                .unwrap_or_else(|| panic!("no {arch} entry in {index}"));
            let repo = reference.rsplit_once(':').unwrap().0;
            let by_digest = format!("docker://{repo}@{}", child["digest"].as_str().unwrap());
            args.push(&by_digest);
            skopeo_json(&args)
        }
        None => {
            args.push(&source);
            skopeo_json(&args)
        }
    };
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

fn config_of(reference: &str) -> serde_json::Value {
    skopeo_json(&[
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ])
}

/// The tags of `repository`, sorted; empty when it does not exist.
fn tags(repository: &str) -> Vec<String> {
    let output = std::process::Command::new("skopeo")
        .args([
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{repository}"),
        ])
        .output()
        .unwrap();
    if !output.status.success() {
        return Vec::new();
    }
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut tags: Vec<String> = json["Tags"]
        .as_array()
        .map(|t| t.iter().map(|t| t.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    tags.sort();
    tags
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// Output that differs on every execution: a RUN producing it can only
/// give the same layer twice by not running the second time.
const UNIQUE: &str =
    "cat /proc/sys/kernel/random/uuid 2>/dev/null; echo $RANDOM $$; busybox date +%s%N";

async fn build(args: &[String]) -> std::process::Output {
    let output = kiln(args).await;
    assert_success(&output);
    output
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cached_rebuild_runs_nothing_and_gives_the_same_layers() {
    let registry = TestRegistry::start();
    // Everything goes through a recording proxy, to see what is downloaded.
    let proxy = FaultProxy::recording(registry.host()).await;
    let fixtures = fixtures::push_busybox_index(registry.host()).await;
    let base = format!("{}/busybox:latest", proxy.host());
    let ctx = context(
        &format!(
            "FROM {base}\nENV MODE=first\nRUN ({UNIQUE}) > /unique-a\nWORKDIR /w\nRUN ({UNIQUE}) > /w/unique-b && echo $MODE > /w/mode\n"
        ),
        &[],
    );
    let first = format!("{}/app:1", proxy.host());
    let second = format!("{}/app:2", proxy.host());
    let cold = build(&[
        context_arg(ctx.path()),
        format!("--destination={first}"),
        "--cache".to_string(),
    ])
    .await;
    let log = stderr(&cold);
    assert_eq!(count(&log, "cache miss for RUN"), 2, "{log}");
    // WORKDIR creates /w in a layer of its own, cached like a RUN's.
    assert_eq!(count(&log, "cache miss for WORKDIR"), 1, "{log}");
    assert!(log.contains("0 cache hits, 3 cache misses"), "{log}");
    // Default repository: the destination's with /cache appended, one
    // cache image per RUN and WORKDIR.
    assert_eq!(tags(&format!("{}/app/cache", registry.host())).len(), 3);

    let requests_before = proxy.requests().len();
    let warm = build(&[
        context_arg(ctx.path()),
        format!("--destination={second}"),
        "--cache".to_string(),
    ])
    .await;
    // Taken now: reading the images back below goes through the proxy too.
    let during_warm = proxy.requests()[requests_before..].to_vec();
    let log = stderr(&warm);
    assert_eq!(count(&log, "cache hit for RUN"), 2, "{log}");
    assert_eq!(count(&log, "cache hit for WORKDIR"), 1, "{log}");
    assert!(log.contains("3 cache hits, 0 cache misses"), "{log}");
    assert!(
        !log.contains("unpacking"),
        "a fully cached build unpacked: {log}"
    );

    let (a, b) = (layer_digests(&first, None), layer_digests(&second, None));
    assert_eq!(a.len(), 4);
    assert_eq!(a, b, "the cached rebuild has other layers");
    let files = files(&second);
    assert_eq!(files["w/mode"].2, "first\n");
    // The history the cache restored is the one the RUNs wrote.
    let history: Vec<String> = config_of(&second)["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["created_by"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(history, {
        let c: Vec<String> = config_of(&first)["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["created_by"].as_str().unwrap().to_string())
            .collect();
        c
    });
    // Nothing of the base image's layer was downloaded for the rebuild.
    let base_layer_get = format!("/blobs/{}", fixtures.amd64.layer_digest);
    let downloads: Vec<String> = during_warm
        .iter()
        .filter(|r| r.starts_with("GET") && r.contains(&base_layer_get))
        .cloned()
        .collect();
    assert!(downloads.is_empty(), "{downloads:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_miss_lookups_go_on_and_the_files_of_cached_layers_are_there() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!(
            "FROM {}\nRUN echo one > /one && ({UNIQUE}) > /unique\nARG V\nRUN cat /one > /seen && echo $V > /v\nRUN echo three > /three\n",
            fixtures.index
        ),
        &[],
    );
    let run = |v: &str, tag: &str| {
        vec![
            context_arg(ctx.path()),
            format!("--destination={}/chain:{tag}", registry.host()),
            "--cache".to_string(),
            format!("--build-arg=V={v}"),
        ]
    };
    let log = stderr(&build(&run("1", "a")).await);
    assert!(log.contains("0 cache hits, 3 cache misses"), "{log}");

    // V changes: the first RUN is cached, the second is not and needs the
    // files, so base and cached layer are unpacked under it.
    let log = stderr(&build(&run("2", "b")).await);
    assert!(log.contains("1 cache hits, 2 cache misses"), "{log}");
    assert_eq!(count(&log, "unpacking 2 layers"), 1, "{log}");
    let b = files(&format!("{}/chain:b", registry.host()));
    assert_eq!(b["seen"].2, "one\n");
    assert_eq!(b["v"].2, "2\n");
    let a = files(&format!("{}/chain:a", registry.host()));
    assert_eq!(a["unique"], b["unique"], "the first RUN ran again");

    // Back to V=1: every key is the first build's again, all hit.
    let log = stderr(&build(&run("1", "c")).await);
    assert!(log.contains("3 cache hits, 0 cache misses"), "{log}");
    assert_eq!(
        layer_digests(&format!("{}/chain:a", registry.host()), None),
        layer_digests(&format!("{}/chain:c", registry.host()), None)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_layers_are_cached_by_content_with_cache_copy_layers() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!(
            "FROM {}\nCOPY app.txt /app/\nRUN ({UNIQUE}) > /after\n",
            fixtures.index
        ),
        &[("app.txt", "version 1\n")],
    );
    let run = |tag: &str, copy_layers: bool| {
        vec![
            context_arg(ctx.path()),
            format!("--destination={}/copy:{tag}", registry.host()),
            "--cache".to_string(),
            format!("--cache-copy-layers={copy_layers}"),
        ]
    };
    let log = stderr(&build(&run("1", true)).await);
    assert!(log.contains("0 cache hits, 2 cache misses"), "{log}");
    let log = stderr(&build(&run("2", true)).await);
    assert!(log.contains("2 cache hits, 0 cache misses"), "{log}");
    assert!(!log.contains("unpacking"), "{log}");

    // Without --cache-copy-layers the COPY runs (its layer differs: the
    // /app directory it creates gets the build's time), but its key is the
    // same: the RUN after it still hits.
    let log = stderr(&build(&run("3", false)).await);
    assert!(log.contains("1 cache hits, 0 cache misses"), "{log}");
    assert_eq!(
        layer_digests(&format!("{}/copy:1", registry.host()), None)[2],
        layer_digests(&format!("{}/copy:3", registry.host()), None)[2]
    );

    // New content: a new key for the COPY and everything after it. The
    // same content with a new mtime would not be.
    std::fs::write(ctx.path().join("app.txt"), "version 2\n").unwrap();
    let log = stderr(&build(&run("4", true)).await);
    assert!(log.contains("0 cache hits, 2 cache misses"), "{log}");
    assert_eq!(
        files(&format!("{}/copy:4", registry.host()))["app/app.txt"].2,
        "version 2\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn platforms_have_their_own_keys_and_with_a_suffix_their_own_repositories() {
    let (registry, fixtures) = setup().await;
    // No RUN: arm64 builds on any machine.
    let ctx = context(
        &format!("FROM {}\nCOPY f.txt /f.txt\n", fixtures.index),
        &[("f.txt", "same bytes for every platform\n")],
    );
    let host = registry.host();
    let multi = |tag: &str, extra: &[&str]| {
        let mut args = vec![
            context_arg(ctx.path()),
            format!("--destination={host}/multi:{tag}"),
            "--multi-platform=linux/amd64,linux/arm64".to_string(),
            "--publish-index".to_string(),
            "--cache".to_string(),
            "--cache-copy-layers".to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    // One shared repository: the same instruction on the same content
    // still gets one key per platform.
    build(&multi(
        "shared",
        &[&format!("--cache-repo={host}/shared-cache")],
    ))
    .await;
    assert_eq!(tags(&format!("{host}/shared-cache")).len(), 2);

    // Per-architecture repositories.
    let output = build(&multi("suffixed", &["--arch-cache-repo-suffix=-${ARCH}"])).await;
    let amd64 = tags(&format!("{host}/multi/cache-amd64"));
    let arm64 = tags(&format!("{host}/multi/cache-arm64"));
    assert_eq!((amd64.len(), arm64.len()), (1, 1), "{}", stderr(&output));
    assert_ne!(amd64, arm64, "one key for two platforms");
    assert!(tags(&format!("{host}/multi/cache")).is_empty());

    // Each platform hits in its own repository, and each child image
    // keeps its own platform.
    let output = build(&multi("again", &["--arch-cache-repo-suffix=-${ARCH}"])).await;
    let log = stderr(&output);
    // One final line per platform: `linux/arm64: sha256:… (1 cache hits, 0 cache misses)`.
    assert_eq!(count(&log, "1 cache hits, 0 cache misses)"), 2, "{log}");
    assert!(log.contains("linux/arm64: sha256:"), "{log}");
    for arch in ["amd64", "arm64"] {
        assert_eq!(
            layer_digests(&format!("{host}/multi:again"), Some(arch)),
            layer_digests(&format!("{host}/multi:suffixed"), Some(arch)),
        );
    }
    let arm64_config = skopeo_json(&[
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=false",
        "--override-arch=arm64",
        &format!("docker://{host}/multi:again"),
    ]);
    assert_eq!(arm64_config["architecture"], "arm64");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_layer_is_a_miss_and_is_pushed_again() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!("FROM {}\nRUN ({UNIQUE}) > /unique\n", fixtures.index),
        &[],
    );
    let host = registry.host();
    let run = |tag: &str| {
        vec![
            context_arg(ctx.path()),
            format!("--destination={host}/ttl:{tag}"),
            "--cache".to_string(),
            "--cache-ttl=1s".to_string(),
        ]
    };
    build(&run("1")).await;
    let [tag] = tags(&format!("{host}/ttl/cache")).try_into().unwrap();
    let cache_image = format!("{host}/ttl/cache:{tag}");
    let first_created = config_of(&cache_image)["created"].clone();
    // Older than the TTL (whole seconds) by the next build.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let log = stderr(&build(&run("2")).await);
    assert!(log.contains("is older than --cache-ttl=1s"), "{log}");
    assert!(log.contains("0 cache hits, 1 cache misses"), "{log}");
    assert_ne!(
        files(&format!("{host}/ttl:1"))["unique"],
        files(&format!("{host}/ttl:2"))["unique"],
        "the RUN did not run again"
    );
    // Pushed again under the same key, with a new creation time.
    assert_eq!(tags(&format!("{host}/ttl/cache")), vec![tag]);
    assert_ne!(config_of(&cache_image)["created"], first_created);
    // Within the (default) TTL it is a hit.
    let args: Vec<String> = run("3")
        .into_iter()
        .filter(|a| a != "--cache-ttl=1s")
        .collect();
    let log = stderr(&build(&args).await);
    assert!(log.contains("1 cache hits, 0 cache misses"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cache_repository_without_push_rights_is_a_warning() {
    let (registry, fixtures) = setup().await;
    // The cache lives on a registry kiln has no credentials for.
    let locked = TestRegistry::start_with_auth("owner", "s3cret");
    let ctx = context(
        &format!(
            "FROM {}\nRUN echo a > /a\nRUN echo b > /b\nRUN echo c > /c\n",
            fixtures.index
        ),
        &[],
    );
    let image = format!("{}/locked:1", registry.host());
    let output = kiln(&[
        context_arg(ctx.path()),
        format!("--destination={image}"),
        "--cache".to_string(),
        format!("--cache-repo={}/cache", locked.host()),
    ])
    .await;
    assert_success(&output);
    let log = stderr(&output);
    assert_eq!(
        count(
            &log,
            &format!("cannot read the cache repository {}/cache", locked.host())
        ),
        1,
        "{log}"
    );
    assert_eq!(count(&log, "its layers are not cached"), 1, "{log}");
    assert!(log.contains("401"), "{log}");
    assert!(log.contains("0 cache hits, 3 cache misses"), "{log}");
    assert_eq!(files(&image)["c"].2, "c\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_cached_layer_is_an_error_and_never_unpacked() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!(
            "FROM {}\nRUN echo cached > /cached\nARG V\nRUN cat /cached > /v$V\n",
            fixtures.index
        ),
        &[],
    );
    let host = registry.host();
    let run = |v: &str| {
        vec![
            context_arg(ctx.path()),
            format!("--destination={host}/corrupt:{v}"),
            "--cache".to_string(),
            format!("--build-arg=V={v}"),
        ]
    };
    build(&run("1")).await;
    let cached_layer = layer_digests(&format!("{host}/corrupt:1"), None)[1].clone();
    let blob = registry.blob_path(&cached_layer);
    let size = std::fs::metadata(&blob).unwrap().len();
    std::fs::write(&blob, vec![0u8; size as usize]).unwrap();

    // The first RUN hits; the second needs its files, so the cached layer
    // is downloaded, fails its digest, and the build stops.
    let output = kiln(&run("2")).await;
    assert!(!output.status.success(), "{}", stderr(&output));
    let log = stderr(&output);
    assert!(
        log.contains(&format!("{cached_layer} from {host}/corrupt/cache"))
            && log.contains("does not match its digest"),
        "{log}"
    );
    assert!(!log.contains("cache hits,"), "{log}");
    assert!(tags(&format!("{host}/corrupt")) == vec!["1".to_string()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_dir_keeps_base_layers_so_a_rebuild_downloads_none() {
    let registry = TestRegistry::start();
    let proxy = FaultProxy::recording(registry.host()).await;
    let fixtures = fixtures::push_busybox_index(registry.host()).await;
    let cache_dir = tempfile::tempdir().unwrap();
    let ctx = context(
        &format!(
            "FROM {}/busybox:latest\nARG V\nRUN echo $V > /v\n",
            proxy.host()
        ),
        &[],
    );
    let run = |v: &str| {
        vec![
            context_arg(ctx.path()),
            format!("--destination={}/dir:{v}", proxy.host()),
            format!("--cache-dir={}", cache_dir.path().display()),
            format!("--build-arg=V={v}"),
        ]
    };
    let base_layer_get = format!("/blobs/{}", fixtures.amd64.layer_digest);
    let base_downloads = |from: usize| {
        proxy.requests()[from..]
            .iter()
            .filter(|r| r.starts_with("GET") && r.contains(&base_layer_get))
            .count()
    };
    build(&run("1")).await;
    assert_eq!(base_downloads(0), 1);
    let kept = cache_dir
        .path()
        .join("sha256")
        .join(fixtures.amd64.layer_digest.trim_start_matches("sha256:"));
    assert!(kept.is_file(), "{} not kept", kept.display());

    // The RUN changes, so the base is unpacked again: from the cache dir.
    let before = proxy.requests().len();
    build(&run("2")).await;
    assert_eq!(
        base_downloads(before),
        0,
        "{:?}",
        &proxy.requests()[before..]
    );
    assert_eq!(files(&format!("{}/dir:2", registry.host()))["v"].2, "2\n");

    // A blob that no longer matches its name is dropped and fetched again.
    std::fs::write(&kept, b"not the layer").unwrap();
    let before = proxy.requests().len();
    let log = stderr(&build(&run("3")).await);
    assert!(log.contains("hashes to"), "{log}");
    assert_eq!(base_downloads(before), 1);
    assert_eq!(files(&format!("{}/dir:3", registry.host()))["v"].2, "3\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn cold_and_warm_builds_of_a_run_heavy_dockerfile() {
    let (registry, fixtures) = setup().await;
    let mut dockerfile = format!("FROM {}\n", fixtures.index);
    for step in 0..8 {
        dockerfile.push_str(&format!(
            "RUN mkdir -p /steps && for i in 1 2 3 4 5 6 7 8 9 10; do echo {step}-$i > /steps/{step}-$i; done && sleep 0.2\n"
        ));
    }
    let ctx = context(&dockerfile, &[]);
    let run = |tag: &str| {
        vec![
            context_arg(ctx.path()),
            format!("--destination={}/bench:{tag}", registry.host()),
            "--cache".to_string(),
        ]
    };
    let start = Instant::now();
    build(&run("cold")).await;
    let cold = start.elapsed();
    let start = Instant::now();
    let log = stderr(&build(&run("warm")).await);
    let warm = start.elapsed();
    assert!(log.contains("8 cache hits, 0 cache misses"), "{log}");
    eprintln!(
        "cache bench: cold {:.2}s, warm {:.2}s, warm/cold = {:.2}",
        cold.as_secs_f64(),
        warm.as_secs_f64(),
        warm.as_secs_f64() / cold.as_secs_f64()
    );
    // Eight RUNs sleep 1.6 s in all; a warm build runs none of them.
    assert!(
        warm < cold,
        "warm {warm:?} is not faster than cold {cold:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_for_the_cache_repository_are_used() {
    let (registry, fixtures) = setup().await;
    let locked = TestRegistry::start_with_auth("owner", "s3cret");
    let config_dir = tempfile::tempdir().unwrap();
    support::write_docker_config(config_dir.path(), locked.host(), "owner", "s3cret");
    let ctx = context(&format!("FROM {}\nRUN echo a > /a\n", fixtures.index), &[]);
    let args = |tag: &str| {
        vec![
            context_arg(ctx.path()),
            format!("--destination={}/authed:{tag}", registry.host()),
            "--cache".to_string(),
            format!("--cache-repo={}/cache", locked.host()),
        ]
    };
    let output = kiln_with_config(&args("1"), Some(config_dir.path())).await;
    assert_success(&output);
    let output = kiln_with_config(&args("2"), Some(config_dir.path())).await;
    assert_success(&output);
    let log = stderr(&output);
    assert!(log.contains("1 cache hits, 0 cache misses"), "{log}");
    assert!(!log.contains("WARN"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stages_built_from_cached_layers_and_empty_results_are_cached() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!(
            "FROM {} AS builder\nRUN mkdir /out && ({UNIQUE}) > /out/unique\nRUN true\n\
             FROM builder AS tested\nRUN test -s /out/unique\n\
             FROM {}\nCOPY --from=tested /out/unique /unique\nRUN cat /unique > /copied\n",
            fixtures.index, fixtures.index
        ),
        &[],
    );
    let host = registry.host();
    let run = |tag: &str, extra: &[&str]| {
        let mut args = vec![
            context_arg(ctx.path()),
            format!("--destination={host}/stages:{tag}"),
            "--cache".to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let log = stderr(&build(&run("1", &[])).await);
    assert!(log.contains("0 cache hits, 4 cache misses"), "{log}");
    // `RUN true` and `RUN test …` change no files: cache images without a
    // layer, hits all the same. The COPY --from is keyed by the stage it
    // reads, so the RUN after it hits although the COPY ran.
    let log = stderr(&build(&run("2", &[])).await);
    assert!(log.contains("4 cache hits, 0 cache misses"), "{log}");
    // The COPY --from runs and needs the builder's files: its base and
    // cached layer are unpacked for it, once.
    assert_eq!(count(&log, "unpacking 2 layers"), 1, "{log}");
    let (one, two) = (
        files(&format!("{host}/stages:1")),
        files(&format!("{host}/stages:2")),
    );
    assert_eq!(one["unique"], two["unique"]);
    assert_eq!(one["copied"], two["copied"]);
    assert_eq!(one["copied"].2, one["unique"].2);

    // With --cache-copy-layers the COPY --from is cached too, and then no
    // stage needs any files: nothing is unpacked.
    let log = stderr(&build(&run("3", &["--cache-copy-layers"])).await);
    assert!(log.contains("4 cache hits, 1 cache misses"), "{log}");
    let log = stderr(&build(&run("4", &["--cache-copy-layers"])).await);
    assert!(log.contains("5 cache hits, 0 cache misses"), "{log}");
    assert!(!log.contains("unpacking"), "{log}");
    assert_eq!(files(&format!("{host}/stages:4"))["unique"], one["unique"]);
    let history = config_of(&format!("{host}/stages:2"))["history"].clone();
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["created_by"] != "RUN true"),
        "the final stage has no history of the builder: {history}"
    );

    // Another layer compression is another key: a zstd layer never lands
    // in a gzip build or the other way round.
    let log = stderr(&build(&run("5", &["--compression=zstd"])).await);
    assert!(log.contains("0 cache hits, 4 cache misses"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_arm64_build_never_receives_the_amd64_layer_of_the_same_run() {
    let arm64: kiln_builder::platform::Platform = "linux/arm64".parse().unwrap();
    if let Err(err) = kiln_builder::run::emulation::find_interpreter(
        std::path::Path::new(kiln_builder::run::emulation::BINFMT_MISC_DIR),
        &arm64,
    ) {
        panic!(
            "this test runs arm64 code under qemu-user and the kernel cannot: {err}. \
             scripts/setup.sh registers qemu-user-static (as root)"
        );
    }
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!(
            "FROM {}\nRUN uname -m > /arch && ({UNIQUE}) > /unique\n",
            fixtures.index
        ),
        &[],
    );
    let host = registry.host();
    // One repository for both platforms: only the keys keep them apart.
    let run = |tag: &str| {
        vec![
            context_arg(ctx.path()),
            format!("--destination={host}/arch:{tag}"),
            "--multi-platform=linux/amd64,linux/arm64".to_string(),
            "--publish-index".to_string(),
            "--emulation=qemu".to_string(),
            "--cache".to_string(),
            format!("--cache-repo={host}/shared-cache"),
        ]
    };
    build(&run("1")).await;
    assert_eq!(tags(&format!("{host}/shared-cache")).len(), 2);
    let log = stderr(&build(&run("2")).await);
    // One final line per platform: `linux/arm64: sha256:… (1 cache hits, 0 cache misses)`.
    assert_eq!(count(&log, "1 cache hits, 0 cache misses)"), 2, "{log}");
    assert!(log.contains("linux/arm64: sha256:"), "{log}");
    let file = |tag: &str, arch: &str, path: &str| {
        support::kiln::layers_for(&format!("{host}/arch:{tag}"), Some(arch))
            .into_iter()
            .rev()
            .find_map(|layer| layer.get(path).map(|entry| entry.4.clone()))
            .unwrap_or_else(|| panic!("{path} not in {tag} for {arch}"))
    };
    assert_eq!(file("2", "amd64", "arch"), "x86_64\n");
    assert_eq!(file("2", "arm64", "arch"), "aarch64\n");
    for arch in ["amd64", "arm64"] {
        assert_eq!(
            file("1", arch, "unique"),
            file("2", arch, "unique"),
            "{arch}"
        );
    }
    assert_ne!(file("2", "amd64", "unique"), file("2", "arm64", "unique"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_readable_cache_repository_that_refuses_pushes_is_one_warning() {
    let (registry, fixtures) = setup().await;
    // Reads pass; every upload or manifest push into a cache repository is
    // answered 403 DENIED, as for a user with pull rights only.
    let proxy = FaultProxy::denying(registry.host(), |method, path| {
        path.contains("/cache/")
            && (support::proxy::blob_upload(method, path)
                || support::proxy::manifest_put(method, path))
    })
    .await;
    let ctx = context(
        &format!(
            "FROM {}\nRUN echo a > /a\nRUN echo b > /b\nRUN echo c > /c\n",
            fixtures.index
        ),
        &[],
    );
    let run = |tag: &str| {
        vec![
            context_arg(ctx.path()),
            format!("--destination={}/readonly:{tag}", registry.host()),
            "--cache".to_string(),
            format!("--cache-repo={}/app/cache", proxy.host()),
        ]
    };
    for tag in ["1", "2"] {
        let output = kiln(&run(tag)).await;
        assert_success(&output);
        let log = stderr(&output);
        assert_eq!(count(&log, "its layers are not cached"), 1, "{log}");
        assert!(log.contains("403"), "{log}");
        assert!(!log.contains("cannot read the cache repository"), "{log}");
        // Nothing could be stored, so nothing is found the second time.
        assert!(log.contains("0 cache hits, 3 cache misses"), "{log}");
        assert_eq!(
            files(&format!("{}/readonly:{tag}", registry.host()))["c"].2,
            "c\n"
        );
    }
    assert!(tags(&format!("{}/app/cache", registry.host())).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_run_layers_false_leaves_run_alone() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!("FROM {}\nRUN ({UNIQUE}) > /unique\n", fixtures.index),
        &[],
    );
    let host = registry.host();
    let run = |tag: &str| {
        vec![
            context_arg(ctx.path()),
            format!("--destination={host}/norun:{tag}"),
            "--cache".to_string(),
            "--cache-run-layers=false".to_string(),
        ]
    };
    for tag in ["1", "2"] {
        let log = stderr(&build(&run(tag)).await);
        assert!(log.contains("0 cache hits, 0 cache misses"), "{log}");
        assert!(!log.contains("cache miss for"), "{log}");
    }
    assert!(tags(&format!("{host}/norun/cache")).is_empty());
    assert_ne!(
        files(&format!("{host}/norun:1"))["unique"],
        files(&format!("{host}/norun:2"))["unique"]
    );
}

/// `--cache-dir` keeps the base image itself (manifest, config, what its
/// reference resolved to): a base pinned by digest is not asked of the
/// registry again, and a tag whose registry cannot be reached is served
/// from the cache directory with a warning.
#[tokio::test(flavor = "multi_thread")]
async fn cache_dir_keeps_base_images_for_when_their_registry_is_away() {
    let registry = TestRegistry::start();
    // The base's registry is reached through the proxy; the destination
    // is the registry itself, so it stays reachable when the proxy goes.
    let proxy = FaultProxy::recording(registry.host()).await;
    let fixtures = fixtures::push_busybox_index(registry.host()).await;
    let cache_dir = tempfile::tempdir().unwrap();
    let by_tag = format!("{}/busybox:latest", proxy.host());
    let by_digest = format!("{}/busybox@{}", proxy.host(), fixtures.index_digest);
    let ctx = context("ARG BASE\nFROM $BASE\nARG V\nRUN echo $V > /v\n", &[]);
    let run = |base: &str, v: &str| {
        vec![
            context_arg(ctx.path()),
            format!("--destination={}/kept:{v}", registry.host()),
            format!("--cache-dir={}", cache_dir.path().display()),
            format!("--build-arg=BASE={base}"),
            format!("--build-arg=V={v}"),
        ]
    };
    let manifest_gets = |from: usize| {
        proxy.requests()[from..]
            .iter()
            .filter(|r| r.starts_with("GET") && r.contains("/manifests/"))
            .count()
    };
    build(&run(&by_tag, "1")).await;
    build(&run(&by_digest, "2")).await;
    assert!(manifest_gets(0) >= 2);

    // Pinned by digest: the kept copy is that content, no registry needed.
    let before = proxy.requests().len();
    let log = stderr(&build(&run(&by_digest, "3")).await);
    assert!(log.contains("from --cache-dir"), "{log}");
    assert_eq!(
        manifest_gets(before),
        0,
        "{:?}",
        &proxy.requests()[before..]
    );

    // The base's registry goes away: the tag is served from the cache dir.
    drop(proxy);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = stderr(&build(&run(&by_tag, "4")).await);
    assert!(
        log.contains("cannot reach") && log.contains("as kept in --cache-dir"),
        "{log}"
    );
    let files = files(&format!("{}/kept:4", registry.host()));
    assert_eq!(files["v"].2, "4\n");
    assert!(
        files.contains_key("bin/busybox"),
        "the base's files are there"
    );
    let config = config_of(&format!("{}/kept:4", registry.host()));
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        fixtures.amd64.diff_id.as_str()
    );

    // Without a kept copy, an unreachable registry is still an error.
    let empty = tempfile::tempdir().unwrap();
    let output = kiln(&[
        context_arg(ctx.path()),
        "--no-push".to_string(),
        format!("--cache-dir={}", empty.path().display()),
        format!("--build-arg=BASE={by_tag}"),
    ])
    .await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("cannot reach"),
        "{}",
        stderr(&output)
    );
}

/// `WORKDIR /` creates nothing but is a link of the key chain: a RUN after
/// it must not hit the layer the same RUN made in another directory.
#[tokio::test(flavor = "multi_thread")]
async fn workdir_slash_changes_the_keys_after_it() {
    let (registry, fixtures) = setup().await;
    let build_with = |dockerfile: String, tag: &'static str| {
        let ctx = context(&dockerfile, &[]);
        let host = registry.host().to_string();
        async move {
            let output = build(&[
                context_arg(ctx.path()),
                format!("--destination={host}/slash:{tag}"),
                format!("--cache-repo={host}/slash/cache"),
                "--cache".to_string(),
            ])
            .await;
            (stderr(&output), files(&format!("{host}/slash:{tag}")))
        }
    };
    let base = &fixtures.index;
    let (_, first) = build_with(
        format!("FROM {base}\nWORKDIR /app\nRUN pwd > /where\n"),
        "1",
    )
    .await;
    assert_eq!(first["where"].2, "/app\n");
    let (log, second) = build_with(
        format!("FROM {base}\nWORKDIR /app\nWORKDIR /\nRUN pwd > /where\n"),
        "2",
    )
    .await;
    assert_eq!(count(&log, "cache hit for WORKDIR /app"), 1, "{log}");
    assert_eq!(count(&log, "cache miss for RUN pwd"), 1, "{log}");
    assert_eq!(second["where"].2, "/\n");
}
