//! The real node: kubelet (built from the Go module proxy), Debian's
//! containerd, runc and CNI plugins joined to a control plane of this
//! binary's own (`e2e/cluster/real-node.sh`), running pods as containers
//! from images kiln built and pushed to the node's registry.
//!
//! Needs root (namespaces, mounts, a bridge, cgroups), as CI runs. The
//! machine is left as it was: the test reads the kernel settings kubelet
//! would change, the iptables rules, links, cgroups, mounts and processes
//! that could belong to the node before and after and compares them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kiln_e2e::binaries::workspace_binary;
use kiln_e2e::cluster::{Cluster, wait_for};
use kiln_e2e::real_node::RealNode;
use kube::api::{Api, LogParams, PostParams};

const WAIT: Duration = Duration::from_secs(120);

/// The kernel settings kubelet sets unless they hold its values, and the
/// one the CNI bridge plugin may enable.
const SYSCTLS: [&str; 7] = [
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
];

/// What of this machine a real node could change.
#[derive(Debug, PartialEq, Eq)]
struct HostState {
    sysctls: Vec<(String, String)>,
    /// iptables rules and chains of kubelet, kube-proxy or CNI.
    iptables: BTreeSet<String>,
    /// Links named like the node's bridge, veths of pods.
    links: BTreeSet<String>,
    /// Cgroups named like the node's cgroup root, or kubelet's defaults.
    cgroups: BTreeSet<String>,
    /// Mount points of the node's state, network namespaces, kubelet.
    mounts: BTreeSet<String>,
    /// Processes of kubelet, containerd, its shims, the node's registry or
    /// its containers.
    processes: BTreeSet<String>,
}

impl HostState {
    fn observe() -> HostState {
        let sysctls = SYSCTLS
            .iter()
            .map(|name| {
                let value = std::fs::read_to_string(Path::new("/proc/sys").join(name)).unwrap();
                (name.to_string(), value.trim().to_string())
            })
            .collect();
        let iptables = match std::process::Command::new("iptables-save").output() {
            Ok(out) => String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|line| {
                    ["KUBE", "CNI", "kilnbr", "10.20"]
                        .iter()
                        .any(|word| line.contains(word))
                })
                // Counters change with traffic.
                .map(|line| line.split(" [").next().unwrap_or(line).to_string())
                .collect(),
            Err(_) => BTreeSet::new(),
        };
        let links = String::from_utf8(
            std::process::Command::new("ip")
                .args(["-o", "link", "show"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .filter(|name| name.starts_with("kilnbr") || name.starts_with("veth"))
        .map(str::to_string)
        .collect();
        let mounts_text = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let mut cgroups = BTreeSet::new();
        // Every hierarchy: each v1 controller and the unified one, or
        // /sys/fs/cgroup alone on cgroup v2.
        for hierarchy in mounts_text.lines().filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            matches!(fields.get(2), Some(&"cgroup" | &"cgroup2")).then(|| fields[1].to_string())
        }) {
            for entry in std::fs::read_dir(&hierarchy)
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("kiln-e2e-node-")
                    || name == "kubepods"
                    || name == "kubepods.slice"
                {
                    cgroups.insert(format!("{hierarchy}/{name}"));
                }
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|line| line.split(' ').nth(4).map(str::to_string))
            .filter(|point| {
                point.contains("kiln-e2e-node-")
                    || point.starts_with("/run/netns")
                    || point.starts_with("/var/lib/kubelet")
                    || point.starts_with("/proc/sys/")
            })
            .collect();
        let mut processes = BTreeSet::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            // kubelet, containerd, the shims and the registry name the
            // node's state directory; containers live in its cgroups.
            let cgroup = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
            if cmdline.contains("kiln-e2e-node-") || cgroup.contains("kiln-e2e-node-") {
                processes.insert(cmdline);
            }
        }
        HostState {
            sysctls,
            iptables,
            links,
            cgroups,
            mounts,
            processes,
        }
    }
}

fn phase(pod: Option<&Pod>) -> Option<String> {
    pod?.status.as_ref()?.phase.clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_node_joins_runs_pods_and_leaves_the_machine_as_it_was() {
    let before = HostState::observe();
    let mut cluster = Cluster::start().await.unwrap();
    let kiln = workspace_binary("kiln-builder", "kiln").unwrap();
    let started = Instant::now();
    let mut node = RealNode::start(&cluster, &kiln).await.unwrap();
    eprintln!("real node Ready in {:?}", started.elapsed());
    let client = cluster.client().await.unwrap();

    // Labelled by its kubelet, next to the kwok nodes.
    let nodes = Api::<Node>::all(client.clone());
    let labels = nodes
        .get(node.name())
        .await
        .unwrap()
        .metadata
        .labels
        .unwrap();
    for (key, value) in [
        ("kubernetes.io/arch", "amd64"),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/hostname", node.name()),
        ("kiln.dev/real-node", "true"),
    ] {
        assert_eq!(
            labels.get(key).map(String::as_str),
            Some(value),
            "{labels:?}"
        );
    }
    assert_eq!(
        nodes.list(&Default::default()).await.unwrap().items.len(),
        4
    );

    // A pod as a container: its image from the node's registry, which it
    // reaches over the pod network too; its log through the apiserver's
    // kubelet client.
    let image = node.push_busybox(&kiln).await.unwrap();
    let namespace = cluster
        .create_namespace(&client, "real-node")
        .await
        .unwrap();
    let pods = Api::<Pod>::namespaced(client.clone(), &namespace);
    let script = format!(
        "/bin/busybox echo hello from the real node; /bin/busybox wget -q --no-check-certificate -O- https://{}/v2/; /bin/busybox echo",
        node.registry()
    );
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "hello" },
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": { "kubernetes.io/hostname": node.name() },
            "containers": [{
                "name": "main",
                "image": image,
                "command": ["/bin/busybox", "sh", "-c", script],
            }],
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_for(
        pods.clone(),
        "hello",
        |pod: Option<&Pod>| matches!(phase(pod).as_deref(), Some("Succeeded" | "Failed")),
        WAIT,
        "pod hello finishing on the real node",
    )
    .await
    .unwrap();
    let log = pods.logs("hello", &LogParams::default()).await.unwrap();
    assert_eq!(
        phase(Some(&pods.get("hello").await.unwrap())).as_deref(),
        Some("Succeeded"),
        "{log}"
    );
    assert_eq!(log, "hello from the real node\n{}\n");
    // In-cluster clients reach the apiserver through the kubernetes Service
    // (no kube-proxy: the node's one iptables rule): kubectl, static, in a
    // pod with the service account kubelet mounts.
    let kubectl_context = tempfile::tempdir().unwrap();
    std::fs::copy(cluster.kubectl(), kubectl_context.path().join("kubectl")).unwrap();
    let kubectl_dockerfile = kubectl_context.path().join("Dockerfile");
    std::fs::write(
        &kubectl_dockerfile,
        "FROM scratch\nCOPY kubectl /kubectl\nENTRYPOINT [\"/kubectl\"]\n",
    )
    .unwrap();
    let kubectl_image = node
        .push(
            &kiln,
            kubectl_context.path(),
            &kubectl_dockerfile,
            "kiln-e2e/kubectl:1",
        )
        .await
        .unwrap();
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "api" },
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": { "kubernetes.io/hostname": node.name() },
            "containers": [{
                "name": "main",
                "image": kubectl_image,
                "args": ["get", "--raw", "/version"],
            }],
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_for(
        pods.clone(),
        "api",
        |pod: Option<&Pod>| matches!(phase(pod).as_deref(), Some("Succeeded" | "Failed")),
        WAIT,
        "pod api finishing on the real node",
    )
    .await
    .unwrap();
    let log = pods.logs("api", &LogParams::default()).await.unwrap();
    assert!(log.contains("\"gitVersion\": \"v1.34.2\""), "{log}");

    // kubectl exec: the apiserver's kubelet client, containerd's streams.
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "sleeper" },
        "spec": {
            "nodeSelector": { "kubernetes.io/hostname": node.name() },
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "main",
                "image": image,
                "args": ["sleep", "600"],
            }],
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_for(
        pods.clone(),
        "sleeper",
        |pod: Option<&Pod>| phase(pod).as_deref() == Some("Running"),
        WAIT,
        "pod sleeper running on the real node",
    )
    .await
    .unwrap();
    let exec = cluster
        .kubectl_command()
        .args([
            "exec",
            "-n",
            &namespace,
            "sleeper",
            "--",
            "/bin/busybox",
            "echo",
            "exec-ok",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&exec.stdout),
        "exec-ok\n",
        "{}",
        String::from_utf8_lossy(&exec.stderr)
    );

    // While the node runs, the kernel's settings are this machine's own,
    // and what the comparison below looks for is there to be seen.
    let during = HostState::observe();
    assert_eq!(during.sysctls, before.sysctls);
    let report = node.report();
    assert!(during.links.contains(&report.bridge), "{during:?}");
    assert!(
        during
            .cgroups
            .iter()
            .any(|cgroup| cgroup.ends_with(&format!("/{}", report.cgroup_root))),
        "{during:?}"
    );
    assert!(
        during
            .iptables
            .iter()
            .any(|rule| rule.contains(&report.bridge) && rule.contains("10.0.0.1/32")),
        "{:?}",
        during.iptables
    );
    // kubelet did set the kernel settings it wants: in the shadow files
    // its namespace has over /proc/sys, which started with the kernel's
    // values.
    for (name, want) in [
        ("vm.overcommit_memory", "1"),
        ("vm.panic_on_oom", "0"),
        ("kernel.panic", "10"),
        ("kernel.panic_on_oops", "1"),
        ("kernel.keys.root_maxkeys", "1000000"),
        ("kernel.keys.root_maxbytes", "25000000"),
    ] {
        let shadow = std::fs::read_to_string(report.state_dir.join("sysctl").join(name)).unwrap();
        assert_eq!(shadow.trim(), want, "{name}");
    }
    for program in [
        "kubelet",
        "containerd",
        "docker-registry",
        "/pause",
        "sleep 600",
    ] {
        assert!(
            during
                .processes
                .iter()
                .any(|cmdline| cmdline.contains(program)),
            "{program} in {:?}",
            during.processes
        );
    }

    let stopping = Instant::now();
    let state_dir = node.report().state_dir.clone();
    node.stop();
    eprintln!("real node down in {:?}", stopping.elapsed());
    cluster.stop();
    assert!(!state_dir.exists());
    assert_eq!(HostState::observe(), before);
}
