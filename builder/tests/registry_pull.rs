//! Pulling against a real registry (Debian's docker-registry on loopback):
//! index and manifest-list resolution per platform, single-platform images,
//! missing images, blob downloads with digest checks, retries and mirrors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use kiln_builder::platform::Platform;
use kiln_builder::registry::{Access, Registry, RegistryOptions, parse_reference};
use oci_spec::image::Descriptor;
use support::fixtures::{self, FixtureImage};
use support::{FaultProxy, TestRegistry, proxy};

fn registry(options: RegistryOptions) -> Registry {
    let config_dir = tempfile::tempdir().unwrap();
    Registry::new(RegistryOptions {
        // An empty config dir: never the developer's own credentials.
        docker_config_dir: Some(config_dir.keep()),
        push_retry_initial_delay: Duration::from_millis(10),
        push_retry_max_delay: Duration::from_millis(40),
        ..options
    })
    .unwrap()
}

fn platform(text: &str) -> Platform {
    text.parse().unwrap()
}

fn layer_descriptor(image: &FixtureImage) -> Descriptor {
    serde_json::from_value(serde_json::json!({
        "mediaType": fixtures::OCI_LAYER_GZIP,
        "digest": image.layer_digest,
        "size": image.layer_size,
    }))
    .unwrap()
}

#[tokio::test]
async fn resolves_each_platform_of_an_oci_index_and_a_docker_list() {
    let server = TestRegistry::start();
    let f = fixtures::push_busybox_index(server.host()).await;
    let registry = registry(RegistryOptions::default());
    let table = [
        (
            &f.index,
            &f.index_digest,
            "linux/amd64",
            &f.amd64,
            "amd64",
            None,
        ),
        (
            &f.index,
            &f.index_digest,
            "linux/arm64",
            &f.arm64,
            "arm64",
            Some("v8"),
        ),
        (
            &f.index,
            &f.index_digest,
            "linux/arm64/v8",
            &f.arm64,
            "arm64",
            Some("v8"),
        ),
        (
            &f.docker_list,
            &f.docker_list_digest,
            "linux/amd64",
            &f.docker_amd64,
            "amd64",
            None,
        ),
        (
            &f.docker_list,
            &f.docker_list_digest,
            "linux/aarch64",
            &f.docker_arm64,
            "arm64",
            Some("v8"),
        ),
    ];
    for (reference, index_digest, wanted, image, arch, variant) in table {
        let pulled = registry
            .pull_image(reference, &platform(wanted))
            .await
            .unwrap();
        let what = format!("{reference} for {wanted}");
        assert_eq!(pulled.reference.whole(), *reference, "{what}");
        assert_eq!(pulled.source.whole(), *reference, "{what}");
        assert_eq!(pulled.index_digest.as_ref(), Some(index_digest), "{what}");
        assert_eq!(pulled.manifest_digest, image.manifest_digest, "{what}");
        assert_eq!(
            pulled.manifest_media_type, image.manifest_media_type,
            "{what}"
        );
        assert_eq!(pulled.manifest_bytes, image.manifest_bytes, "{what}");
        assert_eq!(pulled.config_bytes, image.config_bytes, "{what}");
        assert_eq!(pulled.config.architecture().to_string(), arch, "{what}");
        assert_eq!(pulled.config.variant().as_deref(), variant, "{what}");
        assert_eq!(pulled.config.os().to_string(), "linux", "{what}");
        let layers: Vec<String> = pulled
            .manifest
            .layers()
            .iter()
            .map(|l| l.digest().to_string())
            .collect();
        assert_eq!(layers, std::slice::from_ref(&image.layer_digest), "{what}");
    }
}

#[tokio::test]
async fn a_platform_missing_from_the_index_lists_the_available_ones() {
    let server = TestRegistry::start();
    let f = fixtures::push_busybox_index(server.host()).await;
    let registry = registry(RegistryOptions::default());
    for reference in [&f.index, &f.docker_list] {
        let err = registry
            .pull_image(reference, &platform("linux/s390x"))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "image {reference} has no entry for platform linux/s390x (available: linux/amd64, linux/arm64)"
            )
        );
    }
}

#[tokio::test]
async fn single_manifest_images_must_match_the_platform() {
    let server = TestRegistry::start();
    let f = fixtures::push_busybox_index(server.host()).await;
    let registry = registry(RegistryOptions::default());

    let pulled = registry
        .pull_image(&f.arm64.reference, &platform("linux/arm64"))
        .await
        .unwrap();
    assert_eq!(pulled.index_digest, None);
    assert_eq!(pulled.manifest_digest, f.arm64.manifest_digest);
    assert_eq!(pulled.config_bytes, f.arm64.config_bytes);

    let by_digest = format!("{}/busybox@{}", server.host(), f.amd64.manifest_digest);
    let pulled = registry
        .pull_image(&by_digest, &platform("linux/amd64"))
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest, f.amd64.manifest_digest);
    assert_eq!(pulled.reference.whole(), by_digest);

    let err = registry
        .pull_image(&f.amd64.reference, &platform("linux/arm64"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "image {} is built for linux/amd64, not linux/arm64; use an image (or a multi-platform index) that has a linux/arm64 variant",
            f.amd64.reference
        )
    );
}

#[tokio::test]
async fn a_missing_image_is_a_clear_not_found_error() {
    let server = TestRegistry::start();
    let f = fixtures::push_busybox_index(server.host()).await;
    let registry = registry(RegistryOptions::default());
    let host = server.host();

    let err = registry
        .pull_image(&format!("{host}/nope:1"), &platform("linux/amd64"))
        .await
        .unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(
        err.to_string(),
        format!(
            "fetching manifest {host}/nope:1: HTTP 404 Not Found (MANIFEST_UNKNOWN: manifest unknown); check the image name and tag"
        )
    );

    let err = registry
        .pull_image(
            &format!("{host}/busybox:no-such-tag"),
            &platform("linux/amd64"),
        )
        .await
        .unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(
        err.to_string(),
        format!(
            "fetching manifest {host}/busybox:no-such-tag: HTTP 404 Not Found (MANIFEST_UNKNOWN: manifest unknown); check the image name and tag"
        )
    );
    drop(f);
}

#[tokio::test]
async fn downloads_layers_to_files_and_checks_their_digest() {
    let server = TestRegistry::start();
    let f = fixtures::push_busybox_index(server.host()).await;
    let registry = registry(RegistryOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let image = parse_reference(&f.amd64.reference).unwrap();

    let dest = dir.path().join("layer.tar.gz");
    registry
        .fetch_blob_to_file(&image, &layer_descriptor(&f.amd64), &dest, Access::Pull)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        fixtures::busybox_layer("amd64").gzip
    );

    // Flip one byte of the stored blob: same size, different content.
    let stored = server.blob_path(&f.amd64.layer_digest);
    let mut bytes = std::fs::read(&stored).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&stored, &bytes).unwrap();
    let actual = fixtures::sha256_digest(&bytes);

    let dest = dir.path().join("corrupt.tar.gz");
    let err = registry
        .fetch_blob_to_file(&image, &layer_descriptor(&f.amd64), &dest, Access::Pull)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "blob {} from {} does not match its digest: its content hashes to {actual}",
            f.amd64.layer_digest, f.amd64.reference
        )
    );
    assert!(
        !dest.exists(),
        "a blob that fails verification must not be left behind"
    );
}

#[tokio::test]
async fn a_size_that_differs_from_the_descriptor_is_an_error() {
    let server = TestRegistry::start();
    let f = fixtures::push_busybox_index(server.host()).await;
    let registry = registry(RegistryOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let image = parse_reference(&f.arm64.reference).unwrap();
    let mut descriptor = layer_descriptor(&f.arm64);
    descriptor.set_size(f.arm64.layer_size - 1);
    let dest = dir.path().join("short");
    let err = registry
        .fetch_blob_to_file(&image, &descriptor, &dest, Access::Pull)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "blob {} from {} is {} bytes long, the manifest says {}",
            f.arm64.layer_digest,
            f.arm64.reference,
            f.arm64.layer_size,
            f.arm64.layer_size - 1
        )
    );
    assert!(!dest.exists());
}

#[tokio::test]
async fn downloads_are_retried_on_503_when_allowed() {
    let server = TestRegistry::start();
    let f = fixtures::push_busybox_index(server.host()).await;
    let dir = tempfile::tempdir().unwrap();

    let proxy = FaultProxy::start(server.host(), 2, proxy::blob_get).await;
    let through_proxy = parse_reference(&format!("{}/busybox:amd64", proxy.host())).unwrap();
    let dest = dir.path().join("layer");
    registry(RegistryOptions {
        image_download_retry: 2,
        ..RegistryOptions::default()
    })
    .fetch_blob_to_file(
        &through_proxy,
        &layer_descriptor(&f.amd64),
        &dest,
        Access::Pull,
    )
    .await
    .unwrap();
    assert_eq!(proxy.faults_injected(), 2);
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        fixtures::busybox_layer("amd64").gzip
    );

    let proxy = FaultProxy::start(server.host(), 1, proxy::blob_get).await;
    let through_proxy = parse_reference(&format!("{}/busybox:amd64", proxy.host())).unwrap();
    let err = registry(RegistryOptions::default())
        .fetch_blob_to_file(
            &through_proxy,
            &layer_descriptor(&f.amd64),
            &dest,
            Access::Pull,
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "pulling blob {} from {through_proxy}: HTTP 503 Service Unavailable (UNAVAILABLE: service unavailable (injected by FaultProxy)); the failure may be temporary, retry with --image-download-retry=N",
            f.amd64.layer_digest
        )
    );
}

#[tokio::test]
async fn docker_hub_images_come_from_a_mirror_first() {
    let server = TestRegistry::start();
    let f = fixtures::push_busybox_index(server.host()).await;
    let host = server.host();
    // Publish the amd64 image as the mirror's copy of docker.io/library/busybox.
    fixtures::push_blob(host, "library/busybox", &f.amd64.config_bytes).await;
    fixtures::push_blob(
        host,
        "library/busybox",
        &fixtures::busybox_layer("amd64").gzip,
    )
    .await;
    fixtures::push_manifest(
        host,
        "library/busybox",
        "latest",
        fixtures::OCI_MANIFEST,
        &f.amd64.manifest_bytes,
    )
    .await;

    let registry = registry(RegistryOptions {
        registry_mirrors: vec![host.to_string()],
        ..RegistryOptions::default()
    });
    let pulled = registry
        .pull_image("busybox", &platform("linux/amd64"))
        .await
        .unwrap();
    assert_eq!(pulled.reference.whole(), "docker.io/library/busybox:latest");
    assert_eq!(
        pulled.source.whole(),
        format!("{host}/library/busybox:latest")
    );
    assert_eq!(pulled.manifest_digest, f.amd64.manifest_digest);
}
