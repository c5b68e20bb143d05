//! Following a MultiArchBuild from the CLI: one progress line per change of
//! a platform or of the build, and the result.

use std::collections::BTreeMap;

use kiln_crds::condition::{READY, find};
use kiln_crds::{MultiArchBuild, MultiArchBuildStatus, PlatformStatus};

/// What was printed already, so only changes are.
#[derive(Debug, Default)]
pub struct Shown {
    platforms: BTreeMap<String, String>,
    build: String,
}

fn platform_line(entry: &PlatformStatus) -> String {
    let phase = entry.phase.map(|p| p.as_str()).unwrap_or("Pending");
    let mut line = format!("[{}] {phase}", entry.platform);
    if let Some(attempts) = entry.attempts.filter(|a| *a > 1) {
        line.push_str(&format!(" (attempt {attempts})"));
    }
    if let Some(digest) = &entry.digest {
        line.push_str(&format!(" {digest}"));
    } else if let Some(message) = entry.message.as_deref().filter(|m| !m.is_empty()) {
        line.push_str(&format!(": {message}"));
    }
    line
}

impl Shown {
    /// The lines to print for `status`: changed platforms in spec order,
    /// then the build's phase when it changed.
    pub fn update(&mut self, status: &MultiArchBuildStatus) -> Vec<String> {
        let mut lines = Vec::new();
        for entry in &status.platforms {
            let line = platform_line(entry);
            if self.platforms.get(&entry.platform) != Some(&line) {
                self.platforms.insert(entry.platform.clone(), line.clone());
                lines.push(line);
            }
        }
        if let Some(phase) = status.phase {
            let line = format!("MultiArchBuild {phase}");
            if self.build != line {
                self.build = line.clone();
                lines.push(line);
            }
        }
        lines
    }
}

/// What a succeeded build produced: the index reference, or each
/// platform's image when no index was published.
pub fn published(build: &MultiArchBuild) -> Vec<String> {
    let status = build.status.clone().unwrap_or_default();
    if let Some(reference) = status.index.and_then(|i| i.reference) {
        return vec![reference];
    }
    let repository = build
        .spec
        .build
        .destinations
        .first()
        .map(|d| crate::drivers::index::name_of(d).to_owned())
        .unwrap_or_default();
    status
        .platforms
        .iter()
        .filter_map(|p| Some(format!("{repository}@{}", p.digest.as_ref()?)))
        .collect()
}

/// Why a failed build failed, from its Ready condition.
pub fn failure_message(status: &MultiArchBuildStatus) -> String {
    find(&status.conditions, READY)
        .and_then(|c| c.message.clone())
        .unwrap_or_else(|| "no reason was recorded".to_owned())
}

/// The user's answer to "cancel the build?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Cancel,
    KeepFollowing,
    /// No terminal to ask: stop following, leave the build running.
    Leave,
}

pub fn answer(line: Option<&str>) -> Answer {
    match line.map(|l| l.trim().to_ascii_lowercase()) {
        None => Answer::Leave,
        Some(l) if l == "y" || l == "yes" => Answer::Cancel,
        Some(_) => Answer::KeepFollowing,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use kiln_crds::{Phase, PlatformPhase};

    fn entry(
        platform: &str,
        phase: PlatformPhase,
        attempts: i32,
        digest: Option<&str>,
        message: Option<&str>,
    ) -> PlatformStatus {
        let mut e = PlatformStatus::new(platform);
        e.phase = Some(phase);
        e.attempts = Some(attempts);
        e.digest = digest.map(Into::into);
        e.message = message.map(Into::into);
        e
    }

    #[test]
    fn only_changes_are_printed() {
        let mut shown = Shown::default();
        let mut status = MultiArchBuildStatus {
            phase: Some(Phase::Building),
            platforms: vec![
                entry(
                    "linux/amd64",
                    PlatformPhase::Running,
                    1,
                    None,
                    Some("attempt 1 started"),
                ),
                entry(
                    "linux/arm64",
                    PlatformPhase::Pending,
                    0,
                    None,
                    Some(
                        "no native nodes available for architecture arm64: add arm64 nodes or set requireNativeNodes: false",
                    ),
                ),
            ],
            ..MultiArchBuildStatus::default()
        };
        assert_eq!(
            shown.update(&status),
            [
                "[linux/amd64] Running: attempt 1 started",
                "[linux/arm64] Pending: no native nodes available for architecture arm64: add arm64 nodes or set requireNativeNodes: false",
                "MultiArchBuild Building",
            ]
        );
        assert!(shown.update(&status).is_empty());
        status.platforms[0] = entry(
            "linux/amd64",
            PlatformPhase::Succeeded,
            2,
            Some("sha256:aa"),
            None,
        );
        assert_eq!(
            shown.update(&status),
            ["[linux/amd64] Succeeded (attempt 2) sha256:aa"]
        );
    }

    #[test]
    fn answers() {
        assert_eq!(answer(Some("y\n")), Answer::Cancel);
        assert_eq!(answer(Some(" YES ")), Answer::Cancel);
        assert_eq!(answer(Some("\n")), Answer::KeepFollowing);
        assert_eq!(answer(Some("n")), Answer::KeepFollowing);
        assert_eq!(answer(None), Answer::Leave);
    }
}
