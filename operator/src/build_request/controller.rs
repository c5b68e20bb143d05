//! The BuildRequest controller's I/O: gathers what [`decide`] needs, carries
//! out its actions and applies the status. Runs as a kube-runtime
//! `Controller` driven by BuildRequests, the Jobs they own and Nodes.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kiln_crds::{BuildRequest, BuildRequestStatus, PlatformPhase};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::Store;
use kube::runtime::reflector::store::Writer;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use super::decide::{Action, Observed, decide};
use super::render::{self, FIELD_MANAGER};
use crate::context::{Context, Error, Listed};
use crate::metrics::{ControllerLabels, PlatformLabels};
use crate::names::{self, BUILD_REQUEST_LABEL, JOB_NAME_MAX};
use crate::nodes::{self, ARCH_LABEL, OS_LABEL};
use crate::user_namespaces;

const CONTROLLER: &str = "buildrequest";

fn owned_by(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|r| r.uid == uid)
}

/// The nodes of `platform`'s os and arch, and `pod_node` (the node of the
/// current attempt's pod) when it is not one of them and still exists, from
/// the Node store. A pod's node the store does not hold is asked for by
/// name before it is taken as gone: a store that has not seen a new node
/// yet must not end the attempt running on it.
async fn observe_nodes(
    ctx: &Context,
    platform: &str,
    pod_node: Option<&str>,
) -> Result<Vec<Node>, Error> {
    let (os, arch) = nodes::os_arch(platform);
    let mut list: Vec<Node> = ctx
        .stores
        .nodes
        .state()
        .iter()
        .filter(|n| {
            let labels = n.labels();
            labels.get(OS_LABEL).map(String::as_str) == Some(os)
                && labels.get(ARCH_LABEL).map(String::as_str) == Some(arch)
        })
        .map(|n| (**n).clone())
        .collect();
    if let Some(name) = pod_node
        && !list
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some(name))
    {
        let known = ctx.stores.nodes.get(&ObjectRef::new(name));
        let node = match known {
            Some(node) => Some((*node).clone()),
            None => Api::<Node>::all(ctx.client.clone()).get_opt(name).await?,
        };
        list.extend(node);
    }
    Ok(list)
}

/// What `scheduling.userNamespaces` gives `request`'s builder pods.
fn user_namespaces_of(request: &BuildRequest, nodes: &[Node]) -> user_namespaces::Decision {
    user_namespaces::decide(
        &request.spec.platform,
        &request.spec.build.scheduling,
        nodes,
    )
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

/// Deletes the builder's RoleBinding, Role and ServiceAccount, in that
/// order (the binding first, so no moment leaves a bound token with a
/// role).
async fn revoke_builder_access(
    client: &kube::Client,
    namespace: &str,
    request: &str,
) -> Result<(), Error> {
    let access = crate::names::builder_access_name(request);
    delete_if_present(
        &Api::<RoleBinding>::namespaced(client.clone(), namespace),
        &access,
    )
    .await?;
    delete_if_present(&Api::<Role>::namespaced(client.clone(), namespace), &access).await?;
    delete_if_present(
        &Api::<ServiceAccount>::namespaced(client.clone(), namespace),
        &access,
    )
    .await
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
    // Until every store has its first full list, an empty store would read
    // as "no Jobs, no nodes".
    ctx.stores.listed.wait(Listed::FOR_REQUESTS).await;
    let started = Instant::now();
    let result = reconcile_inner(&request, &ctx).await;
    if result.is_ok() {
        ctx.request_failures.succeeded(&request);
    }
    ctx.metrics
        .reconcile_seconds
        .get_or_create(&ControllerLabels {
            controller: CONTROLLER.into(),
        })
        .observe(started.elapsed().as_secs_f64());
    result
}

async fn reconcile_inner(request: &BuildRequest, ctx: &Context) -> Result<Requeue, Error> {
    if ctx.request_writes.is_stale(request) {
        return Ok(Requeue::await_change());
    }
    let name = request.name_any();
    let namespace = request
        .namespace()
        .ok_or_else(|| Error::NoNamespace(name.clone()))?;
    let uid = request.metadata.uid.clone().unwrap_or_default();
    let client = &ctx.client;
    let jobs_api: Api<Job> = Api::namespaced(client.clone(), &namespace);
    let observed_status = request.status.clone().unwrap_or_default();
    let terminal = observed_status
        .phase
        .is_some_and(PlatformPhase::is_terminal);

    let request_label = render::labels(request, "builder")[BUILD_REQUEST_LABEL].clone();
    // From the stores. The Job watch is one ordered stream, so the Job
    // store is the cluster's Jobs as of some moment: a Job this operator
    // deleted is gone from it only after the Jobs it created before that
    // delete are in it, which is what decide's check for a Job of a later
    // attempt relies on. A Job created but not yet seen is created again
    // by its deterministic name, and the API's 409 ends that.
    let (jobs, pods) = if terminal {
        (Vec::new(), Vec::new())
    } else {
        let in_namespace = |n: Option<String>| n.as_deref() == Some(namespace.as_str());
        let jobs: Vec<Job> = ctx
            .stores
            .jobs
            .state()
            .iter()
            .filter(|j| in_namespace(j.namespace()) && owned_by(&j.metadata, &uid))
            .map(|j| (**j).clone())
            .collect();
        let pods: Vec<Pod> = ctx
            .stores
            .pods
            .state()
            .iter()
            .filter(|p| {
                in_namespace(p.namespace())
                    && p.labels().get(BUILD_REQUEST_LABEL) == Some(&request_label)
            })
            .map(|p| (**p).clone())
            .collect();
        (jobs, pods)
    };
    // The nodes: before the first attempt, whether native ones exist and
    // what userNamespaces gives; for a running one, whether its pod's node
    // is still there and Ready.
    let attempts = observed_status.attempts.unwrap_or(0);
    let nodes = if !terminal {
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
        observe_nodes(ctx, &request.spec.platform, pod_node).await?
    } else {
        Vec::new()
    };
    let first = !terminal && attempts == 0;
    let mut user_namespaces = first.then(|| user_namespaces_of(request, &nodes));

    let decision = decide(&Observed {
        request,
        jobs: &jobs,
        pods: &pods,
        nodes: &nodes,
        user_namespaces: user_namespaces.clone(),
        now: Time(Timestamp::now()),
    });

    // Revoking comes before the terminal status that goes with it: a
    // terminal status then says the access is gone, and decide leaves
    // finished requests alone. A revoke that fails leaves the status
    // as it was, and the next reconcile revokes again.
    let revoke = decision.actions.contains(&Action::RevokeBuilderAccess);
    if revoke {
        revoke_builder_access(client, &namespace, &name).await?;
    }

    // The status next: a reconcile that reads this request before the
    // new status reaches the cache finds the Jobs made after it and waits
    // (see decide), rather than acting on the older status.
    if decision.status != observed_status {
        let patch = serde_json::json!({
            "apiVersion": BuildRequest::api_version(&()),
            "kind": BuildRequest::kind(&()),
            "status": operator_fields(&decision.status, &observed_status),
        });
        let written = Api::<BuildRequest>::namespaced(client.clone(), &namespace)
            .patch_status(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        ctx.request_writes
            .wrote(request, &written, &ctx.stores.requests);
    }

    for action in &decision.actions {
        match action {
            Action::EnsureBuilderAccess => {
                // The ServiceAccount and the Role at once, then the binding
                // of the two: the API server checks a new RoleBinding
                // against its Role (an operator without the Role's
                // permissions itself may bind only an existing Role, and is
                // answered 404 before it exists). The Job waits for all
                // three (its pod is refused while its ServiceAccount is
                // missing), so each round trip saved starts a build sooner.
                let (account, role, binding) = render::builder_access(request);
                let accounts = Api::<ServiceAccount>::namespaced(client.clone(), &namespace);
                let roles = Api::<Role>::namespaced(client.clone(), &namespace);
                let bindings = Api::<RoleBinding>::namespaced(client.clone(), &namespace);
                futures::try_join!(create_once(&accounts, &account), create_once(&roles, &role),)?;
                create_once(&bindings, &binding).await?;
            }
            Action::CreateJob {
                attempt,
                avoid_nodes,
            } => {
                let host_users = user_namespaces
                    .get_or_insert_with(|| user_namespaces_of(request, &nodes))
                    .host_users();
                let job = render::job(request, *attempt, avoid_nodes, &ctx.builder, host_users);
                create_once(&jobs_api, &job).await?;
                info!(buildrequest = %name, attempt, ?avoid_nodes, "builder Job {} created", job.name_any());
            }
            Action::DeleteJob { name: job } => {
                delete_if_present(&jobs_api, job).await?;
                info!(buildrequest = %name, "builder Job {job} abandoned and deleted");
            }
            // Done before the status, above.
            Action::RevokeBuilderAccess => {}
        }
    }

    if decision.status.phase != observed_status.phase {
        on_phase_change(request, &decision.status, ctx).await;
    }

    Ok(super::decide::requeue(&decision.status).action(ctx.resync))
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
    let delay = ctx
        .request_failures
        .failed(&request, &ctx.stores.requests, error);
    warn!(buildrequest = %request.name_any(), "reconcile failed (next try in {delay:?}): {error}");
    ctx.metrics.reconcile_error(CONTROLLER, error);
    Requeue::requeue(delay)
}

/// A builder Job as the store keeps it: what decide reads (its metadata and
/// status), not its pod template, which is most of its size and is the
/// operator's own rendering anyway. At 500 builds the stores were the
/// larger part of the operator's memory.
pub fn trim_job(job: &mut Job) {
    job.managed_fields_mut().clear();
    job.spec = None;
}

/// A builder pod as the store keeps it: metadata, status, the node it is
/// on, and each container's name, image and resources (for pull failures
/// and OOM messages); not its arguments, environment, volumes or security
/// context.
pub fn trim_pod(pod: &mut Pod) {
    pod.managed_fields_mut().clear();
    if let Some(spec) = pod.spec.as_mut() {
        let keep = |container: &Container| Container {
            name: container.name.clone(),
            image: container.image.clone(),
            resources: container.resources.clone(),
            ..Container::default()
        };
        *spec = PodSpec {
            node_name: spec.node_name.take(),
            containers: spec.containers.iter().map(keep).collect(),
            init_containers: spec
                .init_containers
                .as_ref()
                .map(|containers| containers.iter().map(keep).collect()),
            ..PodSpec::default()
        };
    }
}

/// The BuildRequest a builder pod's change concerns: its Job's owner,
/// found through the Job store in two lookups (a scan of every request per
/// pod event was quadratic in the number of builds). A pod whose Job is
/// not in the store yet is matched by its label.
fn request_of_pod(
    pod: &Pod,
    jobs: &Store<Job>,
    requests: &Store<BuildRequest>,
) -> Vec<ObjectRef<BuildRequest>> {
    let Some(namespace) = pod.namespace() else {
        return Vec::new();
    };
    let owner = |refs: &[OwnerReference], kind: &str| {
        refs.iter().find(|r| r.kind == kind).map(|r| r.name.clone())
    };
    let job = owner(pod.owner_references(), "Job")
        .and_then(|job| jobs.get(&ObjectRef::new(&job).within(&namespace)));
    if let Some(request) = job.and_then(|job| owner(job.owner_references(), "BuildRequest")) {
        return vec![ObjectRef::new(&request).within(&namespace)];
    }
    let Some(label) = pod.labels().get(BUILD_REQUEST_LABEL) else {
        return Vec::new();
    };
    requests
        .state()
        .into_iter()
        .filter(|r| {
            r.namespace().as_deref() == Some(namespace.as_str())
                && r.metadata
                    .name
                    .as_deref()
                    .is_some_and(|name| names::object_name(&[name], JOB_NAME_MAX) == *label)
        })
        .map(|r| ObjectRef::from_obj(&*r))
        .collect()
}

/// The label selector of the builder pods and Jobs the operator watches.
pub fn builder_selector() -> String {
    format!(
        "app.kubernetes.io/component=builder,app.kubernetes.io/managed-by={}",
        crate::names::MANAGED_BY
    )
}

/// Runs the controller until `shutdown` resolves. `requests` is the
/// BuildRequest watch's events (its store is `ctx.stores.requests`); the Job, pod
/// and Node watches fill the other stores through `writers`.
pub async fn run(
    ctx: Arc<Context>,
    requests: impl futures::Stream<Item = Result<BuildRequest, watcher::Error>> + Send + 'static,
    jobs: Api<Job>,
    pods: Api<Pod>,
    writers: RequestWriters,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let store = ctx.stores.requests.clone();
    let pod_store = store.clone();
    let job_store = ctx.stores.jobs.clone();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let builders = watcher::Config::default().labels(&builder_selector());
    let listed = || Arc::clone(&ctx.stores.listed);
    let jobs = watcher(jobs, builders.clone())
        .default_backoff()
        .modify(trim_job)
        .reflect(writers.jobs)
        .inspect(listed().on_listed(Listed::JOBS))
        .touched_objects();
    let pods = watcher(pods, builders)
        .default_backoff()
        .modify(trim_pod)
        .reflect(writers.pods)
        .inspect(listed().on_listed(Listed::PODS))
        .touched_objects();
    let nodes = watcher(nodes, watcher::Config::default())
        .default_backoff()
        // What decide reads of a node: labels, spec, conditions, nodeInfo;
        // not the image list, which is most of a node's size.
        .modify(|node| {
            node.managed_fields_mut().clear();
            if let Some(status) = node.status.as_mut() {
                status.images = None;
            }
        })
        .reflect(writers.nodes)
        .inspect(listed().on_listed(Listed::NODES))
        .touched_objects();
    Controller::for_stream(requests, store.clone())
        .owns_stream(jobs)
        // A builder pod's changes the Job does not show: waiting on an
        // image pull, evicted, marked for disruption.
        .watches_stream(pods, move |pod: Pod| {
            request_of_pod(&pod, &job_store, &pod_store)
        })
        // A node becoming Ready (or appearing) may unblock requests waiting
        // for native nodes of its architecture; a node going NotReady (or
        // away) ends the attempts running on it.
        .watches_stream(nodes, move |node: Node| {
            let arch = node.labels().get(ARCH_LABEL).cloned();
            let node_name = node.metadata.name.clone();
            store
                .state()
                .into_iter()
                .filter(|r| {
                    let Some(status) = r.status.as_ref() else {
                        return false;
                    };
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

/// The stores the BuildRequest controller's own watches fill.
pub struct RequestWriters {
    pub jobs: Writer<Job>,
    pub pods: Writer<Pod>,
    pub nodes: Writer<Node>,
}

#[cfg(test)]
mod tests {
    //! The reconcile's requests against a mocked API server (tower-test,
    //! as kube's own tests do): a mock, because these check the exact
    //! requests and the e2e suite checks the behaviour on a real one.
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::context::Stores;
    use crate::metrics::Metrics;
    use crate::test_objects::build_request;
    use http::{Request, Response};
    use kube::client::Body;
    use kube::runtime::watcher;
    use serde_json::{Value, json};
    use std::time::Duration;

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    /// What the watches have seen when the reconcile runs.
    #[derive(Default)]
    struct Seen {
        jobs: Vec<Value>,
        pods: Vec<Value>,
        nodes: Vec<Value>,
    }

    fn fill<K>(writer: &mut Writer<K>, objects: Vec<Value>)
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned,
    {
        writer.apply_watcher_event(&watcher::Event::Init);
        for object in objects {
            let object: K = serde_json::from_value(object).unwrap();
            writer.apply_watcher_event(&watcher::Event::InitApply(object));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
    }

    fn context(request: &BuildRequest, seen: Seen) -> (Arc<Context>, Handle) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        let (stores, mut writers) = Stores::new();
        fill(
            &mut writers.requests,
            vec![serde_json::to_value(request).unwrap()],
        );
        fill(&mut writers.builds, Vec::new());
        fill(&mut writers.jobs, seen.jobs);
        fill(&mut writers.pods, seen.pods);
        fill(&mut writers.nodes, seen.nodes);
        stores
            .listed
            .mark(Listed::FOR_BUILDS | Listed::FOR_REQUESTS);
        let ctx = Context::new(
            client,
            Arc::new(Metrics::default()),
            render::BuilderSettings {
                image: "kiln:test".into(),
                pull_policy: "Never".into(),
                job_ttl_seconds: 60,
            },
            stores,
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

    #[tokio::test]
    async fn a_new_request_gets_access_a_job_a_status_and_an_event() {
        let request = Arc::new(build_request("app-linux-arm64-g1", "linux/arm64", 2));
        let arm_node = json!({
            "metadata": {"name": "arm-1", "labels": {"kubernetes.io/os": "linux", "kubernetes.io/arch": "arm64"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        });
        // Not of the platform: must not count as a native node.
        let amd_node = json!({
            "metadata": {"name": "amd-1", "labels": {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        });
        let (ctx, mut handle) = context(
            &request,
            Seen {
                nodes: vec![arm_node, amd_node],
                ..Seen::default()
            },
        );
        let reconciling = tokio::spawn(reconcile(Arc::clone(&request), Arc::clone(&ctx)));

        // No LIST: Jobs, pods and nodes come from the stores; the first
        // request is the status.

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
            [
                ("UserNamespaces", "False"),
                ("NativeNodesAvailable", "True"),
                ("Ready", "False")
            ]
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
        // The node reports no nodeInfo: host users.
        assert_eq!(job["spec"]["template"]["spec"].get("hostUsers"), None);

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
        let request = Arc::new(build_request("app-linux-s390x-g1", "linux/s390x", 2));
        let amd_node = json!({
            "metadata": {"name": "amd-1", "labels": {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        });
        let (ctx, mut handle) = context(
            &request,
            Seen {
                nodes: vec![amd_node],
                ..Seen::default()
            },
        );
        let reconciling = tokio::spawn(reconcile(Arc::clone(&request), Arc::clone(&ctx)));
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
        let mut request = build_request("app-linux-amd64-g1", "linux/amd64", 0);
        request.status = Some(BuildRequestStatus {
            phase: Some(PlatformPhase::Running),
            attempts: Some(1),
            job_name: Some("app-linux-amd64-g1-1".into()),
            ..BuildRequestStatus::default()
        });
        let request = Arc::new(request);
        let job = json!({
            "metadata": {"name": "app-linux-amd64-g1-1", "namespace": "ns", "uid": "uid-job-1",
                "ownerReferences": [{"apiVersion": "kiln.dev/v1alpha1", "kind": "BuildRequest",
                    "name": "app-linux-amd64-g1", "uid": "uid-app-linux-amd64-g1"}]},
            "status": {"active": 1},
        });
        // Another request's attempt 2, in the same namespace: not this
        // request's (it would make decide wait for a newer status).
        let other_job = json!({
            "metadata": {"name": "app-linux-amd64-g1-2", "namespace": "other", "uid": "uid-job-x",
                "labels": {"kiln.dev/attempt": "2"},
                "ownerReferences": [{"apiVersion": "kiln.dev/v1alpha1", "kind": "BuildRequest",
                    "name": "app-linux-amd64-g1", "uid": "uid-other"}]},
            "status": {"active": 1},
        });
        let pod = json!({
            "metadata": {"name": "app-linux-amd64-g1-1-x", "namespace": "ns",
                "labels": {"kiln.dev/build-request": "app-linux-amd64-g1"},
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                    "name": "app-linux-amd64-g1-1", "uid": "uid-job-1"}]},
            "spec": {"nodeName": "amd-1", "containers": [{"name": "kiln"}]},
            "status": {"phase": "Running"},
        });
        let other = json!({
            "metadata": {"name": "amd-2", "labels": {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        });
        let (ctx, mut handle) = context(
            &request,
            Seen {
                jobs: vec![job, other_job],
                pods: vec![pod],
                nodes: vec![other],
            },
        );
        let reconciling = tokio::spawn(reconcile(Arc::clone(&request), Arc::clone(&ctx)));

        // The pod's node is not in the store: asked for by name before it
        // is taken as gone.
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

    #[test]
    fn a_pod_event_finds_its_request_through_its_job_or_its_label() {
        use kube::runtime::reflector;
        let (jobs, mut job_writer) = reflector::store::<Job>();
        let (requests, mut request_writer) = reflector::store::<BuildRequest>();
        let request = crate::test_objects::build_request("app-linux-arm64-g1", "linux/arm64", 0);
        request_writer.apply_watcher_event(&watcher::Event::Apply(request.clone()));
        let job: Job = serde_json::from_value(json!({
            "metadata": {
                "name": "app-linux-arm64-g1-1", "namespace": "ns",
                "ownerReferences": [{"apiVersion": "kiln.dev/v1alpha1", "kind": "BuildRequest",
                    "name": "app-linux-arm64-g1", "uid": "uid-app-linux-arm64-g1",
                    "controller": true}],
            },
        }))
        .unwrap();
        let pod = |job: &str, label: Option<&str>| -> Pod {
            serde_json::from_value(json!({
                "metadata": {
                    "name": "p", "namespace": "ns",
                    "labels": label.map(|l| json!({BUILD_REQUEST_LABEL: l})).unwrap_or(json!({})),
                    "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                        "name": job, "uid": "u", "controller": true}],
                },
            }))
            .unwrap()
        };
        let want = vec![ObjectRef::<BuildRequest>::new("app-linux-arm64-g1").within("ns")];
        // The Job not stored yet: the label.
        let labelled = pod("app-linux-arm64-g1-1", Some("app-linux-arm64-g1"));
        assert_eq!(request_of_pod(&labelled, &jobs, &requests), want);
        assert_eq!(
            request_of_pod(&pod("app-linux-arm64-g1-1", None), &jobs, &requests),
            vec![]
        );
        // Stored: its owner, whatever the label says.
        job_writer.apply_watcher_event(&watcher::Event::Apply(job));
        assert_eq!(
            request_of_pod(
                &pod("app-linux-arm64-g1-1", Some("stale")),
                &jobs,
                &requests
            ),
            want
        );
    }
}
