//! The MultiArchBuild controller's I/O: lists the owned BuildRequests,
//! carries out [`decide`]'s actions, publishes the index and applies the
//! status under the operator's field manager.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kiln_crds::{BuildRequest, IndexStatus, MultiArchBuild, MultiArchBuildStatus, Phase};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::reflector::store::Writer;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::decide::{Action, Observed, decide, publish_failed, published, requeue};
use super::publish::{load_signer, publish, write_docker_config};
use crate::build_request::render::FIELD_MANAGER;
use crate::context::{Context, Error, Listed};
use crate::metrics::{ControllerLabels, ResultLabels};
use crate::names::{JOB_NAME_MAX, MULTI_ARCH_BUILD_LABEL, object_name};

const CONTROLLER: &str = "multiarchbuild";

/// Reconciles one MultiArchBuild.
pub async fn reconcile(build: Arc<MultiArchBuild>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    // Until the stores have their first full list, an empty BuildRequest
    // store would read as "no requests yet".
    ctx.stores.listed.wait(Listed::FOR_BUILDS).await;
    let started = Instant::now();
    let result = reconcile_inner(&build, &ctx).await;
    if result.is_ok() {
        ctx.build_failures.succeeded(&build);
    }
    ctx.metrics
        .reconcile_seconds
        .get_or_create(&ControllerLabels {
            controller: CONTROLLER.into(),
        })
        .observe(started.elapsed().as_secs_f64());
    result
}

/// Creates `request`; one already there (a store lagging behind an earlier
/// create) is fine.
async fn create_request(
    requests: &Api<BuildRequest>,
    build: &str,
    request: &BuildRequest,
) -> Result<(), Error> {
    match requests.create(&PostParams::default(), request).await {
        Ok(_) => {
            info!(multiarchbuild = %build, "created BuildRequest {}", request.name_any());
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Applies `status` to `build` (as the reconcile read it), remembering the
/// write so a reconcile of the replaced version is skipped.
async fn apply_status(
    api: &Api<MultiArchBuild>,
    build: &MultiArchBuild,
    status: &MultiArchBuildStatus,
    ctx: &Context,
) -> Result<(), Error> {
    let name = build.name_any();
    let patch = serde_json::json!({
        "apiVersion": MultiArchBuild::api_version(&()),
        "kind": MultiArchBuild::kind(&()),
        "status": status,
    });
    let written = api
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    ctx.build_writes.wrote(build, &written, &ctx.stores.builds);
    Ok(())
}

async fn reconcile_inner(build: &MultiArchBuild, ctx: &Context) -> Result<Requeue, Error> {
    if ctx.build_writes.is_stale(build) {
        return Ok(Requeue::await_change());
    }
    let name = build.name_any();
    let namespace = build
        .namespace()
        .ok_or_else(|| Error::NoNamespace(name.clone()))?;
    let key = format!("{namespace}/{name}");
    let uid = build.metadata.uid.clone().unwrap_or_default();
    let client = &ctx.client;
    let builds: Api<MultiArchBuild> = Api::namespaced(client.clone(), &namespace);
    let requests_api: Api<BuildRequest> = Api::namespaced(client.clone(), &namespace);

    // From the BuildRequest store. It may lag behind a create: a request
    // not there yet is created again under its deterministic name (409),
    // and its watch event reconciles this build once it is there.
    let label = object_name(&[&name], JOB_NAME_MAX);
    let requests: Vec<BuildRequest> = ctx
        .stores
        .requests
        .state()
        .iter()
        .filter(|r| {
            r.namespace().as_deref() == Some(namespace.as_str())
                && r.labels().get(MULTI_ARCH_BUILD_LABEL) == Some(&label)
                && r.owner_references().iter().any(|o| o.uid == uid)
        })
        .map(|r| (**r).clone())
        .collect();

    let now = Time(Timestamp::now());
    let generation = build.metadata.generation.unwrap_or_default();
    let decision = decide(&Observed {
        build,
        requests: &requests,
        now: now.clone(),
    });
    let observed_status = build.status.clone().unwrap_or_default();
    let mut status = decision.status;
    let mut transient_failure = false;
    let mut creates = Vec::new();

    for action in decision.actions {
        match action {
            Action::Delete(request) => {
                match requests_api
                    .delete(&request, &DeleteParams::background())
                    .await
                {
                    Ok(_) => {
                        info!(multiarchbuild = %key, "deleted BuildRequest {request} of an earlier generation")
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Action::Create(request) => creates.push(request),
            Action::Publish(children) => {
                // Say "Publishing" before the (possibly slow) registry work.
                if status.phase != observed_status.phase {
                    apply_status(&builds, build, &status, ctx).await?;
                }
                let started = Instant::now();
                let config_dir = tempfile::tempdir().map_err(Error::CredentialsDir)?;
                write_docker_config(client, build, config_dir.path()).await?;
                let docker_config = build
                    .spec
                    .build
                    .registry_secret_ref
                    .as_ref()
                    .map(|_| config_dir.path());
                let result = match load_signer(client, build).await {
                    Ok(signer) => publish(build, &children, docker_config, signer.as_ref()).await,
                    Err(failure) => Err(failure),
                };
                ctx.metrics
                    .index_publish_seconds
                    .observe(started.elapsed().as_secs_f64());
                status = match result {
                    Ok(outcome) => {
                        info!(multiarchbuild = %key, "published index {}", outcome.digest);
                        published(
                            status,
                            IndexStatus {
                                digest: Some(outcome.digest.clone()),
                                media_type: Some(outcome.media_type.clone()),
                                reference: outcome.references.first().cloned(),
                            },
                            &now,
                            generation,
                        )
                    }
                    Err(failure) => {
                        warn!(multiarchbuild = %key, "publishing the index failed: {}", failure.message);
                        transient_failure = !failure.permanent;
                        publish_failed(
                            status,
                            &failure.message,
                            failure.permanent,
                            &now,
                            generation,
                        )
                    }
                };
            }
        }
    }

    // Every platform's request at once: each Job waits for its own, and a
    // round trip per platform would delay the last platform's build.
    futures::future::try_join_all(
        creates
            .iter()
            .map(|request| create_request(&requests_api, &key, request)),
    )
    .await?;

    if status != observed_status {
        apply_status(&builds, build, &status, ctx).await?;
    }
    if status.phase != observed_status.phase
        || status.observed_generation != observed_status.observed_generation
    {
        on_phase_change(build, &status, ctx).await;
    }
    Ok(requeue(&status, transient_failure).action(ctx.resync))
}

async fn on_phase_change(build: &MultiArchBuild, status: &MultiArchBuildStatus, ctx: &Context) {
    let Some(phase) = status.phase else { return };
    let note = kiln_crds::condition::find(&status.conditions, kiln_crds::condition::READY)
        .and_then(|c| c.message.clone());
    if phase.is_terminal() {
        ctx.metrics
            .builds
            .get_or_create(&ResultLabels {
                result: phase.as_str().to_ascii_lowercase(),
            })
            .inc();
    }
    ctx.phase_event(
        &build.object_ref(&()),
        phase.as_str(),
        phase == Phase::Failed,
        note,
    )
    .await;
}

fn error_policy(build: Arc<MultiArchBuild>, error: &Error, ctx: Arc<Context>) -> Requeue {
    let delay = ctx.build_failures.failed(&build, &ctx.stores.builds, error);
    warn!(multiarchbuild = %build.name_any(), "reconcile failed (next try in {delay:?}): {error}");
    ctx.metrics.reconcile_error(CONTROLLER, error);
    Requeue::requeue(delay)
}

/// Runs the controller until `shutdown` resolves. `requests` is the
/// BuildRequest watch's events (its store is `ctx.stores.requests`); the
/// MultiArchBuild watch fills `ctx.stores.builds` through `builds`.
pub async fn run(
    ctx: Arc<Context>,
    api: Api<MultiArchBuild>,
    builds: Writer<MultiArchBuild>,
    requests: impl futures::Stream<Item = Result<BuildRequest, watcher::Error>> + Send + 'static,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|build| build.managed_fields_mut().clear())
        .reflect(builds)
        .inspect(Arc::clone(&ctx.stores.listed).on_listed(Listed::BUILDS))
        .applied_objects();
    Controller::for_stream(stream, ctx.stores.builds.clone())
        .owns_stream(requests)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}
