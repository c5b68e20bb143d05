//! COPY and ADD: choose the files, place them by Docker's rules, and write
//! them as one layer.
//!
//! Sources come from one or more roots: the build context (with its
//! `.dockerignore`), another stage's or image's root filesystem
//! (`--from`), or a staging directory for here-documents, downloaded URLs
//! and unpacked archives. Each becomes a [`SourceRoot`]; placing and layer
//! writing are the same for all of them.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::BuildError;
use super::chmod::Chmod;
use super::copy_dest::{self, MatchedSource};
use crate::context::{self, EntryKind as SourceKind, IgnoreRules};
use crate::fs::{self as rootfs_fs, EntryKind as ImageKind};
use crate::image::{EntryKind, EntryMeta, LayerPlan};

/// Where some of an instruction's sources live.
pub struct SourceRoot<'a> {
    pub root: &'a Path,
    pub rules: &'a IgnoreRules,
    pub patterns: Vec<String>,
    /// Every match is a directory whose *contents* are copied (unpacked
    /// archives), regardless of what the pattern names.
    pub as_directory: bool,
    /// Without `--chown`, entries keep the uid/gid they have here: files of
    /// another stage or image, and ADD's unpacked archives (their owners
    /// are the archive's, as in Docker). Context files become root's.
    pub keep_owner: bool,
    /// The patterns name here-documents: each is copied on its own, as
    /// BuildKit does, so several of them never make the destination a
    /// directory (`COPY <<A <<B /out` writes `/out`, the last one winning).
    pub here_documents: bool,
}

/// How copied entries are owned and moded.
#[derive(Clone, Copy, Debug)]
pub struct Ownership<'a> {
    /// `--chown`: every entry, created parents included.
    pub chown: Option<(u32, u32)>,
    /// `--chmod`: every copied entry's permission bits, and those of the
    /// parents the copy creates (as BuildKit 0.21 and later give them).
    pub chmod: Option<&'a Chmod>,
}

/// Where a COPY/ADD puts its files.
#[derive(Clone, Copy, Debug)]
pub struct CopyTarget<'a> {
    /// The destination as written (expanded).
    pub dest: &'a str,
    /// What a relative `dest` is relative to.
    pub workdir: &'a str,
    /// The stage's root filesystem, consulted for "is the destination a
    /// directory" and for parents that must be created.
    pub image_root: &'a Path,
}

/// Plans the layer of one COPY/ADD. `now` is the mtime of created
/// parents.
pub fn plan_copy(
    instruction: &'static str,
    sources: &[SourceRoot<'_>],
    target: &CopyTarget<'_>,
    ownership: Ownership<'_>,
    now: u64,
) -> Result<LayerPlan, BuildError> {
    let CopyTarget {
        dest,
        workdir,
        image_root,
    } = *target;
    let mut matched: Vec<(usize, context::SourceMatch)> = Vec::new();
    // The source arguments that matched something: an empty wildcard
    // beside other sources counts for nothing (BuildKit copies the others).
    let mut source_args = 0;
    for (index, source) in sources.iter().enumerate() {
        let (found, matched_patterns) =
            context::resolve_sources_counted(source.root, &source.patterns, source.rules)?;
        if !source.here_documents {
            source_args += matched_patterns;
        }
        matched.extend(found.into_iter().map(|found| (index, found)));
    }

    let (dest_abs, _) = copy_dest::absolute_dest(dest, workdir);
    let dest_is_dir = matches!(
        rootfs_fs::entry_kind(image_root, &dest_abs)?,
        Some(ImageKind::Directory)
    );
    let mut kinds = Vec::with_capacity(matched.len());
    for (index, found) in &matched {
        let source = &sources[*index];
        let is_dir = source.as_directory
            || match found.kind {
                SourceKind::Dir => true,
                // A source named through a symlink copies what it points
                // to, as Docker does for the top-level source.
                SourceKind::Symlink => followed(source.root, &found.rel_path)?.is_dir(),
                _ => false,
            };
        kinds.push(MatchedSource {
            rel_path: found.rel_path.to_string_lossy().into_owned(),
            is_dir,
        });
    }
    let is_heredoc = |i: usize| sources[matched[i].0].here_documents;
    let counted: Vec<MatchedSource> = (0..kinds.len())
        .filter(|&i| !is_heredoc(i))
        .map(|i| kinds[i].clone())
        .collect();
    let mut counted_placements = copy_dest::place(
        instruction,
        &counted,
        source_args,
        dest,
        workdir,
        dest_is_dir,
    )?
    .into_iter();
    let mut placements = Vec::with_capacity(kinds.len());
    for (i, kind) in kinds.iter().enumerate() {
        let placement = if is_heredoc(i) {
            copy_dest::place(
                instruction,
                std::slice::from_ref(kind),
                1,
                dest,
                workdir,
                dest_is_dir,
            )?
            .pop()
        } else {
            counted_placements.next()
        };
        // place() gives one placement per source.
        placements.extend(placement);
    }
    for placement in &mut placements {
        placement.dest = through_image_links(image_root, &placement.dest, placement.is_dir)?;
    }

    let mut planner = Planner {
        plan: LayerPlan::new(),
        image_root,
        ownership,
        now,
        created: HashSet::new(),
        links: HashMap::new(),
        planned: HashMap::new(),
    };
    for ((index, found), placement) in matched.iter().zip(&placements) {
        let source = &sources[*index];
        if placement.is_dir {
            planner.directory(source, &found.rel_path, &placement.dest)?;
        } else {
            planner.single_file(source, &found.rel_path, &placement.dest)?;
        }
    }
    Ok(planner.plan)
}

/// `dest` with the symlinks of the image resolved inside it, as Docker
/// and buildah copy through a symlinked directory (`COPY a /link/` with
/// `/link -> /data` writes `/data/a`): every parent, and the destination
/// itself when it receives a directory's contents. A layer entry below a
/// symlink would be refused or misplaced when the image is unpacked.
fn through_image_links(
    image_root: &Path,
    dest: &str,
    follow_last: bool,
) -> Result<String, BuildError> {
    let dest_path = Path::new(dest);
    let (dir, last) = match (follow_last, dest_path.parent(), dest_path.file_name()) {
        (false, Some(parent), Some(name)) => (parent, Some(name)),
        _ => (dest_path, None),
    };
    let host = rootfs_fs::resolve_in_root(image_root, &dir.to_string_lossy())?;
    let mut resolved = Path::new("/").join(host.strip_prefix(image_root).unwrap_or(dir));
    if let Some(name) = last {
        resolved.push(name);
    }
    Ok(resolved.to_string_lossy().into_owned())
}

/// The real path behind a source, following symlinks inside its root.
fn followed(root: &Path, rel: &Path) -> Result<std::fs::Metadata, BuildError> {
    let resolved = rootfs_fs::resolve_in_root(root, &rel.to_string_lossy())?;
    std::fs::metadata(&resolved).map_err(BuildError::io("reading", resolved))
}

/// What an entry is, as far as `--chmod` cares: links keep their mode,
/// and `X` makes directories searchable.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MetaKind {
    Link,
    Dir,
    Other,
}

struct Planner<'a> {
    plan: LayerPlan,
    image_root: &'a Path,
    ownership: Ownership<'a>,
    now: u64,
    /// Directories this layer creates, so each is written once.
    created: HashSet<String>,
    /// First destination of each (device, inode) with several links: later
    /// ones become hard links to it, as in the source tree.
    links: HashMap<(u64, u64), PathBuf>,
    /// Every path planned so far, and whether it is a directory: sources
    /// that land on one path replace each other, the last one winning, as
    /// in Docker (`COPY ba* /d/` with a directory `bam/` holding `bat` and
    /// a file `bat`).
    planned: HashMap<String, bool>,
}

impl Planner<'_> {
    /// Plans `kind` at `path`, replacing what an earlier source planned
    /// there: a directory over a directory merges with it (its metadata
    /// wins), anything else removes the earlier entry and what it held.
    fn put(&mut self, path: &Path, kind: EntryKind, meta: EntryMeta) -> Result<(), BuildError> {
        let key = path.to_string_lossy().trim_end_matches('/').to_string();
        let is_dir = matches!(kind, EntryKind::Dir);
        if let Some(was_dir) = self.planned.get(&key).copied() {
            let with_children = !(was_dir && is_dir);
            self.plan.remove(Path::new(&key), with_children)?;
            if with_children {
                let below = format!("{key}/");
                let replaced = |p: &str| p == key || p.starts_with(&below);
                self.planned.retain(|p, _| !replaced(p));
                self.created.retain(|p| !replaced(p));
                self.links
                    .retain(|_, first| !replaced(first.to_string_lossy().trim_end_matches('/')));
            }
        }
        if is_dir {
            self.created.insert(key.clone());
        }
        self.planned.insert(key, is_dir);
        self.plan.push(path, kind, meta)?;
        Ok(())
    }

    /// The owner of a copied entry; `source` is `None` for directories
    /// the copy creates on the way to its destination.
    fn owner(&self, source: Option<(&SourceRoot<'_>, u32, u32)>) -> (u64, u64) {
        match (self.ownership.chown, source) {
            (Some((u, g)), _) => (u.into(), g.into()),
            (None, Some((root, uid, gid))) if root.keep_owner => (uid.into(), gid.into()),
            (None, _) => (0, 0),
        }
    }

    fn meta(
        &self,
        source: &SourceRoot<'_>,
        mode: u32,
        (uid, gid): (u32, u32),
        mtime: i64,
        kind: MetaKind,
    ) -> EntryMeta {
        let (uid, gid) = self.owner(Some((source, uid, gid)));
        let mode = match self.ownership.chmod {
            Some(chmod) if kind != MetaKind::Link => chmod.apply(mode, kind == MetaKind::Dir),
            _ => mode & 0o7777,
        };
        EntryMeta::new(mode, uid, gid, u64::try_from(mtime).unwrap_or(0))
    }

    /// Writes every missing directory from `/` down to `dir` (inclusive when
    /// `include_self`), owned like the copied files.
    fn ensure_dirs(&mut self, dir: &str, include_self: bool) -> Result<(), BuildError> {
        let mut prefix = String::new();
        let parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
        let last = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            prefix.push('/');
            prefix.push_str(part);
            if i + 1 == last && !include_self {
                break;
            }
            if self.created.contains(&prefix) {
                continue;
            }
            if rootfs_fs::entry_kind(self.image_root, &prefix)?.is_some() {
                continue;
            }
            let (uid, gid) = self.owner(None);
            let mode = self
                .ownership
                .chmod
                .map_or(0o755, |chmod| chmod.apply(0o755, true));
            let meta = EntryMeta::new(mode, uid, gid, self.now);
            self.put(Path::new(&prefix), EntryKind::Dir, meta)?;
            self.created.insert(prefix.clone());
        }
        Ok(())
    }

    fn single_file(
        &mut self,
        source: &SourceRoot<'_>,
        rel: &Path,
        dest: &str,
    ) -> Result<(), BuildError> {
        self.ensure_dirs(dest, false)?;
        let resolved = rootfs_fs::resolve_in_root(source.root, &rel.to_string_lossy())?;
        let meta =
            std::fs::symlink_metadata(&resolved).map_err(BuildError::io("reading", &resolved))?;
        let mut entry = self.meta(
            source,
            meta.mode(),
            (meta.uid(), meta.gid()),
            meta.mtime(),
            MetaKind::Other,
        );
        entry.xattrs = source_xattrs(source, &resolved)?;
        let kind = if meta.is_file() {
            EntryKind::File { source: resolved }
        } else if meta.file_type().is_symlink() {
            // Left by the resolution only when it leads nowhere.
            return Err(BuildError::io("reading", &resolved)(std::io::Error::from(
                std::io::ErrorKind::NotFound,
            )));
        } else {
            match special_kind(&meta) {
                Some(kind) => kind,
                None => {
                    tracing::warn!(path = %rel.display(), "not copying a socket");
                    return Ok(());
                }
            }
        };
        self.put(Path::new(dest), kind, entry)?;
        Ok(())
    }

    fn directory(
        &mut self,
        source: &SourceRoot<'_>,
        rel: &Path,
        dest: &str,
    ) -> Result<(), BuildError> {
        self.ensure_dirs(dest, true)?;
        // A directory named through a symlink: walk what it points to.
        let start = if rel.as_os_str() == "." {
            PathBuf::from(".")
        } else {
            let resolved = rootfs_fs::resolve_in_root(source.root, &rel.to_string_lossy())?;
            resolved
                .strip_prefix(source.root)
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| rel.to_path_buf())
        };
        let prefix = if start.as_os_str() == "." {
            PathBuf::new()
        } else {
            start.clone()
        };
        for entry in context::walk(source.root, &start, source.rules) {
            let entry = entry?;
            let inner = entry
                .rel_path
                .strip_prefix(&prefix)
                .unwrap_or(&entry.rel_path);
            let target = Path::new(dest).join(inner);
            let mut meta = self.meta(
                source,
                entry.mode,
                (entry.uid, entry.gid),
                entry.mtime,
                match entry.kind {
                    SourceKind::Symlink => MetaKind::Link,
                    SourceKind::Dir => MetaKind::Dir,
                    _ => MetaKind::Other,
                },
            );
            if entry.kind != SourceKind::Symlink {
                meta.xattrs = source_xattrs(source, &source.root.join(&entry.rel_path))?;
            }
            let kind = match entry.kind {
                SourceKind::Dir => {
                    self.created.insert(target.to_string_lossy().into_owned());
                    EntryKind::Dir
                }
                SourceKind::Symlink => EntryKind::Symlink {
                    target: entry.symlink_target.clone().unwrap_or_default(),
                },
                SourceKind::File if entry.nlink > 1 => {
                    match self.links.get(&(entry.dev, entry.ino)) {
                        Some(first) => EntryKind::Hardlink {
                            target: first.clone(),
                        },
                        None => {
                            self.links.insert((entry.dev, entry.ino), target.clone());
                            EntryKind::File {
                                source: source.root.join(&entry.rel_path),
                            }
                        }
                    }
                }
                SourceKind::File => EntryKind::File {
                    source: source.root.join(&entry.rel_path),
                },
                SourceKind::Other => {
                    let path = source.root.join(&entry.rel_path);
                    let meta = std::fs::symlink_metadata(&path)
                        .map_err(BuildError::io("reading", &path))?;
                    match special_kind(&meta) {
                        Some(kind) => kind,
                        None => {
                            tracing::warn!(path = %entry.rel_path.display(), "not copying a socket");
                            continue;
                        }
                    }
                }
            };
            self.put(&target, kind, meta)?;
        }
        Ok(())
    }
}

/// The extended attributes a copied entry keeps: those of files from
/// another stage or image (a binary's `security.capability`, `user.*`), as
/// BuildKit copies them; context files are the build's input, not an
/// image's, and get none.
fn source_xattrs(
    source: &SourceRoot<'_>,
    host: &Path,
) -> Result<std::collections::BTreeMap<String, Vec<u8>>, BuildError> {
    if !source.keep_owner {
        return Ok(Default::default());
    }
    Ok(crate::snapshot::read_xattrs(host)?)
}

/// A FIFO or a device node is copied as what it is, as Docker does, and
/// never opened (a FIFO would block the build forever); a socket is not
/// copied (None).
fn special_kind(meta: &std::fs::Metadata) -> Option<EntryKind> {
    use std::os::unix::fs::FileTypeExt;
    let file_type = meta.file_type();
    if file_type.is_fifo() {
        return Some(EntryKind::Fifo);
    }
    let block = file_type.is_block_device();
    if block || file_type.is_char_device() {
        let rdev = meta.rdev();
        return Some(EntryKind::Device(crate::image::Device {
            block,
            major: rustix::fs::major(rdev),
            minor: rustix::fs::minor(rdev),
        }));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One COPY planned into the empty image root `image`: `roots` are
    /// (patterns, keep_owner, here_documents) in `source`.
    fn plan_in(
        source: &Path,
        image: &Path,
        roots: &[(&[&str], bool, bool)],
        dest: &str,
        chmod: Option<&Chmod>,
    ) -> LayerPlan {
        let rules = IgnoreRules::empty();
        let sources: Vec<SourceRoot<'_>> = roots
            .iter()
            .map(|(patterns, keep_owner, here_documents)| SourceRoot {
                root: source,
                rules: &rules,
                patterns: patterns.iter().map(|p| p.to_string()).collect(),
                as_directory: false,
                keep_owner: *keep_owner,
                here_documents: *here_documents,
            })
            .collect();
        let target = CopyTarget {
            dest,
            workdir: "/",
            image_root: image,
        };
        let ownership = Ownership { chown: None, chmod };
        plan_copy("COPY", &sources, &target, ownership, 0).unwrap_or_else(|e| panic!("{dest}: {e}"))
    }

    /// `--chmod` in both spellings: symbolic clauses change each entry's
    /// own bits (`X` by its kind), links keep theirs, and the parents the
    /// copy creates get the mode too (a directory's), as in BuildKit.
    #[test]
    fn chmod_applies_to_entries_and_created_parents() {
        use std::os::unix::fs::PermissionsExt;
        let (Ok(context), Ok(image)) = (tempfile::tempdir(), tempfile::tempdir()) else {
            panic!("temporary directories")
        };
        let set = |path: &str, mode: u32| {
            let path = context.path().join(path);
            assert!(std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).is_ok());
        };
        assert!(std::fs::create_dir(context.path().join("d")).is_ok());
        assert!(std::fs::write(context.path().join("d/tool"), "#!/bin/sh\n").is_ok());
        assert!(std::fs::write(context.path().join("d/data"), "x").is_ok());
        assert!(std::os::unix::fs::symlink("data", context.path().join("d/link")).is_ok());
        set("d", 0o700);
        set("d/tool", 0o700);
        set("d/data", 0o600);
        let plan = |chmod: &Chmod| {
            plan_in(
                context.path(),
                image.path(),
                &[(&["d"], false, false)],
                "/new/parent/",
                Some(chmod),
            )
            .entry_modes()
        };
        let symbolic = Chmod::parse("u=rwX,go=rX").unwrap_or_else(|e| panic!("{e}"));
        let mut got = plan(&symbolic);
        got.sort();
        let want: Vec<(String, u32)> = vec![
            ("new".into(), 0o755),
            ("new/parent".into(), 0o755),
            ("new/parent/data".into(), 0o644),
            ("new/parent/link".into(), 0o777),
            ("new/parent/tool".into(), 0o755),
        ];
        assert_eq!(got, want);
        let mut got = plan(&Chmod::Bits(0o640));
        got.sort();
        let want: Vec<(String, u32)> = vec![
            ("new".into(), 0o640),
            ("new/parent".into(), 0o640),
            ("new/parent/data".into(), 0o640),
            ("new/parent/link".into(), 0o777),
            ("new/parent/tool".into(), 0o640),
        ];
        assert_eq!(got, want);
    }

    /// kaniko's `COPY context/bar/doesnotexist* context/foo hello`: a
    /// wildcard that matches nothing beside a source that matches is no
    /// error and no second source, so the file is copied *as* `/hello`
    /// (BuildKit's image); alone, it still fails with Docker's words.
    #[test]
    fn an_empty_wildcard_beside_a_file_is_no_second_source() {
        use std::os::unix::fs::PermissionsExt;
        let (Ok(context), Ok(image)) = (tempfile::tempdir(), tempfile::tempdir()) else {
            panic!("temporary directories")
        };
        let foo = context.path().join("foo");
        assert!(std::fs::write(&foo, "foo\n").is_ok());
        assert!(std::fs::set_permissions(&foo, std::fs::Permissions::from_mode(0o644)).is_ok());
        let plan = plan_in(
            context.path(),
            image.path(),
            &[(&["doesnotexist*", "foo"], false, false)],
            "hello",
            None,
        );
        assert_eq!(plan.entry_modes(), vec![("hello".to_string(), 0o644)]);
        let rules = IgnoreRules::empty();
        let alone = [SourceRoot {
            root: context.path(),
            rules: &rules,
            patterns: vec!["doesnotexist*".to_string()],
            as_directory: false,
            keep_owner: false,
            here_documents: false,
        }];
        let target = CopyTarget {
            dest: "hello",
            workdir: "/",
            image_root: image.path(),
        };
        let ownership = Ownership {
            chown: None,
            chmod: None,
        };
        match plan_copy("COPY", &alone, &target, ownership, 0) {
            Err(e) => assert_eq!(e.to_string(), "COPY failed: no source files were specified"),
            Ok(_) => panic!("a COPY whose only source matches nothing was planned"),
        }
    }

    /// Sources that land on one path: the later one wins, as in Docker —
    /// a file over a file, a file over a directory (its contents go), a
    /// directory over a file; here-documents are copied one by one, so
    /// several never need a directory destination.
    #[test]
    fn the_last_source_on_a_path_wins() {
        use std::os::unix::fs::PermissionsExt;
        let (Ok(context), Ok(image)) = (tempfile::tempdir(), tempfile::tempdir()) else {
            panic!("temporary directories")
        };
        let write = |path: &str, mode: u32| {
            let path = context.path().join(path);
            if let Some(parent) = path.parent() {
                assert!(std::fs::create_dir_all(parent).is_ok());
            }
            assert!(std::fs::write(&path, path.to_string_lossy().as_bytes()).is_ok());
            assert!(std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).is_ok());
        };
        write("bam/bat", 0o600);
        write("bat", 0o640);
        write("first/x", 0o604);
        write("second/x/inner", 0o606);
        write("third/x", 0o607);
        write("A", 0o611);
        write("B", 0o612);
        let plan = |roots: &[(&[&str], bool)], dest: &str| {
            let roots: Vec<(&[&str], bool, bool)> = roots
                .iter()
                .map(|(patterns, here)| (*patterns, false, *here))
                .collect();
            let mut modes = plan_in(context.path(), image.path(), &roots, dest, None).entry_modes();
            modes.sort();
            modes
        };
        let named = |entries: &[(&str, u32)]| -> Vec<(String, u32)> {
            entries.iter().map(|(n, m)| (n.to_string(), *m)).collect()
        };
        // `bam/`'s bat, then the file bat (matches in name order).
        assert_eq!(
            plan(&[(&["ba*"], false)], "/d/"),
            named(&[("d", 0o755), ("d/bat", 0o640)])
        );
        // A file x, a directory x holding inner, a file x again.
        assert_eq!(
            plan(&[(&["first/", "second/"], false)], "/d/"),
            named(&[("d", 0o755), ("d/x", 0o755), ("d/x/inner", 0o606)])
        );
        assert_eq!(
            plan(&[(&["first/", "second/", "third/"], false)], "/d/"),
            named(&[("d", 0o755), ("d/x", 0o607)])
        );
        // COPY <<A <<B /out: /out is the last here-document.
        assert_eq!(
            plan(&[(&["A", "B"], true)], "/out"),
            named(&[("out", 0o612)])
        );
        assert_eq!(
            plan(&[(&["A", "B"], true)], "/out/"),
            named(&[("out", 0o755), ("out/A", 0o611), ("out/B", 0o612)])
        );
    }

    /// Files of another stage or image keep `security.capability` and
    /// `user.*` (a ping binary copied from a build stage still works);
    /// context files get none.
    #[test]
    fn files_from_a_stage_keep_their_extended_attributes() {
        use std::collections::BTreeMap;
        let (Ok(stage), Ok(image)) = (tempfile::tempdir(), tempfile::tempdir()) else {
            panic!("temporary directories")
        };
        assert!(std::fs::create_dir(stage.path().join("bin")).is_ok());
        assert!(std::fs::write(stage.path().join("bin/ping"), "elf").is_ok());
        let cap = [
            1u8, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        for (name, value) in [("security.capability", &cap[..]), ("user.origin", b"stage")] {
            let set = rustix::fs::lsetxattr(
                stage.path().join("bin/ping"),
                name,
                value,
                rustix::fs::XattrFlags::empty(),
            );
            assert!(set.is_ok(), "{name}: {set:?}");
        }
        let plan = |pattern: &str, keep_owner: bool| {
            let mut xattrs = plan_in(
                stage.path(),
                image.path(),
                &[(&[pattern], keep_owner, false)],
                "/usr/",
                None,
            )
            .entry_xattrs();
            xattrs.sort();
            xattrs
        };
        let kept = BTreeMap::from([
            ("security.capability".to_string(), cap.to_vec()),
            ("user.origin".to_string(), b"stage".to_vec()),
        ]);
        // COPY --from=stage /bin /usr/ (a directory) and /bin/ping (a file).
        assert_eq!(
            plan("bin", true),
            [
                ("usr".to_string(), BTreeMap::new()),
                ("usr/ping".to_string(), kept.clone()),
            ]
        );
        assert_eq!(
            plan("bin/ping", true),
            [
                ("usr".to_string(), BTreeMap::new()),
                ("usr/ping".to_string(), kept),
            ]
        );
        assert_eq!(
            plan("bin/ping", false),
            [
                ("usr".to_string(), BTreeMap::new()),
                ("usr/ping".to_string(), BTreeMap::new()),
            ]
        );
    }

    #[test]
    fn destinations_go_through_the_image_symlinks() {
        let Ok(root) = tempfile::tempdir() else {
            panic!("a temporary directory for the image root")
        };
        let root = root.path();
        assert!(std::fs::create_dir(root.join("data")).is_ok());
        for (link, target) in [
            ("linked", "/data"),
            ("relative", "data"),
            ("escape", "../../.."),
        ] {
            assert!(std::os::unix::fs::symlink(target, root.join(link)).is_ok());
        }
        // (destination, receives a directory's contents, where it lands)
        let cases = [
            ("/linked/a.txt", false, "/data/a.txt"),
            ("/linked", true, "/data"),
            ("/linked", false, "/linked"),
            ("/relative/sub/b", false, "/data/sub/b"),
            ("/plain/x", false, "/plain/x"),
            ("/escape/x", false, "/x"),
            ("/", true, "/"),
        ];
        for (dest, is_dir, want) in cases {
            assert_eq!(
                through_image_links(root, dest, is_dir).ok().as_deref(),
                Some(want),
                "{dest} {is_dir}"
            );
        }
    }
}
