//! Glob patterns as Go's `filepath.Match` reads them (`*`, `?`, `[...]`,
//! `\` escapes), optionally extended with the `**` of `.dockerignore`.
//!
//! Patterns compile to a token list that is run as an NFA over the path's
//! characters, so matching is linear in `pattern × path` whatever the
//! pattern: a hostile `.dockerignore` cannot make the walker backtrack
//! exponentially.

/// Why a pattern does not compile; Go reports all of these as
/// `syntax error in pattern`, we say which part is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobSyntax {
    UnterminatedClass,
    BadClassRange,
    TrailingBackslash,
}

impl GlobSyntax {
    pub fn describe(self) -> &'static str {
        match self {
            GlobSyntax::UnterminatedClass => "unterminated character class",
            GlobSyntax::BadClassRange => "bad character range in class",
            GlobSyntax::TrailingBackslash => "trailing backslash",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`: one character other than `/`.
    AnyChar,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `*`: any run of characters other than `/`.
    Star,
    /// `**` inside a pattern: nothing, or anything ending in `/`, so that
    /// `a/**/b` matches `a/b` and `a/x/y/b`. Always followed by
    /// [`Token::AnyDirsRun`], the state inside such a run, which (unlike
    /// this one) may not be skipped.
    AnyDirs,
    AnyDirsRun,
    /// `**` ending a pattern (or starting one without a following `/`):
    /// anything at all.
    AnyString,
}

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
}

impl Glob {
    /// Compiles `pattern`. With `double_star`, `**` crosses directory
    /// boundaries as in `.dockerignore`; without it, `**` is just two stars
    /// (Go's `filepath.Match`, used for COPY sources).
    pub fn compile(pattern: &str, double_star: bool) -> Result<Glob, GlobSyntax> {
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' if double_star && chars.peek() == Some(&'*') => {
                    chars.next();
                    let at_start = tokens.is_empty();
                    let slash_follows = chars.peek() == Some(&'/');
                    if slash_follows {
                        chars.next();
                    }
                    if chars.peek().is_none() || (at_start && !slash_follows) {
                        // moby treats a trailing `**` as "any suffix" and a
                        // leading `**name` as "ends with name".
                        tokens.push(Token::AnyString);
                    } else {
                        tokens.push(Token::AnyDirs);
                        tokens.push(Token::AnyDirsRun);
                    }
                }
                '*' => tokens.push(Token::Star),
                '?' => tokens.push(Token::AnyChar),
                '[' => tokens.push(parse_class(&mut chars)?),
                '\\' => match chars.next() {
                    Some(escaped) => tokens.push(Token::Literal(escaped)),
                    None => return Err(GlobSyntax::TrailingBackslash),
                },
                other => tokens.push(Token::Literal(other)),
            }
        }
        Ok(Glob { tokens })
    }

    /// Whether the whole of `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        let mut run = Run::new(self);
        text.chars().all(|c| run.step(c)) && run.accepts()
    }

    /// Whether `text` or one of its parent directories (a prefix ending
    /// just before a `/`) matches, in a single pass over `text`.
    pub fn matches_self_or_parent(&self, text: &str) -> bool {
        let mut run = Run::new(self);
        for c in text.chars() {
            if c == '/' && run.accepts() {
                return true;
            }
            if !run.step(c) {
                return false;
            }
        }
        run.accepts()
    }

    /// Whether some string starting with `prefix` could match: the walker
    /// asks this to know if a `!` pattern may re-include something below an
    /// excluded directory. Errs towards `true`.
    pub fn may_match_with_prefix(&self, prefix: &str) -> bool {
        let mut run = Run::new(self);
        prefix.chars().all(|c| run.step(c))
    }
}

/// The set of NFA states reached so far; state `i` is "before token `i`",
/// state `tokens.len()` accepts. Two buffers are swapped rather than
/// allocated per character: the walker matches every path of a context.
struct Run<'g> {
    tokens: &'g [Token],
    states: Vec<bool>,
    next: Vec<bool>,
}

impl<'g> Run<'g> {
    fn new(glob: &'g Glob) -> Run<'g> {
        let len = glob.tokens.len() + 1;
        let mut run = Run {
            tokens: &glob.tokens,
            states: vec![false; len],
            next: vec![false; len],
        };
        run.states[0] = true;
        close(run.tokens, &mut run.states);
        run
    }

    fn accepts(&self) -> bool {
        self.states[self.tokens.len()]
    }

    /// Consumes one character; false when no state survives.
    fn step(&mut self, c: char) -> bool {
        let next = &mut self.next;
        next.fill(false);
        for (i, token) in self.tokens.iter().enumerate() {
            if !self.states[i] {
                continue;
            }
            match token {
                Token::Literal(l) if *l == c => next[i + 1] = true,
                Token::Literal(_) => {}
                Token::AnyChar => next[i + 1] |= c != '/',
                Token::Class { negated, ranges } => {
                    let inside = ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
                    next[i + 1] |= inside != *negated;
                }
                Token::Star => next[i] |= c != '/',
                Token::AnyDirs => {
                    next[i + 1] = true;
                    next[i + 2] |= c == '/';
                }
                Token::AnyDirsRun => {
                    next[i] = true;
                    next[i + 1] |= c == '/';
                }
                Token::AnyString => next[i] = true,
            }
        }
        close(self.tokens, next);
        std::mem::swap(&mut self.states, &mut self.next);
        self.states.contains(&true)
    }
}

/// Follows the empty transitions: every star may match nothing. They only
/// lead forward, so one ascending pass reaches them all.
fn close(tokens: &[Token], states: &mut [bool]) {
    for (i, token) in tokens.iter().enumerate() {
        if !states[i] {
            continue;
        }
        match token {
            Token::Star | Token::AnyString => states[i + 1] = true,
            Token::AnyDirs => states[i + 2] = true,
            _ => {}
        }
    }
}

/// Parses a class after its `[`, as Go does: `^` negates, a class holds at
/// least one range, `-` and `]` must be escaped where they would be ambiguous.
fn parse_class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<Token, GlobSyntax> {
    let mut negated = false;
    if chars.peek() == Some(&'^') {
        chars.next();
        negated = true;
    }
    let mut ranges = Vec::new();
    loop {
        if chars.peek() == Some(&']') && !ranges.is_empty() {
            chars.next();
            return Ok(Token::Class { negated, ranges });
        }
        let lo = class_char(chars)?;
        let mut hi = lo;
        if chars.peek() == Some(&'-') {
            chars.next();
            hi = class_char(chars)?;
        }
        ranges.push((lo, hi));
    }
}

fn class_char(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<char, GlobSyntax> {
    match chars.next() {
        None => Err(GlobSyntax::UnterminatedClass),
        Some('-' | ']') => Err(GlobSyntax::BadClassRange),
        Some('\\') => chars.next().ok_or(GlobSyntax::UnterminatedClass),
        Some(c) => Ok(c),
    }
}

/// Whether `pattern` has an unescaped `*`, `?` or `[`, i.e. whether COPY
/// must expand it rather than take it literally.
pub fn has_wildcards(pattern: &str) -> bool {
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// Removes `\` escapes from a segment without wildcards.
pub fn unescape(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    let mut chars = segment.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(escaped) = chars.next() {
                out.push(escaped);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Go's `filepath.Clean` for `/`-separated paths: drops empty and `.`
/// elements, folds `..` into its parent (and away at the root).
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Cleans `path` as if the context root were `/`: `..` can never climb out,
/// and the result is relative (`.` for the root itself). Docker resolves
/// COPY sources and sub-paths this way.
pub fn clean_in_root(path: &str) -> String {
    let cleaned = clean(&format!("/{path}"));
    match cleaned.trim_start_matches('/') {
        "" => ".".to_string(),
        rest => rest.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_table() {
        // (pattern, double_star, text, expected)
        let cases: &[(&str, bool, &str, bool)] = &[
            ("abc", false, "abc", true),
            ("*", false, "abc", true),
            ("*c", false, "abc", true),
            ("a*", false, "a", true),
            ("a*", false, "ab/c", false),
            ("a*/b", false, "abc/b", true),
            ("a*/b", false, "a/c/b", false),
            ("a*b*c*d*e*/f", false, "axbxcxdxexxx/f", true),
            ("a*b*c*d*e*/f", false, "axbxcxdxe/xxx/f", false),
            ("a*b?c*x", false, "abxbbxdbxebxczzx", true),
            ("a*b?c*x", false, "abxbbxdbxebxczzy", false),
            ("ab[c]", false, "abc", true),
            ("ab[b-d]", false, "abc", true),
            ("ab[e-g]", false, "abc", false),
            ("ab[^c]", false, "abc", false),
            ("ab[^e-g]", false, "abc", true),
            ("a\\*b", false, "a*b", true),
            ("a\\*b", false, "ab", false),
            ("a?b", false, "a☺b", true),
            ("a???b", false, "a☺b", false),
            ("[a-ζ]*", false, "α", true),
            ("*[a-ζ]", false, "A", false),
            ("a?b", false, "a/b", false),
            ("a*b", false, "a/b", false),
            ("[\\]a]", false, "]", true),
            ("[x\\-]", false, "-", true),
            ("[x\\-]", false, "z", false),
            ("*x", false, "xxx", true),
            ("a**b", false, "axxb", true),
            ("a**b", false, "a/b", false),
            ("**", true, "a/b/c", true),
            ("**/x", true, "x", true),
            ("**/x", true, "a/b/x", true),
            ("**/x", true, "ax", false),
            ("**x", true, "ax", true),
            ("a/**/b", true, "a/b", true),
            ("a/**/b", true, "a/x/y/b", true),
            ("a/**/b", true, "a/xb", false),
            ("a/**", true, "a", false),
            ("a/**", true, "a/b/c", true),
            ("a**/*.txt", true, "a/dir/file.txt", true),
            ("a/*.txt**", true, "a/file.txt", true),
        ];
        for &(pattern, double_star, text, expected) in cases {
            let glob = Glob::compile(pattern, double_star)
                .unwrap_or_else(|e| panic!("{pattern:?} did not compile: {e:?}"));
            assert_eq!(
                glob.matches(text),
                expected,
                "pattern {pattern:?} text {text:?}"
            );
        }
    }

    #[test]
    fn syntax_errors() {
        let cases: &[(&str, GlobSyntax)] = &[
            ("[]a]", GlobSyntax::BadClassRange),
            ("[-]", GlobSyntax::BadClassRange),
            ("[x-]", GlobSyntax::BadClassRange),
            ("[-x]", GlobSyntax::BadClassRange),
            ("[a-b-c]", GlobSyntax::BadClassRange),
            ("\\", GlobSyntax::TrailingBackslash),
            ("a\\", GlobSyntax::TrailingBackslash),
            ("[", GlobSyntax::UnterminatedClass),
            ("[^", GlobSyntax::UnterminatedClass),
            ("[^bc", GlobSyntax::UnterminatedClass),
            ("a[", GlobSyntax::UnterminatedClass),
            ("[\\", GlobSyntax::UnterminatedClass),
        ];
        for &(pattern, expected) in cases {
            assert_eq!(
                Glob::compile(pattern, true),
                Err(expected),
                "pattern {pattern:?}"
            );
        }
    }

    #[test]
    fn prefix_may_match() {
        let cases: &[(&str, &str, bool)] = &[
            ("dir/keep", "dir/", true),
            ("dir/keep", "other/", false),
            ("**/*.go", "anything/", true),
            ("d*/x", "dir/", true),
            ("d*/x", "dir/sub/", false),
            ("*.md", "docs/", false),
            ("docs", "docs/", false),
        ];
        for &(pattern, prefix, expected) in cases {
            let glob = Glob::compile(pattern, true).unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(
                glob.may_match_with_prefix(prefix),
                expected,
                "{pattern:?} {prefix:?}"
            );
        }
    }

    #[test]
    fn self_or_parent_matching() {
        let cases: &[(&str, &str, bool)] = &[
            ("docs", "docs/a/b", true),
            ("docs", "docs", true),
            ("docs", "documents/a", false),
            ("a*", "ab/c", true),
            ("a*", "b/ab", false),
            ("**/x", "y/x/z", true),
            ("x/y", "x", false),
            ("x/y", "x/y/z", true),
            ("*.go", "dir/main.go", false),
        ];
        for &(pattern, text, expected) in cases {
            let glob = Glob::compile(pattern, true).unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(
                glob.matches_self_or_parent(text),
                expected,
                "{pattern:?} {text:?}"
            );
        }
    }

    #[test]
    fn clean_table() {
        let cases: &[(&str, &str)] = &[
            ("", "."),
            (".", "."),
            ("a/b/", "a/b"),
            ("./a//b", "a/b"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("a/../..", ".."),
            ("/../a", "/a"),
            ("/", "/"),
            ("//a/./b/..", "/a"),
        ];
        for &(input, expected) in cases {
            assert_eq!(clean(input), expected, "clean({input:?})");
        }
        let in_root: &[(&str, &str)] = &[
            ("../x", "x"),
            ("/x/y", "x/y"),
            ("..", "."),
            ("a/../../b", "b"),
            ("", "."),
        ];
        for &(input, expected) in in_root {
            assert_eq!(clean_in_root(input), expected, "clean_in_root({input:?})");
        }
    }

    #[test]
    fn wildcard_detection() {
        let cases: &[(&str, bool, &str)] = &[
            ("a.txt", false, "a.txt"),
            ("*.txt", true, "*.txt"),
            ("a\\*b", false, "a*b"),
            ("dir/[ab]", true, "dir/[ab]"),
            ("what?", true, "what?"),
        ];
        for &(pattern, wild, unescaped) in cases {
            assert_eq!(has_wildcards(pattern), wild, "{pattern:?}");
            assert_eq!(unescape(pattern), unescaped, "{pattern:?}");
        }
    }
}
