//! kiln's images, built by kiln from `images/`, as real pods on the real
//! node (`e2e/cluster/real-node.sh`):
//!
//! 1. the builder image: a container of a `FROM scratch` image, no `/tmp`,
//!    no `TMPDIR`, `--isolation=inplace`, the context fetched (`oci://`, as
//!    `kiln --driver=k8s` uploads it and the operator's Jobs fetch it, and
//!    `git://…#v1` from a git daemon on the node's bridge); the pushed
//!    images are read back with skopeo and run. The pod runner cannot
//!    show this: it runs the host's `kiln` with `TMPDIR` set (this failed
//!    before kiln had a work root: "creating a temporary directory in /tmp:
//!    No such file or directory");
//! 2. `helm install` of the chart with the operator image: the operator runs
//!    as a real pod (its RBAC and service account as shipped, the apiserver
//!    through the kubernetes Service), the sample MultiArchBuild for
//!    linux/amd64 builds in a real builder pod on the real node and its
//!    index is published;
//! 3. the seed-001 flow in the cluster: a Job of the builder image with
//!    `--driver=k8s`, its service account allowed to create and get
//!    MultiArchBuilds only, builds its `/workspace` through the operator.
//!
//! The images' binaries are built statically by `images/build-context.sh`
//! (dev profile, into `<target>/kiln-images`: minutes the first time,
//! cached after); their CA bundle holds the cluster CA, which signed the
//! node registry's certificate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/git_daemon.rs"]
mod git_daemon;

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kiln_builder::drivers::k8s::upload::{LocalContext, upload_context};
use kiln_builder::registry::{Registry, RegistryOptions};
use kiln_crds::{BuildRequest, MultiArchBuild, Phase};
use kiln_e2e::binaries::{profile_dir_of, workspace_binary};
use kiln_e2e::cluster::{Cluster, wait_for};
use kiln_e2e::real_node::RealNode;
use kube::api::{Api, LogParams, PostParams};

const WAIT: Duration = Duration::from_secs(180);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `images/build-context.sh` into `dir`: static kiln and kiln-operator,
/// built in a target directory next to this test's; the CA bundle is
/// Debian's plus `extra_ca` (the node's registry is private).
fn builder_context(dir: &Path, extra_ca: &Path) -> PathBuf {
    let bundle = dir.join("ca-certificates.crt");
    let mut pem = std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap();
    pem.extend(std::fs::read(extra_ca).unwrap());
    std::fs::write(&bundle, pem).unwrap();
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
        .env("KILN_CA_BUNDLE", &bundle)
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
    let finished = wait_for(
        pods.clone(),
        &name,
        |pod: Option<&Pod>| matches!(phase(pod).as_deref(), Some("Succeeded" | "Failed")),
        WAIT,
        &format!("pod {name} finishing on the real node"),
    )
    .await;
    let log = pods.logs(&name, &LogParams::default()).await;
    if let Err(error) = finished {
        let status = pods.get(&name).await.ok().and_then(|pod| pod.status);
        // Why a pod does not run: the nodes' taints and conditions.
        let nodes = Api::<k8s_openapi::api::core::v1::Node>::all(pods.clone().into_client())
            .list(&Default::default())
            .await
            .map(|list| {
                list.items
                    .into_iter()
                    .map(|node| {
                        let conditions: Vec<String> = node
                            .status
                            .and_then(|s| s.conditions)
                            .unwrap_or_default()
                            .into_iter()
                            .map(|c| {
                                format!(
                                    "{}={} {}",
                                    c.type_,
                                    c.status,
                                    c.message.unwrap_or_default()
                                )
                            })
                            .collect();
                        (
                            node.metadata.name,
                            node.spec.and_then(|s| s.taints),
                            conditions,
                        )
                    })
                    .collect::<Vec<_>>()
            });
        panic!("{error}\nstatus: {status:#?}\nlog: {log:?}\nnodes: {nodes:#?}");
    }
    let log = log.unwrap();
    let phase = phase(Some(&pods.get(&name).await.unwrap())).unwrap();
    (phase, log)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_builder_image_builds_in_place_on_the_real_node_and_the_helm_installed_operator_runs_the_sample_there()
 {
    let work = tempfile::tempdir().unwrap();
    let cluster = Cluster::start().await.unwrap();
    let kiln = workspace_binary("kiln-builder", "kiln").unwrap();
    // The static build (minutes when it is not cached) before the node
    // starts: in runs where it rebuilt while the node was up, on this busy
    // 2-core machine, the node ended up tainted and the builder pod
    // unschedulable. The node registry's certificate is signed by the
    // cluster CA, which exists already.
    let context_dir = tokio::task::spawn_blocking({
        let dir = work.path().to_path_buf();
        let ca = cluster.ca_cert();
        move || builder_context(&dir, &ca)
    })
    .await
    .unwrap();
    let node = RealNode::start(&cluster, &kiln).await.unwrap();
    assert_eq!(node.registry_ca(), cluster.ca_cert());
    let registry = node.registry().to_string();

    let builder = node
        .push(
            &kiln,
            &context_dir,
            &repo_root().join("images/builder.Dockerfile"),
            "kiln-e2e/kiln-builder:test",
        )
        .await
        .unwrap();
    let base = node.push_busybox(&kiln).await.unwrap();

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
        registry_certificates: vec![(registry.clone(), node.registry_ca().to_path_buf())],
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
    let certs = work.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(node.registry_ca(), certs.join("ca.crt")).unwrap();
    let inspect = std::process::Command::new("skopeo")
        .arg("inspect")
        .arg(format!("--cert-dir={}", certs.display()))
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

    builds_from_a_git_daemon(&pods, &node, &builder, &base, work.path()).await;

    helm_installed_operator_builds_the_sample(&cluster, &node, &kiln, &context_dir, &context).await;
    a_job_of_the_builder_image_builds_with_driver_k8s(&cluster, &node, &source).await;
}

/// The builder image in a real pod with a `git://…#ref` context: a `git
/// daemon` this test starts on the node's bridge address (where pods reach
/// the host, as the node's registry does), fetched in-process (the image
/// has no git), `--isolation=inplace`. The image runs and prints the file
/// the repository's tag holds.
async fn builds_from_a_git_daemon(
    pods: &Api<Pod>,
    node: &RealNode,
    builder: &str,
    base: &str,
    work: &Path,
) {
    let tree = work.join("git-tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("hello.txt"), "hello from a git daemon\n").unwrap();
    std::fs::write(
        tree.join("Dockerfile"),
        format!(
            "FROM {base}\nCOPY hello.txt /hello.txt\nRUN [\"/bin/busybox\", \"cp\", \"/hello.txt\", \"/copied.txt\"]\n"
        ),
    )
    .unwrap();
    let address: std::net::IpAddr = node.report().node_ip.parse().unwrap();
    let git = git_daemon::GitDaemon::serve(&tree, address);
    let context = format!("{}#v1", git.url());
    let built = format!("{}/kiln-e2e/built-from-git:1", node.registry());
    let (phase, log) = run_to_completion(
        pods,
        serde_json::json!({
            "metadata": { "name": "build-git" },
            "spec": {
                "restartPolicy": "Never",
                "nodeSelector": { "kubernetes.io/hostname": node.name() },
                "containers": [{
                    "name": "kiln",
                    "image": builder,
                    "args": [
                        format!("--context={context}"),
                        format!("--destination={built}"),
                        "--isolation=inplace",
                    ],
                }],
            }
        }),
    )
    .await;
    assert_eq!(phase, "Succeeded", "{log}");
    assert!(log.contains("--isolation=inplace: in a container"), "{log}");
    drop(git);
    let (phase, log) = run_to_completion(
        pods,
        serde_json::json!({
            "metadata": { "name": "run-built-from-git" },
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
        ("Succeeded", "hello from a git daemon\n")
    );
}

/// The pinned helm, built by `scripts/tools.sh` (cached by version).
fn helm() -> PathBuf {
    let output = std::process::Command::new("bash")
        .arg(repo_root().join("scripts/tools.sh"))
        .arg("helm")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "scripts/tools.sh helm: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Path::new(String::from_utf8_lossy(&output.stdout).trim()).join("helm")
}

/// `helm install` of `charts/kiln` as shipped, but for the images (kiln's,
/// built by kiln from `images/`, in the node's registry) and the operator
/// pod's node (the real one; the kwok nodes run nothing): the operator runs
/// as a real pod, and the sample MultiArchBuild for linux/amd64 builds in a
/// real builder pod on the real node, fetching an `oci://` context, and is
/// published as an index.
async fn helm_installed_operator_builds_the_sample(
    cluster: &Cluster,
    node: &RealNode,
    kiln: &Path,
    image_context: &Path,
    build_context: &str,
) {
    let registry = node.registry();
    node.push(
        kiln,
        image_context,
        &repo_root().join("images/operator.Dockerfile"),
        "kiln-e2e/kiln-operator:test",
    )
    .await
    .unwrap();
    let kubeconfig = cluster.kubeconfig().display().to_string();
    let output = std::process::Command::new(helm())
        .args(["install", "kiln"])
        .arg(repo_root().join("charts/kiln"))
        .args([
            "-n",
            "kiln-system",
            "--create-namespace",
            "--kubeconfig",
            &kubeconfig,
        ])
        .arg(format!(
            "--set=image.repository={registry}/kiln-e2e/kiln-operator"
        ))
        .arg("--set=image.tag=test")
        .arg(format!(
            "--set=builder.image.repository={registry}/kiln-e2e/kiln-builder"
        ))
        .arg("--set=builder.image.tag=test")
        .arg("--set-string=nodeSelector.kiln\\.dev/real-node=true")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "helm install: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let client = cluster.client().await.unwrap();
    let namespace = cluster.create_namespace(&client, "sample").await.unwrap();
    let text =
        std::fs::read_to_string(repo_root().join("config/samples/multiarchbuild.yaml")).unwrap();
    let mut build: MultiArchBuild = serde_yaml::from_str(&text).unwrap();
    build.metadata.name = Some("hello".to_owned());
    build.spec.platforms = vec!["linux/amd64".to_owned()];
    let spec = &mut build.spec.build;
    spec.context = build_context.to_owned();
    spec.destinations = vec![
        format!("{registry}/kiln-e2e/hello:1.0.0"),
        format!("{registry}/kiln-e2e/hello:latest"),
    ];
    spec.cache = None;
    spec.registry_secret_ref = None;
    spec.scheduling
        .node_selector
        .insert("kiln.dev/real-node".to_owned(), "true".to_owned());
    let builds = Api::<MultiArchBuild>::namespaced(client.clone(), &namespace);
    builds.create(&PostParams::default(), &build).await.unwrap();
    let done = wait_for(
        builds.clone(),
        "hello",
        |b: Option<&MultiArchBuild>| {
            matches!(
                b.and_then(|b| b.status.as_ref()).and_then(|s| s.phase),
                Some(Phase::Succeeded | Phase::Failed)
            )
        },
        Duration::from_secs(300),
        "the sample MultiArchBuild finishing",
    )
    .await;
    let build = builds.get("hello").await.unwrap();
    let operator_log = {
        let operators = Api::<Pod>::namespaced(client.clone(), "kiln-system");
        let mut log = String::new();
        for pod in operators.list(&Default::default()).await.unwrap().items {
            let name = pod.metadata.name.unwrap_or_default();
            log.push_str(
                &operators
                    .logs(&name, &LogParams::default())
                    .await
                    .unwrap_or_default(),
            );
        }
        log
    };
    done.unwrap_or_else(|e| panic!("{e}\n{:#?}\noperator log:\n{operator_log}", build.status));
    let status = build.status.unwrap();
    assert_eq!(
        status.phase,
        Some(Phase::Succeeded),
        "{status:#?}\n{operator_log}"
    );
    let index = status.index.unwrap();
    assert_eq!(
        index.reference.unwrap(),
        format!("{registry}/kiln-e2e/hello@{}", index.digest.unwrap())
    );
    // The builder pod ran on the real node.
    let requests = Api::<BuildRequest>::namespaced(client.clone(), &namespace)
        .list(&Default::default())
        .await
        .unwrap();
    let nodes: Vec<Option<String>> = requests
        .items
        .iter()
        .map(|r| r.status.as_ref().and_then(|s| s.node_name.clone()))
        .collect();
    assert_eq!(nodes, [Some(node.name().to_owned())]);
}

/// The seed-001 flow inside the cluster: a plain Job runs the builder image
/// with `--driver=k8s`; kiln in the pod uploads its local context
/// (`/workspace`, a volume) to the registry, creates a MultiArchBuild with
/// its service account (allowed to create and get MultiArchBuilds, nothing
/// else: the RBAC the README gives) and follows it until the operator has
/// published the index.
async fn a_job_of_the_builder_image_builds_with_driver_k8s(
    cluster: &Cluster,
    node: &RealNode,
    source: &Path,
) {
    let registry = node.registry();
    let client = cluster.client().await.unwrap();
    // The operator pins the platform's builder to an amd64 node; the only
    // one left that runs pods is the real node.
    let nodes = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone());
    for name in ["kiln-e2e-amd64-1", "kiln-e2e-amd64-2"] {
        nodes.delete(name, &Default::default()).await.unwrap();
    }
    let namespace = cluster.create_namespace(&client, "seed").await.unwrap();
    let objects: [serde_json::Value; 3] = [
        serde_json::json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": { "name": "kiln-ci", "namespace": namespace },
        }),
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": { "name": "kiln-ci", "namespace": namespace },
            "rules": [{
                "apiGroups": ["kiln.dev"],
                "resources": ["multiarchbuilds"],
                "verbs": ["create", "get"],
            }],
        }),
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": { "name": "kiln-ci", "namespace": namespace },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kiln-ci" },
            "subjects": [{ "kind": "ServiceAccount", "name": "kiln-ci", "namespace": namespace }],
        }),
    ];
    let mut apply = cluster.kubectl_command();
    apply
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = apply.spawn().unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        for object in &objects {
            stdin
                .write_all(format!("---\n{}\n", serde_json::to_string(object).unwrap()).as_bytes())
                .await
                .unwrap();
        }
    }
    let applied = child.wait_with_output().await.unwrap();
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );

    let destination = format!("{registry}/kiln-e2e/seed:1");
    let pods = Api::<Pod>::namespaced(client.clone(), &namespace);
    let (phase, log) = run_to_completion(
        &pods,
        serde_json::json!({
            "metadata": { "name": "ci" },
            "spec": {
                "restartPolicy": "Never",
                "serviceAccountName": "kiln-ci",
                "nodeSelector": { "kubernetes.io/hostname": node.name() },
                "volumes": [{ "name": "workspace", "hostPath": { "path": source.display().to_string() } }],
                "containers": [{
                    "name": "kiln",
                    "image": format!("{registry}/kiln-e2e/kiln-builder:test"),
                    "args": [
                        "--driver=k8s",
                        format!("--destination={destination}"),
                        "--multi-platform=linux/amd64",
                        "--publish-index=true",
                    ],
                    "volumeMounts": [{ "name": "workspace", "mountPath": "/workspace", "readOnly": true }],
                }],
            }
        }),
    )
    .await;
    assert_eq!(phase, "Succeeded", "{log}");
    assert!(
        log.contains("uploaded the build context to oci://"),
        "{log}"
    );
    assert!(
        log.contains(&format!("created MultiArchBuild {namespace}/")),
        "{log}"
    );
    let builds = Api::<MultiArchBuild>::namespaced(client.clone(), &namespace)
        .list(&Default::default())
        .await
        .unwrap();
    let [build] = builds.items.as_slice() else {
        panic!("one MultiArchBuild: {builds:?}")
    };
    let index = build.status.as_ref().unwrap().index.clone().unwrap();
    let reference = index.reference.unwrap();
    assert!(log.contains(&reference), "{reference} in {log}");
    assert_eq!(
        reference,
        format!("{registry}/kiln-e2e/seed@{}", index.digest.unwrap())
    );
}
