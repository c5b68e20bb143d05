//! Phases shown in `kubectl get` and used by the operator's decisions.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Phase of a MultiArchBuild.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Accepted; no platform started yet (e.g. waiting for native nodes).
    Pending,
    /// At least one platform is building.
    Building,
    /// Every platform has a digest; the index is being verified and pushed.
    Publishing,
    /// The index is published to every destination.
    Succeeded,
    /// A platform exhausted its retries, or publishing failed.
    Failed,
}

impl Phase {
    /// The wire form, as printed by `kubectl get`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Building => "Building",
            Self::Publishing => "Publishing",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
        }
    }

    /// Whether the build is over (`Succeeded` or `Failed`).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Phase of one platform's build: a BuildRequest, and its entry in
/// `MultiArchBuild.status.platforms`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlatformPhase {
    /// Not started: no Job yet, or waiting for a native node.
    Pending,
    /// A builder Job exists for the current attempt.
    Running,
    /// The image is pushed and its digest reported.
    Succeeded,
    /// The last attempt failed and no retries are left.
    Failed,
}

impl PlatformPhase {
    /// The wire form, as printed by `kubectl get`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
        }
    }

    /// Whether the platform's build is over (`Succeeded` or `Failed`).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

impl fmt::Display for PlatformPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn display_is_the_wire_form() {
        for phase in [
            Phase::Pending,
            Phase::Building,
            Phase::Publishing,
            Phase::Succeeded,
            Phase::Failed,
        ] {
            let json = serde_json::to_string(&phase).unwrap();
            assert_eq!(json, format!("\"{phase}\""));
            assert_eq!(serde_json::from_str::<Phase>(&json).unwrap(), phase);
        }
        for phase in [
            PlatformPhase::Pending,
            PlatformPhase::Running,
            PlatformPhase::Succeeded,
            PlatformPhase::Failed,
        ] {
            let json = serde_json::to_string(&phase).unwrap();
            assert_eq!(json, format!("\"{phase}\""));
            assert_eq!(serde_json::from_str::<PlatformPhase>(&json).unwrap(), phase);
        }
        let terminal: Vec<_> = [
            Phase::Pending,
            Phase::Publishing,
            Phase::Succeeded,
            Phase::Failed,
        ]
        .into_iter()
        .filter(|p| p.is_terminal())
        .collect();
        assert_eq!(terminal, [Phase::Succeeded, Phase::Failed]);
        assert!(!PlatformPhase::Running.is_terminal());
        assert!(PlatformPhase::Failed.is_terminal());
    }
}
