//! What a SIGTERM or SIGINT of kiln undoes before it exits: the running
//! RUN steps (their process groups, and in the sandbox their PID
//! namespaces, whose mounts go with them), the copies an in-place step's
//! `RUN --mount`s put in `/` (a secret's file among them), and the
//! build's work directories, which hold the stage root filesystems and
//! the files of `--secret`s.
//!
//! The build registers each while it exists ([`directory`],
//! [`process_group`]); the binary's signal handler calls [`clean_up`] and
//! exits. `clean_up` keeps the registry locked until the process exits,
//! so a step that ends meanwhile blocks in its deregistration instead of
//! going on with the build (writing a snapshot into a directory being
//! removed).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{Pid, PidfdFlags, Signal};

/// How long [`clean_up`] waits for a killed step to be gone.
const KILL_WAIT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Registry {
    next: u64,
    /// (id, process group leader, its pidfd when available).
    groups: Vec<(u64, Pid, Option<OwnedFd>)>,
    directories: Vec<(u64, PathBuf)>,
    /// (id, root, host path inside it): entries removed within the root
    /// (never following a link a step may have put on the way).
    in_root: Vec<(u64, PathBuf, PathBuf)>,
    /// Set by [`clean_up`]: a step registered afterwards is killed at once.
    interrupted: bool,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: 0,
    groups: Vec::new(),
    directories: Vec::new(),
    in_root: Vec::new(),
    interrupted: false,
});

fn registry() -> MutexGuard<'static, Registry> {
    // A panic while holding the lock leaves plain data behind; go on.
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One registration; dropping it takes it out of the registry.
#[derive(Debug)]
#[must_use = "the registration ends when this is dropped"]
pub struct Registered(u64);

impl Drop for Registered {
    fn drop(&mut self) {
        let mut registry = registry();
        registry.groups.retain(|(id, _, _)| *id != self.0);
        registry.directories.retain(|(id, _)| *id != self.0);
        registry.in_root.retain(|(id, _, _)| *id != self.0);
    }
}

/// Registers a build's work directory, removed (recursively) on
/// interruption.
pub fn directory(path: &Path) -> Registered {
    let mut registry = registry();
    registry.next += 1;
    let id = registry.next;
    registry.directories.push((id, path.to_path_buf()));
    Registered(id)
}

/// Registers an entry kiln placed at `host` inside the root filesystem
/// `root` for a step (an in-place `RUN --mount` copy), removed within the
/// root on interruption, before the directories.
pub(super) fn entry_in_root(root: &Path, host: &Path) -> Registered {
    let mut registry = registry();
    registry.next += 1;
    let id = registry.next;
    registry
        .in_root
        .push((id, root.to_path_buf(), host.to_path_buf()));
    Registered(id)
}

/// Registers a running step by its process group leader (the command
/// kiln started), killed with `SIGKILL` on interruption.
pub(super) fn process_group(pid: Pid) -> Registered {
    let pidfd = rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok();
    let mut registry = registry();
    if registry.interrupted {
        kill_group(pid);
    }
    registry.next += 1;
    let id = registry.next;
    registry.groups.push((id, pid, pidfd));
    Registered(id)
}

/// What [`clean_up`] did, for the one line kiln prints.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cleaned {
    pub steps_killed: usize,
    pub directories_removed: usize,
    /// Directories (or in-root entries) that could not be removed, with
    /// the error.
    pub directories_kept: Vec<(PathBuf, String)>,
}

/// Kills every registered step's process group, waits (up to 5 seconds)
/// until each leader is gone, and removes every registered directory.
/// Returns with the registry still locked for the rest of the process's
/// life: call it only on the way out.
pub fn clean_up() -> Cleaned {
    let mut registry = registry();
    registry.interrupted = true;
    let mut cleaned = Cleaned::default();
    for (_, pid, _) in &registry.groups {
        kill_group(*pid);
        cleaned.steps_killed += 1;
    }
    let deadline = Instant::now() + KILL_WAIT;
    for (_, _, pidfd) in &registry.groups {
        if let Some(pidfd) = pidfd {
            wait_readable(pidfd, deadline);
        }
    }
    for (_, root, host) in &registry.in_root {
        let removed =
            crate::fs::root_dir::RootDir::open(root).and_then(|dir| dir.remove_tree(host));
        match removed {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => cleaned
                .directories_kept
                .push((host.clone(), err.to_string())),
        }
    }
    for (_, path) in &registry.directories {
        match remove_tree(path) {
            Ok(()) => cleaned.directories_removed += 1,
            Err(err) => cleaned
                .directories_kept
                .push((path.clone(), err.to_string())),
        }
    }
    // Held until exit (see the module documentation).
    std::mem::forget(registry);
    cleaned
}

/// `remove_dir_all`, tried a few times: a step that was just killed may
/// still be releasing what it held.
fn remove_tree(path: &Path) -> std::io::Result<()> {
    let mut last = Ok(());
    for _ in 0..3 {
        last = match std::fs::remove_dir_all(path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            other => other,
        };
        if last.is_ok() {
            return last;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    last
}

/// Waits until `pidfd` reports its process exited, or `deadline`.
fn wait_readable(pidfd: &OwnedFd, deadline: Instant) {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let timeout = Timespec {
            tv_sec: left.as_secs().try_into().unwrap_or(i64::MAX),
            tv_nsec: left.subsec_nanos().into(),
        };
        let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Err(rustix::io::Errno::INTR) => continue,
            _ => return,
        }
    }
}

fn kill_group(pid: Pid) {
    // ESRCH: the group is gone already.
    let _ = rustix::process::kill_process_group(pid, Signal::KILL);
}
