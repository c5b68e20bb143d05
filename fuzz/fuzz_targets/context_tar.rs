//! Fuzzes unpacking a build context archive (`tar://`, `https://…tar.gz`,
//! `oci://` contexts): any archive may be refused, none may write outside
//! the destination.

#![no_main]

#[path = "common/contain.rs"]
mod contain;

use std::fs;

use kiln_builder::context::unpack_context_archive;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    contain::contain_process();
    let Ok(dir) = tempfile::tempdir_in("/tmp") else {
        return;
    };
    let dest = dir.path().join("l1/l2/dest");
    let outside = dir.path().join("outside");
    if fs::create_dir_all(&dest).is_err()
        || fs::create_dir_all(&outside).is_err()
        || fs::write(outside.join("sentinel"), "sentinel").is_err()
    {
        return;
    }
    let mut before = Vec::new();
    contain::snapshot(dir.path(), &dest, &mut before);
    contain::snapshot(std::path::Path::new("/etc"), &dest, &mut before);
    let _ = unpack_context_archive(data, &dest);
    let mut after = Vec::new();
    contain::snapshot(dir.path(), &dest, &mut after);
    contain::snapshot(std::path::Path::new("/etc"), &dest, &mut after);
    assert_eq!(before, after, "the archive changed something outside its destination");
});
