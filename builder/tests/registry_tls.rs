//! HTTPS registries: a CA given with `--registry-certificate`, certificate
//! checks skipped with `--skip-tls-verify-registry`, and the errors when
//! neither fits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use kiln_builder::registry::{Access, Registry, RegistryError, RegistryOptions, parse_reference};
use support::TestRegistry;
use support::fixtures::{self, sha256_digest};

fn registry(options: RegistryOptions) -> Registry {
    Registry::new(RegistryOptions {
        docker_config_dir: support::isolated_options().docker_config_dir,
        ..options
    })
    .unwrap()
}

async fn push_small_image(
    registry: &Registry,
    target: &str,
    dir: &Path,
) -> Result<Vec<u8>, RegistryError> {
    let target = parse_reference(target).unwrap();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let path = dir.join("config.json");
    std::fs::write(&path, config).unwrap();
    let digest = sha256_digest(config);
    registry
        .push_blob_from_file(&target, &digest, config.len() as u64, &path, None)
        .await?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": fixtures::OCI_MANIFEST,
        "config": { "mediaType": fixtures::OCI_CONFIG, "digest": digest, "size": config.len() },
        "layers": [],
    }))
    .unwrap();
    registry
        .push_manifest_raw(&target, &manifest, fixtures::OCI_MANIFEST)
        .await?;
    Ok(manifest)
}

#[tokio::test]
async fn a_registry_certificate_or_skipping_verification_reaches_tls_registries() {
    let server = TestRegistry::start_tls();
    let host = server.host().to_string();
    let dir = tempfile::tempdir().unwrap();
    let target = format!("{host}/secure/app:1");

    let with_ca = registry(RegistryOptions {
        registry_certificates: vec![(host.clone(), server.ca_certificate().unwrap().to_path_buf())],
        ..RegistryOptions::default()
    });
    let manifest = push_small_image(&with_ca, &target, dir.path())
        .await
        .unwrap();

    let skipping = registry(RegistryOptions {
        skip_tls_verify_registries: vec![host.clone()],
        ..RegistryOptions::default()
    });
    let (bytes, media_type, _) = skipping
        .fetch_manifest_raw(&parse_reference(&target).unwrap(), Access::Pull)
        .await
        .unwrap();
    assert_eq!(bytes, manifest);
    assert_eq!(media_type, fixtures::OCI_MANIFEST);
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_with_advice() {
    let server = TestRegistry::start_tls();
    let host = server.host().to_string();
    let other = tempfile::tempdir().unwrap();
    let wrong_ca = support::registry::write_tls_files(other.path());
    let wrong = registry(RegistryOptions {
        registry_certificates: vec![(host.clone(), wrong_ca)],
        ..RegistryOptions::default()
    });
    let target = parse_reference(&format!("{host}/secure/app:1")).unwrap();
    let err = wrong
        .fetch_manifest_raw(&target, Access::Pull)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "fetching manifest {target}: cannot reach {host}: "
        )),
        "{text}"
    );
    assert!(text.contains("certificate"), "{text}");
    assert!(
        text.ends_with(&format!(
            "; if {host} serves plain HTTP pass --insecure-registry={host}, for a self-signed certificate --registry-certificate={host}=/path/to/ca.pem or --skip-tls-verify-registry={host}"
        )),
        "{text}"
    );

    // Without TLS settings a loopback registry is spoken to in plain HTTP;
    // the TLS server refuses that with 400.
    let plain = registry(RegistryOptions::default());
    let err = plain
        .fetch_manifest_raw(&target, Access::Pull)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
}
