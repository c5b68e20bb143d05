//! `scheduling.userNamespaces`: whether a builder pod runs in a user
//! namespace of its own (`hostUsers: false`, so that root in the builder is
//! not root on the node), decided from what the operator can observe of the
//! nodes the pod may be scheduled on: their `status.nodeInfo`.
//!
//! A node is taken to support it when its kubelet is 1.33 or later (the
//! `UserNamespacesSupport` feature is on by default from there), its
//! runtime is containerd 2.0 or later, and its kernel is Linux 6.3 or later
//! (idmapped mounts on tmpfs, which the secret and emptyDir volumes are).
//! The OCI runtime (runc 1.2 or later, or crun) is not in `nodeInfo`: a
//! containerd 2 with an older runc passes this check and its pods fail to
//! start, naming the runtime. Other CRI runtimes are not recognised, so
//! `auto` keeps host users on them.

use k8s_openapi::api::core::v1::Node;
use kiln_crds::{SchedulingSpec, UserNamespaces};

use crate::nodes::{self, ARCH_LABEL, OS_LABEL};

/// Oldest versions that run pods with `hostUsers: false`.
const KUBELET: (u64, u64) = (1, 33);
const CONTAINERD: (u64, u64) = (2, 0);
const KERNEL: (u64, u64) = (6, 3);

/// What a builder pod gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// `hostUsers: false`.
    UserNamespace,
    /// Host users (the field unset), and why.
    HostUsers { why: String },
    /// No pod at all: `required`, and some node cannot; what to do.
    Refused { message: String },
}

impl Decision {
    /// The pod's `hostUsers`: `Some(false)` in a user namespace, unset for
    /// host users. `required` never runs a builder with host users: a pod
    /// rendered after a refusal (a retry once support was lost) gets a
    /// user namespace too, and fails to start where there is none.
    pub fn host_users(&self) -> Option<bool> {
        match self {
            Decision::UserNamespace | Decision::Refused { .. } => Some(false),
            Decision::HostUsers { .. } => None,
        }
    }
}

/// `major.minor` at the start of `text` (after an optional `v`).
fn major_minor(text: &str) -> Option<(u64, u64)> {
    let text = text.strip_prefix('v').unwrap_or(text);
    let mut parts = text.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn at_least(version: Option<(u64, u64)>, wanted: (u64, u64)) -> bool {
    version.is_some_and(|v| v >= wanted)
}

/// Why `node` cannot run a pod in a user namespace, or `None` when it can.
pub fn unsupported_because(node: &Node) -> Option<String> {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let info = node.status.as_ref().and_then(|s| s.node_info.as_ref());
    let Some(info) = info else {
        return Some(format!("node {name} reports no nodeInfo"));
    };
    let mut missing = Vec::new();
    if !at_least(major_minor(&info.kubelet_version), KUBELET) {
        missing.push(format!(
            "kubelet {} (needs {}.{} or later)",
            info.kubelet_version, KUBELET.0, KUBELET.1
        ));
    }
    match info.container_runtime_version.split_once("://") {
        Some(("containerd", version)) if at_least(major_minor(version), CONTAINERD) => {}
        Some(("containerd", version)) => missing.push(format!(
            "containerd {version} (needs {}.{} or later)",
            CONTAINERD.0, CONTAINERD.1
        )),
        _ => missing.push(format!(
            "runtime {} (kiln recognises containerd {}.{} or later)",
            info.container_runtime_version, CONTAINERD.0, CONTAINERD.1
        )),
    }
    if !at_least(major_minor(&info.kernel_version), KERNEL) {
        missing.push(format!(
            "Linux {} (needs {}.{} or later)",
            info.kernel_version, KERNEL.0, KERNEL.1
        ));
    }
    (!missing.is_empty()).then(|| format!("node {name}: {}", missing.join(", ")))
}

/// Whether a builder pod of `platform` with `scheduling` may be scheduled
/// on `node`: its node selector matches (os, the architecture when native
/// nodes are required, and the extra labels), and it is Ready and
/// schedulable.
pub fn may_run_on(node: &Node, platform: &str, scheduling: &SchedulingSpec) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let (os, _) = nodes::os_arch(platform);
    let selector_matches = scheduling
        .node_selector
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v));
    if !selector_matches {
        return false;
    }
    if scheduling.require_native_nodes {
        return nodes::is_native_node(node, platform);
    }
    // Any architecture of the os: the same readiness test with the node's
    // own architecture.
    let arch = labels.get(ARCH_LABEL).cloned().unwrap_or_default();
    labels.get(OS_LABEL).map(String::as_str) == Some(os)
        && nodes::is_native_node(node, &format!("{os}/{arch}"))
}

/// What a builder pod of `platform` gets, given the nodes of the cluster.
pub fn decide<'a>(
    platform: &str,
    scheduling: &SchedulingSpec,
    nodes: impl IntoIterator<Item = &'a Node>,
) -> Decision {
    let mode = scheduling.user_namespaces;
    if mode == UserNamespaces::Disabled {
        return Decision::HostUsers {
            why: "userNamespaces is disabled".to_owned(),
        };
    }
    let candidates: Vec<&Node> = nodes
        .into_iter()
        .filter(|n| may_run_on(n, platform, scheduling))
        .collect();
    let unsupported: Vec<String> = candidates
        .iter()
        .filter_map(|n| unsupported_because(n))
        .collect();
    if !candidates.is_empty() && unsupported.is_empty() {
        return Decision::UserNamespace;
    }
    let why = if candidates.is_empty() {
        format!("no Ready node for the builder pods of {platform} to check")
    } else {
        format!(
            "not every node the builder pods of {platform} may run on supports user namespaces: {}",
            unsupported.join("; ")
        )
    };
    match mode {
        UserNamespaces::Required => Decision::Refused {
            message: format!(
                "userNamespaces is required, but {why}; upgrade those nodes (containerd {}.{}, \
                 runc 1.2, Linux {}.{}, kubelet {}.{} or later), keep builders off them with \
                 scheduling.nodeSelector, or set userNamespaces: auto",
                CONTAINERD.0, CONTAINERD.1, KERNEL.0, KERNEL.1, KUBELET.0, KUBELET.1
            ),
        },
        _ => Decision::HostUsers { why },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn node(name: &str, arch: &str, kubelet: &str, runtime: &str, kernel: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": arch,
                "pool": "builders",
            }},
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "nodeInfo": {
                    "kubeletVersion": kubelet,
                    "containerRuntimeVersion": runtime,
                    "kernelVersion": kernel,
                    "architecture": arch, "bootID": "", "kubeProxyVersion": "",
                    "machineID": "", "operatingSystem": "linux", "osImage": "",
                    "systemUUID": "",
                },
            },
        }))
        .unwrap()
    }

    fn modern(name: &str) -> Node {
        node(
            name,
            "amd64",
            "v1.34.2",
            "containerd://2.1.4",
            "6.8.0-45-generic",
        )
    }

    #[test]
    fn node_support_table() {
        let table = [
            (modern("a"), None),
            (
                node(
                    "b",
                    "amd64",
                    "v1.34.2",
                    "containerd://1.6.20~ds1",
                    "6.1.0-27-amd64",
                ),
                Some(
                    "node b: containerd 1.6.20~ds1 (needs 2.0 or later), Linux 6.1.0-27-amd64 (needs 6.3 or later)",
                ),
            ),
            (
                node("c", "amd64", "v1.32.9", "containerd://2.0.0", "6.3.0"),
                Some("node c: kubelet v1.32.9 (needs 1.33 or later)"),
            ),
            (
                node("d", "amd64", "v1.34.0", "cri-o://1.34.1", "6.12.1"),
                Some("node d: runtime cri-o://1.34.1 (kiln recognises containerd 2.0 or later)"),
            ),
            (
                node("e", "amd64", "v1.34.0", "containerd://v2.0.0-rc.1", "6.10"),
                None,
            ),
            (
                node(
                    "f",
                    "amd64",
                    "v1.34.0",
                    "containerd://2.0.0",
                    "5.15.0-1-generic",
                ),
                Some("node f: Linux 5.15.0-1-generic (needs 6.3 or later)"),
            ),
        ];
        for (node, want) in table {
            assert_eq!(
                unsupported_because(&node).as_deref(),
                want,
                "{:?}",
                node.metadata.name
            );
        }
        let bare: Node =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "x"}})).unwrap();
        assert_eq!(
            unsupported_because(&bare).as_deref(),
            Some("node x reports no nodeInfo")
        );
    }

    fn scheduling(mode: UserNamespaces) -> SchedulingSpec {
        SchedulingSpec {
            user_namespaces: mode,
            ..SchedulingSpec::default()
        }
    }

    #[test]
    fn decision_table() {
        use UserNamespaces::{Auto, Disabled, Required};
        let old = node("old", "amd64", "v1.34.2", "containerd://1.6.20", "6.1.0");
        let old_arm = node(
            "old-arm",
            "arm64",
            "v1.34.2",
            "containerd://1.6.20",
            "6.1.0",
        );
        let refused = "userNamespaces is required, but not every node the builder pods of \
                       linux/amd64 may run on supports user namespaces: node old: containerd \
                       1.6.20 (needs 2.0 or later), Linux 6.1.0 (needs 6.3 or later); upgrade \
                       those nodes (containerd 2.0, runc 1.2, Linux 6.3, kubelet 1.33 or later), \
                       keep builders off them with scheduling.nodeSelector, or set \
                       userNamespaces: auto";
        let old_why = "not every node the builder pods of linux/amd64 may run on supports user \
                       namespaces: node old: containerd 1.6.20 (needs 2.0 or later), Linux 6.1.0 \
                       (needs 6.3 or later)";
        let table: Vec<(UserNamespaces, Vec<Node>, Decision)> = vec![
            (
                Auto,
                vec![modern("a"), modern("b")],
                Decision::UserNamespace,
            ),
            (Required, vec![modern("a")], Decision::UserNamespace),
            (
                Disabled,
                vec![modern("a")],
                Decision::HostUsers {
                    why: "userNamespaces is disabled".into(),
                },
            ),
            (
                Auto,
                vec![modern("a"), old.clone()],
                Decision::HostUsers {
                    why: old_why.into(),
                },
            ),
            (
                Required,
                vec![modern("a"), old.clone()],
                Decision::Refused {
                    message: refused.into(),
                },
            ),
            // Nodes of another architecture do not count.
            (
                Required,
                vec![modern("a"), old_arm],
                Decision::UserNamespace,
            ),
            (
                Auto,
                vec![],
                Decision::HostUsers {
                    why: "no Ready node for the builder pods of linux/amd64 to check".into(),
                },
            ),
        ];
        for (mode, nodes, want) in table {
            let got = decide("linux/amd64", &scheduling(mode), &nodes);
            assert_eq!(got, want, "{mode:?} on {nodes:?}");
        }
    }

    #[test]
    fn the_node_selector_and_require_native_nodes_pick_the_nodes_that_count() {
        let old_arm = node(
            "old-arm",
            "arm64",
            "v1.34.2",
            "containerd://1.6.20",
            "6.1.0",
        );
        let nodes = [modern("a"), old_arm];
        // Without native nodes the pod may land on the arm64 node too.
        let mut any = scheduling(UserNamespaces::Auto);
        any.require_native_nodes = false;
        assert!(matches!(
            decide("linux/amd64", &any, &nodes),
            Decision::HostUsers { .. }
        ));
        // A selector no old node carries leaves only supported ones.
        let mut selected = scheduling(UserNamespaces::Required);
        selected.require_native_nodes = false;
        selected
            .node_selector
            .insert("kubernetes.io/arch".into(), "amd64".into());
        assert_eq!(
            decide("linux/amd64", &selected, &nodes),
            Decision::UserNamespace
        );
        assert_eq!(Decision::UserNamespace.host_users(), Some(false));
        assert_eq!(
            Decision::HostUsers { why: String::new() }.host_users(),
            None
        );
        let refused = Decision::Refused {
            message: String::new(),
        };
        assert_eq!(refused.host_users(), Some(false));
    }
}
