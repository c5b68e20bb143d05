//! Kubernetes: `--driver=k8s` hands the build to the kiln operator of the
//! current kube context (`submit`: the MultiArchBuild made from the flags,
//! `upload`: a local context as an OCI artifact, `follow`: progress until
//! the end), and a builder pod reports to its BuildRequest (`report`).

pub mod follow;
pub mod report;
pub mod submit;
pub mod upload;

use std::time::Duration;

use kiln_crds::{MultiArchBuild, Phase};
use kube::api::{Api, DeleteParams, PostParams};
use tracing::info;

use crate::context::ContextSource;
use crate::options::BuildOptions;
use crate::registry::Registry;

/// What `--driver=k8s` ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum K8sOutcome {
    /// `name@digest` of the published index (or of each platform image when
    /// no index was asked for).
    Published(Vec<String>),
    /// `--detach`: the MultiArchBuild that was created.
    Detached { namespace: String, name: String },
}

#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error(
        "--driver=k8s needs a Kubernetes context (KUBECONFIG, ~/.kube/config or a pod's service account): {0}"
    )]
    Connect(kube::Error),
    #[error("creating the MultiArchBuild in namespace {namespace}: {source}")]
    Create {
        namespace: String,
        source: kube::Error,
    },
    #[error("following MultiArchBuild {namespace}/{name}: {source}")]
    Follow {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("MultiArchBuild {namespace}/{name} failed: {message}")]
    Failed {
        namespace: String,
        name: String,
        message: String,
    },
    #[error("MultiArchBuild {namespace}/{name} was cancelled and deleted")]
    Cancelled { namespace: String, name: String },
    #[error(
        "MultiArchBuild {namespace}/{name} was deleted before it finished (by someone else, or with its namespace)"
    )]
    Vanished { namespace: String, name: String },
    #[error(transparent)]
    Submit(#[from] submit::SubmitError),
    #[error(transparent)]
    Upload(#[from] upload::UploadError),
}

/// Runs `--driver=k8s`: uploads a local context, creates the
/// MultiArchBuild, and follows it to the end unless `--detach`.
pub async fn run_k8s(options: &BuildOptions) -> Result<K8sOutcome, K8sError> {
    // Refuse what the cluster cannot do before reaching it, and say what
    // it will not do.
    submit::multi_arch_build(options, &options.context)?;
    for flag in submit::dropped_flags(options) {
        tracing::warn!(
            "{flag} has no MultiArchBuild field: the cluster's builds run without it (--driver=local applies it)"
        );
    }
    let client = kube::Client::try_default()
        .await
        .map_err(K8sError::Connect)?;
    let namespace = options
        .k8s
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());

    let source = ContextSource::parse(&options.context).map_err(submit::SubmitError::from)?;
    let context = match upload::local_context(&source) {
        Some(local) => {
            let registry =
                Registry::new(options.registry.clone()).map_err(upload::UploadError::from)?;
            let repository = submit::context_repository(options)?;
            let reference = upload::upload_context(&registry, &repository, local).await?;
            info!("uploaded the build context to {reference}");
            reference
        }
        None => options.context.clone(),
    };
    let build = submit::multi_arch_build(options, &context)?;

    let api: Api<MultiArchBuild> = Api::namespaced(client, &namespace);
    let created = api
        .create(&PostParams::default(), &build)
        .await
        .map_err(|source| K8sError::Create {
            namespace: namespace.clone(),
            source,
        })?;
    let name = created.metadata.name.clone().unwrap_or_default();
    say(&format!("created MultiArchBuild {namespace}/{name}"));
    if options.k8s.detach {
        return Ok(K8sOutcome::Detached { namespace, name });
    }
    follow_to_end(&api, &namespace, &name).await
}

async fn follow_to_end(
    api: &Api<MultiArchBuild>,
    namespace: &str,
    name: &str,
) -> Result<K8sOutcome, K8sError> {
    let follow_error = |source| K8sError::Follow {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        source,
    };
    let mut shown = follow::Shown::default();
    let mut interrupts = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let Some(build) = api.get_opt(name).await.map_err(follow_error)? else {
            return Err(K8sError::Vanished {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            });
        };
        let status = build.status.clone().unwrap_or_default();
        for line in shown.update(&status) {
            say(&line);
        }
        match status.phase {
            Some(Phase::Succeeded) => return Ok(K8sOutcome::Published(follow::published(&build))),
            Some(Phase::Failed) => {
                return Err(K8sError::Failed {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    message: follow::failure_message(&status),
                });
            }
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = &mut interrupts => {
                interrupts.set(tokio::signal::ctrl_c());
                match ask_to_cancel(namespace, name).await {
                    follow::Answer::Cancel => {
                        api.delete(name, &DeleteParams::foreground()).await.map_err(follow_error)?;
                        return Err(K8sError::Cancelled { namespace: namespace.to_owned(), name: name.to_owned() });
                    }
                    follow::Answer::KeepFollowing => say(&format!("still following {namespace}/{name}")),
                    follow::Answer::Leave => {
                        say(&format!(
                            "leaving MultiArchBuild {namespace}/{name} running; follow it with kubectl get mab -n {namespace} {name} -w, cancel it with kubectl delete mab -n {namespace} {name}"
                        ));
                        return Ok(K8sOutcome::Detached { namespace: namespace.to_owned(), name: name.to_owned() });
                    }
                }
            }
        }
    }
}

/// A line of the driver's progress: text on stderr, or with
/// `--log-format=json` one more object of the log stream.
fn say(line: &str) {
    match crate::progress::json_lines() {
        true => tracing::info!(target: crate::progress::STEP_TARGET, "{line}"),
        false => eprintln!("{line}"),
    }
}

async fn ask_to_cancel(namespace: &str, name: &str) -> follow::Answer {
    let question =
        format!("cancel MultiArchBuild {namespace}/{name} (deletes it and its builds)? [y/N]");
    match crate::progress::json_lines() {
        true => {
            tracing::info!(target: crate::progress::STEP_TARGET, prompt = true, "{question}")
        }
        false => eprint!("\n{question} "),
    }
    let line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        match std::io::stdin().read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line),
        }
    })
    .await
    .ok()
    .flatten();
    follow::answer(line.as_deref())
}
