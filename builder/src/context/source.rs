//! kaniko's `--context` values and fetching them into a local directory.
//!
//! Parsing is pure ([`ContextSource::parse`]); fetching clones with gix (no `git` binary),
//! downloads with reqwest or unpacks a tarball, always into a temporary
//! directory owned by the returned [`BuildContext`].

use std::fmt;
use std::path::{Path, PathBuf};

use super::ContextError;
use super::pattern::clean;

/// Where a build context comes from. `Debug` and `Display` redact
/// credentials in URLs.
#[derive(Clone, PartialEq, Eq)]
pub enum ContextSource {
    /// A local directory: a plain path or `dir://path`.
    Dir { path: PathBuf },
    /// A local tarball, plain or gzip: `tar://path`, or a path ending in
    /// `.tar`, `.tar.gz` or `.tgz`.
    Tar { path: PathBuf },
    /// A tarball downloaded over https (http only on the loopback).
    Http { url: String },
    /// A git repository.
    Git(GitSource),
    /// `oci://registry/repo@sha256:…`: an artifact whose layer is the
    /// context tarball. Pulling it is the registry module's job; the blob
    /// goes to [`super::unpack_context_archive`] or
    /// [`BuildContext::from_archive`].
    Oci { reference: String },
}

/// A git context: `git://host/repo.git#ref:subdir`,
/// `https://host/repo.git#ref:subdir`, `git=<url>` (the seed guides' alias)
/// or kaniko's `#refs/heads/branch#commit`.
#[derive(Clone, PartialEq, Eq)]
pub struct GitSource {
    /// The URL git is given; it may carry credentials, so it is shown
    /// redacted everywhere.
    pub url: String,
    /// A branch, tag, `refs/...` name or commit; `None` for the remote HEAD.
    pub reference: Option<String>,
    /// kaniko's second fragment: the commit to check out after fetching
    /// `reference`.
    pub commit: Option<String>,
    /// Docker's `:subdir`: the context is this directory of the checkout.
    pub subdir: Option<String>,
}

impl fmt::Debug for GitSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitSource")
            .field("url", &redact_url(&self.url))
            .field("reference", &self.reference)
            .field("commit", &self.commit)
            .field("subdir", &self.subdir)
            .finish()
    }
}

impl fmt::Debug for ContextSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContextSource::Dir { path } => f.debug_struct("Dir").field("path", path).finish(),
            ContextSource::Tar { path } => f.debug_struct("Tar").field("path", path).finish(),
            ContextSource::Http { url } => f
                .debug_struct("Http")
                .field("url", &redact_url(url))
                .finish(),
            ContextSource::Git(git) => f.debug_tuple("Git").field(git).finish(),
            ContextSource::Oci { reference } => {
                f.debug_struct("Oci").field("reference", reference).finish()
            }
        }
    }
}

impl fmt::Display for ContextSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContextSource::Dir { path } => write!(f, "dir://{}", path.display()),
            ContextSource::Tar { path } => write!(f, "tar://{}", path.display()),
            ContextSource::Http { url } => f.write_str(&redact_url(url)),
            ContextSource::Git(git) => {
                f.write_str(&redact_url(&git.url))?;
                if git.reference.is_some() || git.subdir.is_some() || git.commit.is_some() {
                    write!(f, "#{}", git.reference.as_deref().unwrap_or(""))?;
                    if let Some(subdir) = &git.subdir {
                        write!(f, ":{subdir}")?;
                    }
                    if let Some(commit) = &git.commit {
                        write!(f, "#{commit}")?;
                    }
                }
                Ok(())
            }
            ContextSource::Oci { reference } => write!(f, "oci://{reference}"),
        }
    }
}

/// Credentials for https git remotes. `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct GitCredentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GitCredentials { <redacted> }")
    }
}

impl GitCredentials {
    /// kaniko's reading of `GIT_USERNAME`, `GIT_PASSWORD` and `GIT_TOKEN`:
    /// a token is sent as the user name with an empty password.
    pub fn from_values(
        username: Option<String>,
        password: Option<String>,
        token: Option<String>,
    ) -> Option<GitCredentials> {
        let (username, password) = match token.filter(|t| !t.is_empty()) {
            Some(token) => (token, String::new()),
            None => (username.unwrap_or_default(), password.unwrap_or_default()),
        };
        (!username.is_empty() || !password.is_empty())
            .then_some(GitCredentials { username, password })
    }
}

/// How to fetch: everything read from the environment, explicit so tests
/// (which run in parallel threads) need not mutate the process environment.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Extra CA certificates (PEM) trusted for https downloads and git.
    pub ca_file: Option<PathBuf>,
    pub git_credentials: Option<GitCredentials>,
    /// kaniko's `GIT_PULL_METHOD` (`https` or `http`): when set, `git://`
    /// URLs are fetched over that scheme instead of the git protocol.
    pub git_pull_method: Option<String>,
    /// Keep `.git` in a git context.
    pub keep_git_dir: bool,
    /// Where temporary context directories go; kiln's work root if unset.
    pub temp_parent: Option<PathBuf>,
}

impl FetchOptions {
    /// Options from `SSL_CERT_FILE`, `GIT_USERNAME`, `GIT_PASSWORD`,
    /// `GIT_TOKEN` and `GIT_PULL_METHOD`.
    pub fn from_env() -> FetchOptions {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        FetchOptions {
            ca_file: var("SSL_CERT_FILE").map(PathBuf::from),
            git_credentials: GitCredentials::from_values(
                var("GIT_USERNAME"),
                var("GIT_PASSWORD"),
                var("GIT_TOKEN"),
            ),
            git_pull_method: var("GIT_PULL_METHOD").filter(|m| m == "https" || m == "http"),
            keep_git_dir: false,
            temp_parent: None,
        }
    }

    /// A new directory for a fetched context, in `temp_parent` or else
    /// kiln's work root (never `std::env::temp_dir()` unless `TMPDIR` is
    /// set: see [`crate::work_root`]).
    pub(super) fn temp_dir(&self) -> Result<tempfile::TempDir, ContextError> {
        self.temp_dir_named("kiln-context-")
    }

    pub(super) fn temp_dir_named(&self, prefix: &str) -> Result<tempfile::TempDir, ContextError> {
        Ok(crate::work_root::temp_dir(
            prefix,
            self.temp_parent.as_deref(),
        )?)
    }
}

/// A fetched context, ready to read. Dropping it removes whatever was
/// downloaded or unpacked.
#[derive(Debug)]
pub struct BuildContext {
    /// The context directory, `--context-sub-path` already applied.
    pub root: PathBuf,
    /// The git commit (hex) the context is, where kiln can tell: the
    /// commit a git context checked out, or the HEAD of the repository a
    /// local directory is in. The provenance records it.
    pub revision: Option<String>,
    _temp: Option<tempfile::TempDir>,
}

impl BuildContext {
    /// A local directory used in place.
    pub fn from_dir(path: &Path, sub_path: Option<&str>) -> Result<BuildContext, ContextError> {
        let root = std::fs::canonicalize(path)
            .ok()
            .filter(|p| p.is_dir())
            .ok_or_else(|| ContextError::MissingContextDir {
                path: path.to_path_buf(),
            })?;
        let root = apply_sub_path(&root, sub_path)?;
        Ok(BuildContext {
            revision: super::git::head_of_repository_around(&root),
            root,
            _temp: None,
        })
    }

    /// Unpacks a context tarball (plain or gzip) into a fresh temporary
    /// directory: how an `oci://` context's blob becomes a context.
    pub fn from_archive(
        reader: impl std::io::Read,
        sub_path: Option<&str>,
        options: &FetchOptions,
    ) -> Result<BuildContext, ContextError> {
        let temp = options.temp_dir()?;
        super::unpack_context_archive(reader, temp.path())?;
        BuildContext::in_temp(temp, None, sub_path)
    }

    /// Wraps a temporary directory, applying a source's own sub-directory
    /// (a git `:subdir`) and then `--context-sub-path`.
    pub(super) fn in_temp(
        temp: tempfile::TempDir,
        inner: Option<&str>,
        sub_path: Option<&str>,
    ) -> Result<BuildContext, ContextError> {
        let base = std::fs::canonicalize(temp.path())
            .map_err(|e| ContextError::io("resolving", temp.path().to_path_buf(), e))?;
        let inner_root = apply_sub_path(&base, inner)?;
        let root = match sub_path {
            Some(sub) => {
                let joined = apply_sub_path(&inner_root, Some(sub))?;
                // The sub-path may not climb out of the whole checkout
                // either (a symlink in the subdir pointing up).
                if !joined.starts_with(&base) {
                    return Err(ContextError::SubPathEscapes {
                        sub_path: sub.to_string(),
                    });
                }
                joined
            }
            None => inner_root,
        };
        Ok(BuildContext {
            root,
            revision: None,
            _temp: Some(temp),
        })
    }
}

/// Joins a `--context-sub-path` onto `root` and checks that it exists, is
/// a directory, and stays inside `root` even through symlinks.
pub(super) fn apply_sub_path(root: &Path, sub_path: Option<&str>) -> Result<PathBuf, ContextError> {
    let Some(sub) = sub_path.filter(|s| !s.is_empty()) else {
        return Ok(root.to_path_buf());
    };
    let cleaned = clean(sub.trim_start_matches('/'));
    if cleaned == ".." || cleaned.starts_with("../") {
        return Err(ContextError::SubPathEscapes {
            sub_path: sub.to_string(),
        });
    }
    let joined = root.join(&cleaned);
    let real = std::fs::canonicalize(&joined)
        .ok()
        .filter(|p| p.is_dir())
        .ok_or_else(|| ContextError::SubPathMissing {
            sub_path: sub.to_string(),
            path: joined.clone(),
        })?;
    if !real.starts_with(root) {
        return Err(ContextError::SubPathEscapes {
            sub_path: sub.to_string(),
        });
    }
    Ok(real)
}

impl ContextSource {
    /// Parses a `--context` value.
    pub fn parse(value: &str) -> Result<ContextSource, ContextError> {
        if value.trim().is_empty() {
            return Err(ContextError::EmptyContext);
        }
        if let Some(url) = value.strip_prefix("git=") {
            return parse_git(url, value).map(ContextSource::Git);
        }
        if let Some((scheme, rest)) = value.split_once("://") {
            return match scheme.to_ascii_lowercase().as_str() {
                "dir" => {
                    non_empty("dir://", value, rest).map(|p| ContextSource::Dir { path: p.into() })
                }
                "tar" => {
                    non_empty("tar://", value, rest).map(|p| ContextSource::Tar { path: p.into() })
                }
                "oci" => parse_oci(value, rest),
                "git" | "ssh" => parse_git(value, value).map(ContextSource::Git),
                "https" | "http" if is_git_url(value) => {
                    parse_git(value, value).map(ContextSource::Git)
                }
                "https" | "http" => parse_http(value),
                _ => Err(ContextError::UnknownPrefix {
                    value: redact_url(value),
                }),
            };
        }
        if is_scp_like_git(value) {
            return parse_git(value, value).map(ContextSource::Git);
        }
        let path = PathBuf::from(value);
        let lower = value.to_ascii_lowercase();
        if [".tar", ".tar.gz", ".tgz"]
            .iter()
            .any(|ext| lower.ends_with(ext))
        {
            return Ok(ContextSource::Tar { path });
        }
        Ok(ContextSource::Dir { path })
    }

    /// Fetches the context with options read from the environment.
    pub async fn fetch(&self, sub_path: Option<&str>) -> Result<BuildContext, ContextError> {
        self.fetch_with(sub_path, &FetchOptions::from_env()).await
    }

    /// Fetches the context into a directory and applies `sub_path`.
    pub async fn fetch_with(
        &self,
        sub_path: Option<&str>,
        options: &FetchOptions,
    ) -> Result<BuildContext, ContextError> {
        match self {
            ContextSource::Dir { path } => BuildContext::from_dir(path, sub_path),
            ContextSource::Tar { path } => {
                let temp = options.temp_dir()?;
                unpack_file(path.clone(), temp.path().to_path_buf()).await?;
                BuildContext::in_temp(temp, None, sub_path)
            }
            ContextSource::Http { url } => {
                let temp = options.temp_dir()?;
                // The download sits beside the unpacked tree, not in it.
                let download = temp.path().join("download");
                let tree = temp.path().join("context");
                std::fs::create_dir(&tree)
                    .map_err(|e| ContextError::io("creating directory", tree.clone(), e))?;
                super::http::download(url, options.ca_file.as_deref(), &download).await?;
                unpack_file(download.clone(), tree).await?;
                std::fs::remove_file(&download)
                    .map_err(|e| ContextError::io("removing", download.clone(), e))?;
                BuildContext::in_temp(temp, Some("context"), sub_path)
            }
            ContextSource::Git(git) => {
                let temp = options.temp_dir()?;
                let commit = super::git::checkout(git, options, temp.path()).await?;
                let mut context = BuildContext::in_temp(temp, git.subdir.as_deref(), sub_path)?;
                context.revision = Some(commit);
                Ok(context)
            }
            ContextSource::Oci { reference } => Err(ContextError::OciNotFetchedHere {
                reference: reference.clone(),
            }),
        }
    }
}

async fn unpack_file(archive: PathBuf, dest: PathBuf) -> Result<(), ContextError> {
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&archive)
            .map_err(|e| ContextError::io("opening", archive.clone(), e))?;
        super::unpack_context_archive(file, &dest)
    })
    .await
    .map_err(|e| ContextError::Archive {
        source: std::io::Error::other(e),
    })?
}

fn non_empty<'a>(kind: &'static str, value: &str, rest: &'a str) -> Result<&'a str, ContextError> {
    match rest.is_empty() {
        true => Err(ContextError::InvalidSource {
            kind,
            value: value.to_string(),
            reason: "no path given".to_string(),
        }),
        false => Ok(rest),
    }
}

fn parse_oci(value: &str, rest: &str) -> Result<ContextSource, ContextError> {
    let invalid = |reason: &str| ContextError::InvalidSource {
        kind: "oci://",
        value: value.to_string(),
        reason: reason.to_string(),
    };
    if rest.is_empty() {
        return Err(invalid(
            "expected oci://registry/repository@sha256:<digest>",
        ));
    }
    if rest.chars().any(char::is_whitespace) || !rest.contains('/') {
        return Err(invalid(
            "expected oci://registry/repository@sha256:<digest>",
        ));
    }
    if let Some((_, digest)) = rest.split_once('@') {
        let hex = digest.strip_prefix("sha256:").unwrap_or("");
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid(
                "the digest must be sha256: followed by 64 lowercase hex digits",
            ));
        }
    }
    Ok(ContextSource::Oci {
        reference: rest.to_string(),
    })
}

fn parse_http(value: &str) -> Result<ContextSource, ContextError> {
    let url = url::Url::parse(value).map_err(|e| ContextError::InvalidSource {
        kind: "URL",
        value: redact_url(value),
        reason: e.to_string(),
    })?;
    if url.fragment().is_some() {
        return Err(ContextError::InvalidSource {
            kind: "URL",
            value: redact_url(value),
            reason: "a #fragment is only meaningful on a git repository URL ending in .git"
                .to_string(),
        });
    }
    if url.scheme() == "http" {
        let loopback = matches!(
            url.host(),
            Some(url::Host::Domain("localhost"))
                | Some(url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST))
                | Some(url::Host::Ipv6(std::net::Ipv6Addr::LOCALHOST))
        );
        if !loopback {
            return Err(ContextError::InsecureHttp {
                url: redact_url(value),
            });
        }
    }
    Ok(ContextSource::Http {
        url: value.to_string(),
    })
}

/// `user@host:path/repo.git`, git's scp-like ssh syntax.
fn is_scp_like_git(value: &str) -> bool {
    let Some((user_host, path)) = value.split_once(':') else {
        return false;
    };
    let Some((user, host)) = user_host.split_once('@') else {
        return false;
    };
    let word = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    word(user) && word(host) && !path.starts_with('/') && is_git_url(path)
}

/// Whether an http(s) URL names a git repository: its path (before any
/// `#`) ends in `.git`.
fn is_git_url(value: &str) -> bool {
    let before_fragment = value.split('#').next().unwrap_or(value);
    let path = before_fragment.trim_end_matches('/');
    path.ends_with(".git")
}

fn parse_git(url_and_fragment: &str, original: &str) -> Result<GitSource, ContextError> {
    let invalid = |reason: String| ContextError::InvalidSource {
        kind: "git URL",
        value: redact_url(original),
        reason,
    };
    let (url, fragment) = match url_and_fragment.split_once('#') {
        Some((url, fragment)) => (url, Some(fragment)),
        None => (url_and_fragment, None),
    };
    if url.is_empty() {
        return Err(invalid("no repository URL".to_string()));
    }
    if !is_scp_like_git(url) {
        let parsed = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(parsed.scheme(), "https" | "http" | "git" | "ssh") {
            return Err(invalid(format!(
                "unsupported scheme {:?}: use https://, http://, git:// or ssh://",
                parsed.scheme()
            )));
        }
        if parsed.host_str().unwrap_or("").is_empty() {
            return Err(invalid("no host".to_string()));
        }
    }
    let mut source = GitSource {
        url: url.to_string(),
        reference: None,
        commit: None,
        subdir: None,
    };
    let Some(fragment) = fragment else {
        return Ok(source);
    };
    // Docker's `#ref:subdir`, and kaniko's `#ref#commit`.
    let (ref_and_subdir, commit) = match fragment.split_once('#') {
        Some((first, commit)) => (first, Some(commit)),
        None => (fragment, None),
    };
    let (reference, subdir) = match ref_and_subdir.split_once(':') {
        Some((reference, subdir)) => (reference, Some(subdir)),
        None => (ref_and_subdir, None),
    };
    if let Some(commit) = commit {
        if !is_commit_id(commit) {
            return Err(invalid(format!(
                "{commit:?} after the second # must be a commit id (7 to 64 hex digits)"
            )));
        }
        source.commit = Some(commit.to_string());
    }
    if reference
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
        || reference.starts_with('-')
    {
        return Err(invalid(format!(
            "{reference:?} is not a valid git reference"
        )));
    }
    source.reference = (!reference.is_empty()).then(|| reference.to_string());
    if let Some(subdir) = subdir.filter(|s| !s.is_empty()) {
        let cleaned = clean(subdir.trim_start_matches('/'));
        if cleaned == ".." || cleaned.starts_with("../") {
            return Err(invalid(format!(
                "subdirectory {subdir:?} escapes the repository"
            )));
        }
        source.subdir = Some(cleaned);
    }
    Ok(source)
}

/// An abbreviated or full SHA-1 / SHA-256 commit id.
pub(super) fn is_commit_id(value: &str) -> bool {
    (7..=64).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Replaces the user-info of a URL with `***`: tokens travel as user names
/// as often as passwords, so both go.
pub fn redact_url(value: &str) -> String {
    let Some(scheme_end) = value.find("://") else {
        return value.to_string();
    };
    let authority_start = scheme_end + 3;
    let authority_len = value[authority_start..]
        .find(['/', '?', '#'])
        .unwrap_or(value.len() - authority_start);
    let authority = &value[authority_start..authority_start + authority_len];
    match authority.rfind('@') {
        Some(at) => format!(
            "{}***{}",
            &value[..authority_start],
            &value[authority_start + at..]
        ),
        None => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(
        url: &str,
        reference: Option<&str>,
        commit: Option<&str>,
        subdir: Option<&str>,
    ) -> ContextSource {
        ContextSource::Git(GitSource {
            url: url.to_string(),
            reference: reference.map(str::to_string),
            commit: commit.map(str::to_string),
            subdir: subdir.map(str::to_string),
        })
    }

    #[test]
    fn parse_table() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let cases: Vec<(String, Result<ContextSource, String>)> = vec![
            ("/workspace".into(), Ok(ContextSource::Dir { path: "/workspace".into() })),
            (".".into(), Ok(ContextSource::Dir { path: ".".into() })),
            ("dir:///workspace".into(), Ok(ContextSource::Dir { path: "/workspace".into() })),
            ("dir://rel/dir".into(), Ok(ContextSource::Dir { path: "rel/dir".into() })),
            ("tar:///ctx/context.tar.gz".into(), Ok(ContextSource::Tar { path: "/ctx/context.tar.gz".into() })),
            ("ctx.tar".into(), Ok(ContextSource::Tar { path: "ctx.tar".into() })),
            ("/tmp/ctx.TGZ".into(), Ok(ContextSource::Tar { path: "/tmp/ctx.TGZ".into() })),
            ("ctx.tar.gz".into(), Ok(ContextSource::Tar { path: "ctx.tar.gz".into() })),
            (
                "https://example.com/ctx/context.tar.gz".into(),
                Ok(ContextSource::Http { url: "https://example.com/ctx/context.tar.gz".into() }),
            ),
            (
                "http://127.0.0.1:8080/c.tgz".into(),
                Ok(ContextSource::Http { url: "http://127.0.0.1:8080/c.tgz".into() }),
            ),
            (
                "http://localhost/c.tar".into(),
                Ok(ContextSource::Http { url: "http://localhost/c.tar".into() }),
            ),
            (
                "http://[::1]:9/c.tar".into(),
                Ok(ContextSource::Http { url: "http://[::1]:9/c.tar".into() }),
            ),
            ("git://github.com/org/app.git".into(), Ok(git("git://github.com/org/app.git", None, None, None))),
            (
                "git://github.com/org/app.git#refs/heads/main".into(),
                Ok(git("git://github.com/org/app.git", Some("refs/heads/main"), None, None)),
            ),
            (
                format!("git://github.com/org/app.git#refs/heads/main#{sha}"),
                Ok(git("git://github.com/org/app.git", Some("refs/heads/main"), Some(sha), None)),
            ),
            (
                "https://github.com/org/app.git#v1.2:services/api".into(),
                Ok(git("https://github.com/org/app.git", Some("v1.2"), None, Some("services/api"))),
            ),
            (
                "https://github.com/org/app.git#:/docker/".into(),
                Ok(git("https://github.com/org/app.git", None, None, Some("docker"))),
            ),
            ("https://github.com/org/app.git".into(), Ok(git("https://github.com/org/app.git", None, None, None))),
            (
                "git=https://github.com/org/app.git#main".into(),
                Ok(git("https://github.com/org/app.git", Some("main"), None, None)),
            ),
            (
                "git=git://10.0.0.1/r.git".into(),
                Ok(git("git://10.0.0.1/r.git", None, None, None)),
            ),
            (
                "git@github.com:org/app.git#main".into(),
                Ok(git("git@github.com:org/app.git", Some("main"), None, None)),
            ),
            (
                "ssh://git@host/app.git".into(),
                Ok(git("ssh://git@host/app.git", None, None, None)),
            ),
            (
                format!("oci://registry.local:5000/ctx@{digest}"),
                Ok(ContextSource::Oci { reference: format!("registry.local:5000/ctx@{digest}") }),
            ),
            (
                "oci://ghcr.io/org/ctx:latest".into(),
                Ok(ContextSource::Oci { reference: "ghcr.io/org/ctx:latest".into() }),
            ),
            (
                "".into(),
                Err("--context is empty: give a directory, dir://, tar://, git://, https:// or oci:// location".into()),
            ),
            ("dir://".into(), Err("invalid context dir:// \"dir://\": no path given".into())),
            ("tar://".into(), Err("invalid context tar:// \"tar://\": no path given".into())),
            (
                "gs://bucket/ctx.tar.gz".into(),
                Err("unknown build context prefix in \"gs://bucket/ctx.tar.gz\": use a local path or one of dir://, tar://, git://, https://, oci://".into()),
            ),
            (
                "s3://user:secret@bucket/x".into(),
                Err("unknown build context prefix in \"s3://***@bucket/x\": use a local path or one of dir://, tar://, git://, https://, oci://".into()),
            ),
            (
                "http://example.com/ctx.tar.gz".into(),
                Err("refusing plain http context http://example.com/ctx.tar.gz: only https is allowed except for localhost and 127.0.0.1".into()),
            ),
            (
                "https://example.com/ctx.tar.gz#frag".into(),
                Err("invalid context URL \"https://example.com/ctx.tar.gz#frag\": a #fragment is only meaningful on a git repository URL ending in .git".into()),
            ),
            (
                "https://user:pw@/x.tgz".into(),
                Err("invalid context URL \"https://***@/x.tgz\": empty host".into()),
            ),
            (
                "git://host/r.git#main#nothex".into(),
                Err("invalid context git URL \"git://host/r.git#main#nothex\": \"nothex\" after the second # must be a commit id (7 to 64 hex digits)".into()),
            ),
            (
                "git://host/r.git#main:../up".into(),
                Err("invalid context git URL \"git://host/r.git#main:../up\": subdirectory \"../up\" escapes the repository".into()),
            ),
            (
                "git://host/r.git#--upload-pack=evil".into(),
                Err("invalid context git URL \"git://host/r.git#--upload-pack=evil\": \"--upload-pack=evil\" is not a valid git reference".into()),
            ),
            (
                "git=ftp://host/r.git".into(),
                Err("invalid context git URL \"git=ftp://host/r.git\": unsupported scheme \"ftp\": use https://, http://, git:// or ssh://".into()),
            ),
            (
                "git=".into(),
                Err("invalid context git URL \"git=\": no repository URL".into()),
            ),
            (
                "oci://".into(),
                Err("invalid context oci:// \"oci://\": expected oci://registry/repository@sha256:<digest>".into()),
            ),
            (
                "oci://registry/repo@sha256:abc".into(),
                Err("invalid context oci:// \"oci://registry/repo@sha256:abc\": the digest must be sha256: followed by 64 lowercase hex digits".into()),
            ),
        ];
        for (value, expected) in cases {
            let got = ContextSource::parse(&value).map_err(|e| e.to_string());
            assert_eq!(got, expected, "--context={value}");
        }
    }

    #[test]
    fn display_redacts_credentials() {
        let cases: &[(&str, &str)] = &[
            (
                "https://user:tok@host/r.git#main:sub",
                "https://***@host/r.git#main:sub",
            ),
            ("https://tok@host/c.tar.gz", "https://***@host/c.tar.gz"),
            ("git://host/r.git", "git://host/r.git"),
            ("/workspace", "dir:///workspace"),
            ("ctx.tgz", "tar://ctx.tgz"),
        ];
        for &(value, shown) in cases {
            let source = ContextSource::parse(value).unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!(source.to_string(), shown);
            assert!(!format!("{source:?}").contains("tok"), "{source:?}");
        }
        assert_eq!(redact_url("https://a:b@h/p?x=@y"), "https://***@h/p?x=@y");
        assert_eq!(redact_url("no-scheme"), "no-scheme");
    }

    #[test]
    fn kaniko_credentials() {
        let s = |v: &str| Some(v.to_string());
        let cases = [
            ((None, None, None), None),
            ((s("u"), s("p"), None), Some(("u", "p"))),
            ((s("u"), s("p"), s("t")), Some(("t", ""))),
            ((None, s("p"), None), Some(("", "p"))),
            ((s(""), s(""), s("")), None),
        ];
        for ((user, pass, token), expected) in cases {
            let got = GitCredentials::from_values(user, pass, token);
            let got = got
                .as_ref()
                .map(|c| (c.username.as_str(), c.password.as_str()));
            assert_eq!(got, expected);
        }
        let creds = GitCredentials::from_values(s("user"), s("hunter2"), None);
        assert_eq!(format!("{creds:?}"), "Some(GitCredentials { <redacted> })");
    }

    #[test]
    fn sub_paths() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = std::fs::canonicalize(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(root.join("app/src")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(root.join("file"), "").unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink("/", root.join("app/up")).unwrap_or_else(|e| panic!("{e}"));
        let cases: &[(Option<&str>, Result<PathBuf, String>)] = &[
            (None, Ok(root.clone())),
            (Some(""), Ok(root.clone())),
            (Some("app"), Ok(root.join("app"))),
            (Some("./app/src/"), Ok(root.join("app/src"))),
            (Some("/app"), Ok(root.join("app"))),
            (Some("app/../app/src"), Ok(root.join("app/src"))),
            (
                Some("../x"),
                Err("--context-sub-path \"../x\" escapes the build context".into()),
            ),
            (
                Some("app/../../x"),
                Err("--context-sub-path \"app/../../x\" escapes the build context".into()),
            ),
            (
                Some("app/up"),
                Err("--context-sub-path \"app/up\" escapes the build context".into()),
            ),
            (
                Some("missing"),
                Err(format!(
                    "--context-sub-path \"missing\" does not exist in the build context (looked for {})",
                    root.join("missing").display()
                )),
            ),
            (
                Some("file"),
                Err(format!(
                    "--context-sub-path \"file\" does not exist in the build context (looked for {})",
                    root.join("file").display()
                )),
            ),
        ];
        for (sub, expected) in cases {
            let got = apply_sub_path(&root, *sub).map_err(|e| e.to_string());
            assert_eq!(&got, expected, "sub path {sub:?}");
        }
    }
}
