//! What the BuildRequest controller does, as a pure function of what it
//! observed: the request, its Jobs and their pods, and the nodes of its
//! platform. The controller (`controller.rs`) only gathers these and
//! carries out the returned actions.
//!
//! How an attempt can end, and what follows:
//!
//! - the builder pushed the image: `Succeeded`;
//! - the build failed (RUN failed, no digest, OOM-killed): the next attempt
//!   while `spec.retries` allows, else `Failed` with the builder's message
//!   (an OOM kill names the memory limit);
//! - the node ended it (the pod's node NotReady or gone, the pod evicted,
//!   lost with its node, stopped by a node shutdown or preempted): the
//!   attempt is recorded in `status.disruptions`, its Job deleted, and the
//!   next attempt avoids that node. These attempts are not the build's
//!   fault and do not count against `spec.retries`; at most
//!   [`MAX_DISRUPTIONS`] of them, so a cluster that keeps losing nodes ends
//!   the build instead of retrying forever;
//! - the builder image cannot be pulled: condition `BuilderImagePulled=False`
//!   naming the image and the registry's answer, while the kubelet keeps
//!   retrying; after [`IMAGE_PULL_GRACE`] (or at once for an invalid name)
//!   the build fails without a retry, since every attempt would pull the
//!   same image;
//! - the timeout: `Failed`, no retry.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::SignedDuration;
use kiln_crds::condition::{
    self, BUILDER_IMAGE_PULLED, NATIVE_NODES_AVAILABLE, READY, USER_NAMESPACES,
};
use kiln_crds::{BuildRequest, BuildRequestStatus, Condition, Disruption, PlatformPhase};

use crate::names;
use crate::nodes;
use crate::requeue::Requeue;
use crate::user_namespaces;

/// Attempts the nodes may end before the build fails: enough to ride out a
/// node or two going away, few enough that a broken cluster is reported.
pub const MAX_DISRUPTIONS: usize = 3;

/// How long the builder image may fail to pull before the build fails.
/// The kubelet retries a pull with a back-off of up to five minutes, so a
/// registry that is away for less comes back within the same attempt; a
/// new attempt would pull the same image from the same registry.
pub const IMAGE_PULL_GRACE: SignedDuration = SignedDuration::from_secs(300);

/// What the controller saw for one BuildRequest.
#[derive(Debug)]
pub struct Observed<'a> {
    pub request: &'a BuildRequest,
    /// Jobs owned by the request (any attempt).
    pub jobs: &'a [Job],
    /// Pods owned by those Jobs.
    pub pods: &'a [Pod],
    /// The nodes labelled with the request's os and arch, and the node of
    /// the current attempt's pod when it has one and it still exists. (A
    /// node that is not here does not exist.)
    pub nodes: &'a [Node],
    /// What `scheduling.userNamespaces` gives the builder pods, when the
    /// controller looked (before the first attempt).
    pub user_namespaces: Option<user_namespaces::Decision>,
    pub now: Time,
}

/// Something to change in the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Make sure the ServiceAccount, Role and RoleBinding that let the
    /// builder report its result exist.
    EnsureBuilderAccess,
    /// Create the builder Job of this attempt (1-based), its pod kept off
    /// `avoid_nodes`.
    CreateJob {
        attempt: i32,
        avoid_nodes: Vec<String>,
    },
    /// Abandon an attempt: delete its Job (in the background: a pod on a
    /// lost node cannot confirm its end, and a foreground delete would
    /// wait for it).
    DeleteJob { name: String },
    /// The build is over: remove the builder's access objects, so a
    /// finished build's token can do nothing at all.
    RevokeBuilderAccess,
}

/// The new status (the operator's fields, plus the digest or message when
/// only the pod's termination message carried them) and the actions.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub status: BuildRequestStatus,
    pub actions: Vec<Action>,
}

/// How one attempt's Job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
enum JobOutcome {
    Running,
    Succeeded,
    Failed { reason: String, message: String },
}

/// A digest as `--digest-file` writes it and as the builder leaves it in
/// its termination message on success.
pub fn is_digest(text: &str) -> bool {
    text.strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn job_outcome(job: &Job) -> JobOutcome {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    for c in conditions {
        if c.status != "True" {
            continue;
        }
        match c.type_.as_str() {
            "Complete" => return JobOutcome::Succeeded,
            "Failed" => {
                return JobOutcome::Failed {
                    reason: c.reason.clone().unwrap_or_default(),
                    message: c.message.clone().unwrap_or_default(),
                };
            }
            _ => {}
        }
    }
    JobOutcome::Running
}

/// How the attempt ended. The builder's pod having succeeded is enough:
/// the Job (one pod, no retries) completes with it, but Kubernetes' Job
/// controller says so only seconds later under load, and the index waits
/// for every platform. A failure is still read from the Job, whose reason
/// tells a deadline or a disruption from a failed build.
fn attempt_outcome(job: &Job, pod: Option<&Pod>) -> JobOutcome {
    match job_outcome(job) {
        JobOutcome::Running if pod.and_then(pod_phase) == Some("Succeeded") => {
            JobOutcome::Succeeded
        }
        outcome => outcome,
    }
}

fn owned_by(pod: &Pod, job: &Job) -> bool {
    let Some(uid) = job.metadata.uid.as_deref() else {
        return false;
    };
    pod.metadata
        .owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|r| r.uid == uid)
}

/// The newest pod of `job`.
fn pod_of<'a>(job: &Job, pods: &'a [Pod]) -> Option<&'a Pod> {
    pods.iter().filter(|p| owned_by(p, job)).max_by(|a, b| {
        a.metadata
            .creation_timestamp
            .cmp(&b.metadata.creation_timestamp)
    })
}

/// What the builder container left in its termination message (the digest
/// on success, the error on failure).
fn termination_message(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_deref()?
        .iter()
        .find_map(|s| s.state.as_ref()?.terminated.as_ref()?.message.clone())
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
}

fn pod_phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

/// The message of an attempt whose builder container the kernel killed for
/// memory, naming the limit it ran into; None when it was not OOM-killed.
fn oom_message(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.container_statuses.as_deref()?;
    let status = statuses.iter().find(|s| {
        s.state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.reason.as_deref())
            == Some("OOMKilled")
    })?;
    let limit = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.containers.iter().find(|c| c.name == status.name))
        .and_then(|c| c.resources.as_ref()?.limits.as_ref()?.get("memory"))
        .map(|q| q.0.clone());
    Some(match limit {
        Some(limit) => format!(
            "the builder was OOM-killed: container {} used more than its memory limit of {limit}; raise spec.scheduling.resources.limits.memory",
            status.name
        ),
        None => format!(
            "the builder was OOM-killed: container {} has no memory limit and its node ran out of memory; set spec.scheduling.resources so the scheduler reserves what the build needs",
            status.name
        ),
    })
}

/// Why the node, not the build, ended a pod: (reason, message, whether
/// later attempts should avoid the node). None for a pod that ended (or
/// runs) on its own terms.
fn pod_disruption(pod: &Pod) -> Option<(String, Option<String>, bool)> {
    let status = pod.status.as_ref()?;
    let message = status.message.clone().filter(|m| !m.is_empty());
    match status.reason.as_deref() {
        Some(reason @ ("Evicted" | "NodeLost" | "Shutdown")) => {
            return Some((reason.to_owned(), message, true));
        }
        // The kubelet's node-shutdown manager.
        Some("Terminated") => return Some(("Shutdown".to_owned(), message, true)),
        _ => {}
    }
    let target = status
        .conditions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|c| c.type_ == "DisruptionTarget" && c.status == "True")?;
    let message = target.message.clone().or(message);
    match target.reason.as_deref() {
        // The node was fine; a higher-priority pod took its place.
        Some("PreemptionByScheduler") => Some(("Preempted".to_owned(), message, false)),
        Some(reason) if !reason.is_empty() => Some((reason.to_owned(), message, true)),
        _ => Some(("DisruptionTarget".to_owned(), message, true)),
    }
}

/// What is wrong with the node a running pod is on: None while it is Ready.
fn node_trouble(nodes: &[Node], name: &str) -> Option<(String, String)> {
    let Some(node) = nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(name))
    else {
        return Some((
            "NodeGone".to_owned(),
            format!("node {name} no longer exists"),
        ));
    };
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
        .iter()
        .find(|c| c.type_ == "Ready");
    match ready {
        Some(c) if c.status == "True" => None,
        Some(c) => {
            let detail = c
                .message
                .as_deref()
                .filter(|m| !m.is_empty())
                .or(c.reason.as_deref())
                .unwrap_or("no reason given");
            Some((
                "NodeNotReady".to_owned(),
                format!("node {name} is not Ready (Ready={}): {detail}", c.status),
            ))
        }
        None => Some((
            "NodeNotReady".to_owned(),
            format!("node {name} reports no Ready condition"),
        )),
    }
}

/// The builder image a pod waits to pull: (image, the kubelet's reason,
/// its message) for a container (init or not) waiting on a failed pull.
fn pull_failure(pod: &Pod) -> Option<(String, String, String)> {
    let status = pod.status.as_ref()?;
    let statuses = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for s in statuses {
        let Some(waiting) = s.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = waiting.reason.as_deref().unwrap_or_default();
        if matches!(
            reason,
            "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull"
        ) {
            // The status's image is the spec's until the pull succeeds; the
            // spec is the more certain source.
            let image = pod
                .spec
                .as_ref()
                .and_then(|spec| {
                    spec.init_containers
                        .iter()
                        .flatten()
                        .chain(&spec.containers)
                        .find(|c| c.name == s.name)
                })
                .and_then(|c| c.image.clone())
                .unwrap_or_else(|| s.image.clone());
            return Some((
                image,
                reason.to_owned(),
                waiting.message.clone().unwrap_or_default(),
            ));
        }
    }
    None
}

/// Whether a container of the pod got past pulling its image.
fn containers_started(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default()
        .iter()
        .any(|s| {
            s.state
                .as_ref()
                .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
        })
}

fn set(status: &mut BuildRequestStatus, condition: Condition, now: &Time, generation: i64) {
    condition::set(
        &mut status.conditions,
        condition.at(now.clone(), Some(generation)),
    );
}

/// The nodes later attempts keep off.
pub fn avoided_nodes(status: &BuildRequestStatus) -> Vec<String> {
    let mut avoided: Vec<String> = status
        .disruptions
        .iter()
        .filter(|d| d.node_avoided)
        .filter_map(|d| d.node.clone())
        .collect();
    avoided.sort();
    avoided.dedup();
    avoided
}

/// Decides the next step for one BuildRequest. A request that names its
/// own service account (`scheduling.serviceAccountName`) brings the
/// builder's access with it: no access objects are made or removed.
pub fn decide(observed: &Observed<'_>) -> Decision {
    let mut decision = decide_steps(observed);
    if observed
        .request
        .spec
        .build
        .scheduling
        .service_account_name
        .is_some()
    {
        decision
            .actions
            .retain(|a| !matches!(a, Action::EnsureBuilderAccess | Action::RevokeBuilderAccess));
    }
    decision
}

/// When to reconcile a request with `status` again without a watch event:
/// a running build on the resync timer (behind the Job and pod watches),
/// one waiting for nodes likewise (the Node watch wakes it), a finished
/// one only on a change.
pub fn requeue(status: &BuildRequestStatus) -> Requeue {
    match status.phase {
        Some(PlatformPhase::Running | PlatformPhase::Pending) => Requeue::Resync,
        _ => Requeue::OnChange,
    }
}

fn decide_steps(observed: &Observed<'_>) -> Decision {
    let request = observed.request;
    let name = request.metadata.name.clone().unwrap_or_default();
    let generation = request.metadata.generation.unwrap_or_default();
    let spec = &request.spec;
    let now = &observed.now;
    let mut status = request.status.clone().unwrap_or_default();
    status.observed_generation = Some(generation);
    let attempts = status.attempts.unwrap_or(0);

    // A terminal status is written only after the builder's access is
    // revoked (the controller revokes before it writes that status), so
    // there is nothing left to do: each revoke again was three DELETEs
    // answered 404, a fifth of the operator's requests at 100 builds.
    if status.phase.is_some_and(PlatformPhase::is_terminal) {
        return Decision {
            status,
            actions: Vec::new(),
        };
    }

    let require_native = spec.build.scheduling.require_native_nodes;
    let start_attempt = |status: &mut BuildRequestStatus, attempt: i32| {
        status.attempts = Some(attempt);
        status.phase = Some(PlatformPhase::Running);
        status.job_name = Some(names::job_name(&name, attempt));
        status.pod_name = None;
        status.node_name = None;
        vec![
            Action::EnsureBuilderAccess,
            Action::CreateJob {
                attempt,
                avoid_nodes: avoided_nodes(status),
            },
        ]
    };

    if attempts == 0 {
        let native_nodes = nodes::native_nodes_available(observed.nodes, &spec.platform);
        if require_native && !native_nodes {
            let message = nodes::no_native_nodes_message(&spec.platform);
            status.phase = Some(PlatformPhase::Pending);
            set(
                &mut status,
                Condition::new(NATIVE_NODES_AVAILABLE, false, "NoNativeNodes", &message),
                now,
                generation,
            );
            set(
                &mut status,
                Condition::new(READY, false, "WaitingForNativeNodes", message),
                now,
                generation,
            );
            return Decision {
                status,
                actions: Vec::new(),
            };
        }
        if let Some(decision) = &observed.user_namespaces {
            let condition = match decision {
                user_namespaces::Decision::UserNamespace => Condition::new(
                    USER_NAMESPACES,
                    true,
                    "HostUsersFalse",
                    "builder pods run in a user namespace of their own (hostUsers: false)",
                ),
                user_namespaces::Decision::HostUsers { why } => {
                    Condition::new(USER_NAMESPACES, false, "HostUsers", why.as_str())
                }
                user_namespaces::Decision::Refused { message } => {
                    Condition::new(USER_NAMESPACES, false, "Unsupported", message.as_str())
                }
            };
            set(&mut status, condition, now, generation);
            if let user_namespaces::Decision::Refused { message } = decision {
                status.phase = Some(PlatformPhase::Pending);
                set(
                    &mut status,
                    Condition::new(READY, false, "WaitingForUserNamespaces", message.as_str()),
                    now,
                    generation,
                );
                return Decision {
                    status,
                    actions: Vec::new(),
                };
            }
        }
        let (reason, message) = if require_native {
            (
                "NativeNodesFound",
                format!("nodes of {} are Ready", spec.platform),
            )
        } else {
            (
                "NotRequired",
                "requireNativeNodes is false: the build may run on any node".to_owned(),
            )
        };
        set(
            &mut status,
            Condition::new(NATIVE_NODES_AVAILABLE, true, reason, message),
            now,
            generation,
        );
        set(
            &mut status,
            Condition::new(READY, false, "Building", "attempt 1 started"),
            now,
            generation,
        );
        let actions = start_attempt(&mut status, 1);
        return Decision { status, actions };
    }

    if observed
        .jobs
        .iter()
        .any(|j| attempt_of(j).is_some_and(|a| a > attempts))
    {
        // A Job of a later attempt exists: this request was read before the
        // status that started it (the controller writes the status before
        // it creates the Job). Acting on it would recreate an abandoned
        // attempt's Job or write the old status back; its newer self is on
        // the way.
        return Decision {
            status: request.status.clone().unwrap_or_default(),
            actions: Vec::new(),
        };
    }
    let mut decision = decide_attempt(observed, status, attempts, &start_attempt);
    // Jobs of attempts the nodes ended that are still there (their delete
    // was interrupted): delete them now.
    let leftovers = observed.jobs.iter().filter(|j| {
        j.metadata.deletion_timestamp.is_none()
            && attempt_of(j).is_some_and(|a| {
                a < attempts && decision.status.disruptions.iter().any(|d| d.attempt == a)
            })
    });
    for job in leftovers {
        let action = Action::DeleteJob {
            name: job.metadata.name.clone().unwrap_or_default(),
        };
        if !decision.actions.contains(&action) {
            decision.actions.push(action);
        }
    }
    decision
}

/// The attempt number a builder Job is labelled with.
fn attempt_of(job: &Job) -> Option<i32> {
    job.metadata
        .labels
        .as_ref()?
        .get(names::ATTEMPT_LABEL)?
        .parse()
        .ok()
}

/// The next step for attempt `attempts` (≥ 1) of a request still running.
fn decide_attempt(
    observed: &Observed<'_>,
    mut status: BuildRequestStatus,
    attempts: i32,
    start_attempt: &impl Fn(&mut BuildRequestStatus, i32) -> Vec<Action>,
) -> Decision {
    let request = observed.request;
    let name = request.metadata.name.clone().unwrap_or_default();
    let generation = request.metadata.generation.unwrap_or_default();
    let spec = &request.spec;
    let now = &observed.now;
    let job_name = names::job_name(&name, attempts);
    let Some(job) = observed
        .jobs
        .iter()
        .find(|j| j.metadata.name.as_deref() == Some(job_name.as_str()))
    else {
        // Created but not yet seen, or removed by hand: creating it again
        // is harmless, the name is the same and creation is idempotent.
        return Decision {
            actions: vec![
                Action::EnsureBuilderAccess,
                Action::CreateJob {
                    attempt: attempts,
                    avoid_nodes: avoided_nodes(&status),
                },
            ],
            status,
        };
    };

    let pod = pod_of(job, observed.pods);
    if let Some(pod) = pod {
        status.pod_name = pod.metadata.name.clone();
        status.node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    }
    let terminated = pod.and_then(termination_message);
    let ctx = Attempt {
        observed,
        job_name: &job_name,
        attempts,
        generation,
        start_attempt,
    };

    match attempt_outcome(job, pod) {
        JobOutcome::Running => {
            let Some(pod) = pod else {
                return Decision {
                    status,
                    actions: Vec::new(),
                };
            };
            let ended = matches!(pod_phase(pod), Some("Succeeded" | "Failed"));
            if let Some((reason, message, avoid)) = pod_disruption(pod) {
                return ctx.disrupted(status, reason, message, avoid);
            }
            if let Some(node) = status.node_name.clone().filter(|_| !ended)
                && let Some((reason, message)) = node_trouble(observed.nodes, &node)
            {
                return ctx.disrupted(status, reason, Some(message), true);
            }
            if let Some((image, reason, message)) = pull_failure(pod) {
                return ctx.pull_failed(status, image, reason, message);
            }
            let was_failing = condition::find(&status.conditions, BUILDER_IMAGE_PULLED)
                .is_some_and(|c| c.status == kiln_crds::ConditionStatus::False);
            if was_failing && containers_started(pod) {
                set(
                    &mut status,
                    Condition::new(
                        BUILDER_IMAGE_PULLED,
                        true,
                        "Pulled",
                        format!("attempt {attempts} pulled the builder image"),
                    ),
                    now,
                    generation,
                );
                set(
                    &mut status,
                    Condition::new(
                        READY,
                        false,
                        "Building",
                        format!("attempt {attempts} running"),
                    ),
                    now,
                    generation,
                );
            }
            Decision {
                status,
                actions: Vec::new(),
            }
        }
        JobOutcome::Succeeded => {
            if status.digest.is_none() {
                status.digest = terminated.filter(|m| is_digest(m));
            }
            if status.digest.is_some() {
                status.phase = Some(PlatformPhase::Succeeded);
                set(
                    &mut status,
                    Condition::new(
                        READY,
                        true,
                        "Built",
                        format!("attempt {attempts} pushed the image"),
                    ),
                    now,
                    generation,
                );
                return Decision {
                    status,
                    actions: vec![Action::RevokeBuilderAccess],
                };
            }
            let message = format!(
                "builder Job {job_name} finished without reporting a digest (in BuildRequest status or its termination message)"
            );
            ctx.failed(status, false, message)
        }
        JobOutcome::Failed { reason, message } => {
            if let Some((reason, message, avoid)) = pod.and_then(pod_disruption) {
                return ctx.disrupted(status, reason, message, avoid);
            }
            let timed_out = reason == "DeadlineExceeded";
            let builder_message = terminated.filter(|m| !is_digest(m));
            let message = if timed_out {
                let limit = spec
                    .build
                    .timeout
                    .map(|t| format!(" ({t})"))
                    .unwrap_or_default();
                format!("build timed out: attempt {attempts} ran longer than the timeout{limit}")
            } else if let Some(oom) = pod.and_then(oom_message) {
                match builder_message {
                    Some(last) => format!("{oom}; the builder's last output: {last}"),
                    None => oom,
                }
            } else {
                builder_message
                    .or_else(|| status.message.clone())
                    .unwrap_or_else(|| {
                        if message.is_empty() {
                            format!("builder Job {job_name} failed ({reason})")
                        } else {
                            format!("builder Job {job_name} failed: {message}")
                        }
                    })
            };
            ctx.failed(status, timed_out, message)
        }
    }
}

/// The current attempt, for the ways it can end.
struct Attempt<'a, F> {
    observed: &'a Observed<'a>,
    job_name: &'a str,
    attempts: i32,
    generation: i64,
    start_attempt: &'a F,
}

impl<F> Attempt<'_, F>
where
    F: Fn(&mut BuildRequestStatus, i32) -> Vec<Action>,
{
    fn set(&self, status: &mut BuildRequestStatus, condition: Condition) {
        set(status, condition, &self.observed.now, self.generation);
    }

    /// Attempts allowed so far: the user's retries plus one, plus the
    /// attempts the nodes ended, which are not the build's to pay for.
    fn allowed(&self, status: &BuildRequestStatus) -> i32 {
        let build = &self.observed.request.spec.build;
        let disrupted = i32::try_from(status.disruptions.len()).unwrap_or(i32::MAX);
        build
            .retries
            .max(0)
            .saturating_add(1)
            .saturating_add(disrupted)
    }

    /// The build failed: the next attempt while retries are left (never
    /// after a `final_failure` such as a timeout, which would only happen
    /// again), else the end.
    fn failed(
        &self,
        mut status: BuildRequestStatus,
        final_failure: bool,
        message: String,
    ) -> Decision {
        let attempts = self.attempts;
        let allowed = self.allowed(&status);
        if !final_failure && attempts < allowed {
            let next = attempts + 1;
            self.set(
                &mut status,
                Condition::new(
                    READY,
                    false,
                    "Retrying",
                    format!(
                        "attempt {attempts} failed: {message}; starting attempt {next} of {allowed}"
                    ),
                ),
            );
            let actions = (self.start_attempt)(&mut status, next);
            return Decision { status, actions };
        }
        self.fail(status, final_failure, message, Vec::new())
    }

    /// Ends the build as `Failed`, after `actions`.
    fn fail(
        &self,
        mut status: BuildRequestStatus,
        final_failure: bool,
        message: String,
        mut actions: Vec<Action>,
    ) -> Decision {
        status.phase = Some(PlatformPhase::Failed);
        if status.message.as_deref() != Some(message.as_str()) {
            status.message = Some(message.clone());
        }
        let summary = if final_failure {
            message
        } else {
            format!("failed after {} attempt(s): {message}", self.attempts)
        };
        self.set(&mut status, Condition::new(READY, false, "Failed", summary));
        actions.push(Action::RevokeBuilderAccess);
        Decision { status, actions }
    }

    /// The node ended the attempt: record it, delete its Job, and start
    /// the next attempt (kept off the node when another native node is
    /// Ready), unless the nodes have ended too many attempts already.
    fn disrupted(
        &self,
        mut status: BuildRequestStatus,
        reason: String,
        message: Option<String>,
        avoidable: bool,
    ) -> Decision {
        let attempts = self.attempts;
        let node = status.node_name.clone();
        let spec = &self.observed.request.spec;
        let mut avoid = avoidable && node.is_some();
        if avoid && spec.build.scheduling.require_native_nodes {
            // Keep off the node only when the platform has another Ready
            // native node; otherwise the next attempt waits for this one
            // to come back rather than for a node that may never come.
            let mut avoided = avoided_nodes(&status);
            avoided.extend(node.clone());
            avoid = self.observed.nodes.iter().any(|n| {
                nodes::is_native_node(n, &spec.platform)
                    && !n
                        .metadata
                        .name
                        .as_ref()
                        .is_some_and(|name| avoided.contains(name))
            });
        }
        status.disruptions.retain(|d| d.attempt != attempts);
        status.disruptions.push(Disruption {
            attempt: attempts,
            node: node.clone(),
            reason: reason.clone(),
            message: message.clone(),
            node_avoided: avoid,
        });
        let on = node.map(|n| format!(" on node {n}")).unwrap_or_default();
        let detail = message.map(|m| format!(": {m}")).unwrap_or_default();
        let what = format!("attempt {attempts}{on} was ended by its node ({reason}{detail})");
        let abandon = Action::DeleteJob {
            name: self.job_name.to_owned(),
        };
        if status.disruptions.len() > MAX_DISRUPTIONS {
            let message = format!(
                "{what}; {} attempts were ended by their nodes, more than the {MAX_DISRUPTIONS} kiln rides out: check the nodes of {}",
                status.disruptions.len(),
                spec.platform
            );
            return self.fail(status, true, message, vec![abandon]);
        }
        let next = attempts + 1;
        let allowed = self.allowed(&status);
        let placement = if avoid {
            format!(", kept off {}", avoided_nodes(&status).join(", "))
        } else {
            String::new()
        };
        self.set(
            &mut status,
            Condition::new(
                READY,
                false,
                "Rescheduling",
                format!(
                    "{what}; starting attempt {next} of {allowed}{placement} (attempts ended by a node do not count against retries)"
                ),
            ),
        );
        // The next attempt's Job first: should its creation fail, the
        // abandoned one is still there and the whole decision is made again.
        let mut actions = (self.start_attempt)(&mut status, next);
        actions.push(abandon);
        Decision { status, actions }
    }

    /// The builder image cannot be pulled: say so, and end the build once
    /// waiting longer is pointless.
    fn pull_failed(
        &self,
        mut status: BuildRequestStatus,
        image: String,
        reason: String,
        message: String,
    ) -> Decision {
        let now = &self.observed.now;
        let since = condition::find(&status.conditions, BUILDER_IMAGE_PULLED)
            .filter(|c| c.status == kiln_crds::ConditionStatus::False)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        let on = status
            .node_name
            .as_ref()
            .map(|n| format!(" on node {n}"))
            .unwrap_or_default();
        let said = if message.is_empty() {
            reason.clone()
        } else {
            format!("{reason}: {message}")
        };
        let text = format!("the builder image {image} cannot be pulled{on}: {said}");
        self.set(
            &mut status,
            Condition::new(BUILDER_IMAGE_PULLED, false, "ImagePullFailed", &text),
        );
        let permanent = matches!(reason.as_str(), "InvalidImageName" | "ErrImageNeverPull");
        let waited = now.0.duration_since(since.0);
        if permanent || waited >= IMAGE_PULL_GRACE {
            let why = if permanent {
                String::new()
            } else {
                format!(" for {}s", waited.as_secs())
            };
            let message = format!(
                "{text}{why}; check the operator's builder image (--builder-image, the chart's builder.image) and that nodes can reach its registry"
            );
            let abandon = vec![Action::DeleteJob {
                name: self.job_name.to_owned(),
            }];
            return self.fail(status, true, message, abandon);
        }
        self.set(
            &mut status,
            Condition::new(READY, false, "BuilderImagePullFailed", text),
        );
        Decision {
            status,
            actions: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::nodes::tests::node;
    use crate::test_objects::{build_request, job, pod, time};
    use kiln_crds::condition::find;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    struct Case {
        name: &'static str,
        request: BuildRequest,
        jobs: Vec<Job>,
        pods: Vec<Pod>,
        native_nodes: bool,
        phase: PlatformPhase,
        attempts: i32,
        actions: Vec<Action>,
        ready: (&'static str, &'static str),
    }

    fn with_status(
        mut request: BuildRequest,
        edit: impl FnOnce(&mut BuildRequestStatus),
    ) -> BuildRequest {
        let mut status = request.status.take().unwrap_or_default();
        edit(&mut status);
        request.status = Some(status);
        request
    }

    /// `observed` as the stores hold it: Jobs and pods trimmed as their
    /// watches trim them. Leaked: a test's few objects.
    fn trimmed<'a>(observed: &Observed<'a>) -> Observed<'a> {
        use super::super::controller::{trim_job, trim_pod};
        let jobs: Vec<Job> = observed
            .jobs
            .iter()
            .cloned()
            .map(|mut job| {
                trim_job(&mut job);
                job
            })
            .collect();
        let pods: Vec<Pod> = observed
            .pods
            .iter()
            .cloned()
            .map(|mut pod| {
                trim_pod(&mut pod);
                pod
            })
            .collect();
        Observed {
            jobs: Vec::leak(jobs),
            pods: Vec::leak(pods),
            user_namespaces: observed.user_namespaces.clone(),
            now: observed.now.clone(),
            ..*observed
        }
    }

    fn with_phase(mut pod: Pod, phase: &str) -> Pod {
        pod.status.get_or_insert_default().phase = Some(phase.into());
        pod
    }

    fn succeeded(pod: Pod) -> Pod {
        with_phase(pod, "Succeeded")
    }

    fn running(attempts: i32) -> impl FnOnce(&mut BuildRequestStatus) {
        move |s| {
            s.phase = Some(PlatformPhase::Running);
            s.attempts = Some(attempts);
        }
    }

    #[test]
    fn decisions() {
        let br = build_request("app-linux-arm64-g1", "linux/arm64", 2);
        let cases = vec![
            Case {
                name: "new request, native nodes: attempt 1",
                request: br.clone(),
                jobs: vec![],
                pods: vec![],
                native_nodes: true,
                phase: PlatformPhase::Running,
                attempts: 1,
                actions: vec![
                    Action::EnsureBuilderAccess,
                    Action::CreateJob {
                        attempt: 1,
                        avoid_nodes: vec![],
                    },
                ],
                ready: ("Building", "attempt 1 started"),
            },
            Case {
                name: "no native nodes: wait, no Job",
                request: br.clone(),
                jobs: vec![],
                pods: vec![],
                native_nodes: false,
                phase: PlatformPhase::Pending,
                attempts: 0,
                actions: vec![],
                ready: (
                    "WaitingForNativeNodes",
                    "no native nodes available for architecture arm64: add arm64 nodes or set requireNativeNodes: false",
                ),
            },
            Case {
                name: "no native nodes but not required: attempt 1",
                request: {
                    let mut r = br.clone();
                    r.spec.build.scheduling.require_native_nodes = false;
                    r
                },
                jobs: vec![],
                pods: vec![],
                native_nodes: false,
                phase: PlatformPhase::Running,
                attempts: 1,
                actions: vec![
                    Action::EnsureBuilderAccess,
                    Action::CreateJob {
                        attempt: 1,
                        avoid_nodes: vec![],
                    },
                ],
                ready: ("Building", "attempt 1 started"),
            },
            Case {
                name: "job running",
                request: with_status(br.clone(), running(1)),
                jobs: vec![job("app-linux-arm64-g1-1", None)],
                pods: vec![pod("app-linux-arm64-g1-1", "p1", Some("arm-node"), None)],
                native_nodes: true,
                phase: PlatformPhase::Running,
                attempts: 1,
                actions: vec![],
                ready: ("", ""),
            },
            Case {
                name: "job not seen yet: create again (idempotent)",
                request: with_status(br.clone(), running(1)),
                jobs: vec![],
                pods: vec![],
                native_nodes: true,
                phase: PlatformPhase::Running,
                attempts: 1,
                actions: vec![
                    Action::EnsureBuilderAccess,
                    Action::CreateJob {
                        attempt: 1,
                        avoid_nodes: vec![],
                    },
                ],
                ready: ("", ""),
            },
            Case {
                name: "job complete, builder reported the digest",
                request: with_status(br.clone(), |s| {
                    running(1)(s);
                    s.digest = Some(DIGEST.into());
                }),
                jobs: vec![job("app-linux-arm64-g1-1", Some(("Complete", "")))],
                pods: vec![],
                native_nodes: true,
                phase: PlatformPhase::Succeeded,
                attempts: 1,
                actions: vec![Action::RevokeBuilderAccess],
                ready: ("Built", "attempt 1 pushed the image"),
            },
            Case {
                name: "pod succeeded, job not yet complete: the attempt succeeded",
                request: with_status(br.clone(), |s| {
                    running(1)(s);
                    s.digest = Some(DIGEST.into());
                }),
                jobs: vec![job("app-linux-arm64-g1-1", None)],
                pods: vec![succeeded(pod(
                    "app-linux-arm64-g1-1",
                    "p1",
                    Some("arm-node"),
                    Some(DIGEST),
                ))],
                native_nodes: true,
                phase: PlatformPhase::Succeeded,
                attempts: 1,
                actions: vec![Action::RevokeBuilderAccess],
                ready: ("Built", "attempt 1 pushed the image"),
            },
            Case {
                name: "pod failed, job not yet failed: wait for the job's reason",
                request: with_status(br.clone(), running(1)),
                jobs: vec![job("app-linux-arm64-g1-1", None)],
                pods: vec![with_phase(
                    pod(
                        "app-linux-arm64-g1-1",
                        "p1",
                        Some("arm-node"),
                        Some("RUN failed"),
                    ),
                    "Failed",
                )],
                native_nodes: true,
                phase: PlatformPhase::Running,
                attempts: 1,
                actions: vec![],
                ready: ("", ""),
            },
            Case {
                name: "job complete, digest only in the termination message",
                request: with_status(br.clone(), running(1)),
                jobs: vec![job("app-linux-arm64-g1-1", Some(("Complete", "")))],
                pods: vec![pod(
                    "app-linux-arm64-g1-1",
                    "p1",
                    Some("arm-node"),
                    Some(DIGEST),
                )],
                native_nodes: true,
                phase: PlatformPhase::Succeeded,
                attempts: 1,
                actions: vec![Action::RevokeBuilderAccess],
                ready: ("Built", "attempt 1 pushed the image"),
            },
            Case {
                name: "attempt 1 failed, retries left: attempt 2",
                request: with_status(br.clone(), running(1)),
                jobs: vec![job(
                    "app-linux-arm64-g1-1",
                    Some(("Failed", "BackoffLimitExceeded")),
                )],
                pods: vec![pod(
                    "app-linux-arm64-g1-1",
                    "p1",
                    Some("arm-node"),
                    Some("RUN failed (exit 1): false"),
                )],
                native_nodes: true,
                phase: PlatformPhase::Running,
                attempts: 2,
                actions: vec![
                    Action::EnsureBuilderAccess,
                    Action::CreateJob {
                        attempt: 2,
                        avoid_nodes: vec![],
                    },
                ],
                ready: (
                    "Retrying",
                    "attempt 1 failed: RUN failed (exit 1): false; starting attempt 2 of 3",
                ),
            },
            Case {
                name: "last attempt failed: Failed with the builder's message",
                request: with_status(br.clone(), running(3)),
                jobs: vec![job(
                    "app-linux-arm64-g1-3",
                    Some(("Failed", "BackoffLimitExceeded")),
                )],
                pods: vec![pod(
                    "app-linux-arm64-g1-3",
                    "p3",
                    Some("arm-node"),
                    Some("RUN failed (exit 1): false"),
                )],
                native_nodes: true,
                phase: PlatformPhase::Failed,
                attempts: 3,
                actions: vec![Action::RevokeBuilderAccess],
                ready: (
                    "Failed",
                    "failed after 3 attempt(s): RUN failed (exit 1): false",
                ),
            },
            Case {
                name: "timeout fails at once",
                request: with_status(br.clone(), running(1)),
                jobs: vec![job(
                    "app-linux-arm64-g1-1",
                    Some(("Failed", "DeadlineExceeded")),
                )],
                pods: vec![],
                native_nodes: true,
                phase: PlatformPhase::Failed,
                attempts: 1,
                actions: vec![Action::RevokeBuilderAccess],
                ready: (
                    "Failed",
                    "build timed out: attempt 1 ran longer than the timeout (1800s)",
                ),
            },
            Case {
                name: "complete without any digest is a failed attempt",
                request: with_status(br.clone(), running(3)),
                jobs: vec![job("app-linux-arm64-g1-3", Some(("Complete", "")))],
                pods: vec![],
                native_nodes: true,
                phase: PlatformPhase::Failed,
                attempts: 3,
                actions: vec![Action::RevokeBuilderAccess],
                ready: (
                    "Failed",
                    "failed after 3 attempt(s): builder Job app-linux-arm64-g1-3 finished without reporting a digest (in BuildRequest status or its termination message)",
                ),
            },
            Case {
                name: "already finished: nothing left to do (access went before the status said so)",
                request: with_status(br.clone(), |s| {
                    s.phase = Some(PlatformPhase::Succeeded);
                    s.attempts = Some(1);
                }),
                jobs: vec![],
                pods: vec![],
                native_nodes: false,
                phase: PlatformPhase::Succeeded,
                attempts: 1,
                actions: vec![],
                ready: ("", ""),
            },
        ];
        for case in cases {
            let nodes = if case.native_nodes {
                vec![node("arm-node", "arm64", true, false)]
            } else {
                vec![]
            };
            let observed = Observed {
                request: &case.request,
                jobs: &case.jobs,
                pods: &case.pods,
                nodes: &nodes,
                user_namespaces: None,
                now: time("2026-01-01T00:00:00Z"),
            };
            let decision = decide(&observed);
            assert_eq!(
                decide(&trimmed(&observed)),
                decision,
                "{}: the stores' trimmed Jobs and pods decide the same",
                case.name
            );
            assert_eq!(decision.actions, case.actions, "{}", case.name);
            assert_eq!(decision.status.phase, Some(case.phase), "{}", case.name);
            assert_eq!(
                decision.status.attempts.unwrap_or(0),
                case.attempts,
                "{}",
                case.name
            );
            assert_eq!(
                decision.status.observed_generation,
                Some(1),
                "{}",
                case.name
            );
            let ready = find(&decision.status.conditions, READY);
            if case.ready.0.is_empty() {
                assert_eq!(
                    ready.map(|c| c.reason.clone()),
                    case.request
                        .status
                        .as_ref()
                        .and_then(|s| find(&s.conditions, READY))
                        .map(|c| c.reason.clone()),
                    "{}: Ready must not change",
                    case.name
                );
            } else {
                let ready = ready.unwrap();
                assert_eq!(
                    (
                        ready.reason.as_deref().unwrap(),
                        ready.message.as_deref().unwrap()
                    ),
                    case.ready,
                    "{}",
                    case.name
                );
            }
            if case.phase == PlatformPhase::Succeeded
                && case.actions.len() == 1
                && !case.ready.0.is_empty()
            {
                assert_eq!(
                    decision.status.digest.as_deref(),
                    Some(DIGEST),
                    "{}",
                    case.name
                );
            }
        }
    }

    /// A pod of Job `job` on `node` with this `status` (as the API
    /// returns it) and a builder container limited to `memory`.
    fn pod_with(job: &str, node: &str, memory: Option<&str>, status: serde_json::Value) -> Pod {
        let mut pod = pod(job, &format!("{job}-pod"), Some(node), None);
        let mut spec = serde_json::to_value(pod.spec.take().unwrap()).unwrap();
        spec["containers"][0]["image"] = "registry.example/kiln-builder:1".into();
        if let Some(memory) = memory {
            spec["containers"][0]["resources"] = serde_json::json!({"limits": {"memory": memory}});
        }
        pod.spec = Some(serde_json::from_value(spec).unwrap());
        pod.status = Some(serde_json::from_value(status).unwrap());
        pod
    }

    fn terminated(reason: &str, message: &str) -> serde_json::Value {
        serde_json::json!({"phase": "Failed", "containerStatuses": [{
            "name": "kiln", "image": "registry.example/kiln-builder:1", "imageID": "",
            "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 1, "reason": reason, "message": message}},
        }]})
    }

    fn waiting(reason: &str, message: &str) -> serde_json::Value {
        serde_json::json!({"phase": "Pending", "containerStatuses": [{
            "name": "kiln", "image": "registry.example/kiln-builder:1", "imageID": "",
            "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": reason, "message": message}},
        }]})
    }

    fn running_container() -> serde_json::Value {
        serde_json::json!({"phase": "Running", "containerStatuses": [{
            "name": "kiln", "image": "registry.example/kiln-builder:1", "imageID": "",
            "ready": true, "restartCount": 0,
            "state": {"running": {"startedAt": "2026-01-01T00:00:02Z"}},
        }]})
    }

    fn disruption(
        attempt: i32,
        node: &str,
        reason: &str,
        message: &str,
        avoided: bool,
    ) -> Disruption {
        Disruption {
            attempt,
            node: Some(node.to_owned()),
            reason: reason.to_owned(),
            message: Some(message.to_owned()).filter(|m| !m.is_empty()),
            node_avoided: avoided,
        }
    }

    fn create(attempt: i32, avoid: &[&str]) -> Vec<Action> {
        vec![
            Action::EnsureBuilderAccess,
            Action::CreateJob {
                attempt,
                avoid_nodes: avoid.iter().map(|n| n.to_string()).collect(),
            },
        ]
    }

    /// The next attempt's actions, then the abandoned Job's delete.
    fn delete_then(job: &str, mut then: Vec<Action>) -> Vec<Action> {
        then.push(Action::DeleteJob {
            name: job.to_owned(),
        });
        then
    }

    fn labelled(mut job: Job, attempt: i32) -> Job {
        job.metadata.labels = Some(
            [(names::ATTEMPT_LABEL.to_owned(), attempt.to_string())]
                .into_iter()
                .collect(),
        );
        job
    }

    /// Reads older than the controller's own last write, and deletes that
    /// did not happen.
    #[test]
    fn stale_reads_and_leftover_jobs() {
        let br = build_request("app-linux-amd64-g1", "linux/amd64", 0);
        let nodes = [
            node("amd-1", "amd64", false, false),
            node("amd-2", "amd64", true, false),
        ];
        // The status still says attempt 1, whose Job is gone; attempt 2's
        // exists: the status that started it is on its way. Nothing is
        // done, nothing written.
        let stale = with_status(br.clone(), running(1));
        let jobs = [labelled(job("app-linux-amd64-g1-2", None), 2)];
        let decision = decide(&Observed {
            request: &stale,
            jobs: &jobs,
            pods: &[],
            nodes: &nodes,
            user_namespaces: None,
            now: time("2026-01-01T00:00:00Z"),
        });
        assert_eq!(decision.actions, []);
        assert_eq!(Some(&decision.status), stale.status.as_ref());

        // Attempt 1 was ended by its node but its Job is still there
        // (its delete was interrupted): deleted now; attempt 2 runs on.
        let current = with_status(br.clone(), |s| {
            running(2)(s);
            s.disruptions = vec![disruption(1, "amd-1", "NodeNotReady", "", true)];
        });
        let jobs = [
            labelled(job("app-linux-amd64-g1-1", None), 1),
            labelled(job("app-linux-amd64-g1-2", None), 2),
        ];
        let pods = [pod_with(
            "app-linux-amd64-g1-2",
            "amd-2",
            None,
            running_container(),
        )];
        let decision = decide(&Observed {
            request: &current,
            jobs: &jobs,
            pods: &pods,
            nodes: &nodes,
            user_namespaces: None,
            now: time("2026-01-01T00:00:00Z"),
        });
        assert_eq!(
            decision.actions,
            [Action::DeleteJob {
                name: "app-linux-amd64-g1-1".into()
            }]
        );
        assert_eq!(decision.status.attempts, Some(2));
        // A Job of an earlier attempt that failed on its own is kept (its
        // TTL removes it): only the nodes' leftovers are deleted.
        let failed_itself = with_status(br, running(2));
        let decision = decide(&Observed {
            request: &failed_itself,
            jobs: &jobs,
            pods: &pods,
            nodes: &nodes,
            user_namespaces: None,
            now: time("2026-01-01T00:00:00Z"),
        });
        assert_eq!(decision.actions, []);
    }

    /// How attempts end, and what follows: the build's own failures use
    /// up retries, the nodes' do not, an unpullable image is named.
    #[test]
    fn failure_classification() {
        struct Case {
            name: &'static str,
            request: BuildRequest,
            jobs: Vec<Job>,
            pods: Vec<Pod>,
            nodes: Vec<Node>,
            phase: PlatformPhase,
            attempts: i32,
            actions: Vec<Action>,
            ready: (&'static str, String),
            disruptions: Vec<Disruption>,
            pulled: Option<(bool, &'static str)>,
        }
        let retries = |n: i32| build_request("app-linux-amd64-g1", "linux/amd64", n);
        let job1 = "app-linux-amd64-g1-1";
        let job2 = "app-linux-amd64-g1-2";
        let failed_job = |name: &str| job(name, Some(("Failed", "BackoffLimitExceeded")));
        let both_ready = || {
            vec![
                node("amd-1", "amd64", true, false),
                node("amd-2", "amd64", true, false),
            ]
        };
        let amd1_down = || {
            vec![
                node("amd-1", "amd64", false, false),
                node("amd-2", "amd64", true, false),
            ]
        };
        let pull_failing_since = |since: &'static str| {
            move |s: &mut BuildRequestStatus| {
                running(1)(s);
                s.conditions.push(
                    Condition::new(BUILDER_IMAGE_PULLED, false, "ImagePullFailed", "old")
                        .at(time(since), Some(1)),
                );
            }
        };
        let oom = "the builder was OOM-killed: container kiln used more than its memory limit of 64Mi; raise spec.scheduling.resources.limits.memory";
        let cases = vec![
            Case {
                name: "OOM-killed: the message names the limit, retried like any failure",
                request: with_status(retries(2), running(1)),
                jobs: vec![failed_job(job1)],
                pods: vec![pod_with(job1, "amd-1", Some("64Mi"), terminated("OOMKilled", "Killed"))],
                nodes: both_ready(),
                phase: PlatformPhase::Running,
                attempts: 2,
                actions: create(2, &[]),
                ready: (
                    "Retrying",
                    format!("attempt 1 failed: {oom}; the builder's last output: Killed; starting attempt 2 of 3"),
                ),
                disruptions: vec![],
                pulled: None,
            },
            Case {
                name: "OOM-killed without a limit on the last attempt: Failed",
                request: with_status(retries(0), running(1)),
                jobs: vec![failed_job(job1)],
                pods: vec![pod_with(job1, "amd-1", None, terminated("OOMKilled", ""))],
                nodes: both_ready(),
                phase: PlatformPhase::Failed,
                attempts: 1,
                actions: vec![Action::RevokeBuilderAccess],
                ready: (
                    "Failed",
                    "failed after 1 attempt(s): the builder was OOM-killed: container kiln has no memory limit and its node ran out of memory; set spec.scheduling.resources so the scheduler reserves what the build needs".into(),
                ),
                disruptions: vec![],
                pulled: None,
            },
            Case {
                name: "evicted: recorded, retried off the node, retries untouched",
                request: with_status(retries(0), running(1)),
                jobs: vec![failed_job(job1)],
                pods: vec![pod_with(job1, "amd-1", None, serde_json::json!({
                    "phase": "Failed", "reason": "Evicted",
                    "message": "The node was low on resource: memory.",
                }))],
                nodes: both_ready(),
                phase: PlatformPhase::Running,
                attempts: 2,
                actions: delete_then(job1, create(2, &["amd-1"])),
                ready: (
                    "Rescheduling",
                    "attempt 1 on node amd-1 was ended by its node (Evicted: The node was low on resource: memory.); starting attempt 2 of 2, kept off amd-1 (attempts ended by a node do not count against retries)".into(),
                ),
                disruptions: vec![disruption(1, "amd-1", "Evicted", "The node was low on resource: memory.", true)],
                pulled: None,
            },
            Case {
                name: "node NotReady mid-build: the attempt is abandoned at once",
                request: with_status(retries(0), running(1)),
                jobs: vec![job(job1, None)],
                pods: vec![pod_with(job1, "amd-1", None, running_container())],
                nodes: amd1_down(),
                phase: PlatformPhase::Running,
                attempts: 2,
                actions: delete_then(job1, create(2, &["amd-1"])),
                ready: (
                    "Rescheduling",
                    "attempt 1 on node amd-1 was ended by its node (NodeNotReady: node amd-1 is not Ready (Ready=False): no reason given); starting attempt 2 of 2, kept off amd-1 (attempts ended by a node do not count against retries)".into(),
                ),
                disruptions: vec![disruption(1, "amd-1", "NodeNotReady", "node amd-1 is not Ready (Ready=False): no reason given", true)],
                pulled: None,
            },
            Case {
                name: "node gone mid-build",
                request: with_status(retries(1), running(1)),
                jobs: vec![job(job1, None)],
                pods: vec![pod_with(job1, "amd-1", None, running_container())],
                nodes: vec![node("amd-2", "amd64", true, false)],
                phase: PlatformPhase::Running,
                attempts: 2,
                actions: delete_then(job1, create(2, &["amd-1"])),
                ready: (
                    "Rescheduling",
                    "attempt 1 on node amd-1 was ended by its node (NodeGone: node amd-1 no longer exists); starting attempt 2 of 3, kept off amd-1 (attempts ended by a node do not count against retries)".into(),
                ),
                disruptions: vec![disruption(1, "amd-1", "NodeGone", "node amd-1 no longer exists", true)],
                pulled: None,
            },
            Case {
                name: "node NotReady and no other native node: the retry may go back to it",
                request: with_status(retries(0), running(1)),
                jobs: vec![job(job1, None)],
                pods: vec![pod_with(job1, "amd-1", None, running_container())],
                nodes: vec![node("amd-1", "amd64", false, false)],
                phase: PlatformPhase::Running,
                attempts: 2,
                actions: delete_then(job1, create(2, &[])),
                ready: (
                    "Rescheduling",
                    "attempt 1 on node amd-1 was ended by its node (NodeNotReady: node amd-1 is not Ready (Ready=False): no reason given); starting attempt 2 of 2 (attempts ended by a node do not count against retries)".into(),
                ),
                disruptions: vec![disruption(1, "amd-1", "NodeNotReady", "node amd-1 is not Ready (Ready=False): no reason given", false)],
                pulled: None,
            },
            Case {
                name: "a pod that succeeded on a node that went NotReady after: built, not disrupted",
                request: with_status(retries(0), running(1)),
                jobs: vec![job(job1, None)],
                pods: vec![pod_with(job1, "amd-1", None, serde_json::json!({
                    "phase": "Succeeded",
                    "containerStatuses": [{"name": "kiln", "image": "kiln", "imageID": "",
                        "ready": false, "restartCount": 0,
                        "state": {"terminated": {"exitCode": 0, "message": DIGEST}}}],
                }))],
                nodes: amd1_down(),
                phase: PlatformPhase::Succeeded,
                attempts: 1,
                actions: vec![Action::RevokeBuilderAccess],
                ready: ("Built", "attempt 1 pushed the image".into()),
                disruptions: vec![],
                pulled: None,
            },
            Case {
                name: "preempted: retried, the node not avoided",
                request: with_status(retries(0), running(1)),
                jobs: vec![failed_job(job1)],
                pods: vec![pod_with(job1, "amd-1", None, serde_json::json!({
                    "phase": "Failed",
                    "conditions": [{"type": "DisruptionTarget", "status": "True",
                        "reason": "PreemptionByScheduler", "message": "preempted by ns/important"}],
                }))],
                nodes: both_ready(),
                phase: PlatformPhase::Running,
                attempts: 2,
                actions: delete_then(job1, create(2, &[])),
                ready: (
                    "Rescheduling",
                    "attempt 1 on node amd-1 was ended by its node (Preempted: preempted by ns/important); starting attempt 2 of 2 (attempts ended by a node do not count against retries)".into(),
                ),
                disruptions: vec![disruption(1, "amd-1", "Preempted", "preempted by ns/important", false)],
                pulled: None,
            },
            Case {
                name: "after a disruption, a failure uses up the user's retries",
                request: with_status(retries(0), |s| {
                    running(2)(s);
                    s.disruptions = vec![disruption(1, "amd-1", "Evicted", "", true)];
                }),
                jobs: vec![failed_job(job2)],
                pods: vec![pod_with(job2, "amd-2", None, terminated("Error", "RUN failed (exit 1): false"))],
                nodes: both_ready(),
                phase: PlatformPhase::Failed,
                attempts: 2,
                actions: vec![Action::RevokeBuilderAccess],
                ready: (
                    "Failed",
                    "failed after 2 attempt(s): RUN failed (exit 1): false".into(),
                ),
                disruptions: vec![disruption(1, "amd-1", "Evicted", "", true)],
                pulled: None,
            },
            Case {
                name: "a recreated Job keeps off the nodes already avoided",
                request: with_status(retries(0), |s| {
                    running(2)(s);
                    s.disruptions = vec![disruption(1, "amd-1", "NodeGone", "", true)];
                }),
                jobs: vec![],
                pods: vec![],
                nodes: both_ready(),
                phase: PlatformPhase::Running,
                attempts: 2,
                actions: create(2, &["amd-1"]),
                ready: ("", String::new()),
                disruptions: vec![disruption(1, "amd-1", "NodeGone", "", true)],
                pulled: None,
            },
            Case {
                name: "too many disruptions: Failed, no retry",
                request: with_status(retries(5), |s| {
                    running(4)(s);
                    s.disruptions = (1..=3)
                        .map(|a| disruption(a, &format!("amd-{a}"), "NodeGone", "", true))
                        .collect();
                }),
                jobs: vec![job("app-linux-amd64-g1-4", None)],
                pods: vec![pod_with("app-linux-amd64-g1-4", "amd-4", None, running_container())],
                nodes: both_ready(),
                phase: PlatformPhase::Failed,
                attempts: 4,
                actions: vec![
                    Action::DeleteJob { name: "app-linux-amd64-g1-4".into() },
                    Action::RevokeBuilderAccess,
                ],
                ready: (
                    "Failed",
                    "attempt 4 on node amd-4 was ended by its node (NodeGone: node amd-4 no longer exists); 4 attempts were ended by their nodes, more than the 3 kiln rides out: check the nodes of linux/amd64".into(),
                ),
                disruptions: (1..=3)
                    .map(|a| disruption(a, &format!("amd-{a}"), "NodeGone", "", true))
                    .chain([disruption(4, "amd-4", "NodeGone", "node amd-4 no longer exists", false)])
                    .collect(),
                pulled: None,
            },
            Case {
                name: "image cannot be pulled: a condition names the image and the registry's answer",
                request: with_status(retries(2), running(1)),
                jobs: vec![job(job1, None)],
                pods: vec![pod_with(job1, "amd-1", None, waiting(
                    "ErrImagePull",
                    "failed to pull and unpack image \"registry.example/kiln-builder:1\": not found",
                ))],
                nodes: both_ready(),
                phase: PlatformPhase::Running,
                attempts: 1,
                actions: vec![],
                ready: (
                    "BuilderImagePullFailed",
                    "the builder image registry.example/kiln-builder:1 cannot be pulled on node amd-1: ErrImagePull: failed to pull and unpack image \"registry.example/kiln-builder:1\": not found".into(),
                ),
                disruptions: vec![],
                pulled: Some((false, "the builder image registry.example/kiln-builder:1 cannot be pulled on node amd-1: ErrImagePull: failed to pull and unpack image \"registry.example/kiln-builder:1\": not found")),
            },
            Case {
                name: "image pull failing for 4 minutes: still waiting",
                request: with_status(retries(2), pull_failing_since("2025-12-31T23:56:00Z")),
                jobs: vec![job(job1, None)],
                pods: vec![pod_with(job1, "amd-1", None, waiting("ImagePullBackOff", "Back-off pulling image"))],
                nodes: both_ready(),
                phase: PlatformPhase::Running,
                attempts: 1,
                actions: vec![],
                ready: (
                    "BuilderImagePullFailed",
                    "the builder image registry.example/kiln-builder:1 cannot be pulled on node amd-1: ImagePullBackOff: Back-off pulling image".into(),
                ),
                disruptions: vec![],
                pulled: Some((false, "the builder image registry.example/kiln-builder:1 cannot be pulled on node amd-1: ImagePullBackOff: Back-off pulling image")),
            },
            Case {
                name: "image pull failing for 5 minutes: Failed without a retry",
                request: with_status(retries(2), pull_failing_since("2025-12-31T23:55:00Z")),
                jobs: vec![job(job1, None)],
                pods: vec![pod_with(job1, "amd-1", None, waiting("ImagePullBackOff", "Back-off pulling image"))],
                nodes: both_ready(),
                phase: PlatformPhase::Failed,
                attempts: 1,
                actions: vec![
                    Action::DeleteJob { name: job1.into() },
                    Action::RevokeBuilderAccess,
                ],
                ready: (
                    "Failed",
                    "the builder image registry.example/kiln-builder:1 cannot be pulled on node amd-1: ImagePullBackOff: Back-off pulling image for 300s; check the operator's builder image (--builder-image, the chart's builder.image) and that nodes can reach its registry".into(),
                ),
                disruptions: vec![],
                pulled: Some((false, "the builder image registry.example/kiln-builder:1 cannot be pulled on node amd-1: ImagePullBackOff: Back-off pulling image")),
            },
            Case {
                name: "invalid image name: Failed at once",
                request: with_status(retries(2), running(1)),
                jobs: vec![job(job1, None)],
                pods: vec![pod_with(job1, "amd-1", None, waiting("InvalidImageName", "couldn't parse image name"))],
                nodes: both_ready(),
                phase: PlatformPhase::Failed,
                attempts: 1,
                actions: vec![
                    Action::DeleteJob { name: job1.into() },
                    Action::RevokeBuilderAccess,
                ],
                ready: (
                    "Failed",
                    "the builder image registry.example/kiln-builder:1 cannot be pulled on node amd-1: InvalidImageName: couldn't parse image name; check the operator's builder image (--builder-image, the chart's builder.image) and that nodes can reach its registry".into(),
                ),
                disruptions: vec![],
                pulled: Some((false, "the builder image registry.example/kiln-builder:1 cannot be pulled on node amd-1: InvalidImageName: couldn't parse image name")),
            },
            Case {
                name: "the pull succeeded after failing: the condition turns True",
                request: with_status(retries(2), pull_failing_since("2025-12-31T23:58:00Z")),
                jobs: vec![job(job1, None)],
                pods: vec![pod_with(job1, "amd-1", None, running_container())],
                nodes: both_ready(),
                phase: PlatformPhase::Running,
                attempts: 1,
                actions: vec![],
                ready: ("Building", "attempt 1 running".into()),
                disruptions: vec![],
                pulled: Some((true, "attempt 1 pulled the builder image")),
            },
        ];
        for case in cases {
            let observed = Observed {
                request: &case.request,
                jobs: &case.jobs,
                pods: &case.pods,
                nodes: &case.nodes,
                user_namespaces: None,
                now: time("2026-01-01T00:00:00Z"),
            };
            let decision = decide(&observed);
            let name = case.name;
            assert_eq!(
                decide(&trimmed(&observed)),
                decision,
                "{name}: the stores' trimmed Jobs and pods decide the same"
            );
            assert_eq!(decision.actions, case.actions, "{name}");
            assert_eq!(decision.status.phase, Some(case.phase), "{name}");
            assert_eq!(decision.status.attempts, Some(case.attempts), "{name}");
            assert_eq!(decision.status.disruptions, case.disruptions, "{name}");
            let ready = find(&decision.status.conditions, READY);
            if case.ready.0.is_empty() {
                assert_eq!(ready, None, "{name}: Ready must not change");
            } else {
                let ready = ready.unwrap();
                assert_eq!(
                    (
                        ready.reason.as_deref().unwrap(),
                        ready.message.clone().unwrap()
                    ),
                    (case.ready.0, case.ready.1.clone()),
                    "{name}"
                );
            }
            let pulled = find(&decision.status.conditions, BUILDER_IMAGE_PULLED).map(|c| {
                (
                    c.status == kiln_crds::ConditionStatus::True,
                    c.message.clone().unwrap(),
                )
            });
            assert_eq!(
                pulled,
                case.pulled.map(|(s, m)| (s, m.to_owned())),
                "{name}"
            );
            if case.phase == PlatformPhase::Failed {
                let message = decision.status.message.clone().unwrap();
                assert!(
                    case.ready.1.ends_with(&message),
                    "{name}: status.message {message:?}"
                );
            }
        }
    }

    #[test]
    fn running_pod_fills_pod_and_node() {
        let br = with_status(build_request("b", "linux/amd64", 0), running(1));
        let jobs = [job("b-1", None)];
        let pods = [pod("b-1", "b-1-xyz", Some("node-2"), None)];
        let decision = decide(&Observed {
            request: &br,
            jobs: &jobs,
            pods: &pods,
            nodes: &[node("node-2", "amd64", true, false)],
            user_namespaces: None,
            now: time("2026-01-01T00:00:00Z"),
        });
        assert_eq!(decision.status.pod_name.as_deref(), Some("b-1-xyz"));
        assert_eq!(decision.status.node_name.as_deref(), Some("node-2"));
        assert_eq!(
            decision.status.job_name, None,
            "unchanged from the observed status"
        );
    }

    #[test]
    fn digest_shape() {
        assert!(is_digest(DIGEST));
        assert!(!is_digest("sha256:abc"));
        assert!(!is_digest("RUN failed (exit 1): false"));
    }

    #[test]
    fn user_namespaces_set_a_condition_and_required_without_support_waits() {
        use crate::user_namespaces::Decision as Userns;
        let refused = "userNamespaces is required, but …; set userNamespaces: auto";
        let table = [
            (
                Userns::UserNamespace,
                (
                    "True",
                    "HostUsersFalse",
                    "builder pods run in a user namespace of their own (hostUsers: false)",
                ),
                Some(PlatformPhase::Running),
                2,
            ),
            (
                Userns::HostUsers {
                    why: "node a: …".into(),
                },
                ("False", "HostUsers", "node a: …"),
                Some(PlatformPhase::Running),
                2,
            ),
            (
                Userns::Refused {
                    message: refused.into(),
                },
                ("False", "Unsupported", refused),
                Some(PlatformPhase::Pending),
                0,
            ),
        ];
        for (userns, (status, reason, message), phase, actions) in table {
            let request = build_request("b", "linux/amd64", 0);
            let decision = decide(&Observed {
                request: &request,
                jobs: &[],
                pods: &[],
                nodes: &[node("amd-node", "amd64", true, false)],
                user_namespaces: Some(userns.clone()),
                now: time("2026-01-01T00:00:00Z"),
            });
            let condition = find(&decision.status.conditions, USER_NAMESPACES).unwrap();
            assert_eq!(
                (
                    condition.status.as_str(),
                    condition.reason.as_deref().unwrap(),
                    condition.message.as_deref().unwrap()
                ),
                (status, reason, message),
                "{userns:?}"
            );
            assert_eq!(decision.status.phase, phase, "{userns:?}");
            assert_eq!(decision.actions.len(), actions, "{userns:?}");
            if phase == Some(PlatformPhase::Pending) {
                let ready = find(&decision.status.conditions, READY).unwrap();
                assert_eq!(ready.reason.as_deref(), Some("WaitingForUserNamespaces"));
                assert_eq!(ready.message.as_deref(), Some(refused));
            }
        }
    }

    /// A request with a service account of its own: the same steps, no
    /// access objects made or removed.
    #[test]
    fn a_named_service_account_gets_no_access_objects() {
        let mut own = build_request("app-linux-amd64-g1", "linux/amd64", 0);
        own.spec.build.scheduling.service_account_name = Some("ci-builder".into());
        let nodes = [node("amd-1", "amd64", true, false)];
        let rows: [(&str, BuildRequest, Vec<Action>, Vec<Action>); 2] = [
            (
                "first attempt",
                own.clone(),
                vec![
                    Action::EnsureBuilderAccess,
                    Action::CreateJob {
                        attempt: 1,
                        avoid_nodes: vec![],
                    },
                ],
                vec![Action::CreateJob {
                    attempt: 1,
                    avoid_nodes: vec![],
                }],
            ),
            (
                "finished",
                with_status(own.clone(), |s| {
                    s.phase = Some(PlatformPhase::Succeeded);
                    s.attempts = Some(1);
                }),
                vec![],
                vec![],
            ),
        ];
        for (name, request, operator_made, named) in rows {
            let mut default = request.clone();
            default.spec.build.scheduling.service_account_name = None;
            for (request, want) in [(&default, operator_made), (&request, named)] {
                let decision = decide(&Observed {
                    request,
                    jobs: &[],
                    pods: &[],
                    nodes: &nodes,
                    user_namespaces: None,
                    now: time("2026-01-01T00:00:00Z"),
                });
                assert_eq!(decision.actions, want, "{name}");
            }
        }
    }

    #[test]
    fn requeue_table() {
        for (phase, want) in [
            (None, Requeue::OnChange),
            (Some(PlatformPhase::Pending), Requeue::Resync),
            (Some(PlatformPhase::Running), Requeue::Resync),
            (Some(PlatformPhase::Succeeded), Requeue::OnChange),
            (Some(PlatformPhase::Failed), Requeue::OnChange),
        ] {
            let status = BuildRequestStatus {
                phase,
                ..BuildRequestStatus::default()
            };
            assert_eq!(requeue(&status), want, "{phase:?}");
        }
    }
}
