//! Prometheus metrics of the operator, served on `/metrics`.

use std::collections::BTreeSet;
use std::sync::Mutex;

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

/// Every metric the operator exports.
pub struct Metrics {
    pub builds: Family<ResultLabels, Counter>,
    pub platform_build_seconds: Family<PlatformLabels, Histogram>,
    pub index_publish_seconds: Histogram,
    pub reconcile_seconds: Family<ControllerLabels, Histogram>,
    pub reconcile_errors: Family<ControllerLabels, Counter>,
    pub builds_in_flight: Gauge,
    in_flight: Mutex<BTreeSet<String>>,
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
        let reconcile_errors = Family::<ControllerLabels, Counter>::default();
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
            in_flight: Mutex::new(BTreeSet::new()),
            registry,
        }
    }
}

impl Metrics {
    /// Records whether the build `key` (namespace/name) is in flight.
    pub fn set_in_flight(&self, key: &str, in_flight: bool) {
        let mut set = self
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if in_flight {
            set.insert(key.to_owned());
        } else {
            set.remove(key);
        }
        self.builds_in_flight.set(set.len() as i64);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn reconcile_error(&self, controller: &str) {
        self.reconcile_errors
            .get_or_create(&ControllerLabels {
                controller: controller.to_owned(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_metric() {
        let metrics = Metrics::default();
        metrics.set_in_flight("ns/a", true);
        metrics.set_in_flight("ns/b", true);
        metrics.set_in_flight("ns/a", false);
        metrics
            .builds
            .get_or_create(&ResultLabels {
                result: "succeeded".into(),
            })
            .inc();
        metrics.reconcile_error("buildrequest");
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
            "kiln_reconcile_errors_total{controller=\"buildrequest\"} 1",
            "# TYPE kiln_index_publish_duration_seconds histogram",
            "kiln_platform_build_duration_seconds_count{platform=\"linux/arm64\",result=\"succeeded\"} 1",
            "kiln_index_publish_duration_seconds_count 1",
            "# TYPE kiln_reconcile_duration_seconds histogram",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
