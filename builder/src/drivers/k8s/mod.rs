//! Kubernetes: `--driver=k8s` hands the build to the kiln operator of the
//! current kube context (`submit`: the MultiArchBuild made from the flags,
//! `upload`: a local context as an OCI artifact, `follow`: progress until
//! the end), and a builder pod reports to its BuildRequest (`report`).

pub mod follow;
pub mod report;
pub mod submit;
pub mod upload;

use std::time::Duration;

use futures::StreamExt;
use kiln_crds::{MultiArchBuild, Phase};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
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

/// How often the build is read when it cannot be watched.
const POLL: Duration = Duration::from_secs(1);

/// Whether a watch error is the API refusing list or watch: a service
/// account allowed only `create` and `get` on multiarchbuilds (the README's
/// minimal Role for a CI Job).
fn forbidden(error: &watcher::Error) -> bool {
    matches!(
        error,
        watcher::Error::InitialListFailed(kube::Error::Api(status))
            | watcher::Error::WatchStartFailed(kube::Error::Api(status))
            if status.code == 403
    )
}

/// Follows the one MultiArchBuild `name` with a watch (a field selector on
/// its name) until it ends. kube's watcher re-lists after a watch it could
/// not resume; on a watch error the build is also read once by GET, so a
/// phase reached while the watch was down is not missed. Where list or
/// watch is forbidden, the build is read by GET every [`POLL`] instead.
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
    let vanished = || K8sError::Vanished {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    };
    let read = || async {
        match api.get_opt(name).await.map_err(follow_error)? {
            Some(build) => Ok(build),
            None => Err(vanished()),
        }
    };
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = std::pin::pin!(watcher(api.clone(), config).default_backoff());
    let mut polling = false;
    let mut shown = follow::Shown::default();
    // Whether the list that (re)starts the watch had the build.
    let mut listed = false;
    let mut interrupts = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let build = tokio::select! {
            event = events.next(), if !polling => match event {
                Some(Ok(watcher::Event::Apply(build) | watcher::Event::InitApply(build))) => {
                    listed = true;
                    build
                }
                Some(Ok(watcher::Event::Delete(_))) => return Err(vanished()),
                Some(Ok(watcher::Event::Init)) => {
                    listed = false;
                    continue;
                }
                Some(Ok(watcher::Event::InitDone)) if listed => continue,
                Some(Ok(watcher::Event::InitDone)) => return Err(vanished()),
                // The re-list fallback: the watcher retries with backoff;
                // meanwhile the build is read directly.
                Some(Err(e)) => {
                    if forbidden(&e) {
                        tracing::debug!("may not watch MultiArchBuild {namespace}/{name} ({e}); reading it every {POLL:?}");
                        polling = true;
                    } else {
                        tracing::debug!("watching MultiArchBuild {namespace}/{name}: {e}; reading it instead");
                    }
                    read().await?
                }
                None => {
                    polling = true;
                    read().await?
                }
            },
            _ = tokio::time::sleep(POLL), if polling => read().await?,
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
                continue;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(Status {
            code,
            ..Status::default()
        }))
    }

    /// Only a refused list or watch turns following into polling; other
    /// errors are retried by the watcher.
    #[test]
    fn forbidden_table() {
        let rows = [
            (watcher::Error::InitialListFailed(api_error(403)), true),
            (watcher::Error::WatchStartFailed(api_error(403)), true),
            (watcher::Error::InitialListFailed(api_error(500)), false),
            (watcher::Error::WatchStartFailed(api_error(410)), false),
            (watcher::Error::WatchFailed(api_error(403)), false),
            (watcher::Error::NoResourceVersion, false),
        ];
        for (error, want) in rows {
            assert_eq!(forbidden(&error), want, "{error}");
        }
    }
}
