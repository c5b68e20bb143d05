//! `--isolation=inplace`: the command runs as a plain child of kiln, in the
//! container's own `/` (where the build engine has unpacked the stage), as
//! the Dockerfile's `USER`, in its `WORKDIR`.

use std::ffi::CString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::exec::{command_env, ensure_workdir, exec_hint, path_of, resolve_executable};
use super::inplace_mounts::Materialized;
use super::output::supervise;
use super::sys::{self, ChildStep, PlainPlan};
use super::{Network, RunError, RunOutput, RunSpec};
use crate::fs::{clean_image_path, resolve_exec_user};

/// The root an in-place RUN sees: kiln's own.
const ROOT: &str = "/";

/// Runs `spec` in kiln's own root filesystem and returns its exit status
/// and the tail of its output; the output is also passed to `log` as it
/// arrives. The command is the leader of a new process group, killed
/// with `SIGKILL` once the command exits: what it left running in that
/// group does not outlive the step (a process that called `setsid` or
/// changed its group does; see the module documentation).
///
/// An exit status other than 0 is `Ok`; errors are for a command that
/// could not be started.
///
/// `RUN --mount`s ([`RunSpec::mounts`]) are materialised in `/` for the
/// step and taken away before this returns (`inplace_mounts`); `scratch`
/// is a directory outside what snapshots see (below `/kiln`) where the
/// image's own entries at mount targets wait meanwhile.
pub fn run_in_place(
    spec: &RunSpec,
    scratch: &Path,
    log: &mut dyn FnMut(&[u8]),
) -> Result<RunOutput, RunError> {
    let root = Path::new(ROOT);
    let name = spec.argv.first().ok_or(RunError::EmptyCommand)?.clone();
    if let Some(arg) = spec.argv.iter().find(|arg| arg.contains('\0')) {
        return Err(RunError::InvalidArg { arg: arg.clone() });
    }
    if spec.network == Network::None {
        return Err(RunError::NetworkNoneInPlace);
    }
    let user_spec = spec.user.as_deref().unwrap_or("0");
    let user = resolve_exec_user(root, user_spec).map_err(|source| RunError::User {
        user: user_spec.to_string(),
        source,
    })?;
    let env = command_env(&spec.env_with_secrets(), &user.home)?;
    let workdir = format!("/{}", clean_image_path(Path::new(&spec.workdir)).display());
    ensure_workdir(root, &workdir, user.uid, user.gid)?;
    let program = resolve_executable(root, &name, path_of(&env), &workdir)?;
    let mounts = Materialized::place(root, &spec.mounts, scratch)?;
    let result = start_and_supervise(spec, name, program, env, workdir, user, log);
    // Taken away before anything else happens, the secrets first of all.
    let restored = mounts.restore();
    let output = result?;
    restored?;
    Ok(output)
}

/// Forks the command with its user and working directory and follows it
/// to its end.
fn start_and_supervise(
    spec: &RunSpec,
    name: String,
    program: String,
    env: Vec<(String, String)>,
    workdir: String,
    user: crate::fs::ExecUser,
    log: &mut dyn FnMut(&[u8]),
) -> Result<RunOutput, RunError> {
    let root = Path::new(ROOT);

    let (output, writer) = io::pipe().map_err(RunError::io("create", "the output pipe"))?;
    let stderr = writer
        .try_clone()
        .map_err(RunError::io("duplicate", "the output pipe"))?;
    let mut cmd = Command::new(&program);
    cmd.arg0(&name)
        .args(&spec.argv[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(stderr)
        .process_group(0);
    let plan = PlainPlan {
        workdir: CString::new(workdir.as_bytes()).map_err(|_| RunError::InvalidArg {
            arg: workdir.clone(),
        })?,
        ids: ids_to_switch(
            (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw(),
            ),
            (user.uid, user.gid, &user.additional_gids),
        ),
        // A step as root keeps what root has in the container (set-user-ID
        // binaries change nothing for it); a step as another user cannot
        // regain privileges through one (`su`, `sudo` and file
        // capabilities do not work for it in this mode).
        no_new_privs: user.uid != 0,
    };
    let describe = {
        let (workdir, uid, gid) = (workdir.clone(), user.uid, user.gid);
        let groups = user.additional_gids.clone();
        move |step: ChildStep| match step {
            ChildStep::Chdir => format!("change directory to WORKDIR {workdir}"),
            ChildStep::SetGroups => format!("set supplementary groups {groups:?}"),
            ChildStep::SetGid => format!("set group id {gid}"),
            ChildStep::SetUid => format!("set user id {uid}"),
            ChildStep::DeathSignal => "set the parent-death signal".to_string(),
            ChildStep::NoNewPrivileges => "set no_new_privs".to_string(),
            // Not steps of a plain exec.
            ChildStep::ProcInstance
            | ChildStep::MountProc
            | ChildStep::ProcReadOnly
            | ChildStep::ProcMask
            | ChildStep::PivotRoot
            | ChildStep::BoundingSet
            | ChildStep::Seccomp
            | ChildStep::Capabilities
            | ChildStep::Init => format!("{step:?}"),
        }
    };
    let reports = sys::install_plain_setup(&mut cmd, plan)
        .map_err(RunError::io("create", "the set-up report pipe"))?;
    let spawned = cmd.spawn();
    // Closes this process's ends of the output and report pipes.
    drop(cmd);
    let reports =
        sys::read_child_reports(reports).map_err(RunError::io("read", "the set-up report pipe"))?;
    let child = match (spawned, reports.into_iter().next()) {
        (Ok(child), _) => child,
        (Err(_), Some(report)) => {
            return Err(RunError::ChildSetup {
                root: root.to_path_buf(),
                step: describe(report.step),
                source: report.error,
            });
        }
        (Err(source), None) => {
            return Err(RunError::Exec {
                hint: exec_hint(&source),
                name,
                source,
            });
        }
    };
    let (status, output_tail) =
        supervise(child, output, log).map_err(|source| RunError::Supervise {
            name,
            op: "read the command's output or wait for it",
            source,
        })?;
    Ok(RunOutput {
        status,
        output_tail,
        created_mount_points: Vec::new(),
    })
}

/// The ids the child switches to: always when kiln runs as root (the
/// supplementary groups too), never when it already is the step's user
/// and group without privilege to change them; otherwise the switch is
/// tried and fails with the kernel's word.
fn ids_to_switch(current: (u32, u32), wanted: (u32, u32, &[u32])) -> Option<(u32, u32, Vec<u32>)> {
    let (uid, gid, groups) = wanted;
    if current.0 != 0 && current == (uid, gid) {
        return None;
    }
    Some((uid, gid, groups.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_switched_unless_already_the_unprivileged_user() {
        type Wanted<'a> = (u32, u32, &'a [u32]);
        type Ids = Option<(u32, u32, Vec<u32>)>;
        let cases: [((u32, u32), Wanted, Ids); 5] = [
            ((0, 0), (0, 0, &[]), Some((0, 0, vec![]))),
            (
                (0, 0),
                (1000, 1000, &[10, 20]),
                Some((1000, 1000, vec![10, 20])),
            ),
            ((1000, 1000), (1000, 1000, &[10]), None),
            ((1000, 1000), (1000, 50, &[]), Some((1000, 50, vec![]))),
            ((1000, 1000), (0, 0, &[]), Some((0, 0, vec![]))),
        ];
        for (current, wanted, want) in cases {
            assert_eq!(
                ids_to_switch(current, wanted),
                want,
                "{current:?} {wanted:?}"
            );
        }
    }
}
