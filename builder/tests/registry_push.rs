//! Pushing against a real registry (Debian's docker-registry on loopback):
//! blobs streamed from files, existing blobs skipped, cross-repository
//! mounts, raw manifests read back (also by skopeo), credentials from a
//! config.json, retries through a proxy answering 503.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kiln_builder::registry::{Access, Reference, Registry, RegistryOptions, parse_reference};
use support::fixtures::{self, sha256_digest};
use support::{FaultProxy, TestRegistry, proxy, write_docker_config};

fn registry_with_config(config_dir: &Path, options: RegistryOptions) -> Registry {
    Registry::new(RegistryOptions {
        docker_config_dir: Some(config_dir.to_path_buf()),
        push_retry_initial_delay: Duration::from_millis(10),
        push_retry_max_delay: Duration::from_millis(40),
        ..options
    })
    .unwrap()
}

/// A registry client that never sees the developer's own credentials.
fn registry(options: RegistryOptions) -> Registry {
    registry_with_config(&tempfile::tempdir().unwrap().keep(), options)
}

/// The requests a proxy saw, minus any `GET /v2/` probe for an
/// authentication challenge (kiln learns challenges from the requests
/// themselves, so none is expected; a probe would not change the result).
fn without_pings(requests: &[String]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.as_str() != "GET /v2/")
        .cloned()
        .collect()
}

fn reference(text: &str) -> Reference {
    parse_reference(text).unwrap()
}

/// A blob on disk: deterministic bytes of `size`, seeded by `seed`.
struct BlobFile {
    path: PathBuf,
    digest: String,
    size: u64,
    bytes: Vec<u8>,
}

fn blob_file(dir: &Path, seed: u8, size: usize) -> BlobFile {
    let bytes: Vec<u8> = (0..size)
        .map(|n| (n as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    let path = dir.join(format!("blob-{seed}"));
    std::fs::write(&path, &bytes).unwrap();
    BlobFile {
        path,
        digest: sha256_digest(&bytes),
        size: size as u64,
        bytes,
    }
}

/// A minimal OCI image: a config blob and one layer blob, and its manifest.
struct Image {
    config: BlobFile,
    layer: BlobFile,
    manifest: Vec<u8>,
}

fn image(dir: &Path, seed: u8) -> Image {
    let config_json = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Env": [format!("SEED={seed}")] },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{:064x}", seed)] },
    }))
    .unwrap();
    let config_path = dir.join(format!("config-{seed}.json"));
    std::fs::write(&config_path, &config_json).unwrap();
    let config = BlobFile {
        path: config_path,
        digest: sha256_digest(&config_json),
        size: config_json.len() as u64,
        bytes: config_json,
    };
    // Bigger than one read buffer, so the upload streams several pieces.
    let layer = blob_file(dir, seed, 700 * 1024 + 13);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": fixtures::OCI_MANIFEST,
        "config": { "mediaType": fixtures::OCI_CONFIG, "digest": config.digest, "size": config.size },
        "layers": [ { "mediaType": fixtures::OCI_LAYER_GZIP, "digest": layer.digest, "size": layer.size } ],
    }))
    .unwrap();
    Image {
        config,
        layer,
        manifest,
    }
}

async fn push_image(
    registry: &Registry,
    target: &Reference,
    image: &Image,
) -> Result<String, kiln_builder::registry::RegistryError> {
    for blob in [&image.layer, &image.config] {
        registry
            .push_blob_from_file(target, &blob.digest, blob.size, &blob.path, None)
            .await?;
    }
    registry
        .push_manifest_raw(target, &image.manifest, fixtures::OCI_MANIFEST)
        .await
}

#[tokio::test]
async fn pushed_blobs_and_manifests_read_back_byte_for_byte() {
    let server = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), 1);
    let registry = registry(RegistryOptions::default());
    let target = reference(&format!("{}/app:1.0", server.host()));

    let digest = push_image(&registry, &target, &img).await.unwrap();
    assert_eq!(digest, sha256_digest(&img.manifest));

    // Read back with independent code, with kiln, and with skopeo.
    let (bytes, media_type) = fixtures::get_manifest(server.host(), "app", "1.0")
        .await
        .unwrap();
    assert_eq!(bytes, img.manifest);
    assert_eq!(media_type, fixtures::OCI_MANIFEST);

    let (bytes, media_type, fetched_digest) = registry
        .fetch_manifest_raw(&target, Access::Push)
        .await
        .unwrap();
    assert_eq!(bytes, img.manifest);
    assert_eq!(media_type, fixtures::OCI_MANIFEST);
    assert_eq!(fetched_digest, digest);

    let output = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/app:1.0", server.host()))
        .output()
        .expect("running skopeo (Debian package skopeo)");
    assert!(
        output.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, img.manifest);

    let layer_path = dir.path().join("layer-back");
    let descriptor = serde_json::from_value(serde_json::json!({
        "mediaType": fixtures::OCI_LAYER_GZIP, "digest": img.layer.digest, "size": img.layer.size,
    }))
    .unwrap();
    registry
        .fetch_blob_to_file(&target, &descriptor, &layer_path, Access::Push)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&layer_path).unwrap(), img.layer.bytes);
}

#[tokio::test]
async fn existing_blobs_are_not_uploaded_again() {
    let server = TestRegistry::start();
    let recorder = FaultProxy::recording(server.host()).await;
    let dir = tempfile::tempdir().unwrap();
    let blob = blob_file(dir.path(), 7, 4096);
    let registry = registry(RegistryOptions::default());
    let target = reference(&format!("{}/app:1", recorder.host()));

    registry
        .push_blob_from_file(&target, &blob.digest, blob.size, &blob.path, None)
        .await
        .unwrap();
    let first = recorder.requests();
    registry
        .push_blob_from_file(&target, &blob.digest, blob.size, &blob.path, None)
        .await
        .unwrap();
    let second = without_pings(&recorder.requests()[first.len()..]);

    let head = format!("HEAD /v2/app/blobs/{}", blob.digest);
    assert!(first.contains(&head), "{first:?}");
    assert!(
        first
            .iter()
            .any(|r| r.starts_with("POST /v2/app/blobs/uploads/")),
        "{first:?}"
    );
    assert!(
        first
            .iter()
            .any(|r| r.starts_with("PUT /v2/app/blobs/uploads/")),
        "{first:?}"
    );
    assert_eq!(second, [head]);
}

/// Several pushes of one blob at once (two platforms' equal layers, an
/// early upload and the final push): one uploads, the others wait for it
/// and find the blob there. Racing uploads of one blob made Debian's
/// registry answer 500.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pushes_of_one_blob_upload_it_once() {
    let server = TestRegistry::start();
    let recorder = FaultProxy::recording(server.host()).await;
    let dir = tempfile::tempdir().unwrap();
    let blob = blob_file(dir.path(), 9, 256 * 1024);
    let registry = registry(RegistryOptions::default());
    let target = reference(&format!("{}/app:1", recorder.host()));
    let pushes = (0..6)
        .map(|_| registry.push_blob_from_file(&target, &blob.digest, blob.size, &blob.path, None));
    for result in futures::future::join_all(pushes).await {
        result.unwrap();
    }
    let uploads = recorder
        .requests()
        .iter()
        .filter(|r| r.starts_with("POST /v2/app/blobs/uploads/"))
        .count();
    assert_eq!(uploads, 1, "{:?}", recorder.requests());
}

#[tokio::test]
async fn blobs_are_mounted_across_repositories_of_one_registry() {
    let server = TestRegistry::start();
    let recorder = FaultProxy::recording(server.host()).await;
    let dir = tempfile::tempdir().unwrap();
    let blob = blob_file(dir.path(), 9, 10_000);
    let registry = registry(RegistryOptions::default());
    let base = reference(&format!("{}/base:1", recorder.host()));
    let app = reference(&format!("{}/team/app:1", recorder.host()));

    registry
        .push_blob_from_file(&base, &blob.digest, blob.size, &blob.path, None)
        .await
        .unwrap();
    let before = recorder.requests().len();
    registry
        .push_blob_from_file(&app, &blob.digest, blob.size, &blob.path, Some(&base))
        .await
        .unwrap();
    let requests = without_pings(&recorder.requests()[before..]);
    assert_eq!(
        requests,
        [
            format!("HEAD /v2/team/app/blobs/{}", blob.digest),
            format!(
                "POST /v2/team/app/blobs/uploads/?mount={}&from=base",
                blob.digest.replace(':', "%3A")
            ),
        ]
    );
    // The mounted blob is served by the new repository.
    let dest = dir.path().join("mounted");
    let descriptor = serde_json::from_value(serde_json::json!({
        "mediaType": "application/octet-stream", "digest": blob.digest, "size": blob.size,
    }))
    .unwrap();
    registry
        .fetch_blob_to_file(
            &reference(&format!("{}/team/app:1", server.host())),
            &descriptor,
            &dest,
            Access::Push,
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), blob.bytes);
}

#[tokio::test]
async fn credentials_come_from_config_json() {
    let server = TestRegistry::start_with_auth("kiln", "s3cret-pass");
    let host = server.host().to_string();
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), 3);
    let target = reference(&format!("{host}/private/app:1"));

    let good = tempfile::tempdir().unwrap();
    write_docker_config(good.path(), &host, "kiln", "s3cret-pass");
    let registry = registry_with_config(good.path(), RegistryOptions::default());
    let digest = push_image(&registry, &target, &img).await.unwrap();
    let (bytes, _, fetched) = registry
        .fetch_manifest_raw(&target, Access::Pull)
        .await
        .unwrap();
    assert_eq!((bytes, fetched), (img.manifest.clone(), digest));
    registry.check_push_access(&target).await.unwrap();

    let bad = tempfile::tempdir().unwrap();
    let config = write_docker_config(bad.path(), &host, "kiln", "wrong");
    let registry = registry_with_config(bad.path(), RegistryOptions::default());
    let other = image(dir.path(), 4);
    let err = push_image(&registry, &target, &other).await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(
        err.to_string(),
        format!(
            "pushing blob {} to {host}/private/app: HTTP 401 Unauthorized; check the credentials for {host} in {}",
            other.layer.digest,
            config.display()
        )
    );
    let err = registry.check_push_access(&target).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "checking push access to {host}/private/app: HTTP 401 Unauthorized (UNAUTHORIZED: authentication required); check the credentials for {host} in {}",
            config.display()
        )
    );

    let none = tempfile::tempdir().unwrap();
    let registry = registry_with_config(none.path(), RegistryOptions::default());
    let err = registry
        .fetch_manifest_raw(&target, Access::Pull)
        .await
        .unwrap_err();
    let expected_config = none.path().join("config.json");
    assert_eq!(
        err.to_string(),
        format!(
            "fetching manifest {host}/private/app:1: HTTP 401 Unauthorized; no credentials for {host}: no docker config found (looked for {}); add them with `docker login {host}` or write {}",
            expected_config.display(),
            expected_config.display()
        )
    );
}

#[tokio::test]
async fn pushes_are_retried_after_503_when_allowed() {
    let server = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), 5);

    let faulty = FaultProxy::start(server.host(), 2, proxy::blob_upload).await;
    let target = reference(&format!("{}/retry/app:1", faulty.host()));
    let digest = push_image(
        &registry(RegistryOptions {
            push_retry: 3,
            ..RegistryOptions::default()
        }),
        &target,
        &img,
    )
    .await
    .unwrap();
    assert_eq!(faulty.faults_injected(), 2);
    assert_eq!(digest, sha256_digest(&img.manifest));
    let (bytes, _) = fixtures::get_manifest(server.host(), "retry/app", "1")
        .await
        .unwrap();
    assert_eq!(bytes, img.manifest);

    let faulty = FaultProxy::start(server.host(), 2, proxy::blob_upload).await;
    let target = reference(&format!("{}/retry/other:1", faulty.host()));
    let err = push_image(&registry(RegistryOptions::default()), &target, &img)
        .await
        .unwrap_err();
    assert_eq!(faulty.faults_injected(), 1);
    assert_eq!(err.status(), Some(503));
    assert_eq!(
        err.to_string(),
        format!(
            "pushing blob {} to {}/retry/other: HTTP 503 Service Unavailable (UNAVAILABLE: service unavailable (injected by FaultProxy)); the failure may be temporary, retry with --push-retry=N",
            img.layer.digest,
            faulty.host()
        )
    );
}

#[tokio::test]
async fn manifest_pushes_give_up_after_the_allowed_retries() {
    let server = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), 6);
    let faulty = FaultProxy::start(server.host(), 2, proxy::manifest_put).await;
    let target = reference(&format!("{}/app:2", faulty.host()));

    let err = push_image(
        &registry(RegistryOptions {
            push_retry: 1,
            ..RegistryOptions::default()
        }),
        &target,
        &img,
    )
    .await
    .unwrap_err();
    assert_eq!(faulty.faults_injected(), 2);
    assert_eq!(
        err.to_string(),
        format!(
            "pushing manifest to {target}: HTTP 503 Service Unavailable (UNAVAILABLE: service unavailable (injected by FaultProxy)) (gave up after 2 attempts)"
        )
    );
    assert_eq!(
        fixtures::get_manifest(server.host(), "app", "2").await,
        None
    );
}

#[tokio::test]
async fn push_access_check_opens_and_cancels_an_upload() {
    let server = TestRegistry::start();
    let recorder = FaultProxy::recording(server.host()).await;
    let target = reference(&format!("{}/dry/run:1", recorder.host()));
    registry(RegistryOptions::default())
        .check_push_access(&target)
        .await
        .unwrap();
    let requests = recorder.requests();
    let methods: Vec<&str> = requests
        .iter()
        .filter_map(|r| r.split_whitespace().next())
        .filter(|m| *m != "GET")
        .collect();
    assert_eq!(methods, ["POST", "DELETE"], "{requests:?}");
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("DELETE /v2/dry/run/blobs/uploads/")),
        "{requests:?}"
    );
}

#[tokio::test]
async fn an_unreachable_registry_says_where_it_looked() {
    let port = support::registry::free_port();
    let target = reference(&format!("127.0.0.1:{port}/app:1"));
    let err = registry(RegistryOptions::default())
        .push_manifest_raw(&target, b"{}", fixtures::OCI_MANIFEST)
        .await
        .unwrap_err();
    assert!(err.is_retryable());
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "pushing manifest to 127.0.0.1:{port}/app:1: cannot reach 127.0.0.1:{port}: "
        )),
        "{text}"
    );
    assert!(
        text.ends_with(&format!(
            "; check that a registry listens at http://127.0.0.1:{port}"
        )),
        "{text}"
    );
}

#[tokio::test]
async fn bearer_tokens_are_asked_per_scope_and_never_sent_to_storage() {
    let server = TestRegistry::start();
    let storage = FaultProxy::recording(server.host()).await;
    let proxy = FaultProxy::bearer(server.host(), "kiln", "s3cret", Some(storage.host())).await;
    let host = proxy.host().to_string();
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), 11);
    let target = reference(&format!("{host}/app:1"));

    let config = tempfile::tempdir().unwrap();
    write_docker_config(config.path(), &host, "kiln", "s3cret");
    let registry = registry_with_config(config.path(), RegistryOptions::default());
    let digest = push_image(&registry, &target, &img).await.unwrap();
    let (bytes, _, fetched) = registry
        .fetch_manifest_raw(&target, Access::Pull)
        .await
        .unwrap();
    assert_eq!((bytes, fetched), (img.manifest.clone(), digest));
    // The blob GET is redirected to the storage host, and followed there.
    let dest = dir.path().join("layer-back");
    let descriptor = serde_json::from_value(serde_json::json!({
        "mediaType": fixtures::OCI_LAYER_GZIP, "digest": img.layer.digest, "size": img.layer.size,
    }))
    .unwrap();
    registry
        .fetch_blob_to_file(&target, &descriptor, &dest, Access::Pull)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), img.layer.bytes);

    // One token per direction and scope, asked with the credentials; the
    // registry gets only the token, the storage host nothing.
    let seen = proxy.authorizations();
    let tokens: Vec<&(String, Option<String>)> = seen
        .iter()
        .filter(|(r, _)| r.starts_with("GET /token"))
        .collect();
    let basic = Some("Basic a2lsbjpzM2NyZXQ=".to_string());
    assert_eq!(
        tokens,
        [
            &(
                "GET /token?service=kiln-test&scope=repository%3Aapp%3Apull%2Cpush".to_string(),
                basic.clone()
            ),
            &(
                "GET /token?service=kiln-test&scope=repository%3Aapp%3Apull".to_string(),
                basic.clone()
            ),
        ],
        "{seen:?}"
    );
    let bearer = Some(format!("Bearer {}", proxy::BEARER_TOKEN));
    for (request, authorization) in &seen {
        if !request.starts_with("GET /token") {
            assert!(
                authorization.is_none() || authorization == &bearer,
                "{request}: {authorization:?}"
            );
        }
    }
    assert_eq!(
        storage.authorizations(),
        [(format!("GET /v2/app/blobs/{}", img.layer.digest), None)]
    );

    // A refused token request is the registry refusing the credentials.
    let bad = tempfile::tempdir().unwrap();
    let bad_config = write_docker_config(bad.path(), &host, "kiln", "wrong");
    let err = registry_with_config(bad.path(), RegistryOptions::default())
        .fetch_manifest_raw(&target, Access::Pull)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(
        err.to_string(),
        format!(
            "fetching manifest {target}: HTTP 401 Unauthorized (token request to http://{host}/token refused: HTTP 401 Unauthorized ({{\"details\":\"incorrect username or password\"}})); check the credentials for {host} in {}",
            bad_config.display()
        )
    );
}
