//! `--sign-key`: what kiln signs, checked by the real clients users verify
//! with — cosign (`verify --key`, `verify-attestation --type
//! slsaprovenance1`) and oras (`discover`), built by `scripts/tools.sh`
//! from the Go module proxy — against Debian's docker-registry 2.8. No
//! transparency log (Rekor needs the internet): cosign runs with
//! `--insecure-ignore-tlog`, and with its own `HOME` so its caches stay in
//! the test's directory.

// A test fails by panicking with a message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use support::TestRegistry;
use support::tools;

/// The password of the test key pairs.
const PASSWORD: &str = "kiln-test-password";
use support::fixtures;
use support::kiln::{assert_success, context, context_arg, kiln_with_env, skopeo, stderr};

/// A client run with `home` as its HOME and an empty docker config.
fn client(binary: &Path, home: &Path, args: &[&str]) -> Output {
    std::process::Command::new(binary)
        .args(args)
        .env("HOME", home)
        .env("DOCKER_CONFIG", home.join(".docker"))
        .env("COSIGN_PASSWORD", PASSWORD)
        .env_remove("SIGSTORE_ROOT_FILE")
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn verify(cosign: &Path, home: &Path, public: &Path, reference: &str) -> Output {
    client(
        cosign,
        home,
        &[
            "verify",
            &format!("--key={}", public.display()),
            "--insecure-ignore-tlog=true",
            "--allow-http-registry=true",
            reference,
        ],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn cosign_verifies_what_kiln_signs_and_oras_lists_the_provenance() {
    let cosign = tools::tool_dir("cosign").join("cosign");
    let oras = tools::tool_dir("oras").join("oras");
    let home = tempfile::tempdir().unwrap();
    let (key, public) = tools::cosign_key_pair(home.path(), &home.path().join("keys"), PASSWORD);
    let (_, other_public) =
        tools::cosign_key_pair(home.path(), &home.path().join("other"), PASSWORD);

    let registry = TestRegistry::start();
    let fixtures = fixtures::push_busybox_index(registry.host()).await;
    let ctx = context(
        &format!("FROM {}\nCOPY a.txt /a.txt\n", fixtures.index),
        &[("a.txt", "a")],
    );
    let image = format!("{}/app:1", registry.host());
    let password = std::ffi::OsStr::new("kiln-test-password");
    let output = kiln_with_env(
        &[
            context_arg(ctx.path()),
            format!("--destination={image}"),
            "--platform=linux/amd64,linux/arm64".into(),
            "--provenance=max".into(),
            format!("--sign-key={}", key.display()),
        ],
        None,
        &[("COSIGN_PASSWORD", password)],
    )
    .await;
    assert_success(&output);
    let log = stderr(&output);
    assert!(log.contains("signed index "), "{log}");

    // The index and both platform images verify with the key's public
    // half, and not with another key.
    let index: Value = serde_json::from_slice(&skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]))
    .unwrap();
    let children: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("{}/app@{}", registry.host(), m["digest"].as_str().unwrap()))
        .collect();
    assert_eq!(children.len(), 2);
    for reference in std::iter::once(&image).chain(&children) {
        let ok = verify(&cosign, home.path(), &public, reference);
        assert!(
            ok.status.success(),
            "cosign verify {reference}: {}",
            text(&ok)
        );
        let claims: Value = serde_json::from_slice(&ok.stdout).unwrap();
        assert_eq!(
            claims[0]["critical"]["type"],
            "cosign container image signature"
        );
        let wrong = verify(&cosign, home.path(), &other_public, reference);
        assert!(!wrong.status.success(), "another key verified {reference}");
    }

    // The provenance, signed, is what cosign's SLSA v1 check accepts, and
    // its statement names the image.
    for reference in &children {
        let attested = client(
            &cosign,
            home.path(),
            &[
                "verify-attestation",
                &format!("--key={}", public.display()),
                "--type=slsaprovenance1",
                "--insecure-ignore-tlog=true",
                "--allow-http-registry=true",
                reference,
            ],
        );
        assert!(
            attested.status.success(),
            "cosign verify-attestation {reference}: {}",
            text(&attested)
        );
        let envelope: Value =
            serde_json::from_slice(attested.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
        let statement: Value =
            serde_json::from_slice(&base64_decode(envelope["payload"].as_str().unwrap())).unwrap();
        let digest = reference.rsplit_once('@').unwrap().1;
        assert_eq!(
            statement["subject"][0]["digest"]["sha256"],
            digest.trim_start_matches("sha256:")
        );

        // oras finds the unsigned provenance referrer through the tag
        // schema (this registry has no referrers API).
        let discovered = client(
            &oras,
            home.path(),
            &["discover", "--plain-http", "--format=json", reference],
        );
        assert!(
            discovered.status.success(),
            "oras discover: {}",
            text(&discovered)
        );
        let listing: Value = serde_json::from_slice(&discovered.stdout).unwrap();
        let types: Vec<&str> = listing["referrers"]
            .as_array()
            .unwrap_or_else(|| panic!("{listing}"))
            .iter()
            .filter_map(|r| r["artifactType"].as_str())
            .collect();
        assert_eq!(types, ["application/vnd.in-toto+json"], "{listing}");
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_that_cannot_be_opened_stops_kiln_before_it_builds() {
    let home = tempfile::tempdir().unwrap();
    let (key, _) = tools::cosign_key_pair(home.path(), &home.path().join("keys"), PASSWORD);
    let registry = TestRegistry::start();
    let fixtures = fixtures::push_busybox_index(registry.host()).await;
    let ctx = context(&format!("FROM {}\n", fixtures.index), &[]);
    let image = format!("{}/unsigned:1", registry.host());
    let not_a_key = home.path().join("not-a-key");
    std::fs::write(&not_a_key, "hello").unwrap();
    let cases: [(&Path, &str, String); 2] = [
        (
            &key,
            "wrong",
            format!(
                "the signing key {} cannot be opened with this password: set COSIGN_PASSWORD to the key's password",
                key.display()
            ),
        ),
        (
            &not_a_key,
            "kiln-test-password",
            format!(
                "the signing key {} is not a cosign private key",
                not_a_key.display()
            ),
        ),
    ];
    for (key, password, want) in cases {
        let output = kiln_with_env(
            &[
                context_arg(ctx.path()),
                format!("--destination={image}"),
                format!("--sign-key={}", key.display()),
            ],
            None,
            &[("COSIGN_PASSWORD", std::ffi::OsStr::new(password))],
        )
        .await;
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        let log = stderr(&output);
        assert!(log.contains(&want), "{log}");
        assert!(!log.contains("FROM"), "nothing was built: {log}");
    }
    assert!(!support::kiln::exists(&image), "nothing was pushed");
}
