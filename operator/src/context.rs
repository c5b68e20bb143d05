//! What every reconcile shares: the API client, the event recorder, the
//! metrics and the operator's configuration.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

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
