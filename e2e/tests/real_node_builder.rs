//! kiln's builder image, built by kiln from `images/`, as a real pod on the
//! real node (`e2e/cluster/real-node.sh`): a container of a `FROM scratch`
//! image, no `/tmp`, no `TMPDIR`, `--isolation=inplace`, the context
//! fetched (`oci://`, as `kiln --driver=k8s` uploads it and the operator's
//! Jobs fetch it). The pod runner cannot show what this shows: it runs the
//! host's `kiln` with `TMPDIR` set.
//!
//! The builder image's binaries are built statically by
//! `images/build-context.sh` (dev profile, into `<target>/kiln-images`:
//! minutes the first time, cached after).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kiln_builder::drivers::k8s::upload::{LocalContext, upload_context};
use kiln_builder::registry::{Registry, RegistryOptions};
use kiln_e2e::binaries::{profile_dir_of, workspace_binary};
use kiln_e2e::cluster::{Cluster, wait_for};
use kiln_e2e::real_node::{RealNode, kiln_push, push_busybox};
use kube::api::{Api, LogParams, PostParams};

const WAIT: Duration = Duration::from_secs(180);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `images/build-context.sh` into `dir`: static kiln and kiln-operator,
/// built in a target directory next to this test's.
fn builder_context(dir: &Path) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = profile_dir_of(&exe)
        .and_then(Path::parent)
        .expect("the test runs from a cargo target directory");
    let context = dir.join("context");
    let output = std::process::Command::new("bash")
        .arg(repo_root().join("images/build-context.sh"))
        .current_dir(repo_root())
        .env("KILN_IMAGE_TARGET_DIR", target.join("kiln-images"))
        .env("KILN_IMAGE_PROFILE", "dev")
        .env("KILN_IMAGE_CONTEXT", &context)
        // Small binaries, and the same fingerprint whoever runs the test.
        .env("CARGO_PROFILE_DEV_DEBUG", "0")
        .env("CARGO_INCREMENTAL", "0")
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "images/build-context.sh: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    context
}

fn phase(pod: Option<&Pod>) -> Option<String> {
    pod?.status.as_ref()?.phase.clone()
}

async fn run_to_completion(pods: &Api<Pod>, pod: serde_json::Value) -> (String, String) {
    let pod: Pod = serde_json::from_value(pod).unwrap();
    let name = pod.metadata.name.clone().unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_for(
        pods.clone(),
        &name,
        |pod: Option<&Pod>| matches!(phase(pod).as_deref(), Some("Succeeded" | "Failed")),
        WAIT,
        &format!("pod {name} finishing on the real node"),
    )
    .await
    .unwrap();
    let log = pods.logs(&name, &LogParams::default()).await.unwrap();
    let phase = phase(Some(&pods.get(&name).await.unwrap())).unwrap();
    (phase, log)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_builder_image_builds_a_fetched_context_in_place_on_the_real_node() {
    let work = tempfile::tempdir().unwrap();
    let context_dir = tokio::task::spawn_blocking({
        let dir = work.path().to_path_buf();
        move || builder_context(&dir)
    })
    .await
    .unwrap();
    let cluster = Cluster::start().await.unwrap();
    let kiln = workspace_binary("kiln-builder", "kiln").unwrap();
    let node = RealNode::start(&cluster, &kiln).await.unwrap();
    let registry = node.registry().to_string();

    let builder = kiln_push(
        &kiln,
        &registry,
        &context_dir,
        &repo_root().join("images/builder.Dockerfile"),
        "kiln-e2e/kiln-builder:test",
    )
    .await
    .unwrap();
    let base = push_busybox(&kiln, &registry).await.unwrap();

    // The build context as an OCI artifact in the registry, uploaded as
    // `kiln --driver=k8s` uploads a local context for the operator.
    let source = work.path().join("app");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("hello.txt"), "hello from a fetched context\n").unwrap();
    std::fs::write(
        source.join("Dockerfile"),
        format!(
            "FROM {base}\nCOPY hello.txt /hello.txt\nRUN [\"/bin/busybox\", \"cp\", \"/hello.txt\", \"/copied.txt\"]\n"
        ),
    )
    .unwrap();
    let uploader = Registry::new(RegistryOptions {
        insecure_registries: vec![registry.clone()],
        ..RegistryOptions::default()
    })
    .unwrap();
    let context = upload_context(
        &uploader,
        &format!("{registry}/kiln-e2e/context"),
        LocalContext::Dir(&source),
    )
    .await
    .unwrap();
    assert!(context.starts_with("oci://"), "{context}");

    let client = cluster.client().await.unwrap();
    let namespace = cluster.create_namespace(&client, "builder").await.unwrap();
    let pods = Api::<Pod>::namespaced(client.clone(), &namespace);
    let built = format!("{registry}/kiln-e2e/built:1");
    let (phase, log) = run_to_completion(
        &pods,
        serde_json::json!({
            "metadata": { "name": "build" },
            "spec": {
                "restartPolicy": "Never",
                "nodeSelector": { "kubernetes.io/hostname": node.name() },
                "containers": [{
                    "name": "kiln",
                    "image": builder,
                    "args": [
                        format!("--context={context}"),
                        format!("--destination={built}"),
                        format!("--insecure-registry={registry}"),
                        "--isolation=inplace",
                    ],
                }],
            }
        }),
    )
    .await;
    assert_eq!(phase, "Succeeded", "{log}");
    assert!(log.contains("--isolation=inplace: in a container"), "{log}");

    // Pushed: skopeo reads it back, and it runs on the node.
    let inspect = std::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{built}"))
        .output()
        .unwrap();
    assert!(
        inspect.status.success(),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    let inspected: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(
        inspected["Layers"].as_array().unwrap().len(),
        3,
        "{inspected}"
    );
    assert_eq!(inspected["Architecture"], "amd64");
    let (phase, log) = run_to_completion(
        &pods,
        serde_json::json!({
            "metadata": { "name": "run-built" },
            "spec": {
                "restartPolicy": "Never",
                "nodeSelector": { "kubernetes.io/hostname": node.name() },
                "containers": [{
                    "name": "main",
                    "image": built,
                    "args": ["cat", "/copied.txt"],
                }],
            }
        }),
    )
    .await;
    assert_eq!(
        (phase.as_str(), log.as_str()),
        ("Succeeded", "hello from a fetched context\n")
    );
}
