//! A real Kubernetes control plane on loopback for end-to-end tests.
//!
//! The processes are started, supervised and stopped by
//! `e2e/cluster/up.sh --supervise` (`up.sh`/`down.sh` work by hand as
//! well); this module runs it, reads what it reports and hands out clients. `up.sh` builds the
//! Kubernetes binaries through `scripts/tools.sh` when they are not cached,
//! so a test on a fresh machine builds them rather than being skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Node, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{Condition, await_condition};
use kube::{Client, Config};
use tokio::sync::OnceCell;

/// The fake nodes `up.sh` creates: name and architecture.
pub const DEFAULT_NODES: [(&str, &str); 3] = [
    ("kiln-e2e-amd64-1", "amd64"),
    ("kiln-e2e-amd64-2", "amd64"),
    ("kiln-e2e-arm64-1", "arm64"),
];

/// How long a fake node may take to be reported Ready by kwok.
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the service-account controller may take to create `default`.
const NAMESPACE_READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("could not run {script}: {source}; is bash installed?")]
    Spawn {
        script: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{script} failed ({status}); its last output:\n{output}\nthe component logs are kept in {state_dir}/logs"
    )]
    Script {
        script: PathBuf,
        status: std::process::ExitStatus,
        output: String,
        state_dir: PathBuf,
    },
    #[error("{script} did not report {key} (its output: {output:?}); has the script changed?")]
    MissingOutput {
        script: PathBuf,
        key: &'static str,
        output: String,
    },
    #[error("could not create a state directory for the cluster under {dir}: {source}")]
    StateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("could not read the cluster's kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("could not build a client from kubeconfig {path}: {source}")]
    Client {
        path: PathBuf,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{what} failed against the e2e cluster: {source}")]
    Api { what: String, source: kube::Error },
    #[error("watching for {what} failed: {source}")]
    Watch {
        what: String,
        source: kube::runtime::wait::Error,
    },
    #[error(
        "{what} did not happen within {seconds}s; the component logs are in the cluster's state directory (logs/)"
    )]
    Timeout { what: String, seconds: u64 },
    #[error("the shared e2e cluster could not be started: {0}")]
    Shared(String),
}

/// What `up.sh` prints on stdout once the cluster is usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpReport {
    pub kubeconfig: PathBuf,
    pub api_url: String,
    pub state_dir: PathBuf,
    pub kube_bin: PathBuf,
}

/// A new directory below `parent` that outlives its `TempDir`: the script
/// that supervises the servers started in it removes it.
pub(crate) fn kept_state_dir(parent: &Path, prefix: &str) -> Result<PathBuf, ClusterError> {
    Ok(tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(parent)
        .map_err(|source| ClusterError::StateDir {
            dir: parent.to_path_buf(),
            source,
        })?
        .keep())
}

/// A script's report: `get(KEY)` is the value of its `KEY=value` line
/// (other lines are ignored), an error naming the script and its output
/// when the line is missing or empty. Shared by `up.sh`'s and
/// `real-node.sh`'s parsers.
pub(crate) fn report_values<'a>(
    script: &'a Path,
    stdout: &'a str,
) -> impl Fn(&'static str) -> Result<String, ClusterError> + 'a {
    let values: BTreeMap<&str, &str> = stdout
        .lines()
        .filter_map(|line| line.trim_end().split_once('='))
        .collect();
    move |key| {
        values
            .get(key)
            .filter(|value| !value.is_empty())
            .map(|value| value.to_string())
            .ok_or_else(|| ClusterError::MissingOutput {
                script: script.to_path_buf(),
                key,
                output: stdout.to_string(),
            })
    }
}

/// Parses `up.sh`'s `KEY=value` lines; other lines are ignored.
pub fn parse_up_report(script: &Path, stdout: &str) -> Result<UpReport, ClusterError> {
    let get = report_values(script, stdout);
    Ok(UpReport {
        kubeconfig: PathBuf::from(get("KUBECONFIG")?),
        api_url: get("API_URL")?,
        state_dir: PathBuf::from(get("STATE_DIR")?),
        kube_bin: PathBuf::from(get("KUBE_BIN")?),
    })
}

/// The last `lines` lines of a script's output, for an error message.
pub(crate) fn tail(output: &str, lines: usize) -> String {
    let all: Vec<&str> = output.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub(crate) fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster")
}

/// A running control plane. Stopped (every process killed and reaped, its
/// state directory removed) by [`Cluster::stop`] or on drop; if neither
/// happens — this process is killed, or the cluster lives in a `static` —
/// the supervising `up.sh` stops it when this process exits.
#[derive(Debug)]
pub struct Cluster {
    report: UpReport,
    /// `up.sh --supervise`, the parent of every server; None once stopped.
    supervisor: Option<std::process::Child>,
}

/// Runs `up.sh --supervise STATE_DIR` and reads its report up to `READY`.
fn start_supervisor(
    script: &Path,
    state_dir: &Path,
) -> Result<(std::process::Child, String), ClusterError> {
    let mut command = std::process::Command::new("bash");
    command.arg(script).arg("--supervise").arg(state_dir);
    run_until_ready(command, script, state_dir, &state_dir.join("up.log"))
}

/// Starts `command` (a supervising script), its stderr to `log_path`, and
/// reads its stdout up to a line `READY`: the child and what it printed
/// before. When the script exits first, the error has the log's tail.
pub(crate) fn run_until_ready(
    mut command: std::process::Command,
    script: &Path,
    state_dir: &Path,
    log_path: &Path,
) -> Result<(std::process::Child, String), ClusterError> {
    use std::io::BufRead;
    let spawn_error = |source| ClusterError::Spawn {
        script: script.to_path_buf(),
        source,
    };
    let log = std::fs::File::create(log_path).map_err(spawn_error)?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(spawn_error)?;
    let mut report = String::new();
    let mut ready = false;
    if let Some(stdout) = child.stdout.take() {
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.map_err(spawn_error)?;
            if line == "READY" {
                ready = true;
                break;
            }
            report.push_str(&line);
            report.push('\n');
        }
    }
    if ready {
        let progress = std::fs::read_to_string(log_path).unwrap_or_default();
        tracing::info!("{}", tail(&progress, 1));
        return Ok((child, report));
    }
    let status = child.wait().map_err(spawn_error)?;
    Err(ClusterError::Script {
        script: script.to_path_buf(),
        status,
        output: tail(&std::fs::read_to_string(log_path).unwrap_or_default(), 30),
        state_dir: state_dir.to_path_buf(),
    })
}

/// Stops a supervising script: SIGTERM (it stops what it started), then
/// waits for it. Blocking on purpose: this also runs from Drop, where
/// nothing may be left to a runtime that is shutting down.
pub(crate) fn stop_supervisor(mut supervisor: std::process::Child, what: &str) {
    let pid = i32::try_from(supervisor.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    let signalled = pid.is_some_and(|pid| {
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).is_ok()
    });
    if !signalled {
        let _ = supervisor.kill();
    }
    if let Err(error) = supervisor.wait() {
        tracing::warn!(%error, "waiting for {what} failed");
    }
}

static SHARED: OnceCell<Result<Cluster, String>> = OnceCell::const_new();

impl Cluster {
    /// Starts a cluster of its own with the default fake nodes (two
    /// linux/amd64, one linux/arm64), building the binaries first if they
    /// are not cached.
    pub async fn start() -> Result<Cluster, ClusterError> {
        // The supervising up.sh removes it, also when it outlives this
        // process.
        let state_dir = kept_state_dir(&std::env::temp_dir(), "kiln-e2e-cluster-")?;
        let script = scripts_dir().join("up.sh");
        // Blocking I/O (the bring-up takes seconds, a cold build minutes):
        // kept off the async runtime's threads.
        let started = tokio::task::spawn_blocking({
            let script = script.clone();
            let state_dir = state_dir.clone();
            move || start_supervisor(&script, &state_dir)
        })
        .await
        .map_err(|error| ClusterError::Spawn {
            script: script.clone(),
            source: std::io::Error::other(error),
        })??;
        let (supervisor, stdout) = started;
        let report = parse_up_report(&script, &stdout)?;
        Ok(Cluster {
            report,
            supervisor: Some(supervisor),
        })
    }

    /// One cluster for the whole test binary, started by the first test
    /// that asks and stopped by its supervising `up.sh` when the binary
    /// exits (a static is never dropped). Tests
    /// sharing it should keep to namespaces of their own
    /// ([`Cluster::create_namespace`]) and make a client per test
    /// ([`Cluster::client`]): a client belongs to the runtime that made it.
    pub async fn shared() -> Result<&'static Cluster, ClusterError> {
        let cluster = SHARED
            .get_or_init(|| async { Cluster::start().await.map_err(|error| error.to_string()) })
            .await;
        cluster
            .as_ref()
            .map_err(|message| ClusterError::Shared(message.clone()))
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.report.kubeconfig
    }

    /// `https://127.0.0.1:<port>`.
    pub fn api_url(&self) -> &str {
        &self.report.api_url
    }

    /// Where certificates, logs and etcd's data live while it runs.
    pub fn state_dir(&self) -> &Path {
        &self.report.state_dir
    }

    /// The cluster CA's certificate (also in the kubeconfig).
    pub fn ca_cert(&self) -> PathBuf {
        self.report.state_dir.join("pki/ca.crt")
    }

    /// The directory holding kube-apiserver, kubectl, ….
    pub fn kube_bin(&self) -> &Path {
        &self.report.kube_bin
    }

    pub fn kubectl(&self) -> PathBuf {
        self.report.kube_bin.join("kubectl")
    }

    /// A `kubectl --kubeconfig=<admin>` command, ready for arguments.
    pub fn kubectl_command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(self.kubectl());
        command.arg(format!("--kubeconfig={}", self.kubeconfig().display()));
        command.stdin(Stdio::null());
        command
    }

    /// A client with cluster-admin rights (group `system:masters`).
    pub async fn client(&self) -> Result<Client, ClusterError> {
        // kube is built without a rustls provider of its own; an error only
        // means one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let path = self.kubeconfig().to_path_buf();
        let kubeconfig =
            Kubeconfig::read_from(&path).map_err(|source| ClusterError::Kubeconfig {
                path: path.clone(),
                source,
            })?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|source| ClusterError::Kubeconfig {
                path: path.clone(),
                source,
            })?;
        Client::try_from(config).map_err(|source| ClusterError::Client {
            path,
            source: Box::new(source),
        })
    }

    /// Adds a fake `linux/<arch>` node (labelled as a kubelet labels its
    /// node) and waits until kwok reports it Ready.
    pub async fn add_node(&self, name: &str, arch: &str) -> Result<(), ClusterError> {
        self.add_node_with_os(name, arch, "linux").await
    }

    pub async fn add_node_with_os(
        &self,
        name: &str,
        arch: &str,
        os: &str,
    ) -> Result<(), ClusterError> {
        let script = scripts_dir().join("add-node.sh");
        let output = tokio::process::Command::new("bash")
            .arg(&script)
            .args([
                self.state_dir().as_os_str(),
                name.as_ref(),
                arch.as_ref(),
                os.as_ref(),
            ])
            .env("KUBECTL", self.kubectl())
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|source| ClusterError::Spawn {
                script: script.clone(),
                source,
            })?;
        if !output.status.success() {
            return Err(ClusterError::Script {
                script,
                status: output.status,
                output: tail(&String::from_utf8_lossy(&output.stderr), 30),
                state_dir: self.state_dir().to_path_buf(),
            });
        }
        let client = self.client().await?;
        wait_for(
            Api::<Node>::all(client),
            name,
            is_node_ready(),
            NODE_READY_TIMEOUT,
            &format!("fake node {name} ({os}/{arch}) becoming Ready"),
        )
        .await
    }

    /// Creates a namespace `<prefix>-<n>` and waits for its `default`
    /// service account, without which the apiserver refuses pods.
    pub async fn create_namespace(
        &self,
        client: &Client,
        prefix: &str,
    ) -> Result<String, ClusterError> {
        let namespace = Namespace {
            metadata: ObjectMeta {
                generate_name: Some(format!("{prefix}-")),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let created = Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .map_err(|source| ClusterError::Api {
                what: format!("creating a namespace named {prefix}-…"),
                source,
            })?;
        let name = created.metadata.name.unwrap_or_default();
        wait_for(
            Api::<ServiceAccount>::namespaced(client.clone(), &name),
            "default",
            |account: Option<&ServiceAccount>| account.is_some(),
            NAMESPACE_READY_TIMEOUT,
            &format!("service account default appearing in namespace {name}"),
        )
        .await?;
        Ok(name)
    }

    /// Stops every process of the cluster and removes its state directory.
    pub fn stop(&mut self) {
        if let Some(supervisor) = self.supervisor.take() {
            // SIGTERM makes up.sh stop and reap the servers.
            stop_supervisor(supervisor, "the e2e cluster's up.sh");
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// True once a node's `Ready` condition is `True`.
pub fn is_node_ready() -> impl Condition<Node> {
    |node: Option<&Node>| {
        node.and_then(|node| node.status.as_ref())
            .and_then(|status| status.conditions.as_ref())
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|condition| condition.type_ == "Ready" && condition.status == "True")
            })
    }
}

/// Waits until `condition` holds for the object `name`, at most `timeout`.
pub async fn wait_for<K>(
    api: Api<K>,
    name: &str,
    condition: impl Condition<K>,
    timeout: Duration,
    what: &str,
) -> Result<(), ClusterError>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    match tokio::time::timeout(timeout, await_condition(api, name, condition)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(ClusterError::Watch {
            what: what.to_string(),
            source: error,
        }),
        Err(_) => Err(ClusterError::Timeout {
            what: what.to_string(),
            seconds: timeout.as_secs(),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn up_report_is_read_from_key_value_lines() {
        let script = Path::new("up.sh");
        let cases: [(&str, Result<UpReport, &str>); 4] = [
            (
                "KUBECONFIG=/tmp/s/kubeconfig\nAPI_URL=https://127.0.0.1:40001\nSTATE_DIR=/tmp/s\nKUBE_BIN=/c/bin\n",
                Ok(UpReport {
                    kubeconfig: PathBuf::from("/tmp/s/kubeconfig"),
                    api_url: "https://127.0.0.1:40001".to_string(),
                    state_dir: PathBuf::from("/tmp/s"),
                    kube_bin: PathBuf::from("/c/bin"),
                }),
            ),
            (
                "noise\nKUBE_BIN=/c/bin\nSTATE_DIR=/tmp/s\nAPI_URL=https://127.0.0.1:1\nKUBECONFIG=/k=v\n",
                Ok(UpReport {
                    kubeconfig: PathBuf::from("/k=v"),
                    api_url: "https://127.0.0.1:1".to_string(),
                    state_dir: PathBuf::from("/tmp/s"),
                    kube_bin: PathBuf::from("/c/bin"),
                }),
            ),
            ("KUBECONFIG=/k\nSTATE_DIR=/s\nKUBE_BIN=/b\n", Err("API_URL")),
            (
                "KUBECONFIG=\nAPI_URL=u\nSTATE_DIR=/s\nKUBE_BIN=/b\n",
                Err("KUBECONFIG"),
            ),
        ];
        for (stdout, expected) in cases {
            match (parse_up_report(script, stdout), expected) {
                (Ok(report), Ok(expected)) => assert_eq!(report, expected, "{stdout:?}"),
                (Err(ClusterError::MissingOutput { key, .. }), Err(expected)) => {
                    assert_eq!(key, expected, "{stdout:?}")
                }
                (other, expected) => panic!("{stdout:?}: got {other:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }
}
