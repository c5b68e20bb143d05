//! Which repository holds a build's cache images: `--cache-repo`, or the
//! first `--destination`'s repository with `/cache` appended, then the
//! `--arch-cache-repo-suffix` expanded for the platform being built.

use crate::platform::Platform;

/// Why no cache repository could be named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoError {
    #[error(
        "--cache needs a repository for the cache images: pass --cache-repo=REGISTRY/REPO, or a --destination whose repository gets /cache appended"
    )]
    NoRepository,
    #[error(
        "--arch-cache-repo-suffix={suffix}: unknown variable ${{{name}}}; use ${{ARCH}}, ${{OS}} or ${{VARIANT}}"
    )]
    UnknownVariable { suffix: String, name: String },
    #[error("--arch-cache-repo-suffix={suffix}: unterminated ${{ in the suffix")]
    Unterminated { suffix: String },
    /// What an unquoted `--arch-cache-repo-suffix=-${ARCH}` becomes when
    /// the shell expands `${ARCH}` (usually to nothing) before kiln runs.
    #[error(
        "--arch-cache-repo-suffix={shown} has no ${{ARCH}}, ${{OS}} or ${{VARIANT}}{ending}: the shell replaced the placeholder before kiln saw it. Quote the flag so kiln gets it: '--arch-cache-repo-suffix=-${{ARCH}}'"
    )]
    PlaceholderExpanded { shown: String, ending: String },
}

/// Refuses a suffix that evidently lost its placeholder to the shell: an
/// empty one, or one without `${` that ends in a separator (`-`, `_`, `.`),
/// as `-${ARCH}` unquoted becomes `-`.
pub fn check_suffix(suffix: &str) -> Result<(), RepoError> {
    if suffix.contains("${") {
        return Ok(());
    }
    let ending = match suffix.chars().last() {
        None => " (it is empty)".to_string(),
        Some(last @ ('-' | '_' | '.')) => format!(" and ends with {last:?}"),
        Some(_) => return Ok(()),
    };
    Err(RepoError::PlaceholderExpanded {
        shown: format!("{suffix:?}"),
        ending,
    })
}

/// The cache repository for a build of `platform`.
pub fn cache_repository(
    cache_repo: Option<&str>,
    destinations: &[String],
    arch_suffix: Option<&str>,
    platform: &Platform,
) -> Result<String, RepoError> {
    let base = match cache_repo.map(str::trim).filter(|r| !r.is_empty()) {
        Some(repo) => repo.trim_end_matches('/').to_string(),
        None => {
            let first = destinations.first().ok_or(RepoError::NoRepository)?;
            format!("{}/cache", crate::registry::names::repository(first))
        }
    };
    match arch_suffix {
        Some(suffix) => {
            check_suffix(suffix)?;
            Ok(format!("{base}{}", expand_suffix(suffix, platform)?))
        }
        None => Ok(base),
    }
}

/// Replaces `${ARCH}`, `${OS}` and `${VARIANT}` (empty without a variant)
/// in `suffix`. Anything else in braces is refused rather than left in a
/// repository name a registry would reject later.
pub fn expand_suffix(suffix: &str, platform: &Platform) -> Result<String, RepoError> {
    let mut out = String::with_capacity(suffix.len() + 8);
    let mut rest = suffix;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| RepoError::Unterminated {
            suffix: suffix.to_string(),
        })?;
        let name = &after[..end];
        match name {
            "ARCH" => out.push_str(&platform.architecture),
            "OS" => out.push_str(&platform.os),
            "VARIANT" => out.push_str(platform.variant.as_deref().unwrap_or("")),
            _ => {
                return Err(RepoError::UnknownVariable {
                    suffix: suffix.to_string(),
                    name: name.to_string(),
                });
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_suffix_the_shell_expanded_is_refused_with_the_quoting_fix() {
        let fix = "the shell replaced the placeholder before kiln saw it. Quote the flag so kiln \
                   gets it: '--arch-cache-repo-suffix=-${ARCH}'";
        let table = [
            (
                "-",
                format!(
                    "--arch-cache-repo-suffix=\"-\" has no ${{ARCH}}, ${{OS}} or ${{VARIANT}} and \
                     ends with '-': {fix}"
                ),
            ),
            (
                "_",
                format!(
                    "--arch-cache-repo-suffix=\"_\" has no ${{ARCH}}, ${{OS}} or ${{VARIANT}} and \
                     ends with '_': {fix}"
                ),
            ),
            (
                "-linux-",
                format!(
                    "--arch-cache-repo-suffix=\"-linux-\" has no ${{ARCH}}, ${{OS}} or ${{VARIANT}} \
                     and ends with '-': {fix}"
                ),
            ),
            (
                "",
                format!(
                    "--arch-cache-repo-suffix=\"\" has no ${{ARCH}}, ${{OS}} or ${{VARIANT}} (it is \
                     empty): {fix}"
                ),
            ),
        ];
        for (suffix, want) in table {
            assert_eq!(
                check_suffix(suffix).unwrap_err().to_string(),
                want,
                "{suffix:?}"
            );
        }
        for fine in ["-${ARCH}", "-arm64", "_${OS}-", "cache2"] {
            assert_eq!(check_suffix(fine), Ok(()), "{fine:?}");
        }
    }

    #[test]
    fn repositories() {
        let dests = |d: &[&str]| d.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // (--cache-repo, destinations, suffix, platform, repository)
        type Case<'a> = (
            Option<&'a str>,
            &'a [&'a str],
            Option<&'a str>,
            &'a str,
            Result<&'a str, RepoError>,
        );
        let table: &[Case] = &[
            (
                None,
                &["127.0.0.1:5000/team/app:1.0", "other/app:2"],
                None,
                "linux/amd64",
                Ok("127.0.0.1:5000/team/app/cache"),
            ),
            (
                None,
                &["127.0.0.1:5000/app@sha256:abc"],
                Some("-${ARCH}"),
                "linux/arm64",
                Ok("127.0.0.1:5000/app/cache-arm64"),
            ),
            (
                Some("ghcr.io/org/cache/"),
                &["127.0.0.1:5000/app:1"],
                Some("-${OS}-${ARCH}${VARIANT}"),
                "linux/arm/v7",
                Ok("ghcr.io/org/cache-linux-armv7"),
            ),
            (
                Some("ghcr.io/org/cache"),
                &[],
                Some("-${VARIANT}x"),
                "linux/amd64",
                Ok("ghcr.io/org/cache-x"),
            ),
            (
                Some("ghcr.io/org/cache"),
                &[],
                Some(""),
                "linux/amd64",
                Err(RepoError::PlaceholderExpanded {
                    shown: "\"\"".to_string(),
                    ending: " (it is empty)".to_string(),
                }),
            ),
            (
                Some("ghcr.io/org/cache"),
                &[],
                Some("-amd64"),
                "linux/amd64",
                Ok("ghcr.io/org/cache-amd64"),
            ),
            (None, &[], None, "linux/amd64", Err(RepoError::NoRepository)),
            (
                Some("r/c"),
                &[],
                Some("-${CPU}"),
                "linux/amd64",
                Err(RepoError::UnknownVariable {
                    suffix: "-${CPU}".to_string(),
                    name: "CPU".to_string(),
                }),
            ),
            (
                Some("r/c"),
                &[],
                Some("-${ARCH"),
                "linux/amd64",
                Err(RepoError::Unterminated {
                    suffix: "-${ARCH".to_string(),
                }),
            ),
        ];
        for (repo, destinations, suffix, platform, want) in table {
            let platform: Platform = platform.parse().unwrap();
            let got = cache_repository(*repo, &dests(destinations), *suffix, &platform);
            assert_eq!(got, want.clone().map(str::to_string), "{repo:?} {suffix:?}");
        }
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            RepoError::UnknownVariable {
                suffix: "-${CPU}".to_string(),
                name: "CPU".to_string()
            }
            .to_string(),
            "--arch-cache-repo-suffix=-${CPU}: unknown variable ${CPU}; use ${ARCH}, ${OS} or ${VARIANT}"
        );
    }
}
