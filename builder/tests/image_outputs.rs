//! The file outputs checked with a real reader: skopeo must inspect and
//! copy the docker-archive (`--tar-path`) and the OCI layout
//! (`--oci-layout-path`) kiln writes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use kiln_builder::image::layer::{EntryKind, EntryMeta, LayerPlan, Timestamps};
use kiln_builder::image::{
    Blob, BlobStore, Compression, ImageConfig, ManifestFormat, OciLayout, StoredLayer,
    manifest_blob, parse_index, sha256_digest, write_docker_archive,
};
use kiln_builder::platform::Platform;

struct TestImage {
    config: Blob,
    manifest: Blob,
    layers: Vec<StoredLayer>,
    diff_ids: Vec<String>,
}

/// A two-layer image: a file and a directory, then a whiteout.
fn build_image(dir: &Path, format: ManifestFormat, compression: Compression) -> TestImage {
    let store = BlobStore::open(&dir.join("store")).unwrap();
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("hello.txt"), b"hello from kiln\n").unwrap();

    let mut first = LayerPlan::new();
    first
        .push(
            Path::new("srv"),
            EntryKind::Dir,
            EntryMeta::new(0o755, 0, 0, 0),
        )
        .unwrap();
    first
        .push(
            Path::new("srv/hello.txt"),
            EntryKind::File {
                source: src.join("hello.txt"),
            },
            EntryMeta::new(0o644, 1000, 1000, 0),
        )
        .unwrap();
    let mut second = LayerPlan::new();
    second
        .push(
            Path::new("etc/motd"),
            EntryKind::Whiteout,
            EntryMeta::default(),
        )
        .unwrap();

    let mut config = ImageConfig::scratch(&Platform::new("linux", "arm64", None));
    config.set_created(0);
    config.set_env("PATH", "/usr/bin:/bin");
    config.set_cmd(vec!["/bin/sh".to_string()]);
    config.expose("8080").unwrap();

    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (plan, created_by) in [
        (first, "COPY hello.txt /srv/"),
        (second, "RUN rm /etc/motd"),
    ] {
        let layer = plan
            .write_layer(&store.tmp_dir(), compression, None, Timestamps::Zero)
            .unwrap();
        let layer = store.put_layer(layer).unwrap();
        config.add_history(0, created_by, None, Some(&layer.diff_id));
        diff_ids.push(layer.diff_id.clone());
        layers.push(StoredLayer {
            descriptor: layer.descriptor(format).unwrap(),
            path: layer.path,
        });
    }
    let config = config.to_blob(format);
    store.put_blob(&config).unwrap();
    let descriptors: Vec<_> = layers.iter().map(|l| l.descriptor.clone()).collect();
    let manifest =
        manifest_blob(format, &config.descriptor(), &descriptors, &BTreeMap::new()).unwrap();
    TestImage {
        config,
        manifest,
        layers,
        diff_ids,
    }
}

fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .expect("skopeo is installed");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

fn check_archive(format: ManifestFormat, compression: Compression) {
    let dir = tempfile::tempdir().unwrap();
    let image = build_image(dir.path(), format, compression);
    let tar = dir.path().join("out/image.tar");
    write_docker_archive(
        &tar,
        &image.config,
        &image.layers,
        &[
            "localhost:5000/kiln/test:v1".to_string(),
            "kiln/other".to_string(),
        ],
    )
    .unwrap();
    let target = format!("docker-archive:{}", tar.display());

    // The config travels unchanged.
    let raw_config = skopeo(&["inspect", "--raw", "--config", &target]);
    assert_eq!(raw_config, image.config.bytes);

    let inspect = json(&skopeo(&["inspect", &target]));
    assert_eq!(inspect["Architecture"], "arm64");
    assert_eq!(inspect["Os"], "linux");
    assert_eq!(inspect["Env"], serde_json::json!(["PATH=/usr/bin:/bin"]));
    // docker-archive sources name layers by their uncompressed digest.
    assert_eq!(inspect["Layers"], serde_json::json!(image.diff_ids));

    // And the image converts to an OCI layout, whose config is ours.
    let oci = dir.path().join("copied");
    skopeo(&[
        "copy",
        &format!("{target}:kiln/other:latest"),
        &format!("oci:{}:copied", oci.display()),
    ]);
    let copied_config = skopeo(&[
        "inspect",
        "--raw",
        "--config",
        &format!("oci:{}:copied", oci.display()),
    ]);
    assert_eq!(json(&copied_config), json(&image.config.bytes));
}

#[test]
fn docker_archive_with_gzip_layers_is_read_by_skopeo() {
    check_archive(ManifestFormat::Docker, Compression::Gzip);
}

#[test]
fn docker_archive_with_zstd_layers_is_read_by_skopeo() {
    check_archive(ManifestFormat::Oci, Compression::Zstd);
}

#[test]
fn docker_archive_manifest_lists_tags_and_layers() {
    let dir = tempfile::tempdir().unwrap();
    let image = build_image(dir.path(), ManifestFormat::Docker, Compression::Gzip);
    let tar_path = dir.path().join("image.tar");
    write_docker_archive(
        &tar_path,
        &image.config,
        &image.layers,
        &["app".to_string()],
    )
    .unwrap();
    let mut archive = tar::Archive::new(fs::File::open(&tar_path).unwrap());
    let mut names = Vec::new();
    let mut manifest = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_str().unwrap().to_string();
        if name == "manifest.json" {
            std::io::Read::read_to_end(&mut entry, &mut manifest).unwrap();
        }
        names.push(name);
    }
    let hex = |d: &str| d.strip_prefix("sha256:").unwrap().to_string();
    let config_name = format!("{}.json", hex(&image.config.digest));
    let layer_names: Vec<String> = image
        .layers
        .iter()
        .map(|l| format!("{}.tar.gz", hex(&l.descriptor.digest)))
        .collect();
    let mut want_names = vec![config_name.clone()];
    want_names.extend(layer_names.iter().cloned());
    want_names.push("manifest.json".to_string());
    assert_eq!(names, want_names);
    assert_eq!(
        String::from_utf8(manifest).unwrap(),
        format!(
            r#"[{{"Config":"{config_name}","RepoTags":["app:latest"],"Layers":["{}","{}"]}}]"#,
            layer_names[0], layer_names[1]
        )
    );
}

fn check_layout(format: ManifestFormat, compression: Compression) {
    let dir = tempfile::tempdir().unwrap();
    let image = build_image(dir.path(), format, compression);
    let layout_dir = dir.path().join("layout");
    let layout = OciLayout::open_or_create(&layout_dir).unwrap();
    layout
        .write_image(&image.manifest, &image.config, &image.layers, Some("v1"))
        .unwrap();
    let target = format!("oci:{}:v1", layout_dir.display());

    let inspect = json(&skopeo(&["inspect", &target]));
    assert_eq!(inspect["Digest"], image.manifest.digest.as_str());
    assert_eq!(inspect["Architecture"], "arm64");
    let raw = skopeo(&["inspect", "--raw", &target]);
    assert_eq!(raw, image.manifest.bytes);
    let raw_config = skopeo(&["inspect", "--raw", "--config", &target]);
    assert_eq!(raw_config, image.config.bytes);

    let copied = dir.path().join("copied");
    skopeo(&["copy", &target, &format!("dir:{}", copied.display())]);
    assert_eq!(
        fs::read(copied.join("manifest.json")).unwrap(),
        image.manifest.bytes
    );
    for layer in &image.layers {
        let hex = layer.descriptor.digest.strip_prefix("sha256:").unwrap();
        let blob = fs::read(copied.join(hex)).unwrap();
        assert_eq!(sha256_digest(&blob), layer.descriptor.digest);
    }
}

#[test]
fn oci_layout_with_gzip_layers_is_read_by_skopeo() {
    check_layout(ManifestFormat::Oci, Compression::Gzip);
}

#[test]
fn oci_layout_with_zstd_layers_is_read_by_skopeo() {
    check_layout(ManifestFormat::Oci, Compression::Zstd);
}

#[test]
fn oci_layout_is_extended_and_tags_move() {
    let dir = tempfile::tempdir().unwrap();
    let gzip = build_image(
        &dir.path().join("a"),
        ManifestFormat::Oci,
        Compression::Gzip,
    );
    let zstd = build_image(
        &dir.path().join("b"),
        ManifestFormat::Oci,
        Compression::Zstd,
    );
    let layout_dir = dir.path().join("layout");
    let write = |image: &TestImage, tag: &str| {
        OciLayout::open_or_create(&layout_dir)
            .unwrap()
            .write_image(&image.manifest, &image.config, &image.layers, Some(tag))
            .unwrap();
    };
    write(&gzip, "v1");
    write(&gzip, "v2");
    write(&zstd, "v1");
    let index = fs::read(layout_dir.join("index.json")).unwrap();
    let listed: Vec<(String, String)> = parse_index(&index)
        .unwrap()
        .into_iter()
        .map(|d| {
            (
                d.digest,
                d.annotations["org.opencontainers.image.ref.name"].clone(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            (gzip.manifest.digest.clone(), "v2".to_string()),
            (zstd.manifest.digest.clone(), "v1".to_string()),
        ]
    );
    assert_eq!(
        fs::read(layout_dir.join("oci-layout")).unwrap(),
        br#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let v1 = json(&skopeo(&[
        "inspect",
        &format!("oci:{}:v1", layout_dir.display()),
    ]));
    assert_eq!(v1["Digest"], zstd.manifest.digest.as_str());
    let v2 = json(&skopeo(&[
        "inspect",
        &format!("oci:{}:v2", layout_dir.display()),
    ]));
    assert_eq!(v2["Digest"], gzip.manifest.digest.as_str());
}

#[test]
fn docker_archive_without_tags_is_read_by_skopeo() {
    let dir = tempfile::tempdir().unwrap();
    let image = build_image(dir.path(), ManifestFormat::Docker, Compression::Gzip);
    let tar = dir.path().join("untagged.tar");
    write_docker_archive(&tar, &image.config, &image.layers, &[]).unwrap();
    let raw_config = skopeo(&[
        "inspect",
        "--raw",
        "--config",
        &format!("docker-archive:{}", tar.display()),
    ]);
    assert_eq!(raw_config, image.config.bytes);
}
