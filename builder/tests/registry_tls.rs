//! HTTPS registries: a CA given with `--registry-certificate`, certificate
//! checks skipped with `--skip-tls-verify-registry`, a registry that
//! requires a TLS client certificate (`--registry-client-cert`), and the
//! errors when none fits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};

use kiln_builder::registry::{
    Access, ClientCertificate, Registry, RegistryError, RegistryOptions, parse_reference,
};
use support::TestRegistry;
use support::fixtures::{self, sha256_digest};
use support::kiln::{assert_success, context, kiln, skopeo, stderr};

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

/// Options that trust `server`'s CA and present its client certificate
/// to the registry named `cert_for`.
fn mtls_options(server: &TestRegistry, cert_for: &str) -> RegistryOptions {
    let client = server.client_certificate().unwrap();
    RegistryOptions {
        registry_certificates: vec![(
            server.host().to_string(),
            server.ca_certificate().unwrap().to_path_buf(),
        )],
        registry_client_certs: vec![ClientCertificate {
            registry: cert_for.to_string(),
            cert: client.cert.clone(),
            key: client.key.clone(),
        }],
        ..RegistryOptions::default()
    }
}

/// The advice given when a registry wants a client certificate and got
/// none: said after the failure, whichever words it came in (under TLS
/// 1.3 the server's bad_certificate alert races the request, and hyper
/// may only see the connection closed).
fn assert_names_the_client_certificate_flag(host: &str, text: &str) {
    let hint = format!(
        "; {host} asks for a TLS client certificate: pass --registry-client-cert={host}=/path/to/client.crt,/path/to/client.key"
    );
    assert!(text.contains(&hint), "{text}");
}

#[tokio::test]
async fn a_client_certificate_reaches_a_registry_that_requires_one_and_only_its_own() {
    let server = TestRegistry::start_mtls();
    let host = server.host().to_string();
    let port = host.rsplit_once(':').unwrap().1;
    let dir = tempfile::tempdir().unwrap();
    let target = format!("{host}/mtls/app:1");
    let reference = parse_reference(&target).unwrap();

    let with_cert = registry(mtls_options(&server, &host));
    let manifest = push_small_image(&with_cert, &target, dir.path())
        .await
        .unwrap();
    for access in [Access::Pull, Access::Push] {
        let (bytes, _, _) = with_cert
            .fetch_manifest_raw(&reference, access)
            .await
            .unwrap();
        assert_eq!(bytes, manifest, "{access:?}");
    }

    // Without a certificate, and with one for another name of the same
    // server, the handshake is refused, with the flag to pass.
    let without = registry(RegistryOptions {
        registry_certificates: vec![(host.clone(), server.ca_certificate().unwrap().into())],
        ..RegistryOptions::default()
    });
    let for_localhost = registry(mtls_options(&server, &format!("localhost:{port}")));
    for refused in [without, for_localhost] {
        let err = refused
            .fetch_manifest_raw(&reference, Access::Pull)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "fetching manifest {target}: cannot reach {host}: "
            )),
            "{text}"
        );
        assert_names_the_client_certificate_flag(&host, &text);
    }
}

#[test]
fn client_certificate_files_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    support::registry::write_tls_files(dir.path());
    let one = support::registry::write_client_certificate(dir.path(), &dir.path().join("one"));
    let two = support::registry::write_client_certificate(dir.path(), &dir.path().join("two"));
    let missing = PathBuf::from("/nonexistent/kiln-client.pem");
    let start = |cert: &Path, key: &Path| {
        Registry::new(RegistryOptions {
            registry_client_certs: vec![ClientCertificate {
                registry: "reg.example:5443".to_string(),
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            }],
            ..support::isolated_options()
        })
        .err()
        .map(|e| e.to_string())
    };
    let flag = |cert: &Path, key: &Path| {
        format!(
            "--registry-client-cert=reg.example:5443={},{}",
            cert.display(),
            key.display()
        )
    };
    assert_eq!(start(&one.cert, &one.key), None);
    assert_eq!(
        start(&missing, &one.key),
        Some(format!(
            "{}: reading /nonexistent/kiln-client.pem: No such file or directory (os error 2)",
            flag(&missing, &one.key)
        ))
    );
    assert_eq!(
        start(&one.cert, &missing),
        Some(format!(
            "{}: reading /nonexistent/kiln-client.pem: No such file or directory (os error 2)",
            flag(&one.cert, &missing)
        ))
    );
    let advice = "give the client's PEM certificate and the PEM private key that belongs to it";
    // Certificate and key swapped.
    assert_eq!(
        start(&one.key, &one.cert),
        Some(format!(
            "{}: {} holds no PEM certificate; {advice}",
            flag(&one.key, &one.cert),
            one.key.display()
        ))
    );
    assert_eq!(
        start(&one.cert, &one.cert),
        Some(format!(
            "{}: {} holds no PEM private key; {advice}",
            flag(&one.cert, &one.cert),
            one.cert.display()
        ))
    );
    // The key of another certificate.
    let mismatch = start(&one.cert, &two.key).unwrap();
    assert!(
        mismatch.starts_with(&format!("{}: ", flag(&one.cert, &two.key))),
        "{mismatch}"
    );
    assert!(mismatch.ends_with(advice), "{mismatch}");
    assert!(mismatch.contains("KeyMismatch"), "{mismatch}");
}

/// skopeo's certificate directory for `server`: its CA (`*.crt`) and its
/// client certificate and key (`*.cert`, `*.key`).
fn skopeo_cert_dir(server: &TestRegistry) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let client = server.client_certificate().unwrap();
    std::fs::copy(server.ca_certificate().unwrap(), dir.path().join("ca.crt")).unwrap();
    std::fs::copy(&client.cert, dir.path().join("client.cert")).unwrap();
    std::fs::copy(&client.key, dir.path().join("client.key")).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn kiln_builds_from_and_pushes_to_a_registry_requiring_a_client_certificate() {
    // The base image is copied by skopeo (with its own client certificate
    // support) from a plain registry to the one requiring certificates.
    let plain = TestRegistry::start();
    let fixtures = fixtures::push_busybox_index(plain.host()).await;
    let server = TestRegistry::start_mtls();
    let host = server.host().to_string();
    let port = host.rsplit_once(':').unwrap().1;
    let cert_dir = skopeo_cert_dir(&server);
    let cert_dir_text = cert_dir.path().to_str().unwrap();
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        "--dest-cert-dir",
        cert_dir_text,
        &format!("docker://{}", fixtures.index),
        &format!("docker://{host}/busybox:latest"),
    ]);

    let client = server.client_certificate().unwrap();
    let ctx = context(
        &format!("FROM {host}/busybox:latest\nCOPY hello.txt /hello.txt\n"),
        &[("hello.txt", "hello over mutual TLS\n")],
    );
    let ca_flag = format!(
        "--registry-certificate={host}={}",
        server.ca_certificate().unwrap().display()
    );
    let cert_flag = |registry: &str, key: &Path| {
        format!(
            "--registry-client-cert={registry}={},{}",
            client.cert.display(),
            key.display()
        )
    };
    let build = |tag: &str, extra: Vec<String>| {
        let mut all = vec![
            format!("--context=dir://{}", ctx.path().display()),
            format!("--destination={host}/app:{tag}"),
            ca_flag.clone(),
        ];
        all.extend(extra);
        all
    };

    let output = kiln(&build("1", vec![cert_flag(&host, &client.key)])).await;
    assert_success(&output);
    let manifest: serde_json::Value = serde_json::from_slice(&skopeo(&[
        "inspect",
        "--raw",
        "--cert-dir",
        cert_dir_text,
        &format!("docker://{host}/app:1"),
    ]))
    .unwrap();
    // Its first layer is the base's, for this machine's architecture.
    let inspect = |reference: &str| -> serde_json::Value {
        serde_json::from_slice(&skopeo(&[
            "inspect",
            "--raw",
            "--cert-dir",
            cert_dir_text,
            &format!("docker://{reference}"),
        ]))
        .unwrap()
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let index = inspect(&format!("{host}/busybox:latest"));
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == arch)
        .unwrap_or_else(|| panic!("no {arch} entry in {index}"));
    let base = inspect(&format!(
        "{host}/busybox@{}",
        entry["digest"].as_str().unwrap()
    ));
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{manifest}");
    assert_eq!(layers[0], base["layers"][0], "{manifest}");

    // Without the flag, or with it for another name of the registry, the
    // build stops at the registry's handshake, saying which flag to pass.
    for extra in [
        vec![],
        vec![cert_flag(&format!("localhost:{port}"), &client.key)],
    ] {
        let output = kiln(&build("2", extra.clone())).await;
        assert!(!output.status.success(), "{extra:?}");
        let text = stderr(&output);
        assert!(text.contains(&format!("cannot reach {host}: ")), "{text}");
        assert_names_the_client_certificate_flag(&host, &text);
    }

    // A key file that is not there: refused before any build step.
    let missing = Path::new("/nonexistent/kiln-client.key");
    let output = kiln(&build("3", vec![cert_flag(&host, missing)])).await;
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains(&format!(
            "{}: reading /nonexistent/kiln-client.key: No such file or directory (os error 2)",
            cert_flag(&host, missing)
        )),
        "{text}"
    );
    assert!(!text.contains("COPY"), "a build step ran: {text}");
    assert!(!text.contains("busybox"), "the base was looked at: {text}");
}
