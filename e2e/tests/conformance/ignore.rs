//! Paths buildah leaves in every image it builds and kiln, by design, does
//! not; each is explained in e2e/conformance/README.md.

use super::rootfs::Tree;

/// Exact paths (never what is below them) left out of both trees: the
/// mount points and placeholder files of buildah's chroot RUN.
pub const BUILDAH_ARTEFACTS: &[&str] = &[
    "dev",
    "proc",
    "sys",
    "run",
    "etc/hostname",
    "etc/hosts",
    "etc/resolv.conf",
];

pub fn without_artefacts(mut tree: Tree) -> Tree {
    for path in BUILDAH_ARTEFACTS {
        tree.remove(*path);
    }
    tree
}
