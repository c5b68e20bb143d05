//! The root filesystem an image's layers describe, computed from the layer
//! tars alone (nothing is extracted to disk): layers are applied in order,
//! whiteouts and opaque markers remove what lower layers put there, and a
//! non-directory written over a directory removes the directory's contents
//! (as containerd and buildah's storage apply layers).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

use sha2::Digest;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
}

/// One path of the final root filesystem, with every attribute compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    /// Permission bits with setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    /// sha256 of a regular file's content.
    pub content: Option<String>,
    /// A symlink's target.
    pub link: Option<String>,
    /// A device node's major and minor numbers.
    pub device: Option<(u32, u32)>,
    /// Extended attributes from PAX headers (`SCHILY.xattr.*`).
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// The other paths sharing this file's inode (hard links), sorted.
    pub hardlinks: Vec<String>,
    /// The first bytes of a short text file, shown in diffs only.
    pub preview: Option<String>,
}

impl Node {
    /// The attributes that must be equal, without the diff-only preview.
    fn compared(&self) -> Node {
        Node {
            preview: None,
            ..self.clone()
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
            Kind::CharDevice => "char-device",
            Kind::BlockDevice => "block-device",
            Kind::Fifo => "fifo",
        };
        write!(
            f,
            "{kind} mode={:04o} uid={} gid={}",
            self.mode, self.uid, self.gid
        )?;
        if self.kind == Kind::File {
            write!(f, " size={}", self.size)?;
        }
        if let Some((major, minor)) = self.device {
            write!(f, " device={major},{minor}")?;
        }
        if let Some(content) = &self.content {
            write!(f, " sha256={}", &content[..12.min(content.len())])?;
        }
        if let Some(link) = &self.link {
            write!(f, " -> {link}")?;
        }
        for (name, value) in &self.xattrs {
            write!(f, " xattr {name}={}", hex::encode(value))?;
        }
        if !self.hardlinks.is_empty() {
            write!(f, " hardlinked-with={}", self.hardlinks.join(","))?;
        }
        if let Some(preview) = &self.preview {
            write!(f, " {preview:?}")?;
        }
        Ok(())
    }
}

/// A whole root filesystem: normalised path (no leading `/` or `./`, no
/// trailing `/`; the root itself left out) to node.
pub type Tree = BTreeMap<String, Node>;

/// What one tar entry says, before it is applied to a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// `.wh.<name>`: remove `path` and everything below it.
    Whiteout(String),
    /// `.wh..wh..opq` in `path`: remove what lower layers put below it.
    Opaque(String),
    /// A hard link at `path` to the earlier entry `target`.
    HardLink {
        path: String,
        target: String,
    },
    Put(String, Node),
}

fn normalise(raw: &str) -> String {
    let trimmed = raw.trim_start_matches("./").trim_start_matches('/');
    trimmed.trim_end_matches('/').to_string()
}

fn split_parent(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(slash) => (&path[..slash], &path[slash + 1..]),
        None => ("", path),
    }
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// Classifies an entry by its path and header; `Put` nodes carry no
/// content yet (see [`read_layer`]).
pub fn classify(raw_path: &str, node: Node, hardlink_target: Option<&str>) -> Option<Change> {
    let path = normalise(raw_path);
    if path.is_empty() {
        return None;
    }
    let (parent, name) = split_parent(&path);
    if name == OPAQUE_MARKER {
        return Some(Change::Opaque(parent.to_string()));
    }
    if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
        return Some(Change::Whiteout(join(parent, hidden)));
    }
    if let Some(target) = hardlink_target {
        return Some(Change::HardLink {
            path,
            target: normalise(target),
        });
    }
    Some(Change::Put(path, node))
}

fn remove_below(tree: &mut Tree, path: &str) {
    let prefix = format!("{path}/");
    let doomed: Vec<String> = tree
        .range(prefix.clone()..)
        .take_while(|(p, _)| p.starts_with(&prefix))
        .map(|(p, _)| p.clone())
        .collect();
    for p in doomed {
        tree.remove(&p);
    }
}

/// Applies one layer's changes to `tree` (the layers below it). Whiteouts
/// and opaque markers only hide lower layers, so they go first.
pub fn apply_layer(tree: &mut Tree, changes: Vec<Change>) -> Result<(), String> {
    for change in &changes {
        match change {
            Change::Whiteout(path) => {
                tree.remove(path);
                remove_below(tree, path);
            }
            Change::Opaque(path) => remove_below(tree, path),
            _ => {}
        }
    }
    for change in changes {
        match change {
            Change::Put(path, node) => {
                let replaces_dir = tree.get(&path).is_some_and(|old| old.kind == Kind::Dir);
                if replaces_dir && node.kind != Kind::Dir {
                    remove_below(tree, &path);
                }
                tree.insert(path, node);
            }
            Change::HardLink { path, target } => {
                let Some(linked) = tree.get(&target).cloned() else {
                    return Err(format!(
                        "hard link {path} points to {target}, which no layer so far holds"
                    ));
                };
                tree.insert(path, linked);
            }
            Change::Whiteout(_) | Change::Opaque(_) => {}
        }
    }
    Ok(())
}

/// Fills in [`Node::hardlinks`]: paths whose nodes came from one hard-link
/// group (recorded by [`read_layer`] in `inodes`) name each other.
pub fn link_groups(tree: &mut Tree, inodes: &BTreeMap<String, u64>) {
    let mut groups: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for path in tree.keys() {
        if let Some(inode) = inodes.get(path) {
            groups.entry(*inode).or_default().push(path.clone());
        }
    }
    for members in groups.values().filter(|m| m.len() > 1) {
        for path in members {
            if let Some(node) = tree.get_mut(path) {
                node.hardlinks = members.iter().filter(|p| *p != path).cloned().collect();
            }
        }
    }
}

/// The root filesystem of an image, from its uncompressed layer tars in
/// order (base first).
pub fn rootfs<R: Read>(layers: Vec<R>) -> Result<Tree, String> {
    let mut tree = Tree::new();
    // Every regular file gets an inode number; a hard link shares its
    // target's, so groups survive across layers.
    let mut inodes: BTreeMap<String, u64> = BTreeMap::new();
    let mut next_inode = 0u64;
    for (index, layer) in layers.into_iter().enumerate() {
        let changes = read_layer(layer).map_err(|e| format!("layer {index}: {e}"))?;
        for change in &changes {
            match change {
                Change::Put(path, node) if node.kind == Kind::File => {
                    next_inode += 1;
                    inodes.insert(path.clone(), next_inode);
                }
                Change::Put(path, _) => {
                    inodes.remove(path);
                }
                Change::HardLink { path, target } => {
                    if let Some(inode) = inodes.get(target).copied() {
                        inodes.insert(path.clone(), inode);
                    }
                }
                Change::Whiteout(_) | Change::Opaque(_) => {}
            }
        }
        apply_layer(&mut tree, changes).map_err(|e| format!("layer {index}: {e}"))?;
    }
    inodes.retain(|path, _| tree.contains_key(path));
    link_groups(&mut tree, &inodes);
    Ok(tree)
}

/// Reads one uncompressed layer tar into changes, hashing file content.
pub fn read_layer<R: Read>(layer: R) -> Result<Vec<Change>, String> {
    let mut archive = tar::Archive::new(layer);
    let mut changes = Vec::new();
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let header = entry.header().clone();
        let raw_path = entry
            .path()
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .into_owned();
        let link = entry
            .link_name()
            .map_err(|e| format!("{raw_path}: {e}"))?
            .map(|l| l.to_string_lossy().into_owned());
        let kind = match header.entry_type() {
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink,
            tar::EntryType::Char => Kind::CharDevice,
            tar::EntryType::Block => Kind::BlockDevice,
            tar::EntryType::Fifo => Kind::Fifo,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::Link => {
                Kind::File
            }
            other => return Err(format!("{raw_path}: unexpected tar entry type {other:?}")),
        };
        let mut xattrs = BTreeMap::new();
        if let Some(extensions) = entry.pax_extensions().map_err(|e| e.to_string())? {
            for extension in extensions {
                let extension = extension.map_err(|e| e.to_string())?;
                let key = extension.key().map_err(|e| e.to_string())?;
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    xattrs.insert(name.to_string(), extension.value_bytes().to_vec());
                }
            }
        }
        let mut content = None;
        let mut preview = None;
        let mut size = 0;
        if header.entry_type().is_file() {
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| format!("{raw_path}: {e}"))?;
            size = bytes.len() as u64;
            content = Some(hex::encode(sha2::Sha256::digest(&bytes)));
            preview = text_preview(&bytes);
        }
        let device = match kind {
            Kind::CharDevice | Kind::BlockDevice => Some((
                header
                    .device_major()
                    .map_err(|e| format!("{raw_path}: {e}"))?
                    .unwrap_or(0),
                header
                    .device_minor()
                    .map_err(|e| format!("{raw_path}: {e}"))?
                    .unwrap_or(0),
            )),
            _ => None,
        };
        let node = Node {
            kind,
            device,
            mode: header.mode().map_err(|e| e.to_string())? & 0o7777,
            uid: header.uid().map_err(|e| e.to_string())?,
            gid: header.gid().map_err(|e| e.to_string())?,
            size,
            content,
            link: if kind == Kind::Symlink {
                link.clone()
            } else {
                None
            },
            xattrs,
            hardlinks: Vec::new(),
            preview,
        };
        let hardlink_target = (header.entry_type() == tar::EntryType::Link)
            .then_some(link)
            .flatten();
        if let Some(change) = classify(&raw_path, node, hardlink_target.as_deref()) {
            changes.push(change);
        }
    }
    Ok(changes)
}

fn text_preview(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    Some(text.chars().take(40).collect())
}

/// Every difference between two trees as (`/path`, description), `only
/// in` for what one side lacks.
pub fn diff(names: (&str, &str), reference: &Tree, kiln: &Tree) -> Vec<(String, String)> {
    let (theirs, ours) = names;
    let width = theirs.len().max(ours.len()) + 2;
    let mut differences = Vec::new();
    for (path, want) in reference {
        match kiln.get(path) {
            None => differences.push((
                format!("/{path}"),
                format!("  /{path}: only in {theirs}'s image: {want}"),
            )),
            Some(got) if got.compared() != want.compared() => differences.push((
                format!("/{path}"),
                format!(
                    "  /{path}:\n    {:width$}{want}\n    {:width$}{got}",
                    format!("{theirs}:"),
                    format!("{ours}:")
                ),
            )),
            Some(_) => {}
        }
    }
    for (path, got) in kiln {
        if !reference.contains_key(path) {
            differences.push((
                format!("/{path}"),
                format!("  /{path}: only in {ours}'s image: {got}"),
            ));
        }
    }
    differences
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(kind: Kind, mode: u32) -> Node {
        Node {
            kind,
            mode,
            uid: 0,
            gid: 0,
            size: 0,
            content: None,
            link: None,
            device: None,
            xattrs: BTreeMap::new(),
            hardlinks: Vec::new(),
            preview: None,
        }
    }

    fn file(content: &str) -> Node {
        Node {
            size: content.len() as u64,
            content: Some(content.to_string()),
            ..node(Kind::File, 0o644)
        }
    }

    #[test]
    fn entries_are_classified_by_name() {
        let cases: &[(&str, Option<&str>, Option<Change>)] = &[
            ("./", None, None),
            ("/", None, None),
            (
                "./etc/.wh.passwd",
                None,
                Some(Change::Whiteout("etc/passwd".into())),
            ),
            (".wh.data", None, Some(Change::Whiteout("data".into()))),
            ("etc/.wh..wh..opq", None, Some(Change::Opaque("etc".into()))),
            (
                "bin/link",
                Some("./bin/target"),
                Some(Change::HardLink {
                    path: "bin/link".into(),
                    target: "bin/target".into(),
                }),
            ),
            (
                "data/",
                None,
                Some(Change::Put("data".into(), node(Kind::Dir, 0o755))),
            ),
        ];
        for (path, hardlink, want) in cases {
            assert_eq!(
                &classify(path, node(Kind::Dir, 0o755), *hardlink),
                want,
                "{path}"
            );
        }
    }

    #[test]
    fn layers_apply_with_whiteouts_and_replacements() {
        let base = vec![
            Change::Put("a".into(), node(Kind::Dir, 0o755)),
            Change::Put("a/one".into(), file("1")),
            Change::Put("a/sub".into(), node(Kind::Dir, 0o755)),
            Change::Put("a/sub/two".into(), file("2")),
            Change::Put("b".into(), node(Kind::Dir, 0o755)),
            Change::Put("b/three".into(), file("3")),
            Change::Put("c".into(), node(Kind::Dir, 0o700)),
            Change::Put("c/four".into(), file("4")),
            Change::Put("keep".into(), file("k")),
        ];
        // (second layer, paths left afterwards)
        let cases: Vec<(Vec<Change>, Vec<&str>)> = vec![
            (
                vec![Change::Whiteout("a/sub".into())],
                vec!["a", "a/one", "b", "b/three", "c", "c/four", "keep"],
            ),
            (
                vec![
                    Change::Opaque("a".into()),
                    Change::Put("a/new".into(), file("n")),
                ],
                vec!["a", "a/new", "b", "b/three", "c", "c/four", "keep"],
            ),
            (
                vec![Change::Put("b".into(), file("now a file"))],
                vec![
                    "a",
                    "a/one",
                    "a/sub",
                    "a/sub/two",
                    "b",
                    "c",
                    "c/four",
                    "keep",
                ],
            ),
            (
                // A directory over a directory keeps what is inside.
                vec![Change::Put("c".into(), node(Kind::Dir, 0o755))],
                vec![
                    "a",
                    "a/one",
                    "a/sub",
                    "a/sub/two",
                    "b",
                    "b/three",
                    "c",
                    "c/four",
                    "keep",
                ],
            ),
            (
                // Whiteouts hide lower layers only, never the same layer.
                vec![
                    Change::Put("keep".into(), file("again")),
                    Change::Whiteout("keep".into()),
                ],
                vec![
                    "a",
                    "a/one",
                    "a/sub",
                    "a/sub/two",
                    "b",
                    "b/three",
                    "c",
                    "c/four",
                    "keep",
                ],
            ),
        ];
        for (layer, want) in cases {
            let mut tree = Tree::new();
            apply_layer(&mut tree, base.clone()).unwrap();
            apply_layer(&mut tree, layer.clone()).unwrap();
            assert_eq!(tree.keys().collect::<Vec<_>>(), want, "{layer:?}");
        }
    }

    #[test]
    fn a_hard_link_to_nothing_is_an_error() {
        let mut tree = Tree::new();
        let err = apply_layer(
            &mut tree,
            vec![Change::HardLink {
                path: "x".into(),
                target: "missing".into(),
            }],
        )
        .unwrap_err();
        assert_eq!(
            err,
            "hard link x points to missing, which no layer so far holds"
        );
    }

    fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            match kind {
                tar::EntryType::Link | tar::EntryType::Symlink => {
                    header.set_size(0);
                    builder.append_link(&mut header, path, data).unwrap();
                }
                _ => {
                    header.set_size(data.len() as u64);
                    builder
                        .append_data(&mut header, path, data.as_bytes())
                        .unwrap();
                }
            }
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn hard_links_are_grouped_across_layers_and_survive_their_target() {
        use tar::EntryType::{Link, Regular, Symlink};
        let base = tar_of(&[("f", Regular, "data"), ("g", Link, "f")]);
        let top = tar_of(&[
            (".wh.f", Regular, ""),
            ("h", Link, "g"),
            ("s", Symlink, "g"),
        ]);
        let tree = rootfs(vec![base.as_slice(), top.as_slice()]).unwrap();
        assert_eq!(tree.keys().collect::<Vec<_>>(), vec!["g", "h", "s"]);
        assert_eq!(tree["g"].hardlinks, vec!["h"]);
        assert_eq!(tree["h"].hardlinks, vec!["g"]);
        assert_eq!(tree["h"].size, 4);
        assert_eq!(
            tree["h"].content.as_deref(),
            Some("3a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7")
        );
        assert_eq!(tree["s"].link.as_deref(), Some("g"));
        assert!(tree["s"].hardlinks.is_empty());
    }

    #[test]
    fn diff_names_each_differing_path() {
        let mut buildah = Tree::new();
        buildah.insert("same".into(), file("x"));
        buildah.insert("mode".into(), file("y"));
        buildah.insert("gone".into(), file("z"));
        let mut kiln = buildah.clone();
        kiln.get_mut("mode").unwrap().mode = 0o600;
        kiln.remove("gone");
        kiln.insert("extra".into(), node(Kind::Dir, 0o755));
        // The preview is for reading diffs, never a difference itself.
        kiln.get_mut("same").unwrap().preview = Some("x".into());
        let lines: Vec<String> = diff(("buildah", "kiln"), &buildah, &kiln)
            .into_iter()
            .map(|(path, line)| {
                assert!(line.starts_with(&format!("  {path}:")), "{line}");
                line
            })
            .collect();
        assert_eq!(
            lines,
            vec![
                "  /gone: only in buildah's image: file mode=0644 uid=0 gid=0 size=1 sha256=z",
                "  /mode:\n    buildah: file mode=0644 uid=0 gid=0 size=1 sha256=y\n    kiln:    file mode=0600 uid=0 gid=0 size=1 sha256=y",
                "  /extra: only in kiln's image: dir mode=0755 uid=0 gid=0",
            ]
        );
    }
}
