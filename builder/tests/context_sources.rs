//! Fetching contexts from real servers on 127.0.0.1: `git daemon` for git
//! contexts, a Python `http.server` (with TLS from a CA made by `openssl`)
//! for tarballs, and local `tar://` files. The servers are started by each
//! test and killed when it ends. `git`, `openssl` and `python3` are
//! required: a missing tool fails the test rather than skipping it.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kiln_builder::context::{BuildContext, ContextError, ContextSource, FetchOptions};

/// Kills and reaps a server when the test is done with it.
struct Server {
    child: Child,
}

impl Drop for Server {
    /// `git daemon` runs `git-daemon` as a child of its own: it is started
    /// as the leader of a process group (see [`git_server`]) and the whole
    /// group is killed, or the daemon would outlive the test.
    fn drop(&mut self) {
        if let Some(group) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        // A server not started as a group leader has no group of that id.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn require(tool: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "{tool} is required by this test and was not found on PATH"
    );
}

fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "kiln")
        .env("GIT_AUTHOR_EMAIL", "kiln@example.invalid")
        .env("GIT_COMMITTER_NAME", "kiln")
        .env("GIT_COMMITTER_EMAIL", "kiln@example.invalid")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap_or_else(|e| panic!("running {program} {args:?}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel))
        .unwrap_or_else(|e| panic!("{}: {e}", root.join(rel).display()))
}

/// Sorted relative paths of everything under `root`.
fn listing(root: &Path) -> Vec<String> {
    fn visit(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{e}"));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("{e}"));
            let path = entry.path();
            let rel = path.strip_prefix(base).unwrap_or(&path);
            out.push(rel.to_string_lossy().into_owned());
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                visit(base, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    visit(root, root, &mut out);
    out.sort();
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "server on port {port} never came up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn options(temp_parent: &Path) -> FetchOptions {
    FetchOptions {
        temp_parent: Some(temp_parent.to_path_buf()),
        ..FetchOptions::default()
    }
}

async fn fetch(value: &str, sub_path: Option<&str>, opts: &FetchOptions) -> BuildContext {
    let source = ContextSource::parse(value).unwrap_or_else(|e| panic!("{value}: {e}"));
    source
        .fetch_with(sub_path, opts)
        .await
        .unwrap_or_else(|e| panic!("{value}: {e}"))
}

async fn fetch_err(value: &str, sub_path: Option<&str>, opts: &FetchOptions) -> String {
    let source = ContextSource::parse(value).unwrap_or_else(|e| panic!("{value}: {e}"));
    match source.fetch_with(sub_path, opts).await {
        Ok(ctx) => panic!("{value} fetched into {}", ctx.root.display()),
        Err(e) => e.to_string(),
    }
}

/// A repository with two commits on `main` (v1 tagged on the first), a
/// `feature` branch, served by `git daemon`. Returns the server, the port
/// and the two commit ids of `main`.
fn git_server(base: &Path) -> (Server, u16, String, String) {
    require("git");
    let work = base.join("work");
    std::fs::create_dir_all(&work).unwrap_or_else(|e| panic!("{e}"));
    run(&work, "git", &["init", "-q", "-b", "main"]);
    write(&work.join("Dockerfile"), "FROM scratch\nCOPY app /app\n");
    write(&work.join("app/version.txt"), "v1\n");
    write(&work.join("app/nested/deep.txt"), "deep\n");
    run(&work, "git", &["add", "."]);
    run(&work, "git", &["commit", "-q", "-m", "first"]);
    let first = run(&work, "git", &["rev-parse", "HEAD"]);
    run(&work, "git", &["tag", "-a", "v1", "-m", "version 1"]);
    write(&work.join("app/version.txt"), "v2\n");
    run(&work, "git", &["commit", "-q", "-am", "second"]);
    let second = run(&work, "git", &["rev-parse", "HEAD"]);
    run(&work, "git", &["checkout", "-q", "-b", "feature"]);
    write(&work.join("feature.txt"), "feature\n");
    run(&work, "git", &["add", "."]);
    run(&work, "git", &["commit", "-q", "-m", "feature"]);
    run(&work, "git", &["checkout", "-q", "main"]);
    let served = base.join("served");
    std::fs::create_dir_all(&served).unwrap_or_else(|e| panic!("{e}"));
    run(
        base,
        "git",
        &["clone", "-q", "--bare", "work", "served/app.git"],
    );

    let port = free_port();
    let child = Command::new("git")
        .arg("daemon")
        .arg(format!("--base-path={}", served.display()))
        .arg("--export-all")
        .arg("--reuseaddr")
        .arg("--listen=127.0.0.1")
        .arg(format!("--port={port}"))
        .arg(&served)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("starting git daemon: {e}"));
    let server = Server { child };
    wait_for_port(port);
    (server, port, first, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_contexts_from_git_daemon() {
    let base = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (_server, port, first, second) = git_server(base.path());
    let temps = base.path().join("contexts");
    std::fs::create_dir_all(&temps).unwrap_or_else(|e| panic!("{e}"));
    let opts = options(&temps);
    let repo = format!("git://127.0.0.1:{port}/app.git");

    // Default branch, branch, tag, full ref, commit ids, kaniko's ref#commit;
    // each context knows the commit it is (the provenance records it).
    let cases: Vec<(String, &str, &str)> = vec![
        (repo.clone(), "v2\n", &second),
        (format!("{repo}#main"), "v2\n", &second),
        (format!("{repo}#v1"), "v1\n", &first),
        (format!("{repo}#refs/heads/main"), "v2\n", &second),
        (format!("{repo}#refs/tags/v1"), "v1\n", &first),
        (format!("{repo}#{first}"), "v1\n", &first),
        (format!("{repo}#{second}"), "v2\n", &second),
        (format!("{repo}#refs/heads/main#{first}"), "v1\n", &first),
        (
            format!("git=git://127.0.0.1:{port}/app.git#v1"),
            "v1\n",
            &first,
        ),
    ];
    for (value, version, commit) in &cases {
        let ctx = fetch(value, None, &opts).await;
        assert_eq!(read(&ctx.root, "app/version.txt"), *version, "{value}");
        assert_eq!(ctx.revision.as_deref(), Some(*commit), "{value}");
        assert!(!ctx.root.join(".git").exists(), "{value} kept .git");
        assert!(
            ctx.root.starts_with(&temps),
            "{value}: {}",
            ctx.root.display()
        );
    }

    let feature = fetch(&format!("{repo}#feature"), None, &opts).await;
    assert_eq!(
        listing(&feature.root),
        vec![
            "Dockerfile",
            "app",
            "app/nested",
            "app/nested/deep.txt",
            "app/version.txt",
            "feature.txt",
        ]
    );

    // A subdirectory from the fragment, then --context-sub-path inside it.
    let sub = fetch(&format!("{repo}#v1:app"), None, &opts).await;
    assert_eq!(
        listing(&sub.root),
        vec!["nested", "nested/deep.txt", "version.txt"]
    );
    let deeper = fetch(&format!("{repo}#main:app"), Some("nested"), &opts).await;
    assert_eq!(listing(&deeper.root), vec!["deep.txt"]);
    let sub_path_only = fetch(&repo, Some("app/nested"), &opts).await;
    assert_eq!(listing(&sub_path_only.root), vec!["deep.txt"]);

    let keep = FetchOptions {
        keep_git_dir: true,
        ..opts.clone()
    };
    let kept = fetch(&format!("{repo}#main"), None, &keep).await;
    assert!(kept.root.join(".git").is_dir());

    // The temporary directory goes away with the context.
    let root = sub.root.clone();
    drop(sub);
    assert!(!root.exists(), "{} still exists", root.display());

    let missing = fetch_err(&format!("{repo}#no-such-branch"), None, &opts).await;
    assert!(
        missing.starts_with(&format!(
            "git fetch of {repo} failed: The remote didn't have any ref that matched 'no-such-branch'"
        )),
        "{missing}"
    );
    let no_repo = fetch_err(&format!("git://127.0.0.1:{port}/nope.git"), None, &opts).await;
    assert!(
        no_repo.starts_with(&format!(
            "git fetch of git://127.0.0.1:{port}/nope.git failed: Transport handshake failed: An IO error occurred when talking to the server: access denied or repository not exported: /nope.git"
        )),
        "{no_repo}"
    );
    // The HTTP transport (reqwest, blocking, on its own thread) reports a
    // refused connection as an error of the fetch, from inside kiln's
    // runtime.
    let unreachable = fetch_err("https://127.0.0.1:1/app.git#main", None, &opts).await;
    assert!(
        unreachable.starts_with("git fetch of https://127.0.0.1:1/app.git failed: "),
        "{unreachable}"
    );
    let bad_sub = fetch_err(&format!("{repo}#main:missing"), None, &opts).await;
    assert!(
        bad_sub.starts_with("--context-sub-path \"missing\" does not exist in the build context"),
        "{bad_sub}"
    );
    let escape = fetch_err(&repo, Some("../.."), &opts).await;
    assert_eq!(
        escape,
        "--context-sub-path \"../..\" escapes the build context"
    );
    // Failed fetches leave nothing behind.
    let leftovers: Vec<_> = std::fs::read_dir(&temps)
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    // Still alive: feature, deeper, sub_path_only, kept.
    assert_eq!(leftovers.len(), 4, "{leftovers:?}");
}

/// A CA, and a certificate for 127.0.0.1 and localhost signed by it.
/// Returns (ca.pem, server.pem, server.key).
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    require("openssl");
    let ca_key = dir.join("ca.key");
    let ca = dir.join("ca.pem");
    let key = dir.join("server.key");
    let csr = dir.join("server.csr");
    let cert = dir.join("server.pem");
    let ext = dir.join("server.ext");
    write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    );
    let s = |p: &PathBuf| p.to_string_lossy().into_owned();
    run(
        dir,
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=kiln test CA",
            "-keyout",
            &s(&ca_key),
            "-out",
            &s(&ca),
        ],
    );
    run(
        dir,
        "openssl",
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &s(&key),
            "-out",
            &s(&csr),
        ],
    );
    run(
        dir,
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            &s(&csr),
            "-CA",
            &s(&ca),
            "-CAkey",
            &s(&ca_key),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &s(&ext),
            "-out",
            &s(&cert),
        ],
    );
    (ca, cert, key)
}

/// Serves `dir` with the fixture script; TLS when given a certificate.
fn http_server(dir: &Path, tls: Option<(&Path, &Path)>) -> (Server, u16) {
    require("python3");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/context/serve.py");
    let mut command = Command::new("python3");
    command.arg(&script).arg(dir);
    if let Some((cert, key)) = tls {
        command.arg(cert).arg(key);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting python3: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let server = Server { child };
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("reading the server's port: {e}"));
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("server printed {line:?}: {e}"));
    wait_for_port(port);
    (server, port)
}

/// A context tarball: `Dockerfile`, `src/main.rs`, an executable script.
fn context_tar(gzip: bool) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |name: &str, mode: u32, body: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_mode(mode);
        header.set_size(body.len() as u64);
        header.set_mtime(1_700_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, name, body)
            .unwrap_or_else(|e| panic!("{e}"));
    };
    add("Dockerfile", 0o644, b"FROM scratch\n");
    add("src/main.rs", 0o644, b"fn main() {}\n");
    add("bin/run.sh", 0o755, b"#!/bin/sh\n");
    let bytes = builder.into_inner().unwrap_or_else(|e| panic!("{e}"));
    if !gzip {
        return bytes;
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&bytes).unwrap_or_else(|e| panic!("{e}"));
    gz.finish().unwrap_or_else(|e| panic!("{e}"))
}

const TAR_LISTING: [&str; 5] = ["Dockerfile", "bin", "bin/run.sh", "src", "src/main.rs"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_tarball_with_a_custom_ca() {
    let base = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (ca, cert, key) = make_certificates(base.path());
    let site = base.path().join("site");
    std::fs::create_dir_all(&site).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(site.join("ctx.tar.gz"), context_tar(true)).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(site.join("plain.tar"), context_tar(false)).unwrap_or_else(|e| panic!("{e}"));
    let (_server, port) = http_server(&site, Some((&cert, &key)));
    let temps = base.path().join("contexts");
    std::fs::create_dir_all(&temps).unwrap_or_else(|e| panic!("{e}"));
    let trusting = FetchOptions {
        ca_file: Some(ca.clone()),
        ..options(&temps)
    };

    for name in ["ctx.tar.gz", "plain.tar"] {
        let ctx = fetch(&format!("https://127.0.0.1:{port}/{name}"), None, &trusting).await;
        assert_eq!(listing(&ctx.root), TAR_LISTING, "{name}");
        assert_eq!(read(&ctx.root, "src/main.rs"), "fn main() {}\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(ctx.root.join("bin/run.sh"))
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or_default();
        assert_eq!(mode, 0o755, "{name}");
    }
    let sub = fetch(
        &format!("https://localhost:{port}/ctx.tar.gz"),
        Some("src"),
        &trusting,
    )
    .await;
    assert_eq!(listing(&sub.root), vec!["main.rs"]);

    let missing = fetch_err(
        &format!("https://127.0.0.1:{port}/missing.tar.gz"),
        None,
        &trusting,
    )
    .await;
    assert_eq!(
        missing,
        format!("downloading context https://127.0.0.1:{port}/missing.tar.gz: HTTP status 404")
    );

    // Without the CA the server is not trusted.
    let untrusted = fetch_err(
        &format!("https://127.0.0.1:{port}/ctx.tar.gz"),
        None,
        &options(&temps),
    )
    .await;
    assert!(
        untrusted.starts_with(&format!(
            "downloading context https://127.0.0.1:{port}/ctx.tar.gz: "
        )),
        "{untrusted}"
    );
    assert!(untrusted.contains("certificate"), "{untrusted}");

    // Credentials in the URL never reach an error message.
    let secret = fetch_err(
        &format!("https://user:hunter22@127.0.0.1:{port}/gone.tgz"),
        None,
        &trusting,
    )
    .await;
    assert_eq!(
        secret,
        format!("downloading context https://***@127.0.0.1:{port}/gone.tgz: HTTP status 404")
    );

    let leftovers = std::fs::read_dir(&temps)
        .map(|d| d.count())
        .unwrap_or(usize::MAX);
    assert_eq!(leftovers, 1, "only `sub` may remain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_tarball_on_loopback() {
    let base = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let site = base.path().join("site");
    std::fs::create_dir_all(&site).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(site.join("ctx.tgz"), context_tar(true)).unwrap_or_else(|e| panic!("{e}"));
    let (_server, port) = http_server(&site, None);
    let ctx = fetch(
        &format!("http://127.0.0.1:{port}/ctx.tgz"),
        None,
        &options(base.path()),
    )
    .await;
    assert_eq!(listing(&ctx.root), TAR_LISTING);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_tar_files() {
    let base = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let plain = base.path().join("context.tar");
    let gz = base.path().join("context.tar.gz");
    std::fs::write(&plain, context_tar(false)).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&gz, context_tar(true)).unwrap_or_else(|e| panic!("{e}"));
    let opts = options(base.path());
    let values = [
        format!("tar://{}", plain.display()),
        format!("tar://{}", gz.display()),
        plain.display().to_string(),
        gz.display().to_string(),
    ];
    for value in &values {
        let ctx = fetch(value, None, &opts).await;
        assert_eq!(listing(&ctx.root), TAR_LISTING, "{value}");
    }
    let sub = fetch(&values[1], Some("bin"), &opts).await;
    assert_eq!(listing(&sub.root), vec!["run.sh"]);

    let missing = fetch_err("tar:///nonexistent/ctx.tar", None, &opts).await;
    assert_eq!(
        missing,
        "opening /nonexistent/ctx.tar: No such file or directory (os error 2)"
    );

    // The OCI form unpacks a blob the integrator pulled.
    let from_blob = BuildContext::from_archive(&context_tar(true)[..], Some("src"), &opts)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(listing(&from_blob.root), vec!["main.rs"]);
    let oci =
        ContextSource::parse("oci://127.0.0.1:5000/ctx:latest").unwrap_or_else(|e| panic!("{e}"));
    match oci.fetch_with(None, &opts).await {
        Err(ContextError::OciNotFetchedHere { reference }) => {
            assert_eq!(reference, "127.0.0.1:5000/ctx:latest");
        }
        other => panic!("oci:// fetched: {other:?}"),
    }
}

#[tokio::test]
async fn local_directories() {
    let base = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write(&base.path().join("ctx/sub/file"), "x");
    let opts = options(base.path());
    let ctx_dir = base.path().join("ctx");
    let real = std::fs::canonicalize(&ctx_dir).unwrap_or_else(|e| panic!("{e}"));
    let plain = fetch(&ctx_dir.display().to_string(), None, &opts).await;
    assert_eq!(plain.root, real);
    let with_prefix = fetch(&format!("dir://{}", ctx_dir.display()), Some("sub"), &opts).await;
    assert_eq!(with_prefix.root, real.join("sub"));
    // A directory context is used in place and never deleted.
    drop(with_prefix);
    assert!(real.join("sub/file").exists());
    let missing = fetch_err("dir:///nonexistent/ctx", None, &opts).await;
    assert_eq!(
        missing,
        "context directory /nonexistent/ctx does not exist or is not a directory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_context_knows_the_commit_of_the_repository_it_is_in() {
    require("git");
    let base = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let work = base.path().join("work");
    std::fs::create_dir_all(work.join("app")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(work.join("app/Dockerfile"), "FROM scratch\n").unwrap_or_else(|e| panic!("{e}"));
    let opts = options(base.path());
    let dir = format!("dir://{}", work.join("app").display());

    // Not a repository yet: no commit (unless the temporary directory is
    // itself inside a repository on this machine, whose HEAD it then is).
    let enclosing = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(&work)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    assert_eq!(fetch(&dir, None, &opts).await.revision, enclosing);

    run(&work, "git", &["init", "-q", "-b", "main"]);
    // A repository without commits has no HEAD commit either.
    assert_eq!(fetch(&dir, None, &opts).await.revision, None);
    run(&work, "git", &["add", "."]);
    run(&work, "git", &["commit", "-q", "-m", "first"]);
    let head = run(&work, "git", &["rev-parse", "HEAD"]);
    // The context is a sub-directory of the repository; discovery goes up.
    assert_eq!(
        fetch(&dir, None, &opts).await.revision.as_deref(),
        Some(head.as_str())
    );
}
