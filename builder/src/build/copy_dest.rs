//! Docker's destination rules for COPY and ADD, as a pure function.
//!
//! Given what the sources turned out to be and what the image already has at
//! the destination, decide where each source lands:
//! - a relative destination is relative to WORKDIR;
//! - a source directory contributes its *contents*, never itself;
//! - a file lands *inside* the destination when the destination ends in `/`,
//!   already is a directory in the image, or several sources were given;
//!   otherwise the destination names the file itself;
//! - several sources need a directory destination: Docker refuses
//!   `COPY a b /dest` unless `/dest` ends in `/` (or exists as a directory).

use crate::image::config::join_image_path;

/// One matched source, relative to its root (context, stage or image).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchedSource {
    pub rel_path: String,
    pub is_dir: bool,
}

/// Where one matched source goes in the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The source, as matched.
    pub rel_path: String,
    pub is_dir: bool,
    /// Absolute, cleaned path in the image: the file itself, or for a
    /// directory source the directory that receives its contents.
    pub dest: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DestError {
    #[error(
        "when using {instruction} with more than one source file, the destination must be a directory and end with a /"
    )]
    NeedsDirectory { instruction: &'static str },
    #[error("{instruction} needs a destination")]
    Empty { instruction: &'static str },
}

/// Joins `dest` onto `workdir` (when relative) and cleans the result, keeping
/// the fact that it ended in `/`.
pub fn absolute_dest(dest: &str, workdir: &str) -> (String, bool) {
    let trailing_slash = dest.ends_with('/') || dest.ends_with("/.") || dest == ".";
    let workdir = if workdir.is_empty() { "/" } else { workdir };
    (join_image_path(workdir, dest), trailing_slash)
}

/// Places every source. `source_args` is how many source arguments the
/// instruction had (before wildcard expansion); `dest_is_dir` whether the
/// cleaned destination already exists as a directory in the image.
pub fn place(
    instruction: &'static str,
    sources: &[MatchedSource],
    source_args: usize,
    dest: &str,
    workdir: &str,
    dest_is_dir: bool,
) -> Result<Vec<Placement>, DestError> {
    if dest.is_empty() {
        return Err(DestError::Empty { instruction });
    }
    let (dest_abs, trailing_slash) = absolute_dest(dest, workdir);
    let several = source_args > 1 || sources.len() > 1;
    if several && !trailing_slash && !dest_is_dir {
        return Err(DestError::NeedsDirectory { instruction });
    }
    let into_dir = trailing_slash || dest_is_dir || several;
    Ok(sources
        .iter()
        .map(|source| {
            let dest = if source.is_dir || !into_dir {
                dest_abs.clone()
            } else {
                join_image_path(&dest_abs, base_name(&source.rel_path))
            };
            Placement {
                rel_path: source.rel_path.clone(),
                is_dir: source.is_dir,
                dest,
            }
        })
        .collect())
}

fn base_name(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(p: &str) -> MatchedSource {
        MatchedSource {
            rel_path: p.to_string(),
            is_dir: false,
        }
    }
    fn dir(p: &str) -> MatchedSource {
        MatchedSource {
            rel_path: p.to_string(),
            is_dir: true,
        }
    }

    #[test]
    fn destination_table() {
        // (sources, source args, dest, workdir, dest exists as dir, expected dests)
        let table: Vec<(Vec<MatchedSource>, usize, &str, &str, bool, Vec<&str>)> = vec![
            (
                vec![file("a.txt")],
                1,
                "/app/b.txt",
                "/",
                false,
                vec!["/app/b.txt"],
            ),
            (
                vec![file("a.txt")],
                1,
                "/app/",
                "/",
                false,
                vec!["/app/a.txt"],
            ),
            (
                vec![file("a.txt")],
                1,
                "/app",
                "/",
                true,
                vec!["/app/a.txt"],
            ),
            (vec![file("a.txt")], 1, "/app", "/", false, vec!["/app"]),
            (
                vec![file("sub/a.txt")],
                1,
                "dst/",
                "/work",
                false,
                vec!["/work/dst/a.txt"],
            ),
            (
                vec![file("a.txt")],
                1,
                ".",
                "/work",
                true,
                vec!["/work/a.txt"],
            ),
            (vec![file("a.txt")], 1, "./", "/", true, vec!["/a.txt"]),
            (vec![file("a.txt")], 1, "rel", "", false, vec!["/rel"]),
            (vec![dir("src")], 1, "/app", "/", false, vec!["/app"]),
            (vec![dir("src")], 1, "/app/", "/", false, vec!["/app"]),
            (
                vec![file("a"), file("b")],
                2,
                "/d/",
                "/",
                false,
                vec!["/d/a", "/d/b"],
            ),
            (
                vec![file("a"), file("b")],
                2,
                "/d",
                "/",
                true,
                vec!["/d/a", "/d/b"],
            ),
            (
                vec![file("x/a"), dir("y")],
                1,
                "/d/",
                "/",
                false,
                vec!["/d/a", "/d"],
            ),
            (
                vec![file("a")],
                1,
                "/x/../y//z/./",
                "/",
                false,
                vec!["/y/z/a"],
            ),
            (
                vec![file("a")],
                1,
                "../../etc/",
                "/w",
                false,
                vec!["/etc/a"],
            ),
        ];
        for (sources, args, dest, workdir, is_dir, want) in table {
            let got = place("COPY", &sources, args, dest, workdir, is_dir)
                .unwrap_or_else(|e| panic!("{dest}: {e}"));
            let got: Vec<&str> = got.iter().map(|p| p.dest.as_str()).collect();
            assert_eq!(got, want, "dest {dest:?} workdir {workdir:?}");
        }
    }

    #[test]
    fn several_sources_need_a_directory() {
        let err = place("COPY", &[file("a"), file("b")], 2, "/d", "/", false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "when using COPY with more than one source file, the destination must be a directory and end with a /"
        );
        let err = place("ADD", &[file("a"), file("b")], 1, "/d", "/", false).unwrap_err();
        assert_eq!(err, DestError::NeedsDirectory { instruction: "ADD" });
        assert_eq!(
            place("COPY", &[file("a")], 1, "", "/", false)
                .unwrap_err()
                .to_string(),
            "COPY needs a destination"
        );
    }

    #[test]
    fn cleaning() {
        assert_eq!(absolute_dest("/", "/w"), ("/".to_string(), true));
        assert_eq!(absolute_dest("//a//b/", "/"), ("/a/b".to_string(), true));
        assert_eq!(absolute_dest("/../..", "/"), ("/".to_string(), false));
        assert_eq!(absolute_dest("x/", "/w"), ("/w/x".to_string(), true));
        assert_eq!(absolute_dest("/x", "/w"), ("/x".to_string(), false));
    }
}
