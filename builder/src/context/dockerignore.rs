//! `.dockerignore` with moby's patternmatcher semantics.
//!
//! A path is excluded when the last pattern that matches it (or one of its
//! parent directories) is a plain pattern rather than a `!` exception.
//! Patterns are evaluated in order; moby only re-checks exceptions while a
//! path is excluded and plain patterns while it is not, which gives the same
//! answer as "last match wins" and is what we do too.

use std::path::Path;

use super::ContextError;
use super::pattern::{Glob, clean};

/// A parsed `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    patterns: Vec<IgnorePattern>,
}

#[derive(Debug, Clone)]
struct IgnorePattern {
    /// The cleaned pattern, without its `!`.
    text: String,
    glob: Glob,
    /// A `!` exception: re-includes what earlier patterns excluded.
    reinclude: bool,
}

impl IgnoreRules {
    /// Rules that exclude nothing (no `.dockerignore`, or `COPY --from`).
    pub fn empty() -> IgnoreRules {
        IgnoreRules::default()
    }

    /// Parses the text of a `.dockerignore` file.
    pub fn parse(text: &str) -> Result<IgnoreRules, ContextError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (index, line) in text.lines().enumerate() {
            // A comment is a `#` in the very first column; moby checks this
            // before trimming, so ` #x` is a pattern.
            if line.starts_with('#') {
                continue;
            }
            if let Some(pattern) =
                parse_line(line).map_err(|reason| ContextError::IgnorePattern {
                    line: index + 1,
                    // A line of a file that may not be an ignore file at
                    // all: only its start.
                    pattern: super::excerpt(line, 64),
                    reason,
                })?
            {
                patterns.push(pattern);
            }
        }
        Ok(IgnoreRules { patterns })
    }

    /// Whether no pattern was given.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The cleaned patterns, exceptions with their leading `!`.
    pub fn patterns(&self) -> Vec<String> {
        self.patterns
            .iter()
            .map(|p| match p.reinclude {
                true => format!("!{}", p.text),
                false => p.text.clone(),
            })
            .collect()
    }

    /// Whether `rel_path` (relative to the context root, `/`-separated) is
    /// excluded. The root itself never is.
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        let cleaned = clean(rel_path);
        let path = cleaned.trim_start_matches('/');
        if path.is_empty() || path == "." {
            return false;
        }
        let mut excluded = false;
        for pattern in &self.patterns {
            // An exception cannot change an included path, nor a plain
            // pattern an excluded one.
            if pattern.reinclude != excluded {
                continue;
            }
            // A pattern naming a directory covers everything inside it.
            if pattern.glob.matches_self_or_parent(path) {
                excluded = !pattern.reinclude;
            }
        }
        excluded
    }

    /// Whether a walker may skip the directory `rel_dir` without looking
    /// inside: it is excluded and no `!` exception could match anything
    /// below it. When this is false for an excluded directory, its entries
    /// must be checked one by one.
    pub fn can_skip_dir(&self, rel_dir: &str) -> bool {
        if !self.is_excluded(rel_dir) {
            return false;
        }
        let cleaned = clean(rel_dir);
        let prefix = format!("{}/", cleaned.trim_start_matches('/'));
        !self
            .patterns
            .iter()
            .any(|p| p.reinclude && p.glob.may_match_with_prefix(&prefix))
    }
}

/// One non-comment line: `Ok(None)` for a blank line.
fn parse_line(line: &str) -> Result<Option<IgnorePattern>, String> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let (reinclude, body) = match trimmed.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, trimmed),
    };
    if body.is_empty() {
        return Err("illegal exclusion pattern: \"!\"".to_string());
    }
    let mut text = clean(body);
    // Patterns are relative to the context root; `/foo` means `foo`.
    if text.len() > 1 && text.starts_with('/') {
        text.remove(0);
    }
    let glob = Glob::compile(&text, true)
        .map_err(|e| format!("syntax error in pattern: {}", e.describe()))?;
    Ok(Some(IgnorePattern {
        text,
        glob,
        reinclude,
    }))
}

/// Loads the rules that apply to a build: `<Dockerfile>.dockerignore` next
/// to the Dockerfile wins over `<context>/.dockerignore`; neither existing
/// means no rules. A relative `dockerfile_path` is taken from the context.
pub fn load_ignore_rules(
    context_root: &Path,
    dockerfile_path: &Path,
) -> Result<IgnoreRules, ContextError> {
    let dockerfile = context_root.join(dockerfile_path);
    let mut candidates = Vec::with_capacity(2);
    if let Some(name) = dockerfile.file_name() {
        let mut specific = name.to_os_string();
        specific.push(".dockerignore");
        candidates.push(dockerfile.with_file_name(specific));
    }
    candidates.push(context_root.join(".dockerignore"));
    for candidate in candidates {
        match super::read_build_file(context_root, &candidate) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                return IgnoreRules::parse(&text).map_err(|e| ContextError::IgnoreFile {
                    path: candidate.clone(),
                    source: Box::new(e),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ContextError::io("reading", candidate, e)),
        }
    }
    Ok(IgnoreRules::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> IgnoreRules {
        IgnoreRules::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn exclusion_table() {
        // (dockerignore text, path, excluded)
        let cases: &[(&str, &str, bool)] = &[
            ("*", "fileutils.go", true),
            ("*.go", "fileutils.go", true),
            ("*.go", "dir/fileutils.go", false),
            ("!fileutils.go\n*.go", "fileutils.go", true),
            ("*.go\n!fileutils.go", "fileutils.go", false),
            ("docs\n!docs/README.md", "docs/README.md", false),
            ("docs\n!docs/README.md", "docs/other.md", true),
            ("docs/\n!docs/README.md", "docs/README.md", false),
            ("docs/*\n!docs/README.md", "docs/README.md", false),
            ("*.go", ".", false),
            ("", "anything", false),
            ("# just a comment\n\n   \n", "anything", false),
            ("#*.go", "#x.go", false),
            (" #*.go", "#x.go", true),
            ("/build", "build/out.o", true),
            ("/build", "src/build", false),
            ("!/keep\n*", "keep", true),
            ("*\n!/keep", "keep", false),
            ("**", "a/b/c", true),
            ("**/*.txt", "file.txt", true),
            ("**/*.txt", "a/b/file.txt", true),
            ("**/*.txt", "a/b/file.txt2", false),
            ("d00*\n!d000/f0000.txt\n**/f9*.txt", "d010/f9000.txt", true),
            ("d00*\n!d000/f0000.txt\n**/f9*.txt", "d000/f0000.txt", false),
            ("**/dir", "dir/file", true),
            ("**/dir", "x/y/dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**file", "dir/dir/file", true),
            ("dir/**", "dir", false),
            ("dir/**", "dir/dir2/file", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def/ghi", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            ("[a-c]*/x", "b-dir/x", true),
            ("[a-c]*/x", "d-dir/x", false),
            (".*", ".foo", true),
            (".*", "foo", false),
            ("abc.def", "abcdef", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abc/def", false),
            ("a\\\\", "a\\", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            (
                "dist/*.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            ("**\n!util/docker/web", "util/docker/web/foo", false),
            (
                "**\n!util/docker/web\nutil/docker/web/foo",
                "util/docker/web/foo",
                true,
            ),
            ("**\n!dist/*.whl", "dist/x.whl", false),
            ("**\n!dist/*.whl", "dist/x.tar", true),
            ("a*", "ab/c", true),
            ("a*/b", "a/c/b", false),
            ("./src/../build/", "build/x", true),
            ("  spaced.txt  ", "spaced.txt", true),
            (
                "node_modules\n!node_modules/keep\nnode_modules/keep/drop",
                "node_modules/keep/drop/x",
                true,
            ),
            (
                "node_modules\n!node_modules/keep\nnode_modules/keep/drop",
                "node_modules/keep/ok",
                false,
            ),
            (
                "*.md\n!README*.md\nREADME-secret.md",
                "README-secret.md",
                true,
            ),
            ("*.md\n!README*.md\nREADME-secret.md", "README.md", false),
            ("Dockerfile\n.dockerignore", "Dockerfile", true),
            ("\u{feff}bom", "bom", true),
            ("crlf\r\n", "crlf", true),
        ];
        for &(text, path, excluded) in cases {
            assert_eq!(
                rules(text).is_excluded(path),
                excluded,
                "rules {text:?} path {path:?}"
            );
        }
    }

    #[test]
    fn parse_errors() {
        let cases: &[(&str, &str)] = &[
            (
                "ok\n!",
                "invalid .dockerignore pattern \"!\" on line 2: illegal exclusion pattern: \"!\"",
            ),
            (
                "  !  ",
                "invalid .dockerignore pattern \"  !  \" on line 1: illegal exclusion pattern: \"!\"",
            ),
            (
                "a[",
                "invalid .dockerignore pattern \"a[\" on line 1: syntax error in pattern: unterminated character class",
            ),
            (
                "x\ny\n[]a]",
                "invalid .dockerignore pattern \"[]a]\" on line 3: syntax error in pattern: bad character range in class",
            ),
            (
                "trailing\\",
                "invalid .dockerignore pattern \"trailing\\\\\" on line 1: syntax error in pattern: trailing backslash",
            ),
        ];
        for &(text, expected) in cases {
            match IgnoreRules::parse(text) {
                Ok(_) => panic!("{text:?} parsed"),
                Err(e) => assert_eq!(e.to_string(), expected),
            }
        }
    }

    #[test]
    fn cleaned_patterns() {
        let got = rules("# c\n/a/b/\n! ./c/../d\n  e//f  \n/\n").patterns();
        assert_eq!(got, vec!["a/b", "!d", "e/f", "/"]);
    }

    #[test]
    fn skipping_excluded_dirs() {
        // (rules, directory, skippable)
        let cases: &[(&str, &str, bool)] = &[
            ("docs", "docs", true),
            ("docs", "src", false),
            ("docs\n!docs/README.md", "docs", false),
            ("docs\n!docs/README.md", "docs/sub", true),
            ("docs\n!**/*.md", "docs", false),
            ("docs\n!*.md", "docs", true),
            ("docs\n!d*/keep", "docs", false),
            ("*\n!src", "src", false),
            ("*\n!src", "test", true),
            ("*\n!src/**/*.rs", "src", false),
            ("*\n!src/**/*.rs", "target", true),
        ];
        for &(text, dir, skippable) in cases {
            assert_eq!(
                rules(text).can_skip_dir(dir),
                skippable,
                "rules {text:?} dir {dir:?}"
            );
        }
    }

    proptest::proptest! {
        /// The walker's shortcut is sound: a skippable directory is
        /// excluded and so is everything below it.
        #[test]
        fn skippable_dirs_exclude_their_contents(
            lines in proptest::collection::vec("!?/?([ab*?/]|\\*\\*|\\[a-b\\]){1,6}", 1..5),
            dir in "[ab]{1,2}(/[ab]{1,2}){0,2}",
            child in "[ab]{1,2}(/[ab]{1,2}){0,2}",
        ) {
            let text = lines.join("\n");
            if let Ok(rules) = IgnoreRules::parse(&text) {
                if rules.can_skip_dir(&dir) {
                    let below = format!("{dir}/{child}");
                    proptest::prop_assert!(rules.is_excluded(&dir));
                    proptest::prop_assert!(rules.is_excluded(&below), "{:?} kept", below);
                }
            }
        }
    }

    #[test]
    fn dockerfile_specific_ignore_file_wins() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path();
        let write = |rel: &str, text: &str| {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap_or(root))
                .unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
        };
        let load = |dockerfile: &str| {
            load_ignore_rules(root, Path::new(dockerfile))
                .unwrap_or_else(|e| panic!("{e}"))
                .patterns()
        };
        assert_eq!(load("Dockerfile"), Vec::<String>::new());
        write(".dockerignore", "from-context\n");
        assert_eq!(load("Dockerfile"), vec!["from-context"]);
        write("Dockerfile.dockerignore", "from-dockerfile\n");
        assert_eq!(load("Dockerfile"), vec!["from-dockerfile"]);
        write("build/app.Dockerfile.dockerignore", "nested\n");
        assert_eq!(load("build/app.Dockerfile"), vec!["nested"]);
        let absolute = root.join("build/app.Dockerfile");
        assert_eq!(load(&absolute.to_string_lossy()), vec!["nested"]);
        assert_eq!(load("other/Dockerfile"), vec!["from-context"]);
        write(".dockerignore", "ok\n[\n");
        let err = load_ignore_rules(root, Path::new("other/Dockerfile"))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err,
            Some(format!(
                "{}: invalid .dockerignore pattern \"[\" on line 2: syntax error in pattern: unterminated character class",
                root.join(".dockerignore").display()
            ))
        );
    }
}
