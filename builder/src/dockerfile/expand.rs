//! Variable expansion with Docker/BuildKit word semantics.
//!
//! Besides `$` substitution, expansion is where quotes and escapes of a
//! word are resolved: `"a b"` becomes `a b`, `'$x'` stays `$x`, `\$x`
//! stays `$x`. Supported forms: `$V`, `${V}`, `${V:-w}`, `${V-w}`,
//! `${V:+w}`, `${V+w}`, `${V:?msg}`, `${V?msg}`; the word `w` is itself
//! expanded. Pattern forms (`${V#p}`, `${V%p}`, `${V/p/r}`) are rejected
//! with an error rather than silently misread.

/// An expansion failure; each variant names the word being expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("missing '}}' in {word:?}")]
    MissingBrace { word: String },
    #[error("bad substitution in {word:?}")]
    BadSubstitution { word: String },
    #[error("unsupported modifier ({modifier}) in substitution in {word:?}")]
    UnsupportedModifier { modifier: char, word: String },
    #[error("unterminated {quote} quote in {word:?}")]
    UnterminatedQuote { quote: &'static str, word: String },
    /// `${V:?message}` with `V` unset (or empty, with the colon).
    #[error("{name}: {message}")]
    Required { name: String, message: String },
    #[error("variable substitutions nested more than {max} levels deep in {word:?}")]
    TooDeep { max: usize, word: String },
}

/// How deep `${a:-${b:-…}}` may nest: far beyond any real Dockerfile, and
/// a clear error instead of a stack overflow for a hostile one (the lexer
/// recurses once per level).
pub const MAX_NESTING: usize = 64;

/// How much of a word an error message quotes.
const WORD_EXCERPT_CHARS: usize = 120;

/// Expands `word` as one word: quotes and escapes are removed, variables
/// substituted; whitespace is kept as it is. Unset variables expand to
/// the empty string.
///
/// What the build expands (as Docker does): `ADD` and `COPY` (sources,
/// destination, `--from`, `--chown`, `--chmod`, ADD `--checksum`), `ENV`
/// and `LABEL` (keys and values), `ARG` defaults, `EXPOSE` (with word
/// splitting, see [`expand_words`]), `FROM` (image and `--platform`),
/// `STOPSIGNAL`, `USER`, `VOLUME`, `WORKDIR`, and `RUN --mount` values.
/// Never expanded: `RUN`, `CMD`, `ENTRYPOINT` and `SHELL` (the shell
/// does it at run time), `MAINTAINER`, `HEALTHCHECK` and `ONBUILD`.
/// `COPY` here-document bodies use [`expand_heredoc`].
pub fn expand(
    word: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let mut lexer = Lexer::new(word, escape, lookup);
    let mut out = OneWord(String::new());
    lexer.scan(None, &mut out)?;
    Ok(out.0)
}

/// Expands `text` into words, splitting on unquoted whitespace, including
/// whitespace produced by unquoted expansions (`EXPOSE $PORTS` with
/// `PORTS="80 443"` gives two ports). A quoted empty string is a word.
pub fn expand_words(
    text: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, ExpandError> {
    let mut lexer = Lexer::new(text, escape, lookup);
    let mut out = Words::default();
    lexer.scan(None, &mut out)?;
    Ok(out.finish())
}

/// Expands the body of a `COPY <<EOF` here-document whose delimiter was
/// not quoted. As in BuildKit, quotes are ordinary characters here, while
/// `$` substitution and `\` escapes work as in a word; the escape is
/// always `\`, whatever the escape directive says.
pub fn expand_heredoc(
    content: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let mut lexer = Lexer::new(content, '\\', lookup);
    lexer.quotes = false;
    let mut out = OneWord(String::new());
    lexer.scan(None, &mut out)?;
    Ok(out.0)
}

/// Receives the pieces of a scanned word. Only the word-splitting sink
/// cares about the difference between them.
trait Sink {
    /// Text that is never split: quoted or escaped characters.
    fn literal(&mut self, text: &str);
    /// A character of the source outside quotes.
    fn bare(&mut self, c: char);
    /// The value of an unquoted substitution.
    fn expansion(&mut self, text: &str);
    /// Quotes were seen: the word exists even if it stays empty.
    fn mark(&mut self);
}

struct OneWord(String);

impl Sink for OneWord {
    fn literal(&mut self, text: &str) {
        self.0.push_str(text);
    }
    fn bare(&mut self, c: char) {
        self.0.push(c);
    }
    fn expansion(&mut self, text: &str) {
        self.0.push_str(text);
    }
    fn mark(&mut self) {}
}

#[derive(Default)]
struct Words {
    words: Vec<String>,
    current: String,
    started: bool,
}

impl Words {
    fn end_word(&mut self) {
        if self.started || !self.current.is_empty() {
            self.words.push(std::mem::take(&mut self.current));
        }
        self.started = false;
    }
    fn finish(mut self) -> Vec<String> {
        self.end_word();
        self.words
    }
}

impl Sink for Words {
    fn literal(&mut self, text: &str) {
        self.current.push_str(text);
        self.started = true;
    }
    fn bare(&mut self, c: char) {
        if c.is_whitespace() {
            self.end_word();
        } else {
            self.current.push(c);
        }
    }
    fn expansion(&mut self, text: &str) {
        for c in text.chars() {
            self.bare(c);
        }
    }
    fn mark(&mut self) {
        self.started = true;
    }
}

struct Lexer<'a> {
    word: &'a str,
    chars: Vec<char>,
    pos: usize,
    escape: char,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    /// Whether quotes group and protect text (off for here-documents).
    quotes: bool,
    /// `${` substitutions open around the current position.
    depth: usize,
}

impl<'a> Lexer<'a> {
    fn new(word: &'a str, escape: char, lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Lexer {
            word,
            chars: word.chars().collect(),
            pos: 0,
            escape,
            lookup,
            quotes: true,
            depth: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// The word for an error message: its start, when it is long.
    fn word(&self) -> String {
        crate::context::excerpt(self.word, WORD_EXCERPT_CHARS)
    }

    /// Scans until `stop` (consumed) or the end of input. Reaching the end
    /// while a stop character is expected means an unclosed `${`.
    fn scan(&mut self, stop: Option<char>, out: &mut dyn Sink) -> Result<(), ExpandError> {
        loop {
            let Some(c) = self.next() else {
                return match stop {
                    Some(_) => Err(ExpandError::MissingBrace { word: self.word() }),
                    None => Ok(()),
                };
            };
            if Some(c) == stop {
                return Ok(());
            }
            match c {
                '\'' if self.quotes => {
                    out.mark();
                    let text = self.single_quoted()?;
                    out.literal(&text);
                }
                '"' if self.quotes => {
                    out.mark();
                    let text = self.double_quoted()?;
                    out.literal(&text);
                }
                '$' => {
                    let value = self.dollar()?;
                    out.expansion(&value);
                }
                c if c == self.escape => {
                    // A trailing escape has nothing to escape and is dropped,
                    // as BuildKit does.
                    if let Some(next) = self.next() {
                        let mut buf = [0u8; 4];
                        out.literal(next.encode_utf8(&mut buf));
                    }
                }
                c => out.bare(c),
            }
        }
    }

    fn single_quoted(&mut self) -> Result<String, ExpandError> {
        let mut text = String::new();
        loop {
            match self.next() {
                Some('\'') => return Ok(text),
                Some(c) => text.push(c),
                None => {
                    return Err(ExpandError::UnterminatedQuote {
                        quote: "single",
                        word: self.word(),
                    });
                }
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, ExpandError> {
        let mut text = String::new();
        loop {
            match self.next() {
                Some('"') => return Ok(text),
                Some('$') => text.push_str(&self.dollar()?),
                Some(c) if c == self.escape => match self.peek() {
                    // Inside double quotes the escape only escapes these;
                    // elsewhere it is an ordinary character.
                    Some(n) if n == '"' || n == '$' || n == self.escape => {
                        self.pos += 1;
                        text.push(n);
                    }
                    Some(_) => text.push(c),
                    None => {}
                },
                Some(c) => text.push(c),
                None => {
                    return Err(ExpandError::UnterminatedQuote {
                        quote: "double",
                        word: self.word(),
                    });
                }
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        if self.peek().is_some_and(|c| c.is_ascii_digit()) {
            while let Some(c) = self.peek().filter(|c| c.is_ascii_digit()) {
                name.push(c);
                self.pos += 1;
            }
            return name;
        }
        while let Some(c) = self.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
            name.push(c);
            self.pos += 1;
        }
        name
    }

    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    /// Called after `$`; returns the substituted text.
    fn dollar(&mut self) -> Result<String, ExpandError> {
        if self.peek() != Some('{') {
            // Shell special parameters ($$, $@, ...) are never set in a
            // Dockerfile, so they expand to nothing, as in BuildKit.
            if let Some(c) = self.peek().filter(|c| "@*#?$!-".contains(*c)) {
                self.pos += 1;
                return Ok(self.get(&c.to_string()).unwrap_or_default());
            }
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(self.get(&name).unwrap_or_default());
        }
        self.pos += 1;
        match self.peek() {
            None => return Err(ExpandError::MissingBrace { word: self.word() }),
            Some('{' | '}' | ':') => {
                return Err(ExpandError::BadSubstitution { word: self.word() });
            }
            Some(_) => {}
        }
        let name = self.name();
        if name.is_empty() {
            return Err(ExpandError::BadSubstitution { word: self.word() });
        }
        if self.depth >= MAX_NESTING {
            return Err(ExpandError::TooDeep {
                max: MAX_NESTING,
                word: self.word(),
            });
        }
        self.depth += 1;
        let substituted = self.substitute(&name);
        self.depth -= 1;
        substituted
    }

    /// The rest of `${name…}` after the name.
    fn substitute(&mut self, name: &str) -> Result<String, ExpandError> {
        let value = self.get(name);
        match self.next() {
            None => Err(ExpandError::MissingBrace { word: self.word() }),
            Some('}') => Ok(value.unwrap_or_default()),
            Some(':') => {
                let Some(modifier) = self.next() else {
                    return Err(ExpandError::MissingBrace { word: self.word() });
                };
                let arg = self.modifier_word()?;
                let value = value.filter(|v| !v.is_empty());
                self.apply(modifier, name, value, arg)
            }
            Some(modifier @ ('-' | '+' | '?')) => {
                let arg = self.modifier_word()?;
                self.apply(modifier, name, value, arg)
            }
            Some(modifier) => Err(ExpandError::UnsupportedModifier {
                modifier,
                word: self.word(),
            }),
        }
    }

    fn modifier_word(&mut self) -> Result<String, ExpandError> {
        let mut out = OneWord(String::new());
        self.scan(Some('}'), &mut out)?;
        Ok(out.0)
    }

    /// `value` is `None` when the modifier's condition says "unset" (for the
    /// colon forms, empty counts as unset).
    fn apply(
        &self,
        modifier: char,
        name: &str,
        value: Option<String>,
        arg: String,
    ) -> Result<String, ExpandError> {
        match modifier {
            '-' => Ok(value.unwrap_or(arg)),
            '+' => Ok(if value.is_some() { arg } else { String::new() }),
            '?' => value.ok_or_else(|| ExpandError::Required {
                name: name.to_string(),
                message: if arg.is_empty() {
                    "is not allowed to be unset".to_string()
                } else {
                    arg
                },
            }),
            modifier => Err(ExpandError::UnsupportedModifier {
                modifier,
                word: self.word(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".to_string()),
            "EMPTY" => Some(String::new()),
            "SP" => Some("a b  c".to_string()),
            "PORTS" => Some("80 443/udp".to_string()),
            "X_1" => Some("x1".to_string()),
            "1" => Some("one".to_string()),
            _ => None,
        }
    }

    #[test]
    fn nesting_is_bounded_and_long_words_are_quoted_in_part() {
        let nested =
            |levels: usize| format!("{}x{}", "${NOPE:-".repeat(levels), "}".repeat(levels));
        assert_eq!(
            expand(&nested(MAX_NESTING), '\\', &vars).as_deref(),
            Ok("x")
        );
        // Deep enough to overflow the stack if it were followed.
        let err = expand(&nested(200_000), '\\', &vars)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "variable substitutions nested more than {MAX_NESTING} levels deep in \"${{NOPE:-"
            )),
            "{err}"
        );
        assert!(err.len() < 400, "{err}");
        let err = expand(&format!("${{A{}", "b".repeat(10_000)), '\\', &vars)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("missing '}' in \"${Abbb"), "{err}");
        assert!(err.ends_with("bbb…\""), "{err}");
        assert!(err.len() < 200, "{err}");
    }

    #[test]
    fn expands_like_buildkit() {
        let cases: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("$A", "alpha"),
            ("${A}", "alpha"),
            ("x$A.y", "xalpha.y"),
            ("$Ab", ""),
            ("${A}b", "alphab"),
            ("$X_1/", "x1/"),
            ("$1x", "onex"),
            ("$UNSET", ""),
            ("${UNSET}", ""),
            ("$", "$"),
            ("a$", "a$"),
            ("$/", "$/"),
            ("$$", ""),
            ("${A:-d}", "alpha"),
            ("${UNSET:-d}", "d"),
            ("${EMPTY:-d}", "d"),
            ("${EMPTY-d}", ""),
            ("${UNSET-d}", "d"),
            ("${A:+set}", "set"),
            ("${EMPTY:+set}", ""),
            ("${EMPTY+set}", "set"),
            ("${UNSET+set}", ""),
            ("${UNSET:-$A}", "alpha"),
            ("${UNSET:-${UNSET2:-deep}}", "deep"),
            ("${UNSET:-a b}", "a b"),
            ("${UNSET:-\"}\"}", "}"),
            ("${UNSET:-}", ""),
            ("${A:?must}", "alpha"),
            ("\\$A", "$A"),
            ("\\${A}", "${A}"),
            ("a\\b", "ab"),
            ("a\\", "a"),
            ("'$A'", "$A"),
            ("'a\\b'", "a\\b"),
            ("\"$A\"", "alpha"),
            ("\"a b\"", "a b"),
            ("\"\\$A\"", "$A"),
            ("\"\\\"\"", "\""),
            ("\"\\\\\"", "\\"),
            ("\"a\\b\"", "a\\b"),
            ("\"it's\"", "it's"),
            ("'say \"hi\"'", "say \"hi\""),
            ("a\"b\"'c'", "abc"),
            ("$SP", "a b  c"),
            ("ünï$A", "ünïalpha"),
        ];
        for (word, want) in cases {
            assert_eq!(expand(word, '\\', &vars).as_deref(), Ok(*want), "{word}");
        }
    }

    #[test]
    fn backtick_escape() {
        let cases: &[(&str, &str)] = &[
            ("C:\\dir\\$A", "C:\\dir\\alpha"),
            ("`$A", "$A"),
            ("\"`\"\"", "\""),
            ("\"a`b\"", "a`b"),
        ];
        for (word, want) in cases {
            assert_eq!(expand(word, '`', &vars).as_deref(), Ok(*want), "{word}");
        }
    }

    #[test]
    fn errors_name_the_word() {
        let cases: &[(&str, &str)] = &[
            ("${A", "missing '}' in \"${A\""),
            ("${", "missing '}' in \"${\""),
            ("x${A:-y", "missing '}' in \"x${A:-y\""),
            ("${A:", "missing '}' in \"${A:\""),
            ("${}", "bad substitution in \"${}\""),
            ("${:-x}", "bad substitution in \"${:-x}\""),
            ("${{A}}", "bad substitution in \"${{A}}\""),
            ("${-x}", "bad substitution in \"${-x}\""),
            (
                "${A#x}",
                "unsupported modifier (#) in substitution in \"${A#x}\"",
            ),
            (
                "${A:#x}",
                "unsupported modifier (#) in substitution in \"${A:#x}\"",
            ),
            ("'abc", "unterminated single quote in \"'abc\""),
            ("\"abc", "unterminated double quote in \"\\\"abc\""),
            ("${UNSET:?}", "UNSET: is not allowed to be unset"),
            ("${EMPTY:?set it}", "EMPTY: set it"),
            ("${UNSET?no}", "UNSET: no"),
        ];
        for (word, want) in cases {
            let got = expand(word, '\\', &vars).map_err(|e| e.to_string());
            assert_eq!(got, Err(want.to_string()), "{word}");
        }
        assert_eq!(expand("${EMPTY?no}", '\\', &vars), Ok(String::new()));
    }

    #[test]
    fn splits_words() {
        let cases: &[(&str, &[&str])] = &[
            ("80 443", &["80", "443"]),
            ("  80\t443  ", &["80", "443"]),
            ("$PORTS 8080", &["80", "443/udp", "8080"]),
            ("\"$PORTS\"", &["80 443/udp"]),
            ("x$SP", &["xa", "b", "c"]),
            ("'' a", &["", "a"]),
            ("$UNSET", &[]),
            ("\"\"", &[""]),
            ("a\\ b", &["a b"]),
            ("${UNSET:-1 2}", &["1", "2"]),
        ];
        for (text, want) in cases {
            let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            assert_eq!(expand_words(text, '\\', &vars), Ok(want), "{text}");
        }
    }

    #[test]
    fn heredoc_bodies_keep_quotes() {
        let cases: &[(&str, &str)] = &[
            ("hello $A\n", "hello alpha\n"),
            ("'$A' \"${A}\"\n", "'alpha' \"alpha\"\n"),
            ("it's \\$A\n", "it's $A\n"),
            ("${UNSET:-x y}\n", "x y\n"),
        ];
        for (body, want) in cases {
            assert_eq!(expand_heredoc(body, &vars).as_deref(), Ok(*want), "{body}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(word in ".*", escape in prop::sample::select(vec!['\\', '`'])) {
            let _ = expand(&word, escape, &vars);
            let _ = expand_words(&word, escape, &vars);
            let _ = expand_heredoc(&word, &vars);
        }

        #[test]
        fn never_panics_on_dollar_soup(word in "[${}:?+\\-\"'\\\\A-Z ]{0,24}") {
            let _ = expand(&word, '\\', &vars);
            let _ = expand_words(&word, '\\', &vars);
        }

        #[test]
        fn plain_words_are_unchanged(word in "[a-zA-Z0-9_./:-]{0,32}") {
            prop_assert_eq!(expand(&word, '\\', &vars), Ok(word));
        }
    }
}
