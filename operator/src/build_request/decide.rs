//! What the BuildRequest controller does, as a pure function of what it
//! observed: the request, its Jobs and their pods, and whether native nodes
//! exist for its platform. The controller (`controller.rs`) only gathers
//! these and carries out the returned actions.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kiln_crds::condition::{self, NATIVE_NODES_AVAILABLE, READY, USER_NAMESPACES};
use kiln_crds::{BuildRequest, BuildRequestStatus, Condition, PlatformPhase};

use crate::names;
use crate::nodes;
use crate::user_namespaces;

/// What the controller saw for one BuildRequest.
#[derive(Debug)]
pub struct Observed<'a> {
    pub request: &'a BuildRequest,
    /// Jobs owned by the request (any attempt).
    pub jobs: &'a [Job],
    /// Pods owned by those Jobs.
    pub pods: &'a [Pod],
    /// Whether a Ready, schedulable node of the request's os/arch exists.
    pub native_nodes: bool,
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
    /// Create the builder Job of this attempt (1-based).
    CreateJob { attempt: i32 },
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

fn set(status: &mut BuildRequestStatus, condition: Condition, now: &Time, generation: i64) {
    condition::set(
        &mut status.conditions,
        condition.at(now.clone(), Some(generation)),
    );
}

/// Decides the next step for one BuildRequest.
pub fn decide(observed: &Observed<'_>) -> Decision {
    let request = observed.request;
    let name = request.metadata.name.clone().unwrap_or_default();
    let generation = request.metadata.generation.unwrap_or_default();
    let spec = &request.spec;
    let now = &observed.now;
    let mut status = request.status.clone().unwrap_or_default();
    status.observed_generation = Some(generation);
    let attempts = status.attempts.unwrap_or(0);

    if status.phase.is_some_and(PlatformPhase::is_terminal) {
        return Decision {
            status,
            actions: vec![Action::RevokeBuilderAccess],
        };
    }

    let require_native = spec.build.scheduling.require_native_nodes;
    let start_attempt = |status: &mut BuildRequestStatus, attempt: i32| {
        status.attempts = Some(attempt);
        status.phase = Some(PlatformPhase::Running);
        status.job_name = Some(names::job_name(&name, attempt));
        status.pod_name = None;
        status.node_name = None;
        vec![Action::EnsureBuilderAccess, Action::CreateJob { attempt }]
    };

    if attempts == 0 {
        if require_native && !observed.native_nodes {
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

    let job_name = names::job_name(&name, attempts);
    let Some(job) = observed
        .jobs
        .iter()
        .find(|j| j.metadata.name.as_deref() == Some(job_name.as_str()))
    else {
        // Created but not yet seen, or removed by hand: creating it again
        // is harmless, the name is the same and creation is idempotent.
        return Decision {
            status,
            actions: vec![
                Action::EnsureBuilderAccess,
                Action::CreateJob { attempt: attempts },
            ],
        };
    };

    let pod = pod_of(job, observed.pods);
    if let Some(pod) = pod {
        status.pod_name = pod.metadata.name.clone();
        status.node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    }
    let terminated = pod.and_then(termination_message);

    match job_outcome(job) {
        JobOutcome::Running => Decision {
            status,
            actions: Vec::new(),
        },
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
            failed_attempt(
                status,
                &spec.build,
                attempts,
                false,
                message,
                now,
                generation,
                start_attempt,
            )
        }
        JobOutcome::Failed { reason, message } => {
            let timed_out = reason == "DeadlineExceeded";
            let message = if timed_out {
                let limit = spec
                    .build
                    .timeout
                    .map(|t| format!(" ({t})"))
                    .unwrap_or_default();
                format!("build timed out: attempt {attempts} ran longer than the timeout{limit}")
            } else {
                terminated
                    .filter(|m| !is_digest(m))
                    .or_else(|| status.message.clone())
                    .unwrap_or_else(|| {
                        if message.is_empty() {
                            format!("builder Job {job_name} failed ({reason})")
                        } else {
                            format!("builder Job {job_name} failed: {message}")
                        }
                    })
            };
            failed_attempt(
                status,
                &spec.build,
                attempts,
                timed_out,
                message,
                now,
                generation,
                start_attempt,
            )
        }
    }
}

/// After a failed attempt: the next one while retries are left (never
/// after a timeout, which would only time out again), else the end.
#[allow(clippy::too_many_arguments)]
fn failed_attempt(
    mut status: BuildRequestStatus,
    build: &kiln_crds::BuildSpec,
    attempts: i32,
    final_failure: bool,
    message: String,
    now: &Time,
    generation: i64,
    start_attempt: impl Fn(&mut BuildRequestStatus, i32) -> Vec<Action>,
) -> Decision {
    let allowed = build.retries.max(0).saturating_add(1);
    if !final_failure && attempts < allowed {
        let next = attempts + 1;
        set(
            &mut status,
            Condition::new(
                READY,
                false,
                "Retrying",
                format!(
                    "attempt {attempts} failed: {message}; starting attempt {next} of {allowed}"
                ),
            ),
            now,
            generation,
        );
        let actions = start_attempt(&mut status, next);
        return Decision { status, actions };
    }
    status.phase = Some(PlatformPhase::Failed);
    if status.message.as_deref() != Some(message.as_str()) {
        status.message = Some(message.clone());
    }
    let summary = if final_failure {
        message
    } else {
        format!("failed after {attempts} attempt(s): {message}")
    };
    set(
        &mut status,
        Condition::new(READY, false, "Failed", summary),
        now,
        generation,
    );
    Decision {
        status,
        actions: vec![Action::RevokeBuilderAccess],
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
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
                    Action::CreateJob { attempt: 1 },
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
                    Action::CreateJob { attempt: 1 },
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
                    Action::CreateJob { attempt: 1 },
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
                    Action::CreateJob { attempt: 2 },
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
                name: "already finished: only revoke access",
                request: with_status(br.clone(), |s| {
                    s.phase = Some(PlatformPhase::Succeeded);
                    s.attempts = Some(1);
                }),
                jobs: vec![],
                pods: vec![],
                native_nodes: false,
                phase: PlatformPhase::Succeeded,
                attempts: 1,
                actions: vec![Action::RevokeBuilderAccess],
                ready: ("", ""),
            },
        ];
        for case in cases {
            let observed = Observed {
                request: &case.request,
                jobs: &case.jobs,
                pods: &case.pods,
                native_nodes: case.native_nodes,
                user_namespaces: None,
                now: time("2026-01-01T00:00:00Z"),
            };
            let decision = decide(&observed);
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

    #[test]
    fn running_pod_fills_pod_and_node() {
        let br = with_status(build_request("b", "linux/amd64", 0), running(1));
        let jobs = [job("b-1", None)];
        let pods = [pod("b-1", "b-1-xyz", Some("node-2"), None)];
        let decision = decide(&Observed {
            request: &br,
            jobs: &jobs,
            pods: &pods,
            native_nodes: true,
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
                native_nodes: true,
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
}
