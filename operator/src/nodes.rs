//! Native nodes: whether a cluster has a Ready, schedulable node of a
//! platform's operating system and architecture, as kubelets label them.

use k8s_openapi::api::core::v1::Node;

pub const ARCH_LABEL: &str = "kubernetes.io/arch";
pub const OS_LABEL: &str = "kubernetes.io/os";

/// `linux/arm64/v8` → (`linux`, `arm64`). Nodes carry no variant label, so
/// the variant does not take part in placement.
pub fn os_arch(platform: &str) -> (&str, &str) {
    let mut parts = platform.split('/');
    let os = parts.next().unwrap_or_default();
    let arch = parts.next().unwrap_or_default();
    (os, arch)
}

/// Whether `node` can run a builder pod for `platform` now: labelled with
/// its os and arch, `Ready=True`, and not cordoned.
pub fn is_native_node(node: &Node, platform: &str) -> bool {
    let (os, arch) = os_arch(platform);
    let labels = node.metadata.labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
    if label(OS_LABEL) != Some(os) || label(ARCH_LABEL) != Some(arch) {
        return false;
    }
    if node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        return false;
    }
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// Whether any of `nodes` is a native node of `platform`.
pub fn native_nodes_available<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    platform: &str,
) -> bool {
    nodes.into_iter().any(|n| is_native_node(n, platform))
}

/// The seed guide's message, with what to do next.
pub fn no_native_nodes_message(platform: &str) -> String {
    let (_, arch) = os_arch(platform);
    format!(
        "no native nodes available for architecture {arch}: add {arch} nodes or set requireNativeNodes: false"
    )
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A node as a kubelet would label it.
    pub(crate) fn node(name: &str, arch: &str, ready: bool, unschedulable: bool) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": arch,
                "kubernetes.io/hostname": name,
            }},
            "spec": {"unschedulable": unschedulable},
            "status": {"conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}
            ]},
        }))
        .unwrap()
    }

    #[test]
    fn native_node_table() {
        let table = [
            (node("a", "amd64", true, false), "linux/amd64", true),
            (node("a", "amd64", true, false), "linux/arm64", false),
            (node("b", "arm64", true, false), "linux/arm64/v8", true),
            (node("b", "arm64", false, false), "linux/arm64", false),
            (node("b", "arm64", true, true), "linux/arm64", false),
            (node("c", "amd64", true, false), "windows/amd64", false),
        ];
        for (node, platform, want) in table {
            assert_eq!(
                is_native_node(&node, platform),
                want,
                "{platform} on {:?}",
                node.metadata.labels
            );
        }
        let unlabelled: Node =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "x"}})).unwrap();
        assert!(!is_native_node(&unlabelled, "linux/amd64"));
        assert_eq!(
            no_native_nodes_message("linux/s390x"),
            "no native nodes available for architecture s390x: add s390x nodes or set requireNativeNodes: false"
        );
    }
}
