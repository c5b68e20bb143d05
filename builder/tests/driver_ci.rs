//! The ci driver (`--driver=ci`) against a real registry (Debian's
//! docker-registry on loopback): per-platform images named by digest
//! files are checked and published as one index, read back with skopeo;
//! the refusals users meet; and the seed guides' CI flow as a shell script
//! run with the kiln binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kiln_builder::cli::BuildOptions;
use kiln_builder::drivers::ci::run_ci;
use serde_json::{Value, json};
use support::TestRegistry;
use support::fixtures::{self, Fixtures};
use support::kiln::skopeo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn setup() -> (TestRegistry, Fixtures) {
    let registry = TestRegistry::start();
    let fixtures = fixtures::push_busybox_index(registry.host()).await;
    (registry, fixtures)
}

/// Options as the CLI makes them from `args`, then the multi-platform
/// fields the CLI does not accept yet set directly.
fn ci_options(
    args: &[&str],
    platforms: &str,
    digests_from: &Path,
    annotations: &[(&str, &str)],
) -> BuildOptions {
    let mut all = vec!["kiln"];
    all.extend_from_slice(args);
    let parsed = <kiln_builder::cli::Args as clap::Parser>::try_parse_from(all).unwrap();
    let mut options = parsed.into_options_with_env(&|_| None).unwrap();
    options.platforms = kiln_builder::platform::parse_list(platforms).unwrap();
    options.multi_platform.driver = kiln_builder::options::Driver::Ci;
    options.multi_platform.publish_index = true;
    options.multi_platform.digests_from = Some(digests_from.to_path_buf());
    options.multi_platform.index_annotations = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    options.registry = support::isolated_options();
    options
}

fn digests_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    dir
}

fn raw(reference: &str) -> Vec<u8> {
    skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ])
}

fn inspect_arch(reference: &str, arch: &str) -> Value {
    let out = skopeo(&[
        "inspect",
        "--override-os",
        "linux",
        "--override-arch",
        arch,
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]);
    serde_json::from_slice(&out).unwrap()
}

/// The index JSON kiln must produce for these children, written out by
/// hand: compact, fixed key order, platforms as the normalised list says.
fn expected_index(
    media_type: &str,
    children: &[&fixtures::FixtureImage],
    annotations: &[(&str, &str)],
) -> String {
    let entries: Vec<String> = children
        .iter()
        .map(|c| {
            let platform = match c.platform.as_str() {
                "linux/amd64" => r#"{"architecture":"amd64","os":"linux"}"#,
                _ => r#"{"architecture":"arm64","os":"linux"}"#,
            };
            format!(
                r#"{{"mediaType":"{}","digest":"{}","size":{},"platform":{platform}}}"#,
                c.manifest_media_type,
                c.manifest_digest,
                c.manifest_bytes.len()
            )
        })
        .collect();
    let mut text = format!(
        r#"{{"schemaVersion":2,"mediaType":"{media_type}","manifests":[{}]"#,
        entries.join(",")
    );
    if !annotations.is_empty() {
        let notes: BTreeMap<&str, &str> = annotations.iter().copied().collect();
        text.push_str(&format!(
            r#","annotations":{}"#,
            serde_json::to_string(&notes).unwrap()
        ));
    }
    text.push('}');
    text
}

#[tokio::test]
async fn publishes_an_oci_index_in_platform_order() {
    let (registry, fx) = setup().await;
    let host = registry.host();
    let digests = digests_dir(&[
        (
            "linux-amd64.digest",
            &format!("{}\n", fx.amd64.manifest_digest),
        ),
        ("linux-arm64.digest", &fx.arm64.manifest_digest),
    ]);
    let out = tempfile::tempdir().unwrap();
    let annotations = [
        ("org.opencontainers.image.title", "app"),
        ("org.opencontainers.image.revision", "0123abc"),
    ];
    let first = format!("{host}/busybox:multi");
    let second = format!("{host}/busybox:multi-latest");
    let mut options = ci_options(
        &[
            &format!("--destination={first}"),
            &format!("--destination={second}"),
        ],
        // arm64 first: the index follows the platform list, not the files.
        "linux/arm64,linux/amd64",
        digests.path(),
        &annotations,
    );
    options.output.digest_file = Some(out.path().join("index.digest"));
    options.output.image_name_with_digest_file = Some(out.path().join("names"));

    // --dry-run checks everything and pushes and writes nothing.
    let mut dry = options.clone();
    dry.multi_platform.dry_run = true;
    let planned = run_ci(&dry).await.unwrap();
    assert!(planned.references.is_empty());
    assert!(
        fixtures::get_manifest(host, "busybox", "multi")
            .await
            .is_none()
    );
    assert!(!out.path().join("index.digest").exists());

    let outcome = run_ci(&options).await.unwrap();
    assert_eq!(outcome.digest, planned.digest);

    let want = expected_index(fixtures::OCI_INDEX, &[&fx.arm64, &fx.amd64], &annotations);
    let stored = raw(&first);
    assert_eq!(String::from_utf8(stored.clone()).unwrap(), want);
    assert_eq!(raw(&second), stored);
    assert_eq!(outcome.digest, fixtures::sha256_digest(want.as_bytes()));
    assert_eq!(outcome.media_type, fixtures::OCI_INDEX);
    assert_eq!(outcome.size, want.len() as u64);
    assert_eq!(
        outcome.references,
        vec![
            format!("{host}/busybox@{}", outcome.digest),
            format!("{host}/busybox@{}", outcome.digest),
        ]
    );
    assert_eq!(
        std::fs::read_to_string(out.path().join("index.digest")).unwrap(),
        outcome.digest
    );
    assert_eq!(
        std::fs::read_to_string(out.path().join("names")).unwrap(),
        format!(
            "{host}/busybox@{d}\n{host}/busybox@{d}\n",
            d = outcome.digest
        )
    );

    // What a runtime picks from it.
    // (skopeo's "Digest" is the index's; the layers are the child's.)
    let arm64 = inspect_arch(&first, "arm64");
    assert_eq!(arm64["Architecture"], "arm64");
    assert_eq!(arm64["Layers"], json!([fx.arm64.layer_digest]));
    let amd64 = inspect_arch(&first, "amd64");
    assert_eq!(amd64["Architecture"], "amd64");
    assert_eq!(amd64["Layers"], json!([fx.amd64.layer_digest]));

    // The same inputs give the same index, whatever the tag.
    let again = ci_options(
        &[&format!("--destination={host}/busybox:again")],
        "linux/arm64,linux/amd64",
        digests.path(),
        &annotations,
    );
    assert_eq!(run_ci(&again).await.unwrap().digest, outcome.digest);
    assert_eq!(raw(&format!("{host}/busybox:again")), stored);
}

#[tokio::test]
async fn legacy_manifest_list_from_docker_children() {
    let (registry, fx) = setup().await;
    let host = registry.host();
    let digests = digests_dir(&[
        ("linux-amd64.digest", &fx.docker_amd64.manifest_digest),
        ("linux-arm64-v8.digest", &fx.docker_arm64.manifest_digest),
    ]);
    let target = format!("{host}/busybox-docker:list");
    for (flags, legacy) in [
        (vec![format!("--destination={target}")], true),
        (
            vec![
                format!("--destination={target}"),
                "--oci-mode=docker".into(),
            ],
            false,
        ),
    ] {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let mut options = ci_options(&flags, "linux/amd64,linux/arm64", digests.path(), &[]);
        options.multi_platform.legacy_manifest_list = legacy;
        let outcome = run_ci(&options).await.unwrap();
        let want = expected_index(
            fixtures::DOCKER_LIST,
            &[&fx.docker_amd64, &fx.docker_arm64],
            &[],
        );
        assert_eq!(String::from_utf8(raw(&target)).unwrap(), want, "{flags:?}");
        assert_eq!(outcome.media_type, fixtures::DOCKER_LIST);
        assert_eq!(outcome.digest, fixtures::sha256_digest(want.as_bytes()));
        assert_eq!(
            inspect_arch(&target, "arm64")["Layers"],
            json!([fx.docker_arm64.layer_digest])
        );
    }

    // --oci-mode=auto with Docker children still publishes an OCI index
    // where the registry takes it.
    let options = ci_options(
        &[&format!("--destination={host}/busybox-docker:auto")],
        "linux/amd64,linux/arm64",
        digests.path(),
        &[],
    );
    let outcome = run_ci(&options).await.unwrap();
    let want = expected_index(
        fixtures::OCI_INDEX,
        &[&fx.docker_amd64, &fx.docker_arm64],
        &[],
    );
    assert_eq!(
        String::from_utf8(raw(&format!("{host}/busybox-docker:auto"))).unwrap(),
        want
    );
    assert_eq!(outcome.media_type, fixtures::OCI_INDEX);
}

/// A loopback proxy in front of a registry that answers 400
/// MANIFEST_INVALID to any manifest PUT with the OCI index media type, as
/// registries without OCI support do, and forwards everything else.
struct OciRefusingProxy {
    host: String,
    refused: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OciRefusingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const REFUSAL: &str = r#"{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid","detail":"media type not supported"}]}"#;

impl OciRefusingProxy {
    async fn start(upstream: &str) -> OciRefusingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let refused = Arc::new(AtomicUsize::new(0));
        let (upstream, counter) = (upstream.to_string(), Arc::clone(&refused));
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream.clone(), Arc::clone(&counter)));
            }
        });
        OciRefusingProxy {
            host,
            refused,
            task,
        }
    }
}

/// One request per connection: read the head, refuse or forward it with
/// `Connection: close`, then copy bytes both ways until either side ends.
async fn relay(mut client: TcpStream, upstream: String, refused: Arc<AtomicUsize>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request = lines.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if request.starts_with("PUT ")
        && request.contains("/manifests/")
        && header("content-type") == Some(fixtures::OCI_INDEX)
    {
        refused.fetch_add(1, Ordering::SeqCst);
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        let _ = client.read_exact(&mut body).await;
        let response = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{REFUSAL}",
            REFUSAL.len()
        );
        let _ = client.write_all(response.as_bytes()).await;
        let _ = client.shutdown().await;
        return;
    }
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let mut forward = format!("{request}\r\n");
    for (name, value) in &headers {
        if name != "connection" {
            forward.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    forward.push_str("connection: close\r\n\r\n");
    if server.write_all(forward.as_bytes()).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

#[tokio::test]
async fn auto_falls_back_to_a_docker_list_where_oci_is_refused() {
    let (registry, fx) = setup().await;
    let proxy = OciRefusingProxy::start(registry.host()).await;
    let docker = digests_dir(&[
        ("linux-amd64.digest", &fx.docker_amd64.manifest_digest),
        ("linux-arm64.digest", &fx.docker_arm64.manifest_digest),
    ]);
    let target = format!("{}/busybox-docker:fallback", proxy.host);
    let other = format!("{}/busybox-docker:fallback-2", proxy.host);
    let options = ci_options(
        &[
            &format!("--destination={target}"),
            &format!("--destination={other}"),
        ],
        "linux/amd64,linux/arm64",
        docker.path(),
        &[],
    );
    let outcome = run_ci(&options).await.unwrap();
    let want = expected_index(
        fixtures::DOCKER_LIST,
        &[&fx.docker_amd64, &fx.docker_arm64],
        &[],
    );
    assert_eq!(outcome.media_type, fixtures::DOCKER_LIST);
    assert_eq!(outcome.digest, fixtures::sha256_digest(want.as_bytes()));
    // Refused once, then both destinations got the manifest list.
    assert_eq!(proxy.refused.load(Ordering::SeqCst), 1);
    for tag in ["fallback", "fallback-2"] {
        assert_eq!(
            String::from_utf8(raw(&format!("{}/busybox-docker:{tag}", registry.host()))).unwrap(),
            want
        );
    }

    // OCI children cannot go into a manifest list: the seed's error.
    let oci = digests_dir(&[
        ("linux-amd64.digest", &fx.amd64.manifest_digest),
        ("linux-arm64.digest", &fx.arm64.manifest_digest),
    ]);
    let options = ci_options(
        &[&format!("--destination={}/busybox:refused", proxy.host)],
        "linux/amd64,linux/arm64",
        oci.path(),
        &[],
    );
    let err = run_ci(&options).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "registry doesn't support OCI media types: pushing manifest to {}/busybox:refused: HTTP 400 Bad Request (MANIFEST_INVALID: manifest invalid); use --oci-mode=docker --legacy-manifest-list=true, and rebuild the OCI platform images (linux/amd64, linux/arm64) with --oci-mode=docker",
            proxy.host
        )
    );
    // --oci-mode=oci never falls back.
    let options = ci_options(
        &[
            &format!("--destination={}/busybox-docker:oci-only", proxy.host),
            "--oci-mode=oci",
        ],
        "linux/amd64,linux/arm64",
        docker.path(),
        &[],
    );
    let err = run_ci(&options).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "registry doesn't support OCI media types: pushing manifest to {}/busybox-docker:oci-only: HTTP 400 Bad Request (MANIFEST_INVALID: manifest invalid); use --oci-mode=docker --legacy-manifest-list=true",
            proxy.host
        )
    );
    for tag in ["busybox:refused", "busybox-docker:oci-only"] {
        let (repository, reference) = tag.split_once(':').unwrap();
        assert!(
            fixtures::get_manifest(registry.host(), repository, reference)
                .await
                .is_none(),
            "{tag} was pushed"
        );
    }
}

#[tokio::test]
async fn refusals_name_the_file_and_publish_nothing() {
    let (registry, fx) = setup().await;
    let host = registry.host().to_string();
    let amd64 = fx.amd64.manifest_digest.clone();
    let arm64 = fx.arm64.manifest_digest.clone();
    // (digest files, extra destination, --legacy-manifest-list, expected error; DIR for the digests directory)
    type Case = (Vec<(&'static str, String)>, Option<String>, bool, String);
    let table: Vec<Case> = vec![
        (
            vec![
                ("linux-amd64.digest", amd64.clone()),
                ("linux-arm64.digest", amd64.clone()),
            ],
            None,
            false,
            format!("linux-arm64.digest: manifest {amd64} is for linux/amd64, not linux/arm64"),
        ),
        (
            vec![("linux-amd64.digest", amd64.clone())],
            None,
            false,
            "no digest file for linux/arm64 in DIR (expected linux-arm64.digest); each platform's build writes it with --digest-file=DIR/linux-arm64.digest".to_string(),
        ),
        (
            vec![
                ("linux-amd64.digest", amd64.clone()),
                ("linux-arm64.digest", arm64.clone()),
                ("linux-s390x.digest", arm64.clone()),
            ],
            None,
            false,
            "digest file DIR/linux-s390x.digest names platform linux/s390x, which is not in --multi-platform (linux/amd64, linux/arm64)".to_string(),
        ),
        (
            vec![
                ("linux-amd64.digest", amd64.clone()),
                ("linux-arm64.digest", arm64.clone()),
            ],
            None,
            true,
            format!("--legacy-manifest-list asks for a Docker manifest list, but the image for linux/amd64 ({amd64}) is an OCI image manifest, which a Docker manifest list cannot list without mislabelling it; rebuild that platform with --oci-mode=docker, or publish an OCI index (--oci-mode=oci without --legacy-manifest-list)"),
        ),
        (
            vec![
                ("linux-amd64.digest", amd64.clone()),
                ("linux-arm64.digest", fx.docker_arm64.manifest_digest.clone()),
            ],
            None,
            false,
            format!(
                "linux-arm64.digest: manifest {d} for linux/arm64 is not in {host}/busybox; push each platform's image to {host}/busybox before publishing the index (fetching manifest {host}/busybox@{d}: HTTP 404 Not Found (MANIFEST_UNKNOWN: manifest unknown); check the image name and tag)",
                d = fx.docker_arm64.manifest_digest
            ),
        ),
        (
            vec![
                ("linux-amd64.digest", fx.index_digest.clone()),
                ("linux-arm64.digest", arm64.clone()),
            ],
            None,
            false,
            format!(
                "linux-amd64.digest: manifest {d} in {host}/busybox is an OCI image index (application/vnd.oci.image.index.v1+json), not a single-platform image manifest; name the platform's own image manifest, as --digest-file writes it",
                d = fx.index_digest
            ),
        ),
        // Every destination's repository must hold the children.
        (
            vec![
                ("linux-amd64.digest", amd64.clone()),
                ("linux-arm64.digest", arm64.clone()),
            ],
            Some(format!("{host}/elsewhere:refused")),
            false,
            format!(
                "linux-amd64.digest: manifest {amd64} for linux/amd64 is not in {host}/elsewhere; push each platform's image to {host}/elsewhere before publishing the index (fetching manifest {host}/elsewhere@{amd64}: HTTP 404 Not Found (MANIFEST_UNKNOWN: manifest unknown); check the image name and tag)"
            ),
        ),
    ];
    for (files, extra, legacy, want) in table {
        let files: Vec<(&str, &str)> = files.iter().map(|(n, c)| (*n, c.as_str())).collect();
        let dir = digests_dir(&files);
        let mut args = vec![format!("--destination={host}/busybox:refused")];
        args.extend(extra.iter().map(|d| format!("--destination={d}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut options = ci_options(&args, "linux/amd64,linux/arm64", dir.path(), &[]);
        options.multi_platform.legacy_manifest_list = legacy;
        let err = run_ci(&options).await.unwrap_err();
        let want = want.replace("DIR", &dir.path().display().to_string());
        assert_eq!(err.to_string(), want, "{files:?}");
        for (repository, tag) in [("busybox", "refused"), ("elsewhere", "refused")] {
            assert!(
                fixtures::get_manifest(&host, repository, tag)
                    .await
                    .is_none(),
                "{repository}:{tag} was pushed after: {want}"
            );
        }
    }
}

/// The kiln binary dispatches `--driver=ci` to the ci driver and reports
/// its refusals on one line.
#[tokio::test]
async fn kiln_binary_reports_ci_refusals() {
    let (registry, fx) = setup().await;
    let host = registry.host();
    let digests = digests_dir(&[
        ("linux-amd64.digest", &fx.amd64.manifest_digest),
        ("linux-arm64.digest", &fx.amd64.manifest_digest),
    ]);
    let docker_config = tempfile::tempdir().unwrap();
    let base = [
        format!("--destination={host}/busybox:cli"),
        "--platform=linux/amd64,linux/arm64".to_string(),
        "--driver=ci".to_string(),
        format!("--digests-from={}", digests.path().display()),
    ];
    let table = [
        (
            vec!["--publish-index=false"],
            "error: the ci driver only publishes indexes: it builds nothing and combines the per-platform images named in --digests-from into one index; drop --publish-index=false\n".to_string(),
        ),
        (
            vec!["--publish-index=true"],
            format!(
                "error: linux-arm64.digest: manifest {} is for linux/amd64, not linux/arm64\n",
                fx.amd64.manifest_digest
            ),
        ),
        // The ci driver publishes an index without being told to.
        (
            vec![],
            format!(
                "error: linux-arm64.digest: manifest {} is for linux/amd64, not linux/arm64\n",
                fx.amd64.manifest_digest
            ),
        ),
    ];
    for (extra, want) in table {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(&base)
            .args(&extra)
            .env("DOCKER_CONFIG", docker_config.path())
            .env_remove("KILN_BUILDER_IMAGE")
            .output()
            .await
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{extra:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.ends_with(&want), "{extra:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{extra:?}");
    }
    assert!(
        fixtures::get_manifest(host, "busybox", "cli")
            .await
            .is_none()
    );
}

/// The seed guides' CI flow (GitHub Actions / GitLab CI): each platform
/// built with `--digest-file`, then `--driver=ci` publishes the index.
/// `builder/tests/seed_ci_flow.sh` runs it with the kiln binary.
#[test]
fn seed_ci_flow() {
    let registry = TestRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let docker_config = tempfile::tempdir().unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/seed_ci_flow.sh");
    let output = std::process::Command::new("bash")
        .arg(&script)
        .env("KILN", env!("CARGO_BIN_EXE_kiln"))
        .env("REGISTRY", registry.host())
        .env("WORK", work.path())
        .env("SHA", "0123abc")
        .env("DOCKER_CONFIG", docker_config.path())
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("KILN_BUILDER_IMAGE")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{} failed: {}\nstdout:\n{}\nstderr:\n{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // What the script left behind, checked exactly here.
    let host = registry.host();
    let digest_of = |platform: &str| {
        std::fs::read_to_string(work.path().join(format!("digests/{platform}.digest"))).unwrap()
    };
    let (amd64, arm64) = (digest_of("linux-amd64"), digest_of("linux-arm64"));
    let stored = raw(&format!("{host}/app:0123abc"));
    let index: Value = serde_json::from_slice(&stored).unwrap();
    let sizes: Vec<u64> = ["amd64", "arm64"]
        .iter()
        .map(|arch| raw(&format!("{host}/app:0123abc-linux-{arch}")).len() as u64)
        .collect();
    assert_eq!(
        index,
        json!({
            "schemaVersion": 2,
            "mediaType": fixtures::OCI_INDEX,
            "manifests": [
                {
                    "mediaType": fixtures::OCI_MANIFEST,
                    "digest": amd64,
                    "size": sizes[0],
                    "platform": {"architecture": "amd64", "os": "linux"},
                },
                {
                    "mediaType": fixtures::OCI_MANIFEST,
                    "digest": arm64,
                    "size": sizes[1],
                    "platform": {"architecture": "arm64", "os": "linux"},
                },
            ],
            "annotations": {
                "org.opencontainers.image.revision": "0123abc",
                "org.opencontainers.image.title": "app",
            },
        })
    );
    let index_digest = fixtures::sha256_digest(&stored);
    assert_eq!(
        std::fs::read_to_string(work.path().join("index.digest")).unwrap(),
        index_digest
    );
    let chosen = inspect_arch(&format!("{host}/app:0123abc"), "arm64");
    assert_eq!(chosen["Architecture"], "arm64");
    assert_eq!(chosen["Digest"], index_digest.as_str());
}
