//! The layer cache (`--cache`, `--cache-repo`, `--cache-ttl`,
//! `--cache-copy-layers`, `--cache-run-layers`, `--arch-cache-repo-suffix`).
//!
//! Each cacheable instruction gets a key ([`key::cache_key`]): a hash of
//! the platform, the key before it (or the base image's digest), the
//! instruction, the build args and environment it sees, and the content
//! of the files it copies. Keys chain on keys, never on layer content, so
//! after a miss the next instruction can still hit. A hit takes the layer
//! and its history entry from the cache image tagged by the key
//! ([`remote`]) without running anything; a miss runs the instruction and
//! pushes the result in the background. The pure parts ([`key`], [`repo`],
//! [`ttl`]) are table-tested; [`LayerCache`] is the I/O around them.

pub mod instruction_form;
pub mod key;
pub mod remote;
pub mod repo;
pub mod ttl;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tracing::{info, warn};

pub use instruction_form::InstructionForm;
pub use key::{BaseOf, KeyInputs, base_key, cache_key};
pub use remote::{CachedStep, Lookup, StepToStore};
pub use repo::{RepoError, cache_repository, check_suffix};

use crate::image::BlobStore;
use crate::platform::Platform;
use crate::registry::{Registry, RegistryError};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache repository {repository} is not a valid image name: {source}")]
    Repository {
        repository: String,
        source: Box<RegistryError>,
    },
    #[error("looking up cache key {key}: {source}")]
    Lookup {
        key: String,
        source: Box<RegistryError>,
    },
    #[error("cache image {reference} is not usable: {message}")]
    Invalid { reference: String, message: String },
    #[error("pushing to cache repository {repository}: {source}")]
    Push {
        repository: String,
        source: Box<RegistryError>,
    },
    #[error("{0}")]
    Other(String),
}

/// What the whole build shares: registry, settings, and whether the cache
/// repository already refused us.
pub struct LayerCache {
    registry: Registry,
    /// The build's blob store: cache configs are written here to be pushed.
    store: BlobStore,
    ttl: Duration,
    /// `--cache-run-layers`.
    pub run_layers: bool,
    /// `--cache-copy-layers`.
    pub copy_layers: bool,
    /// Wall-clock seconds since 1970: cache images are dated and judged
    /// by it, whatever `--reproducible` does to the image.
    now: u64,
    lookups_failed: AtomicBool,
    pushes_refused: Arc<AtomicBool>,
    push_warned: Arc<AtomicBool>,
}

/// Hits and misses of one platform's build.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheCounts {
    pub hits: u64,
    pub misses: u64,
}

/// Settings from the command line.
#[derive(Clone, Debug)]
pub struct CacheSettings {
    pub ttl: Duration,
    pub run_layers: bool,
    pub copy_layers: bool,
    /// Whether new layers are pushed (kaniko's `--no-push-cache` says no).
    pub push: bool,
}

impl LayerCache {
    pub fn new(
        registry: Registry,
        store: BlobStore,
        settings: CacheSettings,
        now: u64,
    ) -> LayerCache {
        LayerCache {
            registry,
            store,
            ttl: settings.ttl,
            run_layers: settings.run_layers,
            copy_layers: settings.copy_layers,
            now,
            lookups_failed: AtomicBool::new(false),
            // With pushes off, every push is skipped as after a refusal.
            pushes_refused: Arc::new(AtomicBool::new(!settings.push)),
            push_warned: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The cache for one platform's build, in `repository`.
    pub fn for_platform(self: &Arc<Self>, repository: String) -> PlatformCache {
        PlatformCache {
            shared: Arc::clone(self),
            repository,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            pushes: Mutex::new(Vec::new()),
        }
    }
}

/// One platform's view of the cache: its repository (per architecture
/// with `--arch-cache-repo-suffix`), its counts and its pending pushes.
pub struct PlatformCache {
    shared: Arc<LayerCache>,
    repository: String,
    hits: AtomicU64,
    misses: AtomicU64,
    pushes: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl PlatformCache {
    pub fn run_layers(&self) -> bool {
        self.shared.run_layers
    }

    pub fn copy_layers(&self) -> bool {
        self.shared.copy_layers
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// Lookups answered from the cache so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// Looks `key` up and counts the answer. A cache repository that
    /// cannot be read is warned about once and then left alone: the
    /// build goes on without the cache, it does not fail.
    pub async fn lookup(&self, key: &str, platform: &Platform, what: &str) -> Option<CachedStep> {
        if self.shared.lookups_failed.load(Ordering::SeqCst) {
            self.misses.fetch_add(1, Ordering::SeqCst);
            return None;
        }
        let found = remote::lookup(
            &self.shared.registry,
            &self.repository,
            key,
            platform,
            self.shared.ttl,
            self.shared.now,
        )
        .await;
        match found {
            Ok(Lookup::Hit(step)) => {
                self.hits.fetch_add(1, Ordering::SeqCst);
                info!("cache hit for {what} (key {})", key::key_tag(key));
                return Some(*step);
            }
            Ok(Lookup::Miss) => info!("cache miss for {what} (key {})", key::key_tag(key)),
            Ok(Lookup::Expired { created }) => info!(
                "cache miss for {what}: the cached layer from {} is older than --cache-ttl={}s",
                created.as_deref().unwrap_or("an unknown time"),
                self.shared.ttl.as_secs()
            ),
            Err(CacheError::Invalid { reference, message }) => {
                warn!("cache image {reference} is not usable, rebuilding the layer: {message}")
            }
            Err(error) => {
                if !self.shared.lookups_failed.swap(true, Ordering::SeqCst) {
                    warn!(
                        "cannot read the cache repository {}: {error}; building without cached layers",
                        self.repository
                    );
                }
            }
        }
        self.misses.fetch_add(1, Ordering::SeqCst);
        None
    }

    /// Pushes `step` to the cache repository in the background; see
    /// [`PlatformCache::finish`].
    pub fn store(&self, step: StepToStore) {
        if self.shared.pushes_refused.load(Ordering::SeqCst) {
            return;
        }
        let registry = self.shared.registry.clone();
        let blobs = self.shared.store.clone();
        let repository = self.repository.clone();
        let refused = Arc::clone(&self.shared.pushes_refused);
        let warned = Arc::clone(&self.shared.push_warned);
        // In the step's span: its lines carry the step's label.
        let span = tracing::Span::current();
        let task = tokio::spawn(tracing::Instrument::instrument(
            async move {
                if refused.load(Ordering::SeqCst) {
                    return;
                }
                match remote::store(&registry, &blobs, &repository, &step).await {
                    Ok(()) => info!(
                        "cached {} as {repository}:{}",
                        step.created_by,
                        key::key_tag(&step.key)
                    ),
                    Err(error) => {
                        let denied = matches!(
                            &error,
                            CacheError::Push { source, .. } if matches!(source.status(), Some(401 | 403))
                        );
                        if denied {
                            refused.store(true, Ordering::SeqCst);
                        }
                        if !warned.swap(true, Ordering::SeqCst) {
                            warn!(
                                "{error}; the build continues, but its layers are not cached (check that the credentials for {repository} allow pushing)"
                            );
                        }
                    }
                }
            },
            span,
        ));
        if let Ok(mut pushes) = self.pushes.lock() {
            pushes.push(task);
        }
    }

    /// Waits for every push started so far and returns the counts. Called
    /// before the build reports success.
    pub async fn finish(&self) -> CacheCounts {
        let pending: Vec<_> = match self.pushes.lock() {
            Ok(mut pushes) => pushes.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for task in pending {
            if let Err(error) = task.await {
                warn!("a cache push task failed: {error}");
            }
        }
        CacheCounts {
            hits: self.hits.load(Ordering::SeqCst),
            misses: self.misses.load(Ordering::SeqCst),
        }
    }
}
