//! RUN execution and isolation.
//!
//! Two isolation modes share everything that decides what a command is
//! and sees (`exec`: the executable looked up in the image, the
//! environment, WORKDIR created as the user; `crate::fs`'s user lookup;
//! `output`: streaming, the tail, killing leftovers) and differ in how it
//! is started:
//!
//! - [`run_in_place`] is `--isolation=inplace` (see "In place" below);
//! - [`run_in_chroot`] is `--isolation=sandbox` (also spelled `chroot`), described first.
//!
//! [`run_in_chroot`] is `--isolation=sandbox`: the command runs in a
//! sandbox, as container runtimes build one: new mount, PID, UTS, IPC
//! (and where the kernel allows, cgroup) namespaces, `pivot_root` into a
//! stage's root filesystem with the old root detached, a fresh `/proc`
//! with the usual parts read-only or masked, a runtime's default
//! capabilities, a seccomp filter, as the Dockerfile's `USER`; the host is
//! never modified. The pieces, in the order a RUN goes through them:
//!
//! - `exec`: before anything is forked, `argv[0]` is looked up inside the
//!   root (through `crate::fs`'s in-root resolution, with the step's
//!   `PATH`), so a missing shell is reported as
//!   `exec /bin/sh: no such file or directory in the image` instead of a
//!   bare `ENOENT`; the environment is built (exactly `RunSpec::env`, plus
//!   `PATH` and `HOME` when missing, as Docker and runc do).
//! - `stubs`: mount points the image lacks (`/proc`, `/dev`, `/sys`,
//!   `/etc/resolv.conf`, `/etc/hosts` and missing parents) are created
//!   before the run and removed after it when still empty, with their
//!   parent directories' times restored, so a snapshot sees only what the
//!   command wrote. The paths are reported in
//!   [`RunOutput::created_mount_points`]. BuildKit handles its mount stubs
//!   the same way.
//! - `mounts` and `sys`: a set-up thread enters new namespaces and
//!   mounts; the command is forked from it. `sys` is the one module with
//!   `unsafe` code (`unshare`, `pre_exec`, one `ioctl`, the seccomp
//!   `prctl`); `seccomp` builds the filter.
//! - `output`: stdout and stderr share one pipe, streamed to the caller's
//!   log as they arrive; the last 64 KiB are kept for the error message.
//!
//! # Namespaces, and why a thread
//!
//! A new PID namespace only applies to the children of the task that
//! unshares it. The step's first process (its PID 1) is a small init, a
//! fork of kiln that executes nothing: it forks the command (PID 2), reaps
//! what ends below it and exits with the command's status, and when it
//! exits the kernel kills everything the step left behind (`sleep 1000 &`,
//! daemons that `setsid`); the `/proc` mounted inside shows only the
//! step's processes. kiln therefore creates
//! the namespaces in a dedicated thread (`unshare` acts per thread), sets
//! the hostname (`kiln`) and the mounts there, and forks the command from
//! it with `std::process::Command`. The child's `pre_exec` does what must
//! be done from inside the new PID namespace or by the command's own
//! process (see `sys::install_child_setup`): the parent-death signal,
//! `/proc` and its masks, `pivot_root`, the WORKDIR, the bounding set, the
//! seccomp filter, the user, the capabilities. The thread then waits until
//! the step is over: the parent-death signal (`SIGKILL`) fires when the
//! thread that forked the init ends, so a `SIGKILL` of kiln kills the
//! init, and with it every process of the step. The init exists for this:
//! the kernel clears a process's parent-death signal when it executes a
//! set-user-ID program that changes its user, so a command that was PID 1
//! itself (`RUN ["/usr/bin/su", …]` under a non-root `USER`) would outlive
//! kiln. The init is not dumpable and blanks its copy of kiln's command
//! line and environment, so the step learns nothing of kiln from it. Re-executing
//! the current binary as a helper was not chosen: the library runs inside
//! test binaries and other programs whose `main` it does not control.
//!
//! A kernel that refuses any of the mount, PID, UTS or IPC namespaces
//! refuses the step (use `--isolation=inplace`); a refused cgroup
//! namespace is a warning. The command is also its own process group,
//! killed with `SIGKILL` once the command exits.
//!
//! With the init as PID 1, the command gets signals from inside the step
//! as any process does (PID 1 alone ignores those it has no handler for), as in Docker with `--init`.
//!
//! # Privileges
//!
//! - Capabilities: root gets the default set of Docker, containerd and
//!   runc (`CHOWN`, `DAC_OVERRIDE`, `FSETID`, `FOWNER`, `MKNOD`,
//!   `NET_RAW`, `SETGID`, `SETUID`, `SETFCAP`, `SETPCAP`,
//!   `NET_BIND_SERVICE`, `SYS_CHROOT`, `KILL`, `AUDIT_WRITE`), which is
//!   also every step's bounding set; another `USER` has none.
//! - `no_new_privs` is not set, as Docker does not set it: `su`, `sudo`
//!   and other set-user-ID programs of the image work in RUN as in
//!   `docker build`. A set-user-ID root program gets at most the bounding
//!   set above, without `CAP_SYS_ADMIN`, behind the seccomp filter, in
//!   namespaces where the host's root is not reachable (the old root is
//!   detached, not just hidden by a `chroot`).
//! - seccomp (`seccomp`): the calls Docker's default profile refuses a
//!   process without `CAP_SYS_ADMIN` (mount, `pivot_root`, `unshare`,
//!   `setns`, `clone` with new namespaces, module and kexec loading,
//!   keyrings, `bpf`, `perf_event_open`, `open_by_handle_at`, …) fail with
//!   `EPERM`. It is a deny-list; the capabilities are the boundary for the
//!   rest.
//! - `/proc`: `sys`, `sysrq-trigger`, `irq`, `bus` and `fs` are
//!   read-only; `kcore`, `keys`, `timer_list`, `interrupts`, `acpi`,
//!   `sched_debug`, … are masked (runc's default spec); `/sys` is
//!   read-only with `firmware` masked.
//!
//! # Mounts inside the root
//!
//! - `/proc`: a new proc instance (falls back to a recursive bind of the
//!   host's `/proc` if refused).
//! - `/dev`: a tmpfs (mode 0755) with the nodes `null`, `zero`, `full`,
//!   `random`, `urandom` and `tty` made in it with `mknod` (bind-mounted
//!   from the host's `/dev` where `mknod` is refused), the `fd`, `stdin`,
//!   `stdout`, `stderr` and `ptmx` links, a `devpts` instance on `pts` and a
//!   tmpfs on `shm`, as runc lays it out. The host's `/dev` is not bound
//!   whole, and its nodes are not bound when they can be made: a RUN as
//!   root could otherwise write to the host's disks, or `chmod` the host's
//!   `/dev/null`.
//! - `/sys`: a read-only sysfs, or a read-only bind of the host's, where
//!   the kernel allows; a failure is a warning.
//! - `/etc/resolv.conf`, `/etc/hosts` (with [`RunSpec::hosts_files`]): a
//!   private copy of the host's file, bind-mounted over the image's (an
//!   empty file is created to mount on when the image has none, and removed
//!   afterwards, so it is never captured into a layer). A RUN that writes
//!   these files changes only the copy: neither the host nor the image.
//!
//! All of it happens in a private mount namespace whose propagation is
//! made private first, so nothing reaches the host's mount table.
//!
//! # `RUN --mount`
//!
//! [`mount_spec`] parses the values as BuildKit spells them (pure,
//! table-tested); the build engine (`build::run_mounts`) resolves each to
//! a [`RunMount`]: a host source and an in-image target, carried by
//! [`RunSpec::mounts`] so that every isolation mode mounts the same list.
//! In `--isolation=chroot` the set-up thread binds them after the mounts
//! above, parents first:
//!
//! - `bind` from the context, a stage or an image: the source itself,
//!   bound and remounted read-only (the kernel refuses writes, root's
//!   too); `rw` binds a private copy that is thrown away afterwards, and
//!   a context filtered by `.dockerignore` is copied without what it
//!   excludes.
//! - `cache`: a directory under `--cache-dir`
//!   (`run-mounts/<os>-<arch>[-<variant>]/<id>`), so a platform never sees
//!   another's cache; `sharing` is an `flock` on a file beside it.
//! - `secret`: a file kiln writes outside the root filesystem with the
//!   asked mode and owner, bound read-only; with `env`, the value is in
//!   [`RunSpec::secret_env`] instead of (or as well as) a file.
//! - `tmpfs`: a new tmpfs.
//!
//! A target the image lacks is created as a stub and removed afterwards
//! like `/proc` (see `stubs`), so a snapshot sees nothing of a mount: not
//! its mount point, not what the command wrote into a cache, not a secret.
//! Mount targets may not nest (the build refuses it before running).
//!
//! # Foreign architectures
//!
//! Nothing here changes for them: with `--emulation=qemu` the kernel runs
//! the image's binaries through a qemu-user interpreter registered in
//! binfmt_misc with the F flag, which it opened at registration and so
//! finds from inside the chroot. [`emulation`] checks, before a build
//! starts, that such an interpreter is registered.
//!
//! # Limits
//!
//! Needs root, or `CAP_SYS_ADMIN` (plus `CAP_SETUID`, `CAP_SETGID`,
//! `CAP_SETPCAP`), in the initial user namespace: inside an unprivileged
//! container use `--isolation=inplace`. No user namespace: root in a step
//! is root on the host's files it can reach (its root filesystem, its
//! `RUN --mount`s), with the capabilities above. The network is the
//! host's unless `RUN --network=none`. There are no resource limits
//! (cgroups): a step can use all of the machine's CPU and memory. The
//! parent-death signal is cleared by the kernel when the command itself
//! is a set-user-ID program (`RUN ["sudo", …]` in exec form, as a
//! non-root `USER`): such a step outlives a `SIGKILL` of kiln (SIGTERM
//! and SIGINT still kill it).
//!
//! # In place (`--isolation=inplace`)
//!
//! kaniko's model, the default in kiln's builder image: the build engine
//! unpacks the stage over the container's own `/` (see
//! `crate::build::inplace` for how one stage at a time owns `/`, how
//! `COPY --from` sources are unpacked from their layers into a work
//! directory under `/kiln/work`, and `--cleanup`; and `crate::fs::inplace`
//! for what is protected: `/kiln`, `/kaniko`, `/proc`, `/sys`, `/dev`,
//! `/var/run`, `--ignore-path`s, the runtimes' marker files, the context,
//! `--cache-dir` and every mount point in `/proc/self/mountinfo`), and
//! [`run_in_place`] forks and execs the command as a plain child of kiln:
//! no namespace, no mount, no chroot, so it needs only a container's
//! default capabilities (`CAP_SETUID`/`CAP_SETGID` to become the `USER`,
//! which a root container has; a non-root kiln can run steps as itself
//! only). Between fork and exec the child sets the umask, changes to the
//! WORKDIR and takes the user's uid, gid and supplementary groups
//! (`sys::install_plain_setup`). `/proc`, `/dev`, `/sys`, `/etc/hosts` and
//! `/etc/resolv.conf` are the container's own.
//!
//! A step as a non-root `USER` gets `no_new_privs`: no set-user-ID
//! binary of the image raises its privileges (so `su` and `sudo` do not
//! work in this mode; as root they are not needed). kiln makes itself not
//! dumpable (`PR_SET_DUMPABLE` 0) at start, so a step as its user (or as
//! root without `CAP_SYS_PTRACE`, as in a container's default set) cannot
//! read `/proc/<kiln>/environ`, `mem` or `fd`, nor `ptrace` it. The
//! command gets `SIGKILL` if kiln dies (parent-death signal).
//!
//! Leftover processes: the command leads a new process group, which is
//! killed with `SIGKILL` once the command exits. Without a PID namespace a
//! process that leaves the group (`setsid`, a daemon that double-forks
//! into a new session, `setpgid`) escapes: it keeps running in the
//! container after the step, can still write to `/` (its writes land in a
//! later snapshot, or are removed when the next stage takes `/`), and kiln
//! stops reading the step's output 2 seconds after the command exits if
//! such a process holds it open. A container that ends with the build
//! (a Kubernetes Job) ends them too. `RUN --network=none` needs a network
//! namespace and is refused in this mode. Nothing isolates the step from
//! kiln's files: a RUN as root can read `/kaniko/.docker` and kill kiln,
//! as under kaniko.
//!
//! `RUN --mount`s get the same [`RunMount`] list as in chroot, but with no
//! mount system call available they are *materialised* (`inplace_mounts`):
//! a cache (or `rw` bind) directory is moved to its target and back, a
//! read-only bind or a secret's file is copied there and removed, a tmpfs
//! is an empty directory; an image entry at a target is moved aside to a
//! scratch directory below `/kiln/work` and back, stubs and parents' times
//! are handled as for chroot's mount points, and all of it is undone
//! before the snapshot, on failure too (secrets first of all). Limits: a
//! read-only mount is not enforced (what the step writes to the copy is
//! discarded), a tmpfs has no size limit, and copying large bind sources
//! costs what a bind mount does not.

mod chroot;
pub mod container;
pub mod emulation;
mod error;
mod exec;
mod inplace;
mod inplace_mounts;
pub mod interrupt;
pub mod mount_spec;
mod mounts;
mod output;
mod seccomp;
pub mod secret;
mod stubs;
mod sys;

use std::path::PathBuf;

pub use chroot::run_in_chroot;
pub use error::RunError;
pub use inplace::run_in_place;
pub use secret::SecretValue;
pub use sys::make_not_dumpable;

/// `PATH` for a step whose environment has none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The shell of a shell-form `RUN` when no `SHELL` instruction set one.
pub const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// The network a step sees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Network {
    /// The host's network (Docker's and kaniko's default for builds).
    #[default]
    Default,
    /// `RUN --network=none`: a new network namespace with only loopback,
    /// which is brought up.
    None,
}

/// One RUN, as the build engine resolved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSpec {
    /// Exec form as is; shell form is `SHELL` + `[command]`
    /// ([`RunSpec::from_shell`]).
    pub argv: Vec<String>,
    /// The image's `ENV` and the build args in scope, in order (a later
    /// entry overrides an earlier one of the same name). `PATH`
    /// ([`DEFAULT_PATH`]) and `HOME` (the user's home directory) are added
    /// when missing.
    pub env: Vec<(String, String)>,
    /// Absolute in-image path; created (0755, owned by the user) if missing.
    pub workdir: String,
    /// The `USER` value (`name`, `uid`, `name:group`, `uid:gid`), resolved
    /// in the image's `/etc/passwd` and `/etc/group`; `None` is root.
    pub user: Option<String>,
    pub network: Network,
    /// Bind the host's `/etc/resolv.conf` and `/etc/hosts` (copies of them)
    /// into the root during the RUN only.
    pub hosts_files: bool,
    /// `RUN --mount`s resolved to host sources, in the order given; no
    /// target is inside another's. See [`RunMount`].
    pub mounts: Vec<RunMount>,
    /// Secrets exposed as environment variables (`--mount=type=secret,env=`),
    /// added after [`RunSpec::env`]; their values never print (`Debug`
    /// shows only their length) and never reach the image.
    pub secret_env: Vec<(String, SecretValue)>,
}

/// One `RUN --mount`, as an isolation mode needs it: a host source and an
/// in-image target. `--isolation=chroot` bind-mounts it inside the RUN's
/// own mount namespace (a missing target is created as a stub and removed
/// afterwards, so no snapshot ever sees it); `--isolation=inplace` has the
/// same list to materialise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunMount {
    /// Clean absolute in-image path.
    pub target: String,
    pub source: MountSource,
    /// Remounted read-only: the command cannot write through it.
    pub read_only: bool,
}

/// What a [`RunMount`] puts at its target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountSource {
    /// A host directory (the build context or part of it, another stage's
    /// root filesystem, a private copy for `rw`, a cache directory under
    /// `--cache-dir`).
    Directory(PathBuf),
    /// A host file (one file of those, or a secret written by kiln to a
    /// private file outside the root filesystem).
    File(PathBuf),
    /// An empty tmpfs, of `size` bytes when given.
    Tmpfs { size: Option<u64> },
}

impl Default for RunSpec {
    fn default() -> RunSpec {
        RunSpec {
            argv: Vec::new(),
            env: Vec::new(),
            workdir: "/".to_string(),
            user: None,
            network: Network::Default,
            hosts_files: true,
            mounts: Vec::new(),
            secret_env: Vec::new(),
        }
    }
}

impl RunSpec {
    /// Shell form: `shell` (the `SHELL` instruction's value, or
    /// [`DEFAULT_SHELL`] when empty) followed by `command`.
    pub fn from_shell(shell: &[String], command: &str) -> RunSpec {
        let mut argv: Vec<String> = if shell.is_empty() {
            DEFAULT_SHELL.iter().map(|s| s.to_string()).collect()
        } else {
            shell.to_vec()
        };
        argv.push(command.to_string());
        RunSpec {
            argv,
            ..RunSpec::default()
        }
    }

    /// [`RunSpec::env`] followed by [`RunSpec::secret_env`] (a value that
    /// is not UTF-8 is passed lossily): the variables the command gets.
    pub fn env_with_secrets(&self) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        env.extend(self.secret_env.iter().map(|(name, value)| {
            (
                name.clone(),
                String::from_utf8_lossy(value.bytes()).into_owned(),
            )
        }));
        env
    }

    /// Exec form: `argv` as written.
    pub fn from_exec(argv: Vec<String>) -> RunSpec {
        RunSpec {
            argv,
            ..RunSpec::default()
        }
    }
}

/// How a RUN ended. A non-zero `status` is not an error here: the engine
/// reports `RUN failed (exit N): <command>` and kiln exits with N (the
/// output was already streamed to the log; `output_tail` is for callers
/// that did not show it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutput {
    /// The exit code, or 128 + the signal number when a signal ended it.
    pub status: i32,
    /// The last 64 KiB (at most) of stdout and stderr together, lossily
    /// decoded as UTF-8.
    pub output_tail: String,
    /// In-image paths that did not exist and were created as mount points
    /// for this RUN, in creation order. Each is removed again when the run
    /// ends, if it is still an empty directory or empty file (its parent's
    /// access and modification times are then restored; its ctime cannot
    /// be). One still present afterwards holds what the command wrote into
    /// it and belongs to the layer.
    pub created_mount_points: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_shell_uses_default_shell_when_none_is_set() {
        assert_eq!(
            RunSpec::from_shell(&[], "echo hi").argv,
            ["/bin/sh", "-c", "echo hi"]
        );
        let shell = vec![
            "/bin/bash".to_string(),
            "-eo".into(),
            "pipefail".into(),
            "-c".into(),
        ];
        assert_eq!(
            RunSpec::from_shell(&shell, "make").argv,
            ["/bin/bash", "-eo", "pipefail", "-c", "make"]
        );
    }

    #[test]
    fn defaults() {
        let spec = RunSpec::from_exec(vec!["true".to_string()]);
        assert_eq!(spec.workdir, "/");
        assert!(spec.hosts_files);
        assert_eq!(spec.network, Network::Default);
        assert_eq!(spec.user, None);
        assert_eq!(spec.env, []);
    }
}
