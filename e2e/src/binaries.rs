//! Binaries of this workspace for the pod runner's image table.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum BinaryError {
    #[error("could not tell the target directory from the test executable {exe}: {reason}")]
    TargetDir { exe: PathBuf, reason: String },
    #[error("could not run `cargo build -p {package} --bin {bin}`: {source}")]
    Spawn {
        package: String,
        bin: String,
        source: std::io::Error,
    },
    #[error(
        "`cargo build -p {package} --bin {bin}` failed ({status}); build it by hand to see why"
    )]
    Build {
        package: String,
        bin: String,
        status: std::process::ExitStatus,
    },
}

/// The profile directory (`…/target/debug`) a test executable
/// (`…/target/debug/deps/<test>-<hash>`) was built into.
pub fn profile_dir_of(test_executable: &Path) -> Option<&Path> {
    let deps = test_executable.parent()?;
    (deps.file_name()? == "deps").then_some(())?;
    deps.parent()
}

/// Binaries `cargo build` was already run for in this test process.
static BUILT: Mutex<BTreeSet<(String, String)>> = Mutex::new(BTreeSet::new());

/// The binary `bin` of workspace package `package` (e.g. `kiln-builder`,
/// `kiln`), from the target directory this test was built into. `cargo
/// build` is run for it once per test process, whether or not a binary is
/// there: a test run of one crate does not build the other crates'
/// binaries, and one left from an earlier build may be stale (cargo does
/// nothing when it is current).
pub fn workspace_binary(package: &str, bin: &str) -> Result<PathBuf, BinaryError> {
    let exe = std::env::current_exe().map_err(|error| BinaryError::TargetDir {
        exe: PathBuf::new(),
        reason: error.to_string(),
    })?;
    let profile = profile_dir_of(&exe).ok_or_else(|| BinaryError::TargetDir {
        exe: exe.clone(),
        reason: "it is not in <target>/<profile>/deps/".to_string(),
    })?;
    let binary = profile.join(bin);
    // Held while building, so concurrent tests wait for one build.
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let key = (package.to_string(), bin.to_string());
    if built.contains(&key) && binary.is_file() {
        return Ok(binary);
    }
    let target = profile.parent().ok_or_else(|| BinaryError::TargetDir {
        exe: exe.clone(),
        reason: "the profile directory has no parent".to_string(),
    })?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command
        .args(["build", "--package", package, "--bin", bin])
        .env("CARGO_TARGET_DIR", target)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile.file_name().is_some_and(|name| name == "release") {
        command.arg("--release");
    }
    let status = command.status().map_err(|source| BinaryError::Spawn {
        package: package.to_string(),
        bin: bin.to_string(),
        source,
    })?;
    if !status.success() {
        return Err(BinaryError::Build {
            package: package.to_string(),
            bin: bin.to_string(),
            status,
        });
    }
    built.insert(key);
    Ok(binary)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn profile_dir_is_two_levels_above_a_test_executable() {
        for (exe, expected) in [
            ("/t/debug/deps/cluster-0123", Some("/t/debug")),
            ("/t/release/deps/runner-ab", Some("/t/release")),
            ("/t/debug/kiln", None),
            ("cluster", None),
        ] {
            assert_eq!(
                profile_dir_of(Path::new(exe)),
                expected.map(Path::new),
                "{exe}"
            );
        }
    }
}
