//! `--isolation=chroot` (the sandbox) against hostile steps: a static
//! program (`fixtures/sandbox/escape.c`, built with `gcc -static`) tries
//! the known ways out, as root and, installed set-user-ID root, as a
//! non-root `USER`. Needs root, gcc and the static C library (Debian's
//! `libc6-dev`), busybox-static; fails (does not skip) without them.
//!
//! The attempts that would change something shared (the hostname, the
//! domain name) run in a re-execution of this test inside a throw-away
//! UTS namespace (util-linux `unshare --uts`); the outer test checks that
//! the machine's hostname and domain name are unchanged afterwards. The
//! files an escape would reach are in the test's temporary directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod busybox_root;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_builder::run::{RunOutput, RunSpec, run_in_chroot};

const APPLETS: [&str; 6] = ["sh", "cat", "grep", "readlink", "id", "hostname"];
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n";
const GROUP: &str = "root:x:0:\napp:x:1000:\n";
const SENTINEL: &str = "outside the root";
/// Set in the re-executed test that runs in a throw-away UTS namespace.
const INNER: &str = "KILN_RUN_SANDBOX_INNER";

fn require_root() {
    assert_eq!(
        rustix::process::geteuid().as_raw(),
        0,
        "the run_sandbox tests need root (CI runs as root)"
    );
}

/// `<tmp>/rootfs` (busybox, passwd, group, `/bin/escape` set-user-ID
/// root) beside `<tmp>/sentinel`.
struct Image {
    dir: tempfile::TempDir,
    root: PathBuf,
}

impl Image {
    fn new() -> Image {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        let root = busybox_root::rootfs(dir.path(), &APPLETS, PASSWD, GROUP);
        fs::write(dir.path().join("sentinel"), SENTINEL).unwrap();
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sandbox/escape.c");
        let escape = root.join("bin/escape");
        let gcc = Command::new("gcc")
            .args(["-static", "-O1", "-o"])
            .arg(&escape)
            .arg(&source)
            .output()
            .expect("run gcc (the run_sandbox tests build a static C program)");
        assert!(
            gcc.status.success(),
            "gcc -static failed (install gcc and libc6-dev):\n{}",
            String::from_utf8_lossy(&gcc.stderr)
        );
        std::os::unix::fs::chown(&escape, Some(0), Some(0)).unwrap();
        fs::set_permissions(&escape, fs::Permissions::from_mode(0o4755)).unwrap();
        Image { dir, root }
    }

    fn run(&self, spec: &RunSpec) -> (RunOutput, String) {
        let mut log = Vec::new();
        let out = run_in_chroot(&self.root, spec, &mut |chunk: &[u8]| {
            log.extend_from_slice(chunk)
        })
        .unwrap();
        (out, String::from_utf8(log).unwrap())
    }
}

fn as_user(mut spec: RunSpec, user: Option<&str>) -> RunSpec {
    spec.user = user.map(str::to_string);
    spec
}

fn uts_names() -> (String, String) {
    (
        fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        fs::read_to_string("/proc/sys/kernel/domainname").unwrap(),
    )
}

/// Runs the test `name` again in a new UTS namespace, where `inner` does
/// the work; checks the machine's names did not change.
fn in_throwaway_uts(name: &str, inner: fn()) {
    if std::env::var_os(INNER).is_some() {
        inner();
        return;
    }
    require_root();
    let before = uts_names();
    let out = Command::new("unshare")
        .args(["--uts", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INNER, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "inner run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        uts_names(),
        before,
        "the machine's hostname or domain name changed"
    );
}

/// Runs `/bin/escape` as `user` and checks every attempt was refused or
/// contained, and nothing outside the root (the sentinel's directory, the
/// names of the UTS namespace kiln runs in) changed.
fn escape_attempts_fail(user: Option<&str>, ids: &str) {
    let image = Image::new();
    let names = uts_names();
    let sentinel = image.dir.path().join("sentinel");
    let create = image.dir.path().join("escaped");
    let spec = as_user(
        RunSpec::from_exec(vec![
            "/bin/escape".to_string(),
            std::process::id().to_string(),
            sentinel.display().to_string(),
            create.display().to_string(),
        ]),
        user,
    );
    let (out, log) = image.run(&spec);
    assert_eq!(
        log,
        format!(
            "ids: {ids}\n\
             proc-sys write: refused\n\
             sethostname: refused\n\
             mount: refused\n\
             unshare user namespace: refused\n\
             ptrace kiln: refused\n\
             chroot escape: contained\n\
             host write: contained\n\
             /proc/1/root: contained\n\
             kiln's memory through /proc: refused\n"
        )
    );
    assert_eq!(out.status, 0);
    assert!(!create.exists(), "the step created {}", create.display());
    assert_eq!(fs::read_to_string(&sentinel).unwrap(), SENTINEL);
    assert_eq!(
        uts_names(),
        names,
        "the step changed kiln's hostname or domain name"
    );
}

#[test]
fn root_step_cannot_escape() {
    in_throwaway_uts("root_step_cannot_escape", || {
        escape_attempts_fail(None, "uid=0 euid=0")
    });
}

#[test]
fn non_root_step_cannot_escape_through_a_setuid_binary() {
    in_throwaway_uts(
        "non_root_step_cannot_escape_through_a_setuid_binary",
        || escape_attempts_fail(Some("app"), "uid=1000 euid=0"),
    );
}

#[test]
fn hostname_and_ipc_are_the_steps_own() {
    let image = Image::new();
    let host_ipc = fs::read_link("/proc/self/ns/ipc").unwrap();
    let host_uts = fs::read_link("/proc/self/ns/uts").unwrap();
    let (out, log) = image.run(&RunSpec::from_shell(
        &[],
        "hostname; readlink /proc/self/ns/ipc; readlink /proc/self/ns/uts",
    ));
    assert_eq!(out.status, 0);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert_eq!(lines[0], "kiln");
    assert!(lines[1].starts_with("ipc:["), "{log}");
    assert_ne!(Path::new(lines[1]), host_ipc);
    assert!(lines[2].starts_with("uts:["), "{log}");
    assert_ne!(Path::new(lines[2]), host_uts);
}

/// Docker's default capability set (0xa80425fb) for root, none for
/// another user, the same bounding set for both, no `no_new_privs` (so
/// `su` and `sudo` work, as in `docker build`) and a seccomp filter.
#[test]
fn capabilities_are_a_runtimes_default() {
    let image = Image::new();
    let command = "grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status";
    let status = |effective: &str| {
        format!(
            "CapInh:\t0000000000000000\n\
             CapPrm:\t{effective}\n\
             CapEff:\t{effective}\n\
             CapBnd:\t00000000a80425fb\n\
             CapAmb:\t0000000000000000\n\
             NoNewPrivs:\t0\n\
             Seccomp:\t2\n"
        )
    };
    let (out, log) = image.run(&RunSpec::from_shell(&[], command));
    assert_eq!(out.status, 0);
    assert_eq!(log, status("00000000a80425fb"));
    let (out, log) = image.run(&as_user(RunSpec::from_shell(&[], command), Some("app")));
    assert_eq!(out.status, 0);
    assert_eq!(log, status("0000000000000000"));
}

/// `/proc/sys` is read-only and `/proc/kcore`, `/proc/keys`, … show
/// nothing, even to root. (In a throw-away UTS namespace: a regression
/// would write the domain name.)
#[test]
fn proc_is_masked_as_runtimes_do() {
    in_throwaway_uts("proc_is_masked_as_runtimes_do", proc_is_masked);
}

fn proc_is_masked() {
    let image = Image::new();
    let (out, log) = image.run(&RunSpec::from_shell(
        &[],
        "echo 1 > /proc/sys/kernel/domainname || echo refused; \
         cat /proc/keys /proc/timer_list /proc/interrupts | grep -c . ; \
         cat /proc/sys/kernel/hostname",
    ));
    assert_eq!(out.status, 0);
    assert_eq!(
        log,
        "/bin/sh: can't create /proc/sys/kernel/domainname: Read-only file system\nrefused\n0\nkiln\n"
    );
}
