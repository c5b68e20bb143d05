//! Small base images, assembled by hand (tar + gzip + JSON) and pushed
//! with plain HTTP requests, so that tests of kiln's image and registry
//! code never depend on that same code to create their inputs.
//!
//! The busybox fixture, per platform, holds:
//! `/bin/busybox` (Debian's busybox-static: the host's for linux/amd64,
//! the arm64 build scripts/setup.sh caches for linux/arm64, which runs
//! under qemu-user where binfmt_misc has it registered), applet symlinks
//! `/bin/sh`, `/bin/ls`, … → `busybox`, `/etc/passwd` and `/etc/group`
//! with `root`, `nobody` and `app` (uid/gid 1000), `/etc/os-release`,
//! `/etc/kiln-fixture-arch` (`amd64\n` or `arm64\n`), directories `/data`,
//! `/home/app` (owned by app), `/root`, `/tmp` (1777). All mtimes are
//! [`FIXTURE_MTIME`], so digests are the same on every run.

use std::io::Write;
use std::sync::OnceLock;

use sha2::Digest;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// 2023-11-14T22:13:20Z, the mtime of every fixture file.
pub const FIXTURE_MTIME: u64 = 1_700_000_000;
const FIXTURE_CREATED: &str = "2023-11-14T22:13:20Z";
pub const FIXTURE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The applets linked to busybox in `/bin`.
pub const APPLETS: &[&str] = &[
    "sh", "ash", "cat", "chmod", "chown", "cp", "echo", "env", "false", "find", "grep", "head",
    "id", "ln", "ls", "mkdir", "mv", "readlink", "rm", "sed", "sleep", "stat", "tail", "test",
    "touch", "true", "wc", "whoami",
];

/// One pushed single-platform image.
#[derive(Clone, Debug)]
pub struct FixtureImage {
    /// `127.0.0.1:PORT/busybox:amd64`.
    pub reference: String,
    /// `linux/amd64` or `linux/arm64/v8`.
    pub platform: String,
    pub manifest_digest: String,
    pub manifest_media_type: String,
    pub manifest_bytes: Vec<u8>,
    pub config_digest: String,
    pub config_bytes: Vec<u8>,
    /// The one layer, gzip-compressed.
    pub layer_digest: String,
    pub layer_size: u64,
    /// sha256 of the uncompressed layer tar.
    pub diff_id: String,
}

/// Everything [`push_busybox_index`] pushed.
#[derive(Clone, Debug)]
pub struct Fixtures {
    /// OCI image index `…/busybox:latest` (amd64 and arm64/v8 entries).
    pub index: String,
    pub index_digest: String,
    /// `…/busybox:amd64`, `…/busybox:arm64`: the index's children.
    pub amd64: FixtureImage,
    pub arm64: FixtureImage,
    /// Docker manifest list `…/busybox-docker:latest`.
    pub docker_list: String,
    pub docker_list_digest: String,
    /// `…/busybox-docker:amd64`, `…/busybox-docker:arm64` (schema 2).
    pub docker_amd64: FixtureImage,
    pub docker_arm64: FixtureImage,
}

/// Pushes the busybox fixtures to the plain-HTTP registry at
/// `registry_host` (`127.0.0.1:PORT`, no authentication):
/// repository `busybox` with OCI media types (tags `latest` = index,
/// `amd64`, `arm64`) and repository `busybox-docker` with Docker media
/// types (tags `latest` = manifest list, `amd64`, `arm64`).
pub async fn push_busybox_index(registry_host: &str) -> Fixtures {
    let (amd64, arm64) = (
        push_image(registry_host, "busybox", "amd64", false).await,
        push_image(registry_host, "busybox", "arm64", false).await,
    );
    let index = index_json(OCI_INDEX, &[&amd64, &arm64]);
    let index_digest = push_manifest(registry_host, "busybox", "latest", OCI_INDEX, &index).await;
    let (docker_amd64, docker_arm64) = (
        push_image(registry_host, "busybox-docker", "amd64", true).await,
        push_image(registry_host, "busybox-docker", "arm64", true).await,
    );
    let list = index_json(DOCKER_LIST, &[&docker_amd64, &docker_arm64]);
    let docker_list_digest = push_manifest(
        registry_host,
        "busybox-docker",
        "latest",
        DOCKER_LIST,
        &list,
    )
    .await;
    Fixtures {
        index: format!("{registry_host}/busybox:latest"),
        index_digest,
        amd64,
        arm64,
        docker_list: format!("{registry_host}/busybox-docker:latest"),
        docker_list_digest,
        docker_amd64,
        docker_arm64,
    }
}

/// Builds and pushes one platform's image, tagged with its architecture.
async fn push_image(host: &str, repository: &str, arch: &str, docker: bool) -> FixtureImage {
    let layer = busybox_layer(arch);
    let (config_type, layer_type, manifest_type) = if docker {
        (DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST)
    } else {
        (OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST)
    };
    let config = config_json(arch, &layer.diff_id);
    let config_digest = push_blob(host, repository, &config).await;
    let layer_digest = push_blob(host, repository, &layer.gzip).await;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": { "mediaType": config_type, "digest": config_digest, "size": config.len() },
        "layers": [ { "mediaType": layer_type, "digest": layer_digest, "size": layer.gzip.len() } ],
    }))
    .expect("manifest JSON");
    let manifest_digest = push_manifest(host, repository, arch, manifest_type, &manifest).await;
    FixtureImage {
        reference: format!("{host}/{repository}:{arch}"),
        platform: platform_of(arch).to_string(),
        manifest_digest,
        manifest_media_type: manifest_type.to_string(),
        manifest_bytes: manifest,
        config_digest,
        config_bytes: config,
        layer_digest,
        layer_size: layer.gzip.len() as u64,
        diff_id: layer.diff_id.clone(),
    }
}

fn platform_of(arch: &str) -> &'static str {
    match arch {
        "arm64" => "linux/arm64/v8",
        _ => "linux/amd64",
    }
}

fn index_json(media_type: &str, images: &[&FixtureImage]) -> Vec<u8> {
    let manifests: Vec<serde_json::Value> = images
        .iter()
        .map(|image| {
            let mut platform = serde_json::json!({ "os": "linux" });
            let mut parts = image.platform.split('/').skip(1);
            platform["architecture"] = parts.next().unwrap_or("amd64").into();
            if let Some(variant) = parts.next() {
                platform["variant"] = variant.into();
            }
            serde_json::json!({
                "mediaType": image.manifest_media_type,
                "digest": image.manifest_digest,
                "size": image.manifest_bytes.len(),
                "platform": platform,
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": manifests,
    }))
    .expect("index JSON")
}

fn config_json(arch: &str, diff_id: &str) -> Vec<u8> {
    let mut config = serde_json::json!({
        "created": FIXTURE_CREATED,
        "architecture": arch,
        "os": "linux",
        "config": {
            "Env": [format!("PATH={FIXTURE_PATH}")],
            "Cmd": ["sh"],
            "WorkingDir": "/",
        },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [ { "created": FIXTURE_CREATED, "created_by": "kiln test fixture: busybox root filesystem" } ],
    });
    if arch == "arm64" {
        config["variant"] = "v8".into();
    }
    serde_json::to_vec(&config).expect("config JSON")
}

/// A gzip-compressed layer and the digest of its uncompressed tar.
pub struct Layer {
    pub tar: Vec<u8>,
    pub gzip: Vec<u8>,
    pub diff_id: String,
}

/// The busybox root filesystem layer for `arch` (`amd64` or `arm64`),
/// built once per test process.
pub fn busybox_layer(arch: &str) -> &'static Layer {
    static AMD64: OnceLock<Layer> = OnceLock::new();
    static ARM64: OnceLock<Layer> = OnceLock::new();
    let cell = if arch == "arm64" { &ARM64 } else { &AMD64 };
    cell.get_or_init(|| {
        let path = if arch == "arm64" {
            arm64_busybox_path()
        } else {
            std::path::PathBuf::from("/bin/busybox")
        };
        let busybox = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "reading the {arch} busybox {}: {e}; run scripts/setup.sh, which installs \
                 Debian's busybox-static and caches its arm64 build",
                path.display()
            )
        });
        layer_from_tar(rootfs_tar(arch, &busybox))
    })
}

/// Where scripts/setup.sh caches Debian's arm64 busybox-static binary.
pub fn arm64_busybox_path() -> std::path::PathBuf {
    let cache = std::env::var_os("KILN_CACHE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/kiln")
        });
    cache.join("busybox-static/arm64/busybox")
}

/// Compresses `tar` and computes its diffID.
pub fn layer_from_tar(tar: Vec<u8>) -> Layer {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&tar).expect("gzip in memory");
    let gzip = encoder.finish().expect("gzip in memory");
    let diff_id = sha256_digest(&tar);
    Layer { tar, gzip, diff_id }
}

fn rootfs_tar(arch: &str, busybox: &[u8]) -> Vec<u8> {
    let passwd = "root:x:0:0:root:/root:/bin/sh\n\
                  nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
                  app:x:1000:1000:app:/home/app:/bin/sh\n";
    let group = "root:x:0:\nnogroup:x:65534:\napp:x:1000:\n";
    let os_release = format!(
        "NAME=\"kiln test busybox\"\nID=kiln-busybox\nVERSION_ID=1\nPRETTY_NAME=\"kiln test busybox ({arch})\"\n"
    );
    let mut builder = tar::Builder::new(Vec::new());
    let add_dir = |builder: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, owner: u64| {
        let mut header = header(tar::EntryType::Directory, mode, owner, 0);
        builder
            .append_data(&mut header, path, std::io::empty())
            .expect("tar in memory");
    };
    add_dir(&mut builder, "bin/", 0o755, 0);
    add_dir(&mut builder, "data/", 0o755, 0);
    add_dir(&mut builder, "etc/", 0o755, 0);
    add_dir(&mut builder, "home/", 0o755, 0);
    add_dir(&mut builder, "home/app/", 0o755, 1000);
    add_dir(&mut builder, "root/", 0o700, 0);
    add_dir(&mut builder, "tmp/", 0o1777, 0);
    let add_file = |builder: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]| {
        let mut header = header(tar::EntryType::Regular, mode, 0, data.len() as u64);
        builder
            .append_data(&mut header, path, data)
            .expect("tar in memory");
    };
    add_file(&mut builder, "bin/busybox", 0o755, busybox);
    add_file(&mut builder, "etc/group", 0o644, group.as_bytes());
    add_file(
        &mut builder,
        "etc/kiln-fixture-arch",
        0o644,
        format!("{arch}\n").as_bytes(),
    );
    add_file(&mut builder, "etc/os-release", 0o644, os_release.as_bytes());
    add_file(&mut builder, "etc/passwd", 0o644, passwd.as_bytes());
    for applet in APPLETS {
        let mut header = header(tar::EntryType::Symlink, 0o777, 0, 0);
        builder
            .append_link(&mut header, format!("bin/{applet}"), "busybox")
            .expect("tar in memory");
    }
    builder.into_inner().expect("tar in memory")
}

fn header(kind: tar::EntryType, mode: u32, owner: u64, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(owner);
    header.set_gid(owner);
    header.set_mtime(FIXTURE_MTIME);
    header.set_size(size);
    header
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

fn http() -> reqwest::Client {
    kiln_builder::tls::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a plain reqwest client")
}

/// Uploads `bytes` as a blob of `repository` on the plain-HTTP registry at
/// `host` (POST then PUT), returning its digest.
pub async fn push_blob(host: &str, repository: &str, bytes: &[u8]) -> String {
    let digest = sha256_digest(bytes);
    let client = http();
    let response = client
        .post(format!("http://{host}/v2/{repository}/blobs/uploads/"))
        .header("Content-Length", "0")
        .send()
        .await
        .unwrap_or_else(|e| panic!("starting a blob upload to {host}/{repository}: {e}"));
    assert_eq!(
        response.status().as_u16(),
        202,
        "starting a blob upload to {host}/{repository}"
    );
    let location = response
        .headers()
        .get("Location")
        .and_then(|l| l.to_str().ok())
        .expect("upload Location header")
        .to_string();
    let mut url = if location.starts_with('/') {
        format!("http://{host}{location}")
    } else {
        location
    };
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str(&format!("digest={digest}"));
    let response = client
        .put(url)
        .header("Content-Type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap_or_else(|e| panic!("uploading blob {digest} to {host}/{repository}: {e}"));
    assert_eq!(
        response.status().as_u16(),
        201,
        "uploading blob {digest} to {host}/{repository}: {}",
        response.text().await.unwrap_or_default()
    );
    digest
}

/// Puts manifest `bytes` under `repository:tag` (or a digest), returning
/// their digest.
pub async fn push_manifest(
    host: &str,
    repository: &str,
    tag: &str,
    media_type: &str,
    bytes: &[u8],
) -> String {
    let response = http()
        .put(format!("http://{host}/v2/{repository}/manifests/{tag}"))
        .header("Content-Type", media_type)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap_or_else(|e| panic!("pushing manifest {host}/{repository}:{tag}: {e}"));
    assert_eq!(
        response.status().as_u16(),
        201,
        "pushing manifest {host}/{repository}:{tag}: {}",
        response.text().await.unwrap_or_default()
    );
    sha256_digest(bytes)
}

/// GETs a manifest as stored: its bytes and Content-Type, or `None` on 404.
pub async fn get_manifest(
    host: &str,
    repository: &str,
    reference: &str,
) -> Option<(Vec<u8>, String)> {
    let response = http()
        .get(format!(
            "http://{host}/v2/{repository}/manifests/{reference}"
        ))
        .header(
            "Accept",
            [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST].join(", "),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("fetching manifest {host}/{repository}:{reference}: {e}"));
    if response.status().as_u16() == 404 {
        return None;
    }
    assert_eq!(
        response.status().as_u16(),
        200,
        "fetching manifest {host}/{repository}:{reference}"
    );
    let media_type = response
        .headers()
        .get("Content-Type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = response.bytes().await.expect("manifest body").to_vec();
    Some((bytes, media_type))
}
