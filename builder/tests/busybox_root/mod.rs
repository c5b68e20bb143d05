//! The root filesystem the RUN tests (`run_chroot`, `run_sandbox`) run
//! their steps in: the host's static busybox and the applets a test asks
//! for, with its own passwd and group files.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

/// Debian's busybox-static, installed by scripts/setup.sh.
pub const BUSYBOX: &str = "/bin/busybox";

/// Creates `<dir>/rootfs` with `/bin/busybox`, a link per applet in `/bin`,
/// and `/etc/passwd` and `/etc/group`; returns its path.
pub fn rootfs(dir: &Path, applets: &[&str], passwd: &str, group: &str) -> PathBuf {
    let root = dir.join("rootfs");
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
    fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o755)).unwrap();
    for applet in applets {
        symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    fs::write(root.join("etc/passwd"), passwd).unwrap();
    fs::write(root.join("etc/group"), group).unwrap();
    root
}
