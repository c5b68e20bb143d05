//! The pod runner: stands in for the kubelet on the kwok nodes.
//!
//! kwok keeps the fake nodes Ready but runs no pods; the runner watches
//! pods bound to fake nodes and runs each one's container as a host
//! process: the image maps to a program built from this workspace
//! ([`RunnerConfig::images`]), the pod's env, Secrets, ConfigMaps and
//! service-account token are written to a directory of its own, paths under
//! the container's mounts are rewritten to that directory, and the pod's
//! status follows the process (Running, then Succeeded/Failed with exit
//! code and termination message). Deleting the pod kills the process.
//!
//! In-cluster credentials: kube-rs and client-go read the token and CA from
//! the fixed path `/var/run/secrets/kubernetes.io/serviceaccount`, which a
//! host process cannot be given without touching the host. Both prefer a
//! kubeconfig named by `KUBECONFIG` over the in-cluster files, so the
//! runner writes one that authenticates with the pod's own token (a
//! TokenRequest bound to the pod, `tokenFile` so a refreshed file is
//! re-read) and trusts the cluster CA, with the pod's namespace as its
//! default — the same identity a real pod has. `KUBERNETES_SERVICE_HOST`
//! and `KUBERNETES_SERVICE_PORT` point at the loopback apiserver as well.

pub mod plan;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

use crate::cluster::Cluster;
use plan::{
    AfterExit, HostImage, PathMap, PlanError, PodObjects, SERVICE_ACCOUNT_MOUNT,
    TERMINATION_MESSAGE_ENV, VolumeFile,
};

/// How long a process gets between SIGTERM and SIGKILL at most.
const MAX_GRACE: Duration = Duration::from_secs(10);
/// Pause before restarting a container (restartPolicy Always/OnFailure).
const RESTART_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("could not create the runner's directory: {0}")]
    Dir(std::io::Error),
    #[error("could not read the cluster CA {path}: {source}")]
    Ca {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the apiserver URL {0} is not https://127.0.0.1:<port>")]
    ApiUrl(String),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

/// Failures preparing or running one pod; they end up in the pod's status.
#[derive(Debug, thiserror::Error)]
enum PodError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("{what}: {source}")]
    Api { what: String, source: kube::Error },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
}

fn io_error<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> PodError + 'a {
    move |source| PodError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Which host programs stand for which images.
#[derive(Debug, Clone, Default)]
pub struct RunnerConfig {
    /// Keyed by image reference or repository (`ghcr.io/kiln/builder`
    /// matches every tag and digest of it; an exact reference wins).
    pub images: BTreeMap<String, HostImage>,
    /// Only pods in these namespaces are run (all when empty), so tests
    /// sharing a cluster can each have a runner of their own.
    pub namespaces: Vec<String>,
}

impl RunnerConfig {
    /// Maps `image` to a host program used as its entrypoint and for the
    /// given in-image program paths.
    pub fn with_program(
        mut self,
        image: &str,
        program: impl Into<PathBuf>,
        image_paths: &[&str],
    ) -> RunnerConfig {
        let program = program.into();
        self.images.insert(
            image.to_string(),
            HostImage {
                entrypoint: vec![program.display().to_string()],
                programs: image_paths
                    .iter()
                    .map(|path| (path.to_string(), program.clone()))
                    .collect(),
                replace_args: BTreeMap::new(),
                env: BTreeMap::new(),
            },
        );
        self
    }

    /// Sets `key=value` in the environment of `image`'s processes (mapped
    /// before), as the image's `ENV` would.
    pub fn with_env(mut self, image: &str, key: &str, value: &str) -> RunnerConfig {
        if let Some(host) = self.images.get_mut(image) {
            host.env.insert(key.to_string(), value.to_string());
        }
        self
    }

    /// Replaces the argv word `from` with `to` for pods of `image` (mapped
    /// before): e.g. the builder's `--isolation=inplace` with
    /// `--isolation=chroot`, as the process runs on the host.
    pub fn with_replaced_arg(mut self, image: &str, from: &str, to: &str) -> RunnerConfig {
        if let Some(host) = self.images.get_mut(image) {
            host.replace_args.insert(from.to_string(), to.to_string());
        }
        self
    }

    /// Runs only the pods of `namespace` (and of other namespaces added the
    /// same way).
    pub fn in_namespace(mut self, namespace: &str) -> RunnerConfig {
        self.namespaces.push(namespace.to_string());
        self
    }

    /// Maps `image` to host commands run as they are (e.g. `/bin/sh`).
    pub fn with_host_commands(mut self, image: &str) -> RunnerConfig {
        self.images.insert(image.to_string(), HostImage::default());
        self
    }
}

/// Where a pod's files are on the host, for tests to inspect.
#[derive(Debug, Clone)]
pub struct PodFiles {
    pub dir: PathBuf,
    /// stdout and stderr of every run of the container, in order.
    pub log: PathBuf,
    pub termination_message: PathBuf,
    /// The pod's service-account token, when its spec mounts one.
    pub token: Option<PathBuf>,
    /// The kubeconfig handed to the process, when it has a token.
    pub kubeconfig: Option<PathBuf>,
}

struct Shared {
    client: Client,
    config: RunnerConfig,
    api_port: u16,
    ca_pem: Vec<u8>,
    dir: PathBuf,
    /// Running pods by uid: sending `true` asks the pod's task to stop.
    running: Mutex<HashMap<String, watch::Sender<bool>>>,
    /// Every pod the runner has started, by `namespace/name` (latest uid).
    files: Mutex<HashMap<String, PodFiles>>,
    /// Fake nodes by name → architecture label (None: not a kwok node).
    nodes: Mutex<HashMap<String, Option<String>>>,
}

/// A running pod runner; dropping it stops the watch and kills every
/// process it started (their directories go with the runner's).
pub struct Runner {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Runner {
    /// Starts running the pods bound to `cluster`'s fake nodes, on the
    /// current tokio runtime.
    pub async fn start(cluster: &Cluster, config: RunnerConfig) -> Result<Runner, RunnerError> {
        let dir = tempfile::Builder::new()
            .prefix("kiln-e2e-runner-")
            .tempdir()
            .map_err(RunnerError::Dir)?;
        let ca_path = cluster.ca_cert();
        let ca_pem = std::fs::read(&ca_path).map_err(|source| RunnerError::Ca {
            path: ca_path,
            source,
        })?;
        let api_port = cluster
            .api_url()
            .strip_prefix("https://127.0.0.1:")
            .and_then(|port| port.parse().ok())
            .ok_or_else(|| RunnerError::ApiUrl(cluster.api_url().to_string()))?;
        let shared = Arc::new(Shared {
            client: cluster.client().await?,
            config,
            api_port,
            ca_pem,
            dir: dir.path().to_path_buf(),
            running: Mutex::new(HashMap::new()),
            files: Mutex::new(HashMap::new()),
            nodes: Mutex::new(HashMap::new()),
        });
        let task = tokio::spawn(watch_pods(shared.clone()));
        Ok(Runner {
            shared,
            task,
            _dir: dir,
        })
    }

    /// The files of the pod `namespace/name` once the runner has started it.
    pub fn pod_files(&self, namespace: &str, name: &str) -> Option<PodFiles> {
        lock(&self.shared.files)
            .get(&format!("{namespace}/{name}"))
            .cloned()
    }

    /// The pod's log so far (every run of its container), if it ran.
    pub fn log(&self, namespace: &str, name: &str) -> Option<String> {
        let files = self.pod_files(namespace, name)?;
        std::fs::read(files.log)
            .ok()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        // Aborting drops every pod task, and with it each child process
        // (kill_on_drop); the explicit signal also reaches their children.
        for stop in lock(&self.shared.running).values() {
            let _ = stop.send(true);
        }
        self.task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not take the runner's bookkeeping down with it.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn watch_pods(shared: Arc<Shared>) {
    let pods = Api::<Pod>::all(shared.client.clone());
    let stream = watcher(pods, watcher::Config::default().fields("spec.nodeName!="))
        .default_backoff()
        .applied_objects();
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(pod) => handle_pod(&shared, pod).await,
            Err(error) => tracing::warn!(%error, "the runner's pod watch failed; retrying"),
        }
    }
}

async fn node_arch(shared: &Shared, node: &str) -> Option<String> {
    if let Some(known) = lock(&shared.nodes).get(node) {
        return known.clone();
    }
    let fetched = Api::<Node>::all(shared.client.clone()).get_opt(node).await;
    let Ok(Some(node_object)) = fetched else {
        return None;
    };
    let labels = node_object.metadata.labels.unwrap_or_default();
    let arch = (labels.get("type").map(String::as_str) == Some("kwok")).then(|| {
        labels
            .get("kubernetes.io/arch")
            .cloned()
            .unwrap_or_default()
    });
    lock(&shared.nodes).insert(node.to_string(), arch.clone());
    arch
}

async fn handle_pod(shared: &Arc<Shared>, pod: Pod) {
    let Some(node) = pod.spec.as_ref().and_then(|spec| spec.node_name.clone()) else {
        return;
    };
    let namespaces = &shared.config.namespaces;
    if !namespaces.is_empty()
        && !namespaces
            .iter()
            .any(|ns| Some(ns) == pod.metadata.namespace.as_ref())
    {
        return;
    }
    let Some(arch) = node_arch(shared, &node).await else {
        return;
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() {
        let stop = lock(&shared.running).get(&uid).cloned();
        match stop {
            // The pod's task kills the process, then removes the pod.
            Some(stop) => {
                let _ = stop.send(true);
            }
            None => remove_pod(shared, &namespace, &name, &uid).await,
        }
        return;
    }
    let phase = pod
        .status
        .as_ref()
        .and_then(|status| status.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return;
    }
    let stop = {
        let mut running = lock(&shared.running);
        if running.contains_key(&uid) {
            return;
        }
        let (stop, _) = watch::channel(false);
        running.insert(uid.clone(), stop.clone());
        stop
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        let stopped = stop.subscribe();
        run_pod(&shared, &pod, &arch, stopped).await;
        // A finished pod stays known (so its later events start nothing)
        // until it is deleted; a deleted one is forgotten.
        if *stop.borrow() {
            lock(&shared.running).remove(&uid);
        }
    });
}

/// Deletes the pod for good once its process is gone, as the kubelet does
/// after a graceful deletion.
async fn remove_pod(shared: &Shared, namespace: &str, name: &str, uid: &str) {
    let pods = Api::<Pod>::namespaced(shared.client.clone(), namespace);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match pods.delete(name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(response)) if response.code == 404 || response.code == 409 => {}
        Err(error) => tracing::warn!(%error, namespace, name, "removing a deleted pod failed"),
    }
}

/// Everything needed to start the container's process.
struct Prepared {
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    workdir: PathBuf,
    files: PodFiles,
    /// The init containers, run in order to completion before it.
    init: Vec<InitCommand>,
}

/// One init container's process.
struct InitCommand {
    name: String,
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    workdir: PathBuf,
}

/// How long a pod waits for a ConfigMap or Secret its volumes name.
const MISSING_OBJECT_WAIT: Duration = Duration::from_secs(120);

async fn run_pod(shared: &Shared, pod: &Pod, arch: &str, mut stopped: watch::Receiver<bool>) {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let pods = Api::<Pod>::namespaced(shared.client.clone(), &namespace);
    let start_time = now();

    // As the kubelet does, a pod whose volumes name a ConfigMap or Secret
    // not there yet waits for it rather than failing: a new namespace's
    // `kube-root-ca.crt` appears only once the controller manager has
    // published it, which takes seconds on a loaded machine.
    let waiting_since = std::time::Instant::now();
    let prepared = loop {
        match prepare(shared, pod, arch).await {
            Err(PodError::Plan(PlanError::MissingObject { .. }))
                if waiting_since.elapsed() < MISSING_OBJECT_WAIT && !*stopped.borrow() =>
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            result => break result,
        }
    };
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            tracing::warn!(%error, namespace, name, "the runner cannot run this pod");
            let status = terminal_status(
                pod,
                &start_time,
                None,
                "Failed",
                -1,
                "RunnerError",
                &error.to_string(),
                0,
            );
            patch_status(&pods, &name, status).await;
            stop_requested(&mut stopped).await;
            remove_pod(shared, &namespace, &name, &uid).await;
            return;
        }
    };
    lock(&shared.files).insert(format!("{namespace}/{name}"), prepared.files.clone());
    let restart_policy = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.restart_policy.clone());
    let grace = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.termination_grace_period_seconds)
        .map_or(MAX_GRACE, |seconds| {
            Duration::from_secs(seconds.max(0) as u64).min(MAX_GRACE)
        });

    if let Err((reason, message)) = run_init_containers(&prepared, &mut stopped).await {
        let status = terminal_status(pod, &start_time, None, "Failed", 1, &reason, &message, 0);
        patch_status(&pods, &name, status).await;
        stop_requested(&mut stopped).await;
        remove_pod(shared, &namespace, &name, &uid).await;
        return;
    }

    let mut restarts = 0;
    loop {
        let container_start = now();
        let mut child = match spawn(&prepared) {
            Ok(child) => child,
            Err(error) => {
                let status = terminal_status(
                    pod,
                    &start_time,
                    None,
                    "Failed",
                    128,
                    "ContainerCannotRun",
                    &error.to_string(),
                    restarts,
                );
                patch_status(&pods, &name, status).await;
                stop_requested(&mut stopped).await;
                remove_pod(shared, &namespace, &name, &uid).await;
                return;
            }
        };
        let pid = child.id();
        patch_status(
            &pods,
            &name,
            running_status(pod, &start_time, &container_start, pid, restarts),
        )
        .await;

        let exit = tokio::select! {
            exit = child.wait() => Some(exit),
            _ = stop_requested(&mut stopped) => None,
        };
        let Some(exit) = exit else {
            stop_process(&mut child, grace).await;
            remove_pod(shared, &namespace, &name, &uid).await;
            return;
        };
        let code = match exit {
            Ok(status) => exit_code(status),
            Err(error) => {
                tracing::warn!(%error, namespace, name, "waiting for the container failed");
                -1
            }
        };
        let failed = code != 0;
        let file = std::fs::read(&prepared.files.termination_message).unwrap_or_default();
        let log = std::fs::read(&prepared.files.log).unwrap_or_default();
        let policy = pod
            .spec
            .as_ref()
            .and_then(|spec| spec.containers.first())
            .and_then(|container| container.termination_message_policy.clone());
        let message = plan::termination_message(&file, policy.as_deref(), failed, &log);
        match plan::after_exit(restart_policy.as_deref(), code) {
            AfterExit::Finish { phase } => {
                let reason = if failed { "Error" } else { "Completed" };
                let status = terminal_status(
                    pod,
                    &start_time,
                    Some((&container_start, pid)),
                    phase,
                    code,
                    reason,
                    &message,
                    restarts,
                );
                patch_status(&pods, &name, status).await;
                stop_requested(&mut stopped).await;
                remove_pod(shared, &namespace, &name, &uid).await;
                return;
            }
            AfterExit::Restart => {
                restarts += 1;
                tokio::select! {
                    _ = tokio::time::sleep(RESTART_DELAY) => {}
                    _ = stop_requested(&mut stopped) => {
                        remove_pod(shared, &namespace, &name, &uid).await;
                        return;
                    }
                }
            }
        }
    }
}

/// Runs the init containers in order, each to completion, as the kubelet
/// does; the first that fails (or a stop request) ends the pod before its
/// container starts: the reason and message for its status.
async fn run_init_containers(
    prepared: &Prepared,
    stopped: &mut watch::Receiver<bool>,
) -> Result<(), (String, String)> {
    for init in &prepared.init {
        let log_path = prepared.files.dir.join(format!("init-{}.log", init.name));
        let command = Prepared {
            argv: init.argv.clone(),
            env: init.env.clone(),
            workdir: init.workdir.clone(),
            files: PodFiles {
                log: log_path.clone(),
                ..prepared.files.clone()
            },
            init: Vec::new(),
        };
        let mut child = spawn(&command)
            .map_err(|error| ("Init:ContainerCannotRun".to_string(), error.to_string()))?;
        let exit = tokio::select! {
            exit = child.wait() => exit,
            _ = stop_requested(stopped) => {
                stop_process(&mut child, MAX_GRACE).await;
                return Err(("Init:Stopped".to_string(), format!("init container {} stopped", init.name)));
            }
        };
        let code = exit.map(exit_code).unwrap_or(-1);
        if code != 0 {
            let log = std::fs::read(&log_path).unwrap_or_default();
            let tail = String::from_utf8_lossy(&log[log.len().saturating_sub(2048)..]).into_owned();
            return Err((
                "Init:Error".to_string(),
                format!(
                    "init container {} exited with {code}: {}",
                    init.name,
                    tail.trim()
                ),
            ));
        }
    }
    Ok(())
}

/// Resolves once the pod's deletion asks its process to stop (or the runner
/// goes away).
async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    // As a container runtime reports it: 128 + the signal that killed it.
    status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(-1)
}

fn spawn(prepared: &Prepared) -> Result<tokio::process::Child, PodError> {
    let log_path = &prepared.files.log;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(io_error("could not open the pod log", log_path))?;
    let log_err = log
        .try_clone()
        .map_err(io_error("could not open the pod log", log_path))?;
    let (program, args) = prepared.argv.split_first().ok_or_else(|| PodError::Spawn {
        program: String::new(),
        source: std::io::Error::other("empty command"),
    })?;
    tokio::process::Command::new(program)
        .args(args)
        .env_clear()
        .envs(&prepared.env)
        .current_dir(&prepared.workdir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Its own process group, so stopping the pod also stops what the
        // container started; killed with the runner at the latest.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| PodError::Spawn {
            program: program.clone(),
            source,
        })
}

/// SIGTERM to the container's process group, SIGKILL after the grace period.
async fn stop_process(child: &mut tokio::process::Child, grace: Duration) {
    if let Some(pid) = child
        .id()
        .and_then(|pid| rustix::process::Pid::from_raw(pid as i32))
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::TERM);
        if tokio::time::timeout(grace, child.wait()).await.is_ok() {
            return;
        }
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.kill().await;
}

fn now() -> Time {
    Time(Timestamp::now())
}

async fn fetch_objects(shared: &Shared, pod: &Pod) -> Result<PodObjects, PodError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut secret_names = Vec::new();
    let mut config_map_names = Vec::new();
    let spec = pod.spec.as_ref();
    for volume in spec.iter().flat_map(|spec| spec.volumes.iter().flatten()) {
        if let Some(secret) = &volume.secret {
            secret_names.extend(secret.secret_name.clone());
        }
        if let Some(config_map) = &volume.config_map {
            config_map_names.push(config_map.name.clone());
        }
        for source in volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
        {
            if let Some(secret) = &source.secret {
                secret_names.push(secret.name.clone());
            }
            if let Some(config_map) = &source.config_map {
                config_map_names.push(config_map.name.clone());
            }
        }
    }
    for container in spec.iter().flat_map(|spec| spec.containers.iter()) {
        for source in container.env_from.iter().flatten() {
            secret_names.extend(source.secret_ref.as_ref().map(|r| r.name.clone()));
            config_map_names.extend(source.config_map_ref.as_ref().map(|r| r.name.clone()));
        }
        for var in container.env.iter().flatten() {
            let source = var.value_from.as_ref();
            secret_names.extend(
                source
                    .and_then(|s| s.secret_key_ref.as_ref())
                    .map(|r| r.name.clone()),
            );
            config_map_names.extend(
                source
                    .and_then(|s| s.config_map_key_ref.as_ref())
                    .map(|r| r.name.clone()),
            );
        }
    }
    let mut objects = PodObjects::default();
    let secrets = Api::<Secret>::namespaced(shared.client.clone(), &namespace);
    for name in secret_names {
        let secret = secrets
            .get_opt(&name)
            .await
            .map_err(|source| PodError::Api {
                what: format!("reading Secret {namespace}/{name}"),
                source,
            })?;
        if let Some(secret) = secret {
            let mut data: BTreeMap<String, Vec<u8>> = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(key, value)| (key, value.0))
                .collect();
            for (key, value) in secret.string_data.unwrap_or_default() {
                data.insert(key, value.into_bytes());
            }
            objects.secrets.insert(name, data);
        }
    }
    let config_maps = Api::<ConfigMap>::namespaced(shared.client.clone(), &namespace);
    for name in config_map_names {
        let config_map = config_maps
            .get_opt(&name)
            .await
            .map_err(|source| PodError::Api {
                what: format!("reading ConfigMap {namespace}/{name}"),
                source,
            })?;
        if let Some(config_map) = config_map {
            let mut data: BTreeMap<String, Vec<u8>> = config_map
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(key, value)| (key, value.into_bytes()))
                .collect();
            for (key, value) in config_map.binary_data.unwrap_or_default() {
                data.insert(key, value.0);
            }
            objects.config_maps.insert(name, data);
        }
    }
    Ok(objects)
}

async fn request_token(
    shared: &Shared,
    pod: &Pod,
    audience: Option<String>,
    expiration_seconds: Option<i64>,
) -> Result<String, PodError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let account = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.service_account_name.clone())
        .unwrap_or_else(|| "default".to_string());
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience.into_iter().collect(),
            expiration_seconds,
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".to_string()),
                kind: Some("Pod".to_string()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..TokenRequest::default()
    };
    let response = Api::<ServiceAccount>::namespaced(shared.client.clone(), &namespace)
        .create_token_request(&account, &PostParams::default(), &request)
        .await
        .map_err(|source| PodError::Api {
            what: format!("requesting a token for service account {namespace}/{account}"),
            source,
        })?;
    Ok(response
        .status
        .map(|status| status.token)
        .unwrap_or_default())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), PodError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_error("could not create", parent))?;
    }
    std::fs::write(path, bytes).map_err(io_error("could not write", path))
}

/// `container`'s volume mounts as (container path, host path), and
/// whether one of them is the service-account directory.
fn container_mounts(
    container: &k8s_openapi::api::core::v1::Container,
    spec: &k8s_openapi::api::core::v1::PodSpec,
    volumes_dir: &Path,
) -> Result<(Vec<(String, PathBuf)>, bool), PodError> {
    let mut mounts = Vec::new();
    let mut service_account_mounted = false;
    for mount in container.volume_mounts.iter().flatten() {
        if !spec
            .volumes
            .iter()
            .flatten()
            .any(|volume| volume.name == mount.name)
        {
            return Err(PlanError::MissingVolume {
                container: container.name.clone(),
                mount: mount.mount_path.clone(),
            }
            .into());
        }
        let mut host = volumes_dir.join(&mount.name);
        if let Some(sub_path) = mount
            .sub_path
            .as_deref()
            .filter(|sub_path| !sub_path.is_empty())
        {
            host = host.join(sub_path);
        }
        service_account_mounted |= mount.mount_path.trim_end_matches('/') == SERVICE_ACCOUNT_MOUNT;
        mounts.push((mount.mount_path.clone(), host));
    }
    Ok((mounts, service_account_mounted))
}

async fn prepare(shared: &Shared, pod: &Pod, arch: &str) -> Result<Prepared, PodError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let init = spec.init_containers.as_ref().map_or(0, Vec::len);
    let [container] = spec.containers.as_slice() else {
        return Err(PlanError::UnsupportedShape {
            pod: format!("{namespace}/{name}"),
            containers: spec.containers.len(),
            init,
        }
        .into());
    };
    let image = plan::host_image(
        &shared.config.images,
        container.image.as_deref().unwrap_or_default(),
    )?;

    let dir = shared
        .dir
        .join(&namespace)
        .join(format!("{name}-{}", uid.get(..8).unwrap_or(&uid)));
    let volumes_dir = dir.join("volumes");
    let home = dir.join("home");
    let tmp = dir.join("tmp");
    for path in [&dir, &volumes_dir, &home, &tmp] {
        std::fs::create_dir_all(path).map_err(io_error("could not create", path))?;
    }

    let objects = fetch_objects(shared, pod).await?;
    let mut token_path = None;
    for volume in spec.volumes.iter().flatten() {
        let volume_dir = volumes_dir.join(&volume.name);
        std::fs::create_dir_all(&volume_dir).map_err(io_error("could not create", &volume_dir))?;
        for file in plan::volume_files(pod, volume, &objects)? {
            match file {
                VolumeFile::Content { path, bytes } => write_file(&volume_dir.join(path), &bytes)?,
                VolumeFile::Token {
                    path,
                    audience,
                    expiration_seconds,
                } => {
                    let token = request_token(shared, pod, audience, expiration_seconds).await?;
                    let host = volume_dir.join(path);
                    write_file(&host, token.as_bytes())?;
                    token_path.get_or_insert(host);
                }
            }
        }
    }

    let (mut mounts, service_account_mounted) = container_mounts(container, &spec, &volumes_dir)?;
    let termination_message = dir.join("termination-log");
    write_file(&termination_message, b"")?;
    let termination_path = container
        .termination_message_path
        .clone()
        .unwrap_or_else(|| plan::DEFAULT_TERMINATION_MESSAGE_PATH.to_string());
    mounts.push((termination_path, termination_message.clone()));
    let paths = PathMap::new(mounts);

    let mut env = plan::container_env(pod, container, &objects)?;
    for value in env.values_mut() {
        *value = paths.translate(value);
    }
    let argv = plan::container_argv(container, image, &env, &paths)?;

    // What a container gets from its runtime and the kubelet.
    let mut base = BTreeMap::from([
        (
            "PATH".to_string(),
            std::env::var("PATH").unwrap_or_default(),
        ),
        ("HOME".to_string(), home.display().to_string()),
        ("TMPDIR".to_string(), tmp.display().to_string()),
        ("HOSTNAME".to_string(), name.clone()),
        (
            "KUBERNETES_SERVICE_HOST".to_string(),
            "127.0.0.1".to_string(),
        ),
        (
            "KUBERNETES_SERVICE_PORT".to_string(),
            shared.api_port.to_string(),
        ),
        (
            TERMINATION_MESSAGE_ENV.to_string(),
            termination_message.display().to_string(),
        ),
    ]);
    base.extend(image.env.clone());
    // What every container of the pod gets (init containers too).
    let runtime_env = base.clone();
    if let Some((key, value)) = plan::emulation_env(
        Some(arch).filter(|arch| !arch.is_empty()),
        plan::host_arch(),
    ) {
        base.insert(key, value);
    }
    for (mount, host) in container
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|mount| {
            let host = paths.host_path(&mount.mount_path)?;
            Some((mount.mount_path.trim_end_matches('/'), host))
        })
    {
        // The docker config directory convention (kaniko mounts registry
        // credentials at /kaniko/.docker).
        if mount.ends_with("/.docker") {
            base.insert("DOCKER_CONFIG".to_string(), host.display().to_string());
        }
    }

    let mut kubeconfig = None;
    if service_account_mounted && let Some(token) = &token_path {
        let ca = dir.join("ca.crt");
        write_file(&ca, &shared.ca_pem)?;
        let path = dir.join("kubeconfig");
        write_file(
            &path,
            pod_kubeconfig(shared.api_port, &ca, token, &namespace).as_bytes(),
        )?;
        base.insert("KUBECONFIG".to_string(), path.display().to_string());
        kubeconfig = Some(path);
    }
    base.extend(env);

    let workdir = container
        .working_dir
        .as_deref()
        .and_then(|workdir| paths.host_path(workdir))
        .unwrap_or_else(|| dir.clone());
    let mut init = Vec::new();
    for container in spec.init_containers.iter().flatten() {
        let image = plan::host_image(
            &shared.config.images,
            container.image.as_deref().unwrap_or_default(),
        )?;
        let (mounts, _) = container_mounts(container, &spec, &volumes_dir)?;
        let paths = PathMap::new(mounts);
        let mut own = plan::container_env(pod, container, &objects)?;
        for value in own.values_mut() {
            *value = paths.translate(value);
        }
        let argv = plan::container_argv(container, image, &own, &paths)?;
        let mut env: BTreeMap<String, String> = runtime_env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.extend(own);
        init.push(InitCommand {
            name: container.name.clone(),
            argv,
            env,
            workdir: container
                .working_dir
                .as_deref()
                .and_then(|workdir| paths.host_path(workdir))
                .unwrap_or_else(|| dir.clone()),
        });
    }
    Ok(Prepared {
        init,
        argv,
        env: base,
        workdir,
        files: PodFiles {
            log: dir.join("log"),
            dir,
            termination_message,
            token: token_path,
            kubeconfig,
        },
    })
}

/// A kubeconfig with the pod's identity: its token (re-read from the file),
/// the cluster CA, its namespace.
pub fn pod_kubeconfig(api_port: u16, ca: &Path, token: &Path, namespace: &str) -> String {
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "in-cluster", "cluster": {
            "server": format!("https://127.0.0.1:{api_port}"),
            "certificate-authority": ca.display().to_string(),
        } }],
        "users": [{ "name": "pod", "user": { "tokenFile": token.display().to_string() } }],
        "contexts": [{ "name": "in-cluster", "context": {
            "cluster": "in-cluster", "user": "pod", "namespace": namespace,
        } }],
        "current-context": "in-cluster",
    });
    // JSON is YAML, and what every kubeconfig reader accepts.
    config.to_string()
}

fn pod_conditions(ready: bool, reason: Option<&str>, at: &Time) -> serde_json::Value {
    let condition = |type_: &str, status: bool, reason: Option<&str>| {
        let mut value = serde_json::json!({
            "type": type_,
            "status": if status { "True" } else { "False" },
            "lastTransitionTime": at,
        });
        if let Some(reason) = reason {
            value["reason"] = reason.into();
        }
        value
    };
    serde_json::json!([
        condition("PodScheduled", true, None),
        condition("Initialized", true, None),
        condition("PodReadyToStartContainers", true, None),
        condition("ContainersReady", ready, reason),
        condition("Ready", ready, reason),
    ])
}

fn container_base(pod: &Pod) -> (String, String) {
    let container = pod.spec.as_ref().and_then(|spec| spec.containers.first());
    (
        container.map(|c| c.name.clone()).unwrap_or_default(),
        container.and_then(|c| c.image.clone()).unwrap_or_default(),
    )
}

fn running_status(
    pod: &Pod,
    start: &Time,
    container_start: &Time,
    pid: Option<u32>,
    restarts: i32,
) -> serde_json::Value {
    let (name, image) = container_base(pod);
    serde_json::json!({
        "phase": "Running",
        "startTime": start,
        "hostIP": "127.0.0.1",
        "hostIPs": [{ "ip": "127.0.0.1" }],
        "conditions": pod_conditions(true, None, container_start),
        "containerStatuses": [{
            "name": name,
            "image": image,
            "imageID": "",
            "containerID": format!("kiln-e2e://{}", pid.unwrap_or_default()),
            "ready": true,
            "started": true,
            "restartCount": restarts,
            "state": { "running": { "startedAt": container_start } },
        }],
    })
}

#[allow(clippy::too_many_arguments)]
fn terminal_status(
    pod: &Pod,
    start: &Time,
    run: Option<(&Time, Option<u32>)>,
    phase: &str,
    exit_code: i32,
    reason: &str,
    message: &str,
    restarts: i32,
) -> serde_json::Value {
    let (name, image) = container_base(pod);
    let finished = now();
    let started = run.map_or(&finished, |(started, _)| started);
    let mut terminated = serde_json::json!({
        "exitCode": exit_code,
        "reason": reason,
        "startedAt": started,
        "finishedAt": finished,
    });
    if !message.is_empty() {
        terminated["message"] = message.into();
    }
    let mut status = serde_json::json!({
        "phase": phase,
        "startTime": start,
        "hostIP": "127.0.0.1",
        "hostIPs": [{ "ip": "127.0.0.1" }],
        "conditions": pod_conditions(false, Some(if phase == "Succeeded" { "PodCompleted" } else { "PodFailed" }), &finished),
        "containerStatuses": [{
            "name": name,
            "image": image,
            "imageID": "",
            "ready": false,
            "started": false,
            "restartCount": restarts,
            "state": { "terminated": terminated },
        }],
    });
    if let Some((_, pid)) = run {
        status["containerStatuses"][0]["containerID"] =
            format!("kiln-e2e://{}", pid.unwrap_or_default()).into();
    }
    if phase == "Failed" && !message.is_empty() {
        status["message"] = message.into();
        status["reason"] = reason.into();
    }
    status
}

async fn patch_status(pods: &Api<Pod>, name: &str, status: serde_json::Value) {
    let patch = serde_json::json!({ "status": status });
    if let Err(error) = pods
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::warn!(%error, name, "the runner could not patch the pod's status");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn pod_kubeconfig_carries_the_pods_identity() {
        let text = pod_kubeconfig(
            6443,
            Path::new("/d/ca.crt"),
            Path::new("/d/token"),
            "team-a",
        );
        let parsed = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        assert_eq!(parsed.current_context.as_deref(), Some("in-cluster"));
        let cluster = parsed.clusters[0].cluster.clone().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        assert_eq!(cluster.certificate_authority.as_deref(), Some("/d/ca.crt"));
        let user = parsed.auth_infos[0].auth_info.clone().unwrap();
        assert_eq!(user.token_file.as_deref(), Some("/d/token"));
        let context = parsed.contexts[0].context.clone().unwrap();
        assert_eq!(context.namespace.as_deref(), Some("team-a"));
    }

    #[test]
    fn exit_codes_follow_the_container_runtime_convention() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(3 << 8)), 3);
        // Killed by SIGKILL (9).
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(9)), 137);
    }
}
