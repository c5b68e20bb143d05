//! The operator at scale (issue 14): N MultiArchBuilds of linux/amd64 and
//! linux/arm64 created at once on the e2e control plane (kwok nodes; no
//! builder runs), for each operator binary given. Builder results are
//! simulated the way a builder pod leaves them: the BuildRequest's status
//! gets the digest of a platform image that really is in the loopback
//! registry, then the pod turns Succeeded with the digest as its
//! termination message, and Kubernetes' Job controller completes the Job.
//!
//! Printed per operator: the time from each build's creation until both of
//! its Jobs exist (p50/p99/max), the time from each build's last simulated
//! result until its index is published (the MultiArchBuild Succeeded, which
//! the operator writes after the push; also counted from the moment its
//! last BuildRequest was seen Succeeded, the operator's own share), the
//! operator's API requests per build (from kube-client's debug log, one
//! `http.status_code` line per request) and its peak RSS (VmHWM).
//!
//!     bench/operator-scale.sh [--builds N] [LABEL=OPERATOR_BINARY...]
//!
//! The script builds this bench and today's release `kiln-operator` in one
//! cargo invocation (one feature resolution, so neither rebuilds the other)
//! and measures that operator when no binary is named. Name two (an older
//! build and today's) to compare them in one run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kiln_crds::{BuildRequest, MultiArchBuild, Phase, PlatformPhase};
use kiln_e2e::cluster::Cluster;
use kiln_operator::names::BUILD_REQUEST_LABEL;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};

use support::{fixtures, install_crds, registry};

/// Calls to the API server the bench makes at once (creating builds,
/// reporting results), as many clients applying builds would.
const CONCURRENCY: usize = 32;
const PHASE_TIMEOUT: Duration = Duration::from_secs(900);

struct Args {
    builds: usize,
    operators: Vec<(String, PathBuf)>,
}

/// None when run as a test (`cargo test --all-targets` runs benches
/// without `--bench`): the bench starts a cluster and takes minutes.
fn parse_args() -> Option<Args> {
    if !std::env::args().any(|arg| arg == "--bench") {
        return None;
    }
    let mut builds = 500;
    let mut operators = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // Added by `cargo bench`.
            "--bench" => {}
            "--builds" => {
                builds = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--builds takes a number")
            }
            _ => match arg.split_once('=') {
                Some((label, binary)) if !label.is_empty() => {
                    operators.push((label.to_owned(), PathBuf::from(binary)))
                }
                _ => panic!("expected --builds N or LABEL=OPERATOR_BINARY, got {arg:?}"),
            },
        }
    }
    assert!(
        !operators.is_empty(),
        "name at least one operator binary: LABEL=PATH (bench/operator-scale.sh builds today's)"
    );
    Some(Args { builds, operators })
}

/// When each object was first seen in a state, by name.
type Seen = Arc<Mutex<HashMap<String, Instant>>>;

/// A platform image in the registry: what a builder would report for it.
struct PlatformImage {
    digest: String,
    media_type: String,
    size: usize,
}

struct Results {
    label: String,
    builds: usize,
    jobs_after_create: Vec<Duration>,
    all_jobs: Duration,
    index_after_result: Vec<Duration>,
    index_after_request: Vec<Duration>,
    requests: usize,
    peak_rss_kib: u64,
}

#[tokio::main]
async fn main() {
    let Some(args) = parse_args() else {
        eprintln!("operator_scale is a benchmark: run it with bench/operator-scale.sh");
        return;
    };
    let cluster = Cluster::start().await.expect("starting the e2e cluster");
    let client = cluster.client().await.unwrap();
    install_crds(&client).await;
    let registry = registry::TestRegistry::start();
    let fixtures = fixtures::push_busybox_index(registry.host()).await;
    // Destinations are tags of the fixture's repository (its `amd64` and
    // `arm64` tags), where the children the operator checks before
    // publishing already are.
    let repository = format!("{}/busybox", registry.host());
    let images = HashMap::from([
        ("amd64", platform_image(&fixtures.amd64)),
        ("arm64", platform_image(&fixtures.arm64)),
    ]);

    let mut all = Vec::new();
    for (label, binary) in &args.operators {
        eprintln!("{label}: {} builds with {}", args.builds, binary.display());
        let results = measure(
            &cluster,
            &client,
            label,
            binary,
            args.builds,
            &repository,
            &images,
        )
        .await;
        all.push(results);
    }
    println!();
    for results in &all {
        report(results);
    }
}

fn platform_image(image: &fixtures::FixtureImage) -> PlatformImage {
    PlatformImage {
        digest: image.manifest_digest.clone(),
        media_type: image.manifest_media_type.clone(),
        size: image.manifest_bytes.len(),
    }
}

/// The operator as a host process with the admin kubeconfig, logging its
/// API requests; killed when dropped.
struct Operator {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Operator {
    fn start(cluster: &Cluster, binary: &Path, namespace: &str, log: PathBuf) -> Operator {
        let child = tokio::process::Command::new(binary)
            .args([
                "--builder-image=registry.invalid/kiln-bench/builder:1",
                "--builder-image-pull-policy=Never",
                &format!("--watch-namespace={namespace}"),
                "--metrics-bind-address=127.0.0.1:0",
                "--health-probe-bind-address=127.0.0.1:0",
            ])
            .env("KUBECONFIG", cluster.kubeconfig())
            .env("RUST_LOG", "info,kube_client=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("starting the operator");
        Operator { child, log }
    }

    /// API requests so far: kube-client logs one `http.status_code` per
    /// answered request at debug level.
    fn requests(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("http.status_code"))
            .count()
    }

    fn peak_rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("the operator is running");
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }
}

/// Calls `on_object` with every object of `api` as the watch sees it.
fn watch<K>(
    api: Api<K>,
    mut on_object: impl FnMut(&K) + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(event) = events.next().await {
            if let Ok(object) = event {
                on_object(&object);
            }
        }
    })
}

/// Records the first time `key` gives a name for an object of `api`.
fn watch_first_seen<K>(
    api: Api<K>,
    seen: Seen,
    key: impl Fn(&K) -> Option<String> + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    watch(api, move |object| {
        if let Some(name) = key(object) {
            seen.lock()
                .unwrap()
                .entry(name)
                .or_insert_with(Instant::now);
        }
    })
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < PHASE_TIMEOUT,
            "timed out after {PHASE_TIMEOUT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn label_of<'a>(meta: &'a kube::api::ObjectMeta, key: &str) -> Option<&'a String> {
    meta.labels.as_ref().and_then(|labels| labels.get(key))
}

async fn measure(
    cluster: &Cluster,
    client: &kube::Client,
    label: &str,
    binary: &Path,
    n: usize,
    repository: &str,
    images: &HashMap<&str, PlatformImage>,
) -> Results {
    let namespace = cluster
        .create_namespace(client, &format!("bench-{label}"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // KILN_BENCH_LOG_DIR keeps the operator's log (its requests, one line
    // each) for a breakdown.
    let log = match std::env::var_os("KILN_BENCH_LOG_DIR") {
        Some(kept) => PathBuf::from(kept).join(format!("{label}.log")),
        None => dir.path().join("log"),
    };
    let mut operator = Operator::start(cluster, binary, &namespace, log);
    // The operator lists and watches before it acts; builds created
    // earlier are found by that first list, so only a start-up time is
    // waited out here, not measured.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let builds: Api<MultiArchBuild> = Api::namespaced(client.clone(), &namespace);
    let requests: Api<BuildRequest> = Api::namespaced(client.clone(), &namespace);
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);

    let jobs_seen: Seen = Arc::default();
    let requests_built: Seen = Arc::default();
    let published: Seen = Arc::default();
    // BuildRequest name → (pod name, container name, architecture).
    let pods_of: Arc<Mutex<HashMap<String, (String, String, String)>>> = Arc::default();
    let watches = vec![
        watch_first_seen(jobs.clone(), jobs_seen.clone(), |job: &Job| {
            job.metadata.name.clone()
        }),
        watch_first_seen(
            requests.clone(),
            requests_built.clone(),
            |request: &BuildRequest| {
                (request.status.as_ref().and_then(|s| s.phase) == Some(PlatformPhase::Succeeded))
                    .then(|| request.metadata.name.clone())
                    .flatten()
            },
        ),
        watch_first_seen(builds.clone(), published.clone(), |build| {
            (build.status.as_ref().and_then(|s| s.phase) == Some(Phase::Succeeded))
                .then(|| build.metadata.name.clone())
                .flatten()
        }),
        {
            let pods_of = pods_of.clone();
            watch(pods.clone(), move |pod: &Pod| {
                let Some(request) = label_of(&pod.metadata, BUILD_REQUEST_LABEL) else {
                    return;
                };
                let Some(spec) = pod.spec.as_ref() else {
                    return;
                };
                let arch = spec
                    .node_selector
                    .as_ref()
                    .and_then(|selector| selector.get("kubernetes.io/arch"));
                let (Some(name), Some(arch), Some(container)) =
                    (&pod.metadata.name, arch, spec.containers.first())
                else {
                    return;
                };
                pods_of.lock().unwrap().insert(
                    request.clone(),
                    (name.clone(), container.name.clone(), arch.clone()),
                );
            })
        },
    ];

    // Every build created at once (as `kubectl apply` of one file of them
    // would), each timed from the moment it exists.
    let first_create = Instant::now();
    let created: HashMap<String, Instant> = futures::stream::iter(0..n)
        .map(|i| {
            let builds = builds.clone();
            let name = format!("b{i}");
            let build: MultiArchBuild = serde_json::from_value(serde_json::json!({
                "apiVersion": "kiln.dev/v1alpha1",
                "kind": "MultiArchBuild",
                "metadata": {"name": name},
                "spec": {
                    "context": "git://example.invalid/app.git#main",
                    "destinations": [format!("{repository}:{name}")],
                    "platforms": ["linux/amd64", "linux/arm64"],
                    "scheduling": {"resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}},
                },
            }))
            .unwrap();
            async move {
                builds.create(&PostParams::default(), &build).await?;
                Ok::<_, kube::Error>((name, Instant::now()))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await
        .expect("creating the builds");

    let job_count = || jobs_seen.lock().unwrap().len();
    wait_until(&format!("{} Jobs", 2 * n), || job_count() >= 2 * n).await;
    let all_jobs = first_create.elapsed();
    // Jobs and BuildRequests are named after their build, `b<i>-linux-<arch>-…`.
    let per_build = |seen: &HashMap<String, Instant>| -> HashMap<String, Instant> {
        let mut last: HashMap<String, Instant> = HashMap::new();
        for (job, at) in seen {
            let build = job
                .split_once("-linux-")
                .map(|(b, _)| b.to_owned())
                .unwrap();
            let entry = last.entry(build).or_insert(*at);
            *entry = (*entry).max(*at);
        }
        last
    };
    let jobs_by_build = per_build(&jobs_seen.lock().unwrap());
    let jobs_after_create = created
        .iter()
        .map(|(name, at)| jobs_by_build[name].saturating_duration_since(*at))
        .collect();

    wait_until(&format!("{} builder pods", 2 * n), || {
        pods_of.lock().unwrap().len() >= 2 * n
    })
    .await;

    // Each build's two results, reported at once for every build; the
    // build's clock starts when its second result is in.
    let targets: Vec<(String, Vec<(String, (String, String, String))>)> = {
        let pods_of = pods_of.lock().unwrap();
        created
            .keys()
            .map(|build| {
                let platforms = pods_of
                    .iter()
                    .filter(|(request, _)| {
                        request.split_once("-linux-").map(|(b, _)| b) == Some(build.as_str())
                    })
                    .map(|(request, pod)| (request.clone(), pod.clone()))
                    .collect();
                (build.clone(), platforms)
            })
            .collect()
    };
    let results_in: HashMap<String, Instant> = futures::stream::iter(targets)
        .map(|(build, platforms)| {
            let requests = requests.clone();
            let pods = pods.clone();
            async move {
                for (request, (pod, container, arch)) in platforms {
                    let image = &images[arch.as_str()];
                    simulate_builder(
                        &requests, &pods, &request, &pod, &container, image, repository,
                    )
                    .await?;
                }
                Ok::<_, kube::Error>((build, Instant::now()))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await
        .expect("reporting the simulated results");

    wait_until(&format!("{n} published indexes"), || {
        published.lock().unwrap().len() >= n
    })
    .await;
    let published = published.lock().unwrap().clone();
    let built_by_build = per_build(&requests_built.lock().unwrap());
    let index_after_result = results_in
        .iter()
        .map(|(name, at)| published[name].saturating_duration_since(*at))
        .collect();
    let index_after_request = built_by_build
        .iter()
        .map(|(name, at)| published[name].saturating_duration_since(*at))
        .collect();

    // Requests made while settling (status updates after publishing) count.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let requests_made = operator.requests();
    let peak_rss_kib = operator.peak_rss_kib();
    operator.child.kill().await.ok();
    for watch in watches {
        watch.abort();
    }
    // The namespace goes with the cluster at the end of the run.
    Results {
        label: label.to_owned(),
        builds: n,
        jobs_after_create,
        all_jobs,
        index_after_result,
        index_after_request,
        requests: requests_made,
        peak_rss_kib,
    }
}

/// What a builder pod leaves behind: its BuildRequest's status (patched
/// with the builder's own token in a real cluster), then its container's
/// exit with the digest as the termination message.
async fn simulate_builder(
    requests: &Api<BuildRequest>,
    pods: &Api<Pod>,
    request: &str,
    pod: &str,
    container: &str,
    image: &PlatformImage,
    repository: &str,
) -> Result<(), kube::Error> {
    requests
        .patch_status(
            request,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {
                "digest": image.digest,
                "mediaType": image.media_type,
                "size": image.size,
                "imageReference": format!("{repository}@{}", image.digest),
            }})),
        )
        .await?;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    pods.patch_status(
        pod,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"status": {
            "phase": "Succeeded",
            "startTime": now,
            "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now}],
            "containerStatuses": [{
                "name": container,
                "image": "registry.invalid/kiln-bench/builder:1",
                "imageID": "",
                "ready": false,
                "restartCount": 0,
                "state": {"terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "message": image.digest,
                    "startedAt": now,
                    "finishedAt": now,
                }},
            }],
        }})),
    )
    .await?;
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(values: &[Duration]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort();
    format!(
        "p50 {:.3} s, p99 {:.3} s, max {:.3} s",
        percentile(&sorted, 50.0).as_secs_f64(),
        percentile(&sorted, 99.0).as_secs_f64(),
        sorted.last().copied().unwrap_or_default().as_secs_f64()
    )
}

fn report(results: &Results) {
    let n = results.builds;
    println!("{}: {n} MultiArchBuilds × 2 platforms", results.label);
    println!(
        "  both Jobs of a build exist after its creation: {} (target p50 < 0.5 s); all {} Jobs {:.1} s after the first creation",
        summary(&results.jobs_after_create),
        2 * n,
        results.all_jobs.as_secs_f64()
    );
    println!(
        "  index published after the build's last result: {} (target < 1 s)",
        summary(&results.index_after_result)
    );
    println!(
        "    … after its last BuildRequest was seen Succeeded: {}",
        summary(&results.index_after_request)
    );
    println!(
        "  API requests: {} ({:.1} per build, start-up included)",
        results.requests,
        results.requests as f64 / n as f64
    );
    println!(
        "  peak RSS: {:.1} MiB (target ≤ 64 MB)",
        results.peak_rss_kib as f64 / 1024.0
    );
}
