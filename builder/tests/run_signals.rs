//! Stopping `kiln` during a RUN, with the real binary on the busybox
//! fixture: SIGTERM and SIGINT kill the step, remove the work directory
//! (which holds the `--secret` file) and exit with 143 or 130 and one
//! line; SIGKILL leaves no step process running (parent-death signal,
//! PID namespace). The step's processes are found by a marker in their
//! command line. Needs root, as --isolation=chroot does; CI runs as root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::TestRegistry;
use support::fixtures;
use support::kiln::{context, context_arg};

/// The start of every secret value these tests pass (each test adds its
/// marker, so tests running side by side tell their files apart).
const SECRET: &str = "s1gn4l-s3cr3t-";

/// Pids of the processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap() {
        let entry = entry.unwrap();
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
            && cmdline
                .windows(marker.len())
                .any(|window| window == marker.as_bytes())
        {
            found.push(pid);
        }
    }
    found
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every entry below `dir`, as paths relative to it.
fn entries(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(dir).unwrap().display().to_string());
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            }
        }
    }
    out
}

/// Files below `dir` (not following links) whose content contains
/// `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in read.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file()
                && let Ok(bytes) = std::fs::read(&path)
                && bytes
                    .windows(needle.len())
                    .any(|window| window == needle.as_bytes())
            {
                out.push(path.display().to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_of_kiln_ends_a_set_user_id_step_too() {
    // The kernel clears a process's parent-death signal when it executes
    // a set-user-ID program that changes its user: the step's command,
    // run as nobody, becomes root here. It must not outlive kiln.
    let mut running = start_build_running(
        10,
        |marker| {
            format!(
                "RUN mkdir /suid && cp /bin/busybox /suid/sleep && chmod 4755 /suid/sleep\n\
                 USER 65534\n\
                 RUN [\"/suid/sleep\", \"{marker}\"]\n"
            )
        },
        1,
    )
    .await;
    let (status, _) = running.stop(rustix::process::Signal::KILL);
    assert_eq!(status.code(), None);
    let start = Instant::now();
    while !processes_with(&running.marker).is_empty() {
        if start.elapsed() > Duration::from_secs(5) {
            // Leave nothing running, then fail.
            let left = processes_with(&running.marker);
            for pid in &left {
                if let Some(pid) = rustix::process::Pid::from_raw(*pid as i32) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            panic!("the set-user-ID step outlived kiln: {left:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `/dev/shm` is a tmpfs, where kiln then writes secrets' files.
fn shm_is_tmpfs() -> bool {
    rustix::fs::statfs("/dev/shm")
        .map(|stat| u64::try_from(stat.f_type).unwrap_or(0) == 0x0102_1994)
        .unwrap_or(false)
}

/// A build whose RUN (with the secret mounted) starts a background and a
/// foreground `sleep` of a unique length, the marker; returns once both
/// run.
struct Running {
    kiln: Child,
    marker: String,
    /// The `--secret` value.
    secret: String,
    tmp: tempfile::TempDir,
    _context: tempfile::TempDir,
    _secret: tempfile::NamedTempFile,
    _registry: TestRegistry,
}

/// `tag` makes the marker unique to the test.
async fn start_build(tag: u32) -> Running {
    start_build_running(
        tag,
        |marker| {
            format!("RUN --mount=type=secret,id=token sh -c 'sleep {marker} & sleep {marker}'\n")
        },
        2,
    )
    .await
}

/// A build whose last instruction is `step(marker)`; returns once
/// `processes` processes with the marker in their command line run.
async fn start_build_running(
    tag: u32,
    step: impl FnOnce(&str) -> String,
    processes: usize,
) -> Running {
    assert_eq!(
        rustix::process::geteuid().as_raw(),
        0,
        "the run_signals tests need root (CI runs as root)"
    );
    let registry = TestRegistry::start();
    let fixtures = fixtures::push_busybox_index(registry.host()).await;
    let marker = format!("{}{tag}", 7_000_000 + std::process::id() % 1_000_000);
    let dockerfile = format!("FROM {}\n{}", fixtures.index, step(&marker));
    let ctx = context(&dockerfile, &[]);
    let secret = tempfile::NamedTempFile::new().unwrap();
    let value = format!("{SECRET}{marker}");
    std::fs::write(secret.path(), &value).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("docker-config");
    std::fs::create_dir(&config).unwrap();
    let kiln = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            context_arg(ctx.path()),
            "--no-push".to_string(),
            "--isolation=sandbox".to_string(),
            format!("--secret=id=token,src={}", secret.path().display()),
        ])
        .env("TMPDIR", tmp.path())
        .env("DOCKER_CONFIG", &config)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("KILN_BUILDER_IMAGE")
        .env_remove("KILN_EMULATION")
        .env_remove("KILN_BUILD_REQUEST")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let running = Running {
        kiln,
        marker,
        secret: value,
        tmp,
        _context: ctx,
        _secret: secret,
        _registry: registry,
    };
    let mut running = running;
    wait_until("the RUN step runs", Duration::from_secs(120), || {
        if let Ok(Some(status)) = running.kiln.try_wait() {
            let mut stderr = String::new();
            let _ = std::io::Read::read_to_string(
                &mut running.kiln.stderr.take().unwrap(),
                &mut stderr,
            );
            panic!("kiln ended ({status}) before the RUN step ran:\n{stderr}");
        }
        processes_with(&running.marker).len() >= processes
    });
    running
}

/// A test that fails half-way still leaves nothing running: kiln gets
/// SIGKILL (its step dies with it), and the secret's file it then leaves
/// on /dev/shm is removed.
impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.kiln.try_wait() {
            let _ = self.kiln.kill();
            let _ = self.kiln.wait();
        }
        for file in files_containing(Path::new("/dev/shm"), &self.secret) {
            if let Some(dir) = Path::new(&file).parent()
                && dir
                    .file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with("kiln-secret-"))
            {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

impl Running {
    /// Sends `signal` to kiln and returns its exit status and stderr.
    fn stop(&mut self, signal: rustix::process::Signal) -> (std::process::ExitStatus, String) {
        let pid = rustix::process::Pid::from_child(&self.kiln);
        rustix::process::kill_process(pid, signal).unwrap();
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.kiln.try_wait().unwrap() {
                break status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "kiln still runs 30 s after {signal:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut self.kiln.stderr.take().unwrap(), &mut stderr).unwrap();
        (status, stderr)
    }

    /// Nothing is left of the build under the TMPDIR it was given: no
    /// work directory, no file holding the secret, no mount.
    fn assert_nothing_left(&self) {
        let left: Vec<String> = entries(self.tmp.path())
            .into_iter()
            .filter(|path| path != "docker-config")
            .collect();
        assert_eq!(left, Vec::<String>::new(), "left under TMPDIR");
        let tmp = self.tmp.path().display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&tmp), "mounts left under {tmp}:\n{mounts}");
    }
}

async fn signal_ends_the_build(signal: rustix::process::Signal, name: &str, code: i32) {
    let mut running = start_build(code as u32).await;
    // While the step runs, the secret's file is in memory (on /dev/shm)
    // when the machine has a tmpfs there, never under TMPDIR then.
    let shm = Path::new("/dev/shm");
    let in_tmp = files_containing(running.tmp.path(), &running.secret);
    if shm_is_tmpfs() {
        assert_eq!(in_tmp, Vec::<String>::new());
        let in_shm = files_containing(shm, &running.secret);
        assert_eq!(in_shm.len(), 1, "{in_shm:?}");
        assert!(in_shm[0].starts_with("/dev/shm/kiln-secret-"), "{in_shm:?}");
    } else {
        assert_eq!(in_tmp.len(), 1, "{in_tmp:?}");
    }
    let (status, stderr) = running.stop(signal);
    assert_eq!(status.code(), Some(code), "stderr:\n{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    // The build's work directory, the step's copies of /etc/hosts and
    // /etc/resolv.conf, and the secret's directory when on /dev/shm.
    let directories = if shm_is_tmpfs() { 3 } else { 2 };
    assert_eq!(
        last,
        format!(
            "error: interrupted by {name}: killed 1 running RUN step(s), removed {directories} \
             temporary directories"
        ),
        "stderr:\n{stderr}"
    );
    assert!(!stderr.contains(&running.secret));
    // clean_up waits for the step to be gone before it removes anything.
    assert_eq!(processes_with(&running.marker), Vec::<u32>::new());
    running.assert_nothing_left();
    assert_eq!(files_containing(shm, &running.secret), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_run_kills_the_step_and_removes_the_work_directory() {
    signal_ends_the_build(rustix::process::Signal::TERM, "SIGTERM", 143).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_during_run_kills_the_step_and_removes_the_work_directory() {
    signal_ends_the_build(rustix::process::Signal::INT, "SIGINT", 130).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_of_kiln_leaves_no_step_process_running() {
    let mut running = start_build(9).await;
    let (status, _) = running.stop(rustix::process::Signal::KILL);
    assert_eq!(status.code(), None);
    wait_until(
        "the step's processes are gone",
        Duration::from_secs(5),
        || processes_with(&running.marker).is_empty(),
    );
    // Nothing runs after a SIGKILL: the secret's file stays, in memory
    // (/dev/shm) when the machine has a tmpfs there. `Running`'s drop
    // removes it.
    if shm_is_tmpfs() {
        let left = files_containing(Path::new("/dev/shm"), &running.secret);
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left[0].starts_with("/dev/shm/kiln-secret-"), "{left:?}");
    }
}
