//! `--isolation=inplace` end to end, in a *simulated container*.
//!
//! The machine the tests run on is itself a container (it has
//! `/.dockerenv`): an in-place build on its real `/` would delete it. So no
//! test here ever runs kiln on the real root. Each build runs in a
//! temporary directory prepared as a container's root — kiln at
//! `/kiln/executor` with the shared libraries `ldd` names under `/kiln/lib`
//! (started through the dynamic loader, so unpacking an image over `/lib`
//! cannot break it), a marker file, `/proc` and a `/dev` mounted in, a
//! tmpfs on `/data` and a bind on `/etc/hosts` and `/workspace` (the build
//! context) as a container runtime mounts volumes — entered with
//! `unshare --mount --pid --fork` and `chroot`. The launcher checks, before
//! anything runs, that the root is that directory (a token written there by
//! the test); the mounts vanish with the namespace. The network namespace
//! is shared, so the loopback registry is reachable from inside.
//!
//! Needs root (mount, chroot), as CI runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use support::TestRegistry;
use support::fixtures::{self, Fixtures};
use support::kiln::{assert_success, context, context_arg, exists, files, kiln, layers, stderr};

/// What the launcher checks before entering the root.
/// Below /kiln, which in-place builds never touch, so that it survives them.
const TOKEN_FILE: &str = "kiln/simulated-root";

/// Runs in the new mount and PID namespaces (as their PID 1), on the real
/// root: checks the simulated root, mounts what a container runtime would,
/// and starts kiln chrooted into it.
const LAUNCHER: &str = r#"set -eu
root=$1 token=$2 context=$3 hosts=$4
shift 4
case "$root" in
/tmp/?*) ;;
*) echo "launcher: refusing a root outside /tmp: '$root'" >&2; exit 97 ;;
esac
[ "$(cat "$root/kiln/simulated-root")" = "$token" ] || { echo "launcher: $root is not the simulated root" >&2; exit 98; }
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=755 tmpfs "$root/dev"
for node in null zero full random urandom; do
  : > "$root/dev/$node"
  mount --bind "/dev/$node" "$root/dev/$node"
done
mount -t tmpfs -o mode=755 tmpfs "$root/data"
echo volume > "$root/data/on-the-volume"
mount --bind "$hosts" "$root/etc/hosts"
mount --bind "$context" "$root/workspace"
chroot "$root" /kiln/lib/ld.so --library-path /kiln/lib /kiln/executor "$@"
"#;

/// Where kiln's builder image keeps its CA bundle (`SSL_CERT_FILE`).
const CA_BUNDLE: &str = "/kiln/ssl/certs/ca-certificates.crt";

/// How a simulated container says it is one.
#[derive(Clone, Copy, PartialEq)]
enum Marker {
    /// `/.dockerenv`.
    DockerEnv,
    /// Nothing: a machine's own root, as far as kiln can tell.
    None,
}

/// A temporary directory prepared as a container's root filesystem.
struct SimulatedRoot {
    dir: tempfile::TempDir,
    token: String,
    hosts: tempfile::NamedTempFile,
}

/// Files the "builder image" puts in the root that are not protected:
/// every in-place build removes them before it unpacks anything.
const BUILDER_FILES: [&str; 2] = ["etc/builder-only", "usr/share/builder/notes"];

impl SimulatedRoot {
    fn new(marker: Marker) -> SimulatedRoot {
        let dir = tempfile::Builder::new()
            .prefix("kiln-simroot-")
            .tempdir_in("/tmp")
            .unwrap();
        let root = dir.path();
        let token = format!("{}-{}", std::process::id(), root.display());
        for d in [
            "kiln/lib",
            "kiln/ssl/certs",
            "kiln/work",
            "kaniko/.docker",
            "proc",
            "dev",
            "data",
            "etc",
            "workspace",
            "root/ignored",
            "usr/share/builder",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join(TOKEN_FILE), &token).unwrap();
        // Root's home is private in images, as in the busybox fixture.
        fs::set_permissions(root.join("root"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::copy(env!("CARGO_BIN_EXE_kiln"), root.join("kiln/executor")).unwrap();
        for (name, host_path) in shared_libraries() {
            fs::copy(host_path, root.join("kiln/lib").join(name)).unwrap();
        }
        // As in kiln's builder image: the CA bundle below /kiln, where an
        // in-place build never removes it.
        fs::copy(
            "/etc/ssl/certs/ca-certificates.crt",
            root.join(CA_BUNDLE.trim_start_matches('/')),
        )
        .unwrap();
        fs::write(root.join("kaniko/.docker/config.json"), "{}").unwrap();
        fs::write(root.join("etc/hosts"), "").unwrap();
        fs::write(root.join("root/ignored/keep"), "kept\n").unwrap();
        for file in BUILDER_FILES {
            fs::write(root.join(file), "from the builder image\n").unwrap();
        }
        if marker == Marker::DockerEnv {
            fs::write(root.join(".dockerenv"), "").unwrap();
        }
        let mut hosts = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut hosts, b"127.0.0.1 localhost\n").unwrap();
        SimulatedRoot { dir, token, hosts }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs kiln inside the simulated container with `args`, the build
    /// context `context` mounted on `/workspace`, and exactly the
    /// environment `env` (plus `PATH` and `DOCKER_CONFIG`).
    async fn kiln(&self, context: &Path, args: &[String], env: &[(&str, &str)]) -> Output {
        let root = self.path();
        // The guard on this side: never the real root, whatever the path says.
        let canonical = fs::canonicalize(root).unwrap();
        let (here, real) = (
            fs::metadata(&canonical).unwrap(),
            fs::metadata("/").unwrap(),
        );
        assert_ne!(canonical, Path::new("/"));
        assert!(
            (here.dev(), here.ino()) != (real.dev(), real.ino()),
            "the simulated root is the real root"
        );
        assert_eq!(
            fs::read_to_string(canonical.join(TOKEN_FILE)).unwrap(),
            self.token
        );
        let mut command = tokio::process::Command::new("unshare");
        command
            .args([
                "--mount", "--pid", "--fork", "sh", "-c", LAUNCHER, "launcher",
            ])
            .arg(&canonical)
            .arg(&self.token)
            .arg(context)
            .arg(self.hosts.path())
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DOCKER_CONFIG", "/kaniko/.docker")
            .env("HOME", "/kiln")
            .env("SSL_CERT_FILE", CA_BUNDLE);
        for (key, value) in env {
            command.env(key, value);
        }
        command.output().await.unwrap()
    }

    /// Every path below the root (`proc` and `dev` are mount points, empty
    /// here), with its type, mode and content: `f 0644 etc/hosts "…"`.
    fn listing(&self) -> Vec<String> {
        let mut out = Vec::new();
        list(self.path(), self.path(), &mut out);
        out.sort();
        out
    }
}

fn list(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        let meta = fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            out.push(format!(
                "l {rel} -> {}",
                fs::read_link(&path).unwrap().display()
            ));
        } else if meta.is_dir() {
            out.push(format!("d {mode:04o} {rel}"));
            list(root, &path, out);
        } else {
            let content = if rel.starts_with("kiln/") {
                format!("{} bytes", meta.len())
            } else {
                format!("{:?}", fs::read_to_string(&path).unwrap_or_default())
            };
            out.push(format!("f {mode:04o} {rel} {content}"));
        }
    }
}

/// kiln's shared libraries as `ldd` lists them, the dynamic loader as
/// `ld.so`: (name in /kiln/lib, host path).
fn shared_libraries() -> &'static [(String, PathBuf)] {
    static LIBS: OnceLock<Vec<(String, PathBuf)>> = OnceLock::new();
    LIBS.get_or_init(|| {
        let output = std::process::Command::new("ldd")
            .arg(env!("CARGO_BIN_EXE_kiln"))
            .output()
            .unwrap();
        assert!(output.status.success(), "ldd: {output:?}");
        let mut libs = Vec::new();
        for line in String::from_utf8(output.stdout).unwrap().lines() {
            let line = line.trim();
            if let Some((name, rest)) = line.split_once(" => ") {
                let path = rest.split(" (").next().unwrap();
                libs.push((name.to_string(), PathBuf::from(path)));
            } else if line.starts_with('/') {
                let path = line.split(" (").next().unwrap();
                libs.push(("ld.so".to_string(), PathBuf::from(path)));
            }
        }
        assert!(
            libs.iter().any(|(name, _)| name == "ld.so"),
            "no dynamic loader in {libs:?}"
        );
        libs
    })
}

async fn setup() -> (TestRegistry, Fixtures) {
    let registry = TestRegistry::start();
    let fixtures = fixtures::push_busybox_index(registry.host()).await;
    (registry, fixtures)
}

/// The Dockerfile both isolation modes build: RUN in shell and exec form,
/// USER, WORKDIR, ENV and ARG, COPY from the context and from a stage that
/// ran commands, a deleted base file, a leftover process, and writes to
/// every path a build never captures.
fn dockerfile(base: &str) -> String {
    format!(
        r#"FROM {base} AS builder
RUN mkdir -p /out && echo built > /out/artifact && echo only-in-builder > /builder-stage.txt

FROM {base}
ENV GREETING=hello
ARG FLAVOUR=plain
WORKDIR /work
RUN echo "$GREETING $FLAVOUR from $(pwd) as $(id -u)" > /work/shell.txt
RUN ["/bin/sh", "-c", "echo exec form > /work/exec.txt"]
COPY hello.txt /work/hello.txt
COPY --from=builder /out/artifact /work/artifact
RUN rm /etc/os-release
USER app
WORKDIR /home/app/made
RUN id > /home/app/made/id.txt && touch mine
USER root
RUN mkdir -p /kiln; sleep 1000 & echo $! > /kiln/leftover.pid
RUN if grep -q '^sleep' /proc/$(cat /kiln/leftover.pid)/cmdline 2>/dev/null; then echo "the leftover sleep still runs"; exit 1; fi
RUN echo into-the-volume > /data/x && mkdir -p /root/ignored /var/run /kaniko && echo new > /root/ignored/new \
    && echo pid > /var/run/x.pid && echo kiln > /kiln/x && echo kaniko > /kaniko/x && echo done > /done.txt
"#
    )
}

/// Paths of the image a build must never capture, at any depth of a layer
/// after the base.
const NEVER_CAPTURED: [&str; 11] = [
    "kiln",
    "kaniko",
    "proc/",
    "dev/",
    "data/x",
    "data/on-the-volume",
    "root/ignored/",
    "var/run/",
    "workspace",
    "etc/hosts",
    ".kiln-run",
];

#[tokio::test(flavor = "multi_thread")]
async fn inplace_build_matches_chroot_and_leaves_protected_paths_alone() {
    let (registry, fixtures) = setup().await;
    let ctx = context(&dockerfile(&fixtures.index), &[("hello.txt", "hi\n")]);
    let sim = SimulatedRoot::new(Marker::DockerEnv);
    let inplace = format!("{}/inplace:1", registry.host());
    // No --isolation: the builder image's default is inplace.
    let output = sim
        .kiln(
            ctx.path(),
            &[
                "--context=dir:///workspace".to_string(),
                format!("--destination={inplace}"),
                "--ignore-path=/root/ignored".to_string(),
                "--build-arg=FLAVOUR=spicy".to_string(),
            ],
            &[("KILN_BUILDER_IMAGE", "1")],
        )
        .await;
    assert_success(&output);
    let log = stderr(&output);
    assert!(
        log.contains("unpacking 1 layers over / (--isolation=inplace)"),
        "{log}"
    );

    let layers = layers(&inplace);
    let all: BTreeMap<String, support::kiln::Entry> =
        layers[1..].iter().flat_map(|layer| layer.clone()).collect();
    let content = |path: &str| all.get(path).map(|entry| entry.4.as_str());
    assert_eq!(
        content("work/shell.txt"),
        Some("hello spicy from /work as 0\n")
    );
    assert_eq!(content("work/exec.txt"), Some("exec form\n"));
    assert_eq!(content("work/hello.txt"), Some("hi\n"));
    assert_eq!(content("work/artifact"), Some("built\n"));
    assert_eq!(
        content("home/app/made/id.txt"),
        // The primary group is the one supplementary group (the fixture's
        // /etc/group lists app in none), as in Docker and buildah.
        Some("uid=1000(app) gid=1000(app) groups=1000(app)\n")
    );
    let mine = &all["home/app/made/mine"];
    assert_eq!((mine.2, mine.3), (1000, 1000), "written as USER app");
    let made = &all["home/app/made/"];
    assert_eq!(
        (made.0, made.2, made.3),
        ('d', 1000, 1000),
        "WORKDIR created for app"
    );
    assert_eq!(content("done.txt"), Some("done\n"));
    assert!(all.contains_key("etc/.wh.os-release"), "{:?}", all.keys());
    assert!(
        all.contains_key("var/"),
        "var is new, var/run is never captured"
    );
    for path in all.keys() {
        for never in NEVER_CAPTURED {
            assert!(
                !path.starts_with(never),
                "{path} is in a layer ({never} is never captured)"
            );
        }
        assert!(
            !path.contains("builder-only")
                && !path.contains("builder-stage")
                && !path.starts_with("usr/"),
            "{path}: from the builder image or another stage"
        );
    }

    // The root after the build: the image is there (no --cleanup), the
    // builder image's unprotected files are gone, protected paths are as
    // they were, and kiln's work directories are removed.
    let root = sim.path();
    assert!(root.join("bin/busybox").is_file());
    assert_eq!(fs::read_to_string(root.join("done.txt")).unwrap(), "done\n");
    for file in BUILDER_FILES {
        assert!(!root.join(file).exists(), "{file} survived");
    }
    assert!(!root.join("builder-stage.txt").exists());
    assert_eq!(
        fs::read_to_string(root.join("root/ignored/keep")).unwrap(),
        "kept\n"
    );
    assert_eq!(
        fs::read_to_string(sim.hosts.path()).unwrap(),
        "127.0.0.1 localhost\n"
    );
    assert_eq!(fs::read_to_string(root.join(".dockerenv")).unwrap(), "");
    assert!(root.join("kiln/executor").is_file());
    assert_eq!(fs::read_dir(root.join("kiln/work")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(root.join("workspace")).unwrap().count(), 0);
    assert_eq!(
        fs::read_to_string(ctx.path().join("hello.txt")).unwrap(),
        "hi\n"
    );

    // The same Dockerfile with --isolation=chroot, on the host: the same
    // files, but for the write into /data, which is a volume (a mount
    // point) in the container and an ordinary directory of the image in
    // the chroot.
    let chroot = format!("{}/chroot:1", registry.host());
    let output = kiln(&[
        context_arg(ctx.path()),
        format!("--destination={chroot}"),
        "--isolation=chroot".to_string(),
        "--ignore-path=/root/ignored".to_string(),
        "--build-arg=FLAVOUR=spicy".to_string(),
    ])
    .await;
    assert_success(&output);
    let mut chroot_files = files(&chroot);
    assert_eq!(
        chroot_files.remove("data/x"),
        Some(('f', 0o644, "into-the-volume\n".to_string()))
    );
    let inplace_files = files(&inplace);
    assert_eq!(inplace_files, chroot_files);
    assert_eq!(layers.len(), support::kiln::layers(&chroot).len());
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_outside_a_container_unless_forced() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!("FROM {}\nRUN echo forced > /forced.txt\n", fixtures.index),
        &[],
    );
    let sim = SimulatedRoot::new(Marker::None);
    let before = sim.listing();
    let image = format!("{}/refused:1", registry.host());
    let args = [
        "--context=dir:///workspace".to_string(),
        format!("--destination={image}"),
        "--isolation=inplace".to_string(),
    ];
    let output = sim.kiln(ctx.path(), &args, &[]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).ends_with(
            "error: --isolation=inplace unpacks the image over this machine's own / and removes \
             what else is there, and no container was detected (no /.dockerenv, \
             /run/.containerenv, $container, $KUBERNETES_SERVICE_HOST, KILN_BUILDER_IMAGE=1 or \
             container cgroup); run it in a container (kiln's builder image) or pass --force\n"
        ),
        "{}",
        stderr(&output)
    );
    assert!(!exists(&image), "nothing is pushed");
    assert_eq!(sim.listing(), before, "nothing in / was touched");

    let mut forced = args.to_vec();
    forced.push("--force".to_string());
    let output = sim.kiln(ctx.path(), &forced, &[]).await;
    assert_success(&output);
    assert!(
        stderr(&output).contains("--isolation=inplace --force: no container detected"),
        "{}",
        stderr(&output)
    );
    let layers = layers(&image);
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[1]["forced.txt"].4, "forced\n");
    assert!(sim.path().join("forced.txt").is_file());
}

#[tokio::test(flavor = "multi_thread")]
async fn cleanup_leaves_only_the_protected_paths_and_the_container_builds_again() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!(
            "FROM {}\nRUN echo one > /one.txt && mkdir -p /root/ignored && echo new > /root/ignored/new\n",
            fixtures.index
        ),
        &[],
    );
    let sim = SimulatedRoot::new(Marker::DockerEnv);
    let before = sim.listing();
    let image = format!("{}/cleanup:1", registry.host());
    let args = [
        "--context=dir:///workspace".to_string(),
        format!("--destination={image}"),
        "--isolation=inplace".to_string(),
        "--ignore-path=/root/ignored".to_string(),
        "--cleanup".to_string(),
        // An output file in /: written after the build, kept by --cleanup.
        "--digest-file=/digest.txt".to_string(),
    ];
    for build in 0..2 {
        let output = sim.kiln(ctx.path(), &args, &[]).await;
        assert_success(&output);
        let log = stderr(&output);
        assert!(log.contains("--cleanup: removed"), "build {build}: {log}");
        let layers = layers(&image);
        assert_eq!(layers.len(), 2, "build {build}");
        assert_eq!(layers[1]["one.txt"].4, "one\n");
        assert!(!layers[1].keys().any(|p| p.starts_with("root/ignored/")));
        // What the build wrote into the ignored path stays; the builder
        // image's unprotected files went before the first unpack; nothing
        // else differs.
        let mut want: Vec<String> = before
            .iter()
            .filter(|line| !line.contains(" usr") && !line.contains(" etc/builder-only"))
            .cloned()
            .collect();
        want.push("f 0644 root/ignored/new \"new\\n\"".to_string());
        let digest = fs::read_to_string(sim.path().join("digest.txt")).unwrap();
        assert!(digest.starts_with("sha256:"), "{digest}");
        want.push(format!("f 0644 digest.txt {digest:?}"));
        want.sort();
        assert_eq!(sim.listing(), want, "build {build}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn run_mounts_are_materialised_and_never_captured() {
    let (registry, fixtures) = setup().await;
    let dockerfile = format!(
        r#"FROM {}
RUN --mount=type=cache,target=/var/cache/app echo one >> /var/cache/app/log && cat /var/cache/app/log > /seen1
RUN --mount=type=cache,target=/var/cache/app echo two >> /var/cache/app/log && cat /var/cache/app/log > /seen2
RUN --mount=type=secret,id=token,target=/run/secrets/token wc -c < /run/secrets/token > /secret-bytes
RUN --mount=type=secret,id=token,env=TOKEN test "$TOKEN" = s3cr3t && echo yes > /env-secret
RUN --mount=type=bind,source=hello.txt,target=/etc/hello.txt cat /etc/hello.txt > /bound && echo changed > /etc/hello.txt
RUN --mount=type=tmpfs,target=/home/app ls -A /home/app | wc -l > /home-entries && touch /home/app/x
RUN --mount=type=secret,id=token,target=/etc/token false
"#,
        fixtures.index
    );
    let ctx = context(&dockerfile, &[("hello.txt", "hi\n")]);
    let sim = SimulatedRoot::new(Marker::DockerEnv);
    fs::write(sim.path().join("kiln/token"), "s3cr3t").unwrap();
    let image = format!("{}/mounts:1", registry.host());
    let args = [
        "--context=dir:///workspace".to_string(),
        format!("--destination={image}"),
        "--isolation=inplace".to_string(),
        "--secret=id=token,src=/kiln/token".to_string(),
    ];
    // The last RUN fails: its secret must be gone all the same.
    let output = sim.kiln(ctx.path(), &args, &[]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("RUN failed (exit 1)"),
        "{}",
        stderr(&output)
    );
    let root = sim.path();
    assert!(!root.join("etc/token").exists(), "the secret stayed in /");
    assert!(!root.join("run/secrets").exists());
    assert!(!exists(&image));

    // Without the failing step: pushed, and no mount in any layer.
    let dockerfile = dockerfile.replace(
        "RUN --mount=type=secret,id=token,target=/etc/token false\n",
        "",
    );
    fs::write(ctx.path().join("Dockerfile"), &dockerfile).unwrap();
    let output = sim.kiln(ctx.path(), &args, &[]).await;
    assert_success(&output);
    let all: BTreeMap<String, support::kiln::Entry> = layers(&image)[1..]
        .iter()
        .flat_map(|layer| layer.clone())
        .collect();
    let content = |path: &str| all.get(path).map(|entry| entry.4.clone());
    // The cache keeps what the failed build's RUNs wrote, and this one's.
    assert_eq!(content("seen1").as_deref(), Some("one\ntwo\none\n"));
    assert_eq!(content("seen2").as_deref(), Some("one\ntwo\none\ntwo\n"));
    assert_eq!(content("secret-bytes").as_deref(), Some("6\n"));
    assert_eq!(content("env-secret").as_deref(), Some("yes\n"));
    assert_eq!(content("bound").as_deref(), Some("hi\n"));
    assert_eq!(content("home-entries").as_deref(), Some("0\n"));
    for path in all.keys() {
        assert!(
            !(path.starts_with("var/")
                || path.starts_with("run/")
                || path.starts_with("etc/")
                || path.starts_with("home/")
                || path.starts_with("cache/")),
            "{path}: a mount reached a layer"
        );
    }
    for layer in layers(&image) {
        for (path, entry) in layer {
            assert!(!entry.4.contains("s3cr3t"), "the secret is in {path}");
        }
    }
    // The image's own /home/app came back, the context is untouched, the
    // cache lives under --cache-dir (/cache, protected).
    assert!(root.join("home/app").is_dir());
    assert!(!root.join("home/app/x").exists());
    assert!(!root.join("etc/hello.txt").exists());
    assert_eq!(
        fs::read_to_string(ctx.path().join("hello.txt")).unwrap(),
        "hi\n"
    );
    let cache_logs: Vec<String> = walk_files(&root.join("cache"))
        .into_iter()
        .filter(|p| p.ends_with("/log"))
        .map(|p| fs::read_to_string(p).unwrap())
        .collect();
    // The failed build's two runs, then this one's.
    assert_eq!(cache_logs, ["one\ntwo\none\ntwo\n"]);
}

fn walk_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            out.extend(walk_files(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

/// In place, a step as a non-root `USER` cannot gain privileges through a
/// set-user-ID binary (`no_new_privs`); a step as root keeps what root has.
#[tokio::test(flavor = "multi_thread")]
async fn a_non_root_step_gets_no_new_privs() {
    let (registry, fixtures) = setup().await;
    let dockerfile = format!(
        "FROM {}\n\
         RUN grep ^NoNewPrivs: /proc/self/status > /root-nnp\n\
         USER app\n\
         RUN grep ^NoNewPrivs: /proc/self/status > /tmp/app-nnp\n",
        fixtures.index
    );
    let ctx = context(&dockerfile, &[]);
    let sim = SimulatedRoot::new(Marker::DockerEnv);
    let image = format!("{}/nnp:1", registry.host());
    let args = [
        "--context=dir:///workspace".to_string(),
        format!("--destination={image}"),
        "--isolation=inplace".to_string(),
    ];
    let output = sim.kiln(ctx.path(), &args, &[]).await;
    assert_success(&output);
    let all: BTreeMap<String, support::kiln::Entry> = layers(&image)[1..]
        .iter()
        .flat_map(|layer| layer.clone())
        .collect();
    let content = |path: &str| all.get(path).map(|entry| entry.4.as_str());
    assert_eq!(content("root-nnp"), Some("NoNewPrivs:\t0\n"));
    assert_eq!(content("tmp/app-nnp"), Some("NoNewPrivs:\t1\n"));
}

/// kiln is not dumpable: another process of its user (as a step in place
/// runs when kiln is not root) cannot read its environment, where
/// registry credentials and secrets may be. kiln runs here as `nobody`,
/// held in a `FROM` pull by a registry that accepts and never answers.
#[test]
fn kiln_is_not_dumpable_so_its_user_cannot_read_its_environment() {
    use std::process::{Command, Stdio};
    assert_eq!(
        rustix::process::geteuid().as_raw(),
        0,
        "needs root (to run kiln and the reader as another user)"
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (accepted, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
            let _ = accepted.send(());
        }
    });
    let ctx = context(&format!("FROM 127.0.0.1:{port}/never:1\n"), &[]);
    let tmp = tempfile::tempdir().unwrap();
    for dir in [ctx.path(), tmp.path()] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o1777)).unwrap();
    }
    let marker = "KILN_TEST_ENVIRON_MARKER";
    let as_nobody = |program: &str| {
        let mut command = Command::new("setpriv");
        command.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            program,
        ]);
        command
    };
    let mut kiln = as_nobody(env!("CARGO_BIN_EXE_kiln"))
        .args([
            context_arg(ctx.path()),
            "--no-push".to_string(),
            format!("--insecure-registry=127.0.0.1:{port}"),
        ])
        .env("TMPDIR", tmp.path())
        .env("DOCKER_CONFIG", tmp.path())
        .env(marker, "visible")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    seen.recv_timeout(std::time::Duration::from_secs(30))
        .expect("kiln connects to the registry");
    let read = |file: &str| {
        as_nobody("cat")
            .arg(format!("/proc/{}/{file}", kiln.id()))
            .output()
            .unwrap()
    };
    let cmdline = read("cmdline");
    let environ = read("environ");
    let _ = kiln.kill();
    let _ = kiln.wait();
    // The pid is kiln's, readable where anyone may read…
    assert!(
        String::from_utf8_lossy(&cmdline.stdout).contains("--no-push"),
        "{cmdline:?}"
    );
    // …but its environment is not, even for its own user.
    assert!(!environ.status.success(), "{environ:?}");
    assert!(
        !String::from_utf8_lossy(&environ.stdout).contains(marker),
        "{environ:?}"
    );
    assert!(
        String::from_utf8_lossy(&environ.stderr).contains("Permission denied"),
        "{environ:?}"
    );
}

/// kiln's builder image is `FROM scratch`: no `/tmp`. A real container
/// runtime sets no `TMPDIR` either (the simulated root has neither: the
/// launcher clears the environment). A fetched context is unpacked below
/// kiln's work root, `/kiln/work`, never in `std::env::temp_dir()`: this is
/// the operator's main path, where every context is fetched.
#[tokio::test(flavor = "multi_thread")]
async fn a_fetched_context_builds_without_tmp_or_tmpdir() {
    let (registry, fixtures) = setup().await;
    let sim = SimulatedRoot::new(Marker::DockerEnv);
    assert!(
        !sim.path().join("tmp").exists(),
        "the builder image has no /tmp"
    );
    let ctx = context(
        &format!(
            "FROM {}\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt > /copied.txt\n",
            fixtures.index
        ),
        &[("hello.txt", "from a tarball\n")],
    );
    // The tarball is on the volume mounted on /workspace.
    let volume = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(ctx.path())
        .arg("-cf")
        .arg(volume.path().join("context.tar"))
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let image = format!("{}/fetched-context:1", registry.host());
    let args = [
        "--context=tar:///workspace/context.tar".to_string(),
        format!("--destination={image}"),
    ];
    let output = sim
        .kiln(volume.path(), &args, &[("KILN_BUILDER_IMAGE", "1")])
        .await;
    assert_success(&output);
    let layers = layers(&image);
    assert_eq!(layers.len(), 3);
    assert_eq!(layers[1]["hello.txt"].4, "from a tarball\n");
    assert_eq!(layers[2]["copied.txt"].4, "from a tarball\n");
    // The work directories, the unpacked context with them, are gone.
    assert_eq!(
        fs::read_dir(sim.path().join("kiln/work")).unwrap().count(),
        0,
        "{:?}",
        sim.listing()
    );
}

/// SIGTERM during an in-place RUN with a secret mounted: kiln kills the
/// step, removes the secret's copy from `/` (there is no mount to vanish
/// with the step in place) and exits with 143.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_removes_the_secrets_copy_from_the_root() {
    let (registry, fixtures) = setup().await;
    let marker = format!("{}", 8_000_000 + std::process::id() % 1_000_000);
    let dockerfile = format!(
        "FROM {}\n\
         RUN --mount=type=secret,id=token,target=/etc/token sh -c 'sleep {marker} & sleep {marker}'\n",
        fixtures.index
    );
    let ctx = context(&dockerfile, &[]);
    let sim = SimulatedRoot::new(Marker::DockerEnv);
    fs::write(sim.path().join("kiln/token"), "s3cr3t-in-place").unwrap();
    let args = [
        "--context=dir:///workspace".to_string(),
        format!("--destination={}/term:1", registry.host()),
        "--isolation=inplace".to_string(),
        "--secret=id=token,src=/kiln/token".to_string(),
    ];
    let token = sim.path().join("etc/token");
    let stop = async {
        let start = std::time::Instant::now();
        loop {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(120),
                "the RUN step never ran"
            );
            // kiln is the parent of the step's foreground `sleep`.
            let kiln = marked_processes(&marker).into_iter().find_map(|pid| {
                let parent = parent_of(pid)?;
                let cmdline = fs::read(format!("/proc/{parent}/cmdline")).ok()?;
                String::from_utf8_lossy(&cmdline)
                    .contains("/kiln/executor")
                    .then_some(parent)
            });
            if let Some(kiln) = kiln
                && token.exists()
            {
                rustix::process::kill_process(
                    rustix::process::Pid::from_raw(kiln).unwrap(),
                    rustix::process::Signal::TERM,
                )
                .unwrap();
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    let (output, ()) = tokio::join!(sim.kiln(ctx.path(), &args, &[]), stop);
    assert_eq!(output.status.code(), Some(143), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("error: interrupted by SIGTERM: killed 1 running RUN step(s)"),
        "{}",
        stderr(&output)
    );
    assert!(
        !token.exists(),
        "the secret's copy stayed in /: {}",
        stderr(&output)
    );
    assert_eq!(marked_processes(&marker), Vec::<i32>::new());
}

/// Pids of the processes whose command line contains `marker`.
fn marked_processes(marker: &str) -> Vec<i32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = fs::read(entry.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(marker)
                .then_some(pid)
        })
        .collect()
}

fn parent_of(pid: i32) -> Option<i32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("PPid:"))
        .and_then(|value| value.trim().parse().ok())
}
