//! The system calls of RUN isolation: namespaces (`unshare`), mounts,
//! `chroot`, the switch to the step's user, and the one `ioctl` that
//! brings loopback up. The workspace denies `unsafe_code`; this module is
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
use rustix::mount::{MountFlags, MountPropagationFlags};
use rustix::process::{Gid, Uid};
use rustix::thread::UnshareFlags;

/// The namespaces a RUN gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Namespace {
    Mount,
    Pid,
    Network,
}

impl Namespace {
    pub(super) fn name(self) -> &'static str {
        match self {
            Namespace::Mount => "mount",
            Namespace::Pid => "PID",
            Namespace::Network => "network",
        }
    }
}

/// Moves the calling thread into a new namespace. For a PID namespace that
/// is the namespace of the thread's future children, not its own.
pub(super) fn unshare(namespace: Namespace) -> io::Result<()> {
    let flags = match namespace {
        Namespace::Mount => UnshareFlags::NEWNS,
        Namespace::Pid => UnshareFlags::NEWPID,
        Namespace::Network => UnshareFlags::NEWNET,
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
    /// Host path of the root.
    pub(super) root: CString,
    /// In-image working directory (resolved by the kernel after chroot).
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
    Chroot = 3,
    Chdir = 4,
    SetGroups = 5,
    SetGid = 6,
    SetUid = 7,
}

impl ChildStep {
    fn from_code(code: u8) -> Option<ChildStep> {
        Some(match code {
            1 => ChildStep::ProcInstance,
            2 => ChildStep::MountProc,
            3 => ChildStep::Chroot,
            4 => ChildStep::Chdir,
            5 => ChildStep::SetGroups,
            6 => ChildStep::SetGid,
            7 => ChildStep::SetUid,
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
pub(super) fn install_child_setup(cmd: &mut Command, plan: ChildPlan) -> io::Result<PipeReader> {
    let (reader, writer) = io::pipe()?;
    let groups: Vec<Gid> = plan.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    let uid = Uid::from_raw(plan.uid);
    let gid = Gid::from_raw(plan.gid);
    let setup = move || -> io::Result<()> {
        let fail = |step: ChildStep, errno: Errno| -> io::Error {
            report(&writer, step, errno);
            io::Error::from(errno)
        };
        rustix::process::umask(Mode::from_raw_mode(0o022));
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
        rustix::process::chroot(plan.root.as_c_str()).map_err(|e| fail(ChildStep::Chroot, e))?;
        rustix::process::chdir(plan.workdir.as_c_str()).map_err(|e| fail(ChildStep::Chdir, e))?;
        rustix::thread::set_thread_groups(&groups).map_err(|e| fail(ChildStep::SetGroups, e))?;
        rustix::thread::set_thread_gid(gid).map_err(|e| fail(ChildStep::SetGid, e))?;
        rustix::thread::set_thread_uid(uid).map_err(|e| fail(ChildStep::SetUid, e))?;
        Ok(())
    };
    // SAFETY: the hook runs in the child between fork and exec, where the
    // parent's other threads are gone and only async-signal-safe work is
    // allowed. It allocates nothing, takes no lock and touches no shared
    // state: every path is a `CString` and the group list a `Vec` built
    // above, borrowed as they are; `umask`, `mount`, `chroot`, `chdir`,
    // `setgroups`, `setgid`, `setuid` and `write` are rustix's thin
    // wrappers of the system calls (the `*_thread` id calls are the raw
    // syscalls, which act on the calling thread, the child's only one); and
    // `io::Error::from(Errno)` is a plain value. The ids are set in the
    // order setgroups, setgid, setuid, after chroot, so the privileges
    // needed for each are dropped last.
    unsafe {
        cmd.pre_exec(setup);
    }
    Ok(reader)
}

/// What the child does between `fork` and `exec` for
/// `--isolation=inplace`: no namespace, mount or chroot, only the working
/// directory and, when `ids` is set, the step's user.
#[derive(Debug)]
pub(super) struct PlainPlan {
    /// Absolute working directory, existing.
    pub(super) workdir: CString,
    /// (uid, gid, supplementary gids) to switch to; `None` keeps kiln's own
    /// (a non-root kiln asked to run as itself needs no privilege).
    pub(super) ids: Option<(u32, u32, Vec<u32>)>,
}

/// Installs [`PlainPlan`] as `cmd`'s `pre_exec` hook, reporting failures
/// through the returned pipe as [`install_child_setup`] does.
pub(super) fn install_plain_setup(cmd: &mut Command, plan: PlainPlan) -> io::Result<PipeReader> {
    let (reader, writer) = io::pipe()?;
    let ids = plan.ids.map(|(uid, gid, groups)| {
        let groups: Vec<Gid> = groups.iter().map(|g| Gid::from_raw(*g)).collect();
        (Uid::from_raw(uid), Gid::from_raw(gid), groups)
    });
    let setup = move || -> io::Result<()> {
        let fail = |step: ChildStep, errno: Errno| -> io::Error {
            report(&writer, step, errno);
            io::Error::from(errno)
        };
        rustix::process::umask(Mode::from_raw_mode(0o022));
        rustix::process::chdir(plan.workdir.as_c_str()).map_err(|e| fail(ChildStep::Chdir, e))?;
        if let Some((uid, gid, groups)) = &ids {
            rustix::thread::set_thread_groups(groups).map_err(|e| fail(ChildStep::SetGroups, e))?;
            rustix::thread::set_thread_gid(*gid).map_err(|e| fail(ChildStep::SetGid, e))?;
            rustix::thread::set_thread_uid(*uid).map_err(|e| fail(ChildStep::SetUid, e))?;
        }
        Ok(())
    };
    // SAFETY: as in `install_child_setup`: between fork and exec the hook
    // allocates nothing, takes no lock and touches no shared state (the
    // path is a `CString` and the group list a `Vec` built above, only
    // borrowed); `umask`, `chdir`, `setgroups`, `setgid`, `setuid` and
    // `write` are thin system-call wrappers acting on the child's only
    // thread, and the ids are dropped in the order that keeps the
    // privilege each needs until last.
    unsafe {
        cmd.pre_exec(setup);
    }
    Ok(reader)
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
    fn ifreq_has_the_kernel_size() {
        assert_eq!(std::mem::size_of::<IfReqFlags>(), 40);
    }
}
