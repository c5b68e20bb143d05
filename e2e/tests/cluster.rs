//! The e2e control plane itself: it comes up from binaries built from
//! source, its fake nodes look like real multi-arch kubelets, and the real
//! scheduler, admission (CRD validation) and garbage collector work.
//!
//! All tests but the tear-down one share one cluster (one bring-up per test
//! binary), each in a namespace of its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kiln_e2e::cluster::{Cluster, DEFAULT_NODES, is_node_ready, wait_for};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams, PostParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::conditions;

const WAIT: Duration = Duration::from_secs(60);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The version scripts/tools.sh pins (and stamps into the binaries).
fn pinned_kubernetes_version() -> String {
    let tools = std::fs::read_to_string(repo_root().join("scripts/tools.sh")).unwrap();
    tools
        .lines()
        .find_map(|line| line.strip_prefix("KUBERNETES_VERSION="))
        .expect("scripts/tools.sh pins KUBERNETES_VERSION")
        .trim()
        .to_string()
}

#[tokio::test]
async fn control_plane_runs_the_pinned_version_built_from_source() {
    let cluster = Cluster::shared().await.unwrap();
    let client = cluster.client().await.unwrap();
    let expected = pinned_kubernetes_version();

    let server = client.apiserver_version().await.unwrap();
    assert_eq!(server.git_version, expected);
    assert_eq!(server.major, "1");
    assert!(
        cluster.api_url().starts_with("https://127.0.0.1:"),
        "{}",
        cluster.api_url()
    );

    let output = cluster
        .kubectl_command()
        .args(["version", "--output=json"])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let versions: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(versions["clientVersion"]["gitVersion"], expected.as_str());
    assert_eq!(versions["serverVersion"]["gitVersion"], expected.as_str());
}

#[tokio::test]
async fn fake_nodes_are_ready_and_labelled_like_kubelets_label_them() {
    let cluster = Cluster::shared().await.unwrap();
    let nodes = Api::<Node>::all(cluster.client().await.unwrap());
    for (name, arch) in DEFAULT_NODES {
        wait_for(nodes.clone(), name, is_node_ready(), WAIT, name)
            .await
            .unwrap();
        let node = nodes.get(name).await.unwrap();
        let labels = node.metadata.labels.clone().unwrap_or_default();
        let label = |key: &str| labels.get(key).map(String::as_str);
        assert_eq!(label("kubernetes.io/arch"), Some(arch), "{name}");
        assert_eq!(label("kubernetes.io/os"), Some("linux"), "{name}");
        assert_eq!(label("kubernetes.io/hostname"), Some(name), "{name}");
        assert_eq!(label("beta.kubernetes.io/arch"), Some(arch), "{name}");
        let info = node.status.unwrap().node_info.unwrap();
        assert_eq!(info.architecture, arch, "{name}");
        assert_eq!(info.operating_system, "linux", "{name}");
        let lease = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(
            cluster.client().await.unwrap(),
            "kube-node-lease",
        );
        // kwok's heartbeat stage renews a lease per node, as a kubelet does.
        wait_for(
            lease,
            name,
            conditions::is_created(),
            WAIT,
            &format!("node lease of {name}"),
        )
        .await
        .unwrap();
    }
    let amd64 = nodes
        .list(&ListParams::default().labels("kubernetes.io/arch=amd64"))
        .await
        .unwrap();
    assert!(amd64.items.len() >= 2, "{} amd64 nodes", amd64.items.len());
}

#[tokio::test]
async fn scheduler_binds_an_arm64_pod_to_the_arm64_node_where_it_stays_pending() {
    let cluster = Cluster::shared().await.unwrap();
    let client = cluster.client().await.unwrap();
    let namespace = cluster.create_namespace(&client, "schedule").await.unwrap();
    let pods = Api::<Pod>::namespaced(client, &namespace);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "wants-arm64" },
        "spec": {
            "nodeSelector": { "kubernetes.io/arch": "arm64" },
            "containers": [{ "name": "main", "image": "registry.invalid/kiln/never-pulled:1" }],
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();

    wait_for(
        pods.clone(),
        "wants-arm64",
        |pod: Option<&Pod>| {
            pod.and_then(|pod| pod.spec.as_ref()?.node_name.as_ref())
                .is_some()
        },
        WAIT,
        "the scheduler binding wants-arm64",
    )
    .await
    .unwrap();
    let bound = pods.get("wants-arm64").await.unwrap();
    assert_eq!(
        bound.spec.unwrap().node_name.as_deref(),
        Some("kiln-e2e-arm64-1")
    );

    // Nothing plays the kubelet here: kwok must not move the pod on.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = pods.get("wants-arm64").await.unwrap().status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert_eq!(status.container_statuses, None);
    let scheduled = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|condition| condition.type_ == "PodScheduled")
        .expect("a PodScheduled condition");
    assert_eq!(scheduled.status, "True");
}

fn multi_arch_build_api(client: kube::Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kiln.dev", "v1alpha1", "MultiArchBuild"),
        "multiarchbuilds",
    );
    Api::namespaced_with(client, namespace, &resource)
}

#[tokio::test]
async fn crds_apply_server_side_and_admission_rejects_a_platform_without_arch() {
    let cluster = Cluster::shared().await.unwrap();
    let client = cluster.client().await.unwrap();
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for file in [
        "multiarchbuilds.kiln.dev.yaml",
        "buildrequests.kiln.dev.yaml",
    ] {
        let text = std::fs::read_to_string(repo_root().join("config/crd").join(file)).unwrap();
        let crd: CustomResourceDefinition = serde_yaml::from_str(&text).unwrap();
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(
            &name,
            &PatchParams::apply("kiln-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
        wait_for(
            crds.clone(),
            &name,
            conditions::is_crd_established(),
            WAIT,
            &name,
        )
        .await
        .unwrap();
    }

    let namespace = cluster
        .create_namespace(&client, "admission")
        .await
        .unwrap();
    let builds = multi_arch_build_api(client, &namespace);
    let sample =
        std::fs::read_to_string(repo_root().join("config/samples/multiarchbuild.yaml")).unwrap();
    let mut build: DynamicObject = serde_yaml::from_str(&sample).unwrap();

    // The sample itself is accepted: the rejection below is the platform's.
    builds.create(&PostParams::default(), &build).await.unwrap();

    build.metadata = ObjectMeta {
        name: Some("no-arch".to_string()),
        ..ObjectMeta::default()
    };
    build.data["spec"]["platforms"] = serde_json::json!(["linux"]);
    let error = builds
        .create(&PostParams::default(), &build)
        .await
        .unwrap_err();
    let kube::Error::Api(response) = error else {
        panic!("expected the apiserver to refuse, got {error:?}");
    };
    assert_eq!(response.code, 422, "{response:?}");
    assert!(
        response
            .message
            .contains("invalid platform format: linux (expected os/arch)"),
        "{}",
        response.message
    );
    let not_found = builds.get_opt("no-arch").await.unwrap();
    assert!(not_found.is_none());
}

#[tokio::test]
async fn deleting_an_owner_garbage_collects_its_dependents() {
    let cluster = Cluster::shared().await.unwrap();
    let client = cluster.client().await.unwrap();
    let namespace = cluster.create_namespace(&client, "gc").await.unwrap();
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), &namespace);
    let secrets = Api::<Secret>::namespaced(client, &namespace);

    let owner = config_maps
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("owner".to_string()),
                    ..ObjectMeta::default()
                },
                ..ConfigMap::default()
            },
        )
        .await
        .unwrap();
    let owned_by = |name: &str| ObjectMeta {
        name: Some(name.to_string()),
        owner_references: Some(vec![OwnerReference {
            api_version: "v1".to_string(),
            kind: "ConfigMap".to_string(),
            name: "owner".to_string(),
            uid: owner.metadata.uid.clone().unwrap(),
            ..OwnerReference::default()
        }]),
        ..ObjectMeta::default()
    };
    let dependent_map = config_maps
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: owned_by("dependent"),
                ..ConfigMap::default()
            },
        )
        .await
        .unwrap();
    let dependent_secret = secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: owned_by("dependent"),
                ..Secret::default()
            },
        )
        .await
        .unwrap();
    let bystander = config_maps
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("bystander".to_string()),
                    ..ObjectMeta::default()
                },
                ..ConfigMap::default()
            },
        )
        .await
        .unwrap();

    config_maps
        .delete("owner", &DeleteParams::background())
        .await
        .unwrap();

    let map_uid = dependent_map.metadata.uid.unwrap();
    let secret_uid = dependent_secret.metadata.uid.unwrap();
    wait_for(
        config_maps.clone(),
        "dependent",
        conditions::is_deleted(&map_uid),
        WAIT,
        "the garbage collector deleting ConfigMap dependent",
    )
    .await
    .unwrap();
    wait_for(
        secrets,
        "dependent",
        conditions::is_deleted(&secret_uid),
        WAIT,
        "the garbage collector deleting Secret dependent",
    )
    .await
    .unwrap();
    let still_there = config_maps.get("bystander").await.unwrap();
    assert_eq!(still_there.metadata.uid, bystander.metadata.uid);
}

#[tokio::test]
async fn a_node_of_a_new_architecture_can_be_added() {
    let cluster = Cluster::shared().await.unwrap();
    cluster.add_node("kiln-e2e-s390x-1", "s390x").await.unwrap();
    let node = Api::<Node>::all(cluster.client().await.unwrap())
        .get("kiln-e2e-s390x-1")
        .await
        .unwrap();
    let labels = node.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("kubernetes.io/arch").map(String::as_str),
        Some("s390x")
    );
    assert_eq!(
        labels.get("kubernetes.io/os").map(String::as_str),
        Some("linux")
    );
    assert_eq!(
        node.status.unwrap().node_info.unwrap().architecture,
        "s390x"
    );
}

/// Pids of what `up.sh` started, from its `pids` file (`name pid` lines).
fn started_pids(state_dir: &Path) -> Vec<(String, u32)> {
    std::fs::read_to_string(state_dir.join("pids"))
        .unwrap()
        .lines()
        .filter_map(|line| {
            let (name, pid) = line.split_once(' ')?;
            Some((name.to_string(), pid.parse().ok()?))
        })
        .collect()
}

/// Running, as opposed to gone or exited but not yet reaped (a zombie).
fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

#[tokio::test]
async fn tear_down_stops_every_process_and_removes_the_state() {
    let mut cluster = Cluster::start().await.unwrap();
    let state_dir = cluster.state_dir().to_path_buf();
    let api_address = cluster.api_url().trim_start_matches("https://").to_string();
    let pids = started_pids(&state_dir);
    let names: Vec<&str> = pids.iter().map(|(name, _)| name.as_str()).collect();
    for expected in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    for (name, pid) in &pids {
        assert!(is_running(*pid), "{name} ({pid}) is not running");
    }

    cluster.stop();

    for (name, pid) in &pids {
        assert!(!is_running(*pid), "{name} ({pid}) still running after stop");
    }
    assert!(!state_dir.exists(), "{} left behind", state_dir.display());
    assert!(
        tokio::net::TcpStream::connect(&api_address).await.is_err(),
        "something still listens on {api_address}"
    );
}
