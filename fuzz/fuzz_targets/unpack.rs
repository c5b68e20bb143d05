//! Fuzzes the layer unpacker: any blob (plain, gzip or zstd tar) may fail,
//! but must never create, change or remove anything outside the root.
//!
//! Run (nightly and cargo-fuzz): `cd fuzz && cargo +nightly fuzz run unpack`.
//! Seed the corpus with real layers for depth, e.g.
//! `cargo +nightly fuzz run unpack corpus/unpack -- -max_len=65536`.

#![no_main]

use std::fs;
use std::path::{Path, PathBuf};

use kiln_builder::fs::{UnpackOptions, unpack_layer};
use libfuzzer_sys::fuzz_target;

/// Everything under `dir` except `skip`, with content and mtime, sorted.
fn snapshot(dir: &Path, skip: &Path, out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        out.push(format!("unreadable {}", dir.display()));
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
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
            "{} {:?} {:?} {:?}",
            path.display(),
            meta.file_type(),
            meta.modified().ok(),
            content
        ));
        if meta.is_dir() {
            snapshot(&path, skip, out);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else {
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
    let mut before = Vec::new();
    snapshot(dir.path(), &root, &mut before);
    let _ = unpack_layer(data, &root, &UnpackOptions::default());
    let mut after = Vec::new();
    snapshot(dir.path(), &root, &mut after);
    assert_eq!(
        before, after,
        "the layer changed something outside the root"
    );
});
