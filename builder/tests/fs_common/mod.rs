//! Shared by the `fs_*` tests: crafted tar streams (raw headers, so `..`
//! and absolute names get through) and a sandbox whose outside is watched.

#![allow(dead_code)]

use std::cell::Cell;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

/// One tar entry, written byte for byte as given.
#[derive(Clone, Debug)]
pub struct TarEntry {
    pub name: Vec<u8>,
    pub kind: EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub data: Vec<u8>,
    pub link: Vec<u8>,
    pub device: (u32, u32),
    pub pax: Vec<(String, Vec<u8>)>,
}

pub const MTIME: u64 = 1_600_000_000;

impl TarEntry {
    fn new(name: impl AsRef<[u8]>, kind: EntryType, mode: u32) -> TarEntry {
        TarEntry {
            name: name.as_ref().to_vec(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: MTIME,
            data: Vec::new(),
            link: Vec::new(),
            device: (0, 0),
            pax: Vec::new(),
        }
    }

    pub fn file(name: impl AsRef<[u8]>, mode: u32, data: impl AsRef<[u8]>) -> TarEntry {
        let mut entry = TarEntry::new(name, EntryType::Regular, mode);
        entry.data = data.as_ref().to_vec();
        entry
    }

    pub fn dir(name: impl AsRef<[u8]>, mode: u32) -> TarEntry {
        TarEntry::new(name, EntryType::Directory, mode)
    }

    pub fn symlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> TarEntry {
        let mut entry = TarEntry::new(name, EntryType::Symlink, 0o777);
        entry.link = target.as_ref().to_vec();
        entry
    }

    pub fn hardlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> TarEntry {
        let mut entry = TarEntry::new(name, EntryType::Link, 0o644);
        entry.link = target.as_ref().to_vec();
        entry
    }

    pub fn fifo(name: impl AsRef<[u8]>, mode: u32) -> TarEntry {
        TarEntry::new(name, EntryType::Fifo, mode)
    }

    pub fn char_device(name: impl AsRef<[u8]>, mode: u32, major: u32, minor: u32) -> TarEntry {
        let mut entry = TarEntry::new(name, EntryType::Char, mode);
        entry.device = (major, minor);
        entry
    }

    /// A whiteout or opaque marker is an empty regular file.
    pub fn marker(name: impl AsRef<[u8]>) -> TarEntry {
        TarEntry::new(name, EntryType::Regular, 0o644)
    }

    pub fn owner(mut self, uid: u64, gid: u64) -> TarEntry {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub fn mtime(mut self, mtime: u64) -> TarEntry {
        self.mtime = mtime;
        self
    }

    pub fn pax(mut self, key: &str, value: impl AsRef<[u8]>) -> TarEntry {
        self.pax.push((key.to_string(), value.as_ref().to_vec()));
        self
    }
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    // The length counts its own digits.
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut record = format!("{len} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    assert_eq!(record.len(), len);
    record
}

/// Serialises entries into a plain tar stream. Names and link targets up
/// to 100 bytes go into the header as they are; longer ones into PAX.
pub fn tar(entries: &[TarEntry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut pax = entry.pax.clone();
        if entry.name.len() > 100 {
            pax.push(("path".to_string(), entry.name.clone()));
        }
        if entry.link.len() > 100 {
            pax.push(("linkpath".to_string(), entry.link.clone()));
        }
        if !pax.is_empty() {
            let data: Vec<u8> = pax.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
            let mut header = Header::new_ustar();
            let name = b"PaxHeaders/entry";
            header.as_old_mut().name[..name.len()].copy_from_slice(name);
            header.set_entry_type(EntryType::XHeader);
            header.set_mode(0o644);
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder.append(&header, data.as_slice()).unwrap();
        }
        let mut header = Header::new_gnu();
        let name = &entry.name[..entry.name.len().min(100)];
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        let link = &entry.link[..entry.link.len().min(100)];
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        header.set_entry_type(entry.kind);
        header.set_mode(entry.mode);
        header.set_uid(entry.uid);
        header.set_gid(entry.gid);
        header.set_mtime(entry.mtime);
        header.set_size(entry.data.len() as u64);
        header.set_device_major(entry.device.0).unwrap();
        header.set_device_minor(entry.device.1).unwrap();
        header.set_cksum();
        builder.append(&header, entry.data.as_slice()).unwrap();
    }
    builder.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

/// A temporary directory holding the root four levels down (so `..`
/// escapes land inside the sandbox, where they are seen) and an `outside`
/// directory with a sentinel file.
pub struct Sandbox {
    _dir: tempfile::TempDir,
    pub base: PathBuf,
    pub root: PathBuf,
    pub outside: PathBuf,
}

impl Sandbox {
    /// A sandbox in a throw-away root (see [`contain_thread`]): whatever a
    /// hostile layer manages, the machine running the tests is not touched.
    pub fn new() -> Sandbox {
        contain_thread();
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let base = dir.path().to_path_buf();
        let root = base.join("l1/l2/l3/root");
        fs::create_dir_all(&root).unwrap();
        let outside = base.join("outside");
        fs::create_dir_all(outside.join("dir")).unwrap();
        fs::write(outside.join("sentinel"), "sentinel\n").unwrap();
        fs::write(outside.join("dir/inner"), "inner\n").unwrap();
        Sandbox {
            _dir: dir,
            base,
            root,
            outside,
        }
    }

    /// The outside directory as an absolute host path.
    pub fn outside_abs(&self) -> String {
        self.outside.display().to_string()
    }

    /// The outside directory without its leading `/`: where a chrooted
    /// writer of `outside_abs()` ends up below the root.
    pub fn outside_rel(&self) -> String {
        self.outside_abs().trim_start_matches('/').to_string()
    }

    /// Everything in the sandbox but the root, with times: any write,
    /// creation or `utimensat` outside the root changes it.
    /// The throw-away root's own `/etc` and `/usr` are included: a layer
    /// that reaches them would have reached the machine's without the
    /// containment.
    pub fn outside_snapshot(&self) -> Vec<String> {
        let mut lines = Vec::new();
        walk(&self.base, &self.base, Some(&self.root), true, &mut lines);
        for system_dir in ["/etc", "/usr"] {
            let meta = fs::symlink_metadata(system_dir).unwrap();
            lines.push(format!(
                "{system_dir} {:04o} @{}.{}",
                meta.permissions().mode() & 0o7777,
                meta.mtime(),
                meta.mtime_nsec()
            ));
            walk(
                Path::new("/"),
                Path::new(system_dir),
                None,
                true,
                &mut lines,
            );
        }
        lines.sort();
        lines
    }

    pub fn tree(&self) -> Vec<String> {
        tree(&self.root)
    }
}

/// The tree below `root` as sorted lines: `d 0755 etc`,
/// `f 0644 etc/hosts "text"`, `l bin/sh -> busybox`, `p 0600 fifo`,
/// `c 0666 dev/null 1,3`.
pub fn tree(root: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    walk(root, root, None, false, &mut lines);
    lines.sort();
    lines
}

fn walk(base: &Path, dir: &Path, skip: Option<&Path>, times: bool, lines: &mut Vec<String>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if Some(path.as_path()) == skip {
            continue;
        }
        let meta = fs::symlink_metadata(&path).unwrap();
        let rel = path.strip_prefix(base).unwrap().display().to_string();
        let mode = meta.permissions().mode() & 0o7777;
        let ft = meta.file_type();
        let mut line = if ft.is_symlink() {
            let target = fs::read_link(&path).unwrap();
            format!("l {rel} -> {}", target.display())
        } else if ft.is_dir() {
            format!("d {mode:04o} {rel}")
        } else if ft.is_file() {
            let content = fs::read(&path).unwrap();
            format!("f {mode:04o} {rel} {:?}", String::from_utf8_lossy(&content))
        } else if ft.is_fifo() {
            format!("p {mode:04o} {rel}")
        } else if ft.is_char_device() {
            let rdev = meta.rdev();
            format!("c {mode:04o} {rel} {},{}", major(rdev), minor(rdev))
        } else {
            format!("? {mode:04o} {rel}")
        };
        if times {
            line.push_str(&format!(" @{}.{}", meta.mtime(), meta.mtime_nsec()));
        }
        lines.push(line);
        if ft.is_dir() {
            walk(base, &path, skip, times, lines);
        }
    }
}

fn major(rdev: u64) -> u64 {
    ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0xfff)
}

fn minor(rdev: u64) -> u64 {
    ((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff)
}

/// Whether this process may chown (root): tests about ownership differ.
pub fn is_root() -> bool {
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe");
    fs::write(&probe, "").unwrap();
    fs::metadata(&probe).unwrap().uid() == 0
}

pub fn lines(expected: &[&str]) -> Vec<String> {
    let mut lines: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    lines.sort();
    lines
}

pub fn os(path: &[u8]) -> &Path {
    Path::new(std::ffi::OsStr::from_bytes(path))
}

thread_local! {
    static CONTAINED: Cell<bool> = const { Cell::new(false) };
}

/// Moves the calling thread (and threads it starts later) into a private
/// mount namespace whose root is a fresh tmpfs, holding only `/tmp`,
/// `/etc`, `/usr` and a bind of `/proc`. These tests unpack layers built to
/// escape their root; run here, a regression that escapes lands in this
/// throw-away root instead of the machine's `/etc` (which an earlier bug
/// did to a developer's machine). Nothing is created on the host: the
/// tmpfs is mounted over `/tmp` inside the new namespace only, and goes
/// when the thread ends. Once per thread; needs root, as the suite does.
pub fn contain_thread() {
    use rustix::mount::{MountFlags, MountPropagationFlags};
    if CONTAINED.get() {
        return;
    }
    // SAFETY: CLONE_NEWNS implies CLONE_FS: this thread stops sharing its
    // root, working directory and mount namespace with the test harness's
    // other threads, which is the point. No file descriptors or memory
    // change hands.
    #[allow(unsafe_code)]
    let unshared = unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) };
    unshared.expect(
        "these tests run in a private mount namespace and need root (CAP_SYS_ADMIN); \
         run the suite as root, as CI does",
    );
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .expect("make / private in the test's mount namespace");
    rustix::mount::mount("tmpfs", "/tmp", "tmpfs", MountFlags::empty(), c"mode=0755")
        .expect("mount a tmpfs over /tmp in the test's mount namespace");
    let root = Path::new("/tmp/root");
    for (dir, mode) in [
        ("", 0o755),
        ("tmp", 0o1777),
        ("etc", 0o755),
        ("usr", 0o755),
        ("proc", 0o555),
    ] {
        let path = root.join(dir);
        fs::create_dir_all(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }
    // /proc for the unpacker's xattr calls (made through /proc/self/fd).
    rustix::mount::mount_bind_recursive("/proc", root.join("proc")).expect("bind /proc");
    rustix::process::chroot(root).expect("chroot into the throw-away root");
    std::env::set_current_dir("/").unwrap();
    CONTAINED.set(true);
}
