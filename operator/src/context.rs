//! What every reconcile shares: the API client, the event recorder, the
//! metrics, the reflector stores the controllers read the cluster from, the
//! per-object error backoff and the operator's configuration.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use kiln_crds::{BuildRequest, MultiArchBuild};
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::watcher;
use tracing::warn;

use crate::build_request::render::BuilderSettings;
use crate::metrics::Metrics;

/// Shared state of both controllers.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub builder: BuilderSettings,
    /// What the watches have seen: reconciles read the cluster from here,
    /// never by listing.
    pub stores: Stores,
    /// Consecutive failed reconciles per object, for [`error_backoff`].
    pub build_failures: Failures<MultiArchBuild>,
    pub request_failures: Failures<BuildRequest>,
    /// Status writes of this operator not yet seen by the stores.
    pub build_writes: OwnWrites<MultiArchBuild>,
    pub request_writes: OwnWrites<BuildRequest>,
    /// Requeue interval of a build that is running, as a safety net behind
    /// the watches.
    pub resync: Duration,
}

impl Context {
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        builder: BuilderSettings,
        stores: Stores,
    ) -> Context {
        let reporter = Reporter {
            controller: "kiln-operator".into(),
            instance: std::env::var("KILN_POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            builder,
            stores,
            build_failures: Failures::default(),
            request_failures: Failures::default(),
            build_writes: OwnWrites::default(),
            request_writes: OwnWrites::default(),
            resync: Duration::from_secs(300),
        }
    }
}

/// The reflector stores of everything the controllers read. Each is filled
/// by the watch that also triggers the controller (see `run.rs`), and an
/// object reaches its store before the event it triggers is reconciled.
#[derive(Clone)]
pub struct Stores {
    pub builds: Store<MultiArchBuild>,
    pub requests: Store<BuildRequest>,
    /// Jobs of every BuildRequest.
    pub jobs: Store<Job>,
    /// Builder pods only (the label selector of `run.rs`).
    pub pods: Store<Pod>,
    pub nodes: Store<Node>,
    /// Which stores hold their watch's first complete list.
    pub listed: Arc<Listed>,
}

/// Which stores hold a complete list, as a bit set of [`Listed::BUILDS`]
/// and the others, set by the watch streams when the reflector has applied
/// a list's end (see `run.rs`). kube's `Store::wait_until_ready` wakes only
/// the last of several concurrent waiters (its oneshot receiver keeps one
/// waker) and the controllers already wait on their main stores, so
/// reconciles wait on this instead: any number may.
pub struct Listed(tokio::sync::watch::Sender<u8>);

impl Listed {
    pub const BUILDS: u8 = 1;
    pub const REQUESTS: u8 = 2;
    pub const JOBS: u8 = 4;
    pub const PODS: u8 = 8;
    pub const NODES: u8 = 16;
    /// What the BuildRequest controller reads.
    pub const FOR_REQUESTS: u8 = Self::REQUESTS | Self::JOBS | Self::PODS | Self::NODES;
    /// What the MultiArchBuild controller reads.
    pub const FOR_BUILDS: u8 = Self::BUILDS | Self::REQUESTS;

    /// The stores in `which` hold a complete list.
    pub fn mark(&self, which: u8) {
        self.0.send_if_modified(|listed| {
            let before = *listed;
            *listed |= which;
            *listed != before
        });
    }

    /// Waits until every store in `which` holds a complete list.
    pub async fn wait(&self, which: u8) {
        let mut listed = self.0.subscribe();
        // The sender lives in self, so the wait cannot fail.
        let _ = listed.wait_for(|listed| listed & which == which).await;
    }

    /// A stream step marking `which` when an event is the end of a list
    /// (put after the reflector, which applied it to the store first).
    pub fn on_listed<K, E>(
        self: Arc<Self>,
        which: u8,
    ) -> impl FnMut(&Result<watcher::Event<K>, E>) + use<K, E> {
        move |event| {
            if let Ok(watcher::Event::InitDone) = event {
                self.mark(which);
            }
        }
    }
}

/// The writing ends of [`Stores`], for the reflectors.
pub struct Writers {
    pub builds: Writer<MultiArchBuild>,
    pub requests: Writer<BuildRequest>,
    pub jobs: Writer<Job>,
    pub pods: Writer<Pod>,
    pub nodes: Writer<Node>,
}

impl Stores {
    pub fn new() -> (Stores, Writers) {
        let (builds, builds_writer) = reflector::store();
        let (requests, requests_writer) = reflector::store();
        let (jobs, jobs_writer) = reflector::store();
        let (pods, pods_writer) = reflector::store();
        let (nodes, nodes_writer) = reflector::store();
        (
            Stores {
                builds,
                requests,
                jobs,
                pods,
                nodes,
                listed: Arc::new(Listed(tokio::sync::watch::Sender::new(0))),
            },
            Writers {
                builds: builds_writer,
                requests: requests_writer,
                jobs: jobs_writer,
                pods: pods_writer,
                nodes: nodes_writer,
            },
        )
    }
}

/// The first delay after a failed reconcile.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// The shortest delay after an error that needs someone's change: the
/// change is watched and reconciled at once anyway, and an error taken for
/// permanent that was not is still retried within a minute.
pub const BACKOFF_PERMANENT_FIRST: Duration = Duration::from_secs(30);
/// The longest delay: an object that keeps failing is still retried.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// The requeue delay after the `failures`-th consecutive failed reconcile
/// (1-based): one second, doubling, at most five minutes.
pub fn error_backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    BACKOFF_FIRST
        .saturating_mul(1 << doublings)
        .min(BACKOFF_MAX)
}

/// Consecutive failed reconciles of each object of kind `K`. An entry is
/// dropped when the object reconciles cleanly or goes away.
pub struct Failures<K: kube::Resource>(Mutex<HashMap<ObjectRef<K>, u32>>)
where
    K::DynamicType: Eq + Hash;

impl<K: kube::Resource> Default for Failures<K>
where
    K::DynamicType: Eq + Hash,
{
    fn default() -> Self {
        Failures(Mutex::new(HashMap::new()))
    }
}

impl<K> Failures<K>
where
    K: kube::Resource + reflector::Lookup<DynamicType = <K as kube::Resource>::DynamicType> + Clone,
    <K as kube::Resource>::DynamicType: Eq + Hash + Clone + Default,
{
    /// Counts a failed reconcile of `object` and returns the delay before
    /// the next: doubling from one second while the error is transient
    /// (the API server busy, a Secret not there yet); from 30 seconds when
    /// it is not, since only someone's change helps then — and that change,
    /// an edit of the object or of what it names, is watched and reconciled
    /// without waiting for the delay. Entries of objects no longer in
    /// `store` are dropped.
    pub fn failed(&self, object: &K, store: &Store<K>, error: &Error) -> Duration {
        let key = ObjectRef::from_obj(object);
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|k, _| k == &key || store.get(k).is_some());
        let failures = map.entry(key).or_insert(0);
        *failures = failures.saturating_add(1);
        let delay = error_backoff(*failures);
        if error.is_transient() {
            delay
        } else {
            delay.max(BACKOFF_PERMANENT_FIRST).min(BACKOFF_MAX)
        }
    }

    /// A reconcile of `object` succeeded: its next failure starts over.
    pub fn succeeded(&self, object: &K) {
        let key = ObjectRef::from_obj(object);
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
    }

    /// Consecutive failures of `object` so far.
    pub fn count(&self, object: &K) -> u32 {
        let key = ObjectRef::from_obj(object);
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .copied()
            .unwrap_or(0)
    }
}

/// The versions of objects this operator wrote over, until the stores
/// catch up: a reconcile that reads the version it replaced would decide
/// from a status it already changed — creating again what it just created
/// (answered 409) and recording its phase change twice. Skipping it is
/// safe, because the write's own watch event triggers the next reconcile.
pub struct OwnWrites<K: kube::Resource>(Mutex<HashMap<ObjectRef<K>, String>>)
where
    K::DynamicType: Eq + Hash;

impl<K: kube::Resource> Default for OwnWrites<K>
where
    K::DynamicType: Eq + Hash,
{
    fn default() -> Self {
        OwnWrites(Mutex::new(HashMap::new()))
    }
}

/// Past this many remembered writes, entries of objects no longer in the
/// store are dropped (a deleted object's newer version never comes).
const OWN_WRITES_PRUNE: usize = 1024;

impl<K> OwnWrites<K>
where
    K: kube::Resource + reflector::Lookup<DynamicType = <K as kube::Resource>::DynamicType> + Clone,
    <K as kube::Resource>::DynamicType: Eq + Hash + Clone + Default,
{
    /// `read` is the object as the reconcile read it, `written` the API's
    /// answer to its write. A write that changed nothing made no new
    /// version, and no event will come for it: nothing is remembered.
    pub fn wrote(&self, read: &K, written: &K, store: &Store<K>) {
        let (Some(before), Some(after)) = (
            read.meta().resource_version.as_ref(),
            written.meta().resource_version.as_ref(),
        ) else {
            return;
        };
        if before == after {
            return;
        }
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= OWN_WRITES_PRUNE {
            map.retain(|key, _| store.get(key).is_some());
        }
        map.insert(ObjectRef::from_obj(read), before.clone());
    }

    /// Whether `object` is a version this operator has written over.
    pub fn is_stale(&self, object: &K) -> bool {
        let key = ObjectRef::from_obj(object);
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(&key) {
            Some(replaced) if object.meta().resource_version.as_ref() == Some(replaced) => true,
            Some(_) => {
                map.remove(&key);
                false
            }
            None => false,
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
    #[error("registry secret {namespace}/{name}: {problem}")]
    RegistrySecret {
        namespace: String,
        name: String,
        #[source]
        problem: SecretProblem,
    },
    /// The temporary directory the registry credentials are written to
    /// for publishing.
    #[error("creating a directory for the registry credentials: {0}")]
    CredentialsDir(#[source] std::io::Error),
}

/// What is wrong with a build's registry Secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretProblem {
    #[error("{0}")]
    Read(#[source] kube::Error),
    #[error("has no .dockerconfigjson key: create it with kubectl create secret docker-registry")]
    NoDockerConfig,
    #[error("writing it for the registry client: {0}")]
    Write(#[source] std::io::Error),
}

impl Error {
    /// The `reason` label of `kiln_reconcile_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kubernetes_api",
            Error::NoNamespace(_) => "no_namespace",
            Error::RegistrySecret { .. } => "registry_secret",
            Error::CredentialsDir(_) => "credentials_dir",
        }
    }

    /// Whether trying again can succeed without anyone's help: the API
    /// server busy or unreachable, a conflict, a Secret not created yet.
    /// A refusal (forbidden, invalid), an object without a namespace or a
    /// Secret without a docker config needs someone to act.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Kube(error) => kube_transient(error),
            Error::NoNamespace(_) => false,
            Error::RegistrySecret { problem, .. } => match problem {
                // A Secret applied after its build is found on a later try.
                SecretProblem::Read(kube::Error::Api(status)) if status.code == 404 => true,
                SecretProblem::Read(error) => kube_transient(error),
                SecretProblem::NoDockerConfig => false,
                SecretProblem::Write(_) => true,
            },
            Error::CredentialsDir(_) => true,
        }
    }
}

/// Whether the API server's answer (or its absence) may change on its own.
fn kube_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => matches!(status.code, 409 | 429 | 500..=599),
        // No answer at all: connection, TLS, timeouts.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::test_objects::build_request;

    #[test]
    fn backoff_doubles_from_one_second_to_five_minutes() {
        let seconds: Vec<u64> = (1..=12).map(|n| error_backoff(n).as_secs()).collect();
        assert_eq!(seconds, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(error_backoff(u32::MAX), BACKOFF_MAX);
        assert_eq!(error_backoff(0), BACKOFF_FIRST);
    }

    #[test]
    fn failures_are_counted_per_object_reset_on_success_and_dropped_when_gone() {
        let (store, mut writer) = reflector::store::<BuildRequest>();
        let a = build_request("a", "linux/amd64", 0);
        let b = build_request("b", "linux/arm64", 0);
        writer.apply_watcher_event(&watcher::Event::Apply(a.clone()));
        writer.apply_watcher_event(&watcher::Event::Apply(b.clone()));
        let failures = Failures::<BuildRequest>::default();
        let busy = transient_error();
        let delays: Vec<u64> = (0..4)
            .map(|_| failures.failed(&a, &store, &busy).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8]);
        assert_eq!(failures.failed(&b, &store, &busy), Duration::from_secs(1));
        failures.succeeded(&a);
        assert_eq!(failures.count(&a), 0);
        assert_eq!(failures.failed(&a, &store, &busy), Duration::from_secs(1));
        // b is deleted: its entry goes with the next failure of another.
        writer.apply_watcher_event(&watcher::Event::Delete(b.clone()));
        failures.failed(&a, &store, &busy);
        assert_eq!(failures.count(&b), 0);
        assert_eq!(failures.count(&a), 2);
    }

    fn transient_error() -> Error {
        let error = Error::Kube(kube::Error::Api(
            kube::core::Status::failure(
                "the server is currently unable to handle the request",
                "ServiceUnavailable",
            )
            .with_code(503)
            .boxed(),
        ));
        assert!(error.is_transient());
        error
    }

    #[test]
    fn a_version_this_operator_wrote_over_is_stale_until_the_next_one() {
        let (store, _writer) = reflector::store::<BuildRequest>();
        let writes = OwnWrites::<BuildRequest>::default();
        let version = |rv: &str| {
            let mut request = build_request("a", "linux/amd64", 0);
            request.metadata.resource_version = Some(rv.into());
            request
        };
        assert!(!writes.is_stale(&version("1")));
        writes.wrote(&version("1"), &version("2"), &store);
        assert!(
            writes.is_stale(&version("1")),
            "the store has not caught up"
        );
        assert!(writes.is_stale(&version("1")), "still not");
        assert!(!writes.is_stale(&version("2")), "the write's own version");
        assert!(!writes.is_stale(&version("1")), "forgotten once caught up");
        // A write that changed nothing makes no event: never stale.
        writes.wrote(&version("5"), &version("5"), &store);
        assert!(!writes.is_stale(&version("5")));
    }

    #[test]
    fn a_permanent_error_waits_thirty_seconds_or_more() {
        let (store, mut writer) = reflector::store::<BuildRequest>();
        let a = build_request("a", "linux/amd64", 0);
        writer.apply_watcher_event(&watcher::Event::Apply(a.clone()));
        let failures = Failures::<BuildRequest>::default();
        let forbidden = Error::NoNamespace("buildrequest a".into());
        assert!(!forbidden.is_transient());
        let delays: Vec<u64> = (0..8)
            .map(|_| failures.failed(&a, &store, &forbidden).as_secs())
            .collect();
        assert_eq!(delays, [30, 30, 30, 30, 30, 32, 64, 128]);
        // A transient error after them still counts the earlier failures.
        assert_eq!(
            failures.failed(&a, &store, &transient_error()),
            Duration::from_secs(256)
        );
    }
}

#[cfg(test)]
mod listed_tests {
    #![allow(clippy::expect_used)]
    use super::*;

    /// Many waiters, all woken (kube's wait_until_ready wakes only the last).
    #[tokio::test]
    async fn every_waiter_is_woken_when_its_stores_are_listed() {
        let (stores, _writers) = Stores::new();
        let listed = &stores.listed;
        let waiters: Vec<_> = (0..4)
            .map(|i| {
                let listed = Arc::clone(listed);
                let which = if i % 2 == 0 {
                    Listed::FOR_BUILDS
                } else {
                    Listed::FOR_REQUESTS
                };
                tokio::spawn(async move { listed.wait(which).await })
            })
            .collect();
        listed.mark(Listed::BUILDS | Listed::REQUESTS);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let done: Vec<bool> = waiters.iter().map(|w| w.is_finished()).collect();
        assert_eq!(done, [true, false, true, false]);
        listed.mark(Listed::JOBS | Listed::PODS | Listed::NODES);
        for waiter in waiters {
            tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("woken")
                .expect("joined");
        }
    }
}

#[cfg(test)]
mod error_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("refused", "Reason")
                .with_code(code)
                .boxed(),
        )
    }

    fn secret(problem: SecretProblem) -> Error {
        Error::RegistrySecret {
            namespace: "ns".into(),
            name: "creds".into(),
            problem,
        }
    }

    #[test]
    fn errors_say_whether_trying_again_can_help() {
        let table: [(&str, Error, &str, bool); 10] = [
            (
                "api server busy",
                Error::Kube(api(503)),
                "kubernetes_api",
                true,
            ),
            ("throttled", Error::Kube(api(429)), "kubernetes_api", true),
            ("conflict", Error::Kube(api(409)), "kubernetes_api", true),
            ("forbidden", Error::Kube(api(403)), "kubernetes_api", false),
            ("invalid", Error::Kube(api(422)), "kubernetes_api", false),
            (
                "no namespace",
                Error::NoNamespace("b".into()),
                "no_namespace",
                false,
            ),
            (
                "secret not created yet",
                secret(SecretProblem::Read(api(404))),
                "registry_secret",
                true,
            ),
            (
                "secret forbidden",
                secret(SecretProblem::Read(api(403))),
                "registry_secret",
                false,
            ),
            (
                "secret without docker config",
                secret(SecretProblem::NoDockerConfig),
                "registry_secret",
                false,
            ),
            (
                "no directory for the credentials",
                Error::CredentialsDir(std::io::Error::other("disk full")),
                "credentials_dir",
                true,
            ),
        ];
        for (name, error, label, transient) in table {
            assert_eq!(error.metric_label(), label, "{name}");
            assert_eq!(error.is_transient(), transient, "{name}");
        }
    }

    #[test]
    fn a_secret_problem_keeps_its_cause() {
        let error = secret(SecretProblem::Read(api(403)));
        let text = error.to_string();
        assert!(
            text.starts_with("registry secret ns/creds: ") && text.contains("refused"),
            "{text}"
        );
        let cause = std::error::Error::source(&error).unwrap();
        assert!(cause.downcast_ref::<SecretProblem>().is_some());
    }
}
