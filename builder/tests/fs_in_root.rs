//! In-root resolution helpers and user lookup against real directories.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fs_common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use fs_common::{Sandbox, is_root, lines};
use kiln_builder::fs::{
    EntryKind, FsError, create_dir_all_in_root, entry_kind, entry_kind_nofollow, resolve_exec_user,
    resolve_in_root, resolve_in_root_nofollow, resolve_user,
};

/// A root with the usual traps: links to `/`, above the root, to the host.
fn trap_root() -> Sandbox {
    let sandbox = Sandbox::new();
    let root = &sandbox.root;
    fs::create_dir_all(root.join("usr/lib")).unwrap();
    fs::write(root.join("usr/lib/file"), "f").unwrap();
    symlink("usr/lib", root.join("lib")).unwrap();
    symlink("/", root.join("slash")).unwrap();
    symlink("../../../..", root.join("up")).unwrap();
    symlink(&sandbox.outside, root.join("host")).unwrap();
    symlink("/usr/lib/file", root.join("abs-file")).unwrap();
    symlink("missing", root.join("dangling")).unwrap();
    symlink("loop2", root.join("loop1")).unwrap();
    symlink("loop1", root.join("loop2")).unwrap();
    sandbox
}

#[test]
fn resolve_in_root_table() {
    let sandbox = trap_root();
    let root = &sandbox.root;
    let outside_rel = sandbox.outside_rel();
    let cases = [
        ("/", String::new()),
        ("", String::new()),
        ("lib/file", "usr/lib/file".to_string()),
        ("/lib/../lib/file", "usr/lib/file".to_string()),
        ("slash/slash/lib", "usr/lib".to_string()),
        ("up/usr", "usr".to_string()),
        ("../../..", String::new()),
        ("host/sentinel", format!("{outside_rel}/sentinel")),
        ("abs-file", "usr/lib/file".to_string()),
        ("dangling", "missing".to_string()),
        ("lib/new/deeper", "usr/lib/new/deeper".to_string()),
        // `..` after a missing component climbs back and still follows
        // links it meets.
        ("nope/../lib/file", "usr/lib/file".to_string()),
        ("usr/lib/file/x", "usr/lib/file/x".to_string()),
    ];
    for (path, want) in cases {
        let got = resolve_in_root(root, path).unwrap();
        assert_eq!(got, root.join(&want), "path {path:?}");
    }
}

#[test]
fn nofollow_keeps_the_last_link() {
    let sandbox = trap_root();
    let root = &sandbox.root;
    assert_eq!(
        resolve_in_root_nofollow(root, "slash/lib").unwrap(),
        root.join("lib")
    );
    assert_eq!(
        resolve_in_root_nofollow(root, "lib/file").unwrap(),
        root.join("usr/lib/file")
    );
}

#[test]
fn symlink_loops_are_errors() {
    let sandbox = trap_root();
    let err = resolve_in_root(&sandbox.root, "loop1/x").unwrap_err();
    assert!(matches!(err, FsError::SymlinkLoop { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "too many levels of symbolic links resolving loop1/x inside {}",
            sandbox.root.display()
        )
    );
}

#[test]
fn entry_kind_table() {
    let sandbox = trap_root();
    let root = &sandbox.root;
    let cases = [
        ("/", Some(EntryKind::Directory)),
        ("usr", Some(EntryKind::Directory)),
        ("lib", Some(EntryKind::Directory)),
        ("abs-file", Some(EntryKind::File)),
        ("slash/usr/lib/file", Some(EntryKind::File)),
        ("dangling", None),
        ("missing", None),
        ("usr/lib/file/below-a-file", None),
        // The host's sentinel exists; the image has no such file.
        ("host/sentinel", None),
    ];
    for (path, want) in cases {
        assert_eq!(entry_kind(root, path).unwrap(), want, "path {path:?}");
    }
    let nofollow = [
        ("lib", Some(EntryKind::Symlink)),
        ("dangling", Some(EntryKind::Symlink)),
        ("slash/usr", Some(EntryKind::Directory)),
    ];
    for (path, want) in nofollow {
        assert_eq!(
            entry_kind_nofollow(root, path).unwrap(),
            want,
            "path {path:?}"
        );
    }
}

#[test]
fn create_dir_all_in_root_creates_inside_only() {
    let sandbox = trap_root();
    let root = &sandbox.root;
    let before = sandbox.outside_snapshot();
    let (uid, gid) = {
        let meta = fs::metadata(root).unwrap();
        (meta.uid(), meta.gid())
    };
    let (want_uid, want_gid) = if is_root() { (1000, 1001) } else { (uid, gid) };
    let made = create_dir_all_in_root(root, "/host/new/dir", 0o750, want_uid, want_gid).unwrap();
    let rel = sandbox.outside_rel();
    assert_eq!(made, root.join(format!("{rel}/new/dir")));
    assert_eq!(sandbox.outside_snapshot(), before);
    let made_again = create_dir_all_in_root(root, "lib/x", 0o700, uid, gid).unwrap();
    assert_eq!(made_again, root.join("usr/lib/x"));
    for (path, mode) in [
        (format!("{rel}/new/dir"), 0o750),
        (format!("{rel}/new"), 0o750),
        (rel.clone(), 0o750),
        ("usr/lib/x".to_string(), 0o700),
    ] {
        let meta = fs::metadata(root.join(&path)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "{path}");
        if path.starts_with(&rel) {
            assert_eq!((meta.uid(), meta.gid()), (want_uid, want_gid), "{path}");
        }
    }
    // Existing directories are left as they are.
    let usr = fs::metadata(root.join("usr/lib")).unwrap();
    assert_eq!((usr.uid(), usr.gid()), (uid, gid));
    let err = create_dir_all_in_root(root, "abs-file/sub", 0o755, uid, gid).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot create abs-file/sub: {} exists and is not a directory",
            root.join("usr/lib/file").display()
        )
    );
}

fn write_user_files(root: &Path) {
    fs::create_dir_all(root.join("real-etc")).unwrap();
    fs::write(
        root.join("real-etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
    )
    .unwrap();
    fs::write(
        root.join("real-etc/group"),
        "root:x:0:\napp:x:1001:\nstaff:x:50:app\n",
    )
    .unwrap();
    // An absolute link, as images have: must resolve inside the root.
    symlink("/real-etc", root.join("etc")).unwrap();
}

#[test]
fn resolve_user_reads_the_image_files() {
    let sandbox = Sandbox::new();
    write_user_files(&sandbox.root);
    let root = &sandbox.root;
    let cases = [
        ("app", (1000, 1001)),
        ("app:staff", (1000, 50)),
        ("1000", (1000, 1000)),
        ("5:app", (5, 1001)),
        ("root:0", (0, 0)),
    ];
    for (spec, want) in cases {
        assert_eq!(resolve_user(root, spec).unwrap(), want, "spec {spec:?}");
    }
    let user = resolve_exec_user(root, "app").unwrap();
    assert_eq!(
        (user.uid, user.gid, user.additional_gids, user.home.as_str()),
        (1000, 1001, vec![50, 1001], "/home/app")
    );
    assert_eq!(
        resolve_user(root, "ghost").unwrap_err().to_string(),
        "unable to find user ghost: no matching entries in passwd file"
    );
    assert_eq!(
        resolve_user(root, "app:ghosts").unwrap_err().to_string(),
        "unable to find group ghosts: no matching entries in group file"
    );
}

#[test]
fn resolve_user_without_etc() {
    let sandbox = Sandbox::new();
    assert_eq!(resolve_user(&sandbox.root, "12:34").unwrap(), (12, 34));
    assert_eq!(
        resolve_user(&sandbox.root, "app").unwrap_err().to_string(),
        "unable to find user app: no matching entries in passwd file"
    );
    let user = resolve_exec_user(&sandbox.root, "12").unwrap();
    assert_eq!(
        (user.uid, user.gid, user.additional_gids, user.home.as_str()),
        (12, 0, vec![0], "/")
    );
}

#[test]
fn sandbox_tree_sanity() {
    // The helper the other tests rely on reports exactly what is there.
    let sandbox = Sandbox::new();
    fs::write(sandbox.root.join("f"), "x").unwrap();
    fs::set_permissions(sandbox.root.join("f"), fs::Permissions::from_mode(0o640)).unwrap();
    symlink("f", sandbox.root.join("l")).unwrap();
    assert_eq!(sandbox.tree(), lines(&["f 0640 f \"x\"", "l l -> f"]));
}

#[test]
fn missing_dirs_in_root_follows_links_and_stops_at_files() {
    let sandbox = trap_root();
    let root = &sandbox.root;
    let missing = |path: &str| {
        kiln_builder::fs::missing_dirs_in_root(root, path)
            .unwrap()
            .into_iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(missing("/usr/lib"), Vec::<String>::new());
    assert_eq!(missing("/lib/a/b"), ["/usr/lib/a", "/usr/lib/a/b"]);
    assert_eq!(missing("/new"), ["/new"]);
    assert_eq!(
        missing("/up/x"),
        ["/x"],
        "a link above the root stays inside"
    );
    assert_eq!(missing("/dangling/x"), ["/missing", "/missing/x"]);
    assert!(matches!(
        kiln_builder::fs::missing_dirs_in_root(root, "/abs-file/x"),
        Err(FsError::NotADirectory { .. })
    ));
    // Nothing was created.
    assert!(!root.join("usr/lib/a").exists());
    assert!(!root.join("new").exists());
}
