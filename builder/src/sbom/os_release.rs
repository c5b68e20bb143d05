//! `/etc/os-release` (or `/usr/lib/os-release`): which distro the OS
//! packages' purls name.

/// The fields of os-release the SBOM uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OsRelease {
    /// `ID`: `debian`, `alpine`, `fedora`, …
    pub id: Option<String>,
    /// `VERSION_ID`: `12`, `3.19.1`, `40`.
    pub version_id: Option<String>,
    pub pretty_name: Option<String>,
}

impl OsRelease {
    /// The purl `distro` qualifier: `debian-12`.
    pub fn purl_distro(&self) -> Option<String> {
        match (&self.id, &self.version_id) {
            (Some(id), Some(version)) => Some(format!("{id}-{version}")),
            (Some(id), None) => Some(id.clone()),
            _ => None,
        }
    }
}

/// Parses os-release's shell-like `KEY=value` lines (values optionally in
/// single or double quotes, `\` escapes inside double quotes). Unknown
/// lines are ignored: the file is informational, not worth a skip.
pub fn parse(text: &[u8]) -> OsRelease {
    let text = String::from_utf8_lossy(text);
    let mut release = OsRelease::default();
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else {
            continue;
        };
        let value = unquote(value.trim());
        if value.is_empty() {
            continue;
        }
        match key {
            "ID" => release.id = Some(value),
            "VERSION_ID" => release.version_id = Some(value),
            "PRETTY_NAME" => release.pretty_name = Some(value),
            _ => {}
        }
    }
    release
}

fn unquote(value: &str) -> String {
    if let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.extend(chars.next()),
                c => out.push(c),
            }
        }
        out
    } else if let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        inner.to_string()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn debian_and_alpine() {
        let debian = parse(
            b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
              VERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nID=debian\n\
              HOME_URL=\"https://www.debian.org/\"\n",
        );
        assert_eq!(
            debian,
            OsRelease {
                id: Some("debian".into()),
                version_id: Some("12".into()),
                pretty_name: Some("Debian GNU/Linux 12 (bookworm)".into()),
            }
        );
        assert_eq!(debian.purl_distro().as_deref(), Some("debian-12"));
        let alpine = parse(b"NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\n");
        assert_eq!(alpine.purl_distro().as_deref(), Some("alpine-3.19.1"));
        let quoted = parse(b"ID='rhel'\nVERSION_ID=\"9.\\\"3\"\n# comment\ngarbage\n");
        assert_eq!(quoted.purl_distro().as_deref(), Some("rhel-9.\"3"));
    }
}
