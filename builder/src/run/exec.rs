//! What the command is and what it sees, decided before anything is forked:
//! its environment and where `argv[0]` is in the image.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::{DEFAULT_PATH, RunError};
use crate::fs::in_root::is_missing;
use crate::fs::{EntryKind, create_dir_all_in_root, entry_kind, resolve_in_root};

/// The step's environment: `env` in order, a later entry replacing an
/// earlier one of the same name in place, then `PATH` ([`DEFAULT_PATH`])
/// and `HOME` (`home`, the user's home directory) when `env` has none,
/// as Docker and runc add them. Nothing of kiln's own environment.
pub(super) fn command_env(
    env: &[(String, String)],
    home: &str,
) -> Result<Vec<(String, String)>, RunError> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(env.len() + 2);
    for (name, value) in env {
        if name.is_empty() || name.contains('=') || name.contains('\0') || value.contains('\0') {
            return Err(RunError::InvalidEnv { name: name.clone() });
        }
        match out.iter_mut().find(|(existing, _)| existing == name) {
            Some(slot) => slot.1 = value.clone(),
            None => out.push((name.clone(), value.clone())),
        }
    }
    if !out.iter().any(|(name, _)| name == "PATH") {
        out.push(("PATH".to_string(), DEFAULT_PATH.to_string()));
    }
    if !out.iter().any(|(name, _)| name == "HOME") {
        out.push(("HOME".to_string(), home.to_string()));
    }
    Ok(out)
}

/// The value of `PATH` in an environment built by [`command_env`].
pub(super) fn path_of(env: &[(String, String)]) -> &str {
    env.iter()
        .find(|(name, _)| name == "PATH")
        .map(|(_, value)| value.as_str())
        .unwrap_or(DEFAULT_PATH)
}

/// Where the kernel will find `name` once chrooted into `root`, as an
/// in-image path: a name with a `/` is taken as it is (relative to
/// `workdir` when relative); a bare name is searched in `path`'s
/// directories the way `execvp` does (an empty entry is the working
/// directory; a match that is not executable is skipped, and reported when
/// nothing else matches).
pub(super) fn resolve_executable(
    root: &Path,
    name: &str,
    path: &str,
    workdir: &str,
) -> Result<String, RunError> {
    if name.contains('/') {
        let image = in_dir(workdir, name);
        return match probe(root, &image)? {
            Probe::Executable => Ok(image),
            Probe::Missing => Err(RunError::ExecutableNotFound {
                name: name.to_string(),
            }),
            Probe::NotExecutable => Err(RunError::NotExecutable {
                name: name.to_string(),
                path: image,
            }),
        };
    }
    if name.is_empty() {
        return Err(RunError::ExecutableNotFound {
            name: name.to_string(),
        });
    }
    let mut not_executable = None;
    for dir in path.split(':') {
        let dir = if dir.is_empty() {
            workdir.to_string()
        } else {
            in_dir(workdir, dir)
        };
        let candidate = in_dir(&dir, name);
        match probe(root, &candidate)? {
            Probe::Executable => return Ok(candidate),
            Probe::NotExecutable => {
                not_executable.get_or_insert(candidate);
            }
            Probe::Missing => {}
        }
    }
    match not_executable {
        Some(path) => Err(RunError::NotExecutable {
            name: name.to_string(),
            path,
        }),
        None => Err(RunError::NotInPath {
            name: name.to_string(),
            path: path.to_string(),
        }),
    }
}

/// WORKDIR is created (0755, owned by the user) when missing.
pub(super) fn ensure_workdir(
    root: &Path,
    workdir: &str,
    uid: u32,
    gid: u32,
) -> Result<(), RunError> {
    let workdir_error = |source| RunError::Workdir {
        workdir: workdir.to_string(),
        source,
    };
    match entry_kind(root, workdir).map_err(workdir_error)? {
        Some(EntryKind::Directory) => Ok(()),
        None => create_dir_all_in_root(root, workdir, 0o755, uid, gid)
            .map(drop)
            .map_err(workdir_error),
        Some(_) => Err(RunError::WorkdirNotDirectory {
            workdir: workdir.to_string(),
        }),
    }
}

/// What an `execve` error usually means for a file that exists.
pub(super) fn exec_hint(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(code) if code == rustix::io::Errno::NOENT.raw_os_error() => {
            " (the script's interpreter or the binary's dynamic loader is missing in the image)"
        }
        Some(code) if code == rustix::io::Errno::NOEXEC.raw_os_error() => {
            " (not an executable format for this machine)"
        }
        _ => "",
    }
}

/// `path` when absolute, else `path` under `dir` (an absolute image path).
fn in_dir(dir: &str, path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else if dir.ends_with('/') {
        format!("{dir}{path}")
    } else {
        format!("{dir}/{path}")
    }
}

enum Probe {
    Executable,
    NotExecutable,
    Missing,
}

/// Whether `image_path` is a regular file with an execute bit in the image
/// (following its symlinks inside the root).
fn probe(root: &Path, image_path: &str) -> Result<Probe, RunError> {
    let lookup = |source| RunError::Lookup {
        root: root.to_path_buf(),
        path: image_path.to_string(),
        source,
    };
    let host = resolve_in_root(root, image_path).map_err(lookup)?;
    match fs::symlink_metadata(&host) {
        Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => {
            Ok(Probe::Executable)
        }
        Ok(_) => Ok(Probe::NotExecutable),
        Err(err) if is_missing(&err) => Ok(Probe::Missing),
        Err(err) => Err(RunError::io("inspect", host)(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn command_env_table() {
        type Env<'a> = &'a [(&'a str, &'a str)];
        let cases: [(Env, Env); 4] = [
            (&[], &[("PATH", DEFAULT_PATH), ("HOME", "/home/app")]),
            (
                &[("A", "1"), ("PATH", "/x"), ("B", "2"), ("A", "3")],
                &[
                    ("A", "3"),
                    ("PATH", "/x"),
                    ("B", "2"),
                    ("HOME", "/home/app"),
                ],
            ),
            (
                &[("HOME", "/h"), ("EMPTY", "")],
                &[("HOME", "/h"), ("EMPTY", ""), ("PATH", DEFAULT_PATH)],
            ),
            (
                &[("X", "a=b")],
                &[("X", "a=b"), ("PATH", DEFAULT_PATH), ("HOME", "/home/app")],
            ),
        ];
        for (input, want) in cases {
            let got = command_env(&pairs(input), "/home/app").map_err(|e| e.to_string());
            assert_eq!(got, Ok(pairs(want)), "input {input:?}");
        }
    }

    #[test]
    fn command_env_rejects_bad_names() {
        for name in ["", "A=B", "A\0"] {
            let got = command_env(&pairs(&[(name, "v")]), "/").map_err(|e| e.to_string());
            assert_eq!(
                got,
                Err(format!(
                    "invalid environment variable {name:?} for RUN: a name must be non-empty and \
                     without '=', and neither name nor value may contain a NUL byte"
                ))
            );
        }
        assert!(command_env(&pairs(&[("A", "x\0y")]), "/").is_err());
    }

    #[test]
    fn resolve_executable_table() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        for d in ["bin", "usr/bin", "app", "notexec"] {
            fs::create_dir_all(root.join(d))?;
        }
        fs::write(root.join("bin/busybox"), b"")?;
        fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o755))?;
        symlink("busybox", root.join("bin/sh"))?;
        // An absolute link is resolved inside the root, not on the host.
        symlink("/bin/busybox", root.join("usr/bin/env"))?;
        fs::write(root.join("app/run.sh"), b"")?;
        fs::set_permissions(root.join("app/run.sh"), fs::Permissions::from_mode(0o700))?;
        fs::write(root.join("notexec/tool"), b"")?;
        fs::set_permissions(root.join("notexec/tool"), fs::Permissions::from_mode(0o644))?;
        symlink("/nowhere", root.join("bin/dangling"))?;

        let ok = [
            ("/bin/sh", "/bin:/usr/bin", "/", "/bin/sh"),
            ("sh", "/usr/bin:/bin", "/", "/bin/sh"),
            ("env", "/bin:/usr/bin", "/", "/usr/bin/env"),
            ("./run.sh", "", "/app", "/app/./run.sh"),
            ("run.sh", "/bin::/usr/bin", "/app", "/app/run.sh"),
            ("run.sh", "bin:app", "/", "/app/run.sh"),
        ];
        for (name, path, workdir, want) in ok {
            let got = resolve_executable(root, name, path, workdir).map_err(|e| e.to_string());
            assert_eq!(got, Ok(want.to_string()), "name {name:?} PATH {path:?}");
        }

        let errors = [
            (
                "/bin/bash",
                "/bin",
                "/",
                "exec /bin/bash: no such file or directory in the image",
            ),
            (
                "/bin/dangling",
                "/bin",
                "/",
                "exec /bin/dangling: no such file or directory in the image",
            ),
            (
                "bash",
                "/usr/local/bin:/bin",
                "/",
                "exec bash: executable file not found in $PATH (/usr/local/bin:/bin) in the image",
            ),
            (
                "tool",
                "/bin:/notexec",
                "/",
                "exec tool: /notexec/tool is not an executable file in the image",
            ),
            (
                "/app",
                "/bin",
                "/",
                "exec /app: /app is not an executable file in the image",
            ),
            (
                "",
                "/bin",
                "/",
                "exec : no such file or directory in the image",
            ),
        ];
        for (name, path, workdir, want) in errors {
            let got = resolve_executable(root, name, path, workdir).map_err(|e| e.to_string());
            assert_eq!(got, Err(want.to_string()), "name {name:?} PATH {path:?}");
        }
        Ok(())
    }
}
