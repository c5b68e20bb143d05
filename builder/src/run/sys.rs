//! The system calls of RUN isolation: namespaces (`unshare`), mounts,
//! `pivot_root`, the hostname, capabilities, the seccomp filter, the
//! parent-death signal, the switch to the step's user, and the one
//! `ioctl` that brings loopback up. The workspace denies `unsafe_code`; this module is
//! the one place STYLE.md allows it, and each `unsafe` block says why it is
//! sound.
//!
//! Two kinds of caller:
//! - the set-up thread (`super::chroot`), an ordinary thread: errors are
//!   returned and reported normally;
//! - the forked child, through [`install_child_setup`]'s `pre_exec` hook,
//!   where only async-signal-safe work is allowed (see there).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io::{self, PipeReader, PipeWriter, Read};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use rustix::fs::Mode;
use rustix::io::Errno;
use rustix::ioctl::{Opcode, Updater};
use rustix::mount::UnmountFlags;
use rustix::mount::{MountFlags, MountPropagationFlags};
use rustix::process::{Gid, Signal, Uid};
use rustix::thread::{CapabilitySet, CapabilitySets, UnshareFlags};

use super::seccomp;

/// The namespaces a RUN gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Namespace {
    Mount,
    Pid,
    Network,
    Uts,
    Ipc,
    Cgroup,
}

impl Namespace {
    pub(super) fn name(self) -> &'static str {
        match self {
            Namespace::Mount => "mount",
            Namespace::Pid => "PID",
            Namespace::Network => "network",
            Namespace::Uts => "UTS",
            Namespace::Ipc => "IPC",
            Namespace::Cgroup => "cgroup",
        }
    }
}

/// The capabilities a sandboxed RUN as root has, and the bounding set of
/// every sandboxed RUN: the default set of Docker, containerd and runc
/// (moby's `oci/caps/defaults.go`). A step as another user has none (the
/// kernel clears them at `setuid`); a set-user-ID-root binary it runs
/// gets at most these.
pub(super) const DEFAULT_CAPABILITIES: CapabilitySet = CapabilitySet::CHOWN
    .union(CapabilitySet::DAC_OVERRIDE)
    .union(CapabilitySet::FSETID)
    .union(CapabilitySet::FOWNER)
    .union(CapabilitySet::MKNOD)
    .union(CapabilitySet::NET_RAW)
    .union(CapabilitySet::SETGID)
    .union(CapabilitySet::SETUID)
    .union(CapabilitySet::SETFCAP)
    .union(CapabilitySet::SETPCAP)
    .union(CapabilitySet::NET_BIND_SERVICE)
    .union(CapabilitySet::SYS_CHROOT)
    .union(CapabilitySet::KILL)
    .union(CapabilitySet::AUDIT_WRITE);

/// The hostname a sandboxed RUN sees (in its own UTS namespace).
pub(super) const HOSTNAME: &[u8] = b"kiln";

/// Sets the hostname of the calling thread's (new) UTS namespace.
pub(super) fn set_hostname(name: &[u8]) -> io::Result<()> {
    rustix::system::sethostname(name)?;
    Ok(())
}

/// Binds `root` on itself (recursively), so that it is a mount point
/// `pivot_root` can take as the new root.
pub(super) fn bind_root_on_itself(root: &Path) -> io::Result<()> {
    rustix::mount::mount_bind_recursive(root, root)?;
    Ok(())
}

/// A read-only, empty tmpfs over `target` (a directory), as runtimes mask
/// directories of `/proc` and `/sys`.
pub(super) fn mask_directory(target: &Path) -> io::Result<()> {
    rustix::mount::mount(
        "tmpfs",
        target,
        "tmpfs",
        MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        c"size=0",
    )?;
    Ok(())
}

/// Moves the calling thread into a new namespace. For a PID namespace that
/// is the namespace of the thread's future children, not its own.
pub(super) fn unshare(namespace: Namespace) -> io::Result<()> {
    let flags = match namespace {
        Namespace::Mount => UnshareFlags::NEWNS,
        Namespace::Pid => UnshareFlags::NEWPID,
        Namespace::Network => UnshareFlags::NEWNET,
        Namespace::Uts => UnshareFlags::NEWUTS,
        Namespace::Ipc => UnshareFlags::NEWIPC,
        Namespace::Cgroup => UnshareFlags::NEWCGROUP,
    };
    // SAFETY: `unshare_unsafe` is unsafe only because `CLONE_FILES` would
    // give this thread a file descriptor table of its own, so descriptors
    // opened by other threads could be misused here. Only namespace flags
    // are passed (NEWNS implies CLONE_FS, which splits off the thread's
    // root and cwd, not its descriptors), so I/O safety holds.
    unsafe { rustix::thread::unshare_unsafe(flags) }?;
    Ok(())
}

/// Makes every mount of the calling thread's (new) mount namespace
/// private, so nothing mounted for the RUN propagates to the host.
pub(super) fn make_mounts_private() -> io::Result<()> {
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )?;
    Ok(())
}

/// `mount -t tmpfs -o <flags>,<data> tmpfs <target>`.
pub(super) fn mount_tmpfs(target: &Path, flags: MountFlags, data: &str) -> io::Result<()> {
    let data = CString::new(data)?;
    rustix::mount::mount("tmpfs", target, "tmpfs", flags, data.as_c_str())?;
    Ok(())
}

/// A new devpts instance (its own ptmx, independent of the host's ptys).
pub(super) fn mount_devpts(target: &Path) -> io::Result<()> {
    rustix::mount::mount(
        "devpts",
        target,
        "devpts",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        c"newinstance,ptmxmode=0666,mode=0620",
    )?;
    Ok(())
}

/// A read-only sysfs (showing the network devices of the thread's network
/// namespace), or when refused a read-only recursive bind of the host's.
pub(super) fn mount_sysfs(target: &Path) -> io::Result<()> {
    let flags = MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    match rustix::mount::mount("sysfs", target, "sysfs", flags, None) {
        Ok(()) => Ok(()),
        Err(_) => {
            rustix::mount::mount_bind_recursive("/sys", target)?;
            rustix::mount::mount_remount(target, MountFlags::BIND | flags, "")?;
            Ok(())
        }
    }
}

/// Binds `source` (a file or directory) over `target`.
pub(super) fn bind(source: &Path, target: &Path) -> io::Result<()> {
    rustix::mount::mount_bind(source, target)?;
    Ok(())
}

/// Makes the bind mount at `target` read-only (a bind's flags can only be
/// changed by a remount of the bind).
pub(super) fn remount_read_only(target: &Path) -> io::Result<()> {
    rustix::mount::mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, "")?;
    Ok(())
}

/// `struct ifreq` with the `ifr_flags` member of its union: 16 bytes of
/// name, then a union that is 24 bytes on every 64- and 32-bit Linux ABI
/// (its largest member, `struct ifmap`, is at most 24).
#[repr(C)]
struct IfReqFlags {
    name: [u8; 16],
    flags: i16,
    _pad: [u8; 22],
}

const SIOCGIFFLAGS: Opcode = 0x8913;
const SIOCSIFFLAGS: Opcode = 0x8914;
const IFF_UP: i16 = 0x1;

/// Brings `lo` up in the calling thread's network namespace, as
/// `ip link set lo up` does (with an `ioctl` on any socket of that
/// namespace).
pub(super) fn loopback_up() -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    let mut req = IfReqFlags {
        name: [0; 16],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: SIOCGIFFLAGS reads a `struct ifreq` (name set, NUL-padded)
    // and writes its `ifr_flags`; `IfReqFlags` has the layout and full
    // size of `struct ifreq`, so the kernel reads and writes only memory
    // that `req` owns.
    unsafe { rustix::ioctl::ioctl(&socket, Updater::<SIOCGIFFLAGS, IfReqFlags>::new(&mut req)) }?;
    req.flags |= IFF_UP;
    // SAFETY: as above; SIOCSIFFLAGS reads the same structure.
    unsafe { rustix::ioctl::ioctl(&socket, Updater::<SIOCSIFFLAGS, IfReqFlags>::new(&mut req)) }?;
    Ok(())
}

/// What the child does between `fork` and `exec`, prepared by the parent
/// so that nothing needs allocating afterwards.
#[derive(Debug)]
pub(super) struct ChildPlan {
    /// Host path of the root's `/proc` mount point.
    pub(super) proc_target: CString,
    /// Host paths (below `proc_target`) made read-only once `/proc` is
    /// mounted; a missing one is skipped.
    pub(super) proc_read_only: Vec<CString>,
    /// Host paths (below `proc_target`) hidden: a file under the root's
    /// `/dev/null`, a directory under an empty read-only tmpfs; a missing
    /// one is skipped.
    pub(super) proc_masked: Vec<CString>,
    /// Host path of the root's `/dev/null`.
    pub(super) dev_null: CString,
    /// Host path of the root (a mount point: see [`bind_root_on_itself`]).
    pub(super) root: CString,
    /// In-image working directory (resolved by the kernel after
    /// `pivot_root`).
    pub(super) workdir: CString,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) groups: Vec<u32>,
}

/// The steps of the child's set-up, as reported through the report pipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ChildStep {
    /// A new proc instance was refused; the host's /proc was bound instead
    /// (a warning).
    ProcInstance = 1,
    MountProc = 2,
    /// `pivot_root` into the root and detach of the old root.
    PivotRoot = 3,
    Chdir = 4,
    SetGroups = 5,
    SetGid = 6,
    SetUid = 7,
    DeathSignal = 8,
    ProcReadOnly = 9,
    ProcMask = 10,
    BoundingSet = 11,
    Seccomp = 12,
    Capabilities = 13,
    NoNewPrivileges = 14,
    /// The fork of the command below the step's init.
    Init = 15,
}

impl ChildStep {
    fn from_code(code: u8) -> Option<ChildStep> {
        Some(match code {
            1 => ChildStep::ProcInstance,
            2 => ChildStep::MountProc,
            3 => ChildStep::PivotRoot,
            4 => ChildStep::Chdir,
            5 => ChildStep::SetGroups,
            6 => ChildStep::SetGid,
            7 => ChildStep::SetUid,
            8 => ChildStep::DeathSignal,
            9 => ChildStep::ProcReadOnly,
            10 => ChildStep::ProcMask,
            11 => ChildStep::BoundingSet,
            12 => ChildStep::Seccomp,
            13 => ChildStep::Capabilities,
            14 => ChildStep::NoNewPrivileges,
            15 => ChildStep::Init,
            _ => return None,
        })
    }
}

/// One record of the report pipe: a step and the errno it failed with.
#[derive(Debug)]
pub(super) struct ChildReport {
    pub(super) step: ChildStep,
    pub(super) error: io::Error,
}

const RECORD: usize = 5;

/// Installs the child's set-up as `cmd`'s `pre_exec` hook. Failures are
/// written to a pipe (which closes on exec) as `[step, errno (4 bytes LE)]`
/// records, because `Command::spawn` reports only an errno; the returned
/// reader yields them once the command has been spawned and `cmd` dropped.
///
/// In order, the child (PID 1 of the new PID namespace, in the set-up
/// thread's mount, UTS and IPC namespaces):
/// 1. asks for `SIGKILL` when the thread that forked it ends (the set-up
///    thread lives until the step is over, so this fires when kiln dies),
///    and asks again after 8, because the kernel clears that request
///    whenever the process's user changes;
/// 2. mounts a new `/proc` (its PID namespace's), makes `/proc/sys`,
///    `/proc/sysrq-trigger`, `/proc/irq`, `/proc/bus`, `/proc/fs`
///    read-only and hides `/proc/kcore`, `/proc/keys`, … as runc does;
/// 3. `pivot_root`s into the root and detaches the old root, so no path
///    leads back to the host (a `chroot` alone leaves the host's root one
///    `chroot(".."…)` away for whoever keeps `CAP_SYS_CHROOT`);
/// 4. changes to the WORKDIR;
/// 5. drops every capability outside [`DEFAULT_CAPABILITIES`] from its
///    bounding set;
/// 6. installs the seccomp filter (`seccomp`), while it still has
///    `CAP_SYS_ADMIN`, which installing one without `no_new_privs` needs;
/// 7. takes the step's groups and user;
/// 8. sets its capabilities: [`DEFAULT_CAPABILITIES`] for root, none
///    otherwise, and an empty ambient set.
///
/// 9. forks the command (PID 2) and stays behind as the namespace's init
///    (see [`be_init`]).
///
/// `no_new_privs` is not set, as Docker does not: `su`, `sudo` and other
/// set-user-ID programs of the image work in RUN as they do in
/// `docker build`. What they can reach is bounded by the bounding set
/// (5), the filter (6) and the namespaces.
///
/// Why an init: the parent-death signal (1) is what ends the step when
/// kiln is killed, and the kernel clears it when its process executes a
/// set-user-ID program that changes its user (`RUN ["/usr/bin/su", …]`
/// under a non-root `USER`). A command that is PID 1 itself would then
/// outlive kiln, and with it every process of the step. The init never
/// executes anything, so its signal stays, and when it dies the kernel
/// kills the whole PID namespace.
pub(super) fn install_child_setup(cmd: &mut Command, plan: ChildPlan) -> io::Result<PipeReader> {
    let (reader, writer) = io::pipe()?;
    let inherited = InheritedMemory::of_this_process();
    let groups: Vec<Gid> = plan.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    let uid = Uid::from_raw(plan.uid);
    let gid = Gid::from_raw(plan.gid);
    let filter = seccomp_program();
    let capabilities = if plan.uid == 0 {
        DEFAULT_CAPABILITIES
    } else {
        CapabilitySet::empty()
    };
    let setup = move || -> io::Result<()> {
        let fail = |step: ChildStep, errno: Errno| -> io::Error {
            report(&writer, step, errno);
            io::Error::from(errno)
        };
        rustix::process::umask(Mode::from_raw_mode(0o022));
        rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
            .map_err(|e| fail(ChildStep::DeathSignal, e))?;
        let proc_flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
        if let Err(errno) = rustix::mount::mount(
            c"proc",
            plan.proc_target.as_c_str(),
            c"proc",
            proc_flags,
            None,
        ) {
            report(&writer, ChildStep::ProcInstance, errno);
            rustix::mount::mount_bind_recursive(c"/proc", plan.proc_target.as_c_str())
                .map_err(|e| fail(ChildStep::MountProc, e))?;
        }
        for path in &plan.proc_read_only {
            match rustix::mount::mount_bind_recursive(path.as_c_str(), path.as_c_str()) {
                Ok(()) => {}
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(fail(ChildStep::ProcReadOnly, e)),
            }
            rustix::mount::mount_remount(
                path.as_c_str(),
                MountFlags::BIND | MountFlags::RDONLY | proc_flags,
                c"",
            )
            .map_err(|e| fail(ChildStep::ProcReadOnly, e))?;
        }
        for path in &plan.proc_masked {
            match rustix::mount::mount_bind(plan.dev_null.as_c_str(), path.as_c_str()) {
                Ok(()) | Err(Errno::NOENT) => {}
                // A directory: an empty read-only tmpfs hides it instead.
                Err(Errno::NOTDIR | Errno::ISDIR) => rustix::mount::mount(
                    c"tmpfs",
                    path.as_c_str(),
                    c"tmpfs",
                    MountFlags::RDONLY | proc_flags,
                    c"size=0",
                )
                .map_err(|e| fail(ChildStep::ProcMask, e))?,
                Err(e) => return Err(fail(ChildStep::ProcMask, e)),
            }
        }
        rustix::process::chdir(plan.root.as_c_str()).map_err(|e| fail(ChildStep::PivotRoot, e))?;
        rustix::process::pivot_root(c".", c".").map_err(|e| fail(ChildStep::PivotRoot, e))?;
        // The old root is now stacked on "."; detach it (pivot_root(2)).
        rustix::mount::unmount(c".", UnmountFlags::DETACH)
            .map_err(|e| fail(ChildStep::PivotRoot, e))?;
        rustix::process::chdir(c"/").map_err(|e| fail(ChildStep::PivotRoot, e))?;
        rustix::process::chdir(plan.workdir.as_c_str()).map_err(|e| fail(ChildStep::Chdir, e))?;
        for bit in 0..64u32 {
            let capability = CapabilitySet::from_bits_retain(1 << bit);
            if DEFAULT_CAPABILITIES.contains(capability) {
                continue;
            }
            match rustix::thread::remove_capability_from_bounding_set(capability) {
                // EINVAL: past the last capability this kernel knows.
                Ok(()) | Err(Errno::INVAL) => {}
                Err(e) => return Err(fail(ChildStep::BoundingSet, e)),
            }
        }
        install_seccomp(&filter).map_err(|e| fail(ChildStep::Seccomp, e))?;
        rustix::thread::set_thread_groups(&groups).map_err(|e| fail(ChildStep::SetGroups, e))?;
        rustix::thread::set_thread_gid(gid).map_err(|e| fail(ChildStep::SetGid, e))?;
        rustix::thread::set_thread_uid(uid).map_err(|e| fail(ChildStep::SetUid, e))?;
        rustix::thread::set_capabilities(
            None,
            CapabilitySets {
                effective: capabilities,
                permitted: capabilities,
                inheritable: CapabilitySet::empty(),
            },
        )
        .map_err(|e| fail(ChildStep::Capabilities, e))?;
        rustix::thread::clear_ambient_capability_set()
            .map_err(|e| fail(ChildStep::Capabilities, e))?;
        // Again: changing the user (a non-root USER) cleared the signal.
        rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
            .map_err(|e| fail(ChildStep::DeathSignal, e))?;
        // SAFETY: `fork` in the single-threaded child; the parent branch
        // below runs only async-signal-safe calls and never returns.
        match unsafe { libc::fork() } {
            0 => Ok(()),
            -1 => Err(fail(
                ChildStep::Init,
                Errno::from_raw_os_error(io::Error::last_os_error().raw_os_error().unwrap_or(0)),
            )),
            command => be_init(command, &inherited),
        }
    };
    // SAFETY: the hook runs in the child between fork and exec, where the
    // parent's other threads are gone and only async-signal-safe work is
    // allowed. It allocates nothing, takes no lock and touches no shared
    // state: every path is a `CString`, the group list, path lists and
    // filter `Vec`s built above, borrowed as they are; `umask`, `prctl`,
    // `mount`, `umount2`, `pivot_root`, `chdir`, `capset`, `setgroups`,
    // `setgid`, `setuid` and `write` are rustix's thin wrappers of the
    // system calls (the `*_thread` calls are the raw syscalls, which act on
    // the calling thread, the child's only one), `install_seccomp` is one
    // `prctl`; and `io::Error::from(Errno)` is a plain value. Privileges
    // are dropped last: the filter while `CAP_SYS_ADMIN` still allows it,
    // the ids in the order setgroups, setgid, setuid, the capabilities
    // after them.
    unsafe {
        cmd.pre_exec(setup);
    }
    Ok(reader)
}

/// Where this process keeps its command line and environment: the init
/// of a step is a copy of kiln that never executes anything, so it blanks
/// both, which the step could otherwise read as `/proc/1/cmdline` (the
/// environment is closed to it anyway: the init is not dumpable).
#[derive(Clone, Copy, Debug, Default)]
struct InheritedMemory {
    /// `[start, end)` of the argument strings, then of the environment.
    areas: [(usize, usize); 2],
}

impl InheritedMemory {
    /// Read from `/proc/self/stat` (fields 48 to 51, `arg_start` to
    /// `env_end`); empty areas when they cannot be read.
    fn of_this_process() -> InheritedMemory {
        std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| InheritedMemory::from_stat(&stat))
            .unwrap_or_default()
    }

    fn from_stat(stat: &str) -> Option<InheritedMemory> {
        // The command name (field 2) is in parentheses and may hold
        // anything, spaces and ')' included: fields start after the last
        // ')', with field 3.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<usize> = rest
            .split_ascii_whitespace()
            .skip(45)
            .take(4)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let [arg_start, arg_end, env_start, env_end] = fields[..] else {
            return None;
        };
        let valid = |(start, end): (usize, usize)| start <= end && start > 0;
        let areas = [(arg_start, arg_end), (env_start, env_end)];
        areas
            .iter()
            .all(|&area| valid(area))
            .then_some(InheritedMemory { areas })
    }
}

/// PID 1 of a step's namespace, in the child after the fork of `command`:
/// stays not dumpable (no step process, root included without
/// `CAP_SYS_PTRACE`, can read its memory, a copy of kiln's), blanks its
/// command line and environment, closes every descriptor (the output and
/// report pipes, and the one `Command::spawn` waits on, must close when
/// the command executes), reaps whatever ends below it, and exits with
/// the command's status once the command has ended: the status as a shell
/// reports it, 128 + the signal for a signalled command. The kernel then
/// kills the rest of the namespace. Async-signal-safe throughout: system
/// calls and plain writes to memory only.
fn be_init(command: libc::pid_t, inherited: &InheritedMemory) -> ! {
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    for &(start, end) in &inherited.areas {
        // SAFETY: `[start, end)` is this process's argument or environment
        // area as the kernel reported it for the parent, of which this
        // child's memory is a private copy; it lies in the writable stack
        // mapping and nothing of the init reads it again.
        unsafe { std::ptr::write_bytes(start as *mut u8, 0, end - start) };
    }
    // SAFETY: `close_range` closes descriptors only; falls back to closing
    // them one by one on kernels before 5.9.
    if unsafe { libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) } != 0 {
        for fd in 0..4096 {
            // SAFETY: as above.
            unsafe { libc::close(fd) };
        }
    }
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `waitpid` writes the status into the local above.
        let reaped = unsafe { libc::waitpid(-1, &mut status, 0) };
        if reaped == command {
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else if libc::WIFSIGNALED(status) {
                128 + libc::WTERMSIG(status)
            } else {
                continue;
            };
            // SAFETY: ends the init without running anything of kiln's.
            unsafe { libc::_exit(code) };
        }
        if reaped < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            // SAFETY: as above. No child left: nothing to wait for.
            unsafe { libc::_exit(127) };
        }
    }
}

/// The filter of `seccomp`, as the kernel takes it.
fn seccomp_program() -> Vec<libc::sock_filter> {
    seccomp::program()
        .into_iter()
        .map(|ins| libc::sock_filter {
            code: ins.code,
            jt: ins.jt,
            jf: ins.jf,
            k: ins.k,
        })
        .collect()
}

/// `prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, program)` for the calling
/// thread. Async-signal-safe (one system call, no allocation).
fn install_seccomp(program: &[libc::sock_filter]) -> Result<(), Errno> {
    let Ok(len) = u16::try_from(program.len()) else {
        return Err(Errno::INVAL);
    };
    let prog = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `len` initialised `sock_filter`s that
    // outlive the call; the kernel copies the program and does not keep
    // the pointer, nor write through it.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(Errno::from_raw_os_error(
            io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ))
    }
}

/// What the child does between `fork` and `exec` for
/// `--isolation=inplace`: no namespace, mount or `pivot_root`, only the
/// working directory, the parent-death signal and, when `ids` is set, the
/// step's user.
#[derive(Debug)]
pub(super) struct PlainPlan {
    /// Absolute working directory, existing.
    pub(super) workdir: CString,
    /// (uid, gid, supplementary gids) to switch to; `None` keeps kiln's own
    /// (a non-root kiln asked to run as itself needs no privilege).
    pub(super) ids: Option<(u32, u32, Vec<u32>)>,
    /// Set `no_new_privs`: no set-user-ID binary or file capability raises
    /// the step's privileges (for a step that is not root).
    pub(super) no_new_privs: bool,
}

/// Installs [`PlainPlan`] as `cmd`'s `pre_exec` hook, reporting failures
/// through the returned pipe as [`install_child_setup`] does. The
/// command gets `SIGKILL` when the thread that forked it ends (the caller
/// supervises it from that thread, so: when kiln dies).
pub(super) fn install_plain_setup(cmd: &mut Command, plan: PlainPlan) -> io::Result<PipeReader> {
    let (reader, writer) = io::pipe()?;
    let ids = plan.ids.map(|(uid, gid, groups)| {
        let groups: Vec<Gid> = groups.iter().map(|g| Gid::from_raw(*g)).collect();
        (Uid::from_raw(uid), Gid::from_raw(gid), groups)
    });
    let no_new_privs = plan.no_new_privs;
    let setup = move || -> io::Result<()> {
        let fail = |step: ChildStep, errno: Errno| -> io::Error {
            report(&writer, step, errno);
            io::Error::from(errno)
        };
        rustix::process::umask(Mode::from_raw_mode(0o022));
        rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
            .map_err(|e| fail(ChildStep::DeathSignal, e))?;
        rustix::process::chdir(plan.workdir.as_c_str()).map_err(|e| fail(ChildStep::Chdir, e))?;
        if let Some((uid, gid, groups)) = &ids {
            rustix::thread::set_thread_groups(groups).map_err(|e| fail(ChildStep::SetGroups, e))?;
            rustix::thread::set_thread_gid(*gid).map_err(|e| fail(ChildStep::SetGid, e))?;
            rustix::thread::set_thread_uid(*uid).map_err(|e| fail(ChildStep::SetUid, e))?;
        }
        if no_new_privs {
            rustix::thread::set_no_new_privs(true)
                .map_err(|e| fail(ChildStep::NoNewPrivileges, e))?;
        }
        // Again: the kernel cleared the signal when the user changed.
        rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
            .map_err(|e| fail(ChildStep::DeathSignal, e))?;
        Ok(())
    };
    // SAFETY: as in `install_child_setup`: between fork and exec the hook
    // allocates nothing, takes no lock and touches no shared state (the
    // path is a `CString` and the group list a `Vec` built above, only
    // borrowed); `umask`, `prctl`, `chdir`, `setgroups`, `setgid`,
    // `setuid` and `write` are thin system-call wrappers acting on the
    // child's only thread, and the ids are dropped in the order that keeps
    // the privilege each needs until last.
    unsafe {
        cmd.pre_exec(setup);
    }
    Ok(reader)
}

/// Makes kiln's own process not dumpable: another process of the same
/// user (a RUN step in place, as root or as kiln's user) can no longer
/// read its `/proc/<pid>/environ`, `mem` or `fd/*`, nor `ptrace` it,
/// without `CAP_SYS_PTRACE`. The RUN command is not affected: `execve`
/// resets dumpability for the new program.
pub fn make_not_dumpable() -> io::Result<()> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    Ok(())
}

fn report(writer: &PipeWriter, step: ChildStep, errno: Errno) {
    let code = errno.raw_os_error().to_le_bytes();
    let record: [u8; RECORD] = [step as u8, code[0], code[1], code[2], code[3]];
    // A record is smaller than PIPE_BUF, so it is written whole or not at
    // all; nothing more can be done about a failure here.
    let _ = rustix::io::write(writer, &record);
}

/// Reads the child's reports until the pipe closes (at exec, or when the
/// child has exited).
pub(super) fn read_child_reports(mut reader: PipeReader) -> io::Result<Vec<ChildReport>> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes)?;
    Ok(bytes
        .chunks_exact(RECORD)
        .filter_map(|chunk| {
            let step = ChildStep::from_code(chunk[0])?;
            let errno = i32::from_le_bytes([chunk[1], chunk[2], chunk[3], chunk[4]]);
            Some(ChildReport {
                step,
                error: io::Error::from_raw_os_error(errno),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip() -> io::Result<()> {
        let (reader, writer) = io::pipe()?;
        report(&writer, ChildStep::ProcInstance, Errno::PERM);
        report(&writer, ChildStep::Chdir, Errno::NOENT);
        drop(writer);
        let got: Vec<(ChildStep, Option<i32>)> = read_child_reports(reader)?
            .into_iter()
            .map(|r| (r.step, r.error.raw_os_error()))
            .collect();
        assert_eq!(
            got,
            [
                (ChildStep::ProcInstance, Some(Errno::PERM.raw_os_error())),
                (ChildStep::Chdir, Some(Errno::NOENT.raw_os_error())),
            ]
        );
        Ok(())
    }

    #[test]
    fn inherited_memory_areas_come_from_fields_48_to_51_of_stat() {
        // A command name with spaces and parentheses, then fields 3 to 52.
        let mut stat = String::from("4242 (a (b) c) S");
        for field in 4..=52 {
            stat.push_str(&format!(" {field}"));
        }
        let memory = InheritedMemory::from_stat(&stat).map(|m| m.areas);
        assert_eq!(memory, Some([(48, 49), (50, 51)]));
        // This process's own, as the init of a step reads them.
        let own = InheritedMemory::of_this_process().areas;
        assert!(
            own.iter().all(|&(start, end)| start > 0 && start < end),
            "{own:?}"
        );
        assert_eq!(
            InheritedMemory::from_stat("4242 (x) S 1 2").map(|m| m.areas),
            None
        );
        let reversed = stat.replace(" 48 49 ", " 49 48 ");
        assert_eq!(InheritedMemory::from_stat(&reversed).map(|m| m.areas), None);
    }

    #[test]
    fn ifreq_has_the_kernel_size() {
        assert_eq!(std::mem::size_of::<IfReqFlags>(), 40);
    }
}
