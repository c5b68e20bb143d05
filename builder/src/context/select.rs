//! Choosing the files a COPY or ADD takes from a context (or, with empty
//! rules, from an earlier stage's root for `COPY --from`).
//!
//! [`resolve_sources`] expands each source the way Docker does: cleaned as
//! if the root were `/`, wildcards matched one path segment at a time with
//! `filepath.Match` rules, symlinks in parent directories resolved without
//! leaving the root. [`walk`] then lists everything under a matched
//! directory in byte-wise path order, one directory listing at a time, so
//! memory grows with the widest directory, not with the tree.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use super::ContextError;
use super::dockerignore::IgnoreRules;
use super::pattern::{Glob, clean_in_root, has_wildcards, unescape};

/// Symlinks followed while resolving one path, as Linux's own limit.
const MAX_SYMLINK_HOPS: usize = 40;

/// What a path is, without following a final symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// A fifo, socket or device node.
    Other,
}

impl EntryKind {
    fn of(file_type: fs::FileType) -> EntryKind {
        if file_type.is_symlink() {
            EntryKind::Symlink
        } else if file_type.is_dir() {
            EntryKind::Dir
        } else if file_type.is_file() {
            EntryKind::File
        } else {
            EntryKind::Other
        }
    }
}

/// One path a COPY source named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMatch {
    /// Relative to the root, with symlinked parents resolved; `.` for the
    /// root itself. Its file name is the one the source named.
    pub rel_path: PathBuf,
    pub kind: EntryKind,
}

/// Expands COPY/ADD `patterns` against `root`. Each pattern's matches are
/// sorted by path and appended in pattern order; ignored paths are left
/// out. A literal path that names nothing is an error with Docker's
/// wording; a wildcard that matches nothing is one only when no other
/// source matched either (BuildKit copies the other sources, as in
/// kaniko's `COPY context/bar/doesnotexist* context/foo hello`).
pub fn resolve_sources(
    root: &Path,
    patterns: &[String],
    rules: &IgnoreRules,
) -> Result<Vec<SourceMatch>, ContextError> {
    resolve_sources_counted(root, patterns, rules).map(|(all, _)| all)
}

/// [`resolve_sources`], and how many of the patterns matched something:
/// the sources Docker's destination rules count (an empty wildcard beside
/// `COPY nothing* a.txt /dest` is no second source).
pub fn resolve_sources_counted(
    root: &Path,
    patterns: &[String],
    rules: &IgnoreRules,
) -> Result<(Vec<SourceMatch>, usize), ContextError> {
    let mut all = Vec::new();
    let mut matched_patterns = 0;
    let mut empty_wildcard = None;
    for pattern in patterns {
        let cleaned = clean_in_root(pattern);
        if cleaned == "." {
            all.push(SourceMatch {
                rel_path: PathBuf::from("."),
                kind: EntryKind::Dir,
            });
            matched_patterns += 1;
            continue;
        }
        let wildcard = has_wildcards(&cleaned);
        let mut matches = match wildcard {
            true => expand_wildcards(root, pattern, &cleaned)?,
            false => resolve_literal(root, &cleaned)?.into_iter().collect(),
        };
        matches.retain(|m| {
            let rel = m.rel_path.to_string_lossy();
            !rules.is_excluded(&rel) || (m.kind == EntryKind::Dir && !rules.can_skip_dir(&rel))
        });
        if matches.is_empty() {
            if !wildcard {
                return Err(ContextError::SourceNotFound { path: cleaned });
            }
            empty_wildcard.get_or_insert_with(|| pattern.clone());
            continue;
        }
        matches.sort_by(|a, b| {
            a.rel_path
                .as_os_str()
                .as_bytes()
                .cmp(b.rel_path.as_os_str().as_bytes())
        });
        all.extend(matches);
        matched_patterns += 1;
    }
    match empty_wildcard {
        Some(pattern) if all.is_empty() => Err(ContextError::NoSourceFiles { pattern }),
        _ => Ok((all, matched_patterns)),
    }
}

fn resolve_literal(root: &Path, cleaned: &str) -> Result<Option<SourceMatch>, ContextError> {
    let components: Vec<OsString> = cleaned.split('/').map(OsString::from).collect();
    let Some(real) = resolve_in_root(root, components, false, cleaned)? else {
        return Ok(None);
    };
    if real.as_os_str().is_empty() {
        // A path that cleaned to something else but resolved to the root.
        return Ok(Some(SourceMatch {
            rel_path: PathBuf::from("."),
            kind: EntryKind::Dir,
        }));
    }
    let kind = match fs::symlink_metadata(root.join(&real)) {
        Ok(meta) => EntryKind::of(meta.file_type()),
        Err(_) => return Ok(None),
    };
    Ok(Some(SourceMatch {
        rel_path: real,
        kind,
    }))
}

fn expand_wildcards(
    root: &Path,
    pattern: &str,
    cleaned: &str,
) -> Result<Vec<SourceMatch>, ContextError> {
    let segments: Vec<&str> = cleaned.split('/').collect();
    // Directories (resolved, relative to root) the next segment applies to.
    let mut dirs: Vec<PathBuf> = vec![PathBuf::new()];
    let mut found = Vec::new();
    for (index, segment) in segments.iter().enumerate() {
        let last = index + 1 == segments.len();
        let mut next_dirs = Vec::new();
        let mut keep = |candidate: PathBuf, meta: fs::Metadata| match last {
            true => found.push(SourceMatch {
                rel_path: candidate,
                kind: EntryKind::of(meta.file_type()),
            }),
            false if meta.is_dir() => next_dirs.push(candidate),
            false => {}
        };
        if has_wildcards(segment) {
            let glob = Glob::compile(segment, false).map_err(|e| ContextError::InvalidSource {
                kind: "COPY source",
                value: pattern.to_string(),
                reason: format!("syntax error in pattern: {}", e.describe()),
            })?;
            // Like Docker's walk, a wildcard never descends through a
            // symlink: only real directories are searched further.
            for dir in &dirs {
                let Ok(listing) = fs::read_dir(root.join(dir)) else {
                    continue;
                };
                for entry in listing {
                    let entry =
                        entry.map_err(|e| ContextError::io("listing", root.join(dir), e))?;
                    let name = entry.file_name();
                    if !glob.matches(&name.to_string_lossy()) {
                        continue;
                    }
                    let candidate = dir.join(&name);
                    if let Ok(meta) = fs::symlink_metadata(root.join(&candidate)) {
                        keep(candidate, meta);
                    }
                }
            }
        } else {
            let name = unescape(segment);
            for dir in &dirs {
                let candidate = dir.join(&name);
                let components = candidate.iter().map(OsStr::to_os_string).collect();
                let display = candidate.to_string_lossy().into_owned();
                let Some(real) = resolve_in_root(root, components, !last, &display)? else {
                    continue;
                };
                if let Ok(meta) = fs::symlink_metadata(root.join(&real)) {
                    keep(real, meta);
                }
            }
        }
        dirs = next_dirs;
    }
    found.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    found.dedup();
    Ok(found)
}

/// Resolves `components` below `root`, following symlinks as if `root`
/// were `/` (an absolute or `..` target cannot leave it). The final
/// component is followed only with `follow_last`. `None` when something
/// along the way does not exist; an empty path for the root itself.
fn resolve_in_root(
    root: &Path,
    components: Vec<OsString>,
    follow_last: bool,
    display: &str,
) -> Result<Option<PathBuf>, ContextError> {
    let mut pending: VecDeque<OsString> = components.into();
    let mut resolved = PathBuf::new();
    let mut hops = 0;
    while let Some(part) = pending.pop_front() {
        match part.as_bytes() {
            b"" | b"." => continue,
            b".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let candidate = resolved.join(&part);
        let meta = match fs::symlink_metadata(root.join(&candidate)) {
            Ok(meta) => meta,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(20 /* ENOTDIR */) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(ContextError::io("inspecting", root.join(&candidate), e)),
        };
        let last = pending.is_empty();
        if meta.file_type().is_symlink() && (!last || follow_last) {
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                return Err(ContextError::SymlinkLoop {
                    path: display.to_string(),
                });
            }
            let target = fs::read_link(root.join(&candidate))
                .map_err(|e| ContextError::io("reading symlink", root.join(&candidate), e))?;
            if target.is_absolute() {
                resolved = PathBuf::new();
            }
            for component in target.components().rev() {
                match component {
                    Component::Normal(p) => pending.push_front(p.to_os_string()),
                    Component::ParentDir => pending.push_front(OsString::from("..")),
                    Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
                }
            }
            continue;
        }
        resolved = candidate;
    }
    Ok(Some(resolved))
}

/// One entry below a walked directory, with what a layer needs from lstat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkEntry {
    /// Relative to the root given to [`walk`].
    pub rel_path: PathBuf,
    pub kind: EntryKind,
    /// Permission bits, including setuid, setgid and sticky.
    pub mode: u32,
    pub size: u64,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: i64,
    pub symlink_target: Option<PathBuf>,
    /// Device and inode identify hard links to the same file.
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
}

/// Lists every entry below `dir_rel` (not `dir_rel` itself) that `rules`
/// keep, in byte-wise order of the full path, without following symlinks.
/// An excluded directory appears only when something inside it is
/// re-included by a `!` pattern.
pub fn walk<'r>(root: &Path, dir_rel: impl AsRef<Path>, rules: &'r IgnoreRules) -> Walk<'r> {
    let start = clean_in_root(&dir_rel.as_ref().to_string_lossy());
    let start = match start.as_str() {
        "." => PathBuf::new(),
        other => PathBuf::from(other),
    };
    Walk {
        root: root.to_path_buf(),
        rules,
        levels: vec![vec![Pending::Descend(start)].into_iter()],
    }
}

/// The iterator [`walk`] returns.
pub struct Walk<'r> {
    root: PathBuf,
    rules: &'r IgnoreRules,
    /// One sorted listing per directory being walked, outermost first.
    levels: Vec<std::vec::IntoIter<Pending>>,
}

enum Pending {
    Yield(PathBuf),
    Descend(PathBuf),
}

impl Walk<'_> {
    /// Lists `dir` and returns what to yield or descend into, ordered so
    /// that full paths come out byte-wise sorted: a directory `a` is yielded
    /// at key `a` but descended into at key `a/`, after `a-b` and `a.txt`.
    fn list(&self, dir: &Path) -> Result<Vec<Pending>, ContextError> {
        let full = self.root.join(dir);
        let listing =
            fs::read_dir(&full).map_err(|e| ContextError::io("listing", full.clone(), e))?;
        let mut keyed: Vec<(Vec<u8>, Pending)> = Vec::new();
        for entry in listing {
            let entry = entry.map_err(|e| ContextError::io("listing", full.clone(), e))?;
            let file_type = entry
                .file_type()
                .map_err(|e| ContextError::io("inspecting", entry.path(), e))?;
            let name = entry.file_name();
            let rel = dir.join(&name);
            let rel_text = rel.to_string_lossy();
            let excluded = self.rules.is_excluded(&rel_text);
            if file_type.is_dir() {
                if excluded
                    && (self.rules.can_skip_dir(&rel_text) || !self.has_kept_descendant(&rel))
                {
                    continue;
                }
                let mut descend_key = name.as_bytes().to_vec();
                descend_key.push(b'/');
                keyed.push((descend_key, Pending::Descend(rel.clone())));
            } else if excluded {
                continue;
            }
            keyed.push((name.as_bytes().to_vec(), Pending::Yield(rel)));
        }
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(keyed.into_iter().map(|(_, p)| p).collect())
    }

    /// Whether an excluded directory holds something a `!` pattern keeps.
    fn has_kept_descendant(&self, dir: &Path) -> bool {
        // An error is reported when the directory is walked for real.
        walk(&self.root, dir, self.rules).next().is_some()
    }

    fn entry(&self, rel: PathBuf) -> Result<WalkEntry, ContextError> {
        let full = self.root.join(&rel);
        let meta = fs::symlink_metadata(&full)
            .map_err(|e| ContextError::io("inspecting", full.clone(), e))?;
        let kind = EntryKind::of(meta.file_type());
        let symlink_target = match kind {
            EntryKind::Symlink => Some(
                fs::read_link(&full)
                    .map_err(|e| ContextError::io("reading symlink", full.clone(), e))?,
            ),
            _ => None,
        };
        Ok(WalkEntry {
            rel_path: rel,
            kind,
            mode: meta.mode() & 0o7777,
            size: meta.size(),
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            symlink_target,
            dev: meta.dev(),
            ino: meta.ino(),
            nlink: meta.nlink(),
        })
    }
}

impl Iterator for Walk<'_> {
    type Item = Result<WalkEntry, ContextError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let next = self.levels.last_mut()?.next();
            match next {
                None => {
                    self.levels.pop();
                }
                Some(Pending::Yield(rel)) => return Some(self.entry(rel)),
                Some(Pending::Descend(dir)) => match self.list(&dir) {
                    Ok(items) => self.levels.push(items.into_iter()),
                    Err(e) => return Some(Err(e)),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A context: `d/` for directories, `name -> target` for symlinks,
    /// anything else a file.
    fn tree(spec: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for item in spec {
            let path = |p: &str| dir.path().join(p);
            if let Some((name, target)) = item.split_once(" -> ") {
                std::os::unix::fs::symlink(target, path(name))
                    .unwrap_or_else(|e| panic!("{item}: {e}"));
            } else if let Some(name) = item.strip_suffix('/') {
                fs::create_dir_all(path(name)).unwrap_or_else(|e| panic!("{item}: {e}"));
            } else {
                fs::write(path(item), item).unwrap_or_else(|e| panic!("{item}: {e}"));
            }
        }
        dir
    }

    const SPEC: &[&str] = &[
        "a.txt",
        "b.txt",
        "c.md",
        "dir/",
        "dir/x.txt",
        "dir/sub/",
        "dir/sub/y.txt",
        "dir-2/",
        "dir-2/z.txt",
        "other/",
        "other/x.txt",
        "[lit]",
        "star*",
        "linkdir -> dir",
        "abs -> /dir/sub",
        "escape -> ../../../..",
        "loop -> loop",
        "node_modules/",
        "node_modules/keep/",
        "node_modules/keep/k.js",
        "node_modules/drop.js",
    ];

    fn render(result: Result<Vec<SourceMatch>, ContextError>) -> String {
        match result {
            Ok(matches) => matches
                .iter()
                .map(|m| format!("{}:{:?}", m.rel_path.display(), m.kind))
                .collect::<Vec<_>>()
                .join(" "),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn resolve_table() {
        let context = tree(SPEC);
        let ignore = "*.md\nnode_modules\n!node_modules/keep\nother/x.txt\n";
        // (sources, expected)
        let cases: &[(&[&str], &str)] = &[
            (&["a.txt"], "a.txt:File"),
            (&["/a.txt"], "a.txt:File"),
            (&["../../a.txt"], "a.txt:File"),
            (&["./dir/../b.txt"], "b.txt:File"),
            (&["*.txt"], "a.txt:File b.txt:File"),
            (&["?.txt", "dir"], "a.txt:File b.txt:File dir:Dir"),
            (&["[a-b].txt"], "a.txt:File b.txt:File"),
            (&["dir*"], "dir:Dir dir-2:Dir"),
            (&["*/x.txt"], "dir/x.txt:File"),
            (&["*/*/y.txt"], "dir/sub/y.txt:File"),
            (&["linkdir/x.txt"], "dir/x.txt:File"),
            (&["linkdir"], "linkdir:Symlink"),
            (&["abs/y.txt"], "dir/sub/y.txt:File"),
            (&["escape/a.txt"], "a.txt:File"),
            (&["link*"], "linkdir:Symlink"),
            (
                &["star\\*"],
                "error: COPY failed: file not found in build context or excluded by .dockerignore: stat star\\*: file does not exist",
            ),
            (&["sta?\\*"], "star*:File"),
            (&["[[]lit]"], "[lit]:File"),
            (
                &["\\[lit]"],
                "error: COPY failed: file not found in build context or excluded by .dockerignore: stat \\[lit]: file does not exist",
            ),
            (&["."], ".:Dir"),
            (
                &["..", "c.md"],
                "error: COPY failed: file not found in build context or excluded by .dockerignore: stat c.md: file does not exist",
            ),
            (
                &["*.md"],
                "error: COPY failed: no source files were specified",
            ),
            (
                &["missing"],
                "error: COPY failed: file not found in build context or excluded by .dockerignore: stat missing: file does not exist",
            ),
            (
                &["a.txt/x"],
                "error: COPY failed: file not found in build context or excluded by .dockerignore: stat a.txt/x: file does not exist",
            ),
            (
                &["nothing*"],
                "error: COPY failed: no source files were specified",
            ),
            (
                &["nothing*", "*.md"],
                "error: COPY failed: no source files were specified",
            ),
            // Another source matched: the empty wildcard adds nothing.
            (&["nothing*", "a.txt"], "a.txt:File"),
            (&["a.txt", "nothing*", "dir"], "a.txt:File dir:Dir"),
            (
                &["nothing*", "missing"],
                "error: COPY failed: file not found in build context or excluded by .dockerignore: stat missing: file does not exist",
            ),
            (&["node_modules"], "node_modules:Dir"),
            (
                &["node_modules/drop.js"],
                "error: COPY failed: file not found in build context or excluded by .dockerignore: stat node_modules/drop.js: file does not exist",
            ),
            (&["*/x.txt", "other"], "dir/x.txt:File other:Dir"),
            (
                &["loop/x"],
                "error: too many levels of symbolic links resolving loop/x in the build context",
            ),
            (
                &["[z-"],
                "error: invalid context COPY source \"[z-\": syntax error in pattern: unterminated character class",
            ),
        ];
        let rules = IgnoreRules::parse(ignore).unwrap_or_else(|e| panic!("{e}"));
        for (sources, expected) in cases {
            let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
            let got = render(resolve_sources(context.path(), &sources, &rules));
            assert_eq!(got, *expected, "sources {sources:?}");
        }
    }

    fn walked(root: &Path, dir: &str, rules: &IgnoreRules) -> Vec<String> {
        walk(root, dir, rules)
            .map(|e| {
                let e = e.unwrap_or_else(|e| panic!("{e}"));
                match e.symlink_target {
                    Some(t) => format!("{} -> {}", e.rel_path.display(), t.display()),
                    None => e.rel_path.display().to_string(),
                }
            })
            .collect()
    }

    #[test]
    fn walk_is_bytewise_sorted_and_filtered() {
        let context = tree(&[
            "a/",
            "a/b",
            "a-c",
            "a.txt",
            "a0",
            "docs/",
            "docs/README.md",
            "docs/other.md",
            "docs/deep/",
            "docs/deep/x",
            "empty-excluded/",
            "empty-excluded/nothing-kept",
            "l -> a",
        ]);
        let root = context.path();
        assert_eq!(
            walked(root, ".", &IgnoreRules::empty()),
            vec![
                "a",
                "a-c",
                "a.txt",
                "a/b",
                "a0",
                "docs",
                "docs/README.md",
                "docs/deep",
                "docs/deep/x",
                "docs/other.md",
                "empty-excluded",
                "empty-excluded/nothing-kept",
                "l -> a",
            ]
        );
        let rules = IgnoreRules::parse(
            "docs\n!docs/README.md\nempty-excluded\n!empty-excluded/kept\na.txt",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            walked(root, ".", &rules),
            vec!["a", "a-c", "a/b", "a0", "docs", "docs/README.md", "l -> a"]
        );
        assert_eq!(walked(root, "docs", &rules), vec!["docs/README.md"]);
        assert_eq!(walked(root, "/a/../a", &IgnoreRules::empty()), vec!["a/b"]);
    }

    #[test]
    fn walk_reports_metadata() {
        let context = tree(&["f", "h"]);
        let root = context.path();
        fs::remove_file(root.join("h")).unwrap_or_else(|e| panic!("{e}"));
        fs::hard_link(root.join("f"), root.join("h")).unwrap_or_else(|e| panic!("{e}"));
        fs::set_permissions(root.join("f"), fs::Permissions::from_mode(0o4751))
            .unwrap_or_else(|e| panic!("{e}"));
        let entries: Vec<WalkEntry> = walk(root, ".", &IgnoreRules::empty())
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(entries.len(), 2);
        assert_eq!(
            (entries[0].mode, entries[0].size, entries[0].nlink),
            (0o4751, 1, 2)
        );
        assert_eq!(
            (entries[0].dev, entries[0].ino),
            (entries[1].dev, entries[1].ino)
        );
        assert_eq!(entries[0].kind, EntryKind::File);
    }

    #[test]
    fn walk_of_missing_dir_is_an_error() {
        let context = tree(&[]);
        let got: Vec<String> = walk(context.path(), "nope", &IgnoreRules::empty())
            .map(|r| match r {
                Ok(e) => e.rel_path.display().to_string(),
                Err(e) => e.to_string(),
            })
            .collect();
        assert_eq!(
            got,
            vec![format!(
                "listing {}: No such file or directory (os error 2)",
                context.path().join("nope").display()
            )]
        );
    }

    use std::os::unix::fs::PermissionsExt;
}
