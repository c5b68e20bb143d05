//! Walking a large context: 100,000 files in sorted order, with
//! `.dockerignore` rules applied, streamed one directory listing at a time.

use std::path::Path;

use kiln_builder::context::{EntryKind, IgnoreRules, load_ignore_rules, resolve_sources, walk};

const DIRS: usize = 100;
const FILES_PER_DIR: usize = 1000;

fn populate(root: &Path) {
    for d in 0..DIRS {
        let dir = root.join(format!("d{d:03}"));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        for f in 0..FILES_PER_DIR {
            // Empty files: the walk must not care about contents.
            std::fs::File::create(dir.join(format!("f{f:04}.txt")))
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

#[test]
fn walks_a_hundred_thousand_files_in_order() {
    let context = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = context.path();
    populate(root);
    std::fs::write(
        root.join(".dockerignore"),
        "d00*\n!d000/f0000.txt\n**/f09*.txt\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let everything = IgnoreRules::empty();
    let mut count = 0usize;
    let mut previous: Option<Vec<u8>> = None;
    for entry in walk(root, ".", &everything) {
        let entry = entry.unwrap_or_else(|e| panic!("{e}"));
        let bytes = entry.rel_path.as_os_str().as_encoded_bytes().to_vec();
        if let Some(prev) = &previous {
            assert!(prev < &bytes, "{prev:?} before {bytes:?}");
        }
        previous = Some(bytes);
        count += 1;
    }
    // Every file, every directory, and the .dockerignore itself.
    assert_eq!(count, DIRS * FILES_PER_DIR + DIRS + 1);

    let rules = load_ignore_rules(root, Path::new("Dockerfile")).unwrap_or_else(|e| panic!("{e}"));
    let kept: Vec<String> = walk(root, ".", &rules)
        .map(|e| e.map(|e| e.rel_path.to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}"));
    // d000..d009 are excluded except d000/f0000.txt (and d000 to hold
    // it); f09xx files are excluded everywhere.
    let per_dir = FILES_PER_DIR - 100;
    assert_eq!(kept.len(), 1 + 2 + (DIRS - 10) * (per_dir + 1));
    assert_eq!(
        kept[..4],
        [".dockerignore", "d000", "d000/f0000.txt", "d010"]
    );
    assert_eq!(kept.last().map(String::as_str), Some("d099/f0899.txt"));
}

#[test]
fn copy_sources_then_walk() {
    let context = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = context.path();
    for (path, body) in [
        ("Dockerfile", "FROM scratch\n"),
        ("src/lib.rs", "lib"),
        ("src/bin/main.rs", "main"),
        ("src/target/debug.o", "obj"),
        ("README.md", "readme"),
        ("notes.md", "notes"),
    ] {
        let full = root.join(path);
        std::fs::create_dir_all(full.parent().unwrap_or(root)).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(full, body).unwrap_or_else(|e| panic!("{e}"));
    }
    std::os::unix::fs::symlink("lib.rs", root.join("src/alias.rs"))
        .unwrap_or_else(|e| panic!("{e}"));
    let rules =
        IgnoreRules::parse("**/target\n*.md\n!README.md\n").unwrap_or_else(|e| panic!("{e}"));

    let sources = vec![
        "*.md".to_string(),
        "src".to_string(),
        "Dockerfile".to_string(),
    ];
    let matches = resolve_sources(root, &sources, &rules).unwrap_or_else(|e| panic!("{e}"));
    let shown: Vec<(String, EntryKind)> = matches
        .iter()
        .map(|m| (m.rel_path.to_string_lossy().into_owned(), m.kind))
        .collect();
    assert_eq!(
        shown,
        vec![
            ("README.md".to_string(), EntryKind::File),
            ("src".to_string(), EntryKind::Dir),
            ("Dockerfile".to_string(), EntryKind::File),
        ]
    );

    let under_src: Vec<String> = walk(root, &matches[1].rel_path, &rules)
        .map(|e| {
            let e = e.unwrap_or_else(|e| panic!("{e}"));
            match (e.kind, e.symlink_target) {
                (EntryKind::Symlink, Some(target)) => {
                    format!("{} -> {}", e.rel_path.display(), target.display())
                }
                (EntryKind::Dir, _) => format!("{} Dir", e.rel_path.display()),
                (kind, _) => format!("{} {kind:?} {}", e.rel_path.display(), e.size),
            }
        })
        .collect();
    assert_eq!(
        under_src,
        vec![
            "src/alias.rs -> lib.rs",
            "src/bin Dir",
            "src/bin/main.rs File 4",
            "src/lib.rs File 3",
        ]
    );
}
