//! The I/O around the comparison: building a case with kiln and with
//! buildah (BuildKit: `buildkit.rs`), and reading an image back from the
//! registry with skopeo.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use super::rootfs::{self, Tree};

/// An image as the suite compares it.
pub struct Image {
    pub config: serde_json::Value,
    pub tree: Tree,
    pub layers: usize,
}

fn describe(what: &str, output: &Output) -> String {
    format!(
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub fn run(what: &str, command: &mut Command) -> Result<Output, String> {
    let output = command
        .output()
        .map_err(|e| format!("{what}: could not start it: {e}"))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(describe(what, &output))
    }
}

/// The `kiln` binary of this workspace, in the target directory this test
/// was built into. Unlike `kiln_e2e::binaries::workspace_binary`, cargo is
/// always asked (once per test process; a no-op when up to date): a run of
/// this suite alone after a change to the builder must not compare a stale
/// kiln.
pub fn kiln_binary() -> &'static Path {
    static KILN: OnceLock<PathBuf> = OnceLock::new();
    KILN.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        let profile_dir = kiln_e2e::binaries::profile_dir_of(&exe)
            .expect("the test binary lives in <target>/<profile>/deps");
        let target_dir = profile_dir.parent().expect("<target>/<profile>");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_string(),
            Some(other) => other.to_string(),
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let built = run(
            "cargo build -p kiln-builder --bin kiln",
            Command::new(cargo)
                .args(["build", "--quiet", "-p", "kiln-builder", "--bin", "kiln"])
                .arg("--profile")
                .arg(&profile)
                .arg("--target-dir")
                .arg(target_dir)
                .current_dir(env!("CARGO_MANIFEST_DIR")),
        );
        if let Err(message) = built {
            panic!("{message}");
        }
        let kiln = profile_dir.join("kiln");
        assert!(kiln.is_file(), "cargo built no {}", kiln.display());
        kiln
    })
}

/// Builds `context` (its own Dockerfile) with kiln and further `flags`
/// and pushes it to `destination`; returns kiln's log.
pub fn kiln_build(
    context: &Path,
    build_args: &[String],
    flags: &[String],
    destination: &str,
) -> Result<String, String> {
    let docker_config = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut command = Command::new(kiln_binary());
    command
        .arg(format!("--context=dir://{}", context.display()))
        .arg(format!("--destination={destination}"))
        .args(build_args.iter().map(|a| format!("--build-arg={a}")))
        .args(flags)
        .env("DOCKER_CONFIG", docker_config.path())
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("KILN_BUILDER_IMAGE")
        .env_remove("KILN_EMULATION")
        .env_remove("KILN_BUILD_REQUEST");
    run(
        &format!("kiln build of {}", context.display()),
        &mut command,
    )
    .map(|output| String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Builds `context` with Debian's buildah (chroot isolation, vfs storage
/// in a private temporary root, no layer cache: one layer per stage) and
/// pushes it to `destination`. Docker format, so HEALTHCHECK, SHELL and
/// ONBUILD are kept as kiln keeps them; no identity label, so the config
/// holds only what the Dockerfile says. `extra_flags` go to `buildah
/// build` as they are (`--secret`, a case's `buildah_flags`).
pub fn buildah_build(
    context: &Path,
    dockerfile: Option<&str>,
    build_args: &[String],
    target: Option<&str>,
    platform: Option<&str>,
    extra_flags: &[String],
    destination: &str,
) -> Result<(), String> {
    let storage = tempfile::tempdir().map_err(|e| e.to_string())?;
    // An empty auth file of its own: the developer's logins never take part.
    std::fs::write(storage.path().join("auth.json"), "{}").map_err(|e| e.to_string())?;
    // buildah's network backend keeps its configuration and a lock file in
    // /etc/cni/net.d unless told otherwise: a test must not create it.
    std::fs::write(
        storage.path().join("containers.conf"),
        format!(
            "[network]\nnetwork_config_dir = \"{}\"\n",
            storage.path().join("cni").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let buildah = |args: &[&str]| {
        let mut command = Command::new("buildah");
        command
            .arg("--root")
            .arg(storage.path().join("root"))
            .arg("--runroot")
            .arg(storage.path().join("runroot"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .env("BUILDAH_ISOLATION", "chroot")
            .env("CONTAINERS_CONF", storage.path().join("containers.conf"))
            .env("REGISTRY_AUTH_FILE", storage.path().join("auth.json"));
        command
    };
    let tag = "localhost/kiln-conformance:latest";
    let context_arg = context.display().to_string();
    let mut build_command = vec![
        "build",
        "--isolation",
        "chroot",
        "--layers=false",
        "--tls-verify=false",
        "--format",
        "docker",
        "--identity-label=false",
        "--quiet",
        "-t",
        tag,
    ];
    if let Some(target) = target {
        build_command.extend(["--target", target]);
    }
    if let Some(platform) = platform {
        build_command.extend(["--platform", platform]);
    }
    let dockerfile = dockerfile.map(|name| context.join(name).display().to_string());
    if let Some(dockerfile) = &dockerfile {
        build_command.extend(["--file", dockerfile]);
    }
    for arg in build_args {
        build_command.extend(["--build-arg", arg]);
    }
    build_command.extend(extra_flags.iter().map(String::as_str));
    build_command.push(&context_arg);
    let what = format!("buildah build of {}", context.display());
    match run(&what, &mut buildah(&build_command)) {
        // buildah's RUN re-executes itself from a sealed in-memory copy;
        // sealing fails with EBUSY while another process briefly holds a
        // writable shared mapping of it (seen with two cases building at
        // once). That is the peer's transient failure, not a difference:
        // the build is tried once more, and fails for real the second time.
        Err(error) if error.contains("sealing memfd copy: Device or resource busy") => {
            eprintln!("{what}: retried once after buildah's transient memfd sealing failure");
            let _ = buildah(&["rm", "--all"]).output();
            run(&what, &mut buildah(&build_command))?;
        }
        result => {
            result?;
        }
    }
    let destination_arg = format!("docker://{destination}");
    let pushed = run(
        &format!("buildah push to {destination}"),
        &mut buildah(&["push", "--tls-verify=false", tag, &destination_arg]),
    );
    // Buildah leaves the vfs copies mounted nowhere but owned by root; the
    // temporary directory removes them. Containers it made are deleted
    // first so nothing keeps a lock on the storage.
    let _ = buildah(&["rm", "--all"]).output();
    pushed.map(|_| ())
}

/// Reads `reference` from the plain-HTTP registry with skopeo: its config
/// and the root filesystem its layers describe.
pub fn read_image(reference: &str) -> Result<Image, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    run(
        &format!("skopeo copy of {reference}"),
        Command::new("skopeo")
            // Uncompressed layers: gzip in a debug test build is slow.
            .args([
                "copy",
                "--quiet",
                "--dest-decompress",
                "--src-tls-verify=false",
            ])
            .arg(format!("docker://{reference}"))
            .arg(format!("dir:{}", dir.path().display())),
    )?;
    let blob = |digest: &str| {
        let path = dir.path().join(digest.trim_start_matches("sha256:"));
        std::fs::read(&path).map_err(|e| format!("{reference}: reading {}: {e}", path.display()))
    };
    let manifest: serde_json::Value = serde_json::from_slice(&blob("manifest.json")?)
        .map_err(|e| format!("{reference}: manifest.json: {e}"))?;
    // The config exactly as the registry serves it: a copy that converts
    // between Docker and OCI formats drops `Healthcheck` and `OnBuild`.
    let raw_config = run(
        &format!("skopeo inspect --config of {reference}"),
        Command::new("skopeo")
            .args(["inspect", "--raw", "--config", "--tls-verify=false"])
            .arg(format!("docker://{reference}")),
    )?;
    let config: serde_json::Value = serde_json::from_slice(&raw_config.stdout)
        .map_err(|e| format!("{reference}: its config: {e}"))?;
    let descriptors = manifest["layers"].as_array().cloned().unwrap_or_default();
    let mut layers: Vec<Box<dyn std::io::Read>> = Vec::new();
    for layer in &descriptors {
        let digest = layer["digest"].as_str().unwrap_or_default();
        let bytes = blob(digest)?;
        if bytes.starts_with(&[0x1f, 0x8b]) {
            layers.push(Box::new(flate2::read::GzDecoder::new(
                std::io::Cursor::new(bytes),
            )));
        } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            return Err(format!(
                "{reference}: layer {digest} is zstd-compressed, which the suite does not read"
            ));
        } else {
            layers.push(Box::new(std::io::Cursor::new(bytes)));
        }
    }
    let tree = rootfs::rootfs(layers).map_err(|e| format!("{reference}: {e}"))?;
    Ok(Image {
        config,
        tree,
        layers: descriptors.len(),
    })
}
