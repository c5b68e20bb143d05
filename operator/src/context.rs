//! What every reconcile shares: the API client, the event recorder, the
//! metrics and the operator's configuration.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tracing::warn;

use crate::build_request::render::BuilderSettings;
use crate::metrics::Metrics;

/// Shared state of both controllers.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub builder: BuilderSettings,
    /// Requeue interval of a build that is running, as a safety net behind
    /// the watches.
    pub resync: Duration,
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, builder: BuilderSettings) -> Context {
        let reporter = Reporter {
            controller: "kiln-operator".into(),
            instance: std::env::var("KILN_POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            builder,
            resync: Duration::from_secs(300),
        }
    }
}

impl Context {
    /// Records a phase change as an Event on `object` (a Warning when the
    /// build failed). An Event that cannot be written is logged, never an
    /// error: the status already says what happened.
    pub async fn phase_event(
        &self,
        object: &ObjectReference,
        phase: &str,
        failed: bool,
        note: Option<String>,
    ) {
        let event = Event {
            type_: if failed {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: phase.into(),
            note,
            action: "Build".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, object).await {
            let name = object.name.as_deref().unwrap_or_default();
            warn!("could not record event {phase} on {name}: {e}");
        }
    }
}

/// Why a reconcile failed; the controller requeues with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0} has no namespace")]
    NoNamespace(String),
    #[error("registry secret {namespace}/{name}: {message}")]
    RegistrySecret {
        namespace: String,
        name: String,
        message: String,
    },
    #[error("publishing the index: {0}")]
    Publish(String),
}
