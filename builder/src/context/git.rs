//! Git contexts, fetched in-process with gix: the builder image is
//! `FROM scratch` and has no `git` binary, and kiln never runs one.
//!
//! A ref (branch, tag, `refs/...` name) or the remote's HEAD is fetched
//! shallow (depth 1) and checked out; a commit id is fetched by id, shallow,
//! and where the server refuses that (no `allowReachableSHA1InWant`), every
//! branch and tag is fetched and the commit checked out from them; kaniko's
//! `#ref#commit` fetches the ref's whole history. Everything git writes is
//! inside the context directory (`dest/.git`), itself under kiln's work
//! root; no git configuration of the machine or the user is read
//! (`gix::open::Options::isolated`), so neither `$HOME` nor `/etc` is
//! touched. Credentials reach the transport from memory, never a file or
//! an argument.
//!
//! A hostile server is bounded: what the fetch writes ([`MAX_FETCH_BYTES`]),
//! the checked-out tree ([`MAX_CHECKOUT_BYTES`], [`MAX_CHECKOUT_ENTRIES`],
//! measured from the object headers before anything is written) and the
//! time ([`FETCH_TIMEOUT`]).

use crate::registry::error_chain;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gix::bstr::BStr;
use gix::objs::tree::EntryRef;
use gix::traverse::tree::{Visit, visit::Action};

use super::ContextError;
use super::source::{FetchOptions, GitCredentials, GitSource, is_commit_id, redact_url};

/// The most the fetch may write under `.git` (the pack and its index).
pub const MAX_FETCH_BYTES: u64 = 2 << 30;
/// The most the checked-out files may add up to.
pub const MAX_CHECKOUT_BYTES: u64 = 4 << 30;
/// The most entries (files, links, directories) the checkout may have.
pub const MAX_CHECKOUT_ENTRIES: u64 = 1_000_000;
/// How long a fetch and checkout may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How often the size of `.git` is measured during a fetch.
const WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// Checks `source` out into the empty directory `dest`, and returns the
/// id (hex) of the commit checked out: what the provenance records.
pub(super) async fn checkout(
    source: &GitSource,
    options: &FetchOptions,
    dest: &Path,
) -> Result<String, ContextError> {
    // GitSource's fields are public: re-check what parse() already refuses.
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
    let fetch = Fetch {
        credentials: options.git_credentials.clone().filter(|_| is_http),
        ca_file: options.ca_file.clone().filter(|_| is_http),
        is_http,
        url,
        reference: source.reference.clone(),
        commit: source.commit.clone(),
        dest: dest.to_path_buf(),
        limits: Limits::default(),
    };
    let interrupt = Arc::new(AtomicBool::new(false));
    let url = fetch.url.clone();
    let worker = {
        let interrupt = Arc::clone(&interrupt);
        tokio::task::spawn_blocking(move || fetch.run(&interrupt))
    };
    let result = match tokio::time::timeout(FETCH_TIMEOUT, worker).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(format!("the fetch stopped: {join}")),
        Err(_) => {
            // gix checks the flag between reads and between files.
            interrupt.store(true, Ordering::SeqCst);
            Err(format!(
                "no result after {} minutes",
                FETCH_TIMEOUT.as_secs() / 60
            ))
        }
    };
    let commit = result.map_err(|message| ContextError::Git {
        operation: "fetch".to_string(),
        url: redact_url(&url),
        stderr: message,
    })?;
    if !options.keep_git_dir {
        let dot_git = dest.join(".git");
        std::fs::remove_dir_all(&dot_git).map_err(|e| ContextError::io("removing", dot_git, e))?;
    }
    Ok(commit)
}

/// kaniko fetches `git://` contexts over `GIT_PULL_METHOD` when it is set.
fn effective_url(url: &str, pull_method: Option<&str>) -> String {
    match (url.strip_prefix("git://"), pull_method) {
        (Some(rest), Some(method @ ("https" | "http"))) => format!("{method}://{rest}"),
        _ => url.to_string(),
    }
}

/// The bounds of one fetch (tests lower them).
#[derive(Clone, Copy, Debug)]
struct Limits {
    fetch_bytes: u64,
    checkout_bytes: u64,
    checkout_entries: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            fetch_bytes: MAX_FETCH_BYTES,
            checkout_bytes: MAX_CHECKOUT_BYTES,
            checkout_entries: MAX_CHECKOUT_ENTRIES,
        }
    }
}

/// What to ask the remote for.
enum Want<'a> {
    /// The remote's HEAD.
    Head,
    /// A branch, tag or `refs/...` name.
    Ref(&'a str),
    /// A commit id.
    Commit(&'a str),
}

struct Fetch {
    url: String,
    is_http: bool,
    reference: Option<String>,
    commit: Option<String>,
    dest: PathBuf,
    ca_file: Option<PathBuf>,
    credentials: Option<GitCredentials>,
    limits: Limits,
}

impl Fetch {
    /// Fetches and checks out, and returns the commit checked out; errors
    /// are messages for [`ContextError::Git`].
    fn run(&self, interrupt: &Arc<AtomicBool>) -> Result<String, String> {
        fn want(reference: &Option<String>) -> Want<'_> {
            match reference.as_deref() {
                None => Want::Head,
                Some(reference) => Want::Ref(reference),
            }
        }
        let result = match (&self.reference, &self.commit) {
            // kaniko's `#ref#commit`: the commit may be deep in the branch.
            (reference, Some(commit)) => {
                self.clone(want(reference), false, Some(commit), interrupt)
            }
            (Some(reference), None) if is_commit_id(reference) => {
                match self.clone(Want::Commit(reference), true, None, interrupt) {
                    Ok(commit) => Ok(commit),
                    // Servers without allowReachableSHA1InWant refuse a
                    // commit id; all branches and tags contain it if it
                    // exists at all.
                    Err(_) if !interrupt.load(Ordering::SeqCst) => {
                        self.empty_dest()?;
                        self.clone(Want::Head, false, Some(reference), interrupt)
                    }
                    Err(error) => Err(error),
                }
            }
            (reference, None) => self.clone(want(reference), true, None, interrupt),
        };
        result.map_err(|message| self.scrub(&message))
    }

    /// One clone into `dest`: `want`, depth 1 if `shallow`, then HEAD
    /// detached at `detach` if given, then the checkout. Returns HEAD's
    /// commit id.
    fn clone(
        &self,
        want: Want<'_>,
        shallow: bool,
        detach: Option<&str>,
        interrupt: &Arc<AtomicBool>,
    ) -> Result<String, String> {
        let mut prepare = gix::clone::PrepareFetch::new(
            self.url.as_str(),
            &self.dest,
            gix::create::Kind::WithWorktree,
            gix::create::Options::default(),
            gix::open::Options::isolated(),
        )
        .map_err(|e| error_chain(&e))?;
        if shallow {
            prepare =
                prepare.with_shallow(gix::remote::fetch::Shallow::DepthAtRemote(NonZeroU32::MIN));
        }
        prepare = match want {
            Want::Head => prepare,
            Want::Ref(name) => prepare.with_ref_name(Some(name)).map_err(|e| {
                format!("{name:?} is not a valid git reference: {}", error_chain(&e))
            })?,
            Want::Commit(id) => prepare
                .with_revision(Some(id))
                .map_err(|e| format!("{id:?} is not a valid commit id: {}", error_chain(&e)))?,
        };
        if self.is_http {
            let credentials = self.credentials.clone();
            let ca_file = self.ca_file.clone();
            prepare = prepare.configure_connection(move |connection| {
                if let Some(credentials) = credentials.clone() {
                    connection.set_credentials(move |action| Ok(answer(&credentials, action)));
                }
                connection.set_transport_options(Box::new(http_options(ca_file.clone())));
                Ok(())
            });
        }

        let fetched = {
            let watch =
                SizeWatch::start(self.dest.join(".git"), self.limits.fetch_bytes, interrupt);
            let result = prepare.fetch_then_checkout(gix::progress::Discard, interrupt);
            match (result, watch.exceeded()) {
                (_, true) => {
                    return Err(format!(
                        "the repository is larger than {} bytes; kiln stopped the fetch",
                        self.limits.fetch_bytes
                    ));
                }
                (result, false) => result.map_err(|e| error_chain(&e))?,
            }
        };
        let (mut checkout, _outcome) = fetched;
        if let Some(commit) = detach {
            detach_head(checkout.repo(), commit)?;
        }
        check_tree(checkout.repo(), self.limits)?;
        let commit = checkout
            .repo()
            .head_id()
            .map_err(|e| format!("reading HEAD: {}", error_chain(&e)))?
            .detach()
            .to_hex()
            .to_string();
        checkout
            .main_worktree(gix::progress::Discard, interrupt)
            .map_err(|e| error_chain(&e))?;
        Ok(commit)
    }

    /// An empty `dest` again after a failed attempt (gix removes what it
    /// created, `dest` included).
    fn empty_dest(&self) -> Result<(), String> {
        match std::fs::remove_dir_all(&self.dest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("emptying {}: {e}", self.dest.display())),
        }
        std::fs::create_dir(&self.dest)
            .map_err(|e| format!("creating {}: {e}", self.dest.display()))
    }

    /// gix rarely echoes credentials, but a URL with user-info or an
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

/// Answers the transport's credential requests with `credentials`.
fn answer(
    credentials: &GitCredentials,
    action: gix::credentials::helper::Action,
) -> Option<gix::credentials::protocol::Outcome> {
    match action {
        gix::credentials::helper::Action::Get(context) => {
            Some(gix::credentials::protocol::Outcome {
                credentials: gix::sec::identity::Credentials::UsernamePassword {
                    username: credentials.username.clone(),
                    password: credentials.password.clone(),
                    oauth_refresh_token: None,
                },
                next: context.into(),
            })
        }
        // Nothing is stored: the credentials live in memory only.
        gix::credentials::helper::Action::Store(_) | gix::credentials::helper::Action::Erase(_) => {
            None
        }
    }
}

/// HTTP transport options: the process's rustls (ring) with the extra CA
/// of `SSL_CERT_FILE`.
fn http_options(
    ca_file: Option<PathBuf>,
) -> gix::protocol::transport::client::blocking_io::http::Options {
    let configure_client = move |mut builder: reqwest::blocking::ClientBuilder| {
        if let Some(path) = &ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| gix::error::message!("reading CA file {}: {e}", path.display()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| gix::error::message!("CA file {}: {e}", path.display()))?;
            builder = builder.tls_certs_merge(certificates);
        }
        Ok(builder.user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION"))))
    };
    let backend = gix::protocol::transport::client::blocking_io::http::reqwest::Options {
        configure_client: Some(Box::new(configure_client)),
        configure_request: None,
    };
    gix::protocol::transport::client::blocking_io::http::Options {
        backend: Some(Arc::new(std::sync::Mutex::new(backend))),
        ..Default::default()
    }
}

/// The HEAD commit (hex) of the git repository `dir` is in, if any: a
/// local context's revision for the provenance. Read with no git
/// configuration of the machine or the user (`isolated`), like the fetch;
/// a directory in no repository, or a repository without commits, has none.
pub(super) fn head_of_repository_around(dir: &Path) -> Option<String> {
    let repo = gix::discover_opts(dir, Default::default(), gix::open::Options::isolated()).ok()?;
    let id = repo.head_id().ok()?;
    Some(id.detach().to_hex().to_string())
}

/// Points HEAD at `commit` (detached), which must have been fetched.
fn detach_head(repo: &gix::Repository, commit: &str) -> Result<(), String> {
    use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit};
    let id = gix::ObjectId::from_hex(commit.as_bytes())
        .map_err(|e| format!("{commit:?} is not a commit id: {e}"))?;
    match repo.find_object(id) {
        Ok(object) if object.kind == gix::objs::Kind::Commit => {}
        _ => return Err(format!("commit {commit} is not in the fetched history")),
    }
    repo.edit_reference(RefEdit {
        change: Change::Update {
            log: LogChange::default(),
            expected: PreviousValue::Any,
            new: gix::refs::Target::Object(id),
        },
        name: "HEAD".try_into().map_err(|e| format!("HEAD: {e}"))?,
        deref: false,
    })
    .map_err(|e| format!("checking out {commit}: {}", error_chain(&e)))?;
    Ok(())
}

/// Refuses a HEAD tree past the checkout limits, from object headers only
/// (nothing is decompressed or written).
fn check_tree(repo: &gix::Repository, limits: Limits) -> Result<(), String> {
    let tree = repo
        .head_commit()
        .and_then(|commit| commit.tree())
        .map_err(|e| format!("reading the checked-out tree: {}", error_chain(&e)))?;
    let mut counter = TreeSize {
        repo,
        limits,
        bytes: 0,
        entries: 0,
        error: None,
    };
    let walked = tree.traverse().breadthfirst(&mut counter);
    if let Some(error) = counter.error {
        return Err(error);
    }
    walked.map_err(|e| format!("reading the checked-out tree: {}", error_chain(&e)))
}

/// Adds up the entries and blob sizes of a tree, stopping at the limits.
struct TreeSize<'a> {
    repo: &'a gix::Repository,
    limits: Limits,
    bytes: u64,
    entries: u64,
    error: Option<String>,
}

impl TreeSize<'_> {
    fn count(&mut self, entry: &EntryRef<'_>) -> Action {
        self.entries += 1;
        if self.entries > self.limits.checkout_entries {
            self.error = Some(format!(
                "the checkout has more than {} files and directories",
                self.limits.checkout_entries
            ));
            return Action::Break(());
        }
        if entry.mode.is_blob_or_symlink() {
            match self.repo.find_header(entry.oid) {
                Ok(header) => self.bytes = self.bytes.saturating_add(header.size()),
                Err(e) => {
                    self.error = Some(format!("reading object {}: {}", entry.oid, error_chain(&e)));
                    return Action::Break(());
                }
            }
            if self.bytes > self.limits.checkout_bytes {
                self.error = Some(format!(
                    "the checkout is larger than {} bytes",
                    self.limits.checkout_bytes
                ));
                return Action::Break(());
            }
        }
        Action::Continue(true)
    }
}

impl Visit for TreeSize<'_> {
    fn pop_back_tracked_path_and_set_current(&mut self) {}
    fn pop_front_tracked_path_and_set_current(&mut self) {}
    fn push_back_tracked_path_component(&mut self, _component: &BStr) {}
    fn push_path_component(&mut self, _component: &BStr) {}
    fn pop_path_component(&mut self) {}

    fn visit_tree(&mut self, entry: &EntryRef<'_>) -> Action {
        self.count(entry)
    }

    fn visit_nontree(&mut self, entry: &EntryRef<'_>) -> Action {
        // Submodules (commit entries) are not fetched: one empty directory.
        self.count(entry)
    }
}

/// Measures a directory every [`WATCH_INTERVAL`] while a fetch writes into
/// it and raises the interrupt flag past `limit` bytes. Stops when dropped.
struct SizeWatch {
    stop: Arc<AtomicBool>,
    exceeded: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SizeWatch {
    fn start(dir: PathBuf, limit: u64, interrupt: &Arc<AtomicBool>) -> SizeWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let exceeded = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, exceeded) = (Arc::clone(&stop), Arc::clone(&exceeded));
            let interrupt = Arc::clone(interrupt);
            std::thread::Builder::new()
                .name("kiln-git-watch".to_string())
                .spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        if tree_bytes(&dir) > limit {
                            exceeded.store(true, Ordering::SeqCst);
                            interrupt.store(true, Ordering::SeqCst);
                            return;
                        }
                        std::thread::sleep(WATCH_INTERVAL);
                    }
                })
                .ok()
        };
        SizeWatch {
            stop,
            exceeded,
            thread,
        }
    }

    fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::SeqCst)
    }
}

impl Drop for SizeWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The bytes of the regular files under `dir` (symbolic links not followed).
fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(entry.path()),
                Ok(kind) if kind.is_file() => {
                    total = total.saturating_add(entry.metadata().map(|m| m.len()).unwrap_or(0));
                }
                _ => {}
            }
        }
    }
    total
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

    fn fetch_of(url: &str, dest: &Path) -> Fetch {
        Fetch {
            url: url.to_string(),
            is_http: true,
            reference: None,
            commit: None,
            dest: dest.to_path_buf(),
            ca_file: None,
            credentials: Some(GitCredentials {
                username: "bob".to_string(),
                password: "hunter22".to_string(),
            }),
            limits: Limits::default(),
        }
    }

    #[test]
    fn scrub_removes_credentials() {
        let fetch = fetch_of(
            "https://bob:s3cr3t-token@host/r.git",
            Path::new("/nonexistent"),
        );
        let text = "could not read from https://bob:s3cr3t-token@host/r.git (hunter22)";
        assert_eq!(
            fetch.scrub(text),
            "could not read from https://***@host/r.git (***)"
        );
    }

    #[test]
    fn credentials_are_answered_from_memory_and_never_stored() {
        let credentials = GitCredentials {
            username: "the-user".to_string(),
            password: "the-pass".to_string(),
        };
        let action = gix::credentials::helper::Action::get_for_url("https://host/r.git");
        let outcome = answer(&credentials, action).unwrap_or_else(|| panic!("no answer"));
        assert_eq!(
            outcome.credentials,
            gix::sec::identity::Credentials::UsernamePassword {
                username: "the-user".to_string(),
                password: "the-pass".to_string(),
                oauth_refresh_token: None,
            }
        );
        assert!(answer(&credentials, outcome.next.store()).is_none());
    }

    /// A repository made with the host's git (test set-up only): three
    /// files of 10, 20 and 30 bytes in two directories.
    fn small_repo(dir: &Path) -> gix::Repository {
        let git = |args: &[&str]| {
            let status = std::process::Command::new("git")
                .args(args)
                .current_dir(dir)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_AUTHOR_NAME", "kiln")
                .env("GIT_AUTHOR_EMAIL", "kiln@example.invalid")
                .env("GIT_COMMITTER_NAME", "kiln")
                .env("GIT_COMMITTER_EMAIL", "kiln@example.invalid")
                .status()
                .unwrap_or_else(|e| panic!("git: {e}"));
            assert!(status.success(), "git {args:?}");
        };
        std::fs::create_dir_all(dir.join("a/b")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("ten"), [b'x'; 10]).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("a/twenty"), [b'y'; 20]).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("a/b/thirty"), [b'z'; 30]).unwrap_or_else(|e| panic!("{e}"));
        git(&["init", "-q"]);
        git(&["add", "."]);
        git(&["commit", "-q", "-m", "one"]);
        gix::open_opts(dir, gix::open::Options::isolated()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_tree_is_measured_before_the_checkout() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let repo = small_repo(dir.path());
        // 5 entries (ten, a, a/twenty, a/b, a/b/thirty), 60 bytes.
        let limits = |checkout_bytes, checkout_entries| Limits {
            fetch_bytes: 0,
            checkout_bytes,
            checkout_entries,
        };
        assert_eq!(check_tree(&repo, limits(60, 5)), Ok(()));
        assert_eq!(
            check_tree(&repo, limits(59, 5)),
            Err("the checkout is larger than 59 bytes".to_string())
        );
        assert_eq!(
            check_tree(&repo, limits(60, 4)),
            Err("the checkout has more than 4 files and directories".to_string())
        );
    }

    #[test]
    fn the_size_watch_interrupts_past_its_limit() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir(dir.path().join("pack")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("pack/one"), [0u8; 600]).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("two"), [0u8; 400]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tree_bytes(dir.path()), 1000);

        let interrupt = Arc::new(AtomicBool::new(false));
        let within = SizeWatch::start(dir.path().to_path_buf(), 1000, &interrupt);
        std::thread::sleep(WATCH_INTERVAL * 3);
        assert!(!within.exceeded());
        drop(within);
        assert!(!interrupt.load(Ordering::SeqCst));

        let past = SizeWatch::start(dir.path().to_path_buf(), 999, &interrupt);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !past.exceeded() && std::time::Instant::now() < deadline {
            std::thread::sleep(WATCH_INTERVAL);
        }
        assert!(past.exceeded());
        assert!(interrupt.load(Ordering::SeqCst));
    }
}
