//! BuildKit, the suite's first reference: a `buildkitd` of the version
//! `scripts/tools.sh buildkit` pins, started by the test and stopped by it,
//! and `buildctl build` with the Dockerfile frontend built into it.
//!
//! The daemon must leave the machine as it found it:
//! - it runs in a mount namespace of its own with private propagation
//!   (`unshare --mount --propagation private`), so its snapshot mounts and
//!   its RUN containers' mounts never reach the host's mount table;
//! - all its state is in one temporary directory: `--root`, its config,
//!   its unix socket (it listens on nothing else), its trace socket, its
//!   TMPDIR, and runc's state (a wrapper passes runc `--root`, which would
//!   otherwise create /run/runc);
//! - its RUN containers' cgroups are made under a parent of its own
//!   (`defaultCgroupParent`), removed after it stopped;
//! - it dies with the test thread that started it (`setpriv --pdeathsig`),
//!   even when the test process is killed.
//!
//! [`BuildKit::stop`] checks each of these after the daemon exited.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tools::run;

/// A running `buildkitd`; [`BuildKit::stop`] (or drop) stops it.
pub struct BuildKit {
    dir: tempfile::TempDir,
    child: Option<Child>,
    buildctl: PathBuf,
    /// The cgroup its RUN containers are made under, in every hierarchy.
    cgroup_parent: String,
    /// `overlayfs`, or `native` where overlay mounts fail.
    pub snapshotter: &'static str,
}

/// The bin directories of `scripts/tools.sh <tools>`, in that order; the
/// tools are built on a cold cache (minutes) and found in milliseconds
/// after.
fn tool_dirs(tools: &[&str]) -> Vec<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/tools.sh");
    let output = run(
        &format!("scripts/tools.sh {}", tools.join(" ")),
        Command::new("bash").arg(&script).args(tools),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let dirs: Vec<PathBuf> = String::from_utf8_lossy(&output.stdout)
        .trim()
        .split(':')
        .map(PathBuf::from)
        .collect();
    assert_eq!(dirs.len(), tools.len(), "scripts/tools.sh printed {dirs:?}");
    dirs
}

/// Cgroup hierarchies mounted under /sys/fs/cgroup (one per controller on
/// cgroup v1, the directory itself on v2).
fn cgroup_hierarchies() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_path_buf()];
    }
    std::fs::read_dir(root)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir() && !p.is_symlink())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes the cgroup directory `dir` and every cgroup below it, deepest
/// first (a cgroup is removed with rmdir once it holds no process).
fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.filter_map(Result::ok) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

impl BuildKit {
    /// Starts buildkitd as root with the OCI (runc) worker, host network,
    /// no containerd worker, and `registry` (`host:port`) as a plain-HTTP
    /// registry. Tries the overlayfs snapshotter and falls back to native.
    pub fn start(registry: &str) -> BuildKit {
        let dirs = tool_dirs(&["buildkit", "runc"]);
        let (buildkit_bin, runc_bin) = (&dirs[0], &dirs[1]);
        let mut last_log = String::new();
        for snapshotter in ["overlayfs", "native"] {
            let mut daemon = BuildKit::launch(buildkit_bin, runc_bin, registry, snapshotter);
            match daemon.wait_until_ready() {
                Ok(()) => return daemon,
                Err(log) => {
                    eprintln!(
                        "conformance: buildkitd with the {snapshotter} snapshotter did not start"
                    );
                    last_log = log;
                    daemon.stop();
                }
            }
        }
        panic!("buildkitd did not start with either snapshotter; its last log:\n{last_log}");
    }

    fn launch(
        buildkit_bin: &Path,
        runc_bin: &Path,
        registry: &str,
        snapshotter: &'static str,
    ) -> BuildKit {
        let dir = tempfile::Builder::new()
            .prefix("kiln-buildkitd.")
            .tempdir()
            .expect("a temporary directory for buildkitd");
        let path = |name: &str| dir.path().join(name);
        for sub in ["bin", "tmp", "runc-state", "docker-config"] {
            std::fs::create_dir(path(sub)).expect("creating buildkitd's directories");
        }
        // runc keeps container state in /run/runc unless given --root.
        let wrapper = path("bin/runc");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec '{}' --root '{}' \"$@\"\n",
                runc_bin.join("runc").display(),
                path("runc-state").display()
            ),
        )
        .expect("writing the runc wrapper");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
                .expect("making the runc wrapper executable");
        }
        let cgroup_parent = format!("kiln-conformance-buildkit-{}", std::process::id());
        let config = format!(
            "root = \"{root}\"\n\
             [grpc]\n  address = [\"unix://{socket}\"]\n\
             [otel]\n  socketPath = \"{otel}\"\n\
             [cdi]\n  disabled = true\n\
             [history]\n  maxEntries = 0\n\
             [worker.oci]\n  enabled = true\n  snapshotter = \"{snapshotter}\"\n  \
             networkMode = \"host\"\n  gc = false\n  defaultCgroupParent = \"{cgroup_parent}\"\n\
             [worker.containerd]\n  enabled = false\n\
             [registry.\"{registry}\"]\n  http = true\n  insecure = true\n",
            root = path("root").display(),
            socket = path("buildkitd.sock").display(),
            otel = path("otel-grpc.sock").display(),
        );
        std::fs::write(path("buildkitd.toml"), config).expect("writing buildkitd.toml");
        let log = std::fs::File::create(path("buildkitd.log")).expect("creating buildkitd's log");
        let log_err = log.try_clone().expect("cloning buildkitd's log handle");
        let search_path =
            std::env::join_paths([path("bin"), buildkit_bin.to_path_buf()].into_iter().chain(
                std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
            ))
            .expect("a PATH");
        // setpriv: SIGTERM to buildkitd when this thread ends, whatever
        // ends it; unshare execs buildkitd, so the child is the daemon.
        let mut command = Command::new("setpriv");
        command
            .args(["--pdeathsig", "TERM", "--"])
            .args(["unshare", "--mount", "--propagation", "private", "--"])
            .arg(buildkit_bin.join("buildkitd"))
            .arg("--config")
            .arg(path("buildkitd.toml"))
            .env("PATH", search_path)
            .env("TMPDIR", path("tmp"))
            .env("DOCKER_CONFIG", path("docker-config"))
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_TRACES_EXPORTER")
            .env_remove("BUILDKIT_DEBUG")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting buildkitd (setpriv, unshare): {e}"));
        BuildKit {
            dir,
            child: Some(child),
            buildctl: buildkit_bin.join("buildctl"),
            cgroup_parent,
            snapshotter,
        }
    }

    /// `unix://<socket>`, buildctl's `--addr`.
    fn address(&self) -> String {
        format!(
            "unix://{}",
            self.dir.path().join("buildkitd.sock").display()
        )
    }

    /// What buildkitd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("buildkitd.log")).unwrap_or_default()
    }

    /// Waits until the daemon lists its worker; the log when it exited or
    /// did not answer within a minute.
    fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("buildkitd exited ({status}):\n{}", self.log()));
            }
            let workers = Command::new(&self.buildctl)
                .arg("--addr")
                .arg(self.address())
                .args(["debug", "workers"])
                .output();
            if workers.is_ok_and(|o| o.status.success() && !o.stdout.is_empty()) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!(
            "buildkitd did not answer within a minute:\n{}",
            self.log()
        ))
    }

    /// Builds `context` with the Dockerfile frontend and `dockerfile`
    /// (anywhere: BuildKit reads it, and a `<name>.dockerignore` beside
    /// it, from its directory) and pushes the image to `destination` in
    /// the plain-HTTP registry.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        &self,
        context: &Path,
        dockerfile: &Path,
        build_args: &[String],
        target: Option<&str>,
        platform: Option<&str>,
        secrets: &[String],
        destination: &str,
    ) -> Result<(), String> {
        let context = context.display().to_string();
        let (Some(dockerfile_dir), Some(filename)) = (dockerfile.parent(), dockerfile.file_name())
        else {
            return Err(format!("{} names no file", dockerfile.display()));
        };
        let mut command = Command::new(&self.buildctl);
        command
            .arg("--addr")
            .arg(self.address())
            .args(["build", "--progress=plain", "--frontend", "dockerfile.v0"])
            .arg(format!("--local=context={context}"))
            .arg(format!("--local=dockerfile={}", dockerfile_dir.display()))
            .arg(format!("--opt=filename={}", filename.to_string_lossy()))
            .args(build_args.iter().map(|a| format!("--opt=build-arg:{a}")))
            .args(target.map(|t| format!("--opt=target={t}")))
            .args(platform.map(|p| format!("--opt=platform={p}")))
            .args(secrets.iter().map(|s| format!("--secret={s}")))
            .arg(format!(
                "--output=type=image,name={destination},push=true,registry.insecure=true"
            ))
            // An empty docker config: the developer's logins never take part.
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"));
        run(&format!("BuildKit build of {context}"), &mut command).map(|_| ())
    }

    /// Stops the daemon (SIGTERM, SIGKILL after 30 s), waits for it, removes
    /// its cgroups, and checks it left nothing behind: no mount, no cgroup,
    /// no process naming its directory. Panics naming what was left.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = i32::try_from(child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                eprintln!("conformance: buildkitd did not stop on SIGTERM within 30s; killed");
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut left = Vec::new();
        let dir = self.dir.path().display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        left.extend(
            mounts
                .lines()
                .filter(|l| l.contains(&dir))
                .map(|l| format!("mount {l}")),
        );
        for hierarchy in cgroup_hierarchies() {
            let parent = hierarchy.join(&self.cgroup_parent);
            remove_cgroup_tree(&parent);
            if parent.exists() {
                left.push(format!("cgroup {}", parent.display()));
            }
        }
        if let Ok(processes) = std::fs::read_dir("/proc") {
            for process in processes.filter_map(Result::ok) {
                let cmdline = std::fs::read(process.path().join("cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains(&dir) {
                    left.push(format!(
                        "process {} {}",
                        process.file_name().to_string_lossy(),
                        String::from_utf8_lossy(&cmdline).replace('\0', " ")
                    ));
                }
            }
        }
        assert!(
            left.is_empty(),
            "buildkitd left these behind after it stopped:\n{}",
            left.join("\n")
        );
    }
}

impl Drop for BuildKit {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Stop without asserting: a second panic would abort.
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            for hierarchy in cgroup_hierarchies() {
                remove_cgroup_tree(&hierarchy.join(&self.cgroup_parent));
            }
        } else {
            self.stop();
        }
    }
}
