//! A builder pod's report to its BuildRequest (`--build-request=NS/NAME`,
//! or `KILN_BUILD_REQUEST`, set by the operator): the result goes into the
//! BuildRequest's `status` by server-side apply under the `kiln-builder`
//! field manager, with the pod's own service account, which may patch that
//! one status and nothing else. The digest (or the error) also goes to the
//! container's termination message, which the operator reads when the
//! status could not be written.

use std::path::PathBuf;
use std::time::Duration;

use kiln_crds::{BuildRequest, BuildRequestStatus};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use tracing::{info, warn};

use crate::drivers::Outcome;

/// Field manager of the builder's status fields.
pub const FIELD_MANAGER: &str = "kiln-builder";
/// Where Kubernetes reads a container's termination message by default.
pub const TERMINATION_LOG: &str = "/dev/termination-log";
/// Overrides [`TERMINATION_LOG`] (a pod's `terminationMessagePath`, or the
/// test harness's stand-in for the kubelet).
pub const TERMINATION_LOG_ENV: &str = "KILN_TERMINATION_MESSAGE_PATH";

/// Kubernetes keeps at most 4096 bytes of a termination message; the
/// status message is kept to the same size so it stays readable.
const MESSAGE_LIMIT: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--build-request={0}: expected NAMESPACE/NAME")]
pub struct TargetError(String);

/// `namespace/name` of the BuildRequest.
pub fn parse_target(text: &str) -> Result<(String, String), TargetError> {
    match text.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_owned(), name.to_owned()))
        }
        _ => Err(TargetError(text.to_owned())),
    }
}

/// The status fields the builder owns, from the build's result.
pub fn status_of(result: &Result<Outcome, String>, elapsed: Duration) -> BuildRequestStatus {
    let mut status = BuildRequestStatus {
        duration_seconds: Some((elapsed.as_secs_f64() * 10.0).round() / 10.0),
        ..BuildRequestStatus::default()
    };
    match result {
        Ok(Outcome::Image(image)) => {
            status.digest = Some(image.digest.clone());
            status.media_type = Some(image.media_type.clone());
            status.size = i64::try_from(image.size).ok();
            status.image_reference = image.pushed.first().cloned();
            // Only when the layer cache looked anything up.
            if image.cache_hits + image.cache_misses > 0 {
                status.cache_hits = i64::try_from(image.cache_hits).ok();
                status.cache_misses = i64::try_from(image.cache_misses).ok();
            }
        }
        Ok(_) => {
            status.message = Some(
                "a builder pod builds one platform: its arguments must name one (--custom-platform)"
                    .into(),
            );
        }
        Err(error) => status.message = Some(truncate(error)),
    }
    status
}

fn truncate(text: &str) -> String {
    if text.len() <= MESSAGE_LIMIT {
        return text.to_owned();
    }
    let mut end = MESSAGE_LIMIT - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// What goes into the termination message: the digest, or the error.
pub fn termination_message(status: &BuildRequestStatus) -> String {
    status
        .digest
        .clone()
        .or_else(|| status.message.clone())
        .unwrap_or_default()
}

fn termination_log() -> PathBuf {
    std::env::var_os(TERMINATION_LOG_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(TERMINATION_LOG))
}

/// Reports `result` to the BuildRequest `target`. Never fails the build:
/// a report that cannot be written is logged, and the termination message
/// remains for the operator.
pub async fn report(target: &str, result: &Result<Outcome, String>, elapsed: Duration) {
    let status = status_of(result, elapsed);
    let path = termination_log();
    if let Err(e) = std::fs::write(&path, termination_message(&status)) {
        warn!(
            "could not write the termination message to {}: {e}",
            path.display()
        );
    }
    match apply(target, &status).await {
        Ok(()) => info!("reported the result to BuildRequest {target}"),
        Err(e) => warn!(
            "could not report the result to BuildRequest {target}: {e}; the operator reads the termination message instead"
        ),
    }
}

/// Why a report did not reach its BuildRequest.
#[derive(Debug, thiserror::Error)]
enum ReportError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

async fn apply(target: &str, status: &BuildRequestStatus) -> Result<(), ReportError> {
    let (namespace, name) = parse_target(target)?;
    let client = kube::Client::try_default().await?;
    let api: Api<BuildRequest> = Api::namespaced(client, &namespace);
    let patch = serde_json::json!({
        "apiVersion": BuildRequest::api_version(&()),
        "kind": BuildRequest::kind(&()),
        "status": status,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::build::BuildOutcome;

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("ns/app-linux-arm64-g1").unwrap(),
            ("ns".into(), "app-linux-arm64-g1".into())
        );
        for bad in ["ns", "/name", "ns/", "a/b/c"] {
            assert_eq!(
                parse_target(bad).unwrap_err().to_string(),
                format!("--build-request={bad}: expected NAMESPACE/NAME")
            );
        }
    }

    #[test]
    fn status_and_termination_message() {
        let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let ok = Ok(Outcome::Image(BuildOutcome {
            digest: digest.into(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 1234,
            pushed: vec![format!("registry.example/app@{digest}")],
            cache_hits: 0,
            cache_misses: 0,
        }));
        let status = status_of(&ok, Duration::from_millis(12_345));
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            serde_json::json!({
                "digest": digest,
                "imageReference": format!("registry.example/app@{digest}"),
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "size": 1234,
                "durationSeconds": 12.3,
            })
        );
        assert_eq!(termination_message(&status), digest);

        let cached = Ok(Outcome::Image(BuildOutcome {
            digest: digest.into(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 1234,
            pushed: vec![],
            cache_hits: 3,
            cache_misses: 1,
        }));
        let status = status_of(&cached, Duration::ZERO);
        assert_eq!((status.cache_hits, status.cache_misses), (Some(3), Some(1)));

        let failed = Err("RUN failed (exit 1): false".to_owned());
        let status = status_of(&failed, Duration::from_secs(2));
        assert_eq!(
            status.message.as_deref(),
            Some("RUN failed (exit 1): false")
        );
        assert_eq!(status.digest, None);
        assert_eq!(termination_message(&status), "RUN failed (exit 1): false");

        let long = Err("é".repeat(3000));
        let message = status_of(&long, Duration::ZERO).message.unwrap();
        assert!(message.len() <= MESSAGE_LIMIT && message.ends_with("..."));
    }
}
