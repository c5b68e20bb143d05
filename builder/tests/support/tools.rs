//! The repository's scripts and pinned tools, for the tests that check
//! kiln's output with real clients (cosign, oras, a referrers registry) or
//! need a Debian root filesystem.

use std::path::{Path, PathBuf};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// What `scripts/<script> <args>` prints on stdout: a path (a tool's bin
/// directory, a cached tarball).
pub fn script_output(script: &str, args: &[&str]) -> PathBuf {
    let output = std::process::Command::new("bash")
        .arg(repo_root().join("scripts").join(script))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "scripts/{script} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// The bin directory of a tool `scripts/tools.sh` builds (cached by version).
pub fn tool_dir(name: &str) -> PathBuf {
    script_output("tools.sh", &[name])
}

/// A cosign key pair made by cosign itself in `dir` with `password`:
/// (private key, public key). cosign runs with `home` as its HOME, so its
/// caches stay in the test's directory.
pub fn cosign_key_pair(home: &Path, dir: &Path, password: &str) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let output = std::process::Command::new(tool_dir("cosign").join("cosign"))
        .arg("generate-key-pair")
        .arg(format!(
            "--output-key-prefix={}",
            dir.join("cosign").display()
        ))
        .env("HOME", home)
        .env("COSIGN_PASSWORD", password)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cosign generate-key-pair: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (dir.join("cosign.key"), dir.join("cosign.pub"))
}

/// A plain-HTTP GET of a registry's API: (status, body).
pub async fn http_get(url: &str, accept: &str) -> (u16, Vec<u8>) {
    kiln_builder::tls::install_crypto_provider();
    let response = reqwest::Client::new()
        .get(url)
        .header("Accept", accept)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}
