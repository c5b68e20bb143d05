//! The fuzz targets that unpack hostile archives run in a throw-away root:
//! a private mount namespace whose `/` is a fresh tmpfs (with `/tmp` and a
//! bind of `/proc`), entered once, before the first input. An input that
//! escapes its unpack root then lands in that tmpfs, never on the machine
//! running the fuzzer. Needs root, as the test suite does.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Once;

pub fn contain_process() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use rustix::mount::{MountFlags, MountPropagationFlags};
        // SAFETY: libFuzzer calls the target on one thread; CLONE_NEWNS
        // (and the CLONE_FS it implies) changes only this thread's view
        // of the filesystem, which is the point.
        #[allow(unsafe_code)]
        let unshared =
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) };
        unshared.expect("the fuzz targets run in a private mount namespace and need root");
        rustix::mount::mount_change("/", MountPropagationFlags::REC | MountPropagationFlags::PRIVATE)
            .expect("make / private");
        rustix::mount::mount("tmpfs", "/tmp", "tmpfs", MountFlags::empty(), c"mode=0755")
            .expect("mount a tmpfs over /tmp");
        let root = Path::new("/tmp/root");
        for (dir, mode) in [("", 0o755), ("tmp", 0o1777), ("etc", 0o755), ("proc", 0o555)] {
            fs::create_dir_all(root.join(dir)).expect("create the throw-away root");
            fs::set_permissions(root.join(dir), fs::Permissions::from_mode(mode))
                .expect("set a mode in the throw-away root");
        }
        rustix::mount::mount_bind_recursive("/proc", root.join("proc")).expect("bind /proc");
        rustix::process::chroot(root).expect("chroot into the throw-away root");
        std::env::set_current_dir("/").expect("cd /");
    });
}

/// Everything under `dir` except `skip`, with content and mtime, sorted:
/// compared before and after an input to see that nothing outside the
/// unpack root changed.
pub fn snapshot(dir: &Path, skip: &Path, out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        out.push(format!("unreadable {}", dir.display()));
        return;
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path == skip {
            continue;
        }
        let Ok(meta) = fs::symlink_metadata(&path) else {
            out.push(format!("vanished {}", path.display()));
            continue;
        };
        let content = if meta.is_file() {
            fs::read(&path).unwrap_or_default()
        } else {
            Vec::new()
        };
        out.push(format!(
            "{} {:?} {:o} {:?} {:?}",
            path.display(),
            meta.file_type(),
            meta.permissions().mode(),
            meta.modified().ok(),
            content
        ));
        if meta.is_dir() {
            snapshot(&path, skip, out);
        }
    }
}
