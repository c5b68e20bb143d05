//! The BuildRequest controller's I/O: gathers what [`decide`] needs, carries
//! out its actions and applies the status. Runs as a kube-runtime
//! `Controller` driven by BuildRequests, the Jobs they own and Nodes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kiln_crds::{BuildRequest, BuildRequestStatus, PlatformPhase};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use super::decide::{Action, Observed, decide};
use super::render::{self, FIELD_MANAGER};
use crate::context::{Context, Error};
use crate::metrics::{ControllerLabels, PlatformLabels};
use crate::names::BUILD_REQUEST_LABEL;
use crate::nodes::{self, ARCH_LABEL, OS_LABEL};

const CONTROLLER: &str = "buildrequest";

fn owned_by(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|r| r.uid == uid)
}

/// The nodes of `platform`'s os and arch, and `pod_node` (the node of the
/// current attempt's pod) when it is not one of them and still exists.
async fn observe_nodes(
    client: &kube::Client,
    platform: &str,
    pod_node: Option<&str>,
) -> Result<Vec<Node>, Error> {
    let (os, arch) = nodes::os_arch(platform);
    let api: Api<Node> = Api::all(client.clone());
    let mut list = api
        .list(&ListParams::default().labels(&format!("{OS_LABEL}={os},{ARCH_LABEL}={arch}")))
        .await?
        .items;
    if let Some(name) = pod_node
        && !list
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some(name))
        && let Some(node) = api.get_opt(name).await?
    {
        list.push(node);
    }
    Ok(list)
}

/// Creates `object` unless it exists (the names are deterministic, so an
/// existing object is the one a previous reconcile made).
async fn create_once<K>(api: &Api<K>, object: &K) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The status fields the operator owns, for server-side apply under its
/// field manager. The builder's result fields are left to the builder,
/// except the digest or message the operator had to take from the pod.
fn operator_fields(
    decided: &BuildRequestStatus,
    observed: &BuildRequestStatus,
) -> BuildRequestStatus {
    BuildRequestStatus {
        observed_generation: decided.observed_generation,
        phase: decided.phase,
        conditions: decided.conditions.clone(),
        job_name: decided.job_name.clone(),
        pod_name: decided.pod_name.clone(),
        node_name: decided.node_name.clone(),
        attempts: decided.attempts,
        disruptions: decided.disruptions.clone(),
        digest: decided.digest.clone().filter(|_| observed.digest.is_none()),
        message: decided
            .message
            .clone()
            .filter(|_| decided.phase == Some(PlatformPhase::Failed)),
        ..BuildRequestStatus::default()
    }
}

/// Reconciles one BuildRequest.
pub async fn reconcile(request: Arc<BuildRequest>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&request, &ctx).await;
    ctx.metrics
        .reconcile_seconds
        .get_or_create(&ControllerLabels {
            controller: CONTROLLER.into(),
        })
        .observe(started.elapsed().as_secs_f64());
    result
}

async fn reconcile_inner(request: &BuildRequest, ctx: &Context) -> Result<Requeue, Error> {
    let name = request.name_any();
    let namespace = request
        .namespace()
        .ok_or_else(|| Error::NoNamespace(name.clone()))?;
    let uid = request.metadata.uid.clone().unwrap_or_default();
    let client = &ctx.client;
    let jobs_api: Api<Job> = Api::namespaced(client.clone(), &namespace);
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let observed_status = request.status.clone().unwrap_or_default();
    let terminal = observed_status
        .phase
        .is_some_and(PlatformPhase::is_terminal);

    let selector = format!(
        "{BUILD_REQUEST_LABEL}={}",
        render::labels(request, "builder")[BUILD_REQUEST_LABEL]
    );
    let (jobs, pods) = if terminal {
        (Vec::new(), Vec::new())
    } else {
        let jobs: Vec<Job> = jobs_api
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .into_iter()
            .filter(|j| owned_by(&j.metadata, &uid))
            .collect();
        let pods = pods_api
            .list(&ListParams::default().labels(&selector))
            .await?
            .items;
        (jobs, pods)
    };
    // The nodes: for a first attempt, whether native ones exist; for a
    // running one, whether its pod's node is still there and Ready.
    let attempts = observed_status.attempts.unwrap_or(0);
    let needs_nodes =
        !terminal && (attempts > 0 || request.spec.build.scheduling.require_native_nodes);
    let nodes = if needs_nodes {
        let job_name = crate::names::job_name(&name, attempts);
        let pod_node = pods
            .iter()
            .filter(|p| {
                p.metadata
                    .owner_references
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .any(|r| r.name == job_name)
            })
            .find_map(|p| p.spec.as_ref()?.node_name.as_deref());
        observe_nodes(client, &request.spec.platform, pod_node).await?
    } else {
        Vec::new()
    };

    let decision = decide(&Observed {
        request,
        jobs: &jobs,
        pods: &pods,
        nodes: &nodes,
        now: Time(Timestamp::now()),
    });

    // The status first: a reconcile that reads this request before the
    // new status reaches the cache finds the Jobs made after it and waits
    // (see decide), rather than acting on the older status.
    if decision.status != observed_status {
        let patch = serde_json::json!({
            "apiVersion": BuildRequest::api_version(&()),
            "kind": BuildRequest::kind(&()),
            "status": operator_fields(&decision.status, &observed_status),
        });
        Api::<BuildRequest>::namespaced(client.clone(), &namespace)
            .patch_status(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
    }

    for action in &decision.actions {
        match action {
            Action::EnsureBuilderAccess => {
                if request.spec.build.scheduling.service_account_name.is_none() {
                    let (account, role, binding) = render::builder_access(request);
                    create_once(
                        &Api::<ServiceAccount>::namespaced(client.clone(), &namespace),
                        &account,
                    )
                    .await?;
                    create_once(&Api::<Role>::namespaced(client.clone(), &namespace), &role)
                        .await?;
                    create_once(
                        &Api::<RoleBinding>::namespaced(client.clone(), &namespace),
                        &binding,
                    )
                    .await?;
                }
            }
            Action::CreateJob {
                attempt,
                avoid_nodes,
            } => {
                let job = render::job(request, *attempt, avoid_nodes, &ctx.builder);
                create_once(&jobs_api, &job).await?;
                info!(buildrequest = %name, attempt, ?avoid_nodes, "builder Job {} created", job.name_any());
            }
            Action::DeleteJob { name: job } => {
                delete_if_present(&jobs_api, job).await?;
                info!(buildrequest = %name, "builder Job {job} abandoned and deleted");
            }
            Action::RevokeBuilderAccess => {
                if request.spec.build.scheduling.service_account_name.is_none() {
                    let access = crate::names::builder_access_name(&name);
                    delete_if_present(
                        &Api::<RoleBinding>::namespaced(client.clone(), &namespace),
                        &access,
                    )
                    .await?;
                    delete_if_present(
                        &Api::<Role>::namespaced(client.clone(), &namespace),
                        &access,
                    )
                    .await?;
                    delete_if_present(
                        &Api::<ServiceAccount>::namespaced(client.clone(), &namespace),
                        &access,
                    )
                    .await?;
                }
            }
        }
    }

    if decision.status.phase != observed_status.phase {
        on_phase_change(request, &decision.status, ctx).await;
    }

    Ok(match decision.status.phase {
        Some(PlatformPhase::Running) => Requeue::requeue(ctx.resync),
        // Waiting for nodes: the Node watch wakes it; the timer is a safety net.
        Some(PlatformPhase::Pending) => Requeue::requeue(ctx.resync),
        _ => Requeue::await_change(),
    })
}

async fn on_phase_change(request: &BuildRequest, status: &BuildRequestStatus, ctx: &Context) {
    let Some(phase) = status.phase else { return };
    let ready = kiln_crds::condition::find(&status.conditions, kiln_crds::condition::READY);
    let note = ready.and_then(|c| c.message.clone());
    if phase.is_terminal() {
        let started = request
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .unwrap_or_else(Timestamp::now);
        let seconds = Timestamp::now().duration_since(started).as_secs_f64();
        ctx.metrics
            .platform_build_seconds
            .get_or_create(&PlatformLabels {
                platform: request.spec.platform.clone(),
                result: phase.as_str().to_ascii_lowercase(),
            })
            .observe(seconds.max(0.0));
    }
    ctx.phase_event(
        &request.object_ref(&()),
        phase.as_str(),
        phase == PlatformPhase::Failed,
        note,
    )
    .await;
}

fn error_policy(request: Arc<BuildRequest>, error: &Error, ctx: Arc<Context>) -> Requeue {
    warn!(buildrequest = %request.name_any(), "reconcile failed: {error}");
    ctx.metrics.reconcile_error(CONTROLLER);
    Requeue::requeue(Duration::from_secs(5))
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    requests: Api<BuildRequest>,
    jobs: Api<Job>,
    pods: Api<Pod>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let controller = Controller::new(requests, watcher::Config::default());
    let store = controller.store();
    let pod_store = store.clone();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let builder_pods = watcher::Config::default().labels(&format!(
        "app.kubernetes.io/component=builder,app.kubernetes.io/managed-by={}",
        crate::names::MANAGED_BY
    ));
    controller
        .owns(jobs, watcher::Config::default())
        // A builder pod's changes the Job does not show: waiting on an
        // image pull, evicted, marked for disruption.
        .watches(pods, builder_pods, move |pod: Pod| {
            let label = pod.labels().get(BUILD_REQUEST_LABEL).cloned();
            let namespace = pod.namespace();
            pod_store
                .state()
                .into_iter()
                .filter(|r| {
                    r.namespace() == namespace
                        && label.as_deref()
                            == Some(render::labels(r, "builder")[BUILD_REQUEST_LABEL].as_str())
                })
                .map(|r| ObjectRef::from_obj(&*r))
                .collect::<Vec<_>>()
        })
        // A node becoming Ready (or appearing) may unblock requests waiting
        // for native nodes of its architecture; a node going NotReady (or
        // away) ends the attempts running on it.
        .watches(nodes, watcher::Config::default(), move |node: Node| {
            let arch = node.labels().get(ARCH_LABEL).cloned();
            let node_name = node.metadata.name.clone();
            store
                .state()
                .into_iter()
                .filter(|r| {
                    let status = r.status.clone().unwrap_or_default();
                    match status.phase {
                        Some(PlatformPhase::Pending) => {
                            arch.as_deref() == Some(nodes::os_arch(&r.spec.platform).1)
                        }
                        Some(PlatformPhase::Running) => {
                            status.node_name.is_some() && status.node_name == node_name
                        }
                        _ => false,
                    }
                })
                .map(|r| ObjectRef::from_obj(&*r))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

#[cfg(test)]
mod tests {
    //! The reconcile's requests against a mocked API server (tower-test,
    //! as kube's own tests do): a mock, because these check the exact
    //! requests and the e2e suite checks the behaviour on a real one.
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::metrics::Metrics;
    use crate::test_objects::build_request;
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::{Value, json};

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    fn context() -> (Arc<Context>, Handle) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        let ctx = Context::new(
            client,
            Arc::new(Metrics::default()),
            render::BuilderSettings {
                image: "kiln:test".into(),
                pull_policy: "Never".into(),
                job_ttl_seconds: 60,
            },
        );
        (Arc::new(ctx), handle)
    }

    /// Answers the next request, returning its method, path with query,
    /// and JSON body.
    async fn answer(handle: &mut Handle, response: Value) -> (String, String, Value) {
        answer_with(handle, 200, response).await
    }

    async fn answer_with(
        handle: &mut Handle,
        code: u16,
        response: Value,
    ) -> (String, String, Value) {
        let (request, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
            .await
            .expect("the reconcile sent no further request (did it fail on the last answer?)")
            .expect("a request");
        let method = request.method().to_string();
        let uri = request.uri().to_string();
        let body = request.into_body().collect_bytes().await.unwrap();
        let body = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap()
        };
        send.send_response(
            Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(&response).unwrap()))
                .unwrap(),
        );
        (method, uri, body)
    }

    fn list(kind: &str, items: Value) -> Value {
        json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
    }

    #[tokio::test]
    async fn a_new_request_gets_access_a_job_a_status_and_an_event() {
        let (ctx, mut handle) = context();
        let request = Arc::new(build_request("app-linux-arm64-g1", "linux/arm64", 2));
        let reconciling = tokio::spawn(reconcile(Arc::clone(&request), Arc::clone(&ctx)));

        let (method, uri, _) = answer(&mut handle, list("JobList", json!([]))).await;
        assert_eq!(method, "GET");
        assert!(
            uri.starts_with("/apis/batch/v1/namespaces/ns/jobs?"),
            "{uri}"
        );
        assert!(
            uri.contains("labelSelector=kiln.dev%2Fbuild-request%3Dapp-linux-arm64-g1"),
            "{uri}"
        );
        let (_, uri, _) = answer(&mut handle, list("PodList", json!([]))).await;
        assert!(uri.starts_with("/api/v1/namespaces/ns/pods?"), "{uri}");
        let arm_node = json!({
            "metadata": {"name": "arm-1", "labels": {"kubernetes.io/os": "linux", "kubernetes.io/arch": "arm64"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        });
        let (_, uri, _) = answer(&mut handle, list("NodeList", json!([arm_node]))).await;
        assert!(uri.starts_with("/api/v1/nodes?"), "{uri}");
        assert!(
            uri.contains("labelSelector=kubernetes.io%2Fos%3Dlinux%2Ckubernetes.io%2Farch%3Darm64"),
            "{uri}"
        );

        // The status before the objects it describes (see reconcile_inner).
        let (method, uri, patch) =
            answer(&mut handle, serde_json::to_value(&*request).unwrap()).await;
        assert_eq!(method, "PATCH");
        assert_eq!(
            uri,
            "/apis/kiln.dev/v1alpha1/namespaces/ns/buildrequests/app-linux-arm64-g1/status?&force=true&fieldManager=kiln-operator"
        );
        let status = &patch["status"];
        assert_eq!(patch["kind"], "BuildRequest");
        assert_eq!(status["phase"], "Running");
        assert_eq!(status["attempts"], 1);
        assert_eq!(status["jobName"], "app-linux-arm64-g1-1");
        assert!(
            status.get("digest").is_none(),
            "the builder's fields are left to the builder: {status}"
        );
        let conditions: Vec<_> = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["type"].as_str().unwrap(), c["status"].as_str().unwrap()))
            .collect();
        assert_eq!(
            conditions,
            [("NativeNodesAvailable", "True"), ("Ready", "False")]
        );

        for path in [
            "/api/v1/namespaces/ns/serviceaccounts?",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/ns/roles?",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/ns/rolebindings?",
        ] {
            let (method, uri, body) = answer(&mut handle, json!({})).await;
            assert_eq!(
                (method.as_str(), uri.starts_with(path)),
                ("POST", true),
                "{uri}"
            );
            assert_eq!(body["metadata"]["name"], "app-linux-arm64-g1-builder");
        }
        let (method, uri, job) = answer(&mut handle, json!({})).await;
        assert_eq!(method, "POST");
        assert!(
            uri.starts_with("/apis/batch/v1/namespaces/ns/jobs?"),
            "{uri}"
        );
        assert_eq!(job["metadata"]["name"], "app-linux-arm64-g1-1");
        assert_eq!(
            job["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/arch"],
            "arm64"
        );

        let (method, uri, event) = answer(&mut handle, json!({})).await;
        assert_eq!(method, "POST");
        assert!(
            uri.starts_with("/apis/events.k8s.io/v1/namespaces/ns/events?"),
            "{uri}"
        );
        assert_eq!(event["reason"], "Running");
        assert_eq!(event["regarding"]["name"], "app-linux-arm64-g1");
        assert_eq!(event["reportingController"], "kiln-operator");

        let requeue = reconciling.await.unwrap().unwrap();
        assert_eq!(requeue, Requeue::requeue(ctx.resync));
    }

    #[tokio::test]
    async fn without_native_nodes_nothing_is_created() {
        let (ctx, mut handle) = context();
        let request = Arc::new(build_request("app-linux-s390x-g1", "linux/s390x", 2));
        let reconciling = tokio::spawn(reconcile(Arc::clone(&request), Arc::clone(&ctx)));
        answer(&mut handle, list("JobList", json!([]))).await;
        answer(&mut handle, list("PodList", json!([]))).await;
        answer(&mut handle, list("NodeList", json!([]))).await;
        let (method, _, patch) =
            answer(&mut handle, serde_json::to_value(&*request).unwrap()).await;
        assert_eq!(
            method, "PATCH",
            "no Job, no access objects: straight to status"
        );
        assert_eq!(patch["status"]["phase"], "Pending");
        let nodes = &patch["status"]["conditions"][0];
        assert_eq!(nodes["type"], "NativeNodesAvailable");
        assert_eq!(nodes["status"], "False");
        assert_eq!(
            nodes["message"],
            "no native nodes available for architecture s390x: add s390x nodes or set requireNativeNodes: false"
        );
        let (_, _, event) = answer(&mut handle, json!({})).await;
        assert_eq!(event["reason"], "Pending");
        reconciling.await.unwrap().unwrap();
    }

    /// A running attempt whose node was deleted: the node is looked up by
    /// name (it is not among the platform's), the disruption applied to the
    /// status, the next attempt's Job created kept off the node, then the
    /// abandoned attempt's Job deleted in the background.
    #[tokio::test]
    async fn an_attempt_whose_node_is_gone_is_abandoned_and_moved() {
        let (ctx, mut handle) = context();
        let mut request = build_request("app-linux-amd64-g1", "linux/amd64", 0);
        request.status = Some(BuildRequestStatus {
            phase: Some(PlatformPhase::Running),
            attempts: Some(1),
            job_name: Some("app-linux-amd64-g1-1".into()),
            ..BuildRequestStatus::default()
        });
        let request = Arc::new(request);
        let reconciling = tokio::spawn(reconcile(Arc::clone(&request), Arc::clone(&ctx)));

        let job = json!({
            "metadata": {"name": "app-linux-amd64-g1-1", "namespace": "ns", "uid": "uid-job-1",
                "ownerReferences": [{"apiVersion": "kiln.dev/v1alpha1", "kind": "BuildRequest",
                    "name": "app-linux-amd64-g1", "uid": "uid-app-linux-amd64-g1"}]},
            "status": {"active": 1},
        });
        answer(&mut handle, list("JobList", json!([job]))).await;
        let pod = json!({
            "metadata": {"name": "app-linux-amd64-g1-1-x", "namespace": "ns",
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                    "name": "app-linux-amd64-g1-1", "uid": "uid-job-1"}]},
            "spec": {"nodeName": "amd-1", "containers": [{"name": "kiln"}]},
            "status": {"phase": "Running"},
        });
        answer(&mut handle, list("PodList", json!([pod]))).await;
        let other = json!({
            "metadata": {"name": "amd-2", "labels": {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        });
        let (_, uri, _) = answer(&mut handle, list("NodeList", json!([other]))).await;
        assert!(uri.starts_with("/api/v1/nodes?"), "{uri}");
        let (method, uri, _) = answer_with(
            &mut handle,
            404,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "NotFound", "code": 404, "message": "nodes \"amd-1\" not found"}),
        )
        .await;
        assert_eq!(
            (method.as_str(), uri.as_str()),
            ("GET", "/api/v1/nodes/amd-1")
        );

        let (method, _, patch) =
            answer(&mut handle, serde_json::to_value(&*request).unwrap()).await;
        assert_eq!(method, "PATCH");
        let status = &patch["status"];
        assert_eq!(status["attempts"], 2);
        assert_eq!(
            status["disruptions"],
            json!([{"attempt": 1, "node": "amd-1", "reason": "NodeGone",
                "message": "node amd-1 no longer exists", "nodeAvoided": true}])
        );
        for _ in 0..3 {
            let (method, _, _) = answer(&mut handle, json!({})).await;
            assert_eq!(method, "POST", "builder access");
        }
        let (method, _, job) = answer(&mut handle, json!({})).await;
        assert_eq!(method, "POST");
        assert_eq!(job["metadata"]["name"], "app-linux-amd64-g1-2");
        assert_eq!(
            job["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                ["nodeSelectorTerms"][0]["matchFields"][0]["values"],
            json!(["amd-1"])
        );
        let (method, uri, body) = answer(&mut handle, json!({})).await;
        assert_eq!(method, "DELETE");
        assert_eq!(
            uri,
            "/apis/batch/v1/namespaces/ns/jobs/app-linux-amd64-g1-1?"
        );
        assert_eq!(body["propagationPolicy"], "Background");
        // Running before and after: no phase event.
        let requeue = reconciling.await.unwrap().unwrap();
        assert_eq!(requeue, Requeue::requeue(ctx.resync));
    }
}
