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

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kiln_builder::drivers::k8s::upload::{LocalContext, upload_context};
use kiln_builder::registry::{Registry, RegistryOptions};
use kiln_crds::{BuildRequest, MultiArchBuild, Phase};
use kiln_e2e::binaries::{profile_dir_of, workspace_binary};
use kiln_e2e::cluster::{Cluster, is_node_ready, wait_for};
use kiln_e2e::real_node::RealNode;
use kiln_e2e::runner::{Runner, RunnerConfig};
use kiln_operator::build_request::render;
use kube::api::{Api, EvictParams, ListParams, LogParams, Patch, PatchParams, PostParams};

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
                    // The operator's builder container, locked down.
                    "securityContext": render::builder_security_context(),
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

    each_kept_capability_is_needed(&pods, &node, &uploader, &builder, &base, work.path()).await;
    an_unpullable_builder_image_is_named_on_the_build(&cluster, &node, &context).await;
    helm_installed_operator_builds_the_sample(&cluster, &node, &kiln, &context_dir, &context).await;
    let probe = cluster.create_namespace(&client, "probe").await.unwrap();
    run_steps_cannot_read_the_registry_credentials(
        &client,
        &probe,
        &node,
        &uploader,
        &base,
        work.path(),
    )
    .await;
    builders_run_in_a_user_namespace(&cluster, &node, &uploader, &base, work.path()).await;
    an_oom_killed_builder_is_recorded_and_retried(&cluster, &node, &uploader, &base, work.path())
        .await;
    builders_lost_on_the_real_node_are_retried_elsewhere(
        &cluster,
        &node,
        &kiln,
        &uploader,
        &base,
        &work.path().join("ca-certificates.crt"),
        work.path(),
    )
    .await;
    // From here the operator pins amd64 builders to an amd64 node; the
    // only one left that runs pods is the real node.
    let nodes = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone());
    for name in ["kiln-e2e-amd64-1", "kiln-e2e-amd64-2"] {
        nodes.delete(name, &Default::default()).await.unwrap();
    }
    a_mixed_build_runs_amd64_on_the_real_node_and_arm64_on_kwok(
        &cluster,
        &node,
        &kiln,
        &uploader,
        &work.path().join("ca-certificates.crt"),
        work.path(),
    )
    .await;
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

/// The sample MultiArchBuild pointed at `context` and `registry`'s
/// `repository`, without cache or registry Secret, for `platforms`.
fn sample_build(
    name: &str,
    platforms: &[&str],
    context: &str,
    registry: &str,
    repository: &str,
) -> MultiArchBuild {
    let text =
        std::fs::read_to_string(repo_root().join("config/samples/multiarchbuild.yaml")).unwrap();
    let mut build: MultiArchBuild = serde_yaml::from_str(&text).unwrap();
    build.metadata.name = Some(name.to_owned());
    build.spec.platforms = platforms.iter().map(|p| p.to_string()).collect();
    let spec = &mut build.spec.build;
    spec.context = context.to_owned();
    spec.destinations = vec![format!("{registry}/{repository}:1")];
    spec.cache = None;
    spec.registry_secret_ref = None;
    build
}

/// Waits for the build to end (Succeeded or Failed) and returns it, with
/// its requests' statuses on timeout.
async fn wait_end(builds: &Api<MultiArchBuild>, name: &str, within: Duration) -> MultiArchBuild {
    let done = wait_for(
        builds.clone(),
        name,
        |b: Option<&MultiArchBuild>| {
            matches!(
                b.and_then(|b| b.status.as_ref()).and_then(|s| s.phase),
                Some(Phase::Succeeded | Phase::Failed)
            )
        },
        within,
        &format!("MultiArchBuild {name} ending"),
    )
    .await;
    let build = builds.get(name).await.unwrap();
    if let Err(error) = done {
        let requests = Api::<BuildRequest>::namespaced(
            builds.clone().into_client(),
            build.metadata.namespace.as_deref().unwrap(),
        )
        .list(&Default::default())
        .await
        .unwrap();
        panic!(
            "{error}\n{:#?}\n{:#?}",
            build.status,
            requests.items.iter().map(|r| &r.status).collect::<Vec<_>>()
        );
    }
    build
}

/// A builder image the node's registry does not have: the kubelet cannot
/// pull it, and the MultiArchBuild (as its BuildRequest) carries a
/// `BuilderImagePulled=False` condition naming the image and what the
/// registry answered. Run by an operator of its own (a host process
/// configured with that image, watching one namespace) before the chart's
/// is installed.
async fn an_unpullable_builder_image_is_named_on_the_build(
    cluster: &Cluster,
    node: &RealNode,
    context: &str,
) {
    let registry = node.registry();
    let mut apply = cluster.kubectl_command();
    apply.arg("apply").arg(format!(
        "--filename={}",
        repo_root().join("charts/kiln/crds").display()
    ));
    let applied = apply.output().await.unwrap();
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let client = cluster.client().await.unwrap();
    let namespace = cluster.create_namespace(&client, "pull").await.unwrap();
    let image = format!("{registry}/kiln-e2e/no-such-builder:1");
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("operator.log");
    let _operator =
        tokio::process::Command::new(workspace_binary("kiln-operator", "kiln-operator").unwrap())
            .args([
                format!("--builder-image={image}"),
                format!("--watch-namespace={namespace}"),
                "--metrics-bind-address=127.0.0.1:0".to_owned(),
                "--health-probe-bind-address=127.0.0.1:0".to_owned(),
            ])
            .env("KUBECONFIG", cluster.kubeconfig())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
    let mut build = sample_build("pull", &["linux/amd64"], context, registry, "kiln-e2e/pull");
    build
        .spec
        .build
        .scheduling
        .node_selector
        .insert("kiln.dev/real-node".to_owned(), "true".to_owned());
    let builds = Api::<MultiArchBuild>::namespaced(client.clone(), &namespace);
    builds.create(&PostParams::default(), &build).await.unwrap();
    let named = wait_for(
        builds.clone(),
        "pull",
        |b: Option<&MultiArchBuild>| {
            b.and_then(|b| b.status.as_ref()).is_some_and(|s| {
                kiln_crds::condition::find(&s.conditions, "BuilderImagePulled")
                    .is_some_and(|c| c.status == kiln_crds::ConditionStatus::False)
            })
        },
        Duration::from_secs(120),
        "BuilderImagePulled=False on the MultiArchBuild",
    )
    .await;
    let status = builds.get("pull").await.unwrap().status;
    named.unwrap_or_else(|e| {
        panic!(
            "{e}\n{status:#?}\noperator log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    let status = status.unwrap();
    let pulled = kiln_crds::condition::find(&status.conditions, "BuilderImagePulled").unwrap();
    let message = pulled.message.clone().unwrap();
    assert!(
        message.starts_with(&format!(
            "linux/amd64: the builder image {image} cannot be pulled on node {}: ",
            node.name()
        )),
        "{message}"
    );
    // What containerd heard from the registry.
    assert!(message.contains("not found"), "{message}");
    assert_eq!(
        status.phase,
        Some(Phase::Building),
        "still waiting: {status:#?}"
    );
    assert!(status.index.is_none());
    builds.delete("pull", &Default::default()).await.unwrap();
}

/// A context holding only `dockerfile`, uploaded to the node's registry
/// as `kiln --driver=k8s` uploads one (`<registry>/kiln-e2e/<name>-context`);
/// its `oci://` reference.
async fn dockerfile_context(
    uploader: &Registry,
    registry: &str,
    work: &Path,
    name: &str,
    dockerfile: &str,
) -> String {
    let source = work.join(name);
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("Dockerfile"), dockerfile).unwrap();
    upload_context(
        uploader,
        &format!("{registry}/kiln-e2e/{name}-context"),
        LocalContext::Dir(&source),
    )
    .await
    .unwrap()
}

/// Issue 11's `hostUsers: false`, run for real: the chart's operator gives
/// a builder pod on the real node (containerd 2, runc 1.5, Linux ≥ 6.3) a
/// user namespace of its own (`userNamespaces: auto`), and a RUN step of
/// that builder records the user mapping it runs under into the image:
/// root in the builder is an unprivileged user on the node.
async fn builders_run_in_a_user_namespace(
    cluster: &Cluster,
    node: &RealNode,
    uploader: &Registry,
    base: &str,
    work: &Path,
) {
    let registry = node.registry();
    let context = dockerfile_context(
        uploader,
        registry,
        work,
        "userns",
        &format!(
            "FROM {base}\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox cat /proc/self/uid_map > /uid_map\"]\n"
        ),
    )
    .await;
    let client = cluster.client().await.unwrap();
    let namespace = cluster.create_namespace(&client, "userns").await.unwrap();
    let mut build = sample_build(
        "userns",
        &["linux/amd64"],
        &context,
        registry,
        "kiln-e2e/userns",
    );
    build.spec.build.scheduling.user_namespaces = kiln_crds::UserNamespaces::Auto;
    build
        .spec
        .build
        .scheduling
        .node_selector
        .insert("kiln.dev/real-node".to_owned(), "true".to_owned());
    let builds = Api::<MultiArchBuild>::namespaced(client.clone(), &namespace);
    builds.create(&PostParams::default(), &build).await.unwrap();
    let build = wait_end(&builds, "userns", Duration::from_secs(240)).await;
    let status = build.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Succeeded), "{status:#?}");
    let jobs = Api::<Job>::namespaced(client.clone(), &namespace)
        .list(&Default::default())
        .await
        .unwrap();
    let [job] = jobs.items.as_slice() else {
        panic!("one builder Job: {jobs:?}")
    };
    let pod = job.spec.clone().unwrap().template.spec.unwrap();
    assert_eq!(pod.host_users, Some(false));

    // What the RUN step saw: uid 0 inside maps to a non-zero uid outside,
    // in a range that does not cover the host's ids.
    let pods = Api::<Pod>::namespaced(client.clone(), &namespace);
    let (phase, log) = run_to_completion(
        &pods,
        serde_json::json!({
            "metadata": { "name": "read-uid-map" },
            "spec": {
                "restartPolicy": "Never",
                "nodeSelector": { "kubernetes.io/hostname": node.name() },
                "containers": [{
                    "name": "main",
                    "image": format!("{registry}/kiln-e2e/userns:1"),
                    "args": ["cat", "/uid_map"],
                }],
            }
        }),
    )
    .await;
    assert_eq!(phase, "Succeeded", "{log}");
    let mappings: Vec<Vec<u64>> = log
        .lines()
        .map(|line| {
            line.split_whitespace()
                .map(|field| field.parse().unwrap())
                .collect()
        })
        .collect();
    let [mapping] = mappings.as_slice() else {
        panic!("one uid mapping: {log:?}")
    };
    let [inside, outside, count] = mapping.as_slice() else {
        panic!("a uid mapping has three fields: {log:?}")
    };
    assert_eq!(*inside, 0, "{log:?}");
    assert!(
        *outside >= 65536,
        "root in the builder is a host user: {log:?}"
    );
    assert!(*count <= 65536 * 65536, "{log:?}");
}

/// How a builder pod on the real node is lost mid-build.
#[derive(Clone, Copy, Debug)]
enum Loss {
    /// The Eviction API (what `kubectl drain` uses): the pod gets a
    /// `DisruptionTarget` condition and is deleted.
    Eviction,
    /// The node's kubelet stops answering (stopped with SIGSTOP): the node
    /// lifecycle controller marks the node NotReady after its grace
    /// period, while the builder container keeps running.
    NodeNotReady,
}

/// Issue 11's failure cases on the real node: a builder pod evicted, and a
/// builder whose node goes NotReady, each in the middle of its RUN step.
/// The operator abandons the attempt (its Job deleted), records the
/// disruption and retries off the real node, on a kwok amd64 node where
/// the pod runner plays the builder image; the build succeeds and its index
/// is published once. The first attempt's RUN waits 15 minutes (only in
/// attempt 1's pod, told by its hostname: `<build>-linux-amd64-g1-1-…`),
/// so nothing but the loss ends it.
async fn builders_lost_on_the_real_node_are_retried_elsewhere(
    cluster: &Cluster,
    node: &RealNode,
    kiln: &Path,
    uploader: &Registry,
    base: &str,
    ca_bundle: &Path,
    work: &Path,
) {
    let registry = node.registry();
    let client = cluster.client().await.unwrap();
    let namespace = cluster.create_namespace(&client, "lost").await.unwrap();
    let builder = format!("{registry}/kiln-e2e/kiln-builder");
    let runner = Runner::start(
        cluster,
        RunnerConfig::default()
            .with_program(&builder, kiln, &["/kiln/executor", "/kaniko/executor"])
            .with_replaced_arg(&builder, "--isolation=inplace", "--isolation=chroot")
            .with_env(&builder, "SSL_CERT_FILE", &ca_bundle.display().to_string())
            .in_namespace(&namespace),
    )
    .await
    .unwrap();
    let context = dockerfile_context(
        uploader,
        registry,
        work,
        "lost",
        &format!(
            "FROM {base}\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"case $(/bin/busybox hostname) in *-g1-1-*) /bin/busybox sleep 900;; esac; echo built > /built\"]\n"
        ),
    )
    .await;
    let nodes = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone());
    let kwok_amd64 = ["kiln-e2e-amd64-1", "kiln-e2e-amd64-2"];
    let cordon = |unschedulable: bool| {
        let nodes = nodes.clone();
        async move {
            for name in kwok_amd64 {
                nodes
                    .patch(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(
                            serde_json::json!({"spec": {"unschedulable": unschedulable}}),
                        ),
                    )
                    .await
                    .unwrap();
            }
        }
    };
    let builds = Api::<MultiArchBuild>::namespaced(client.clone(), &namespace);
    let requests = Api::<BuildRequest>::namespaced(client.clone(), &namespace);
    let pods = Api::<Pod>::namespaced(client.clone(), &namespace);
    for (name, loss) in [
        ("evicted", Loss::Eviction),
        ("notready", Loss::NodeNotReady),
    ] {
        // Attempt 1 can only go to the real node.
        cordon(true).await;
        let build = sample_build(
            name,
            &["linux/amd64"],
            &context,
            registry,
            &format!("kiln-e2e/{name}"),
        );
        builds.create(&PostParams::default(), &build).await.unwrap();
        let deadline = std::time::Instant::now() + WAIT;
        let first_pod = loop {
            let list = pods.list(&Default::default()).await.unwrap();
            let running = list.items.iter().find(|pod| {
                let on_real_node =
                    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.name());
                on_real_node && phase(Some(pod)).as_deref() == Some("Running")
            });
            if let Some(pod) = running {
                break pod.metadata.name.clone().unwrap();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name}: no builder pod running on the real node: {:#?}",
                list.items.iter().map(|p| &p.status).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert!(
            first_pod.starts_with(&format!("{name}-linux-amd64-g1-1-")),
            "{first_pod}"
        );
        // Let kiln reach the RUN step (pulling the base takes a moment).
        tokio::time::sleep(Duration::from_secs(5)).await;
        cordon(false).await;
        let paused = match loss {
            Loss::Eviction => {
                pods.evict(&first_pod, &EvictParams::default())
                    .await
                    .unwrap();
                None
            }
            Loss::NodeNotReady => Some(node.pause_kubelet().unwrap()),
        };
        let build = wait_end(&builds, name, Duration::from_secs(300)).await;
        drop(paused);
        let status = build.status.unwrap();
        assert_eq!(status.phase, Some(Phase::Succeeded), "{name}: {status:#?}");
        let [entry] = status.platforms.as_slice() else {
            panic!("{name}: one platform: {status:#?}")
        };
        let request = requests
            .get(entry.build_request.as_deref().unwrap())
            .await
            .unwrap()
            .status
            .unwrap();
        assert_eq!(request.attempts, Some(2), "{name}: {request:#?}");
        let [disruption] = request.disruptions.as_slice() else {
            panic!("{name}: one disruption: {request:#?}")
        };
        assert_eq!(disruption.attempt, 1, "{name}: {disruption:?}");
        assert_eq!(disruption.node.as_deref(), Some(node.name()), "{name}");
        assert!(disruption.node_avoided, "{name}: {disruption:?}");
        let expected_reason = match loss {
            Loss::Eviction => "EvictionByEvictionAPI",
            Loss::NodeNotReady => "NodeNotReady",
        };
        assert_eq!(disruption.reason, expected_reason, "{name}: {disruption:?}");
        let retried_on = request.node_name.clone().unwrap();
        assert!(
            kwok_amd64.contains(&retried_on.as_str()),
            "{name}: attempt 2 ran on {retried_on}"
        );
        let second_pod = request.pod_name.clone().unwrap();
        assert!(
            runner.log(&namespace, &second_pod).is_some(),
            "{name}: the runner ran {second_pod}"
        );
        assert!(status.index.is_some(), "{name}: {status:#?}");
        // The real node is back before the next case (the kubelet resumed).
        wait_for(
            nodes.clone(),
            node.name(),
            is_node_ready(),
            Duration::from_secs(120),
            &format!("{name}: the real node Ready again"),
        )
        .await
        .unwrap();
    }
}

/// A builder whose RUN step needs more memory than its limit: the kernel
/// kills it in its cgroup, the kubelet reports `OOMKilled`, and the
/// BuildRequest says so with the limit, retries once (`retries: 1`) and
/// fails; no index.
async fn an_oom_killed_builder_is_recorded_and_retried(
    cluster: &Cluster,
    node: &RealNode,
    uploader: &Registry,
    base: &str,
    work: &Path,
) {
    let registry = node.registry();
    // The shell keeps the whole substitution in memory: 512 MB of it.
    let context = dockerfile_context(
        uploader,
        registry,
        work,
        "oom",
        &format!(
            "FROM {base}\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"x=$(/bin/busybox head -c 536870912 /dev/zero | /bin/busybox tr '\\\\0' a); echo ${{#x}}\"]\n"
        ),
    )
    .await;
    let client = cluster.client().await.unwrap();
    let namespace = cluster.create_namespace(&client, "oom").await.unwrap();
    let mut build = sample_build("oom", &["linux/amd64"], &context, registry, "kiln-e2e/oom");
    build.spec.build.retries = 1;
    let scheduling = &mut build.spec.build.scheduling;
    scheduling
        .node_selector
        .insert("kiln.dev/real-node".to_owned(), "true".to_owned());
    scheduling.resources = Some(
        serde_json::from_value(serde_json::json!({
            "requests": {"memory": "64Mi"}, "limits": {"memory": "64Mi"},
        }))
        .unwrap(),
    );
    let builds = Api::<MultiArchBuild>::namespaced(client.clone(), &namespace);
    builds.create(&PostParams::default(), &build).await.unwrap();
    let build = wait_end(&builds, "oom", Duration::from_secs(240)).await;
    let status = build.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Failed), "{status:#?}");
    assert!(status.index.is_none());
    let requests = Api::<BuildRequest>::namespaced(client.clone(), &namespace)
        .list(&Default::default())
        .await
        .unwrap();
    let [request] = requests.items.as_slice() else {
        panic!("one BuildRequest: {requests:?}")
    };
    let request = request.status.clone().unwrap();
    assert_eq!(request.attempts, Some(2), "retried once: {request:#?}");
    assert_eq!(request.node_name.as_deref(), Some(node.name()));
    let message = request.message.clone().unwrap();
    assert!(
        message.starts_with(
            "the builder was OOM-killed: container kiln used more than its memory limit of 64Mi; raise spec.scheduling.resources.limits.memory"
        ),
        "{message}"
    );
    let ready = kiln_crds::condition::find(&status.conditions, "Ready").unwrap();
    let ready = ready.message.clone().unwrap();
    assert!(
        ready.starts_with(
            "linux/amd64 failed: failed after 2 attempt(s): the builder was OOM-killed"
        ) && ready.ends_with("; no index published"),
        "{ready}"
    );
}

/// Issue 11's item 4, the mixed build: one MultiArchBuild whose linux/amd64
/// builds in a real builder pod on the real node (the only amd64 node left)
/// and whose linux/arm64 builds on the kwok arm64 node, where the pod
/// runner plays the builder image with the host's `kiln` (the image's CA
/// bundle as `SSL_CERT_FILE`, as the image has it built in); the chart's
/// operator publishes the index of both.
async fn a_mixed_build_runs_amd64_on_the_real_node_and_arm64_on_kwok(
    cluster: &Cluster,
    node: &RealNode,
    kiln: &Path,
    uploader: &Registry,
    ca_bundle: &Path,
    work: &Path,
) {
    let registry = node.registry();
    let client = cluster.client().await.unwrap();
    let namespace = cluster.create_namespace(&client, "mixed").await.unwrap();
    let builder = format!("{registry}/kiln-e2e/kiln-builder");
    let runner = Runner::start(
        cluster,
        RunnerConfig::default()
            .with_program(&builder, kiln, &["/kiln/executor", "/kaniko/executor"])
            .with_replaced_arg(&builder, "--isolation=inplace", "--isolation=chroot")
            .with_env(&builder, "SSL_CERT_FILE", &ca_bundle.display().to_string())
            .in_namespace(&namespace),
    )
    .await
    .unwrap();
    let source = work.join("mixed");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("hello.txt"), "hello from two kinds of node\n").unwrap();
    std::fs::write(
        source.join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /hello.txt\n",
    )
    .unwrap();
    let context = upload_context(
        uploader,
        &format!("{registry}/kiln-e2e/mixed-context"),
        LocalContext::Dir(&source),
    )
    .await
    .unwrap();
    let build = sample_build(
        "mixed",
        &["linux/amd64", "linux/arm64"],
        &context,
        registry,
        "kiln-e2e/mixed",
    );
    let builds = Api::<MultiArchBuild>::namespaced(client.clone(), &namespace);
    builds.create(&PostParams::default(), &build).await.unwrap();
    let build = wait_end(&builds, "mixed", Duration::from_secs(240)).await;
    let status = build.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Succeeded), "{status:#?}");
    let index = status.index.clone().unwrap();
    assert_eq!(
        index.reference.clone().unwrap(),
        format!(
            "{registry}/kiln-e2e/mixed@{}",
            index.digest.clone().unwrap()
        )
    );

    // Where each platform ran.
    let requests = Api::<BuildRequest>::namespaced(client.clone(), &namespace);
    let mut ran_on = Vec::new();
    for entry in &status.platforms {
        let request = requests
            .get(entry.build_request.as_deref().unwrap())
            .await
            .unwrap()
            .status
            .unwrap();
        assert_eq!(request.attempts, Some(1), "{request:#?}");
        ran_on.push((entry.platform.clone(), request.node_name.clone().unwrap()));
        if entry.platform == "linux/arm64" {
            let pod = request.pod_name.unwrap();
            assert!(
                runner.log(&namespace, &pod).is_some(),
                "the runner ran {pod}"
            );
        }
    }
    assert_eq!(
        ran_on,
        [
            ("linux/amd64".to_owned(), node.name().to_owned()),
            ("linux/arm64".to_owned(), "kiln-e2e-arm64-1".to_owned()),
        ]
    );

    // The index in the registry lists both children, in spec order, each
    // the digest its platform reported.
    let certs = work.join("mixed-certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(node.registry_ca(), certs.join("ca.crt")).unwrap();
    let raw = std::process::Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("--cert-dir={}", certs.display()))
        .arg(format!("docker://{}", index.reference.unwrap()))
        .output()
        .unwrap();
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    let raw: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let children: Vec<(String, String)> = raw["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["platform"]["architecture"].as_str().unwrap().to_owned(),
                m["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let reported: Vec<(String, String)> = status
        .platforms
        .iter()
        .map(|e| {
            (
                e.platform.split('/').nth(1).unwrap().to_owned(),
                e.digest.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(children, reported);
    assert_eq!(children.len(), 2);
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
    let build = real_node_sample_build(
        "hello",
        build_context,
        vec![
            format!("{registry}/kiln-e2e/hello:1.0.0"),
            format!("{registry}/kiln-e2e/hello:latest"),
        ],
        None,
        kiln_crds::UserNamespaces::Auto,
    );
    let status = build_to_the_end(&client, &namespace, build).await;
    assert_eq!(status.phase, Some(Phase::Succeeded), "{status:#?}");
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

    // The Job the operator made, which just built on the real node: locked
    // down, and in a user namespace of its own (`auto` on containerd 2 and
    // runc 1.5).
    let request = &requests.items[0];
    let jobs = Api::<Job>::namespaced(client.clone(), &namespace)
        .list(&Default::default())
        .await
        .unwrap();
    let [job] = jobs.items.as_slice() else {
        panic!("one builder Job: {jobs:?}")
    };
    let pod = job.spec.clone().unwrap().template.spec.unwrap();
    assert_eq!(
        pod.containers[0].security_context,
        Some(render::builder_security_context())
    );
    assert_eq!(pod.host_users, Some(false));
    let userns = kiln_crds::condition::find(
        &request.status.as_ref().unwrap().conditions,
        kiln_crds::condition::USER_NAMESPACES,
    )
    .unwrap();
    assert_eq!(userns.status, kiln_crds::ConditionStatus::True);
    assert_eq!(userns.reason.as_deref(), Some("HostUsersFalse"));

    // `required` where the builder may also land on the kwok amd64 nodes
    // (whose runtime is not containerd): refused, saying why and what to
    // do, and no builder Job.
    let mut required = real_node_sample_build(
        "required",
        build_context,
        vec![format!("{registry}/kiln-e2e/required:1")],
        None,
        kiln_crds::UserNamespaces::Required,
    );
    required
        .spec
        .build
        .scheduling
        .node_selector
        .remove("kiln.dev/real-node");
    let builds = Api::<MultiArchBuild>::namespaced(client.clone(), &namespace);
    builds
        .create(&PostParams::default(), &required)
        .await
        .unwrap();
    let requests = Api::<BuildRequest>::namespaced(client.clone(), &namespace);
    let waiting = |r: &BuildRequest| {
        r.metadata
            .name
            .as_deref()
            .unwrap_or_default()
            .starts_with("required-")
            && r.status.as_ref().is_some_and(|s| {
                kiln_crds::condition::find(&s.conditions, kiln_crds::condition::READY)
                    .and_then(|c| c.reason.as_deref())
                    == Some("WaitingForUserNamespaces")
            })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let refused = loop {
        let list = requests.list(&Default::default()).await.unwrap();
        if let Some(r) = list.items.iter().find(|r| waiting(r)) {
            break r.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no refusal of userNamespaces: required: {:#?}",
            list.items.iter().map(|r| &r.status).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let status = refused.status.unwrap();
    assert_eq!(status.phase, Some(kiln_crds::PlatformPhase::Pending));
    let ready =
        kiln_crds::condition::find(&status.conditions, kiln_crds::condition::READY).unwrap();
    let message = ready.message.clone().unwrap();
    assert!(
        message.starts_with("userNamespaces is required, but not every node the builder pods of linux/amd64 may run on supports user namespaces: "),
        "{message}"
    );
    assert!(
        message.contains("node kiln-e2e-amd64-1: ")
            && message.contains("kiln recognises containerd 2.0 or later"),
        "{message}"
    );
    assert!(
        !message.contains(&format!("node {}:", node.name())),
        "the real node supports user namespaces: {message}"
    );
    assert!(
        message.ends_with("or set userNamespaces: auto"),
        "{message}"
    );
    let name = refused.metadata.name.unwrap();
    let jobs = Api::<Job>::namespaced(client.clone(), &namespace)
        .list(&ListParams::default().labels(&format!("kiln.dev/build-request={name}")))
        .await
        .unwrap();
    assert!(jobs.items.is_empty(), "{:?}", jobs.items);
    // The MultiArchBuild says it too, for its platform.
    let platforms = builds
        .get("required")
        .await
        .unwrap()
        .status
        .map(|s| s.platforms)
        .unwrap_or_default();
    assert_eq!(
        platforms.first().and_then(|p| p.message.clone()),
        Some(message)
    );
}

/// `config/samples/multiarchbuild.yaml` as `name` for linux/amd64 on the
/// real node, building `context` into `destinations`.
fn real_node_sample_build(
    name: &str,
    context: &str,
    destinations: Vec<String>,
    secret: Option<&str>,
    user_namespaces: kiln_crds::UserNamespaces,
) -> MultiArchBuild {
    let text =
        std::fs::read_to_string(repo_root().join("config/samples/multiarchbuild.yaml")).unwrap();
    let mut build: MultiArchBuild = serde_yaml::from_str(&text).unwrap();
    build.metadata.name = Some(name.to_owned());
    build.spec.platforms = vec!["linux/amd64".to_owned()];
    let spec = &mut build.spec.build;
    spec.context = context.to_owned();
    spec.destinations = destinations;
    spec.cache = None;
    spec.registry_secret_ref = secret.map(|name| kiln_crds::SecretRef {
        name: name.to_owned(),
    });
    spec.scheduling.user_namespaces = user_namespaces;
    spec.scheduling
        .node_selector
        .insert("kiln.dev/real-node".to_owned(), "true".to_owned());
    build
}

/// Creates `build` and waits until it succeeds or fails; its status.
async fn build_to_the_end(
    client: &kube::Client,
    namespace: &str,
    build: MultiArchBuild,
) -> kiln_crds::MultiArchBuildStatus {
    let name = build.metadata.name.clone().unwrap();
    let builds = Api::<MultiArchBuild>::namespaced(client.clone(), namespace);
    builds.create(&PostParams::default(), &build).await.unwrap();
    let done = wait_for(
        builds.clone(),
        &name,
        |b: Option<&MultiArchBuild>| {
            matches!(
                b.and_then(|b| b.status.as_ref()).and_then(|s| s.phase),
                Some(Phase::Succeeded | Phase::Failed)
            )
        },
        Duration::from_secs(300),
        &format!("MultiArchBuild {name} finishing"),
    )
    .await;
    let build = builds.get(&name).await.unwrap();
    if let Err(e) = done {
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
        panic!("{e}\n{:#?}\noperator log:\n{log}", build.status);
    }
    build.status.unwrap()
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
    // The caller deleted the kwok amd64 nodes: the operator pins the
    // platform's builder to the real node.
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

/// The security context of the operator's builder container, with
/// `add` in place of its capabilities.
fn builder_security(add: &[&str]) -> serde_json::Value {
    let mut context = serde_json::to_value(render::builder_security_context()).unwrap();
    context["capabilities"]["add"] = serde_json::json!(add);
    context
}

/// Each capability the builder container keeps, proven necessary: the
/// Dockerfile below does what images do (give files owners, modes with
/// set-group-ID, write into another user's directory, set a file
/// capability, run as a `USER`), and checks each result, so that a missing
/// capability fails the build loudly even where the kernel would only have
/// dropped a bit silently (`FSETID`). With exactly
/// [`render::BUILDER_CAPABILITIES`] it builds; without any one of them it
/// fails, at the step that needs it. `MKNOD` and the runtime's other
/// defaults are not needed (the build passes without them).
async fn each_kept_capability_is_needed(
    pods: &Api<Pod>,
    node: &RealNode,
    uploader: &Registry,
    builder: &str,
    base: &str,
    work: &Path,
) {
    let registry = node.registry();
    let dir = work.join("capabilities");
    std::fs::create_dir_all(&dir).unwrap();
    // A static `setcap cap_net_bind_service+ep FILE` (busybox has none).
    std::fs::write(
        dir.join("setfcap.c"),
        r#"#include <stdint.h>
#include <stdio.h>
#include <sys/xattr.h>
int main(int argc, char **argv) {
  /* VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE; permitted CAP_NET_BIND_SERVICE */
  uint32_t cap[5] = {0x02000001, 1u << 10, 0, 0, 0};
  if (argc != 2 || setxattr(argv[1], "security.capability", cap, sizeof cap, 0) != 0) {
    perror("setxattr security.capability");
    return 1;
  }
  return 0;
}
"#,
    )
    .unwrap();
    let gcc = std::process::Command::new("gcc")
        .args(["-static", "-Os", "-o"])
        .arg(dir.join("setfcap"))
        .arg(dir.join("setfcap.c"))
        .output()
        .unwrap();
    assert!(
        gcc.status.success(),
        "{}",
        String::from_utf8_lossy(&gcc.stderr)
    );
    std::fs::remove_file(dir.join("setfcap.c")).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        format!(
            r#"FROM {base}
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY setfcap /bin/setfcap
RUN touch /c && chown 1:2 /c || {{ echo "lockdown: chown needs CHOWN"; exit 1; }}
RUN chmod 0640 /c || {{ echo "lockdown: chmod of another user's file needs FOWNER"; exit 1; }}
RUN chmod 2750 /c && [ "$(stat -c %a /c)" = 2750 ] || {{ echo "lockdown: set-group-ID of a group root is not in needs FSETID (mode $(stat -c %a /c))"; exit 1; }}
RUN mkdir -m 0700 /d && chown 1:2 /d && touch /d/x || {{ echo "lockdown: writing into another user's directory needs DAC_OVERRIDE"; exit 1; }}
RUN cp /bin/busybox /bin/capped && setfcap /bin/capped || {{ echo "lockdown: a file capability needs SETFCAP"; exit 1; }}
USER 1:2
RUN [ "$(id -u):$(id -g)" = 1:2 ] || {{ echo "lockdown: USER needs SETUID and SETGID"; exit 1; }}
"#
        ),
    )
    .unwrap();
    let context = upload_context(
        uploader,
        &format!("{registry}/kiln-e2e/capabilities-context"),
        LocalContext::Dir(&dir),
    )
    .await
    .unwrap();
    let build = |name: &str, add: &[&str]| {
        serde_json::json!({
            "metadata": { "name": name },
            "spec": {
                "restartPolicy": "Never",
                "nodeSelector": { "kubernetes.io/hostname": node.name() },
                "containers": [{
                    "name": "kiln",
                    "image": builder,
                    "args": [
                        format!("--context={context}"),
                        format!("--destination={registry}/kiln-e2e/capabilities:{name}"),
                        "--isolation=inplace",
                    ],
                    "securityContext": builder_security(add),
                }],
            }
        })
    };
    let kept = render::BUILDER_CAPABILITIES;
    let (phase, log) = run_to_completion(pods, build("caps-all", &kept)).await;
    assert_eq!(phase, "Succeeded", "{log}");
    // What each missing capability breaks, as the build log says it.
    let breaks = [
        ("CHOWN", "lockdown: chown needs CHOWN"),
        // kiln itself, first: its snapshot reads every file, whatever its mode
        // (here /c after chmod 0640, owned by 1:2).
        ("DAC_OVERRIDE", "cannot open /c: Permission denied"),
        ("FOWNER", "needs FOWNER"),
        ("FSETID", "needs FSETID (mode 750)"),
        ("SETFCAP", "needs SETFCAP"),
        ("SETGID", "set supplementary groups"),
        ("SETUID", "set user id 1"),
    ];
    assert_eq!(breaks.map(|(cap, _)| cap), kept);
    // Every capability tried before the verdict, which lists all that
    // did not break as expected.
    let mut unexpected = Vec::new();
    for (cap, symptom) in breaks {
        let without: Vec<&str> = kept.iter().copied().filter(|c| *c != cap).collect();
        let name = format!("caps-without-{}", cap.to_lowercase().replace('_', "-"));
        let (phase, log) = run_to_completion(pods, build(&name, &without)).await;
        if phase != "Failed" || !log.contains(symptom) {
            let tail: Vec<&str> = log.lines().rev().take(6).collect();
            unexpected.push(format!(
                "without {cap}: {phase}, {symptom:?} not in the log, which ends:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
    }
    assert!(unexpected.is_empty(), "{}", unexpected.join("\n\n"));
}

/// A docker registry on the node's bridge that requires a user and
/// password (htpasswd), with the node registry's certificate (the same
/// address, so kiln's images trust it); stopped on drop.
struct AuthRegistry {
    child: std::process::Child,
    address: String,
}

impl AuthRegistry {
    fn start(node: &RealNode, dir: &Path, user: &str, password: &str) -> AuthRegistry {
        std::fs::create_dir_all(dir).unwrap();
        let htpasswd = std::process::Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .unwrap();
        assert!(htpasswd.status.success(), "{htpasswd:?}");
        std::fs::write(dir.join("htpasswd"), &htpasswd.stdout).unwrap();
        let ip = &node.report().node_ip;
        let port = std::net::TcpListener::bind((ip.as_str(), 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("{ip}:{port}");
        let pki = node.report().state_dir.join("pki");
        std::fs::write(
            dir.join("config.yml"),
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {address}\n  tls:\n    certificate: {}\n    key: {}\n\
                 auth:\n  htpasswd:\n    realm: kiln-e2e\n    path: {}\n",
                dir.join("data").display(),
                pki.join("registry.crt").display(),
                pki.join("registry.key").display(),
                dir.join("htpasswd").display(),
            ),
        )
        .unwrap();
        let child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
            .spawn()
            .unwrap();
        let registry = AuthRegistry { child, address };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&registry.address).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the authenticated registry did not listen on {}",
                registry.address
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        registry
    }
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a RUN step tries to find of the registry credentials (kaniko#106):
/// the docker config at its old path (kaniko's, where builder pods used to
/// mount the Secret) and its new ones (the Secret's volume, which only the
/// init container mounts; the memory volume kiln takes it from), any
/// `config.json` or `.dockerconfigjson` anywhere, any file holding
/// `"auths"`, and for every process its cmdline, environ, open files and
/// writable memory. The script's own environ (`PROBE_MARKER`) and memory
/// are the controls that show the reading works where it is allowed.
const PROBE: &str = r#"#!/bin/sh
# The key of docker's config.json, spelled so that this script does not
# match it itself; what follows a match is kept to printable ASCII (the log
# is read as UTF-8).
key=au; key="${key}ths"
for f in /kaniko/.docker/config.json /kiln/registry-credentials/config.json /kiln/registry-secret/config.json; do
  if [ -e "$f" ]; then echo "file $f: $(cat "$f" 2>&1)"; else echo "file $f: absent"; fi
done
echo "dir /kiln/registry-credentials: $(ls -a /kiln/registry-credentials 2>&1 | tr '\n' ' ')"
echo "find config.json: $(find / -path /proc -prune -o -name config.json -print 2>/dev/null | tr '\n' ' ')"
echo "find .dockerconfigjson: $(find / -path /proc -prune -o -name .dockerconfigjson -print 2>/dev/null | tr '\n' ' ')"
for d in /* /kiln/registry-credentials; do
  case $d in /proc|/sys|/dev|/kiln|/kaniko) continue ;; esac
  grep -rho "\"$key\"[ -~]\{0,300\}" "$d" 2>/dev/null | sed "s|^|grep $d: |"
done
for p in /proc/[0-9]*; do
  pid=${p#/proc/}
  cmd=$(cat $p/cmdline 2>&1 | tr '\0' ' ')
  case "$cmd" in *executor*) who=kiln ;; *) who=other ;; esac
  echo "proc $pid ($who) cmdline: $cmd"
  echo "proc $pid ($who) environ: $(cat $p/environ 2>&1 | tr '\0' ' ')"
  echo "proc $pid ($who) fd: $(ls -l $p/fd/ 2>&1 | tr '\n' ' ')"
  if maps=$(cat $p/maps 2>&1); then
    found=$(echo "$maps" | while read range perms rest; do
      case $perms in rw*)
        s=$((0x${range%-*})); e=$((0x${range#*-}))
        dd if=$p/mem bs=4096 skip=$((s / 4096)) count=$(((e - s) / 4096)) 2>/dev/null ;;
      esac
    done | grep -o "$key[ -~]\{0,300\}" | head -n 3)
    echo "proc $pid ($who) mem: readable, found: $found"
  else
    echo "proc $pid ($who) mem: $maps"
  fi
done
"#;

/// A MultiArchBuild pushing to a registry that requires the credentials of
/// its `registrySecretRef`, whose Dockerfile has a RUN that tries every
/// way to read them ([`PROBE`]): the build pushes (so kiln had them), and
/// the RUN step's report, in the builder's log, holds nothing of them.
async fn run_steps_cannot_read_the_registry_credentials(
    client: &kube::Client,
    namespace: &str,
    node: &RealNode,
    uploader: &Registry,
    base: &str,
    work: &Path,
) {
    let (user, password) = ("kiln-probe-user", "Pr0be-pAssw0rd-4c1d");
    let auth = AuthRegistry::start(node, &work.join("auth-registry"), user, password);
    let certs = work.join("certs");
    let skopeo_inspect = |creds: Option<&str>, image: &str| {
        let mut command = std::process::Command::new("skopeo");
        command
            .arg("inspect")
            .arg(format!("--cert-dir={}", certs.display()));
        if let Some(creds) = creds {
            command.arg(format!("--creds={creds}"));
        }
        command.arg(format!("docker://{image}")).output().unwrap()
    };

    let dir = work.join("probe");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("probe.sh"), PROBE).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        format!(
            "FROM {base}\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCOPY probe.sh /probe.sh\n\
             RUN PROBE_MARKER=the-probe-reads-its-own-environ sh /probe.sh >/probe.txt 2>&1; \
             echo PROBE-\"\"BEGIN; cat /probe.txt; echo PROBE-\"\"END\n"
        ),
    )
    .unwrap();
    let context = upload_context(
        uploader,
        &format!("{}/kiln-e2e/probe-context", node.registry()),
        LocalContext::Dir(&dir),
    )
    .await
    .unwrap();

    let encoded = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    };
    let config = serde_json::json!({ "auths": { &auth.address: { "auth": &encoded } } });
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "push" },
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": { ".dockerconfigjson": config.to_string() },
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();

    let image = format!("{}/kiln-e2e/probe:1", auth.address);
    let build = real_node_sample_build(
        "probe",
        &context,
        vec![image.clone()],
        Some("push"),
        kiln_crds::UserNamespaces::Auto,
    );
    let status = build_to_the_end(client, namespace, build).await;
    assert_eq!(status.phase, Some(Phase::Succeeded), "{status:#?}");

    // The registry requires the credentials, and the image is there.
    let anonymous = skopeo_inspect(None, &image);
    assert!(!anonymous.status.success());
    assert!(
        String::from_utf8_lossy(&anonymous.stderr).contains("authentication required"),
        "{}",
        String::from_utf8_lossy(&anonymous.stderr)
    );
    let inspected = skopeo_inspect(Some(&format!("{user}:{password}")), &image);
    assert!(
        inspected.status.success(),
        "{}",
        String::from_utf8_lossy(&inspected.stderr)
    );

    // The RUN step's report, from the builder pod's log (the markers are
    // quoted in the step's command line, which kiln logs too).
    let requests = Api::<BuildRequest>::namespaced(client.clone(), namespace)
        .list(&Default::default())
        .await
        .unwrap();
    let request = requests
        .items
        .iter()
        .find(|r| {
            r.metadata
                .name
                .as_deref()
                .unwrap_or_default()
                .starts_with("probe-")
        })
        .unwrap();
    let pod = request.status.as_ref().unwrap().pod_name.clone().unwrap();
    let log = Api::<Pod>::namespaced(client.clone(), namespace)
        .logs(&pod, &LogParams::default())
        .await
        .unwrap();
    let report = log
        .split_once("PROBE-BEGIN")
        .and_then(|(_, rest)| rest.split_once("PROBE-END"))
        .map(|(report, _)| report.to_owned())
        .unwrap_or_else(|| panic!("no probe report in the builder's log:\n{log}"));
    for secret in [password, user, encoded.as_str()] {
        assert!(
            !report.contains(secret),
            "a RUN step read {secret:?}:\n{report}"
        );
    }
    for path in [
        "/kaniko/.docker/config.json",
        "/kiln/registry-credentials/config.json",
        "/kiln/registry-secret/config.json",
    ] {
        assert!(
            report.contains(&format!("file {path}: absent")),
            "{path}:\n{report}"
        );
    }
    for name in ["config.json", ".dockerconfigjson"] {
        assert!(
            report
                .lines()
                .any(|l| l.trim_end().ends_with(&format!("find {name}:"))),
            "{name} found:\n{report}"
        );
    }
    assert!(!report.contains("grep /"), "{report}");
    // kiln is pid 1 of its container: not dumpable, so a RUN step as root
    // without CAP_SYS_PTRACE opens none of these.
    for what in ["environ", "fd", "mem"] {
        let line = report
            .lines()
            .find(|l| l.contains(&format!("proc 1 (kiln) {what}:")))
            .unwrap_or_else(|| panic!("no {what} line for kiln:\n{report}"));
        assert!(line.contains("Permission denied"), "{line}\n{report}");
    }
    // The controls: the probe read its own environ and memory.
    assert!(
        report.contains("PROBE_MARKER=the-probe-reads-its-own-environ"),
        "{report}"
    );
    assert!(report.contains("(other) mem: readable"), "{report}");
}
