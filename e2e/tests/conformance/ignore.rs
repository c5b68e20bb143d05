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

#[cfg(test)]
mod tests {
    use super::super::rootfs::Node;
    use super::*;

    fn dir(mode: u32, uid: u64) -> Node {
        Node {
            kind: Kind::Dir,
            mode,
            uid,
            gid: 0,
            size: 0,
            content: None,
            link: None,
            device: None,
            xattrs: Default::default(),
            hardlinks: Vec::new(),
            preview: None,
        }
    }

    #[test]
    fn only_buildkits_bare_mount_points_are_left_out() {
        let mut buildkit = Tree::new();
        buildkit.insert("dev".into(), dir(0o755, 0));
        buildkit.insert("proc".into(), dir(0o555, 0));
        buildkit.insert("sys".into(), dir(0o755, 1000));
        buildkit.insert("dev/null".into(), dir(0o755, 0));
        buildkit.insert("run".into(), dir(0o755, 0));
        let kiln = Tree::new();
        let left: Vec<String> = without_buildkit_artefacts(buildkit.clone(), &kiln)
            .into_keys()
            .collect();
        assert_eq!(left, ["dev/null", "proc", "run", "sys"]);
        // Where kiln has the path too, both sides are compared.
        let mut kiln = Tree::new();
        kiln.insert("dev".into(), dir(0o700, 0));
        assert!(without_buildkit_artefacts(buildkit, &kiln).contains_key("dev"));
    }
}
