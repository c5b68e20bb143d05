//! The container's own `/` as a stage's root filesystem
//! (`--isolation=inplace`): which of its paths a build never touches, and
//! emptying it of everything else.
//!
//! The protected paths are the configured ones (`/kiln`, `/kaniko`,
//! `/proc`, `/sys`, `/dev`, `/var/run`, `--ignore-path`s, …) and every mount
//! point of the container, read from its mount table: `/etc/hosts`,
//! `/etc/resolv.conf`, `/etc/hostname`, `/dev/termination-log`, secret and
//! workspace volumes. Nothing at or below one is removed, written by a
//! layer (the unpacker's `protected_paths`) or captured by a snapshot (the
//! snapshotter's ignore list, which reads the mount table itself).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, RawMode};

use super::FsError;
use super::in_root::{clean_image_path, resolve};
use super::mounts::mount_points_below;
use super::root_dir::{RootDir, missing};

/// Where the kernel lists this process's mounts.
pub const MOUNT_TABLE: &str = "/proc/self/mountinfo";

/// The image paths an in-place build protects: `configured` (cleaned,
/// absolute) and every mount point below `/` in `mountinfo` (the text of
/// [`MOUNT_TABLE`]), without duplicates, in that order. `/` itself is never
/// one: a configured `/` or the root mount is dropped.
pub fn protected_paths(configured: &[PathBuf], mountinfo: &str) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = Vec::new();
    let mounts = mount_points_below(mountinfo, Path::new("/"));
    let mounts = mounts
        .iter()
        .map(|rel| PathBuf::from(OsStr::from_bytes(rel)));
    for path in configured.iter().cloned().chain(mounts) {
        let clean = clean_image_path(&path);
        if clean.as_os_str().is_empty() {
            continue;
        }
        let absolute = Path::new("/").join(clean);
        if !paths.contains(&absolute) {
            paths.push(absolute);
        }
    }
    paths
}

/// Host paths of `protected` (image paths) inside `root`: each as written
/// and, when it is a symlink inside the root, what it leads to (`/var/run
/// -> /run`), as the unpacker and the snapshotter protect them; a link to
/// the root itself protects nothing more.
pub fn protected_hosts(root: &Path, protected: &[PathBuf]) -> Result<Vec<PathBuf>, FsError> {
    let mut hosts = Vec::new();
    for path in protected {
        let clean = clean_image_path(path);
        let lexical = root.join(&clean);
        let resolved = resolve(root, &clean, true)?;
        for host in [lexical, resolved] {
            if host != root && !hosts.contains(&host) {
                hosts.push(host);
            }
        }
    }
    Ok(hosts)
}

/// What [`clear_root`] does with one entry, given the protected host paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clearing {
    /// At or below a protected path: left alone.
    Keep,
    /// A directory holding a protected path: its other children go.
    Descend,
    /// Removed, a whole tree for a directory (symlinks are not followed).
    Remove,
}

/// The path filter of [`clear_root`]: `host` is an entry of the root, a
/// directory or not (a symlink never counts as a directory).
pub fn clearing(host: &Path, is_dir: bool, protected: &[PathBuf]) -> Clearing {
    if protected.iter().any(|p| host.starts_with(p)) {
        return Clearing::Keep;
    }
    if is_dir && protected.iter().any(|p| p.starts_with(host)) {
        return Clearing::Descend;
    }
    Clearing::Remove
}

/// Removes everything below `root` except the `protected` image paths
/// (with their ancestors, which stay as directories), so that unpacking a
/// stage's layers there gives exactly the stage's files. Returns how many
/// entries were removed (a tree counts once). Never crosses into a
/// protected path; symlinks are removed, never followed. Every call is made
/// relative to a descriptor of the root ([`RootDir`]): a directory that a
/// leftover process of a RUN step swaps for a link while the root is
/// cleared makes the clearing fail, never act on what the link names. The
/// walk keeps its own stack, so no tree is too deep for it.
pub fn clear_root(root: &Path, protected: &[PathBuf]) -> Result<u64, FsError> {
    let hosts = protected_hosts(root, protected)?;
    let dir = RootDir::open(root).map_err(FsError::io("open", root))?;
    let mut removed = 0;
    let mut pending = vec![root.to_path_buf()];
    while let Some(current) = pending.pop() {
        let names = match dir.read_dir(&current) {
            Ok(names) => names,
            Err(err) if missing(&err) => continue,
            Err(err) => return Err(FsError::io("read directory", &current)(err)),
        };
        for name in names {
            let child = current.join(name);
            let stat = match dir.lstat(&child) {
                Ok(Some(stat)) => stat,
                Ok(None) => continue,
                Err(err) => return Err(FsError::io("inspect", &child)(err)),
            };
            let is_dir = FileType::from_raw_mode(stat.st_mode as RawMode) == FileType::Directory;
            match clearing(&child, is_dir, &hosts) {
                Clearing::Keep => {}
                Clearing::Descend => pending.push(child),
                Clearing::Remove => match dir.remove_tree(&child) {
                    Ok(()) => removed += 1,
                    Err(err) if missing(&err) => {}
                    Err(err) => return Err(FsError::io("remove", &child)(err)),
                },
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn paths(list: &[&str]) -> Vec<PathBuf> {
        list.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn protected_paths_from_a_container_mount_table() {
        // A Kubernetes pod's mount table, trimmed.
        let mountinfo = "\
1480 1290 0:200 / / rw,relatime master:420 - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
1481 1480 0:203 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
1482 1480 0:204 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
1483 1482 0:205 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw,gid=5,mode=620,ptmxmode=666
1484 1480 0:190 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
1488 1480 259:1 /var/lib/kubelet/pods/p/volumes/kubernetes.io~empty-dir/workspace /workspace rw,relatime - ext4 /dev/nvme0n1p1 rw
1489 1480 259:1 /var/lib/kubelet/pods/p/etc-hosts /etc/hosts rw,relatime - ext4 /dev/nvme0n1p1 rw
1490 1482 259:1 /var/lib/kubelet/pods/p/containers/kiln/1 /dev/termination-log rw,relatime - ext4 /dev/nvme0n1p1 rw
1491 1480 259:1 /var/lib/containerd/sandboxes/s/hostname /etc/hostname rw,relatime - ext4 /dev/nvme0n1p1 rw
1492 1480 259:1 /var/lib/containerd/sandboxes/s/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/nvme0n1p1 rw
1493 1480 0:180 / /kaniko/.docker ro,relatime - tmpfs tmpfs rw
1494 1480 0:181 / /var/run/secrets/kubernetes.io/serviceaccount ro,relatime - tmpfs tmpfs rw
1495 1480 0:182 / /my\\040volume rw,relatime - tmpfs tmpfs rw
1296 1481 0:206 /bus /proc/bus ro,nosuid,nodev,noexec,relatime - proc proc rw
";
        let configured = paths(&[
            "/proc",
            "/sys",
            "/dev",
            "/kiln",
            "/kaniko",
            "/var/run",
            "opt/ignored/",
            "/",
            "/kiln",
        ]);
        let got = protected_paths(&configured, mountinfo);
        let want = paths(&[
            "/proc",
            "/sys",
            "/dev",
            "/kiln",
            "/kaniko",
            "/var/run",
            "/opt/ignored",
            "/dev/pts",
            "/workspace",
            "/etc/hosts",
            "/dev/termination-log",
            "/etc/hostname",
            "/etc/resolv.conf",
            "/kaniko/.docker",
            "/var/run/secrets/kubernetes.io/serviceaccount",
            "/my volume",
            "/proc/bus",
        ]);
        assert_eq!(got, want);
        assert_eq!(protected_paths(&[], ""), Vec::<PathBuf>::new());
    }

    #[test]
    fn clearing_table() {
        let protected = paths(&["/r/kiln", "/r/etc/hosts", "/r/var/run"]);
        let cases = [
            ("/r/kiln", true, Clearing::Keep),
            ("/r/kiln/work/x", false, Clearing::Keep),
            ("/r/etc", true, Clearing::Descend),
            // A symlink or file where a protected path's parent would be.
            ("/r/etc", false, Clearing::Remove),
            ("/r/etc/hosts", false, Clearing::Keep),
            ("/r/etc/passwd", false, Clearing::Remove),
            ("/r/var", true, Clearing::Descend),
            ("/r/var/lib", true, Clearing::Remove),
            ("/r/kilnx", true, Clearing::Remove),
            ("/r/usr", true, Clearing::Remove),
        ];
        for (host, is_dir, want) in cases {
            assert_eq!(
                clearing(Path::new(host), is_dir, &protected),
                want,
                "{host} dir={is_dir}"
            );
        }
    }

    #[test]
    fn clear_root_keeps_protected_paths_and_their_ancestors()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        for d in [
            "kiln/work",
            "etc/ssl",
            "usr/bin",
            "var/lib",
            "run/lock",
            "data",
        ] {
            fs::create_dir_all(root.join(d))?;
        }
        for f in [
            "kiln/executor",
            "etc/hosts",
            "etc/passwd",
            "etc/ssl/ca.crt",
            "usr/bin/sh",
            "data/keep",
        ] {
            fs::write(root.join(f), f)?;
        }
        let outside = tempfile::tempdir()?;
        fs::write(outside.path().join("keep"), "outside")?;
        // /var/run -> /run: what it leads to is protected too.
        symlink("/run", root.join("var/run"))?;
        // A link out of the root is removed, never followed.
        symlink(outside.path(), root.join("escape"))?;
        symlink(outside.path(), root.join("usr/bin/escape"))?;
        let removed = clear_root(root, &paths(&["/kiln", "/etc/hosts", "/var/run", "/data"]))?;
        let mut left = Vec::new();
        for entry in walk(root)? {
            left.push(entry.strip_prefix(root)?.display().to_string());
        }
        left.sort();
        assert_eq!(
            left,
            [
                "data",
                "data/keep",
                "etc",
                "etc/hosts",
                "kiln",
                "kiln/executor",
                "kiln/work",
                "run",
                "run/lock",
                "var",
                "var/run",
            ]
        );
        // etc/passwd, etc/ssl, usr, var/lib, escape.
        assert_eq!(removed, 5);
        assert_eq!(fs::read_to_string(root.join("etc/hosts"))?, "etc/hosts");
        assert_eq!(fs::read_to_string(outside.path().join("keep"))?, "outside");
        Ok(())
    }

    #[test]
    fn clearing_never_follows_a_directory_swapped_for_a_link_mid_walk()
    -> Result<(), Box<dyn std::error::Error>> {
        // A process a RUN step left behind swaps the directories the
        // clearing descends into (they hold protected paths) for links to
        // a directory outside the root, one after the other, while the
        // clearing works through their files: names it listed before the
        // swap then lead outside, where the same names wait. Whatever the
        // race gives (the link removed, or the clearing refused), nothing
        // outside is touched.
        let files = 200;
        let dirs = 8;
        let outside = tempfile::tempdir()?;
        for n in 0..files {
            fs::write(outside.path().join(format!("f{n}")), "outside")?;
        }
        let protected: Vec<PathBuf> = (0..dirs)
            .map(|i| PathBuf::from(format!("/d{i}/keep")))
            .collect();
        let mut refused = 0;
        let rounds = 5;
        for round in 0..rounds {
            let dir = tempfile::tempdir()?;
            let root = dir.path().to_path_buf();
            for i in 0..dirs {
                fs::create_dir_all(root.join(format!("d{i}/keep")))?;
                for n in 0..files {
                    fs::write(root.join(format!("d{i}/f{n}")), "x")?;
                }
            }
            let swapper = {
                let root = root.clone();
                let target = outside.path().to_path_buf();
                std::thread::spawn(move || {
                    for i in 0..dirs {
                        let d = root.join(format!("d{i}"));
                        if fs::rename(&d, root.join(format!("moved{i}"))).is_ok() {
                            let _ = symlink(&target, &d);
                        }
                        std::thread::sleep(std::time::Duration::from_micros(200));
                    }
                })
            };
            let result = clear_root(&root, &protected);
            swapper
                .join()
                .map_err(|_| format!("round {round}: the swapper panicked"))?;
            if result.is_err() {
                refused += 1;
            }
            let left = (0..files)
                .filter(|n| outside.path().join(format!("f{n}")).exists())
                .count();
            assert_eq!(
                left, files,
                "round {round}: the clearing removed files outside the root"
            );
        }
        eprintln!("clearing refused in {refused} of {rounds} rounds");
        Ok(())
    }

    #[test]
    fn clearing_removes_trees_deeper_than_path_max() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        // 1,500 levels of 4-byte names: 6,000 bytes, past PATH_MAX, made
        // one level at a time relative to the one above.
        let mut level = std::fs::File::open(root)?;
        for _ in 0..1500 {
            rustix::fs::mkdirat(&level, "ddd", rustix::fs::Mode::from_raw_mode(0o755))?;
            level = std::fs::File::from(rustix::fs::openat(
                &level,
                "ddd",
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
                rustix::fs::Mode::empty(),
            )?);
        }
        fs::create_dir(root.join("kiln"))?;
        assert_eq!(clear_root(root, &paths(&["/kiln"]))?, 1);
        assert!(!root.join("ddd").exists());
        assert!(root.join("kiln").is_dir());
        Ok(())
    }

    fn walk(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            out.push(path.clone());
            if fs::symlink_metadata(&path)?.is_dir() {
                out.extend(walk(&path)?);
            }
        }
        Ok(out)
    }
}
