//! The config-only instructions (ENV, LABEL, MAINTAINER, EXPOSE, VOLUME,
//! USER, CMD, ENTRYPOINT, SHELL, STOPSIGNAL, HEALTHCHECK, ARG, ONBUILD):
//! they change the image's config or the stage's variables, write no
//! layer, and are links of the cache key chain ([`super::step::CacheInputs::Link`]).

use super::BuildError;
use super::state::StageImage;
use super::step::Executed;
use crate::dockerfile::{CommandForm, Healthcheck, InstructionKind, StageVars};
use crate::image::ImageConfig;

/// A config-only instruction.
pub struct ConfigStep<'s> {
    pub kind: &'s InstructionKind,
}

impl ConfigStep<'_> {
    /// Applies the instruction to the config and the stage's variables.
    pub fn execute(
        self,
        image: &mut StageImage,
        vars: &mut StageVars,
    ) -> Result<Executed, BuildError> {
        let config = &mut image.config;
        match self.kind {
            InstructionKind::Env(pairs) => {
                for (key, value) in vars.apply_env(pairs)? {
                    config.set_env(&key, &value);
                }
            }
            InstructionKind::Label(pairs) => {
                for (key, value) in pairs {
                    config.set_label(&vars.expand(key)?, &vars.expand(value)?);
                }
            }
            InstructionKind::Maintainer(author) => config.set_author(author),
            InstructionKind::Expose(ports) => {
                for port in ports {
                    for word in vars.expand_words(port)? {
                        config.expose(&word)?;
                    }
                }
            }
            InstructionKind::Volume(paths) => {
                for path in paths {
                    config.add_volume(&vars.expand(path)?);
                }
            }
            InstructionKind::User(user) => config.set_user(&vars.expand(user)?),
            InstructionKind::Cmd(form) => {
                let shell = shell_of(config);
                config.set_cmd(command_vector(form, &shell));
            }
            InstructionKind::Entrypoint(form) => {
                let shell = shell_of(config);
                config.set_entrypoint(command_vector(form, &shell));
            }
            InstructionKind::Shell(shell) => config.set_shell(shell.clone()),
            InstructionKind::StopSignal(signal) => config.set_stop_signal(&vars.expand(signal)?),
            InstructionKind::Healthcheck(check) => {
                let shell = shell_of(config);
                config.set_healthcheck(healthcheck(check, &shell));
            }
            InstructionKind::Arg(decls) => {
                vars.declare_args(decls)?;
                // Docker records no history for ARG.
                return Ok(Executed::Config { history: false });
            }
            InstructionKind::Onbuild(trigger) => config.add_onbuild(&trigger.text),
            // Never a ConfigStep: `stage::run_instruction` gives each of
            // these its own step.
            InstructionKind::Workdir(_)
            | InstructionKind::Copy(_)
            | InstructionKind::Add(_)
            | InstructionKind::Run(_) => {
                unreachable!("a filesystem instruction given to ConfigStep")
            }
        }
        Ok(Executed::Config { history: true })
    }
}

/// The shell for shell-form commands: the stage's SHELL, else `/bin/sh -c`.
fn shell_of(config: &ImageConfig) -> Vec<String> {
    config
        .config
        .shell
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string()])
}

fn command_vector(form: &CommandForm, shell: &[String]) -> Vec<String> {
    match form {
        CommandForm::Exec(args) => args.clone(),
        CommandForm::Shell(command) => {
            let mut args = shell.to_vec();
            args.push(command.clone());
            args
        }
    }
}

fn healthcheck(check: &Healthcheck, shell: &[String]) -> crate::image::config::Healthcheck {
    let nanos = |d: &Option<std::time::Duration>| {
        d.map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    };
    match check {
        Healthcheck::None => crate::image::config::Healthcheck {
            test: vec!["NONE".to_string()],
            ..Default::default()
        },
        Healthcheck::Check {
            test,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let test = match test {
                CommandForm::Exec(args) => {
                    let mut v = vec!["CMD".to_string()];
                    v.extend(args.iter().cloned());
                    v
                }
                CommandForm::Shell(command) => {
                    // Docker stores shell-form checks as CMD-SHELL and lets the
                    // runtime pick the shell; the SHELL only matters to RUN.
                    let _ = shell;
                    vec!["CMD-SHELL".to_string(), command.clone()]
                }
            };
            crate::image::config::Healthcheck {
                test,
                interval: nanos(interval),
                timeout: nanos(timeout),
                start_period: nanos(start_period),
                start_interval: nanos(start_interval),
                retries: retries.map(i64::from),
            }
        }
    }
}
