//! `--provenance`: the SLSA provenance kiln attaches to what it pushes, read
//! back from real registries — Debian's docker-registry 2.8, which has no
//! referrers API (so the tag schema's `sha256-<hex>` index), and a registry
//! with the OCI 1.1 referrers API (go-containerregistry's, built by
//! `scripts/tools.sh e2e-tools`).

// A test fails by panicking with a message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Stdio;

use serde_json::Value;
use support::fixtures;
use support::kiln::{assert_success, context, context_arg, kiln, skopeo, stderr};
use support::tools::{self, http_get};
use support::{FaultProxy, TestRegistry};
use tokio::io::{AsyncBufReadExt, BufReader};

const IN_TOTO: &str = "application/vnd.in-toto+json";
const SLSA_V1: &str = "https://slsa.dev/provenance/v1";

/// A loopback registry with the referrers API; stopped when dropped.
struct ReferrersRegistry {
    host: String,
    _child: tokio::process::Child,
}

impl ReferrersRegistry {
    async fn start() -> ReferrersRegistry {
        let bin = tools::tool_dir("e2e-tools").join("oci-registry");
        let mut child = tokio::process::Command::new(bin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let host = BufReader::new(stdout)
            .lines()
            .next_line()
            .await
            .unwrap()
            .unwrap();
        ReferrersRegistry {
            host,
            _child: child,
        }
    }
}

async fn get_json(url: &str, accept: &str) -> Value {
    let (status, body) = http_get(url, accept).await;
    assert_eq!(status, 200, "GET {url}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// The manifest digest of `reference`, as the registry stores it.
fn manifest_digest(reference: &str) -> String {
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]);
    kiln_builder::image::sha256_digest(&raw)
}

/// The tag schema's index of the referrers of `digest` in `repository`.
fn fallback_index(host: &str, repository: &str, digest: &str) -> Value {
    let tag = digest.replacen(':', "-", 1);
    serde_json::from_slice(&skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{host}/{repository}:{tag}"),
    ]))
    .unwrap()
}

/// The statement an artifact manifest of `repository` carries.
async fn statement_of(host: &str, repository: &str, artifact: &str) -> (Value, String) {
    let manifest = get_json(
        &format!("http://{host}/v2/{repository}/manifests/{artifact}"),
        "application/vnd.oci.image.manifest.v1+json",
    )
    .await;
    assert_eq!(manifest["artifactType"], IN_TOTO, "{manifest}");
    assert_eq!(manifest["layers"][0]["mediaType"], IN_TOTO, "{manifest}");
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let (status, bytes) = http_get(
        &format!("http://{host}/v2/{repository}/blobs/{layer}"),
        "*/*",
    )
    .await;
    assert_eq!(status, 200);
    let text = String::from_utf8(bytes).unwrap();
    (manifest, text)
}

#[tokio::test(flavor = "multi_thread")]
async fn provenance_goes_to_the_tag_schema_where_the_registry_has_no_referrers_api() {
    let registry = TestRegistry::start();
    let fixtures = fixtures::push_busybox_index(registry.host()).await;
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("npmrc");
    std::fs::write(&secret_file, "SECRET-FILE-CONTENT-4711").unwrap();
    let ctx = context(
        &format!(
            "FROM {}\nARG VERSION\nARG NPM_TOKEN\nRUN --mount=type=secret,id=npm test -s /run/secrets/npm && echo $VERSION > /version\n",
            fixtures.index
        ),
        &[],
    );
    let image = format!("{}/app:1", registry.host());
    let output = kiln(&[
        context_arg(ctx.path()),
        format!("--destination={image}"),
        "--custom-platform=linux/amd64".into(),
        "--provenance=max".into(),
        "--build-arg=VERSION=1.2.3".into(),
        "--build-arg=NPM_TOKEN=tok-VALUE-0815".into(),
        format!("--secret=id=npm,src={}", secret_file.display()),
    ])
    .await;
    assert_success(&output);
    let log = stderr(&output);
    assert!(
        log.contains("tag schema: the registry has no referrers API"),
        "{log}"
    );

    let digest = manifest_digest(&image);
    let index = fallback_index(registry.host(), "app", &digest);
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{index}");
    assert_eq!(entries[0]["artifactType"], IN_TOTO);
    assert_eq!(
        entries[0]["annotations"]["in-toto.io/predicate-type"],
        SLSA_V1
    );
    let artifact = entries[0]["digest"].as_str().unwrap();
    let (manifest, text) = statement_of(registry.host(), "app", artifact).await;
    assert_eq!(manifest["subject"]["digest"], digest.as_str());

    for leaked in ["SECRET-FILE-CONTENT-4711", "tok-VALUE-0815"] {
        assert!(!text.contains(leaked), "{leaked} in the provenance: {text}");
    }
    let statement: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(statement["predicateType"], SLSA_V1);
    assert_eq!(
        statement["subject"][0]["name"],
        format!("{}/app", registry.host())
    );
    assert_eq!(
        statement["subject"][0]["digest"]["sha256"],
        digest.trim_start_matches("sha256:")
    );
    let definition = &statement["predicate"]["buildDefinition"];
    assert_eq!(definition["externalParameters"]["platform"], "linux/amd64");
    assert_eq!(
        definition["externalParameters"]["buildArgs"]["VERSION"],
        "1.2.3"
    );
    assert!(definition["externalParameters"]["buildArgs"]["NPM_TOKEN"].is_string());
    let dockerfile = std::fs::read(ctx.path().join("Dockerfile")).unwrap();
    let dependencies = definition["resolvedDependencies"].as_array().unwrap();
    assert_eq!(
        dependencies[0]["digest"]["sha256"],
        kiln_builder::image::sha256_digest(&dockerfile).trim_start_matches("sha256:")
    );
    let base = dependencies
        .iter()
        .find(|d| d["uri"] == format!("pkg:docker/{}", fixtures.index))
        .unwrap_or_else(|| panic!("the base is a dependency: {statement}"));
    assert_eq!(
        base["digest"]["sha256"],
        fixtures.amd64.manifest_digest.trim_start_matches("sha256:")
    );

    // Two reproducible builds give the same image: the tag schema's index
    // keeps the referrer already listed and adds the second build's (a
    // different statement: another mode).
    let reproducible = format!("{}/app:2", registry.host());
    for mode in ["min", "max"] {
        let output = kiln(&[
            context_arg(ctx.path()),
            format!("--destination={reproducible}"),
            "--custom-platform=linux/amd64".into(),
            format!("--provenance={mode}"),
            format!("--secret=id=npm,src={}", secret_file.display()),
            "--reproducible".into(),
        ])
        .await;
        assert_success(&output);
    }
    let digest = manifest_digest(&reproducible);
    let index = fallback_index(registry.host(), "app", &digest);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");
}

#[tokio::test(flavor = "multi_thread")]
async fn provenance_goes_through_the_referrers_api_where_the_registry_has_one() {
    let registry = ReferrersRegistry::start().await;
    let fixtures = fixtures::push_busybox_index(&registry.host).await;
    let ctx = context(
        &format!("FROM {}\nCOPY a.txt /a.txt\n", fixtures.index),
        &[("a.txt", "a")],
    );
    let image = format!("{}/app:1", registry.host);
    let output = kiln(&[
        context_arg(ctx.path()),
        format!("--destination={image}"),
        "--custom-platform=linux/amd64".into(),
        "--provenance=min".into(),
        "--build-arg=VERSION=9.9".into(),
    ])
    .await;
    assert_success(&output);
    let log = stderr(&output);
    assert!(log.contains("(referrers API)"), "{log}");

    let digest = manifest_digest(&image);
    let referrers = get_json(
        &format!("http://{}/v2/app/referrers/{digest}", registry.host),
        "application/vnd.oci.image.index.v1+json",
    )
    .await;
    let entries = referrers["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{referrers}");
    assert_eq!(
        entries[0]["annotations"]["in-toto.io/predicate-type"],
        SLSA_V1
    );
    let (manifest, text) = statement_of(
        &registry.host,
        "app",
        entries[0]["digest"].as_str().unwrap(),
    )
    .await;
    assert_eq!(manifest["subject"]["digest"], digest.as_str());
    let statement: Value = serde_json::from_str(&text).unwrap();
    assert!(
        statement["predicate"]["buildDefinition"]["externalParameters"]
            .get("buildArgs")
            .is_none(),
        "min records no build-argument values: {statement}"
    );
    // No tag schema where the API is there.
    let tags = get_json(&format!("http://{}/v2/app/tags/list", registry.host), "*/*").await;
    assert_eq!(tags["tags"], serde_json::json!(["1"]), "{tags}");

    // BuildKit's layout finds the documents through the API too: a
    // one-platform index with the image and its attestation manifest.
    let indexed = format!("{}/app:bk", registry.host);
    let output = kiln(&[
        context_arg(ctx.path()),
        format!("--destination={indexed}"),
        "--custom-platform=linux/amd64".into(),
        "--provenance=min".into(),
        "--attest-layout=buildkit".into(),
    ])
    .await;
    assert_success(&output);
    let index = get_json(
        &format!("http://{}/v2/app/manifests/bk", registry.host),
        "application/vnd.oci.image.index.v1+json",
    )
    .await;
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{index}");
    assert_eq!(entries[0]["platform"]["architecture"], "amd64", "{index}");
    assert_eq!(
        entries[1]["annotations"]["vnd.docker.reference.digest"], entries[0]["digest"],
        "{index}"
    );
    let attestation = get_json(
        &format!(
            "http://{}/v2/app/manifests/{}",
            registry.host,
            entries[1]["digest"].as_str().unwrap()
        ),
        "application/vnd.oci.image.manifest.v1+json",
    )
    .await;
    assert_eq!(
        attestation["layers"][0]["annotations"]["in-toto.io/predicate-type"], SLSA_V1,
        "{attestation}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_provenance_mode_is_refused_before_building() {
    let ctx = context("FROM scratch\n", &[]);
    let output = kiln(&[
        context_arg(ctx.path()),
        "--no-push".into(),
        "--provenance=full".into(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(
            "invalid --provenance \"full\": expected min, max, mode=min, mode=max, true or false"
        ),
        "{}",
        stderr(&output)
    );
}

/// A registry that refuses the artifact manifest: a warning naming it, the
/// image published all the same, and the statement kept in the OCI layout
/// the build writes.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_provenance_is_a_warning_and_lands_in_the_oci_layout() {
    let registry = TestRegistry::start();
    let fixtures = fixtures::push_busybox_index(registry.host()).await;
    // The image goes by tag; the artifact manifest by digest.
    let proxy = FaultProxy::denying(registry.host(), |method, path| {
        method == "PUT" && path.contains("/manifests/sha256:")
    })
    .await;
    let ctx = context(
        &format!("FROM {}\nCOPY a.txt /a.txt\n", fixtures.index),
        &[("a.txt", "a")],
    );
    let layout = tempfile::tempdir().unwrap();
    let image = format!("{}/app:1", proxy.host());
    let output = kiln(&[
        context_arg(ctx.path()),
        format!("--destination={image}"),
        "--custom-platform=linux/amd64".into(),
        "--provenance=min".into(),
        format!("--oci-layout-path={}", layout.path().display()),
    ])
    .await;
    assert_success(&output);
    let log = stderr(&output);
    assert!(
        log.contains(&format!(
            "{}/app: the SLSA provenance was not attached",
            proxy.host()
        )),
        "{log}"
    );
    assert!(log.contains("the image is published without it"), "{log}");
    assert!(
        log.contains("wrote the SLSA provenance to the OCI layout"),
        "{log}"
    );
    let digest = manifest_digest(&format!("{}/app:1", registry.host()));

    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.path().join("index.json")).unwrap()).unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2, "{index}");
    assert_eq!(manifests[0]["digest"], digest.as_str(), "the image first");
    let artifact = manifests[1]["digest"].as_str().unwrap();
    let blob = |digest: &str| {
        let hex = digest.trim_start_matches("sha256:");
        std::fs::read(layout.path().join("blobs/sha256").join(hex)).unwrap()
    };
    let manifest: Value = serde_json::from_slice(&blob(artifact)).unwrap();
    assert_eq!(manifest["artifactType"], IN_TOTO);
    assert_eq!(manifest["subject"]["digest"], digest.as_str());
    let statement: Value =
        serde_json::from_slice(&blob(manifest["layers"][0]["digest"].as_str().unwrap())).unwrap();
    assert_eq!(statement["predicateType"], SLSA_V1);
}

/// A context directory in a git repository: the provenance names the
/// commit (SLSA's `gitCommit`) and says that files not committed are not
/// covered by it.
#[tokio::test(flavor = "multi_thread")]
async fn a_local_context_in_git_records_its_commit() {
    let registry = TestRegistry::start();
    let ctx = context("FROM scratch\nCOPY Dockerfile /\n", &[]);
    let git = |args: &[&str]| {
        let output = std::process::Command::new("git")
            .args(args)
            .current_dir(ctx.path())
            .env("GIT_AUTHOR_NAME", "kiln")
            .env("GIT_AUTHOR_EMAIL", "kiln@example.invalid")
            .env("GIT_COMMITTER_NAME", "kiln")
            .env("GIT_COMMITTER_EMAIL", "kiln@example.invalid")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", ctx.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "git {args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "first"]);
    let head = git(&["rev-parse", "HEAD"]);

    let image = format!("{}/git:1", registry.host());
    let output = kiln(&[
        context_arg(ctx.path()),
        format!("--destination={image}"),
        "--custom-platform=linux/amd64".into(),
        "--provenance=min".into(),
    ])
    .await;
    assert_success(&output);
    let digest = manifest_digest(&image);
    let index = fallback_index(registry.host(), "git", &digest);
    let artifact = index["manifests"][0]["digest"].as_str().unwrap();
    let (_, text) = statement_of(registry.host(), "git", artifact).await;
    let statement: Value = serde_json::from_str(&text).unwrap();
    let dependencies = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    let context = dependencies
        .iter()
        .find(|d| d["digest"]["gitCommit"].is_string())
        .unwrap_or_else(|| panic!("no commit among the dependencies: {statement}"));
    assert_eq!(context["digest"]["gitCommit"], head.as_str());
    assert!(
        context["annotations"]["kiln.dev/context"]
            .as_str()
            .unwrap()
            .contains("not committed"),
        "{context}"
    );
}

/// `--attest-layout=buildkit`: the index also lists, per platform, BuildKit's
/// `unknown/unknown` attestation manifest holding the provenance and the
/// SBOM as in-toto statements about that platform's image; clients that
/// pull by platform still get the image. The ci driver's index job builds
/// the same index from what the platform builds attached.
#[tokio::test(flavor = "multi_thread")]
async fn the_buildkit_layout_lists_the_documents_in_the_index() {
    let registry = TestRegistry::start();
    let host = registry.host();
    let ctx = context("FROM scratch\nCOPY Dockerfile /\n", &[]);
    let image = format!("{host}/bk:1");
    let output = kiln(&[
        context_arg(ctx.path()),
        format!("--destination={image}"),
        "--platform=linux/amd64,linux/arm64".into(),
        "--provenance=min".into(),
        "--sbom".into(),
        "--attest-layout=buildkit".into(),
    ])
    .await;
    assert_success(&output);

    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]);
    let index: Value = serde_json::from_slice(&raw).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 4, "{index}");
    let images: Vec<&Value> = entries
        .iter()
        .filter(|e| e["platform"]["os"] == "linux")
        .collect();
    assert_eq!(images.len(), 2, "{index}");
    for image_entry in &images {
        let child = image_entry["digest"].as_str().unwrap();
        let attestation = entries
            .iter()
            .find(|e| e["annotations"]["vnd.docker.reference.digest"] == child)
            .unwrap_or_else(|| panic!("no attestation manifest for {child}: {index}"));
        assert_eq!(
            attestation["annotations"]["vnd.docker.reference.type"],
            "attestation-manifest"
        );
        assert_eq!(
            attestation["platform"],
            serde_json::json!({"architecture": "unknown", "os": "unknown"})
        );
        let manifest = get_json(
            &format!(
                "http://{host}/v2/bk/manifests/{}",
                attestation["digest"].as_str().unwrap()
            ),
            "application/vnd.oci.image.manifest.v1+json",
        )
        .await;
        let layers = manifest["layers"].as_array().unwrap();
        let mut predicate_types = Vec::new();
        for layer in layers {
            assert_eq!(layer["mediaType"], IN_TOTO, "{manifest}");
            let (status, bytes) = http_get(
                &format!(
                    "http://{host}/v2/bk/blobs/{}",
                    layer["digest"].as_str().unwrap()
                ),
                "*/*",
            )
            .await;
            assert_eq!(status, 200);
            let statement: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(
                statement["predicateType"],
                layer["annotations"]["in-toto.io/predicate-type"]
            );
            assert_eq!(
                statement["subject"][0]["digest"]["sha256"],
                child.trim_start_matches("sha256:"),
                "{statement}"
            );
            predicate_types.push(statement["predicateType"].as_str().unwrap().to_string());
        }
        predicate_types.sort();
        assert_eq!(predicate_types, [SLSA_V1, "https://spdx.dev/Document"]);
    }
    // A client choosing by platform gets the image, not an attestation.
    for arch in ["amd64", "arm64"] {
        let chosen: Value = serde_json::from_slice(&skopeo(&[
            "--override-os=linux",
            &format!("--override-arch={arch}"),
            "inspect",
            "--tls-verify=false",
            &format!("docker://{image}"),
        ]))
        .unwrap();
        assert_eq!(chosen["Architecture"], arch, "{chosen}");
        assert_eq!(
            chosen["Layers"].as_array().map(Vec::len),
            Some(1),
            "{chosen}"
        );
    }

    // The ci driver's index job, from the digests alone: the same index.
    let digests = tempfile::tempdir().unwrap();
    for image_entry in &images {
        let arch = image_entry["platform"]["architecture"].as_str().unwrap();
        std::fs::write(
            digests.path().join(format!("linux-{arch}.digest")),
            image_entry["digest"].as_str().unwrap(),
        )
        .unwrap();
    }
    let ci_image = format!("{host}/bk:ci");
    let output = kiln(&[
        format!("--destination={ci_image}"),
        "--platform=linux/amd64,linux/arm64".into(),
        "--driver=ci".into(),
        format!("--digests-from={}", digests.path().display()),
        "--attest-layout=buildkit".into(),
    ])
    .await;
    assert_success(&output);
    let ci_raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{ci_image}"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&ci_raw),
        String::from_utf8_lossy(&raw),
        "the ci driver's index differs from the local driver's"
    );
}
