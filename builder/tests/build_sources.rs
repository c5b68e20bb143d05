//! `kiln` end to end for what a Dockerfile can bring into an image besides
//! plain COPY: contexts that are not a directory (`tar://`, `oci://`,
//! `git://`), ADD of archives and URLs, ONBUILD triggers of a base image,
//! hard links and symlinks, zstd layers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use support::TestRegistry;
use support::fixtures;
use support::kiln::{assert_success, files, kiln, kiln_with_env, skopeo, write_tree};

fn tar_gz(files: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, path, content.as_bytes())
            .unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process killed when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    /// `git daemon` runs `git-daemon` as a child of its own: it is started
    /// as the leader of a process group and the whole group is killed, or
    /// the daemon would outlive the test.
    fn drop(&mut self) {
        if let Some(group) = rustix::process::Pid::from_raw(self.0.id() as i32) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        // A server not started as a group leader has no group of that id.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("nothing listens on 127.0.0.1:{port}");
}

#[tokio::test(flavor = "multi_thread")]
async fn add_unpacks_archives_and_downloads_urls() {
    let registry = TestRegistry::start();
    let ctx = tempfile::tempdir().unwrap();
    let served = tempfile::tempdir().unwrap();
    std::fs::write(served.path().join("tool.txt"), "downloaded\n").unwrap();
    let port = free_port();
    let _http = Server(
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(served.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 is installed"),
    );
    wait_for_port(port);
    let checksum = fixtures::sha256_digest(b"downloaded\n");

    std::fs::write(
        ctx.path().join("bundle.tar.gz"),
        tar_gz(&[("inner/a.txt", "from gz")]),
    )
    .unwrap();
    let plain = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(8);
        h.set_mode(0o600);
        h.set_cksum();
        b.append_data(&mut h, "b.txt", &b"from tar"[..]).unwrap();
        b.into_inner().unwrap()
    };
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    bz.write_all(&plain).unwrap();
    std::fs::write(ctx.path().join("b.tar.bz2"), bz.finish().unwrap()).unwrap();
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
    xz.write_all(&plain).unwrap();
    std::fs::write(ctx.path().join("c.tar.xz"), xz.finish().unwrap()).unwrap();
    std::fs::write(
        ctx.path().join("d.tar.zst"),
        zstd::encode_all(&plain[..], 3).unwrap(),
    )
    .unwrap();
    // A gzip file that is not a tar is copied as it is.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"just text").unwrap();
    std::fs::write(ctx.path().join("notes.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM scratch\n\
             ADD bundle.tar.gz /gz/\n\
             ADD b.tar.bz2 /bz2\n\
             ADD c.tar.xz /xz/\n\
             ADD d.tar.zst /zst/\n\
             ADD notes.gz /notes/\n\
             ADD --checksum={checksum} http://127.0.0.1:{port}/tool.txt /opt/\n"
        ),
    )
    .unwrap();
    let image = format!("{}/add:latest", registry.host());
    assert_success(
        &kiln(&[
            format!("--context=dir://{}", ctx.path().display()),
            format!("--destination={image}"),
        ])
        .await,
    );
    let files = files(&image);
    assert_eq!(files["gz/inner/a.txt"].2, "from gz");
    assert_eq!(files["bz2/b.txt"].2, "from tar");
    assert_eq!(files["xz/b.txt"].2, "from tar");
    assert_eq!(files["zst/b.txt"].2, "from tar");
    assert_eq!(files["notes/notes.gz"].0, 'f');
    assert_eq!(
        files["opt/tool.txt"],
        ('f', 0o600, "downloaded\n".to_string())
    );

    // A wrong checksum fails the build and names both digests.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM scratch\nADD --checksum=sha256:{} http://127.0.0.1:{port}/tool.txt /opt/\n",
            "0".repeat(64)
        ),
    )
    .unwrap();
    let output = kiln(&[
        format!("--context=dir://{}", ctx.path().display()),
        "--no-push".to_string(),
    ])
    .await;
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("checksum mismatch") && message.contains(&checksum),
        "{message}"
    );
}

/// ADD of a local archive keeps the owners the entries have in the archive
/// (set-user-ID bits included), as Docker and buildah do; `--chown` wins.
#[tokio::test(flavor = "multi_thread")]
async fn add_keeps_an_archives_owners() {
    let registry = TestRegistry::start();
    let mut builder = tar::Builder::new(Vec::new());
    let mut append =
        |path: &str, kind: tar::EntryType, mode: u32, owner: (u64, u64), data: &str| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_size(if kind == tar::EntryType::Regular {
                data.len() as u64
            } else {
                0
            });
            header.set_mode(mode);
            header.set_uid(owner.0);
            header.set_gid(owner.1);
            if kind == tar::EntryType::Symlink {
                header.set_link_name(data).unwrap();
            }
            header.set_cksum();
            let content: &[u8] = if kind == tar::EntryType::Regular {
                data.as_bytes()
            } else {
                &[]
            };
            builder.append_data(&mut header, path, content).unwrap();
        };
    append("owned/", tar::EntryType::Directory, 0o750, (1000, 1000), "");
    append(
        "owned/tool",
        tar::EntryType::Regular,
        0o4755,
        (33, 44),
        "#!/bin/sh\n",
    );
    append("owned/link", tar::EntryType::Symlink, 0o777, (5, 6), "tool");
    let archive = builder.into_inner().unwrap();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("owned.tar"), archive).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nADD owned.tar /x/\nADD --chown=7:8 owned.tar /y/\n",
    )
    .unwrap();
    let image = format!("{}/add-owners:latest", registry.host());
    assert_success(
        &kiln(&[
            format!("--context=dir://{}", ctx.path().display()),
            format!("--destination={image}"),
        ])
        .await,
    );
    let layers = support::kiln::layers(&image);
    let owners = |layer: usize, path: &str| {
        let entry = &layers[layer][path];
        (entry.0, entry.1, entry.2, entry.3)
    };
    assert_eq!(owners(0, "x/owned/"), ('d', 0o750, 1000, 1000));
    assert_eq!(owners(0, "x/owned/tool"), ('f', 0o4755, 33, 44));
    assert_eq!(owners(0, "x/owned/link"), ('l', 0o777, 5, 6));
    assert_eq!(owners(1, "y/owned/"), ('d', 0o750, 7, 8));
    assert_eq!(owners(1, "y/owned/tool"), ('f', 0o4755, 7, 8));
    assert_eq!(owners(1, "y/owned/link"), ('l', 0o777, 7, 8));
}

#[tokio::test(flavor = "multi_thread")]
async fn onbuild_triggers_of_a_base_run_in_the_child() {
    let registry = TestRegistry::start();
    let base_ctx = tempfile::tempdir().unwrap();
    write_tree(
        base_ctx.path(),
        &[
            (
                "Dockerfile",
                "FROM scratch\nCOPY base.txt /\nONBUILD COPY app.txt /app/\nONBUILD LABEL stage=child\n",
            ),
            ("base.txt", "base"),
        ],
    );
    let base = format!("{}/onbuild-base:latest", registry.host());
    assert_success(
        &kiln(&[
            format!("--context=dir://{}", base_ctx.path().display()),
            format!("--destination={base}"),
        ])
        .await,
    );

    let child_ctx = tempfile::tempdir().unwrap();
    write_tree(
        child_ctx.path(),
        &[
            ("Dockerfile", &format!("FROM {base}\nCOPY more.txt /\n")),
            ("app.txt", "app"),
            ("more.txt", "more"),
        ],
    );
    let child = format!("{}/onbuild-child:latest", registry.host());
    assert_success(
        &kiln(&[
            format!("--context=dir://{}", child_ctx.path().display()),
            format!("--destination={child}"),
        ])
        .await,
    );

    let files = files(&child);
    assert_eq!(files["app/app.txt"].2, "app");
    assert_eq!(files["more.txt"].2, "more");
    let config: serde_json::Value = serde_json::from_slice(&skopeo(&[
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{child}"),
    ]))
    .unwrap();
    assert_eq!(config["config"]["Labels"]["stage"], "child");
    assert!(
        config["config"]
            .get("OnBuild")
            .is_none_or(|v| v.is_null() || v.as_array().is_some_and(|a| a.is_empty())),
        "triggers are not inherited: {config}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tar_and_oci_contexts() {
    let registry = TestRegistry::start();
    let archive = tar_gz(&[
        ("Dockerfile", "FROM scratch\nCOPY hello.txt /\n"),
        ("hello.txt", "from a tarball"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let tar_path = dir.path().join("context.tar.gz");
    std::fs::write(&tar_path, &archive).unwrap();

    let image = format!("{}/ctx:tar", registry.host());
    assert_success(
        &kiln(&[
            format!("--context=tar://{}", tar_path.display()),
            format!("--destination={image}"),
        ])
        .await,
    );
    assert_eq!(files(&image)["hello.txt"].2, "from a tarball");

    // The same tarball as an OCI artifact, as `--driver=k8s` uploads it.
    let layer_digest = fixtures::push_blob(registry.host(), "ctx/context", &archive).await;
    let config = b"{}";
    let config_digest = fixtures::push_blob(registry.host(), "ctx/context", config).await;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.kiln.build-context.v1",
        "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": config_digest, "size": config.len() },
        "layers": [ { "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": archive.len() } ],
    }))
    .unwrap();
    let manifest_digest = fixtures::push_manifest(
        registry.host(),
        "ctx/context",
        "build1",
        "application/vnd.oci.image.manifest.v1+json",
        &manifest,
    )
    .await;
    let image = format!("{}/ctx:oci", registry.host());
    assert_success(
        &kiln(&[
            format!(
                "--context=oci://{}/ctx/context@{manifest_digest}",
                registry.host()
            ),
            format!("--destination={image}"),
        ])
        .await,
    );
    assert_eq!(files(&image)["hello.txt"].2, "from a tarball");
}

#[tokio::test(flavor = "multi_thread")]
async fn git_context_with_ref_and_subdirectory() {
    let registry = TestRegistry::start();
    let repos = tempfile::tempdir().unwrap();
    let repo = repos.path().join("app.git");
    let work = tempfile::tempdir().unwrap();
    let git = |args: &[&str], dir: &Path| {
        let status = Command::new("git")
            .args([
                "-c",
                "user.name=kiln",
                "-c",
                "user.email=kiln@example.invalid",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(dir)
            .status()
            .expect("git is installed");
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q"], work.path());
    write_tree(
        work.path(),
        &[
            ("service/Dockerfile", "FROM scratch\nCOPY version.txt /\n"),
            ("service/version.txt", "v1"),
        ],
    );
    git(&["add", "."], work.path());
    git(&["commit", "-q", "-m", "v1"], work.path());
    git(&["tag", "v1"], work.path());
    write_tree(work.path(), &[("service/version.txt", "v2")]);
    git(&["commit", "-q", "-am", "v2"], work.path());
    git(
        &[
            "clone",
            "-q",
            "--bare",
            &work.path().display().to_string(),
            &repo.display().to_string(),
        ],
        repos.path(),
    );

    let port = free_port();
    let _daemon = Server(
        Command::new("git")
            .args([
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={}", repos.path().display()),
                &repos.path().display().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("git daemon"),
    );
    wait_for_port(port);
    let v1_commit = String::from_utf8(
        Command::new("git")
            .args(["rev-parse", "v1^{commit}"])
            .current_dir(work.path())
            .output()
            .expect("git rev-parse")
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();

    // kiln fetches git contexts itself (the builder image has no git):
    // its PATH holds only a `git` that records being run, and its HOME is
    // an empty directory that stays empty.
    let bin = tempfile::tempdir().unwrap();
    let ran = bin.path().join("git-was-run");
    let fake_git = bin.path().join("git");
    std::fs::write(
        &fake_git,
        format!("#!/bin/sh\necho \"$@\" >> '{}'\nexit 1\n", ran.display()),
    )
    .unwrap();
    std::fs::set_permissions(&fake_git, std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = tempfile::tempdir().unwrap();
    let env = [
        ("PATH", bin.path().as_os_str()),
        ("HOME", home.path().as_os_str()),
    ];
    for (reference, expected) in [("v1", "v1"), ("main", "v2"), (v1_commit.as_str(), "v1")] {
        let image = format!(
            "{}/git:{}",
            registry.host(),
            &reference[..reference.len().min(12)]
        );
        assert_success(
            &kiln_with_env(
                &[
                    format!("--context=git://127.0.0.1:{port}/app.git#{reference}:service"),
                    format!("--destination={image}"),
                ],
                None,
                &env,
            )
            .await,
        );
        assert_eq!(files(&image)["version.txt"].2, expected, "ref {reference}");
    }
    assert!(
        !ran.exists(),
        "kiln ran git: {}",
        std::fs::read_to_string(&ran).unwrap_or_default()
    );
    // The fake git works when it is run (so the check above can fail).
    let status = Command::new(&fake_git).arg("--version").status().unwrap();
    assert!(!status.success() && ran.exists());
    assert_eq!(
        std::fs::read_dir(home.path()).unwrap().count(),
        0,
        "kiln wrote to HOME"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn links_symlinks_and_zstd_layers() {
    let registry = TestRegistry::start();
    let ctx = tempfile::tempdir().unwrap();
    write_tree(
        ctx.path(),
        &[
            ("Dockerfile", "FROM scratch\nCOPY --link tree/ /tree/\n"),
            ("tree/data.txt", "data"),
        ],
    );
    std::fs::hard_link(
        ctx.path().join("tree/data.txt"),
        ctx.path().join("tree/data-link.txt"),
    )
    .unwrap();
    std::os::unix::fs::symlink("data.txt", ctx.path().join("tree/alias")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", ctx.path().join("tree/dangling")).unwrap();
    let image = format!("{}/links:zstd", registry.host());
    assert_success(
        &kiln(&[
            format!("--context=dir://{}", ctx.path().display()),
            format!("--destination={image}"),
            "--compression=zstd".to_string(),
            "--oci-mode=oci".to_string(),
        ])
        .await,
    );
    let manifest: serde_json::Value = serde_json::from_slice(&skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]))
    .unwrap();
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let files = files(&image);
    assert_eq!(files["tree/alias"], ('l', 0o777, "data.txt".to_string()));
    assert_eq!(files["tree/dangling"].2, "/nowhere/at/all");
    // One of the two names carries the content, the other links to it.
    let (a, b) = (&files["tree/data.txt"], &files["tree/data-link.txt"]);
    assert!(
        (a.0 == 'f' && b == &('h', b.1, "tree/data.txt".to_string()))
            || (b.0 == 'f' && a == &('h', a.1, "tree/data-link.txt".to_string())),
        "{a:?} {b:?}"
    );
}

/// A context whose Dockerfile and .dockerignore are links to files outside
/// it (an attacker's context on a CI runner): kiln reads them inside the
/// context, as if it were `/`, so the host file's content (credentials
/// here) never reaches the build or its error messages.
#[tokio::test(flavor = "multi_thread")]
async fn context_files_linking_out_of_the_context_are_not_read_from_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("credentials");
    std::fs::write(&secret, "REGISTRY_TOKEN=s3cr3t-v4lue-0123456789\n").unwrap();
    let ctx = dir.path().join("context");
    std::fs::create_dir_all(&ctx).unwrap();
    std::os::unix::fs::symlink(&secret, ctx.join("Dockerfile")).unwrap();
    let output = kiln(&[
        format!("--context=dir://{}", ctx.display()),
        "--no-push".to_string(),
    ])
    .await;
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(!message.contains("s3cr3t"), "{message}");
    assert!(message.contains("No such file or directory"), "{message}");

    // A Dockerfile in the context, the ignore file a link out of it: the
    // host file would be an invalid pattern echoed in full.
    std::fs::remove_file(ctx.join("Dockerfile")).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY . /\n").unwrap();
    std::fs::write(&secret, "[REGISTRY_TOKEN=s3cr3t-v4lue-0123456789\n").unwrap();
    std::os::unix::fs::symlink(&secret, ctx.join(".dockerignore")).unwrap();
    let output = kiln(&[
        format!("--context=dir://{}", ctx.display()),
        "--no-push".to_string(),
    ])
    .await;
    assert_success(&output);
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(!message.contains("s3cr3t"), "{message}");
}
