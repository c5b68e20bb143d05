//! `--dry-run`: everything a build would check before doing work, and
//! nothing else. The build's own checks run first ([`super::preflight`]:
//! emulation, bases for every platform, push access), so the dry run
//! refuses what the build would, with the same message; then every base
//! image is resolved for every platform and the plan is printed. No layer
//! is built, nothing is pushed.

use std::fmt::Write as _;

use crate::build::{BuildError, Session};
use crate::dockerfile::Base;
use crate::options::BuildOptions;
use crate::platform::Platform;

use super::preflight::{PushCheck, preflight, pushes_only_oci};

/// Checks what a build of `options` needs and returns the plan as text.
pub async fn dry_run(options: &BuildOptions) -> Result<String, BuildError> {
    let session = Session::open(options).await?;
    let host = Platform::host();
    let platforms = if options.platforms.is_empty() {
        vec![host.clone()]
    } else {
        options.platforms.clone()
    };
    let mut report = String::new();
    let _ = writeln!(
        report,
        "plan for {} platform(s) on a {host} machine:",
        platforms.len()
    );
    // What the build refuses before its first step, the dry run refuses
    // with the same message.
    let (emulated, push) = preflight(&session, options, &platforms).await?;
    for platform in &platforms {
        let (_, plan) = session.plan(options, platform)?;
        let under_qemu: Vec<String> = emulated
            .iter()
            .filter(|e| &e.platform == platform)
            .map(|e| {
                format!(
                    "RUN for {} under qemu-user emulation ({})",
                    e.runs_for, e.interpreter.entry
                )
            })
            .collect();
        // A foreign RUN the emulation mode cannot run was refused above.
        let native = if under_qemu.is_empty() {
            "runs here".to_string()
        } else {
            format!("runs here, {}", under_qemu.join(", "))
        };
        let _ = writeln!(report, "{platform}: {native}");
        for planned in &plan.stages {
            let stage = &session.dockerfile().stages[planned.index];
            let stage_platform = match &planned.platform {
                Some(text) => text.parse::<Platform>().map_err(BuildError::from)?,
                None => platform.clone(),
            };
            let base = match &planned.base {
                Base::Scratch => "scratch".to_string(),
                Base::Stage(index) => session.dockerfile().stages[*index].display_name(),
                Base::Image(reference) => {
                    let pulled = session
                        .registry()
                        .pull_image(reference, &stage_platform)
                        .await?;
                    format!("{reference} ({})", pulled.manifest_digest)
                }
            };
            for image in &planned.images {
                session
                    .registry()
                    .pull_image(image, &stage_platform)
                    .await?;
            }
            let _ = writeln!(
                report,
                "  stage {} for {stage_platform}: FROM {base}, {} instruction(s)",
                stage.display_name(),
                stage.instructions.len()
            );
        }
    }
    for destination in &options.output.destinations {
        match push {
            PushCheck::Checked if pushes_only_oci(options) => {
                let _ = writeln!(
                    report,
                    "push access: {destination} ok, OCI manifests accepted"
                );
            }
            PushCheck::Checked => {
                let _ = writeln!(report, "push access: {destination} ok");
            }
            PushCheck::Skipped => {
                let _ = writeln!(
                    report,
                    "push access: {destination} not checked (--skip-push-permission-check)"
                );
            }
            PushCheck::NoPush => {}
        }
    }
    let _ = writeln!(report, "dry run: nothing was built or pushed");
    Ok(report)
}
