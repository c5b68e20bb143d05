//! kstatus-compatible conditions shared by both resources.
//!
//! `status.conditions` is a list-map keyed by `type`, so the operator and a
//! builder pod can each own their own condition under server-side apply.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The resource reached its goal: for a MultiArchBuild, the index is
/// published; for a BuildRequest, its image is pushed. kstatus reads it.
pub const READY: &str = "Ready";
/// Every platform that needs native nodes has at least one Ready,
/// schedulable node labelled with its `kubernetes.io/os` and `kubernetes.io/arch`.
pub const NATIVE_NODES_AVAILABLE: &str = "NativeNodesAvailable";
/// Builder pods run in a user namespace of their own (`hostUsers: false`);
/// `False` says why not, and with `userNamespaces: required` that the
/// build waits.
pub const USER_NAMESPACES: &str = "UserNamespaces";
/// Every platform has a digest.
pub const PLATFORMS_BUILT: &str = "PlatformsBuilt";
/// The image index (or manifest list) is pushed to every destination.
pub const INDEX_PUBLISHED: &str = "IndexPublished";
/// The kubelet could pull the builder image. `False` (reason
/// `ImagePullFailed`) names the image and what the registry said; set on a
/// BuildRequest whose builder pod waits on a pull, and on its MultiArchBuild.
pub const BUILDER_IMAGE_PULLED: &str = "BuilderImagePulled";

/// kstatus' "abnormal-true" condition: `True` while the resource is still
/// moving towards its goal (Flux and `kubectl wait`-style tools report it
/// InProgress); absent once it got there or stalled.
pub const RECONCILING: &str = "Reconciling";
/// kstatus' other "abnormal-true" condition: `True` when the resource will
/// not reach its goal without a change to its spec (kstatus: Failed);
/// absent otherwise.
pub const STALLED: &str = "Stalled";

/// Status of a condition, as in `metav1.ConditionStatus`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    /// The wire form: `True`, `False` or `Unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

/// One observation of the resource's state (shaped like `metav1.Condition`,
/// with only `type` and `status` required).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type: `Ready`, `Reconciling`, `Stalled`,
    /// `NativeNodesAvailable`, `PlatformsBuilt`, `IndexPublished`,
    /// `BuilderImagePulled`, or another CamelCase name.
    #[serde(rename = "type")]
    #[schemars(length(min = 1, max = 316))]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// CamelCase reason for the last transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable detail, e.g. what to do next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When `status` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// `metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    /// A condition without time or generation; see [`Condition::at`].
    pub fn new(
        type_: impl Into<String>,
        status: impl Into<ConditionStatus>,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_transition_time: None,
            observed_generation: None,
        }
    }

    /// The same condition stamped with the time and generation it was observed at.
    pub fn at(self, now: Time, observed_generation: Option<i64>) -> Self {
        Self {
            last_transition_time: Some(now),
            observed_generation,
            ..self
        }
    }

    /// Whether this is a `True` condition of type `type_`.
    pub fn is_true(&self, type_: &str) -> bool {
        self.type_ == type_ && self.status == ConditionStatus::True
    }
}

/// The condition of type `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Inserts or replaces the condition of `new.type_`. When the status does not
/// change, the existing `lastTransitionTime` is kept, so re-applying the same
/// observation does not look like a transition. Returns whether anything
/// changed.
pub fn set(conditions: &mut Vec<Condition>, mut new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status && old.last_transition_time.is_some() {
                new.last_transition_time
                    .clone_from(&old.last_transition_time);
            }
            if *old == new {
                return false;
            }
            *old = new;
            true
        }
        None => {
            conditions.push(new);
            true
        }
    }
}

/// Removes the condition of type `type_`. Returns whether it was there.
pub fn remove(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    conditions.len() != before
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn time(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn set_inserts_replaces_and_keeps_transition_time() {
        let t1 = time("2025-01-01T00:00:00Z");
        let t2 = time("2025-01-01T00:05:00Z");
        let mut conditions = Vec::new();

        let waiting = Condition::new(READY, false, "Building", "building 2 platforms");
        assert!(set(
            &mut conditions,
            waiting.clone().at(t1.clone(), Some(1))
        ));
        assert_eq!(conditions.len(), 1);

        // Same status, same text, later time: no change, first time kept.
        assert!(!set(
            &mut conditions,
            waiting.clone().at(t2.clone(), Some(1))
        ));
        assert_eq!(conditions[0].last_transition_time, Some(t1.clone()));

        // Same status, new message: changed, transition time still the first.
        let other = Condition::new(READY, false, "Building", "building 1 platform");
        assert!(set(&mut conditions, other.at(t2.clone(), Some(1))));
        assert_eq!(conditions[0].last_transition_time, Some(t1.clone()));
        assert_eq!(
            conditions[0].message.as_deref(),
            Some("building 1 platform")
        );

        // New status: the transition time moves.
        let done = Condition::new(READY, true, "Published", "index published");
        assert!(set(&mut conditions, done.at(t2.clone(), Some(1))));
        assert_eq!(conditions[0].last_transition_time, Some(t2));
        assert!(conditions[0].is_true(READY));

        // Another type is appended, order of the others kept.
        let nodes = Condition::new(NATIVE_NODES_AVAILABLE, true, "NodesFound", "");
        assert!(set(&mut conditions, nodes));
        let types: Vec<_> = conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY, NATIVE_NODES_AVAILABLE]);
        assert!(find(&conditions, NATIVE_NODES_AVAILABLE).is_some());
        assert!(find(&conditions, INDEX_PUBLISHED).is_none());
    }

    #[test]
    fn condition_wire_form() {
        let c = Condition::new(READY, true, "Published", "ok")
            .at(time("2025-01-01T00:00:00Z"), Some(3));
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"type":"Ready","status":"True","reason":"Published","message":"ok","lastTransitionTime":"2025-01-01T00:00:00Z","observedGeneration":3}"#
        );
        let minimal: Condition =
            serde_json::from_str(r#"{"type":"Ready","status":"Unknown"}"#).unwrap();
        assert_eq!(minimal.status, ConditionStatus::Unknown);
        assert_eq!(minimal.status.to_string(), "Unknown");
        assert_eq!(minimal.reason, None);
    }
}
