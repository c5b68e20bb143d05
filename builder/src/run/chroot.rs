//! `--isolation=chroot`, the sandbox: prepare the root, start the command
//! from a set-up thread in new namespaces (`pivot_root`, capabilities,
//! seccomp: see the module documentation of `run`), stream its output,
//! clean up.

use std::ffi::CString;
use std::fs;
use std::io::{self, PipeReader};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use tempfile::TempDir;

use super::exec::{command_env, ensure_workdir, exec_hint, path_of, resolve_executable};
use super::mounts::{MountPlan, PlannedMount, mount_all};
use super::output::supervise;
use super::stubs::{MountPoint, StubKind, Stubs};
use super::sys::{self, ChildPlan, ChildStep, Namespace};
use super::{MountSource, Network, RunError, RunMount, RunOutput, RunSpec};
use crate::fs::{ExecUser, clean_image_path, resolve_exec_user};

/// The host files a RUN sees copies of, when [`RunSpec::hosts_files`].
const HOST_FILES: [&str; 2] = ["/etc/resolv.conf", "/etc/hosts"];

/// Parts of `/proc` a step may read but not write, as runc's default
/// spec has them (`readonlyPaths`).
const PROC_READ_ONLY: [&str; 5] = ["bus", "fs", "irq", "sys", "sysrq-trigger"];

/// Parts of `/proc` a step does not see, as runc's default spec has them
/// (`maskedPaths`): kernel memory, keys, timers, scheduler and hardware
/// details.
const PROC_MASKED: [&str; 9] = [
    "acpi",
    "asound",
    "interrupts",
    "kcore",
    "keys",
    "latency_stats",
    "sched_debug",
    "scsi",
    "timer_list",
];

/// Runs `spec` in a sandbox whose root is `rootfs` and returns its exit
/// status and the tail of its output; the output is also passed to `log`
/// as it arrives.
///
/// The command runs in private mount, PID, UTS and IPC namespaces (and a
/// network namespace with only loopback for [`Network::None`]), after
/// `pivot_root` into `rootfs`, with `/proc`, `/dev`, `/sys` and, with
/// [`RunSpec::hosts_files`], copies of the host's `/etc/resolv.conf` and
/// `/etc/hosts` mounted inside the root; all of them disappear when the
/// step's last process exits. Everything the step started is killed when
/// the command exits. See the module documentation for the details.
///
/// An exit status other than 0 is `Ok`; errors are for a command that
/// could not be started.
pub fn run_in_chroot(
    rootfs: &Path,
    spec: &RunSpec,
    log: &mut dyn FnMut(&[u8]),
) -> Result<RunOutput, RunError> {
    let name = spec.argv.first().ok_or(RunError::EmptyCommand)?.clone();
    if let Some(arg) = spec.argv.iter().find(|arg| arg.contains('\0')) {
        return Err(RunError::InvalidArg { arg: arg.clone() });
    }
    let root =
        fs::canonicalize(rootfs).map_err(RunError::io("open the root filesystem", rootfs))?;
    let user_spec = spec.user.as_deref().unwrap_or("0");
    let user = resolve_exec_user(&root, user_spec).map_err(|source| RunError::User {
        user: user_spec.to_string(),
        source,
    })?;
    let env = command_env(&spec.env_with_secrets(), &user.home)?;
    let workdir = format!("/{}", clean_image_path(Path::new(&spec.workdir)).display());
    ensure_workdir(&root, &workdir, user.uid, user.gid)?;
    let program = resolve_executable(&root, &name, path_of(&env), &workdir)?;
    let command = Resolved {
        name,
        program,
        env,
        workdir,
        user,
    };

    let mut stubs = Stubs::default();
    let result = mount_and_run(&root, spec, command, &mut stubs, log);
    let created_mount_points = stubs.image_paths();
    for (path, why) in stubs.remove() {
        tracing::warn!(%path, %why, "RUN: mount point kept in the root filesystem");
    }
    let (status, output_tail) = result?;
    Ok(RunOutput {
        status,
        output_tail,
        created_mount_points,
    })
}

/// The command as resolved in the image, before anything is mounted.
struct Resolved {
    name: String,
    /// In-image path of the executable.
    program: String,
    env: Vec<(String, String)>,
    /// Clean absolute in-image path, existing.
    workdir: String,
    user: ExecUser,
}

/// Everything the set-up thread needs, owned. Not `Debug`: `env` may
/// hold secrets.
struct Launch {
    name: String,
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    network: Network,
    child: ChildPlan,
    mounts: MountPlan,
}

/// The started command.
struct Started {
    child: Child,
    output: PipeReader,
}

/// Creates the mount points (recorded in `stubs`, which the caller
/// removes whatever happens), starts the command and supervises it.
fn mount_and_run(
    root: &Path,
    spec: &RunSpec,
    command: Resolved,
    stubs: &mut Stubs,
    log: &mut dyn FnMut(&[u8]),
) -> Result<(i32, String), RunError> {
    let proc = mount_point(root, stubs, "/proc", StubKind::Directory)?;
    let dev = mount_point(root, stubs, "/dev", StubKind::Directory)?;
    let sys = match stubs.ensure(root, "/sys", StubKind::Directory)? {
        MountPoint::Ready(path) => Some(path),
        MountPoint::Blocked(existing) => {
            tracing::warn!(path = %existing.display(), "RUN: /sys is not a directory in the image; the step runs without it");
            None
        }
    };
    // Kept until the command is done: the copies are mounted in the root.
    // Registered so that a SIGTERM of kiln removes them too.
    let (_copies, files) = if spec.hosts_files {
        let (dir, files) = host_file_copies(root, stubs)?;
        let registered = super::interrupt::directory(dir.path());
        (Some((registered, dir)), files)
    } else {
        (None, Vec::new())
    };
    let run_mounts = run_mount_points(root, stubs, &spec.mounts)?;
    let below = |dir: &Path, names: &[&str]| -> Result<Vec<CString>, RunError> {
        names
            .iter()
            .map(|name| c_string(dir.join(name).as_os_str().as_bytes()))
            .collect()
    };
    let launch = Launch {
        child: ChildPlan {
            proc_target: c_string(proc.as_os_str().as_bytes())?,
            proc_read_only: below(&proc, &PROC_READ_ONLY)?,
            proc_masked: below(&proc, &PROC_MASKED)?,
            dev_null: c_string(dev.join("null").as_os_str().as_bytes())?,
            root: c_string(root.as_os_str().as_bytes())?,
            workdir: c_string(command.workdir.as_bytes())?,
            uid: command.user.uid,
            gid: command.user.gid,
            groups: command.user.additional_gids,
        },
        mounts: MountPlan {
            root: root.to_path_buf(),
            dev,
            sys,
            files,
            run_mounts,
        },
        name: command.name,
        program: command.program,
        args: spec.argv[1..].to_vec(),
        env: command.env,
        network: spec.network,
    };
    let name = launch.name.clone();
    let thread_error = |detail: String| RunError::Thread {
        name: name.clone(),
        detail,
    };
    // The set-up thread reports the started command, then waits until
    // `step_over` is dropped: the command's parent-death signal fires
    // when the thread that forked it ends, so the thread must outlive
    // the step, and end with kiln.
    let (report, started) = mpsc::channel();
    let (step_over, wait_for_end) = mpsc::channel::<()>();
    let setup = std::thread::Builder::new()
        .name("kiln-run-setup".to_string())
        .spawn(move || {
            let started = start_in_namespaces(launch);
            let is_running = started.is_ok();
            let _ = report.send(started);
            if is_running {
                let _ = wait_for_end.recv();
            }
        })
        .map_err(|err| thread_error(err.to_string()))?;
    let result = match started.recv() {
        Ok(Ok(started)) => {
            supervise(started.child, started.output, log).map_err(|source| RunError::Supervise {
                name: name.clone(),
                op: "read the command's output or wait for it",
                source,
            })
        }
        Ok(Err(err)) => Err(err),
        Err(_) => Err(thread_error("panicked".to_string())),
    };
    drop(step_over);
    setup
        .join()
        .map_err(|_| thread_error("panicked".to_string()))?;
    result
}

/// The host path to mount `image_path` on, created as a stub if missing.
fn mount_point(
    root: &Path,
    stubs: &mut Stubs,
    image_path: &'static str,
    kind: StubKind,
) -> Result<PathBuf, RunError> {
    match stubs.ensure(root, image_path, kind)? {
        MountPoint::Ready(path) => Ok(path),
        MountPoint::Blocked(existing) => Err(RunError::MountPointBlocked {
            mount: image_path,
            existing,
            kind: kind.name(),
        }),
    }
}

/// The `RUN --mount`s with their mount points in the root (created as
/// stubs where missing: a directory, or a file for a file source),
/// parents before children.
fn run_mount_points(
    root: &Path,
    stubs: &mut Stubs,
    mounts: &[RunMount],
) -> Result<Vec<PlannedMount>, RunError> {
    let mut ordered: Vec<&RunMount> = mounts.iter().collect();
    ordered.sort_by_key(|mount| mount.target.matches('/').count());
    let mut planned = Vec::with_capacity(ordered.len());
    for mount in ordered {
        let kind = match mount.source {
            MountSource::File(_) => StubKind::File,
            MountSource::Directory(_) | MountSource::Tmpfs { .. } => StubKind::Directory,
        };
        match stubs.ensure(root, &mount.target, kind)? {
            MountPoint::Ready(target) => planned.push(PlannedMount {
                source: mount.source.clone(),
                target,
                read_only: mount.read_only,
            }),
            MountPoint::Blocked(existing) => {
                return Err(RunError::MountTargetBlocked {
                    target: mount.target.clone(),
                    existing,
                    kind: kind.name(),
                });
            }
        }
    }
    Ok(planned)
}

/// Private copies of the host's resolv.conf and hosts in a temporary
/// directory, each paired with the file in the root to bind it over. A
/// host file that is missing, or an image path blocked by a directory, is
/// skipped with a warning.
fn host_file_copies(
    root: &Path,
    stubs: &mut Stubs,
) -> Result<(TempDir, Vec<(PathBuf, PathBuf)>), RunError> {
    let dir = crate::work_root::temp_dir("kiln-run-", None)?;
    let mut files = Vec::new();
    for host_file in HOST_FILES {
        let content = match fs::read(host_file) {
            Ok(content) => content,
            Err(err) => {
                tracing::warn!(file = host_file, %err, "RUN: the host's file is not readable; the step does not get it");
                continue;
            }
        };
        let copy = dir
            .path()
            .join(Path::new(host_file).file_name().unwrap_or_default());
        fs::write(&copy, content).map_err(RunError::io("write", &copy))?;
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o644))
            .map_err(RunError::io("set mode of", &copy))?;
        match stubs.ensure(root, host_file, StubKind::File)? {
            MountPoint::Ready(target) => files.push((copy, target)),
            MountPoint::Blocked(existing) => {
                tracing::warn!(path = %existing.display(), "RUN: not a file in the image; the host's {host_file} is not mounted");
            }
        }
    }
    Ok((dir, files))
}

/// Runs on the set-up thread: new namespaces for this thread, mounts, and
/// the fork of the step's init (PID 1 of the new PID namespace), which forks the command.
/// The thread ends right after; its namespaces live on in the command.
fn start_in_namespaces(launch: Launch) -> Result<Started, RunError> {
    let refused = |namespace: Namespace| {
        move |source| RunError::NamespacesRefused {
            namespace: namespace.name(),
            source,
        }
    };
    sys::unshare(Namespace::Mount).map_err(refused(Namespace::Mount))?;
    sys::unshare(Namespace::Pid).map_err(refused(Namespace::Pid))?;
    sys::unshare(Namespace::Uts).map_err(refused(Namespace::Uts))?;
    sys::unshare(Namespace::Ipc).map_err(refused(Namespace::Ipc))?;
    if let Err(err) = sys::unshare(Namespace::Cgroup) {
        tracing::warn!(%err, "RUN: no cgroup namespace; the step sees the host's cgroup paths");
    }
    if launch.network == Network::None {
        sys::unshare(Namespace::Network).map_err(refused(Namespace::Network))?;
    }
    sys::set_hostname(sys::HOSTNAME).map_err(RunError::io(
        "set the hostname",
        "in the RUN's UTS namespace",
    ))?;
    sys::make_mounts_private()
        .map_err(RunError::io("make mount propagation private below", "/"))?;
    mount_all(&launch.mounts)?;
    if launch.network == Network::None {
        sys::loopback_up().map_err(RunError::io(
            "bring up loopback",
            "in the RUN's network namespace",
        ))?;
    }

    let (output, writer) = io::pipe().map_err(RunError::io("create", "the output pipe"))?;
    let stderr = writer
        .try_clone()
        .map_err(RunError::io("duplicate", "the output pipe"))?;
    let mut cmd = Command::new(&launch.program);
    cmd.arg0(&launch.name)
        .args(&launch.args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(stderr)
        .process_group(0);
    let root = PathBuf::from(std::ffi::OsStr::from_bytes(launch.child.root.as_bytes()));
    let describe = step_descriptions(&launch.child);
    let reports = sys::install_child_setup(&mut cmd, launch.child)
        .map_err(RunError::io("create", "the set-up report pipe"))?;
    let spawned = cmd.spawn();
    // Closes this process's ends of the output and report pipes.
    drop(cmd);
    let reports =
        sys::read_child_reports(reports).map_err(RunError::io("read", "the set-up report pipe"))?;
    let mut fatal = None;
    for report in reports {
        if report.step == ChildStep::ProcInstance {
            tracing::warn!(err = %report.error, "RUN: a new /proc instance was refused; the host's /proc is bound instead");
        } else {
            fatal.get_or_insert(report);
        }
    }
    match (spawned, fatal) {
        (Ok(child), _) => Ok(Started { child, output }),
        (Err(_), Some(report)) => Err(RunError::ChildSetup {
            root,
            step: describe(report.step),
            source: report.error,
        }),
        (Err(source), None) => Err(RunError::Exec {
            hint: exec_hint(&source),
            name: launch.name,
            source,
        }),
    }
}

/// Words for the child's set-up steps, naming their inputs.
fn step_descriptions(plan: &ChildPlan) -> impl Fn(ChildStep) -> String + use<> {
    let proc_target = String::from_utf8_lossy(plan.proc_target.as_bytes()).into_owned();
    let workdir = String::from_utf8_lossy(plan.workdir.as_bytes()).into_owned();
    let (uid, gid, groups) = (plan.uid, plan.gid, plan.groups.clone());
    move |step| match step {
        ChildStep::ProcInstance | ChildStep::MountProc => format!("mount proc on {proc_target}"),
        ChildStep::ProcReadOnly => format!("make parts of {proc_target} read-only"),
        ChildStep::ProcMask => format!("mask parts of {proc_target}"),
        ChildStep::PivotRoot => "pivot_root into the root filesystem".to_string(),
        ChildStep::Chdir => format!("change directory to WORKDIR {workdir}"),
        ChildStep::SetGroups => format!("set supplementary groups {groups:?}"),
        ChildStep::SetGid => format!("set group id {gid}"),
        ChildStep::SetUid => format!("set user id {uid}"),
        ChildStep::DeathSignal => "set the parent-death signal".to_string(),
        ChildStep::BoundingSet => "drop capabilities from the bounding set".to_string(),
        ChildStep::Seccomp => "install the seccomp filter".to_string(),
        ChildStep::Capabilities => "set the step's capabilities".to_string(),
        ChildStep::NoNewPrivileges => "set no_new_privs".to_string(),
        ChildStep::Init => "fork the command below the step's init".to_string(),
    }
}

fn c_string(bytes: &[u8]) -> Result<CString, RunError> {
    CString::new(bytes).map_err(|_| RunError::InvalidArg {
        arg: String::from_utf8_lossy(bytes).into_owned(),
    })
}
