//! The layer unpacker against crafted tar streams: every changeset rule,
//! and every way a layer could try to reach outside its root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fs_common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use fs_common::{MTIME, Sandbox, TarEntry as E, gzip, is_root, lines, tar, zstd};
use kiln_builder::fs::{FsError, UnpackOptions, UnpackStats, unpack_layer};

fn unpack(sandbox: &Sandbox, entries: &[E]) -> Result<UnpackStats, FsError> {
    unpack_layer(
        tar(entries).as_slice(),
        &sandbox.root,
        &UnpackOptions::default(),
    )
}

/// Unpacks layers in order, asserting each succeeds and nothing outside the
/// root changed, and returns the resulting tree.
fn unpack_all(sandbox: &Sandbox, layers: &[&[E]]) -> Vec<String> {
    let before = sandbox.outside_snapshot();
    for (i, layer) in layers.iter().enumerate() {
        if let Err(err) = unpack(sandbox, layer) {
            panic!("layer {i}: {err}");
        }
    }
    assert_eq!(
        sandbox.outside_snapshot(),
        before,
        "outside the root changed"
    );
    sandbox.tree()
}

fn base_layer() -> Vec<E> {
    vec![
        E::dir("etc/", 0o755),
        E::file("etc/hosts", 0o644, "127.0.0.1 localhost\n"),
        E::dir("bin/", 0o755),
        E::file("bin/busybox", 0o755, "ELF"),
        E::symlink("bin/sh", "busybox"),
        E::file("bin/su", 0o4755, "su"),
        E::file("bin/wall", 0o2755, "wall"),
        E::dir("tmp/", 0o1777),
        E::dir("secret/", 0o700),
        E::file("secret/key", 0o400, "k"),
        E::dir("ro/", 0o555),
        E::file("ro/file", 0o444, "r"),
    ]
}

fn base_tree() -> Vec<&'static str> {
    vec![
        "d 0755 etc",
        "f 0644 etc/hosts \"127.0.0.1 localhost\\n\"",
        "d 0755 bin",
        "f 0755 bin/busybox \"ELF\"",
        "l bin/sh -> busybox",
        "f 4755 bin/su \"su\"",
        "f 2755 bin/wall \"wall\"",
        "d 1777 tmp",
        "d 0700 secret",
        "f 0400 secret/key \"k\"",
        "d 0555 ro",
        "f 0444 ro/file \"r\"",
    ]
}

#[test]
fn regular_tree_with_special_modes() {
    let sandbox = Sandbox::new();
    let tree = unpack_all(&sandbox, &[&base_layer()]);
    assert_eq!(tree, lines(&base_tree()));
}

#[test]
fn stats_count_what_was_done() {
    let sandbox = Sandbox::new();
    let mut layer = base_layer();
    layer.push(E::hardlink("bin/ash", "bin/busybox"));
    layer.push(E::marker("etc/.wh.gone"));
    let stats = unpack(&sandbox, &layer).unwrap();
    let want = UnpackStats {
        entries: 14,
        directories: 5,
        files: 6,
        symlinks: 1,
        hardlinks: 1,
        special_files: 0,
        whiteouts: 1,
        removed: 0,
        skipped: 0,
        bytes: 31,
        ownership_failures: stats.ownership_failures,
        xattr_failures: 0,
    };
    assert_eq!(stats, want);
}

#[test]
fn compression_is_detected() {
    let plain = tar(&base_layer());
    for (label, blob) in [
        ("plain", plain.clone()),
        ("gzip", gzip(&plain)),
        ("zstd", zstd(&plain)),
        // Two gzip members, as some layer writers emit.
        ("multi-member gzip", {
            let (a, b) = plain.split_at(1024);
            let mut blob = gzip(a);
            blob.extend(gzip(b));
            blob
        }),
    ] {
        let sandbox = Sandbox::new();
        unpack_layer(blob.as_slice(), &sandbox.root, &UnpackOptions::default())
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(sandbox.tree(), lines(&base_tree()), "{label}");
    }
}

#[test]
fn empty_and_corrupt_streams() {
    let sandbox = Sandbox::new();
    let stats = unpack_layer(&b""[..], &sandbox.root, &UnpackOptions::default()).unwrap();
    assert_eq!(stats, UnpackStats::default());
    let err = unpack_layer(
        &[0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad][..],
        &sandbox.root,
        &UnpackOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, FsError::Layer { .. }), "{err}");
    assert!(err.to_string().starts_with("reading layer: "), "{err}");
}

#[test]
fn mtimes_of_files_links_and_directories() {
    let sandbox = Sandbox::new();
    let layer = [
        E::dir("d/", 0o755).mtime(1_000),
        // Created after d's entry: would bump d's mtime if set too early.
        E::file("d/f", 0o644, "x").mtime(2_000),
        E::symlink("d/l", "f").mtime(3_000),
        E::dir("d/sub/", 0o755).mtime(4_000),
        E::file("d/sub/g", 0o644, "").mtime(5_000),
        E::file("p", 0o644, "").pax("mtime", "6000.5"),
    ];
    unpack_all(&sandbox, &[&layer]);
    let mtime = |p: &str| {
        let meta = fs::symlink_metadata(sandbox.root.join(p)).unwrap();
        (meta.mtime(), meta.mtime_nsec())
    };
    assert_eq!(mtime("d"), (1_000, 0));
    assert_eq!(mtime("d/f"), (2_000, 0));
    assert_eq!(mtime("d/l"), (3_000, 0));
    assert_eq!(mtime("d/sub"), (4_000, 0));
    assert_eq!(mtime("d/sub/g"), (5_000, 0));
    assert_eq!(mtime("p"), (6_000, 500_000_000));
}

#[test]
fn implicit_parents_are_created_0755() {
    let sandbox = Sandbox::new();
    let tree = unpack_all(&sandbox, &[&[E::file("a/b/c", 0o600, "deep")]]);
    assert_eq!(
        tree,
        lines(&["d 0755 a", "d 0755 a/b", "f 0600 a/b/c \"deep\""])
    );
}

#[test]
fn whiteouts_remove_lower_files_and_trees() {
    let sandbox = Sandbox::new();
    let lower = [
        E::dir("a/", 0o755),
        E::file("a/keep", 0o644, "k"),
        E::file("a/gone", 0o644, "g"),
        E::dir("b/", 0o755),
        E::dir("b/sub/", 0o755),
        E::file("b/sub/deep", 0o644, "d"),
        E::symlink("c", "/a"),
        E::file(".hidden", 0o644, "h"),
    ];
    let upper = [
        E::marker("a/.wh.gone"),
        E::marker(".wh.b"),
        // Removes the link, not the directory it points to.
        E::marker(".wh.c"),
        E::marker(".wh..hidden"),
        // Whiteout of something that never existed: nothing to do.
        E::marker("nowhere/.wh.nothing"),
    ];
    let tree = unpack_all(&sandbox, &[&lower, &upper]);
    assert_eq!(tree, lines(&["d 0755 a", "f 0644 a/keep \"k\""]));
}

#[test]
fn whiteout_does_not_hide_same_layer_entries() {
    let sandbox = Sandbox::new();
    let lower = [E::dir("d/", 0o755), E::file("d/old", 0o644, "o")];
    // Whiteouts come after the entries they must spare.
    let upper = [
        E::file("x", 0o644, "same layer"),
        E::marker(".wh.x"),
        E::file("d/new", 0o644, "n"),
        E::marker(".wh.d"),
    ];
    let tree = unpack_all(&sandbox, &[&lower, &upper]);
    // `d` was whited out as a lower directory: its lower content goes, the
    // same layer's `d/new` stays.
    assert_eq!(
        tree,
        lines(&["f 0644 x \"same layer\"", "d 0755 d", "f 0644 d/new \"n\""])
    );
}

#[test]
fn opaque_directory_in_either_order() {
    let lower = [
        E::dir("d/", 0o755),
        E::file("d/old", 0o644, "o"),
        E::dir("d/sub/", 0o755),
        E::file("d/sub/old2", 0o644, "o2"),
        E::file("d/sub/kept-name", 0o644, "lower"),
        E::file("other", 0o644, "untouched"),
    ];
    let entries = [
        E::dir("d/", 0o750),
        E::file("d/new", 0o644, "n"),
        E::file("d/sub/kept-name", 0o644, "upper"),
    ];
    let want = lines(&[
        "d 0750 d",
        "f 0644 d/new \"n\"",
        "d 0755 d/sub",
        "f 0644 d/sub/kept-name \"upper\"",
        "f 0644 other \"untouched\"",
    ]);
    let marker = E::marker("d/.wh..wh..opq");
    let mut marker_first = vec![marker.clone()];
    marker_first.extend(entries.iter().cloned());
    let mut marker_last = entries.to_vec();
    marker_last.push(marker);
    for (label, upper) in [("marker first", marker_first), ("marker last", marker_last)] {
        let sandbox = Sandbox::new();
        let tree = unpack_all(&sandbox, &[&lower, &upper]);
        assert_eq!(tree, want, "{label}");
    }
}

#[test]
fn opaque_marker_alone_empties_directory() {
    let sandbox = Sandbox::new();
    let lower = [E::dir("d/", 0o755), E::file("d/old", 0o644, "o")];
    let upper = [E::marker("d/.wh..wh..opq")];
    let tree = unpack_all(&sandbox, &[&lower, &upper]);
    assert_eq!(tree, lines(&["d 0755 d"]));
}

#[test]
fn directory_replaced_by_file_and_back() {
    let sandbox = Sandbox::new();
    let layer1 = [
        E::dir("p/", 0o755),
        E::file("p/child", 0o644, "c"),
        E::symlink("q", "p"),
    ];
    let layer2 = [E::file("p", 0o600, "now a file"), E::dir("q/", 0o700)];
    let tree = unpack_all(&sandbox, &[&layer1, &layer2]);
    assert_eq!(tree, lines(&["f 0600 p \"now a file\"", "d 0700 q"]));
    let layer3 = [
        E::dir("p/", 0o711),
        E::file("p/new", 0o644, "n"),
        E::symlink("q", "p/new"),
    ];
    let tree = unpack_all(&sandbox, &[&layer3]);
    assert_eq!(
        tree,
        lines(&["d 0711 p", "f 0644 p/new \"n\"", "l q -> p/new"])
    );
}

#[test]
fn replacement_within_one_layer() {
    let sandbox = Sandbox::new();
    let layer = [
        E::dir("x/", 0o755),
        E::file("x/in", 0o644, "i"),
        E::file("x", 0o644, "file"),
        E::dir("x/", 0o700),
        E::file("x/again", 0o644, "a"),
    ];
    let tree = unpack_all(&sandbox, &[&layer]);
    assert_eq!(tree, lines(&["d 0700 x", "f 0644 x/again \"a\""]));
}

/// The unpacker remembers the parents it resolved; an entry that replaces
/// one of them (here `a`, by a link to `c`) must make later names below it
/// resolve through what is there now, not to the directory it removed.
#[test]
fn a_parent_replaced_within_one_layer_is_resolved_again() {
    let sandbox = Sandbox::new();
    let layer = [
        E::dir("a/", 0o755),
        E::dir("a/b/", 0o755),
        E::file("a/b/one", 0o644, "1"),
        E::dir("c/", 0o755),
        E::dir("c/b/", 0o755),
        E::symlink("a", "c"),
        E::file("a/b/two", 0o644, "2"),
    ];
    let tree = unpack_all(&sandbox, &[&layer]);
    assert_eq!(
        tree,
        lines(&["l a -> c", "d 0755 c", "d 0755 c/b", "f 0644 c/b/two \"2\"",])
    );
}

#[test]
fn hardlinks_share_the_inode() {
    let sandbox = Sandbox::new();
    let lower = [E::file("lower", 0o640, "from below")];
    let upper = [
        E::file("bin/busybox", 0o755, "ELF"),
        E::hardlink("bin/ls", "bin/busybox"),
        E::hardlink("bin/cat", "/bin/busybox"),
        E::hardlink("linked-lower", "./lower"),
        // A link to itself is already what it asks for.
        E::hardlink("lower", "lower"),
    ];
    let tree = unpack_all(&sandbox, &[&lower, &upper]);
    assert_eq!(
        tree,
        lines(&[
            "d 0755 bin",
            "f 0755 bin/busybox \"ELF\"",
            "f 0755 bin/ls \"ELF\"",
            "f 0755 bin/cat \"ELF\"",
            "f 0640 lower \"from below\"",
            "f 0640 linked-lower \"from below\"",
        ])
    );
    let ino = |p: &str| fs::metadata(sandbox.root.join(p)).unwrap().ino();
    assert_eq!(ino("bin/ls"), ino("bin/busybox"));
    assert_eq!(ino("bin/cat"), ino("bin/busybox"));
    assert_eq!(ino("linked-lower"), ino("lower"));
}

#[test]
fn hardlink_errors_name_the_entry() {
    let cases = [
        (
            vec![E::hardlink("pw", "/etc/passwd")],
            "hardlink pw points to /etc/passwd, which does not exist in the image",
        ),
        (
            vec![E::dir("d/", 0o755), E::hardlink("h", "d")],
            "hardlink h points to d, which is a directory",
        ),
    ];
    for (layer, want) in cases {
        let sandbox = Sandbox::new();
        let before = sandbox.outside_snapshot();
        let err = unpack(&sandbox, &layer).unwrap_err();
        assert_eq!(err.to_string(), want);
        assert_eq!(sandbox.outside_snapshot(), before);
    }
}

#[test]
fn hardlink_to_etc_passwd_uses_the_image_copy() {
    let sandbox = Sandbox::new();
    let layer = [
        E::file("etc/passwd", 0o644, "root:x:0:0::/root:/bin/sh\n"),
        E::hardlink("pw", "/etc/passwd"),
        E::hardlink("pw2", "../../../etc/passwd"),
    ];
    unpack_all(&sandbox, &[&layer]);
    let image = fs::metadata(sandbox.root.join("etc/passwd")).unwrap();
    for link in ["pw", "pw2"] {
        let meta = fs::metadata(sandbox.root.join(link)).unwrap();
        assert_eq!(
            (meta.dev(), meta.ino()),
            (image.dev(), image.ino()),
            "{link}"
        );
    }
}

#[test]
fn hardlink_target_through_symlink_stays_inside() {
    let sandbox = Sandbox::new();
    let outside = sandbox.outside_abs();
    let layer = [E::symlink("a", &outside), E::hardlink("h", "a/sentinel")];
    let before = sandbox.outside_snapshot();
    let err = unpack(&sandbox, &layer).unwrap_err();
    assert_eq!(
        err.to_string(),
        "hardlink h points to a/sentinel, which does not exist in the image"
    );
    assert_eq!(sandbox.outside_snapshot(), before);
}

#[test]
fn absolute_and_dotdot_names_are_clamped() {
    let sandbox = Sandbox::new();
    let layer = [
        E::file("/abs/file", 0o644, "abs"),
        E::file("../../escape", 0o644, "dotdot"),
        E::file("a/../../../../b", 0o644, "mixed"),
        E::file("./c/./d/../e", 0o644, "dots"),
        E::dir("../../../../", 0o700),
        E::file("//double//slash", 0o644, "ds"),
    ];
    let tree = unpack_all(&sandbox, &[&layer]);
    assert_eq!(
        tree,
        lines(&[
            "d 0755 abs",
            "f 0644 abs/file \"abs\"",
            "f 0644 escape \"dotdot\"",
            "f 0644 b \"mixed\"",
            "d 0755 c",
            "f 0644 c/e \"dots\"",
            "d 0755 double",
            "f 0644 double/slash \"ds\"",
        ])
    );
}

#[test]
fn root_entry_is_skipped() {
    let sandbox = Sandbox::new();
    let before = fs::metadata(&sandbox.root).unwrap().mode();
    let stats = unpack(&sandbox, &[E::dir("./", 0o700), E::dir("/", 0o700)]).unwrap();
    assert_eq!((stats.entries, stats.skipped), (2, 2));
    assert_eq!(fs::metadata(&sandbox.root).unwrap().mode(), before);
}

/// The directories a chrooted writer of the outside path creates in the
/// root: `d 0755 tmp`, `d 0755 tmp/.tmpXYZ`, …
fn outside_parents(sandbox: &Sandbox) -> Vec<String> {
    let mut parents = Vec::new();
    let mut acc = String::new();
    for part in sandbox.outside_rel().split('/') {
        if !acc.is_empty() {
            acc.push('/');
        }
        acc.push_str(part);
        parents.push(format!("d 0755 {acc}"));
    }
    parents
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

#[test]
fn link_to_slash_in_parent_chain() {
    let sandbox = Sandbox::new();
    let rel = sandbox.outside_rel();
    let layer = [
        E::symlink("a", "/"),
        E::file(format!("a/{rel}/sentinel"), 0o644, "pwned"),
        E::file("a/etc/passwd", 0o644, "pw"),
    ];
    let tree = unpack_all(&sandbox, &[&layer]);
    let mut want = outside_parents(&sandbox);
    want.extend([
        "l a -> /".to_string(),
        format!("f 0644 {rel}/sentinel \"pwned\""),
        "d 0755 etc".to_string(),
        "f 0644 etc/passwd \"pw\"".to_string(),
    ]);
    assert_eq!(tree, sorted(want));
}

#[test]
fn relative_links_climbing_above_the_root() {
    let sandbox = Sandbox::new();
    let layer = [
        E::symlink("a", "../../.."),
        E::file("a/x", 0o644, "x"),
        E::symlink("b", "c/../../../.."),
        E::file("b/y", 0o644, "y"),
        E::dir("d/", 0o755),
        E::symlink("d/up", "../../../../../outside"),
        E::file("d/up/sentinel", 0o644, "z"),
    ];
    let tree = unpack_all(&sandbox, &[&layer]);
    assert_eq!(
        tree,
        lines(&[
            "l a -> ../../..",
            "f 0644 x \"x\"",
            "l b -> c/../../../..",
            "f 0644 y \"y\"",
            "d 0755 d",
            "l d/up -> ../../../../../outside",
            "d 0755 outside",
            "f 0644 outside/sentinel \"z\"",
        ])
    );
}

#[test]
fn absolute_link_to_a_host_directory() {
    let sandbox = Sandbox::new();
    let rel = sandbox.outside_rel();
    let layer = [
        E::symlink("a", sandbox.outside_abs()),
        E::file("a/sentinel", 0o644, "pwned"),
        E::dir("a/dir/", 0o700),
        // Same layer: the whiteout and the marker spare the entries above.
        E::marker("a/.wh.sentinel"),
        E::marker("a/dir/.wh..wh..opq"),
    ];
    let tree = unpack_all(&sandbox, &[&layer]);
    let mut want = outside_parents(&sandbox);
    want.extend([
        format!("l a -> {}", sandbox.outside_abs()),
        format!("f 0644 {rel}/sentinel \"pwned\""),
        format!("d 0700 {rel}/dir"),
    ]);
    assert_eq!(tree, sorted(want));
}

#[test]
fn whiteouts_through_symlinks_stay_inside() {
    let sandbox = Sandbox::new();
    let lower = [E::symlink("a", sandbox.outside_abs())];
    let upper = [E::marker("a/.wh.sentinel"), E::marker("a/dir/.wh..wh..opq")];
    let tree = unpack_all(&sandbox, &[&lower, &upper]);
    // The opaque marker makes its directory exist, inside the root.
    let mut want = outside_parents(&sandbox);
    want.extend([
        format!("l a -> {}", sandbox.outside_abs()),
        format!("d 0755 {}/dir", sandbox.outside_rel()),
    ]);
    assert_eq!(tree, sorted(want));
}

#[test]
fn final_symlink_is_replaced_not_followed() {
    let sandbox = Sandbox::new();
    let sentinel = sandbox.outside.join("sentinel").display().to_string();
    let lower = [
        E::symlink("s", &sentinel),
        E::symlink("d", sandbox.outside_abs()),
        E::symlink("h", &sentinel),
        E::symlink("f", &sentinel),
    ];
    let upper = [
        E::file("s", 0o600, "replaced"),
        E::dir("d/", 0o700),
        E::file("target", 0o644, "t"),
        E::hardlink("h", "target"),
        E::fifo("f", 0o600),
    ];
    let tree = unpack_all(&sandbox, &[&lower, &upper]);
    assert_eq!(
        tree,
        lines(&[
            "f 0600 s \"replaced\"",
            "d 0700 d",
            "f 0644 target \"t\"",
            "f 0644 h \"t\"",
            "p 0600 f",
        ])
    );
}

#[test]
fn symlink_loop_is_an_error() {
    let sandbox = Sandbox::new();
    let layer = [
        E::symlink("l1", "l2"),
        E::symlink("l2", "/l1"),
        E::file("l1/x", 0o644, ""),
    ];
    let before = sandbox.outside_snapshot();
    let err = unpack(&sandbox, &layer).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "too many levels of symbolic links resolving l1 inside {}",
            sandbox.root.display()
        )
    );
    assert_eq!(sandbox.outside_snapshot(), before);
}

#[test]
fn symlinks_are_written_as_is() {
    let sandbox = Sandbox::new();
    let layer = [
        E::symlink("abs", "/etc/passwd"),
        E::symlink("rel", "../../../x"),
        E::symlink("dangling", "nowhere"),
        E::symlink(&b"bytes"[..], &b"\xff\xfe"[..]),
    ];
    let tree = unpack_all(&sandbox, &[&layer]);
    assert_eq!(
        tree,
        lines(&[
            "l abs -> /etc/passwd",
            "l rel -> ../../../x",
            "l dangling -> nowhere",
            "l bytes -> \u{fffd}\u{fffd}",
        ])
    );
    assert_eq!(
        fs::read_link(sandbox.root.join("bytes"))
            .unwrap()
            .as_os_str(),
        fs_common::os(b"\xff\xfe").as_os_str()
    );
}

#[test]
fn long_names_through_pax() {
    let sandbox = Sandbox::new();
    let long_dir = "d".repeat(120);
    let long_target = format!("/{}/{}", long_dir, "t".repeat(90));
    let layer = [
        E::file(format!("{long_dir}/file"), 0o644, "long"),
        E::symlink("link", &long_target),
    ];
    let tree = unpack_all(&sandbox, &[&layer]);
    assert_eq!(
        tree,
        lines(&[
            &format!("d 0755 {long_dir}"),
            &format!("f 0644 {long_dir}/file \"long\""),
            &format!("l link -> {long_target}"),
        ])
    );
}

#[test]
fn fifos_and_device_nodes() {
    let sandbox = Sandbox::new();
    let layer = [
        E::fifo("run/pipe", 0o620),
        E::char_device("dev/null", 0o666, 1, 3),
    ];
    let stats = unpack(&sandbox, &layer).unwrap();
    let tree = sandbox.tree();
    if stats.special_files == 2 {
        assert_eq!(
            tree,
            lines(&[
                "d 0755 run",
                "p 0620 run/pipe",
                "d 0755 dev",
                "c 0666 dev/null 1,3"
            ])
        );
    } else {
        // No CAP_MKNOD here: the device node is skipped, the FIFO is not.
        assert_eq!((stats.special_files, stats.skipped), (1, 1));
        assert_eq!(
            tree,
            lines(&["d 0755 run", "p 0620 run/pipe", "d 0755 dev"])
        );
    }
}

#[test]
fn ownership_is_applied_when_permitted() {
    let sandbox = Sandbox::new();
    let layer = [
        E::dir("home/app/", 0o750).owner(1000, 1001),
        E::file("home/app/f", 0o4755, "x").owner(1000, 1001),
        E::symlink("home/app/l", "f").owner(1002, 1003),
        E::file("big", 0o644, "")
            .owner(0, 0)
            .pax("uid", "3000000")
            .pax("gid", "3000001"),
    ];
    let stats = unpack(&sandbox, &layer).unwrap();
    let owner = |p: &str| {
        let meta = fs::symlink_metadata(sandbox.root.join(p)).unwrap();
        (meta.uid(), meta.gid())
    };
    if is_root() {
        assert_eq!(stats.ownership_failures, 0);
        assert_eq!(owner("home/app"), (1000, 1001));
        assert_eq!(owner("home/app/f"), (1000, 1001));
        assert_eq!(owner("home/app/l"), (1002, 1003));
        assert_eq!(owner("big"), (3_000_000, 3_000_001));
        // chown clears setuid: the mode must be set after it.
        let mode = fs::metadata(sandbox.root.join("home/app/f"))
            .unwrap()
            .mode();
        assert_eq!(mode & 0o7777, 0o4755);
    } else {
        assert_eq!(stats.ownership_failures, 4);
        assert_eq!(
            sandbox.tree(),
            lines(&[
                "d 0755 home",
                "d 0750 home/app",
                "f 4755 home/app/f \"x\"",
                "l home/app/l -> f",
                "f 0644 big \"\"",
            ])
        );
    }
}

#[test]
fn ownership_can_be_ignored() {
    let sandbox = Sandbox::new();
    let options = UnpackOptions {
        preserve_ownership: false,
        ..UnpackOptions::default()
    };
    let layer = [E::file("f", 0o644, "x").owner(1000, 1001)];
    let stats = unpack_layer(tar(&layer).as_slice(), &sandbox.root, &options).unwrap();
    assert_eq!(stats.ownership_failures, 0);
    let meta = fs::metadata(sandbox.root.join("f")).unwrap();
    let own = fs::metadata(&sandbox.root).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (own.uid(), own.gid()));
}

fn get_xattr(path: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    let n = rustix::fs::lgetxattr(path, name, &mut buf[..]).ok()?;
    buf.truncate(n);
    Some(buf)
}

#[test]
fn xattrs_from_pax_records() {
    let sandbox = Sandbox::new();
    // A version-2 capability set: cap_net_bind_service, permitted+effective.
    let capability = [
        0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    let layer = [E::file("bin/ping", 0o755, "ping")
        .owner(0, 0)
        .pax("SCHILY.xattr.security.capability", capability)
        .pax("SCHILY.xattr.user.kiln", "value")];
    let stats = unpack(&sandbox, &layer).unwrap();
    let ping = sandbox.root.join("bin/ping");
    // Filesystems without user xattrs, or builders without CAP_SETFCAP,
    // skip them with a warning; whatever was set must be exact.
    let user = get_xattr(&ping, "user.kiln");
    let cap = get_xattr(&ping, "security.capability");
    let missing = [user.is_none(), cap.is_none()]
        .iter()
        .filter(|m| **m)
        .count();
    assert_eq!(stats.xattr_failures, missing as u64);
    if let Some(user) = user {
        assert_eq!(user, b"value");
    }
    if let Some(cap) = cap {
        assert_eq!(cap, capability);
    }
}

#[test]
fn protected_paths_are_never_touched() {
    let sandbox = Sandbox::new();
    for dir in ["proc", "proc/self", "var", "var/run"] {
        fs::create_dir(sandbox.root.join(dir)).unwrap();
        fs::set_permissions(sandbox.root.join(dir), fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::write(sandbox.root.join("proc/self/status"), "host").unwrap();
    fs::write(sandbox.root.join("var/run/keep"), "k").unwrap();
    fs::write(sandbox.root.join("var/drop"), "d").unwrap();
    let options = UnpackOptions {
        protected_paths: vec!["/proc".into(), "var/run".into()],
        ..UnpackOptions::default()
    };
    let layer = [
        E::file("proc/self/status", 0o644, "image"),
        E::file("proc/new", 0o644, "image"),
        E::marker(".wh.var"),
        E::marker("proc/.wh.self"),
        E::file("etc/x", 0o644, "x"),
        E::marker(".wh..wh..opq"),
    ];
    let stats = unpack_layer(tar(&layer).as_slice(), &sandbox.root, &options).unwrap();
    assert_eq!(stats.skipped, 3);
    assert_eq!(
        sandbox.tree(),
        lines(&[
            "d 0755 etc",
            "f 0644 etc/x \"x\"",
            "d 0755 proc",
            "d 0755 proc/self",
            "f 0644 proc/self/status \"host\"",
            "d 0755 var",
            "d 0755 var/run",
            "f 0644 var/run/keep \"k\"",
        ])
    );
}

#[test]
fn protected_path_behind_a_symlink() {
    let sandbox = Sandbox::new();
    fs::create_dir(sandbox.root.join("run")).unwrap();
    fs::set_permissions(sandbox.root.join("run"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(sandbox.root.join("run/pid"), "1").unwrap();
    fs::create_dir(sandbox.root.join("var")).unwrap();
    fs::set_permissions(sandbox.root.join("var"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("/run", sandbox.root.join("var/run")).unwrap();
    let options = UnpackOptions {
        protected_paths: vec!["/var/run".into()],
        ..UnpackOptions::default()
    };
    let layer = [
        E::file("run/pid", 0o644, "image"),
        E::file("var/run/new", 0o644, "image"),
        E::marker("run/.wh.pid"),
        E::file("var/other", 0o644, "o"),
    ];
    let stats = unpack_layer(tar(&layer).as_slice(), &sandbox.root, &options).unwrap();
    assert_eq!((stats.skipped, stats.files), (3, 1));
    assert_eq!(
        sandbox.tree(),
        lines(&[
            "d 0755 run",
            "f 0644 run/pid \"1\"",
            "d 0755 var",
            "l var/run -> /run",
            "f 0644 var/other \"o\"",
        ])
    );
}

#[test]
fn parent_that_is_a_file_is_an_error() {
    let sandbox = Sandbox::new();
    let layer = [E::file("f", 0o644, "x"), E::file("f/child", 0o644, "y")];
    let err = unpack(&sandbox, &layer).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot create f/child: {} exists and is not a directory",
            sandbox.root.join("f").display()
        )
    );
}

#[test]
fn default_mtime_constant_is_used() {
    let sandbox = Sandbox::new();
    unpack(&sandbox, &[E::file("f", 0o644, "")]).unwrap();
    let meta = fs::metadata(sandbox.root.join("f")).unwrap();
    assert_eq!(meta.mtime() as u64, MTIME);
}

#[test]
fn directory_modes_are_not_applied_through_a_parent_swapped_later_in_the_layer() {
    // The layer that changed a development machine's /etc: `a/etc/` is
    // recorded for its mode and time, then `a` becomes a link to `/`. The
    // directory's mode must not be set on whatever `a/etc` names after the
    // swap (here the throw-away root's /etc, see fs_common::contain_thread).
    let sandbox = Sandbox::new();
    let etc_before = fs::symlink_metadata("/etc").unwrap();
    let before = sandbox.outside_snapshot();
    unpack(
        &sandbox,
        &[
            E::dir("a/", 0o755),
            E::dir("a/etc/", 0o700),
            E::dir("a/etc/deeper/", 0o700),
            E::symlink("a", "/"),
        ],
    )
    .unwrap();
    let etc_after = fs::symlink_metadata("/etc").unwrap();
    assert_eq!(
        (etc_after.mode(), etc_after.mtime()),
        (etc_before.mode(), etc_before.mtime())
    );
    assert_ne!(etc_after.mtime(), MTIME as i64);
    assert_eq!(sandbox.outside_snapshot(), before);
    assert_eq!(sandbox.tree(), lines(&["l a -> /"]));
}
