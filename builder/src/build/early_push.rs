//! Layers pushed while the build goes on: each layer of the image's own
//! stages starts uploading to the destinations the moment it is written,
//! so the push at the end finds most of them there (a HEAD each) instead
//! of uploading them one after the other once every step has run.
//!
//! Only without `--cache`: with it, layers go to the cache repository as
//! they are made and the destinations mount them from there. A failed
//! early upload is not an error: the push at the end uploads what is
//! missing, with its retries and its error messages.

use std::path::PathBuf;
use std::sync::Mutex;

use tokio::task::JoinHandle;
use tracing::debug;

use crate::registry::{Reference, Registry};

pub struct EarlyPush {
    registry: Registry,
    /// The destinations' repositories, each once.
    targets: Vec<Reference>,
    uploads: Mutex<Vec<JoinHandle<()>>>,
}

impl EarlyPush {
    /// For `destinations`; `None` when there is nothing to push to.
    pub fn new(registry: &Registry, destinations: &[String]) -> Option<EarlyPush> {
        // A destination kiln cannot parse is the final push's to report.
        let targets = crate::registry::names::destination_repositories(destinations).ok()?;
        (!targets.is_empty()).then(|| EarlyPush {
            registry: registry.clone(),
            targets,
            uploads: Mutex::new(Vec::new()),
        })
    }

    /// Starts uploading the layer blob at `path` to every destination.
    pub fn layer(&self, digest: &str, size: u64, path: PathBuf) {
        let Ok(mut uploads) = self.uploads.lock() else {
            return;
        };
        for target in &self.targets {
            let (registry, target, digest, path) = (
                self.registry.clone(),
                target.clone(),
                digest.to_string(),
                path.clone(),
            );
            uploads.push(tokio::spawn(async move {
                if let Err(error) = registry
                    .push_blob_from_file(&target, &digest, size, &path, None)
                    .await
                {
                    debug!("early upload of {digest}: {error}; the push will try again");
                }
            }));
        }
    }

    /// Waits for every upload started.
    pub async fn finish(&self) {
        let uploads = match self.uploads.lock() {
            Ok(mut uploads) => std::mem::take(&mut *uploads),
            Err(_) => return,
        };
        for upload in uploads {
            let _ = upload.await;
        }
    }
}
