//! Property: whatever a layer holds, nothing outside the root is created,
//! changed or removed. Layers are generated from names and link targets
//! built to escape (`..`, `/`, absolute host paths to the sandbox's
//! outside directory), plus raw bytes for the decoder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fs_common;

use fs_common::{Sandbox, TarEntry, gzip, tar, zstd};
use kiln_builder::fs::{UnpackOptions, unpack_layer};
use proptest::prelude::*;

/// `@OUT` stands for the sandbox's outside directory (absolute host path),
/// known only once the sandbox exists.
const OUT: &str = "@OUT";

fn component() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "a",
        "b",
        "c",
        "..",
        ".",
        "",
        "etc",
        "sentinel",
        "dir",
        "outside",
        ".wh.a",
        ".wh.sentinel",
        ".wh..wh..opq",
        ".wh.dir",
        OUT,
    ])
}

fn path() -> impl Strategy<Value = String> {
    (any::<bool>(), prop::collection::vec(component(), 1..5)).prop_map(|(absolute, parts)| {
        let joined = parts.join("/");
        if absolute {
            format!("/{joined}")
        } else {
            joined
        }
    })
}

fn link_target() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "/",
            "..",
            "../..",
            "../../..",
            "../../../../..",
            "../../../../../outside",
            OUT,
            "@OUT/sentinel",
            "@OUT/dir",
            "a",
            "a/b",
            "/etc",
            ".",
            "b/../..",
        ])
        .prop_map(str::to_string),
        path(),
    ]
}

#[derive(Clone, Debug)]
enum Kind {
    File,
    Dir,
    Symlink(String),
    Hardlink(String),
    Fifo,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        2 => Just(Kind::File),
        2 => Just(Kind::Dir),
        3 => link_target().prop_map(Kind::Symlink),
        1 => link_target().prop_map(Kind::Hardlink),
        1 => Just(Kind::Fifo),
    ]
}

fn layer() -> impl Strategy<Value = Vec<(String, Kind)>> {
    prop::collection::vec((path(), kind()), 1..12)
}

/// A layer that creates directories and then, later in the same layer,
/// replaces one of their parents with a symlink that leads out of the root
/// (to `/`, `/etc`, the sandbox's outside): whatever the unpacker saved
/// about the directories must not be applied through the new link.
fn swapping_layer() -> impl Strategy<Value = Vec<(String, Kind)>> {
    (
        prop::collection::vec(
            prop::sample::select(vec!["a", "b", "etc", "usr", "dir"]),
            1..4,
        ),
        prop::sample::select(vec!["etc", "usr", "dir", "sentinel", "x"]),
        prop::sample::select(vec![
            "/",
            "/etc",
            "/usr",
            "..",
            "../../../..",
            OUT,
            "@OUT/dir",
        ]),
        0usize..3,
        layer(),
    )
        .prop_map(|(parents, leaf, target, swap_at, noise)| {
            let mut entries = Vec::new();
            let mut prefix = String::new();
            for parent in &parents {
                prefix = if prefix.is_empty() {
                    parent.to_string()
                } else {
                    format!("{prefix}/{parent}")
                };
                entries.push((prefix.clone(), Kind::Dir));
            }
            entries.push((format!("{prefix}/{leaf}"), Kind::Dir));
            entries.push((format!("{prefix}/{leaf}/inner"), Kind::File));
            entries.extend(noise);
            let swapped = parents[..=swap_at.min(parents.len() - 1)].join("/");
            entries.push((swapped, Kind::Symlink(target.to_string())));
            entries
        })
}

fn build(sandbox: &Sandbox, entries: &[(String, Kind)]) -> Vec<u8> {
    let out = sandbox.outside_abs();
    let fill = |s: &str| s.replace(OUT, &out);
    let entries: Vec<TarEntry> = entries
        .iter()
        .map(|(name, kind)| {
            let name = fill(name);
            match kind {
                Kind::File => TarEntry::file(name, 0o644, "pwned"),
                Kind::Dir => TarEntry::dir(name, 0o700),
                Kind::Symlink(target) => TarEntry::symlink(name, fill(target)),
                Kind::Hardlink(target) => TarEntry::hardlink(name, fill(target)),
                Kind::Fifo => TarEntry::fifo(name, 0o600),
            }
        })
        .collect();
    tar(&entries)
}

/// Unpacks `layers` in order into a fresh sandbox and returns what lies
/// outside its root before and after. Errors are fine (a hardlink to
/// nothing, a file as parent); escaping is not.
fn unpack_in_sandbox(layers: &[Vec<(String, Kind)>]) -> (Vec<String>, Vec<String>) {
    let sandbox = Sandbox::new();
    let before = sandbox.outside_snapshot();
    for entries in layers {
        let _ = unpack_layer(
            build(&sandbox, entries).as_slice(),
            &sandbox.root,
            &UnpackOptions::default(),
        );
    }
    (before, sandbox.outside_snapshot())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn crafted_layers_stay_inside_the_root(layers in prop::collection::vec(layer(), 1..4)) {
        let (before, after) = unpack_in_sandbox(&layers);
        prop_assert_eq!(after, before);
    }

    #[test]
    fn parents_swapped_for_symlinks_mid_layer_stay_inside_the_root(
        layers in prop::collection::vec(swapping_layer(), 1..3),
    ) {
        let (before, after) = unpack_in_sandbox(&layers);
        prop_assert_eq!(after, before);
    }

    #[test]
    fn arbitrary_bytes_stay_inside_the_root(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        wrap in 0u8..3,
    ) {
        let sandbox = Sandbox::new();
        let before = sandbox.outside_snapshot();
        let blob = match wrap {
            0 => bytes,
            1 => gzip(&bytes),
            _ => zstd(&bytes),
        };
        let _ = unpack_layer(blob.as_slice(), &sandbox.root, &UnpackOptions::default());
        prop_assert_eq!(sandbox.outside_snapshot(), before);
    }
}

#[test]
fn generated_paths_do_reach_the_outside_when_followed_naively() {
    // Guards the property's strength: the targets it uses do point at the
    // sandbox's outside directory from the root's position on the host.
    let sandbox = Sandbox::new();
    let naive = sandbox.root.join("../../../../outside/sentinel");
    assert_eq!(std::fs::read_to_string(naive).unwrap(), "sentinel\n");
}
