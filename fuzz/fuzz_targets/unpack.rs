//! Fuzzes the layer unpacker: any blob may fail, but must never create,
//! change or remove anything outside the root, nor the throw-away root's
//! own `/etc` (what an unpacker bug once changed on a real machine).
//!
//! Two input shapes, told by the first byte: odd → the rest is a raw blob
//! (plain, gzip or zstd tar); even → the rest is a program of tar entries
//! (directories, files, symlinks, hard links) over a small alphabet of
//! names and escaping link targets, so that later entries swap parents
//! for symlinks, the shape of layers that reach the host.
//!
//! Run: `fuzz/run.sh` (bounded, in CI), or longer by hand with
//! `fuzz/run.sh 600 unpack`.

#![no_main]

#[path = "common/contain.rs"]
mod contain;

use std::fs;

use kiln_builder::fs::{UnpackOptions, unpack_layer};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 8] = ["a", "b", "etc", "usr", "dir", "..", ".wh.a", ".wh..wh..opq"];
const TARGETS: [&str; 8] = ["/", "..", "../../../..", "/etc", "/outside", "a", "a/b", "../../../../outside"];

/// Turns bytes into a tar of entries: each entry takes three bytes
/// (kind, path, link target).
fn program(bytes: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for op in bytes.chunks(3) {
        let (kind, path, target) = (op[0], op.get(1).copied().unwrap_or(0), op.get(2).copied().unwrap_or(0));
        let depth = 1 + (path >> 6) as usize;
        let name: Vec<&str> = (0..depth)
            .map(|i| NAMES[((path as usize) >> (i * 2)) % NAMES.len()])
            .collect();
        let name = name.join("/");
        let mut header = tar::Header::new_gnu();
        let entry_type = match kind % 4 {
            0 => tar::EntryType::Directory,
            1 => tar::EntryType::Regular,
            2 => tar::EntryType::Symlink,
            _ => tar::EntryType::Link,
        };
        header.set_entry_type(entry_type);
        header.set_mode(if kind & 0x10 != 0 { 0o700 } else { 0o755 });
        header.set_mtime(1_600_000_000);
        header.set_size(0);
        if header.set_path(&name).is_err() {
            // The tar crate refuses `..`: write the name field raw.
            let field = &mut header.as_old_mut().name;
            field.fill(0);
            field[..name.len().min(100)].copy_from_slice(&name.as_bytes()[..name.len().min(100)]);
        }
        if matches!(entry_type, tar::EntryType::Symlink | tar::EntryType::Link) {
            let link = TARGETS[target as usize % TARGETS.len()];
            let field = &mut header.as_old_mut().linkname;
            field.fill(0);
            field[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_cksum();
        if builder.append(&header, &[][..]).is_err() {
            break;
        }
    }
    builder.into_inner().unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    contain::contain_process();
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    let Ok(dir) = tempfile::tempdir_in("/tmp") else {
        return;
    };
    // Nested so that `..` escapes land in the watched sandbox.
    let root = dir.path().join("l1/l2/l3/root");
    let outside = dir.path().join("outside");
    if fs::create_dir_all(&root).is_err()
        || fs::create_dir_all(&outside).is_err()
        || fs::write(outside.join("sentinel"), "sentinel").is_err()
    {
        return;
    }
    let blob = if shape % 2 == 1 { rest.to_vec() } else { program(rest) };
    let mut before = Vec::new();
    contain::snapshot(dir.path(), &root, &mut before);
    contain::snapshot(std::path::Path::new("/etc"), &root, &mut before);
    let _ = unpack_layer(blob.as_slice(), &root, &UnpackOptions::default());
    let mut after = Vec::new();
    contain::snapshot(dir.path(), &root, &mut after);
    contain::snapshot(std::path::Path::new("/etc"), &root, &mut after);
    assert_eq!(before, after, "the layer changed something outside the root");
    let etc = fs::symlink_metadata("/etc").map(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o7777
    });
    assert_eq!(etc.ok(), Some(0o755), "the layer changed /etc's mode");
});
