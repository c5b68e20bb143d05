//! What the MultiArchBuild controller does, as a pure function of the
//! MultiArchBuild and the BuildRequests it owns.
//!
//! Each generation of the spec gets its own BuildRequests (the generation
//! is in their names), so a spec change starts a new build and the index
//! can only ever be made of one generation's digests.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kiln_crds::condition::{
    self, BUILDER_IMAGE_PULLED, INDEX_PUBLISHED, NATIVE_NODES_AVAILABLE, PLATFORMS_BUILT, READY,
    RECONCILING, STALLED,
};
use kiln_crds::{
    BuildRequest, BuildRequestSpec, Condition, ConditionStatus, IndexStatus, MultiArchBuild,
    MultiArchBuildStatus, Phase, PlatformPhase, PlatformStatus, TagMode,
};
use kube::Resource;

use crate::requeue::Requeue;

use crate::names::{self, GENERATION_LABEL, JOB_NAME_MAX, MANAGED_BY, MULTI_ARCH_BUILD_LABEL};

/// What the controller saw.
#[derive(Debug)]
pub struct Observed<'a> {
    pub build: &'a MultiArchBuild,
    /// BuildRequests owned by the build, of any generation.
    pub requests: &'a [BuildRequest],
    pub now: Time,
}

/// One platform image that goes into the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Child {
    pub platform: String,
    pub digest: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create this BuildRequest (it does not exist yet).
    Create(Box<BuildRequest>),
    /// Delete the BuildRequest of another generation or of a platform no
    /// longer in the spec (its Jobs go with it).
    Delete(String),
    /// Verify the children and publish the index; then apply
    /// [`published`] or [`publish_failed`] to the status.
    Publish(Vec<Child>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub status: MultiArchBuildStatus,
    pub actions: Vec<Action>,
}

fn generation(build: &MultiArchBuild) -> i64 {
    build.metadata.generation.unwrap_or_default()
}

fn set(status: &mut MultiArchBuildStatus, c: Condition, now: &Time, generation: i64) {
    condition::set(&mut status.conditions, c.at(now.clone(), Some(generation)));
}

/// The BuildRequest for one platform of the build's current generation.
pub fn desired_request(build: &MultiArchBuild, platform: &str) -> BuildRequest {
    let mab_name = build.metadata.name.clone().unwrap_or_default();
    let generation = generation(build);
    let mut owner: OwnerReference = build.controller_owner_ref(&()).unwrap_or_default();
    owner.block_owner_deletion = Some(true);
    let labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "kiln".to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            MANAGED_BY.to_owned(),
        ),
        (
            MULTI_ARCH_BUILD_LABEL.to_owned(),
            names::object_name(&[&mab_name], JOB_NAME_MAX),
        ),
        (GENERATION_LABEL.to_owned(), generation.to_string()),
    ]);
    BuildRequest {
        metadata: ObjectMeta {
            name: Some(names::build_request_name(&mab_name, platform, generation)),
            namespace: build.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: BuildRequestSpec {
            platform: platform.to_owned(),
            build_generation: generation,
            tags: if build.spec.build.output.publish_index {
                TagMode::None
            } else {
                TagMode::PlatformSuffixed
            },
            build: build.spec.build.clone(),
        },
        status: None,
    }
}

fn platform_status(platform: &str, request: Option<&BuildRequest>) -> PlatformStatus {
    let mut entry = PlatformStatus::new(platform);
    let Some(request) = request else {
        entry.phase = Some(PlatformPhase::Pending);
        return entry;
    };
    let status = request.status.clone().unwrap_or_default();
    entry.build_request = request.metadata.name.clone();
    entry.phase = Some(status.phase.unwrap_or(PlatformPhase::Pending));
    entry.digest = status
        .digest
        .clone()
        .filter(|_| entry.phase == Some(PlatformPhase::Succeeded));
    entry.attempts = status.attempts;
    entry.message = condition::find(&status.conditions, READY)
        .and_then(|c| c.message.clone())
        .or(status.message.clone());
    if status.attempts.unwrap_or(0) > 0 {
        entry.started_at = request.metadata.creation_timestamp.clone();
    }
    if entry.phase.is_some_and(PlatformPhase::is_terminal) {
        entry.completed_at =
            condition::find(&status.conditions, READY).and_then(|c| c.last_transition_time.clone());
    }
    entry
}

/// How long after a transient failure to publish the index it is tried
/// again (the registry may be restarting or rate-limiting).
pub const PUBLISH_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

/// When to reconcile a build with `status` again without a watch event:
/// after [`PUBLISH_RETRY`] when publishing failed transiently, only on a
/// change once it is over, else on the resync timer.
pub fn requeue(status: &MultiArchBuildStatus, transient_publish_failure: bool) -> Requeue {
    if transient_publish_failure {
        Requeue::After(PUBLISH_RETRY)
    } else if status.phase.is_some_and(Phase::is_terminal) {
        Requeue::OnChange
    } else {
        Requeue::Resync
    }
}

/// Decides the next step for one MultiArchBuild.
pub fn decide(observed: &Observed<'_>) -> Decision {
    let mut decision = decide_phase(observed);
    if observed.build.metadata.deletion_timestamp.is_none() {
        kstatus_conditions(
            &mut decision.status,
            &observed.now,
            generation(observed.build),
        );
    }
    decision
}

/// kstatus' view of the phase (Flux's health checks, `kstatus`-based
/// waits): `Reconciling` while the build moves on (pending, building,
/// publishing, retrying a publish), `Stalled` once it failed for good (only
/// a spec change starts it again), neither once it succeeded. Both carry
/// `Ready`'s reason and message, so each tool shows the same words.
fn kstatus_conditions(status: &mut MultiArchBuildStatus, now: &Time, generation: i64) {
    let Some(ready) = condition::find(&status.conditions, READY).cloned() else {
        return;
    };
    let reason = ready.reason.unwrap_or_default();
    let message = ready.message.unwrap_or_default();
    match status.phase {
        Some(Phase::Succeeded) => {
            condition::remove(&mut status.conditions, RECONCILING);
            condition::remove(&mut status.conditions, STALLED);
        }
        Some(Phase::Failed) => {
            condition::remove(&mut status.conditions, RECONCILING);
            set(
                status,
                Condition::new(STALLED, true, reason, message),
                now,
                generation,
            );
        }
        _ => {
            condition::remove(&mut status.conditions, STALLED);
            set(
                status,
                Condition::new(RECONCILING, true, reason, message),
                now,
                generation,
            );
        }
    }
}

fn decide_phase(observed: &Observed<'_>) -> Decision {
    let build = observed.build;
    let generation = generation(build);
    let now = &observed.now;
    let mut status = build.status.clone().unwrap_or_default();
    let mut actions = Vec::new();

    if build.metadata.deletion_timestamp.is_some() {
        // Being deleted (foreground): the garbage collector is removing
        // the requests; making new ones would only race it.
        return Decision {
            status,
            actions: Vec::new(),
        };
    }

    let same_generation = status.observed_generation == Some(generation);
    if !same_generation {
        // A new generation starts from scratch: nothing of the previous
        // one's results may leak into this one's status or index.
        status = MultiArchBuildStatus {
            conditions: status.conditions,
            ..MultiArchBuildStatus::default()
        };
    }
    status.observed_generation = Some(generation);

    let mab_name = build.metadata.name.clone().unwrap_or_default();
    let platforms = &build.spec.platforms;
    let wanted: Vec<String> = platforms
        .iter()
        .map(|p| names::build_request_name(&mab_name, p, generation))
        .collect();
    for request in observed.requests {
        let name = request.metadata.name.clone().unwrap_or_default();
        if !wanted.contains(&name) {
            actions.push(Action::Delete(name));
        }
    }

    if same_generation && status.phase.is_some_and(Phase::is_terminal) {
        return Decision { status, actions };
    }

    let mut entries = Vec::new();
    for (platform, name) in platforms.iter().zip(&wanted) {
        let request = observed
            .requests
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name.as_str()));
        if request.is_none() {
            actions.push(Action::Create(Box::new(desired_request(build, platform))));
        }
        entries.push((platform_status(platform, request), request));
    }

    let waiting: Vec<&Condition> = entries
        .iter()
        .filter_map(|(_, r)| r.and_then(|r| r.status.as_ref()))
        .filter_map(|s| condition::find(&s.conditions, NATIVE_NODES_AVAILABLE))
        .filter(|c| c.status == ConditionStatus::False)
        .collect();
    let nodes = match waiting.first() {
        Some(first) => Condition::new(
            NATIVE_NODES_AVAILABLE,
            false,
            "NoNativeNodes",
            first.message.clone().unwrap_or_default(),
        ),
        None => Condition::new(
            NATIVE_NODES_AVAILABLE,
            true,
            "NativeNodesFound",
            "every platform has a node to build on",
        ),
    };
    set(&mut status, nodes, now, generation);

    // A builder image that cannot be pulled, named by the platform that
    // met it; the condition appears only once a platform reported on it.
    let pulls: Vec<(&str, &Condition)> = entries
        .iter()
        .filter_map(|(e, r)| {
            let c = condition::find(&(*r)?.status.as_ref()?.conditions, BUILDER_IMAGE_PULLED)?;
            Some((e.platform.as_str(), c))
        })
        .collect();
    if let Some((platform, failing)) = pulls
        .iter()
        .find(|(_, c)| c.status == ConditionStatus::False)
    {
        let message = format!(
            "{platform}: {}",
            failing.message.clone().unwrap_or_default()
        );
        set(
            &mut status,
            Condition::new(BUILDER_IMAGE_PULLED, false, "ImagePullFailed", message),
            now,
            generation,
        );
    } else if !pulls.is_empty() {
        set(
            &mut status,
            Condition::new(
                BUILDER_IMAGE_PULLED,
                true,
                "Pulled",
                "every builder pod pulled the builder image",
            ),
            now,
            generation,
        );
    }

    let failed = entries
        .iter()
        .find(|(e, _)| e.phase == Some(PlatformPhase::Failed))
        .map(|(e, _)| e.clone());
    let built = entries
        .iter()
        .filter(|(e, _)| e.phase == Some(PlatformPhase::Succeeded) && e.digest.is_some())
        .count();
    let running = entries
        .iter()
        .any(|(e, _)| e.phase == Some(PlatformPhase::Running));
    status.platforms = entries.into_iter().map(|(e, _)| e).collect();
    let total = platforms.len();

    set(
        &mut status,
        Condition::new(
            PLATFORMS_BUILT,
            built == total,
            if built == total {
                "AllBuilt"
            } else {
                "Building"
            },
            format!("{built} of {total} platforms built"),
        ),
        now,
        generation,
    );

    if let Some(failed) = failed {
        let message = format!(
            "{} failed: {}; no index published",
            failed.platform,
            failed.message.unwrap_or_default()
        );
        status.phase = Some(Phase::Failed);
        set(
            &mut status,
            Condition::new(READY, false, "PlatformFailed", message),
            now,
            generation,
        );
        return Decision { status, actions };
    }

    if built == total {
        if !build.spec.build.output.publish_index {
            status.phase = Some(Phase::Succeeded);
            set(
                &mut status,
                Condition::new(
                    INDEX_PUBLISHED,
                    false,
                    "NotRequested",
                    "publishIndex is false",
                ),
                now,
                generation,
            );
            set(
                &mut status,
                Condition::new(
                    READY,
                    true,
                    "Built",
                    format!("{total} platforms built; publishIndex is false"),
                ),
                now,
                generation,
            );
            return Decision { status, actions };
        }
        let children = status
            .platforms
            .iter()
            .map(|e| Child {
                platform: e.platform.clone(),
                digest: e.digest.clone().unwrap_or_default(),
            })
            .collect();
        status.phase = Some(Phase::Publishing);
        set(
            &mut status,
            Condition::new(
                READY,
                false,
                "Publishing",
                "verifying the platform images and pushing the index",
            ),
            now,
            generation,
        );
        actions.push(Action::Publish(children));
        return Decision { status, actions };
    }

    let (phase, reason) = if running {
        (Phase::Building, "Building")
    } else {
        (Phase::Pending, "Pending")
    };
    status.phase = Some(phase);
    let message = match waiting.first() {
        Some(c) if !running => c.message.clone().unwrap_or_default(),
        _ => format!("{built} of {total} platforms built"),
    };
    set(
        &mut status,
        Condition::new(READY, false, reason, message),
        now,
        generation,
    );
    Decision { status, actions }
}

/// The status after the index was pushed to every destination.
pub fn published(
    mut status: MultiArchBuildStatus,
    index: IndexStatus,
    now: &Time,
    generation: i64,
) -> MultiArchBuildStatus {
    let message = format!(
        "index {} published",
        index.reference.clone().unwrap_or_default()
    );
    status.index = Some(index);
    status.phase = Some(Phase::Succeeded);
    set(
        &mut status,
        Condition::new(INDEX_PUBLISHED, true, "Published", &message),
        now,
        generation,
    );
    set(
        &mut status,
        Condition::new(READY, true, "Published", message),
        now,
        generation,
    );
    kstatus_conditions(&mut status, now, generation);
    status
}

/// The status after publishing failed. `permanent` errors (a child that is
/// not what its platform says, an index the options cannot express) fail
/// the build; others keep it `Publishing` to be tried again.
pub fn publish_failed(
    mut status: MultiArchBuildStatus,
    message: &str,
    permanent: bool,
    now: &Time,
    generation: i64,
) -> MultiArchBuildStatus {
    set(
        &mut status,
        Condition::new(INDEX_PUBLISHED, false, "PublishFailed", message),
        now,
        generation,
    );
    if permanent {
        status.phase = Some(Phase::Failed);
        set(
            &mut status,
            Condition::new(
                READY,
                false,
                "PublishFailed",
                format!("publishing the index failed: {message}"),
            ),
            now,
            generation,
        );
    } else {
        set(
            &mut status,
            Condition::new(
                READY,
                false,
                "Publishing",
                format!("publishing the index failed, retrying: {message}"),
            ),
            now,
            generation,
        );
    }
    kstatus_conditions(&mut status, now, generation);
    status
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::test_objects::{multi_arch_build, time};
    use kiln_crds::condition::find;

    const AMD: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const ARM: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn request(
        build: &MultiArchBuild,
        platform: &str,
        edit: impl FnOnce(&mut kiln_crds::BuildRequestStatus),
    ) -> BuildRequest {
        let mut r = desired_request(build, platform);
        let mut status = kiln_crds::BuildRequestStatus::default();
        edit(&mut status);
        r.status = Some(status);
        r
    }

    fn succeeded(digest: &'static str) -> impl FnOnce(&mut kiln_crds::BuildRequestStatus) {
        move |s| {
            s.phase = Some(PlatformPhase::Succeeded);
            s.attempts = Some(1);
            s.digest = Some(digest.into());
        }
    }

    fn running(s: &mut kiln_crds::BuildRequestStatus) {
        s.phase = Some(PlatformPhase::Running);
        s.attempts = Some(1);
    }

    fn ready(status: &MultiArchBuildStatus) -> (String, String) {
        let c = find(&status.conditions, READY).unwrap();
        (c.reason.clone().unwrap(), c.message.clone().unwrap())
    }

    fn decide_now(build: &MultiArchBuild, requests: &[BuildRequest]) -> Decision {
        decide(&Observed {
            build,
            requests,
            now: time("2026-01-01T00:10:00Z"),
        })
    }

    const PLATFORMS: [&str; 2] = ["linux/amd64", "linux/arm64"];

    #[test]
    fn all_platforms_pending_creates_one_request_each() {
        let build = multi_arch_build("app", &PLATFORMS, 1);
        let d = decide_now(&build, &[]);
        let created: Vec<_> = d
            .actions
            .iter()
            .map(|a| match a {
                Action::Create(r) => (
                    r.metadata.name.clone().unwrap(),
                    r.spec.platform.clone(),
                    r.spec.tags,
                ),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            created,
            [
                (
                    "app-linux-amd64-g1".to_owned(),
                    "linux/amd64".to_owned(),
                    TagMode::None
                ),
                (
                    "app-linux-arm64-g1".to_owned(),
                    "linux/arm64".to_owned(),
                    TagMode::None
                ),
            ]
        );
        assert_eq!(d.status.phase, Some(Phase::Pending));
        assert_eq!(d.status.platforms.len(), 2);
        let owner = &match &d.actions[0] {
            Action::Create(r) => r.metadata.owner_references.clone().unwrap(),
            _ => unreachable!(),
        }[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("MultiArchBuild", "uid-app", Some(true))
        );
    }

    #[test]
    fn a_platform_without_native_nodes_is_reported() {
        let build = multi_arch_build("app", &PLATFORMS, 1);
        let msg = "no native nodes available for architecture arm64: add arm64 nodes or set requireNativeNodes: false";
        let requests = [
            request(&build, "linux/amd64", running),
            request(&build, "linux/arm64", |s| {
                s.phase = Some(PlatformPhase::Pending);
                s.conditions.push(Condition::new(
                    NATIVE_NODES_AVAILABLE,
                    false,
                    "NoNativeNodes",
                    msg,
                ));
            }),
        ];
        let d = decide_now(&build, &requests);
        assert!(d.actions.is_empty(), "{:?}", d.actions);
        let nodes = find(&d.status.conditions, NATIVE_NODES_AVAILABLE).unwrap();
        assert_eq!(
            (nodes.status, nodes.message.as_deref()),
            (ConditionStatus::False, Some(msg))
        );
        assert_eq!(d.status.phase, Some(Phase::Building));

        let only_waiting = [
            request(&build, "linux/amd64", |s| {
                s.phase = Some(PlatformPhase::Pending);
                s.conditions.push(Condition::new(
                    NATIVE_NODES_AVAILABLE,
                    false,
                    "NoNativeNodes",
                    msg,
                ));
            }),
            request(&build, "linux/arm64", |s| {
                s.phase = Some(PlatformPhase::Pending);
                s.conditions.push(Condition::new(
                    NATIVE_NODES_AVAILABLE,
                    false,
                    "NoNativeNodes",
                    msg,
                ));
            }),
        ];
        let d = decide_now(&build, &only_waiting);
        assert_eq!(d.status.phase, Some(Phase::Pending));
        assert_eq!(ready(&d.status), ("Pending".to_owned(), msg.to_owned()));
    }

    #[test]
    fn a_failed_platform_fails_the_build_without_publishing() {
        let build = multi_arch_build("app", &PLATFORMS, 1);
        let requests = [
            request(&build, "linux/amd64", succeeded(AMD)),
            request(&build, "linux/arm64", |s| {
                s.phase = Some(PlatformPhase::Failed);
                s.attempts = Some(3);
                s.conditions.push(Condition::new(
                    READY,
                    false,
                    "Failed",
                    "failed after 3 attempt(s): RUN failed (exit 1): false",
                ));
            }),
        ];
        let d = decide_now(&build, &requests);
        assert!(d.actions.iter().all(|a| !matches!(a, Action::Publish(_))));
        assert_eq!(d.status.phase, Some(Phase::Failed));
        assert_eq!(
            ready(&d.status),
            (
                "PlatformFailed".to_owned(),
                "linux/arm64 failed: failed after 3 attempt(s): RUN failed (exit 1): false; no index published".to_owned()
            )
        );
        assert_eq!(d.status.platforms[1].attempts, Some(3));
    }

    #[test]
    fn retrying_platform_keeps_building() {
        let build = multi_arch_build("app", &PLATFORMS, 1);
        let requests = [
            request(&build, "linux/amd64", succeeded(AMD)),
            request(&build, "linux/arm64", |s| {
                s.phase = Some(PlatformPhase::Running);
                s.attempts = Some(2);
            }),
        ];
        let d = decide_now(&build, &requests);
        assert_eq!(d.status.phase, Some(Phase::Building));
        assert!(d.actions.is_empty());
        assert_eq!(ready(&d.status).1, "1 of 2 platforms built");
    }

    /// Nothing half-published: while a platform is retrying (after a build
    /// failure, a lost node, or with its earlier attempt's digest still in
    /// its status) or has failed, no index is published.
    #[test]
    fn no_index_while_a_platform_retries_or_failed() {
        let build = multi_arch_build("app", &PLATFORMS, 1);
        let retrying: [fn(&mut kiln_crds::BuildRequestStatus); 3] = [
            |s| {
                s.phase = Some(PlatformPhase::Running);
                s.attempts = Some(2);
                s.disruptions = vec![kiln_crds::Disruption {
                    attempt: 1,
                    node: Some("arm-1".into()),
                    reason: "NodeNotReady".into(),
                    message: None,
                    node_avoided: true,
                }];
            },
            // An abandoned attempt's builder reported a digest after all:
            // the platform is not Succeeded, so it is not a child.
            |s| {
                s.phase = Some(PlatformPhase::Running);
                s.attempts = Some(2);
                s.digest = Some(ARM.into());
            },
            |s| {
                s.phase = Some(PlatformPhase::Failed);
                s.attempts = Some(3);
                s.digest = Some(ARM.into());
                s.message = Some("the builder was OOM-killed".into());
            },
        ];
        for (i, arm) in retrying.into_iter().enumerate() {
            let requests = [
                request(&build, "linux/amd64", succeeded(AMD)),
                request(&build, "linux/arm64", arm),
            ];
            let d = decide_now(&build, &requests);
            assert!(
                !d.actions.iter().any(|a| matches!(a, Action::Publish(_))),
                "case {i}: {:?}",
                d.actions
            );
            assert_ne!(d.status.phase, Some(Phase::Publishing), "case {i}");
            assert_ne!(d.status.phase, Some(Phase::Succeeded), "case {i}");
            let built = find(&d.status.conditions, PLATFORMS_BUILT).unwrap();
            assert_eq!(built.status, ConditionStatus::False, "case {i}");
            assert_eq!(d.status.platforms[1].digest, None, "case {i}");
        }
    }

    #[test]
    fn an_unpullable_builder_image_is_named_on_the_build() {
        let build = multi_arch_build("app", &PLATFORMS, 1);
        let text = "the builder image registry.example/kiln-builder:1 cannot be pulled on node arm-1: ErrImagePull: not found";
        let requests = [
            request(&build, "linux/amd64", running),
            request(&build, "linux/arm64", |s| {
                s.phase = Some(PlatformPhase::Running);
                s.attempts = Some(1);
                s.conditions = vec![
                    Condition::new(BUILDER_IMAGE_PULLED, false, "ImagePullFailed", text),
                    Condition::new(READY, false, "BuilderImagePullFailed", text),
                ];
            }),
        ];
        let d = decide_now(&build, &requests);
        let pulled = find(&d.status.conditions, BUILDER_IMAGE_PULLED).unwrap();
        assert_eq!(
            (pulled.status, pulled.message.clone().unwrap()),
            (ConditionStatus::False, format!("linux/arm64: {text}"))
        );
        assert_eq!(d.status.platforms[1].message.as_deref(), Some(text));
        // None reported on a pull: no condition at all.
        let quiet = [
            request(&build, "linux/amd64", running),
            request(&build, "linux/arm64", running),
        ];
        let d = decide_now(&build, &quiet);
        assert!(find(&d.status.conditions, BUILDER_IMAGE_PULLED).is_none());
    }

    #[test]
    fn all_succeeded_publishes_in_spec_order() {
        let build = multi_arch_build("app", &["linux/arm64", "linux/amd64"], 1);
        let requests = [
            request(&build, "linux/amd64", succeeded(AMD)),
            request(&build, "linux/arm64", succeeded(ARM)),
        ];
        let d = decide_now(&build, &requests);
        assert_eq!(d.status.phase, Some(Phase::Publishing));
        assert_eq!(
            d.actions,
            [Action::Publish(vec![
                Child {
                    platform: "linux/arm64".into(),
                    digest: ARM.into()
                },
                Child {
                    platform: "linux/amd64".into(),
                    digest: AMD.into()
                },
            ])]
        );
        let now = time("2026-01-01T00:11:00Z");
        let index = IndexStatus {
            digest: Some("sha256:cc".into()),
            media_type: Some("application/vnd.oci.image.index.v1+json".into()),
            reference: Some("registry.example/app@sha256:cc".into()),
        };
        let done = published(d.status, index.clone(), &now, 1);
        assert_eq!(done.phase, Some(Phase::Succeeded));
        assert_eq!(done.index, Some(index));
        assert!(find(&done.conditions, READY).unwrap().is_true(READY));
        assert!(
            find(&done.conditions, INDEX_PUBLISHED)
                .unwrap()
                .is_true(INDEX_PUBLISHED)
        );

        // Once succeeded, nothing more happens for this generation.
        let mut finished = build.clone();
        finished.status = Some(done);
        assert!(decide_now(&finished, &requests).actions.is_empty());
    }

    #[test]
    fn publish_failures() {
        let now = time("2026-01-01T00:11:00Z");
        let status = MultiArchBuildStatus {
            phase: Some(Phase::Publishing),
            ..MultiArchBuildStatus::default()
        };
        let retry = publish_failed(status.clone(), "registry unavailable", false, &now, 1);
        assert_eq!(retry.phase, Some(Phase::Publishing));
        let fail = publish_failed(status, "linux/arm64: config says amd64", true, &now, 1);
        assert_eq!(fail.phase, Some(Phase::Failed));
        assert_eq!(
            find(&fail.conditions, READY).unwrap().message.as_deref(),
            Some("publishing the index failed: linux/arm64: config says amd64")
        );
    }

    /// kstatus' abnormal-true conditions along a build's life: what Flux
    /// reads as InProgress (`Reconciling`), Failed (`Stalled`) or Current
    /// (neither), each with `Ready`'s reason and message.
    #[test]
    fn reconciling_and_stalled_follow_the_phase() {
        fn kstatus(status: &MultiArchBuildStatus) -> (Option<String>, Option<String>) {
            let reason = |type_| {
                find(&status.conditions, type_).map(|c| {
                    assert_eq!(c.status, ConditionStatus::True, "{type_} is abnormal-true");
                    let ready = find(&status.conditions, READY).unwrap();
                    assert_eq!(c.message, ready.message, "{type_} repeats Ready");
                    c.reason.clone().unwrap()
                })
            };
            (reason(RECONCILING), reason(STALLED))
        }
        let some = |r: &str| Some(r.to_string());
        let now = time("2026-01-01T00:11:00Z");
        let build = multi_arch_build("app", &PLATFORMS, 1);

        let pending = decide_now(&build, &[]).status;
        assert_eq!(kstatus(&pending), (some("Pending"), None));
        let started = [
            request(&build, "linux/amd64", running),
            request(&build, "linux/arm64", running),
        ];
        let building = decide_now(&build, &started).status;
        assert_eq!(kstatus(&building), (some("Building"), None));
        let built = [
            request(&build, "linux/amd64", succeeded(AMD)),
            request(&build, "linux/arm64", succeeded(ARM)),
        ];
        let publishing = decide_now(&build, &built).status;
        assert_eq!(kstatus(&publishing), (some("Publishing"), None));
        let retrying = publish_failed(publishing.clone(), "registry down", false, &now, 1);
        assert_eq!(kstatus(&retrying), (some("Publishing"), None));
        let index = IndexStatus {
            digest: Some("sha256:cc".into()),
            media_type: None,
            reference: Some("registry.example/app@sha256:cc".into()),
        };
        let done = published(retrying, index, &now, 1);
        assert_eq!(kstatus(&done), (None, None));
        let refused = publish_failed(publishing, "config says amd64", true, &now, 1);
        assert_eq!(kstatus(&refused), (None, some("PublishFailed")));

        let broken = [
            request(&build, "linux/amd64", running),
            request(&build, "linux/arm64", |s| {
                s.phase = Some(PlatformPhase::Failed);
                s.message = Some("exit 3".into());
            }),
        ];
        let failed = decide_now(&build, &broken).status;
        assert_eq!(kstatus(&failed), (None, some("PlatformFailed")));

        // A new generation of a failed build reconciles again.
        let mut changed = multi_arch_build("app", &["linux/amd64"], 2);
        changed.status = Some(failed);
        let again = decide_now(&changed, &broken).status;
        assert_eq!(kstatus(&again), (some("Pending"), None));
    }

    #[test]
    fn spec_change_mid_build_starts_a_new_generation() {
        let old = multi_arch_build("app", &PLATFORMS, 1);
        let requests = [
            request(&old, "linux/amd64", succeeded(AMD)),
            request(&old, "linux/arm64", running),
        ];
        let mut new = multi_arch_build("app", &["linux/amd64", "linux/arm64", "linux/s390x"], 2);
        new.status = Some(decide_now(&old, &requests).status);
        let d = decide_now(&new, &requests);
        let mut deleted = Vec::new();
        let mut created = Vec::new();
        for a in &d.actions {
            match a {
                Action::Delete(n) => deleted.push(n.clone()),
                Action::Create(r) => created.push(r.metadata.name.clone().unwrap()),
                Action::Publish(_) => panic!("must not publish a mix of generations"),
            }
        }
        assert_eq!(deleted, ["app-linux-amd64-g1", "app-linux-arm64-g1"]);
        assert_eq!(
            created,
            [
                "app-linux-amd64-g2",
                "app-linux-arm64-g2",
                "app-linux-s390x-g2"
            ]
        );
        assert_eq!(d.status.observed_generation, Some(2));
        assert!(
            d.status.platforms.iter().all(|p| p.digest.is_none()),
            "{:?}",
            d.status.platforms
        );
        assert_eq!(d.status.phase, Some(Phase::Pending));

        // A spec change after success rebuilds too.
        let mut done = old.clone();
        done.status = Some(MultiArchBuildStatus {
            observed_generation: Some(1),
            phase: Some(Phase::Succeeded),
            ..MultiArchBuildStatus::default()
        });
        done.metadata.generation = Some(2);
        let d = decide_now(&done, &requests);
        assert_eq!(d.status.phase, Some(Phase::Pending));
        assert_eq!(
            d.actions
                .iter()
                .filter(|a| matches!(a, Action::Create(_)))
                .count(),
            2
        );
    }

    #[test]
    fn a_build_being_deleted_makes_nothing_new() {
        let mut build = multi_arch_build("app", &PLATFORMS, 1);
        build.metadata.deletion_timestamp = Some(time("2026-01-01T00:09:00Z"));
        let d = decide_now(&build, &[]);
        assert!(d.actions.is_empty(), "{:?}", d.actions);
        assert_eq!(d.status, MultiArchBuildStatus::default());
    }

    #[test]
    fn without_publish_index_the_build_ends_after_the_platforms() {
        let mut build = multi_arch_build("app", &PLATFORMS, 1);
        build.spec.build.output.publish_index = false;
        let requests = [
            request(&build, "linux/amd64", succeeded(AMD)),
            request(&build, "linux/arm64", succeeded(ARM)),
        ];
        assert_eq!(
            requests[0].spec.tags,
            TagMode::PlatformSuffixed,
            "without an index each platform gets its own tag"
        );
        let d = decide_now(&build, &requests);
        assert_eq!(d.status.phase, Some(Phase::Succeeded));
        assert!(d.actions.is_empty());
    }

    #[test]
    fn requeue_table() {
        for (phase, transient, want) in [
            (None, false, Requeue::Resync),
            (Some(Phase::Building), false, Requeue::Resync),
            (Some(Phase::Publishing), true, Requeue::After(PUBLISH_RETRY)),
            (Some(Phase::Succeeded), false, Requeue::OnChange),
            (Some(Phase::Failed), false, Requeue::OnChange),
        ] {
            let status = MultiArchBuildStatus {
                phase,
                ..MultiArchBuildStatus::default()
            };
            assert_eq!(requeue(&status, transient), want, "{phase:?} {transient}");
        }
        assert_eq!(PUBLISH_RETRY, std::time::Duration::from_secs(30));
    }
}
