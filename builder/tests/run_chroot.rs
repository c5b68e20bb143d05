//! `--isolation=chroot` RUN against a real root filesystem: a tiny image
//! made of the host's static busybox (Debian's busybox-static), run for
//! real in namespaces. Needs root, as CI has; fails (does not skip)
//! without it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod busybox_root;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kiln_builder::run::{DEFAULT_PATH, Network, RunOutput, RunSpec, run_in_chroot};

const APPLETS: [&str; 19] = [
    "sh", "echo", "id", "cat", "sleep", "touch", "ls", "mount", "env", "pwd", "true", "head", "wc",
    "seq", "stat", "grep", "kill", "chmod", "rm",
];
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n";
const GROUP: &str = "root:x:0:\nwheel:x:10:app\napp:x:1000:\nstaff:x:50:app\n";
const SENTINEL: &str = "outside the root, never touched";

fn require_root() {
    assert_eq!(
        rustix::process::geteuid().as_raw(),
        0,
        "the run_chroot tests need root (CI runs as root): --isolation=chroot creates namespaces and mounts"
    );
}

/// `<tmp>/rootfs` (busybox, passwd, group; no /proc, /dev, /sys,
/// resolv.conf or hosts) beside `<tmp>/sentinel`.
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
        Image { dir, root }
    }

    /// Runs `spec`, collecting the log; checks that nothing is left
    /// mounted under the root and nothing changed beside it.
    fn run(&self, spec: &RunSpec) -> (RunOutput, Vec<u8>) {
        let (result, log) = self.try_run(spec);
        (result.unwrap(), log)
    }

    fn try_run(&self, spec: &RunSpec) -> (Result<RunOutput, kiln_builder::run::RunError>, Vec<u8>) {
        let mut log = Vec::new();
        let result = run_in_chroot(&self.root, spec, &mut |chunk: &[u8]| {
            log.extend_from_slice(chunk)
        });
        assert_eq!(mounts_under(&self.root), Vec::<String>::new());
        let mut beside: Vec<String> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        beside.sort();
        assert_eq!(beside, ["rootfs", "sentinel"]);
        assert_eq!(
            fs::read_to_string(self.dir.path().join("sentinel")).unwrap(),
            SENTINEL
        );
        (result, log)
    }
}

fn shell(command: &str) -> RunSpec {
    RunSpec::from_shell(&[], command)
}

fn text(log: &[u8]) -> String {
    String::from_utf8(log.to_vec()).unwrap()
}

/// Mount points in this process's mount table at or below `root`.
fn mounts_under(root: &Path) -> Vec<String> {
    let root = fs::canonicalize(root).unwrap();
    let prefix = root.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter_map(|line| line.split(' ').nth(1).map(str::to_string))
        .filter(|target| target == &prefix || target.starts_with(&format!("{prefix}/")))
        .collect()
}

/// Every entry below `root`: path → (kind, mode, uid, gid, size, link
/// target, mtime). Directory sizes are left out (they depend on history).
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let (kind, size, target) = if meta.is_dir() {
                ("dir", 0, String::new())
            } else if meta.file_type().is_symlink() {
                (
                    "link",
                    0,
                    fs::read_link(&path).unwrap().display().to_string(),
                )
            } else {
                ("file", meta.len(), String::new())
            };
            out.insert(
                rel,
                format!(
                    "{kind} {:o} {}:{} {size} {target} {}.{}",
                    meta.mode() & 0o7777,
                    meta.uid(),
                    meta.gid(),
                    meta.mtime(),
                    meta.mtime_nsec()
                ),
            );
            if meta.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    let meta = fs::metadata(root).unwrap();
    out.insert(
        "/".to_string(),
        format!("root {}.{}", meta.mtime(), meta.mtime_nsec()),
    );
    walk(root, root, &mut out);
    out
}

fn interfaces(proc_net_dev: &str) -> Vec<String> {
    proc_net_dev
        .lines()
        .skip(2)
        .filter_map(|line| line.split(':').next())
        .map(|name| name.trim().to_string())
        .collect()
}

#[test]
fn shell_output_is_streamed_and_status_is_zero() {
    let image = Image::new();
    let (out, log) = image.run(&shell("echo hello; echo oops >&2"));
    assert_eq!(out.status, 0);
    assert_eq!(text(&log), "hello\noops\n");
    assert_eq!(out.output_tail, "hello\noops\n");
}

#[test]
fn exit_status_is_returned() {
    let image = Image::new();
    let (out, log) = image.run(&shell("echo before; exit 3"));
    assert_eq!(out.status, 3);
    assert_eq!(text(&log), "before\n");
    assert_eq!(out.output_tail, "before\n");
}

#[test]
fn output_arrives_while_the_command_runs() {
    let image = Image::new();
    let start = Instant::now();
    let mut first_chunk = None;
    let spec = shell("echo early; sleep 2; echo late");
    let out = run_in_chroot(&image.root, &spec, &mut |chunk: &[u8]| {
        if first_chunk.is_none() {
            first_chunk = Some((start.elapsed(), chunk.to_vec()));
        }
    })
    .unwrap();
    let total = start.elapsed();
    let (at, chunk) = first_chunk.unwrap();
    assert_eq!(chunk, b"early\n");
    assert!(
        total - at >= Duration::from_millis(1500),
        "first output at {at:?}, end at {total:?}"
    );
    assert_eq!(out.output_tail, "early\nlate\n");
}

#[test]
fn long_output_keeps_a_64k_tail() {
    let image = Image::new();
    let (out, log) = image.run(&shell("seq 1 30000"));
    let full: String = (1..=30000).map(|n| format!("{n}\n")).collect();
    assert_eq!(out.status, 0);
    assert_eq!(text(&log), full);
    assert_eq!(out.output_tail, full[full.len() - 64 * 1024..]);
}

#[test]
fn environment_is_exactly_the_given_one_plus_path_and_home() {
    let image = Image::new();
    let mut spec = RunSpec::from_exec(vec!["env".to_string()]);
    spec.env = vec![
        ("FOO".to_string(), "bar baz".to_string()),
        ("A".to_string(), "1".to_string()),
        ("FOO".to_string(), "last".to_string()),
    ];
    let (out, log) = image.run(&spec);
    assert_eq!(out.status, 0);
    let mut lines: Vec<String> = text(&log).lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "A=1".to_string(),
            "FOO=last".to_string(),
            "HOME=/root".to_string(),
            format!("PATH={DEFAULT_PATH}"),
        ]
    );

    // A given PATH and HOME are kept; the user's home is the default.
    spec.env = vec![("PATH".to_string(), "/bin".to_string())];
    spec.user = Some("app".to_string());
    let (_, log) = image.run(&spec);
    let mut lines: Vec<String> = text(&log).lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(lines, ["HOME=/home/app", "PATH=/bin"]);
}

#[test]
fn workdir_is_created_for_the_user_and_used() {
    let image = Image::new();
    let mut spec = shell("pwd; touch here");
    spec.workdir = "/work/dir".to_string();
    spec.user = Some("app".to_string());
    let (out, log) = image.run(&spec);
    assert_eq!(out.status, 0);
    assert_eq!(text(&log), "/work/dir\n");
    for dir in ["work", "work/dir"] {
        let meta = fs::metadata(image.root.join(dir)).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (1000, 1000, 0o755),
            "{dir}"
        );
    }
    let made = fs::metadata(image.root.join("work/dir/here")).unwrap();
    assert_eq!(
        (made.uid(), made.gid(), made.mode() & 0o777),
        (1000, 1000, 0o644)
    );
}

#[test]
fn user_app_gets_its_ids_and_groups() {
    let image = Image::new();
    // The kernel's list (sorted) shows the supplementary groups exactly;
    // `id -G` would add the primary group in any case.
    let mut spec = shell("id -u; id -g; grep ^Groups: /proc/self/status");
    spec.user = Some("app".to_string());
    let (out, log) = image.run(&spec);
    assert_eq!(out.status, 0);
    // The primary group is a supplementary group too, as in Docker and
    // buildah.
    assert_eq!(text(&log), "1000\n1000\nGroups:\t10 50 1000 \n");

    spec.user = Some("1000:50".to_string());
    let (_, log) = image.run(&spec);
    assert_eq!(text(&log), "1000\n50\nGroups:\t50 \n");

    spec.user = None;
    let (_, log) = image.run(&spec);
    assert_eq!(text(&log), "0\n0\nGroups:\t0 \n");
}

#[test]
fn missing_user_is_an_error_naming_it() {
    let image = Image::new();
    let mut spec = shell("true");
    spec.user = Some("ghost".to_string());
    let (result, log) = image.try_run(&spec);
    assert_eq!(
        result.map_err(|e| e.to_string()),
        Err(
            "USER ghost: unable to find user ghost: no matching entries in passwd file".to_string()
        )
    );
    assert_eq!(log, b"");
}

#[test]
fn missing_shell_is_a_clear_error() {
    let image = Image::new();
    fs::remove_file(image.root.join("bin/sh")).unwrap();
    let before = tree(&image.root);
    let (result, _) = image.try_run(&shell("true"));
    assert_eq!(
        result.map_err(|e| e.to_string()),
        Err("exec /bin/sh: no such file or directory in the image".to_string())
    );
    assert_eq!(tree(&image.root), before);

    let (result, _) = image.try_run(&RunSpec::from_exec(vec!["make".to_string()]));
    assert_eq!(
        result.map_err(|e| e.to_string()),
        Err(format!(
            "exec make: executable file not found in $PATH ({DEFAULT_PATH}) in the image"
        ))
    );
}

#[test]
fn missing_interpreter_is_reported_with_a_hint() {
    let image = Image::new();
    fs::write(image.root.join("bin/script"), "#!/bin/bash\necho hi\n").unwrap();
    fs::set_permissions(
        image.root.join("bin/script"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let before = tree(&image.root);
    let (result, log) = image.try_run(&RunSpec::from_exec(vec!["script".to_string()]));
    assert_eq!(
        result.map_err(|e| e.to_string()),
        Err(
            "exec script in the image: No such file or directory (os error 2) (the script's \
             interpreter or the binary's dynamic loader is missing in the image)"
                .to_string()
        )
    );
    assert_eq!(log, b"");
    assert_eq!(tree(&image.root), before);
}

#[test]
fn workdir_that_is_a_file_is_an_error() {
    let image = Image::new();
    let mut spec = shell("true");
    spec.workdir = "/etc/passwd".to_string();
    let (result, _) = image.try_run(&spec);
    assert_eq!(
        result.map_err(|e| e.to_string()),
        Err("WORKDIR /etc/passwd exists in the image and is not a directory".to_string())
    );
}

#[test]
fn proc_is_the_steps_own() {
    let image = Image::new();
    let (out, log) = image.run(&shell(
        "echo $$; grep '^Name:' /proc/self/status; ls /proc | grep -c '^[0-9]'; \
         printf '[%s]' \"$(tr '\\0' ' ' < /proc/1/cmdline)\"; \
         cat /proc/1/environ >/dev/null 2>&1 || echo ' environ closed'",
    ));
    assert_eq!(out.status, 0);
    // PID 2 below the step's init, in a PID namespace of their own: /proc
    // lists the init, the shell and the two processes of the pipe. The
    // init, a copy of kiln, shows no command line and hides its
    // environment.
    let log = text(&log);
    let mut lines = log.lines();
    assert_eq!(lines.next(), Some("2"), "{log}");
    assert_eq!(lines.next(), Some("Name:\tgrep"), "{log}");
    assert_eq!(lines.next(), Some("4"), "{log}");
    let last = lines.next().unwrap_or_default();
    assert!(
        last.starts_with('[') && last.ends_with("] environ closed"),
        "{log}"
    );
    assert!(
        last.trim_start_matches('[')
            .trim_end_matches("] environ closed")
            .trim()
            .is_empty(),
        "the init's command line is visible: {log}"
    );
}

#[test]
fn dev_has_the_usual_nodes_only() {
    let image = Image::new();
    let host_null = fs::metadata("/dev/null").unwrap().mode();
    let (out, log) = image.run(&shell(
        "ls /dev; echo x > /dev/null; head -c 5 /dev/zero | wc -c; head -c 3 /dev/urandom | wc -c; \
         stat -c '%A %t,%T' /dev/null /dev/tty; chmod 600 /dev/null && rm /dev/zero && echo changed",
    ));
    assert_eq!(out.status, 0);
    assert_eq!(
        text(&log),
        "fd\nfull\nnull\nptmx\npts\nrandom\nshm\nstderr\nstdin\nstdout\ntty\nurandom\nzero\n5\n3\n\
         crw-rw-rw- 1,3\ncrw-rw-rw- 5,0\nchanged\n"
    );
    // The step changed its own nodes, not the host's.
    assert_eq!(fs::metadata("/dev/null").unwrap().mode(), host_null);
    assert!(Path::new("/dev/zero").exists());
}

#[test]
fn sys_is_read_only() {
    let image = Image::new();
    let (out, log) = image.run(&shell(
        "cat /sys/class/net/lo/flags; touch /sys/x 2>/dev/null || echo refused",
    ));
    assert_eq!(out.status, 0);
    assert_eq!(text(&log), "0x9\nrefused\n");
}

#[test]
fn hosts_files_are_seen_inside_and_leave_nothing_behind() {
    let image = Image::new();
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap();
    let host_hosts = fs::read_to_string("/etc/hosts").unwrap();
    let before = tree(&image.root);

    let (out, log) = image.run(&shell(
        "cat /etc/resolv.conf /etc/hosts; echo 'nameserver 192.0.2.1' > /etc/resolv.conf; touch /made-by-run",
    ));
    assert_eq!(out.status, 0);
    assert_eq!(text(&log), format!("{host_resolv}{host_hosts}"));
    assert_eq!(
        out.created_mount_points,
        ["/proc", "/dev", "/sys", "/etc/resolv.conf", "/etc/hosts"]
    );
    // The write went to a private copy: the host's file is as it was.
    assert_eq!(fs::read_to_string("/etc/resolv.conf").unwrap(), host_resolv);

    // Only what the command wrote: /made-by-run (and so the root's mtime).
    let mut after = tree(&image.root);
    let made = after.remove("made-by-run").unwrap();
    assert!(made.starts_with("file 644 0:0 0 "), "{made}");
    after.remove("/");
    let mut expected = before.clone();
    expected.remove("/");
    assert_eq!(after, expected);

    // A command that writes nothing leaves the tree exactly as it was,
    // directory times included.
    let before = tree(&image.root);
    let (out, _) = image.run(&shell("true"));
    assert_eq!(out.status, 0);
    assert_eq!(tree(&image.root), before);
}

#[test]
fn existing_image_files_are_mounted_over_and_kept() {
    let image = Image::new();
    for dir in ["proc", "dev", "sys"] {
        fs::create_dir(image.root.join(dir)).unwrap();
    }
    fs::write(
        image.root.join("etc/resolv.conf"),
        "nameserver 192.0.2.53\n",
    )
    .unwrap();
    fs::write(image.root.join("etc/hosts"), "127.0.0.1 image\n").unwrap();
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap();
    let before = tree(&image.root);

    let (out, log) = image.run(&shell("cat /etc/resolv.conf"));
    assert_eq!(text(&log), host_resolv);
    assert_eq!(out.created_mount_points, Vec::<String>::new());
    assert_eq!(tree(&image.root), before);

    let mut spec = shell("cat /etc/resolv.conf");
    spec.hosts_files = false;
    let (out, log) = image.run(&spec);
    assert_eq!(text(&log), "nameserver 192.0.2.53\n");
    assert_eq!(out.created_mount_points, Vec::<String>::new());
}

#[test]
fn files_written_by_the_command_stay_in_the_root() {
    let image = Image::new();
    let (out, _) = image.run(&shell("touch /made-by-run; echo data > /etc/app.conf"));
    assert_eq!(out.status, 0);
    assert!(image.root.join("made-by-run").is_file());
    assert_eq!(
        fs::read_to_string(image.root.join("etc/app.conf")).unwrap(),
        "data\n"
    );
}

#[test]
fn network_none_has_only_loopback() {
    let image = Image::new();
    let mut spec = shell("cat /proc/net/dev; echo; cat /sys/class/net/lo/flags");
    spec.network = Network::None;
    let (out, log) = image.run(&spec);
    assert_eq!(out.status, 0);
    let log = text(&log);
    let (dev, flags) = log.split_once("\n\n").unwrap();
    assert_eq!(interfaces(dev), ["lo"]);
    assert_eq!(flags, "0x9\n");

    // The default network is the host's.
    let (_, log) = image.run(&shell("cat /proc/net/dev"));
    let host = fs::read_to_string("/proc/net/dev").unwrap();
    assert_eq!(interfaces(&text(&log)), interfaces(&host));
}

#[test]
fn background_processes_do_not_outlive_the_step() {
    let image = Image::new();
    let start = Instant::now();
    let (out, log) = image.run(&shell("sleep 987651 & echo started"));
    assert_eq!(out.status, 0);
    assert_eq!(text(&log), "started\n");
    assert!(start.elapsed() < Duration::from_secs(30));
    let leftovers: Vec<String> = fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let path = e.ok()?.path().join("cmdline");
            let cmdline = fs::read(&path).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains("987651").then_some(cmdline)
        })
        .collect();
    assert_eq!(leftovers, Vec::<String>::new());
}

#[test]
fn mounts_inside_are_the_steps_own() {
    let image = Image::new();
    let (out, log) = image.run(&shell("cat /proc/mounts"));
    assert_eq!(out.status, 0);
    let log = text(&log);
    let mounts: Vec<(&str, &str, bool)> = log
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            (fields[1], fields[2], fields[3].starts_with("ro,"))
        })
        .collect();
    // Only what kiln mounted is visible from inside the root: the root
    // itself (a bind of the image's directory, whose filesystem varies),
    // /dev, /sys and /proc with the parts runtimes make read-only or
    // mask (those this kernel has). The host files are bound from private
    // copies, whose filesystem varies too.
    let (fixed, copies): (Vec<_>, Vec<_>) = mounts
        .into_iter()
        .partition(|(target, _, _)| !target.starts_with("/etc/"));
    assert_eq!(fixed.first().map(|m| (m.0, m.2)), Some(("/", false)));
    let exists = |path: &str| fs::symlink_metadata(path).is_ok();
    let mut want = vec![
        ("/dev", "tmpfs", false),
        ("/dev/pts", "devpts", false),
        ("/dev/shm", "tmpfs", false),
        ("/sys", "sysfs", true),
    ];
    for masked in ["/sys/firmware", "/sys/devices/virtual/powercap"] {
        if exists(masked) {
            want.push((masked, "tmpfs", true));
        }
    }
    want.push(("/proc", "proc", false));
    for read_only in [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ] {
        if exists(read_only) {
            want.push((read_only, "proc", true));
        }
    }
    // Directories under an empty read-only tmpfs, files under the root's
    // /dev/null (a node on the /dev tmpfs).
    for masked in [
        "/proc/acpi",
        "/proc/asound",
        "/proc/interrupts",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/proc/timer_list",
    ] {
        if exists(masked) {
            want.push((masked, "tmpfs", Path::new(masked).is_dir()));
        }
    }
    assert_eq!(fixed[1..], want);
    let copies: Vec<&str> = copies.iter().map(|(target, _, _)| *target).collect();
    assert_eq!(copies, ["/etc/resolv.conf", "/etc/hosts"]);
}

/// Without CAP_SYS_ADMIN (as in an unprivileged container) the kernel
/// refuses the mount namespace. The test re-runs itself through
/// util-linux's `setpriv` with the capability dropped from the bounding
/// set, which root's next exec then lacks.
#[test]
fn refused_namespaces_suggest_inplace_isolation() {
    const INNER: &str = "KILN_RUN_CHROOT_WITHOUT_SYS_ADMIN";
    if std::env::var_os(INNER).is_some() {
        let image = Image::new();
        let before = tree(&image.root);
        let (result, log) = image.try_run(&shell("true"));
        assert_eq!(
            result.map_err(|e| e.to_string()),
            Err(
                "--isolation=sandbox needs a new mount namespace and the kernel refused it \
                 (unshare: Operation not permitted (os error 1)): kiln needs to run as root or \
                 with CAP_SYS_ADMIN for --isolation=sandbox; inside a container, use \
                 --isolation=inplace"
                    .to_string()
            )
        );
        assert_eq!(log, b"");
        assert_eq!(tree(&image.root), before);
        return;
    }
    require_root();
    let out = std::process::Command::new("setpriv")
        .args(["--bounding-set", "-sys_admin", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "refused_namespaces_suggest_inplace_isolation",
            "--nocapture",
        ])
        .env(INNER, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "inner run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
