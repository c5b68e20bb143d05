//! RUN inside a build: the stage's root filesystem is unpacked, the command
//! runs chrooted into it (`run::run_in_chroot`) with its `--mount`s
//! (`super::run_mounts`) or, with `--isolation=inplace`, in the container's
//! own `/` (`run::run_in_place`), and what it changed is snapshotted into
//! one layer.

use std::path::{Path, PathBuf};

use super::BuildError;
use super::run_mounts::{self, ParsedMount};
use super::seam::LayerClass;
use super::state::StageImage;
use super::step::{CacheInputs, Executed, StageContext, StepContext};
use super::step_log::Step;
use crate::dockerfile::{RunInstruction, RunScript, StageVars};
use crate::options::ExecutionOptions;
use crate::run::{Network, RunSpec};
use crate::snapshot::{DEFAULT_IGNORE_PATHS, Snapshotter};

/// Where a here-document script is written for the duration of its RUN.
const SCRIPT_DIR: &str = "/.kiln-run";

/// A RUN, its flags checked and its mounts parsed.
pub struct RunStep<'s> {
    run: &'s RunInstruction,
    network: Network,
    mounts: Vec<ParsedMount>,
    /// The working directory it runs in.
    workdir: String,
}

impl<'s> RunStep<'s> {
    pub fn new(
        run: &'s RunInstruction,
        image: &StageImage,
        vars: &StageVars,
    ) -> Result<RunStep<'s>, BuildError> {
        if let Some(security) = &run.security
            && security != "sandbox"
        {
            return Err(BuildError::Other(format!(
                "RUN --security={security} is not supported"
            )));
        }
        let network = match run.network.as_deref() {
            None | Some("default") | Some("host") => Network::Default,
            Some("none") => Network::None,
            Some(other) => {
                return Err(BuildError::Other(format!(
                    "RUN --network={other} is not supported (use default, host or none)"
                )));
            }
        };
        Ok(RunStep {
            run,
            network,
            mounts: run_mounts::parse_run_mounts(run, vars)?,
            workdir: image.config.workdir(),
        })
    }

    /// What its mounts bind (see [`run_mounts::key_files`]).
    pub async fn cache_inputs(
        &self,
        stage: &StageContext<'_, '_>,
    ) -> Result<CacheInputs, BuildError> {
        Ok(CacheInputs::Layer {
            class: LayerClass::Run,
            files: run_mounts::key_files(stage, &self.mounts, &self.workdir).await?,
        })
    }

    /// Runs the command in the stage's root filesystem and snapshots what
    /// it changed.
    pub async fn execute(
        self,
        stage: &mut StageContext<'_, '_>,
        step: &StepContext<'_>,
        image: &mut StageImage,
        vars: &StageVars,
    ) -> Result<Executed, BuildError> {
        let scope = stage.scope;
        let rootfs = scope.blobs.stage_root(image).await?;
        // With --single-snapshot the stage takes one snapshot at its end.
        let mut snapshotter = match (scope.snapshots.one_per_stage, image.snapshotter.take()) {
            (true, _) => None,
            (false, Some(snapshotter)) => Some(snapshotter),
            (false, None) => Some(Snapshotter::new(&rootfs, &scope.snapshots.never_captured)?),
        };

        let config = &image.config.config;
        let shell = config
            .shell
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_default();
        let mut script_file = None;
        let mut spec = match self.run.script() {
            RunScript::Exec(argv) => RunSpec::from_exec(argv),
            RunScript::Shell(command) => RunSpec::from_shell(&shell, &command),
            RunScript::File { name, content } => {
                let path = write_script(&rootfs, &name, &content)?;
                let in_image = format!("{SCRIPT_DIR}/{name}");
                script_file = Some(path);
                RunSpec::from_exec(vec![in_image])
            }
        };
        let mut env = vars.env().to_vec();
        env.extend(vars.run_args());
        spec.env = env;
        spec.user = config.user.clone().filter(|u| !u.is_empty());
        spec.network = self.network;
        // Held until the command is done: copies, secret files, cache locks.
        let resolved = run_mounts::resolve(stage, &self.mounts, &self.workdir).await?;
        spec.workdir = self.workdir;
        spec.mounts = resolved.mounts.clone();
        spec.secret_env = resolved.secret_env.clone();

        let root = rootfs.clone();
        let runner = std::sync::Arc::clone(&scope.run.runner);
        // In place: where the image's entries at mount targets wait.
        let scratch = tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(scope.blobs.work_dir)
            .map_err(BuildError::io(
                "creating a directory in",
                scope.blobs.work_dir,
            ))?;
        let scratch_path = scratch.path().to_path_buf();
        // With --log-format=json every output line is an object of its own.
        let json = crate::progress::json_lines();
        let log = step.log;
        let (step_platform, step_stage) = (log.platform.clone(), log.stage.to_string());
        let (number, total) = (log.number, log.total);
        let span = tracing::Span::current();
        let result = tokio::task::spawn_blocking(move || {
            let _in_step = span.enter();
            let step = Step {
                platform: &step_platform,
                stage: &step_stage,
                number,
                total,
            };
            let mut lines = OutputLines::default();
            // The build's log is stderr; a failed write there is not the
            // step's failure.
            // Line by line: each goes out behind the step's label (text) or
            // as an object of its own (JSON).
            let emit = |line: &str| match json {
                true => step.output(line),
                false => {
                    let _ = crate::progress::write_stderr(step.output_text(line).as_bytes());
                }
            };
            let mut log = |chunk: &[u8]| lines.push(chunk, emit);
            let result = runner.run(&root, &spec, &scratch_path, &mut log);
            lines.finish(emit);
            result
        })
        .await
        .map_err(|source| BuildError::Task {
            what: "the RUN task",
            source,
        })?;
        drop(resolved);
        if let Some(path) = &script_file {
            remove_script(path)?;
        }
        let output = result?;
        if output.status != 0 {
            // The output went to the log as it came; the error does not
            // repeat it.
            return Err(BuildError::RunFailed {
                line: step.instruction.line,
                instruction: step.instruction.text.clone(),
                code: output.status,
            });
        }

        let Some(mut snapshotter) = snapshotter.take() else {
            return Ok(Executed::InRoot);
        };
        let plan = snapshotter.take(scope.snapshots.mode)?;
        Ok(Executed::Snapshot {
            plan,
            baseline: snapshotter,
        })
    }
}

/// A command's output cut into lines, for logging one event per line; a
/// partial line waits for its end (or for [`OutputLines::finish`]).
#[derive(Default)]
struct OutputLines {
    pending: Vec<u8>,
}

impl OutputLines {
    fn push(&mut self, chunk: &[u8], mut emit: impl FnMut(&str)) {
        self.pending.extend_from_slice(chunk);
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..end]);
            emit(text.strip_suffix('\r').unwrap_or(&text));
        }
    }

    fn finish(&mut self, mut emit: impl FnMut(&str)) {
        if !self.pending.is_empty() {
            emit(&String::from_utf8_lossy(&self.pending));
            self.pending.clear();
        }
    }
}

/// Image paths no snapshot captures: the kernel's and the runner's mounts,
/// kiln's and kaniko's own directories, /var/run unless
/// `--ignore-var-run=false`, and every `--ignore-path`.
pub(super) fn never_captured(execution: &ExecutionOptions) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = DEFAULT_IGNORE_PATHS
        .iter()
        .filter(|p| execution.ignore_var_run || **p != "/var/run")
        .map(PathBuf::from)
        .collect();
    paths.push(PathBuf::from(SCRIPT_DIR));
    paths.extend(execution.ignore_paths.iter().cloned());
    paths
}

/// Writes a here-document script into the root filesystem, executable.
fn write_script(rootfs: &Path, name: &str, content: &str) -> Result<PathBuf, BuildError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = crate::fs::resolve_in_root(rootfs, SCRIPT_DIR)?;
    std::fs::create_dir_all(&dir).map_err(BuildError::io("creating", &dir))?;
    let path = dir.join(name.replace('/', "_"));
    std::fs::write(&path, content).map_err(BuildError::io("writing", &path))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .map_err(BuildError::io("setting mode of", &path))?;
    Ok(path)
}

fn remove_script(path: &Path) -> Result<(), BuildError> {
    if let Some(dir) = path.parent() {
        std::fs::remove_dir_all(dir).map_err(BuildError::io("removing", dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::OutputLines;

    #[test]
    fn output_is_cut_into_lines() {
        let table: [(&[&[u8]], &[&str]); 4] = [
            (&[b"one\ntwo\n"], &["one", "two"]),
            (&[b"par", b"tial\r\nend"], &["partial", "end"]),
            (&[b"\n\n"], &["", ""]),
            (&[b"bad \xff byte\n"], &["bad \u{fffd} byte"]),
        ];
        for (chunks, want) in table {
            let mut lines = OutputLines::default();
            let mut got = Vec::new();
            for chunk in chunks {
                lines.push(chunk, |line| got.push(line.to_string()));
            }
            lines.finish(|line| got.push(line.to_string()));
            assert_eq!(got, want, "{chunks:?}");
        }
    }
}
