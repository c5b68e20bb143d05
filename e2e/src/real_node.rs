//! A real node in the e2e cluster: kubelet, containerd, runc and the CNI
//! bridge plugin running pods as containers, next to the kwok nodes.
//!
//! `e2e/cluster/real-node.sh up --supervise` starts it (see the script for
//! what it keeps off this machine and how `down` undoes the rest); this
//! module runs it, reads its report and stops it. The node has a registry
//! of its own on its bridge ([`RealNode::registry`]), the one place its
//! containerd pulls from and its pods reach: push every image a pod runs
//! there (HTTPS, certificate from the cluster CA).

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;

use crate::cluster::{
    Cluster, ClusterError, is_node_ready, run_until_ready, scripts_dir, stop_supervisor, wait_for,
};

/// How long the node may take to be Ready once the script says so (the
/// script itself waits for Ready; this is the API's view of it).
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// What `real-node.sh up` prints once the node is Ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReport {
    pub node_name: String,
    /// The node's InternalIP: the bridge's address on this machine.
    pub node_ip: String,
    /// `host:port` of the node's registry, on the bridge (HTTPS).
    pub registry: String,
    /// The CA of the registry's certificate (the cluster's).
    pub registry_ca: PathBuf,
    pub bridge: String,
    /// kubelet's cgroup root (one directory in every cgroup hierarchy).
    pub cgroup_root: String,
    pub state_dir: PathBuf,
}

/// Parses `real-node.sh`'s `KEY=value` lines; other lines are ignored.
pub fn parse_node_report(script: &Path, stdout: &str) -> Result<NodeReport, ClusterError> {
    let get = crate::cluster::report_values(script, stdout);
    Ok(NodeReport {
        node_name: get("NODE_NAME")?,
        node_ip: get("NODE_IP")?,
        registry: get("REGISTRY")?,
        registry_ca: PathBuf::from(get("REGISTRY_CA")?),
        bridge: get("BRIDGE")?,
        cgroup_root: get("CGROUP_ROOT")?,
        state_dir: PathBuf::from(get("NODE_STATE")?),
    })
}

/// A running real node. Stopped (its namespace killed, bridge, cgroups,
/// registry and state directory removed) by [`RealNode::stop`] or on drop,
/// or by its supervising script when this process exits.
#[derive(Debug)]
pub struct RealNode {
    report: NodeReport,
    supervisor: Option<std::process::Child>,
}

impl RealNode {
    /// Joins a real node to `cluster`; `kiln` builds its pause image.
    /// Builds kubelet first when it is not cached (scripts/tools.sh).
    pub async fn start(cluster: &Cluster, kiln: &Path) -> Result<RealNode, ClusterError> {
        let parent = cluster
            .state_dir()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir);
        let state_dir = crate::cluster::kept_state_dir(&parent, "kiln-e2e-node-")?;
        let script = scripts_dir().join("real-node.sh");
        let mut command = std::process::Command::new("bash");
        command
            .arg(&script)
            .args(["up", "--supervise"])
            .arg(cluster.state_dir())
            .arg(&state_dir)
            .env("KILN", kiln);
        let log = parent.join(format!(
            "{}.log",
            state_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        let started = tokio::task::spawn_blocking({
            let script = script.clone();
            let state_dir = state_dir.clone();
            move || {
                let result = run_until_ready(command, &script, &state_dir, &log);
                if result.is_ok() {
                    let _ = std::fs::remove_file(&log);
                }
                result
            }
        })
        .await
        .map_err(|error| ClusterError::Spawn {
            script: script.clone(),
            source: std::io::Error::other(error),
        })??;
        let (supervisor, stdout) = started;
        let node = RealNode {
            report: parse_node_report(&script, &stdout)?,
            supervisor: Some(supervisor),
        };
        let client = cluster.client().await?;
        wait_for(
            Api::<Node>::all(client),
            &node.report.node_name,
            is_node_ready(),
            NODE_READY_TIMEOUT,
            &format!("real node {} becoming Ready", node.report.node_name),
        )
        .await?;
        Ok(node)
    }

    pub fn name(&self) -> &str {
        &self.report.node_name
    }

    /// `host:port` of the registry pods and containerd reach (HTTPS, with
    /// a certificate of [`RealNode::registry_ca`]).
    pub fn registry(&self) -> &str {
        &self.report.registry
    }

    pub fn registry_ca(&self) -> &Path {
        &self.report.registry_ca
    }

    /// Builds `dockerfile` with `context` by running `kiln` and pushes it to
    /// the node's registry as `<registry>/<name>`; returns that reference.
    pub async fn push(
        &self,
        kiln: &Path,
        context: &Path,
        dockerfile: &Path,
        name: &str,
    ) -> Result<String, ClusterError> {
        kiln_push(
            kiln,
            self.registry(),
            self.registry_ca(),
            context,
            dockerfile,
            name,
        )
        .await
    }

    /// A busybox image (Debian's static busybox as `/bin/busybox`, its
    /// entrypoint) built by `kiln`, pushed as `kiln-e2e/busybox:1`.
    pub async fn push_busybox(&self, kiln: &Path) -> Result<String, ClusterError> {
        let context = tempfile::tempdir().map_err(|source| ClusterError::StateDir {
            dir: std::env::temp_dir(),
            source,
        })?;
        let write_error = |source| ClusterError::StateDir {
            dir: context.path().to_path_buf(),
            source,
        };
        std::fs::copy("/bin/busybox", context.path().join("busybox")).map_err(write_error)?;
        let dockerfile = context.path().join("Dockerfile");
        std::fs::write(
            &dockerfile,
            "FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\"]\n",
        )
        .map_err(write_error)?;
        self.push(kiln, context.path(), &dockerfile, "kiln-e2e/busybox:1")
            .await
    }

    pub fn report(&self) -> &NodeReport {
        &self.report
    }

    /// Stops the node's kubelet (SIGSTOP) until the returned guard is
    /// dropped (SIGCONT): its containers keep running, but the node stops
    /// renewing its lease and the control plane marks it NotReady after
    /// its grace period, as when a node loses its network.
    pub fn pause_kubelet(&self) -> std::io::Result<PausedKubelet> {
        let config = format!(
            "--config={}",
            self.report.state_dir.join("kubelet.yaml").display()
        );
        let mut found = None;
        for entry in std::fs::read_dir("/proc")? {
            let entry = entry?;
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let mut args = cmdline.split(|b| *b == 0).map(String::from_utf8_lossy);
            let is_kubelet = args
                .next()
                .is_some_and(|program| program.ends_with("/kubelet"));
            if is_kubelet && args.any(|arg| arg == config) {
                found = Some(pid);
                break;
            }
        }
        let pid = found.ok_or_else(|| {
            std::io::Error::other(format!("no kubelet of node {} is running", self.name()))
        })?;
        signal(pid, "STOP")?;
        Ok(PausedKubelet { pid })
    }

    /// Stops the node and waits until `down` is done.
    pub fn stop(&mut self) {
        if let Some(supervisor) = self.supervisor.take() {
            stop_supervisor(supervisor, "the real node's real-node.sh");
        }
    }
}

/// A kubelet stopped by [`RealNode::pause_kubelet`]; continued on drop.
#[must_use = "the kubelet continues when this is dropped"]
pub struct PausedKubelet {
    pid: u32,
}

impl Drop for PausedKubelet {
    fn drop(&mut self) {
        let _ = signal(self.pid, "CONT");
    }
}

fn signal(pid: u32, name: &str) -> std::io::Result<()> {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "kill -{name} {pid}: {status}"
        )))
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Builds `dockerfile` with `context` by running `kiln` and pushes it to
/// `registry` (HTTPS, certificate by `ca`) as `<registry>/<name>`; returns
/// that reference.
pub async fn kiln_push(
    kiln: &Path,
    registry: &str,
    ca: &Path,
    context: &Path,
    dockerfile: &Path,
    name: &str,
) -> Result<String, ClusterError> {
    let image = format!("{registry}/{name}");
    let output = tokio::process::Command::new(kiln)
        .arg(format!("--context=dir://{}", context.display()))
        .arg(format!("--dockerfile={}", dockerfile.display()))
        .arg(format!("--destination={image}"))
        .arg(format!(
            "--registry-certificate={registry}={}",
            ca.display()
        ))
        .arg("--reproducible")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| ClusterError::Spawn {
            script: kiln.to_path_buf(),
            source,
        })?;
    if !output.status.success() {
        return Err(ClusterError::Script {
            script: kiln.to_path_buf(),
            status: output.status,
            output: crate::cluster::tail(&String::from_utf8_lossy(&output.stderr), 30),
            state_dir: context.to_path_buf(),
        });
    }
    Ok(image)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn node_report_is_read_from_key_value_lines() {
        let script = Path::new("real-node.sh");
        let out = "NODE_NAME=kiln-e2e-node-0a1b2c3d\nNODE_IP=10.201.7.1\nREGISTRY=10.201.7.1:40000\n\
                   REGISTRY_CA=/tmp/c/pki/ca.crt\n\
                   BRIDGE=kilnbr0a1b2c3d\nCGROUP_ROOT=kiln-e2e-node-0a1b2c3d\nNODE_STATE=/tmp/n\n";
        assert_eq!(
            parse_node_report(script, out).unwrap(),
            NodeReport {
                node_name: "kiln-e2e-node-0a1b2c3d".into(),
                node_ip: "10.201.7.1".into(),
                registry: "10.201.7.1:40000".into(),
                registry_ca: PathBuf::from("/tmp/c/pki/ca.crt"),
                bridge: "kilnbr0a1b2c3d".into(),
                cgroup_root: "kiln-e2e-node-0a1b2c3d".into(),
                state_dir: PathBuf::from("/tmp/n"),
            }
        );
        let missing = parse_node_report(script, "NODE_NAME=x\n").unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("real-node.sh did not report NODE_IP"),
            "{missing}"
        );
    }
}
