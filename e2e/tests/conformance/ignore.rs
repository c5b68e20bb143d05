//! Paths a reference leaves in every image that runs RUN and kiln, by
//! design, does not; each is explained in e2e/conformance/README.md.

use super::rootfs::{Kind, Tree};

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

/// The mount points runc creates for a BuildKit RUN in a root that lacks
/// them, which BuildKit keeps in the layer. Left out of BuildKit's tree
/// only as what they are, empty-looking `0755 root:root` directories:
/// anything else at these paths (or below them) is still compared.
pub const BUILDKIT_ARTEFACTS: &[&str] = &["dev", "proc", "sys"];

pub fn without_buildah_artefacts(mut tree: Tree) -> Tree {
    for path in BUILDAH_ARTEFACTS {
        tree.remove(*path);
    }
    tree
}

pub fn without_buildkit_artefacts(mut tree: Tree, kiln: &Tree) -> Tree {
    for path in BUILDKIT_ARTEFACTS {
        let artefact = tree.get(*path).is_some_and(|node| {
            node.kind == Kind::Dir && node.mode == 0o755 && node.uid == 0 && node.gid == 0
        });
        if artefact && !kiln.contains_key(*path) {
            tree.remove(*path);
        }
    }
    tree
}
