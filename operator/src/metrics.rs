//! Prometheus metrics of the operator, served on `/metrics`.

use std::sync::OnceLock;

use kiln_crds::{MultiArchBuild, Phase};
use kube::runtime::reflector::Store;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `succeeded` or `failed`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlatformLabels {
    pub platform: String,
    /// `succeeded` or `failed`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `multiarchbuild` or `buildrequest`.
    pub controller: String,
}

fn seconds_histogram(start: f64) -> Histogram {
    Histogram::new(exponential_buckets(start, 2.0, 14))
}

/// Labels of a failed reconcile: the controller and what failed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `multiarchbuild` or `buildrequest`.
    pub controller: String,
    /// [`crate::context::Error::metric_label`].
    pub reason: String,
    /// `true` when trying again can succeed without anyone's help.
    pub transient: String,
}

/// Every metric the operator exports.
pub struct Metrics {
    pub builds: Family<ResultLabels, Counter>,
    pub platform_build_seconds: Family<PlatformLabels, Histogram>,
    pub index_publish_seconds: Histogram,
    pub reconcile_seconds: Family<ControllerLabels, Histogram>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub builds_in_flight: Gauge,
    /// The MultiArchBuilds the gauge counts, set once the controllers run.
    builds_store: OnceLock<Store<MultiArchBuild>>,
    pub registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let builds = Family::<ResultLabels, Counter>::default();
        let platform_build_seconds =
            Family::<PlatformLabels, Histogram>::new_with_constructor(|| seconds_histogram(1.0));
        let index_publish_seconds = seconds_histogram(0.05);
        let reconcile_seconds = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            seconds_histogram(0.001)
        });
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let builds_in_flight = Gauge::default();

        let mut registry = Registry::with_prefix("kiln");
        registry.register(
            "builds",
            "MultiArchBuilds finished, by result",
            builds.clone(),
        );
        registry.register(
            "platform_build_duration_seconds",
            "Wall time of one platform's build, first attempt to last",
            platform_build_seconds.clone(),
        );
        registry.register(
            "index_publish_duration_seconds",
            "Time to verify the platform images and push the index",
            index_publish_seconds.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time of one reconcile",
            reconcile_seconds.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that ended in an error",
            reconcile_errors.clone(),
        );
        registry.register(
            "builds_in_flight",
            "MultiArchBuilds neither succeeded nor failed",
            builds_in_flight.clone(),
        );
        Metrics {
            builds,
            platform_build_seconds,
            index_publish_seconds,
            reconcile_seconds,
            reconcile_errors,
            builds_in_flight,
            builds_store: OnceLock::new(),
            registry,
        }
    }
}

impl Metrics {
    /// Counts `builds_in_flight` from `store` from now on (a second call
    /// keeps the first store).
    pub fn count_in_flight_from(&self, store: Store<MultiArchBuild>) {
        let _ = self.builds_store.set(store);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        if let Some(store) = self.builds_store.get() {
            self.builds_in_flight
                .set(in_flight(store.state().iter().map(|b| &**b)));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn reconcile_error(&self, controller: &str, error: &crate::context::Error) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                controller: controller.to_owned(),
                reason: error.metric_label().to_owned(),
                transient: error.is_transient().to_string(),
            })
            .inc();
    }
}

/// How many of `builds` are neither succeeded nor failed. A deleted build
/// is not among them: it left the store with its watch's delete event.
pub fn in_flight<'a>(builds: impl IntoIterator<Item = &'a MultiArchBuild>) -> i64 {
    let running = builds
        .into_iter()
        .filter(|b| {
            !b.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(Phase::is_terminal)
        })
        .count();
    i64::try_from(running).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::test_objects::multi_arch_build;
    use kiln_crds::MultiArchBuildStatus;
    use kube::runtime::{reflector, watcher};

    fn with_phase(name: &str, phase: Option<Phase>) -> MultiArchBuild {
        let mut build = multi_arch_build(name, &["linux/amd64", "linux/arm64"], 1);
        build.status = phase.map(|phase| MultiArchBuildStatus {
            phase: Some(phase),
            ..MultiArchBuildStatus::default()
        });
        build
    }

    #[test]
    fn in_flight_counts_the_store_and_forgets_a_build_deleted_mid_flight() {
        let (store, mut writer) = reflector::store::<MultiArchBuild>();
        let metrics = Metrics::default();
        metrics.count_in_flight_from(store);
        for build in [
            with_phase("new", None),
            with_phase("building", Some(Phase::Building)),
            with_phase("done", Some(Phase::Succeeded)),
            with_phase("broken", Some(Phase::Failed)),
        ] {
            writer.apply_watcher_event(&watcher::Event::Apply(build));
        }
        assert!(metrics.encode().contains("kiln_builds_in_flight 2\n"));
        // Deleted while building: the watch's delete takes it out.
        writer.apply_watcher_event(&watcher::Event::Delete(with_phase(
            "building",
            Some(Phase::Building),
        )));
        assert!(metrics.encode().contains("kiln_builds_in_flight 1\n"));
        writer.apply_watcher_event(&watcher::Event::Apply(with_phase(
            "new",
            Some(Phase::Succeeded),
        )));
        assert!(metrics.encode().contains("kiln_builds_in_flight 0\n"));
    }

    #[test]
    fn exposition_names_every_metric() {
        let metrics = Metrics::default();
        metrics.builds_in_flight.set(1);
        metrics
            .builds
            .get_or_create(&ResultLabels {
                result: "succeeded".into(),
            })
            .inc();
        metrics.reconcile_error(
            "buildrequest",
            &crate::context::Error::NoNamespace("app-linux-arm64-g1".into()),
        );
        metrics
            .platform_build_seconds
            .get_or_create(&PlatformLabels {
                platform: "linux/arm64".into(),
                result: "succeeded".into(),
            })
            .observe(42.0);
        metrics
            .reconcile_seconds
            .get_or_create(&ControllerLabels {
                controller: "multiarchbuild".into(),
            })
            .observe(0.002);
        metrics.index_publish_seconds.observe(0.3);
        let text = metrics.encode();
        for line in [
            "kiln_builds_in_flight 1",
            "kiln_builds_total{result=\"succeeded\"} 1",
            "kiln_reconcile_errors_total{controller=\"buildrequest\",reason=\"no_namespace\",transient=\"false\"} 1",
            "# TYPE kiln_index_publish_duration_seconds histogram",
            "kiln_platform_build_duration_seconds_count{platform=\"linux/arm64\",result=\"succeeded\"} 1",
            "kiln_index_publish_duration_seconds_count 1",
            "# TYPE kiln_reconcile_duration_seconds histogram",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
