//! Where kiln's own temporary files and directories go: the one place that
//! decides it.
//!
//! Every work directory (blobs, unpacked root filesystems, a fetched
//! context, git's askpass helper, the context a `--driver=k8s` build
//! uploads) is created below the *work root* chosen here, never in
//! [`std::env::temp_dir`] by default: kiln's builder image is `FROM
//! scratch` and has no `/tmp`, and with `--isolation=inplace` the image's
//! `/tmp` belongs to the image being built.
//!
//! The choice, first match wins:
//!
//! 1. `KILN_WORK_DIR`, when set: what the user (or the operator) names;
//! 2. `--isolation=inplace`: `/kiln/work`, which in-place builds never
//!    touch nor capture (`TMPDIR` is not used: whatever it names below `/`
//!    is the image's);
//! 3. `TMPDIR`, when the user set it;
//! 4. kiln's builder image (`KILN_BUILDER_IMAGE=1`): `/kiln/work`;
//! 5. `/tmp` when it is a directory, else `/kiln/work` (a root without
//!    `/tmp`, like a scratch image).
//!
//! [`choose`] is a function of [`WorkRootFacts`]; [`WorkRootFacts::observe`]
//! reads them from the environment.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// Set to `1` in kiln's builder image. Inside it kiln behaves like kaniko's
/// executor: the context defaults to `/workspace/` and RUN executes in place.
pub const BUILDER_IMAGE_ENV: &str = "KILN_BUILDER_IMAGE";

/// Whether the value of [`BUILDER_IMAGE_ENV`] says we run in the builder
/// image. Only an explicit true value counts, so an empty or `0` leftover in
/// a CI environment does not switch RUN to in-place execution on a host.
pub fn in_builder_image(value: Option<&OsStr>) -> bool {
    value
        .and_then(OsStr::to_str)
        .is_some_and(|v| matches!(v, "1" | "true" | "TRUE" | "True"))
}

/// Names the work root explicitly (the operator may set it on builder
/// containers).
pub const WORK_DIR_ENV: &str = "KILN_WORK_DIR";

/// The work root in kiln's builder image and of in-place builds: below
/// `/kiln`, next to the executor, never touched by an in-place build.
pub const BUILDER_WORK_ROOT: &str = "/kiln/work";

/// The system's temporary directory when `TMPDIR` is not set.
const SYSTEM_TMP: &str = "/tmp";

/// What the choice of the work root depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkRootFacts {
    /// `KILN_WORK_DIR`, when set and not empty.
    pub work_dir: Option<PathBuf>,
    /// `TMPDIR`, when set and not empty.
    pub tmpdir: Option<PathBuf>,
    /// `KILN_BUILDER_IMAGE` says kiln's builder image.
    pub builder_image: bool,
    /// `/tmp` is a directory.
    pub tmp_is_dir: bool,
}

impl WorkRootFacts {
    /// Reads the facts from this process's environment and filesystem.
    pub fn observe() -> WorkRootFacts {
        WorkRootFacts::from_vars(
            &|name| std::env::var_os(name),
            Path::new(SYSTEM_TMP).is_dir(),
        )
    }

    /// The facts from environment variables read by `var`.
    pub fn from_vars(var: &dyn Fn(&str) -> Option<OsString>, tmp_is_dir: bool) -> WorkRootFacts {
        let path = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        WorkRootFacts {
            work_dir: path(WORK_DIR_ENV),
            tmpdir: path("TMPDIR"),
            builder_image: in_builder_image(var(BUILDER_IMAGE_ENV).as_deref()),
            tmp_is_dir,
        }
    }
}

/// Why a work root was chosen, for the log line and the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    WorkDirEnv,
    InPlace,
    Tmpdir,
    BuilderImage,
    SystemTmp,
    NoSystemTmp,
}

/// The work root for a build (`in_place`: `--isolation=inplace`) given
/// `facts`.
pub fn choose(facts: &WorkRootFacts, in_place: bool) -> (PathBuf, Reason) {
    if let Some(dir) = &facts.work_dir {
        return (dir.clone(), Reason::WorkDirEnv);
    }
    if in_place {
        return (PathBuf::from(BUILDER_WORK_ROOT), Reason::InPlace);
    }
    if let Some(dir) = &facts.tmpdir {
        return (dir.clone(), Reason::Tmpdir);
    }
    if facts.builder_image {
        return (PathBuf::from(BUILDER_WORK_ROOT), Reason::BuilderImage);
    }
    if facts.tmp_is_dir {
        (PathBuf::from(SYSTEM_TMP), Reason::SystemTmp)
    } else {
        (PathBuf::from(BUILDER_WORK_ROOT), Reason::NoSystemTmp)
    }
}

/// A work root or a directory in it that could not be created.
#[derive(Debug, thiserror::Error)]
#[error(
    "creating {what} in {path}: {source}; set {WORK_DIR_ENV} (or TMPDIR) to a writable directory"
)]
pub struct WorkRootError {
    pub what: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The work root of this process, created if missing, as an absolute path.
pub fn work_root(in_place: bool) -> Result<PathBuf, WorkRootError> {
    let (root, reason) = choose(&WorkRootFacts::observe(), in_place);
    let error = |source| WorkRootError {
        what: "kiln's work directory",
        path: root.clone(),
        source,
    };
    let root = std::path::absolute(&root).map_err(error)?;
    std::fs::create_dir_all(&root).map_err(error)?;
    tracing::debug!(root = %root.display(), ?reason, "work root");
    Ok(root)
}

/// A new temporary directory named `<prefix>…` below `parent`, or below
/// this process's [`work_root`] (not in place) when `parent` is `None`.
/// Removed when dropped.
pub fn temp_dir(prefix: &str, parent: Option<&Path>) -> Result<tempfile::TempDir, WorkRootError> {
    let parent = match parent {
        Some(parent) => parent.to_path_buf(),
        None => work_root(false)?,
    };
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&parent)
        .map_err(|source| WorkRootError {
            what: "a temporary directory",
            path: parent,
            source,
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_work_root_is_explicit_then_in_place_then_tmpdir_then_the_image_then_tmp() {
        let facts =
            |work_dir: Option<&str>, tmpdir: Option<&str>, image: bool, tmp: bool| WorkRootFacts {
                work_dir: work_dir.map(PathBuf::from),
                tmpdir: tmpdir.map(PathBuf::from),
                builder_image: image,
                tmp_is_dir: tmp,
            };
        use Reason::*;
        let cases = [
            // (facts, in place, root, reason)
            (
                facts(Some("/w"), Some("/t"), true, true),
                true,
                "/w",
                WorkDirEnv,
            ),
            (
                facts(Some("/w"), Some("/t"), true, true),
                false,
                "/w",
                WorkDirEnv,
            ),
            (
                facts(None, Some("/t"), true, true),
                true,
                "/kiln/work",
                InPlace,
            ),
            (facts(None, None, false, true), true, "/kiln/work", InPlace),
            (facts(None, Some("/t"), true, false), false, "/t", Tmpdir),
            (facts(None, Some("/t"), false, true), false, "/t", Tmpdir),
            // The builder image (FROM scratch, no /tmp), chroot isolation.
            (
                facts(None, None, true, false),
                false,
                "/kiln/work",
                BuilderImage,
            ),
            (
                facts(None, None, true, true),
                false,
                "/kiln/work",
                BuilderImage,
            ),
            (facts(None, None, false, true), false, "/tmp", SystemTmp),
            (
                facts(None, None, false, false),
                false,
                "/kiln/work",
                NoSystemTmp,
            ),
        ];
        for (facts, in_place, root, reason) in cases {
            assert_eq!(
                choose(&facts, in_place),
                (PathBuf::from(root), reason),
                "{facts:?} in_place={in_place}"
            );
        }
    }

    #[test]
    fn facts_read_set_and_non_empty_variables_only() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let cases: [(&[(&str, &str)], WorkRootFacts); 4] = [
            (&[], WorkRootFacts::default()),
            (
                &[
                    ("KILN_WORK_DIR", ""),
                    ("TMPDIR", ""),
                    ("KILN_BUILDER_IMAGE", "0"),
                ],
                WorkRootFacts::default(),
            ),
            (
                &[
                    ("KILN_WORK_DIR", "/scratch"),
                    ("TMPDIR", "/t"),
                    ("KILN_BUILDER_IMAGE", "1"),
                ],
                WorkRootFacts {
                    work_dir: Some(PathBuf::from("/scratch")),
                    tmpdir: Some(PathBuf::from("/t")),
                    builder_image: true,
                    tmp_is_dir: false,
                },
            ),
            (
                &[("KILN_BUILDER_IMAGE", "true")],
                WorkRootFacts {
                    builder_image: true,
                    ..WorkRootFacts::default()
                },
            ),
        ];
        for (pairs, want) in cases {
            assert_eq!(
                WorkRootFacts::from_vars(&env(pairs), false),
                want,
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn temp_dir_in_a_missing_parent_names_the_parent() {
        let base = tempfile::tempdir().unwrap();
        let missing = base.path().join("missing");
        let err = temp_dir("kiln-x-", Some(&missing)).unwrap_err();
        assert_eq!(err.path, missing);
        assert_eq!(err.source.kind(), std::io::ErrorKind::NotFound);
        // tempfile names the random path it tried after the cause.
        let text = err.to_string();
        let head = format!(
            "creating a temporary directory in {}: No such file or directory (os error 2) at path \"{}/kiln-x-",
            missing.display(),
            missing.display()
        );
        assert!(text.starts_with(&head), "{text}");
        assert!(
            text.ends_with("\"; set KILN_WORK_DIR (or TMPDIR) to a writable directory"),
            "{text}"
        );
        let made = temp_dir("kiln-x-", Some(base.path())).unwrap();
        assert_eq!(made.path().parent(), Some(base.path()));
        assert!(
            made.path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("kiln-x-")
        );
    }
}
