//! Running the `kiln` binary in tests and reading back what it pushed, with
//! skopeo as the independent reader.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};

/// Runs the kiln binary with `args` and an empty docker config, so the
/// developer's credentials and kiln-specific environment never take part.
pub async fn kiln(args: &[String]) -> Output {
    kiln_with_config(args, None).await
}

/// [`kiln`] with the docker config directory `config_dir`.
pub async fn kiln_with_config(args: &[String], config_dir: Option<&Path>) -> Output {
    kiln_with_env(args, config_dir, &[]).await
}

/// [`kiln_with_config`] with extra environment variables `env`.
pub async fn kiln_with_env(
    args: &[String],
    config_dir: Option<&Path>,
    env: &[(&str, &std::ffi::OsStr)],
) -> Output {
    let empty = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_kiln"));
    command
        .args(args)
        .env("DOCKER_CONFIG", config_dir.unwrap_or(empty.path()))
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("KILN_BUILDER_IMAGE")
        .env_remove("KILN_EMULATION")
        .env_remove("KILN_BUILD_REQUEST")
        .env_remove("KILN_BINFMT_MISC_DIR");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().await.unwrap()
}

/// A directory in binfmt_misc's format with binfmt_misc enabled and no
/// interpreter registered, for `KILN_BINFMT_MISC_DIR`: a machine where
/// no foreign architecture can run, whatever this one has registered.
pub fn empty_binfmt_misc() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("status"), "enabled\n").unwrap();
    std::fs::write(dir.path().join("register"), "").unwrap();
    dir
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "kiln failed: {}\n{}",
        output.status,
        stderr(output)
    );
}

/// Writes `files` (path → content) below `root`, creating directories.
pub fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

/// A build context with `dockerfile` as its Dockerfile and `files`.
pub fn context(dockerfile: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    write_tree(dir.path(), files);
    dir
}

/// `--context=dir://…` for `dir`.
pub fn context_arg(dir: &Path) -> String {
    format!("--context=dir://{}", dir.display())
}

/// skopeo's stdout; panics with its stderr when it fails.
pub fn skopeo(args: &[&str]) -> Vec<u8> {
    let output = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo is installed");
    assert!(
        output.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

pub fn skopeo_json(args: &[&str]) -> serde_json::Value {
    serde_json::from_slice(&skopeo(args)).unwrap()
}

/// Whether `reference` exists in the registry (skopeo can inspect it).
pub fn exists(reference: &str) -> bool {
    Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ])
        .output()
        .unwrap()
        .status
        .success()
}

/// One tar entry: type (`f`, `d`, `l` symlink, `h` hard link), mode, uid,
/// gid, and the content (lossy UTF-8) or link target.
pub type Entry = (char, u32, u64, u64, String);

/// Every layer of `reference` (for `arch` when it is an index), entries by
/// path as written in the tar (directories end in `/`).
pub fn layers_for(reference: &str, arch: Option<&str>) -> Vec<BTreeMap<String, Entry>> {
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("dir:{}", dir.path().display());
    let source = format!("docker://{reference}");
    let mut args = vec!["copy", "--src-tls-verify=false"];
    if let Some(arch) = arch {
        args.extend(["--override-arch", arch]);
    }
    args.extend([source.as_str(), dest.as_str()]);
    skopeo(&args);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| {
            let digest = layer["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:");
            let blob = std::fs::read(dir.path().join(digest)).unwrap();
            let tar: Box<dyn Read> = if layer["mediaType"].as_str().unwrap().ends_with("zstd") {
                Box::new(zstd::stream::read::Decoder::new(std::io::Cursor::new(blob)).unwrap())
            } else {
                Box::new(flate2::read::GzDecoder::new(std::io::Cursor::new(blob)))
            };
            let mut archive = tar::Archive::new(tar);
            let mut entries = BTreeMap::new();
            for entry in archive.entries().unwrap() {
                let mut entry = entry.unwrap();
                let header = entry.header().clone();
                let kind = match header.entry_type() {
                    tar::EntryType::Directory => 'd',
                    tar::EntryType::Symlink => 'l',
                    tar::EntryType::Link => 'h',
                    tar::EntryType::Fifo => 'p',
                    tar::EntryType::Char => 'c',
                    tar::EntryType::Block => 'b',
                    _ => 'f',
                };
                let mut content = String::new();
                if kind == 'f' {
                    let mut bytes = Vec::new();
                    entry.read_to_end(&mut bytes).unwrap();
                    content = String::from_utf8_lossy(&bytes).into_owned();
                } else if let Some(target) = entry.link_name().unwrap() {
                    content = target.to_string_lossy().into_owned();
                }
                let path = entry.path().unwrap().to_string_lossy().into_owned();
                entries.insert(
                    path,
                    (
                        kind,
                        header.mode().unwrap(),
                        header.uid().unwrap(),
                        header.gid().unwrap(),
                        content,
                    ),
                );
            }
            entries
        })
        .collect()
}

pub fn layers(reference: &str) -> Vec<BTreeMap<String, Entry>> {
    layers_for(reference, None)
}

/// All layers of `reference` merged, later ones winning, paths without a
/// trailing `/`: path → (type, mode, content or link target).
pub fn files(reference: &str) -> BTreeMap<String, (char, u32, String)> {
    let mut all = BTreeMap::new();
    for layer in layers(reference) {
        for (path, (kind, mode, _, _, content)) in layer {
            all.insert(
                path.trim_end_matches('/').to_string(),
                (kind, mode, content),
            );
        }
    }
    all
}
