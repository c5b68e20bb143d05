//! Git contexts, by running the `git` binary.
//!
//! The checkout is `git init` + `git fetch --depth 1 origin <ref>` +
//! `git checkout FETCH_HEAD`: one path for branches, tags, `refs/...` names
//! and commit ids. A server that refuses to serve a commit by id gets a
//! full fetch instead. Credentials reach git through `GIT_ASKPASS` and the
//! child's environment, never its arguments, so they cannot show up in
//! `ps` or in the errors we print.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use super::ContextError;
use super::source::{FetchOptions, GitCredentials, GitSource, is_commit_id, redact_url};

/// Answers git's prompts from two environment variables: the script holds
/// no secret itself.
const ASKPASS_SCRIPT: &str = "#!/bin/sh\ncase \"$1\" in\n  Username*) printf '%s\\n' \"$KILN_GIT_USERNAME\" ;;\n  *) printf '%s\\n' \"$KILN_GIT_PASSWORD\" ;;\nesac\n";

/// Checks `source` out into the empty directory `dest`.
pub(super) async fn checkout(
    source: &GitSource,
    options: &FetchOptions,
    dest: &Path,
) -> Result<(), ContextError> {
    // GitSource's fields are public: re-check what parse() already refuses,
    // since a leading `-` would be read by git as an option.
    for value in [&source.reference, &source.commit].into_iter().flatten() {
        if value.starts_with('-') {
            return Err(ContextError::InvalidSource {
                kind: "git URL",
                value: redact_url(&source.url),
                reason: format!("{value:?} is not a valid git reference"),
            });
        }
    }
    let url = effective_url(&source.url, options.git_pull_method.as_deref());
    let is_http = url.starts_with("https://") || url.starts_with("http://");
    let credentials = options.git_credentials.as_ref().filter(|_| is_http);
    // Lives until the end of the checkout; removed on drop.
    let askpass_dir = match credentials {
        Some(_) => Some(write_askpass(options)?),
        None => None,
    };
    let git = GitRunner {
        dest: dest.to_path_buf(),
        url: url.clone(),
        ca_file: options.ca_file.clone(),
        credentials: credentials.cloned(),
        askpass: askpass_dir.as_ref().map(|d| d.path().join("askpass")),
    };

    git.run("init", &["init", "-q"]).await?;
    git.run("remote add", &["remote", "add", "--", "origin", &url])
        .await?;

    let target = match (&source.reference, &source.commit) {
        // kaniko's `#ref#commit`: the commit may be deep in the branch.
        (reference, Some(commit)) => {
            let fetch_ref = reference.as_deref().unwrap_or("HEAD");
            git.run("fetch", &["fetch", "-q", "--", "origin", fetch_ref])
                .await?;
            commit.clone()
        }
        (Some(reference), None) if is_commit_id(reference) => {
            let shallow = git
                .run(
                    "fetch",
                    &["fetch", "-q", "--depth", "1", "--", "origin", reference],
                )
                .await;
            match shallow {
                Ok(()) => "FETCH_HEAD".to_string(),
                Err(_) => {
                    // Servers without allowReachableSHA1InWant refuse a
                    // commit id; all branches and tags contain it if it
                    // exists at all.
                    git.run("fetch", &["fetch", "-q", "--tags", "--", "origin"])
                        .await?;
                    reference.clone()
                }
            }
        }
        (reference, None) => {
            let fetch_ref = reference.as_deref().unwrap_or("HEAD");
            git.run(
                "fetch",
                &["fetch", "-q", "--depth", "1", "--", "origin", fetch_ref],
            )
            .await?;
            "FETCH_HEAD".to_string()
        }
    };
    git.run(
        "checkout",
        &[
            "-c",
            "advice.detachedHead=false",
            "checkout",
            "-q",
            "--detach",
            &target,
        ],
    )
    .await?;

    if !options.keep_git_dir {
        let dot_git = dest.join(".git");
        std::fs::remove_dir_all(&dot_git).map_err(|e| ContextError::io("removing", dot_git, e))?;
    }
    Ok(())
}

/// kaniko fetches `git://` contexts over `GIT_PULL_METHOD` when it is set.
fn effective_url(url: &str, pull_method: Option<&str>) -> String {
    match (url.strip_prefix("git://"), pull_method) {
        (Some(rest), Some(method @ ("https" | "http"))) => format!("{method}://{rest}"),
        _ => url.to_string(),
    }
}

fn write_askpass(options: &FetchOptions) -> Result<tempfile::TempDir, ContextError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = options.temp_dir_named("kiln-git-")?;
    let script = dir.path().join("askpass");
    std::fs::write(&script, ASKPASS_SCRIPT)
        .map_err(|e| ContextError::io("writing", script.clone(), e))?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| ContextError::io("setting permissions of", script.clone(), e))?;
    Ok(dir)
}

struct GitRunner {
    dest: PathBuf,
    url: String,
    ca_file: Option<PathBuf>,
    credentials: Option<GitCredentials>,
    askpass: Option<PathBuf>,
}

impl GitRunner {
    async fn run(&self, operation: &str, args: &[&str]) -> Result<(), ContextError> {
        let mut command = Command::new("git");
        command.arg("-C").arg(&self.dest);
        if let Some(ca) = &self.ca_file {
            command
                .arg("-c")
                .arg(format!("http.sslCAInfo={}", ca.display()));
        }
        command
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let (Some(credentials), Some(askpass)) = (&self.credentials, &self.askpass) {
            command
                .env("GIT_ASKPASS", askpass)
                .env("KILN_GIT_USERNAME", &credentials.username)
                .env("KILN_GIT_PASSWORD", &credentials.password);
        }
        let output = command
            .output()
            .await
            .map_err(|source| ContextError::GitSpawn {
                url: redact_url(&self.url),
                source,
            })?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(ContextError::Git {
            operation: operation.to_string(),
            url: redact_url(&self.url),
            stderr: self.scrub(stderr.trim()),
        })
    }

    /// git rarely echoes credentials, but a URL with user-info or an
    /// unusual remote message might: take them out of anything we print.
    fn scrub(&self, text: &str) -> String {
        let mut scrubbed = text.replace(&self.url, &redact_url(&self.url));
        if let Some(credentials) = &self.credentials {
            for secret in [&credentials.password, &credentials.username] {
                if secret.len() >= 4 {
                    scrubbed = scrubbed.replace(secret.as_str(), "***");
                }
            }
        }
        scrubbed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_method_rewrites_only_git_urls() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("git://github.com/o/r.git", None, "git://github.com/o/r.git"),
            (
                "git://github.com/o/r.git",
                Some("https"),
                "https://github.com/o/r.git",
            ),
            (
                "git://github.com/o/r.git",
                Some("http"),
                "http://github.com/o/r.git",
            ),
            (
                "git://github.com/o/r.git",
                Some("ftp"),
                "git://github.com/o/r.git",
            ),
            ("https://h/r.git", Some("http"), "https://h/r.git"),
        ];
        for &(url, method, expected) in cases {
            assert_eq!(effective_url(url, method), expected, "{url} {method:?}");
        }
    }

    #[test]
    fn scrub_removes_credentials() {
        let runner = GitRunner {
            dest: PathBuf::from("/nonexistent"),
            url: "https://bob:s3cr3t-token@host/r.git".to_string(),
            ca_file: None,
            credentials: Some(GitCredentials {
                username: "bob".to_string(),
                password: "hunter22".to_string(),
            }),
            askpass: None,
        };
        let text = "fatal: could not read from https://bob:s3cr3t-token@host/r.git (hunter22)";
        assert_eq!(
            runner.scrub(text),
            "fatal: could not read from https://***@host/r.git (***)"
        );
    }

    #[tokio::test]
    async fn askpass_answers_from_the_environment() {
        let parent = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let options = FetchOptions {
            temp_parent: Some(parent.path().to_path_buf()),
            ..FetchOptions::default()
        };
        let dir = write_askpass(&options).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(dir.path().parent(), Some(parent.path()));
        let script = dir.path().join("askpass");
        for (prompt, expected) in [
            ("Username for 'https://host': ", "the-user\n"),
            ("Password for 'https://the-user@host': ", "the-pass\n"),
        ] {
            let out = Command::new(&script)
                .arg(prompt)
                .env("KILN_GIT_USERNAME", "the-user")
                .env("KILN_GIT_PASSWORD", "the-pass")
                .output()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
        }
    }
}
