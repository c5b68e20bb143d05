//! `--sbom` on a real distribution: a Debian bookworm minbase image
//! (`scripts/debian-base.sh`, mmdebstrap) built by kiln, then an image FROM
//! it whose RUN records what `dpkg-query` reports inside it. The SBOM kiln
//! attaches must list exactly those packages, and, signed with a cosign
//! key, pass `cosign verify-attestation --type spdxjson`.

// A test fails by panicking with a message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::io::Read;

use serde_json::Value;
use support::TestRegistry;
use support::kiln::{assert_success, context_arg, kiln_with_env, skopeo, stderr};
use support::tools::{self, http_get};

const SPDX: &str = "application/spdx+json";

async fn get(url: &str, accept: &str) -> Vec<u8> {
    let (status, body) = http_get(url, accept).await;
    assert_eq!(status, 200, "GET {url}");
    body
}

fn raw(reference: &str) -> Vec<u8> {
    skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ])
}

/// One file of the last layer of `reference` (`host/name:tag`).
async fn file_in_last_layer(host: &str, name: &str, reference: &str, path: &str) -> String {
    let manifest: Value = serde_json::from_slice(&raw(reference)).unwrap();
    let layer = manifest["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = get(&format!("http://{host}/v2/{name}/blobs/{layer}"), "*/*").await;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(blob.as_slice()));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            == path
        {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            return text;
        }
    }
    panic!("{path} is not in the last layer of {reference}");
}

/// A purl component without its percent-encoding (`libstdc%2B%2B6`).
fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sbom_of_a_debian_image_lists_what_dpkg_query_reports() {
    let base_tar = tools::script_output("debian-base.sh", &[]);
    let cosign = tools::tool_dir("cosign").join("cosign");
    let registry = TestRegistry::start();
    let home = tempfile::tempdir().unwrap();
    let password = std::ffi::OsStr::new("kiln-sbom-test");

    // The Debian base image, from the minbase tarball.
    let base_ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        base_ctx.path().join("Dockerfile"),
        "FROM scratch\nADD bookworm-minbase.tar /\nCMD [\"bash\"]\n",
    )
    .unwrap();
    let in_context = base_ctx.path().join("bookworm-minbase.tar");
    if std::fs::hard_link(&base_tar, &in_context).is_err() {
        std::fs::copy(&base_tar, &in_context).unwrap();
    }
    let base = format!("{}/debian:bookworm", registry.host());
    let output = kiln_with_env(
        &[
            context_arg(base_ctx.path()),
            format!("--destination={base}"),
        ],
        None,
        &[],
    )
    .await;
    assert_success(&output);

    let (key, public) =
        tools::cosign_key_pair(home.path(), &home.path().join("keys"), "kiln-sbom-test");

    // The image: what dpkg-query sees inside it, in its last layer.
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {base}\nRUN dpkg-query -W -f '${{Package}} ${{Version}} ${{Architecture}}\\n' > /dpkg-query.txt\n"
        ),
    )
    .unwrap();
    let image = format!("{}/app:1", registry.host());
    let output = kiln_with_env(
        &[
            context_arg(ctx.path()),
            format!("--destination={image}"),
            "--custom-platform=linux/amd64".into(),
            "--sbom".into(),
            format!("--sign-key={}", key.display()),
        ],
        None,
        &[("COSIGN_PASSWORD", password)],
    )
    .await;
    assert_success(&output);
    let log = stderr(&output);
    assert!(log.contains("attached the SBOM"), "{log}");
    let reported: BTreeSet<String> =
        file_in_last_layer(registry.host(), "app", &image, "dpkg-query.txt")
            .await
            .lines()
            .map(str::to_string)
            .collect();
    assert!(reported.len() > 50, "{reported:?}");

    // The SBOM, found through the tag schema's index of the image.
    let digest = kiln_builder::image::sha256_digest(&raw(&image));
    let index: Value = serde_json::from_slice(&raw(&format!(
        "{}/app:{}",
        registry.host(),
        digest.replacen(':', "-", 1)
    )))
    .unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["artifactType"] == SPDX)
        .unwrap_or_else(|| panic!("no SBOM referrer: {index}"));
    let manifest: Value = serde_json::from_slice(
        &get(
            &format!(
                "http://{}/v2/app/manifests/{}",
                registry.host(),
                entry["digest"].as_str().unwrap()
            ),
            "application/vnd.oci.image.manifest.v1+json",
        )
        .await,
    )
    .unwrap();
    let document: Value = serde_json::from_slice(
        &get(
            &format!(
                "http://{}/v2/app/blobs/{}",
                registry.host(),
                manifest["layers"][0]["digest"].as_str().unwrap()
            ),
            "*/*",
        )
        .await,
    )
    .unwrap();
    assert_eq!(document["spdxVersion"], "SPDX-2.3");
    // Every Debian package, as `name version arch` from its purl
    // (`pkg:deb/debian/<name>@<version>?arch=<arch>&…`).
    let listed: BTreeSet<String> = document["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["externalRefs"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["referenceLocator"].as_str().map(str::to_string))
        .filter_map(|purl| {
            let rest = purl.strip_prefix("pkg:deb/debian/")?;
            let (name, rest) = rest.split_once('@')?;
            let (version, query) = rest.split_once('?')?;
            let arch = query
                .split('&')
                .find_map(|q| q.strip_prefix("arch="))?
                .to_string();
            Some(format!("{} {} {arch}", unescape(name), unescape(version)))
        })
        .collect();
    assert_eq!(listed, reported);

    // Signed: cosign's SPDX check accepts it.
    let verified = std::process::Command::new(&cosign)
        .args([
            "verify-attestation",
            "--type=spdxjson",
            "--insecure-ignore-tlog=true",
            "--allow-http-registry=true",
        ])
        .arg(format!("--key={}", public.display()))
        .arg(format!("{}/app@{digest}", registry.host()))
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "cosign verify-attestation --type spdxjson: {}",
        String::from_utf8_lossy(&verified.stderr)
    );
}
