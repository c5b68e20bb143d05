//! The `Field: value` paragraph format shared by dpkg's status file and
//! Python's core metadata (RFC 822 headers): continuation lines start with
//! a space or tab, paragraphs are separated by blank lines.

/// One paragraph: its fields in order, continuation lines joined with
/// `\n`, and the line number (1-based) where it starts.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Paragraph<'a> {
    pub line: usize,
    pub fields: Vec<(&'a str, String)>,
}

impl Paragraph<'_> {
    /// The first value of `name` (field names are case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// A line that is neither a field, a continuation nor blank.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line} is not a `Field: value` line")]
pub struct BadLine {
    pub line: usize,
}

/// Splits `text` into paragraphs; with `first_only`, stops at the first
/// blank line (Python metadata: the body that follows is free text).
pub fn paragraphs(text: &str, first_only: bool) -> Result<Vec<Paragraph<'_>>, BadLine> {
    let mut out = Vec::new();
    let mut current = Paragraph::default();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            if !current.fields.is_empty() {
                out.push(std::mem::take(&mut current));
                if first_only {
                    return Ok(out);
                }
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            let Some((_, value)) = current.fields.last_mut() else {
                return Err(BadLine { line: number });
            };
            value.push('\n');
            value.push_str(line.trim());
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(BadLine { line: number });
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(BadLine { line: number });
        }
        if current.fields.is_empty() {
            current.line = number;
        }
        current.fields.push((key, value.trim().to_string()));
    }
    if !current.fields.is_empty() {
        out.push(current);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn fields_continuations_and_paragraphs() {
        let text = "Package: a\nDescription: short\n long\n .\n\nPackage: b\n";
        let got = paragraphs(text, false).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].line, 1);
        assert_eq!(got[0].get("description"), Some("short\nlong\n."));
        assert_eq!(got[1].line, 6);
        assert_eq!(got[1].get("Package"), Some("b"));
        assert_eq!(paragraphs(text, true).unwrap().len(), 1);
        assert_eq!(paragraphs(" orphan\n", false), Err(BadLine { line: 1 }));
        assert_eq!(
            paragraphs("a: b\nno colon\n", false),
            Err(BadLine { line: 2 })
        );
    }
}
