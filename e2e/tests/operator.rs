//! kiln-operator against the real control plane: the operator runs as a
//! plain process with the admin kubeconfig, its builder Jobs' pods are run
//! by the pod runner on the kwok nodes (the builder image is the `kiln`
//! binary; arm64 pods run RUN under qemu-user), and images go to a real
//! registry on loopback.
//!
//! One cluster for the binary; each test has its own namespace, operator
//! (watching that namespace only) and runner.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::ops::Deref;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Node;
use kiln_crds::{MultiArchBuild, Phase, PlatformPhase};
use kiln_e2e::binaries::workspace_binary;
use kiln_e2e::cluster::{Cluster, wait_for};
use kiln_e2e::runner::{Runner, RunnerConfig};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};

use support::{BUILD_TIMEOUT, Builds, fixtures, install_crds, registry, skopeo_raw, tail};

const BUILDER_IMAGE: &str = "registry.invalid/kiln-e2e/builder";

/// The operator as a host process; killed when dropped. Its log is kept
/// for failure messages.
struct Operator {
    // Held for kill_on_drop: the operator stops with the test.
    _child: tokio::process::Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Operator {
    async fn start(cluster: &Cluster, namespace: &str) -> Operator {
        Operator::start_with(cluster, namespace, &[], &[]).await
    }

    async fn start_with(
        cluster: &Cluster,
        namespace: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Operator {
        let binary = workspace_binary("kiln-operator", "kiln-operator").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("operator.log");
        let child = tokio::process::Command::new(binary)
            .args([
                &format!("--builder-image={BUILDER_IMAGE}:e2e"),
                "--builder-image-pull-policy=Never",
                &format!("--watch-namespace={namespace}"),
                "--metrics-bind-address=127.0.0.1:0",
                "--health-probe-bind-address=127.0.0.1:0",
                "--job-ttl-seconds-after-finished=600",
                "--verbosity=debug",
            ])
            .args(extra)
            .envs(env.iter().copied())
            .env("KUBECONFIG", cluster.kubeconfig())
            .env("RUST_LOG", "info,kiln_operator=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Operator {
            _child: child,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

struct Env {
    cluster: &'static Cluster,
    builds: Builds,
    fixtures: fixtures::Fixtures,
    runner: Runner,
    operator: Operator,
    _registry: registry::TestRegistry,
}

impl Deref for Env {
    type Target = Builds;
    fn deref(&self) -> &Builds {
        &self.builds
    }
}

async fn setup(prefix: &str) -> Env {
    let cluster = Cluster::shared().await.unwrap();
    let client = cluster.client().await.unwrap();
    install_crds(&client).await;
    let namespace = cluster.create_namespace(&client, prefix).await.unwrap();
    let registry = registry::TestRegistry::start();
    let fixtures = fixtures::push_busybox_index(registry.host()).await;
    let kiln = workspace_binary("kiln-builder", "kiln").unwrap();
    let config = RunnerConfig::default()
        .with_program(
            BUILDER_IMAGE,
            &kiln,
            &["/kiln/executor", "/kaniko/executor"],
        )
        .in_namespace(&namespace);
    let runner = Runner::start(cluster, config).await.unwrap();
    let operator = Operator::start(cluster, &namespace).await;
    Env {
        cluster,
        builds: Builds {
            client,
            namespace,
            registry_host: registry.host().to_owned(),
        },
        fixtures,
        runner,
        operator,
        _registry: registry,
    }
}

impl Env {
    /// [`Builds::wait_phase`] with the operator's log on failure.
    async fn wait_phase(&self, name: &str, phase: Phase) -> MultiArchBuild {
        self.builds
            .wait_phase(name, phase, || tail(&self.operator.log(), 60))
            .await
    }
}

#[tokio::test]
async fn the_sample_builds_natively_per_architecture_and_publishes_one_index() {
    let env = setup("operator-sample").await;
    let context = env.context(&format!(
        "FROM {}\nARG VERSION\nRUN uname -m > /arch && echo \"$VERSION\" > /version\nCOPY hello.txt /hello.txt\n",
        env.fixtures.index
    ));
    let build = env.sample("hello", context.path()).await;
    env.create(&build).await;
    let done = env.wait_phase("hello", Phase::Succeeded).await;
    let status = done.status.unwrap();

    // status.index matches the registry.
    let index_status = status.index.clone().unwrap();
    let digest = index_status.digest.clone().unwrap();
    assert_eq!(
        index_status.reference.as_deref(),
        Some(format!("{}/hello@{digest}", env.registry_host).as_str())
    );
    let index = skopeo_raw(&format!("{}/hello:1.0.0", env.registry_host), &[]);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(
        index["annotations"]["org.opencontainers.image.description"],
        "hello for amd64 and arm64"
    );
    let latest = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/hello:latest", env.registry_host))
        .output()
        .unwrap();
    assert_eq!(
        kiln_builder::image::sha256_digest(&latest.stdout),
        digest,
        "both destinations hold the same index"
    );
    let children = index["manifests"].as_array().unwrap();
    let platforms: Vec<String> = children
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);

    // Each platform: its digest in status, its config's architecture, and
    // its pod on a node of that architecture.
    let nodes = Api::<Node>::all(env.client.clone());
    for (entry, child) in status.platforms.iter().zip(children) {
        assert_eq!(entry.phase, Some(PlatformPhase::Succeeded));
        assert_eq!(entry.digest.as_deref(), child["digest"].as_str());
        let arch = entry.platform.split('/').nth(1).unwrap();
        let config = env.image_config(entry);
        assert_eq!(config["architecture"], arch);
        assert_eq!(
            config["config"]["Labels"]["org.opencontainers.image.source"],
            "https://github.com/example/hello"
        );

        let request = env
            .requests()
            .get(entry.build_request.as_deref().unwrap())
            .await
            .unwrap();
        let request_status = request.status.unwrap();
        assert_eq!(
            request_status.digest, entry.digest,
            "the builder reported its digest"
        );
        assert_eq!(
            request_status.media_type.as_deref(),
            Some("application/vnd.oci.image.manifest.v1+json")
        );
        assert!(request_status.duration_seconds.unwrap() > 0.0);
        let node = nodes
            .get(request_status.node_name.as_deref().unwrap())
            .await
            .unwrap();
        assert_eq!(
            node.metadata.labels.unwrap()["kubernetes.io/arch"],
            arch,
            "{} ran on a native node",
            entry.platform
        );
        let pod = request_status.pod_name.unwrap();
        let log = env.runner.log(&env.namespace, &pod).unwrap_or_default();
        if arch == "arm64" {
            assert!(
                log.contains("qemu-user emulation"),
                "arm64 RUN under qemu on this amd64 host:\n{log}"
            );
        }
    }
    // Per-platform images are pushed by digest only: no tag but the index's.
    let tags = std::process::Command::new("skopeo")
        .args(["list-tags", "--tls-verify=false"])
        .arg(format!("docker://{}/hello", env.registry_host))
        .output()
        .unwrap();
    let tags: serde_json::Value = serde_json::from_slice(&tags.stdout).unwrap();
    let mut tags: Vec<&str> = tags["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort();
    assert_eq!(tags, ["1.0.0", "latest"]);

    // The builder's access objects are gone once the build ended.
    let accounts = Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(
        env.client.clone(),
        &env.namespace,
    );
    for entry in &status.platforms {
        let access = format!("{}-builder", entry.build_request.as_deref().unwrap());
        let gone = wait_for(
            accounts.clone(),
            &access,
            |o: Option<&k8s_openapi::api::core::v1::ServiceAccount>| o.is_none(),
            Duration::from_secs(30),
            &access,
        )
        .await;
        assert!(gone.is_ok(), "{access} still exists");
    }
}

#[tokio::test]
async fn a_missing_architecture_waits_for_a_native_node() {
    let env = setup("operator-nodes").await;
    let context = env.context("FROM scratch\nCOPY hello.txt /hello.txt\n");
    // riscv64: no other test of this binary adds a node of it (the guide
    // examples add s390x), so none exists until this test adds one.
    let build = env.single("riscv64", "linux/riscv64", context.path()).await;
    env.create(&build).await;

    let message = "no native nodes available for architecture riscv64: add riscv64 nodes or set requireNativeNodes: false";
    let waiting = wait_for(
        env.builds(),
        "riscv64",
        move |b: Option<&MultiArchBuild>| {
            b.and_then(|b| b.status.as_ref())
                .and_then(|s| kiln_crds::condition::find(&s.conditions, "NativeNodesAvailable"))
                .is_some_and(|c| {
                    c.status == kiln_crds::ConditionStatus::False
                        && c.message.as_deref() == Some(message)
                })
        },
        BUILD_TIMEOUT,
        "NativeNodesAvailable=False",
    )
    .await;
    assert!(
        waiting.is_ok(),
        "{waiting:?}\noperator log:\n{}",
        tail(&env.operator.log(), 40)
    );
    // GitOps tools see a build waiting, with the operator's words.
    let pending = serde_json::to_value(env.builds().get("riscv64").await.unwrap()).unwrap();
    let health = support::health(&pending);
    assert_eq!(
        health.statuses(),
        ("InProgress", "Progressing"),
        "{health:?}"
    );
    assert_eq!(health.kstatus_message, message, "{health:?}");
    assert_eq!(health.argocd_message, message, "{health:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        env.jobs()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "no Job without a native node"
    );
    assert_eq!(
        env.builds()
            .get("riscv64")
            .await
            .unwrap()
            .status
            .unwrap()
            .phase,
        Some(Phase::Pending)
    );

    // A node of that architecture unblocks it.
    env.cluster
        .add_node(&format!("{}-riscv64", env.namespace), "riscv64")
        .await
        .unwrap();
    let done = env.wait_phase("riscv64", Phase::Succeeded).await;
    let mut live = serde_json::to_value(&done).unwrap();
    let health = support::health(&live);
    assert_eq!(health.statuses(), ("Current", "Healthy"), "{health:?}");
    assert!(
        health.argocd_message.starts_with("index ")
            && health.argocd_message.ends_with(" published"),
        "{health:?}"
    );
    // A spec change the operator has not acted on yet: no longer current.
    live["metadata"]["generation"] = (done.metadata.generation.unwrap() + 1).into();
    let health = support::health(&live);
    assert_eq!(
        health.statuses(),
        ("InProgress", "Progressing"),
        "{health:?}"
    );
    let entry = &done.status.unwrap().platforms[0];
    let config = env.image_config(entry);
    assert_eq!(config["architecture"], "riscv64");
}

#[tokio::test]
async fn without_require_native_nodes_a_platform_builds_on_any_node() {
    let env = setup("operator-anynode").await;
    let context = env.context("FROM scratch\nCOPY hello.txt /hello.txt\n");
    // No ppc64le node exists; the check is off, so the Job schedules on
    // whatever node fits and the builder builds the foreign platform.
    let mut build = env.single("ppc", "linux/ppc64le", context.path()).await;
    build.spec.build.scheduling.require_native_nodes = false;
    env.create(&build).await;
    let done = env.wait_phase("ppc", Phase::Succeeded).await;
    let status = done.status.unwrap();
    let nodes = kiln_crds::condition::find(&status.conditions, "NativeNodesAvailable").unwrap();
    assert_eq!(nodes.status, kiln_crds::ConditionStatus::True);
    let entry = &status.platforms[0];
    let config = env.image_config(entry);
    assert_eq!(config["architecture"], "ppc64le");
    let request = env
        .requests()
        .get(entry.build_request.as_deref().unwrap())
        .await
        .unwrap();
    let node = request.status.unwrap().node_name.unwrap();
    let node = Api::<Node>::all(env.client.clone())
        .get(&node)
        .await
        .unwrap();
    assert_ne!(
        node.metadata.labels.unwrap()["kubernetes.io/arch"],
        "ppc64le"
    );
}

/// Two fake amd64 nodes of this test alone: labelled and tainted with the
/// namespace, so no other test's pod lands on them (or is hurt when one
/// goes NotReady), and Ready once kwok has taken them over.
async fn private_nodes(env: &Env, names: &[&str]) {
    let nodes = Api::<Node>::all(env.client.clone());
    for name in names {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name,
                "labels": {
                    "type": "kwok",
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/hostname": name,
                    "kiln.dev/e2e-pool": env.namespace,
                },
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {"taints": [{"key": "kiln.dev/e2e-pool", "value": env.namespace, "effect": "NoSchedule"}]},
            "status": {"nodeInfo": {"architecture": "amd64", "operatingSystem": "linux"}},
        }))
        .unwrap();
        nodes.create(&PostParams::default(), &node).await.unwrap();
    }
    for name in names {
        wait_for(
            nodes.clone(),
            name,
            kiln_e2e::cluster::is_node_ready(),
            Duration::from_secs(60),
            &format!("{name} Ready"),
        )
        .await
        .unwrap();
    }
}

/// What a kubelet that stopped working looks like: kwok lets go of the
/// node (no more heartbeats) and its Ready condition turns False.
async fn make_not_ready(env: &Env, name: &str) {
    let nodes = Api::<Node>::all(env.client.clone());
    nodes
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"type": null}}})),
        )
        .await
        .unwrap();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Strategic(serde_json::json!({"status": {"conditions": [{
                "type": "Ready", "status": "False", "reason": "KubeletNotReady",
                "message": "container runtime is down (kiln e2e)",
                "lastHeartbeatTime": now, "lastTransitionTime": now,
            }]}})),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_node_going_not_ready_mid_build_moves_the_build_to_another_node() {
    let env = setup("operator-notready").await;
    let pool = [
        format!("{}-a", env.namespace),
        format!("{}-b", env.namespace),
    ];
    let pool: Vec<&str> = pool.iter().map(String::as_str).collect();
    private_nodes(&env, &pool).await;
    // Long enough to be mid-build when the node goes away.
    let context = env.context(&format!(
        "FROM {}\nRUN sleep 20\nCOPY hello.txt /hello.txt\n",
        env.fixtures.amd64.reference
    ));
    let mut build = env.single("moved", "linux/amd64", context.path()).await;
    // No retries: a lost node must not use them up.
    build.spec.build.retries = 0;
    let scheduling = &mut build.spec.build.scheduling;
    scheduling
        .node_selector
        .insert("kiln.dev/e2e-pool".into(), env.namespace.clone());
    scheduling.tolerations = vec![serde_json::from_value(serde_json::json!({
        "key": "kiln.dev/e2e-pool", "operator": "Equal", "value": env.namespace, "effect": "NoSchedule",
    }))
    .unwrap()];
    env.create(&build).await;

    let request_name = "moved-linux-amd64-g1";
    let requests = env.requests();
    wait_for(
        requests.clone(),
        request_name,
        |r: Option<&kiln_crds::BuildRequest>| {
            r.and_then(|r| r.status.as_ref())
                .is_some_and(|s| s.node_name.is_some())
        },
        Duration::from_secs(60),
        "attempt 1 scheduled",
    )
    .await
    .unwrap();
    let first = requests.get(request_name).await.unwrap().status.unwrap();
    assert_eq!(first.attempts, Some(1));
    let lost = first.node_name.unwrap();
    let other = *pool.iter().find(|n| **n != lost).unwrap();
    make_not_ready(&env, &lost).await;

    let done = env.wait_phase("moved", Phase::Succeeded).await;
    assert!(
        done.status.unwrap().index.is_some(),
        "the index is published"
    );
    let status = requests.get(request_name).await.unwrap().status.unwrap();
    assert_eq!(status.attempts, Some(2));
    assert_eq!(
        status.node_name.as_deref(),
        Some(other),
        "attempt 2 ran on the other node"
    );
    let [disruption] = status.disruptions.as_slice() else {
        panic!("one disruption: {:?}", status.disruptions)
    };
    assert_eq!(
        (
            disruption.attempt,
            disruption.node.as_deref(),
            disruption.reason.as_str(),
            disruption.node_avoided
        ),
        (1, Some(lost.as_str()), "NodeNotReady", true)
    );
    assert_eq!(
        disruption.message.as_deref(),
        Some(
            format!("node {lost} is not Ready (Ready=False): container runtime is down (kiln e2e)")
                .as_str()
        )
    );
    // Attempt 1's Job was abandoned; attempt 2's keeps off the lost node.
    let jobs: Vec<Job> = env.jobs().list(&ListParams::default()).await.unwrap().items;
    let names: Vec<_> = jobs
        .iter()
        .map(|j| j.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, [format!("{request_name}-2")]);
    let affinity = serde_json::to_value(
        jobs[0]
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .affinity
            .clone(),
    )
    .unwrap();
    assert_eq!(
        affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchFields"][0]["values"],
        serde_json::json!([lost])
    );

    let nodes = Api::<Node>::all(env.client.clone());
    for name in &pool {
        nodes.delete(name, &DeleteParams::default()).await.unwrap();
    }
}

#[tokio::test]
async fn a_failing_run_is_retried_then_fails_the_build_without_an_index() {
    let env = setup("operator-fail").await;
    let context = env.context(&format!(
        "FROM {}\nRUN echo building; exit 3\n",
        env.fixtures.amd64.reference
    ));
    let mut build = env.single("broken", "linux/amd64", context.path()).await;
    build.spec.build.retries = 1;
    env.create(&build).await;
    let failed = env.wait_phase("broken", Phase::Failed).await;
    let live = serde_json::to_value(&failed).unwrap();
    let status = failed.status.unwrap();
    let entry = &status.platforms[0];
    assert_eq!(entry.attempts, Some(2), "one retry");
    let ready = kiln_crds::condition::find(&status.conditions, "Ready").unwrap();
    let message = ready.message.clone().unwrap();
    assert!(
        message.starts_with("linux/amd64 failed: failed after 2 attempt(s): "),
        "{message}"
    );
    assert!(
        message.contains("exit 3") || message.contains("exit status 3"),
        "the builder's message: {message}"
    );
    assert!(message.ends_with("; no index published"), "{message}");
    let health = support::health(&live);
    assert_eq!(health.statuses(), ("Failed", "Degraded"), "{health:?}");
    assert_eq!(health.kstatus_message, message, "{health:?}");
    assert_eq!(health.argocd_message, message, "{health:?}");
    let jobs = env.jobs().list(&ListParams::default()).await.unwrap();
    let mut names: Vec<_> = jobs
        .items
        .iter()
        .map(|j| j.metadata.name.clone().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["broken-linux-amd64-g1-1", "broken-linux-amd64-g1-2"]
    );
    let index = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/hello:1.0.0", env.registry_host))
        .output()
        .unwrap();
    assert!(!index.status.success(), "no index is pushed");
}

/// A cosign key pair made by cosign with `password`, stored as
/// `cosign generate-key-pair k8s://…` stores it; returns the public key.
async fn signing_secret(env: &Env, name: &str, password: &str, dir: &std::path::Path) -> PathBuf {
    let cosign = support::tool_dir("cosign").join("cosign");
    let output = std::process::Command::new(cosign)
        .args(["generate-key-pair", "--output-key-prefix"])
        .arg(dir.join("cosign"))
        .env("COSIGN_PASSWORD", password)
        .env("HOME", dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap();
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "stringData": {
            "cosign.key": read("cosign.key"),
            "cosign.pub": read("cosign.pub"),
            "cosign.password": password,
        },
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(env.client.clone(), &env.namespace)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    dir.join("cosign.pub")
}

/// `spec.build.output.signing`: the operator signs the index and the
/// platform image with the Secret's key (builder pods never see it), and
/// cosign verifies both; a Secret whose password does not open its key
/// fails the build with that message. With `attestLayout: buildkit` the
/// index it publishes also lists the provenance the builder pod attached.
#[tokio::test]
async fn the_operator_signs_what_it_publishes_with_the_key_in_a_secret() {
    let env = setup("operator-sign").await;
    let keys = tempfile::tempdir().unwrap();
    let public = signing_secret(&env, "cosign-key", "e2e-password", keys.path()).await;
    let context = env.context("FROM scratch\nCOPY hello.txt /hello.txt\n");
    let mut build = env.single("signed", "linux/amd64", context.path()).await;
    build.spec.build.output.signing = Some(kiln_crds::spec::SigningSpec {
        key_secret_ref: kiln_crds::spec::SecretRef {
            name: "cosign-key".into(),
        },
    });
    build.spec.build.output.provenance = Some(kiln_crds::spec::ProvenanceMode::Min);
    build.spec.build.output.attest_layout = kiln_crds::spec::AttestLayout::Buildkit;
    env.create(&build).await;
    let done = env.wait_phase("signed", Phase::Succeeded).await;
    let status = done.status.unwrap();
    let index = status.index.unwrap().reference.unwrap();
    let child = format!(
        "{}/hello@{}",
        env.registry_host,
        status.platforms[0].digest.clone().unwrap()
    );
    let listed = skopeo_raw(&index, &[]);
    let entries = listed["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{listed}");
    assert_eq!(
        entries[1]["annotations"]["vnd.docker.reference.digest"], entries[0]["digest"],
        "{listed}"
    );
    assert_eq!(entries[1]["platform"]["os"], "unknown", "{listed}");
    let cosign = support::tool_dir("cosign").join("cosign");
    for reference in [&index, &child] {
        let verified = std::process::Command::new(&cosign)
            .args([
                "verify",
                "--insecure-ignore-tlog=true",
                "--allow-http-registry=true",
            ])
            .arg(format!("--key={}", public.display()))
            .arg(reference)
            .env("HOME", keys.path())
            .output()
            .unwrap();
        assert!(
            verified.status.success(),
            "cosign verify {reference}: {}",
            String::from_utf8_lossy(&verified.stderr)
        );
    }
    // No builder pod was given the key: the Jobs' pods name no cosign Secret.
    let jobs = env.jobs().list(&ListParams::default()).await.unwrap();
    let specs = serde_json::to_string(&jobs.items).unwrap();
    assert!(
        !specs.contains("cosign-key"),
        "a builder Job refers to the key"
    );

    // A password that does not open the key fails the build, saying so.
    let other = tempfile::tempdir().unwrap();
    signing_secret(&env, "wrong-password", "right", other.path()).await;
    let secrets =
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(env.client.clone(), &env.namespace);
    secrets
        .patch(
            "wrong-password",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {"cosign.password": "wrong"}})),
        )
        .await
        .unwrap();
    let mut broken = env
        .single("badly-signed", "linux/amd64", context.path())
        .await;
    broken.spec.build.destinations = vec![format!("{}/badly:1", env.registry_host)];
    broken.spec.build.output.signing = Some(kiln_crds::spec::SigningSpec {
        key_secret_ref: kiln_crds::spec::SecretRef {
            name: "wrong-password".into(),
        },
    });
    env.create(&broken).await;
    let failed = env.wait_phase("badly-signed", Phase::Failed).await;
    let ready = kiln_crds::condition::find(&failed.status.as_ref().unwrap().conditions, "Ready")
        .unwrap()
        .message
        .clone()
        .unwrap();
    assert!(
        ready.contains(&format!(
            "the signing key in Secret {}/wrong-password cannot be opened with this password: its cosign.password does not open its cosign.key",
            env.namespace
        )),
        "{ready}"
    );
}

#[tokio::test]
async fn deleting_a_build_mid_way_removes_its_requests_jobs_and_pods() {
    let env = setup("operator-delete").await;
    let context = env.context(&format!(
        "FROM {}\nRUN sleep 60\n",
        env.fixtures.amd64.reference
    ));
    let build = env.single("slow", "linux/amd64", context.path()).await;
    env.create(&build).await;
    env.wait_phase("slow", Phase::Building).await;
    let running = wait_for(
        env.jobs(),
        "slow-linux-amd64-g1-1",
        |j: Option<&Job>| j.is_some(),
        BUILD_TIMEOUT,
        "the builder Job",
    )
    .await;
    assert!(running.is_ok());

    env.builds()
        .delete("slow", &DeleteParams::foreground())
        .await
        .unwrap();
    let gone = wait_for(
        env.builds(),
        "slow",
        |o: Option<&MultiArchBuild>| o.is_none(),
        Duration::from_secs(120),
        "slow deleted",
    )
    .await;
    assert!(gone.is_ok(), "{gone:?}");
    let pods =
        Api::<k8s_openapi::api::core::v1::Pod>::namespaced(env.client.clone(), &env.namespace);
    for _ in 0..60 {
        let requests = env
            .requests()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len();
        let jobs = env
            .jobs()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len();
        let left = pods.list(&ListParams::default()).await.unwrap().items.len();
        if requests + jobs + left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("requests, jobs or pods remain after deleting the build");
}

/// Names of the Jobs in the namespace, sorted.
async fn job_names(env: &Env) -> Vec<String> {
    let mut names: Vec<String> = env
        .jobs()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|j| j.metadata.name.unwrap())
        .collect();
    names.sort();
    names
}

/// Waits until the Job `name` exists.
async fn wait_job(env: &Env, name: &str) {
    let found = wait_for(
        env.jobs(),
        name,
        |j: Option<&Job>| j.is_some(),
        BUILD_TIMEOUT,
        name,
    )
    .await;
    assert!(
        found.is_ok(),
        "{found:?}\noperator log:\n{}",
        tail(&env.operator.log(), 40)
    );
}

/// `kubectl auth can-i` as the holder of `token`.
async fn can_i(env: &Env, token: &str, args: &[&str]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let port: u16 = env
        .cluster
        .api_url()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token).unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        kiln_e2e::runner::pod_kubeconfig(port, &env.cluster.ca_cert(), &token_file, &env.namespace),
    )
    .unwrap();
    let output = tokio::process::Command::new(env.cluster.kubectl())
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["auth", "can-i", "-n", &env.namespace])
        .args(args)
        .output()
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(
        answer == "yes" || answer == "no",
        "kubectl auth can-i {args:?}: {answer} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    answer == "yes"
}

#[tokio::test]
async fn a_builder_token_may_patch_its_own_status_and_nothing_else() {
    let env = setup("operator-rbac").await;
    let context = env.context(&format!(
        "FROM {}\nRUN sleep 30\n",
        env.fixtures.amd64.reference
    ));
    let build = env.single("rbac", "linux/amd64", context.path()).await;
    env.create(&build).await;
    wait_job(&env, "rbac-linux-amd64-g1-1").await;

    let accounts = Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(
        env.client.clone(),
        &env.namespace,
    );
    let request = k8s_openapi::api::authentication::v1::TokenRequest::default();
    let token = accounts
        .create_token_request(
            "rbac-linux-amd64-g1-builder",
            &PostParams::default(),
            &request,
        )
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let own = "buildrequests.kiln.dev/rbac-linux-amd64-g1";
    assert!(can_i(&env, &token, &["patch", own, "--subresource=status"]).await);
    assert!(can_i(&env, &token, &["get", own, "--subresource=status"]).await);
    for denied in [
        vec![
            "patch",
            "buildrequests.kiln.dev/someone-else",
            "--subresource=status",
        ],
        vec!["patch", own],
        vec!["get", own],
        vec!["list", "buildrequests.kiln.dev"],
        vec!["get", "secrets"],
        vec!["get", "secrets/registry-credentials"],
        vec!["list", "pods"],
        vec!["create", "pods"],
        vec!["get", "multiarchbuilds.kiln.dev/rbac"],
    ] {
        assert!(
            !can_i(&env, &token, &denied).await,
            "the builder may not {denied:?}"
        );
    }
}

#[tokio::test]
async fn an_operator_restarted_mid_build_finishes_it_without_duplicate_jobs() {
    let mut env = setup("operator-restart").await;
    let context = env.context(&format!(
        "FROM {}\nRUN sleep 8 && echo done > /done\n",
        env.fixtures.amd64.reference
    ));
    let build = env.single("restart", "linux/amd64", context.path()).await;
    env.create(&build).await;
    wait_job(&env, "restart-linux-amd64-g1-1").await;

    // Killed mid-build (dropping the child kills it), then started again.
    env.operator = Operator::start(env.cluster, &env.namespace).await;
    env.wait_phase("restart", Phase::Succeeded).await;
    assert_eq!(job_names(&env).await, ["restart-linux-amd64-g1-1"]);
    let requests = env
        .requests()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(requests.len(), 1, "one BuildRequest");
}

#[tokio::test]
async fn with_two_replicas_only_the_leader_acts() {
    let mut env = setup("operator-leader").await;
    let election = |identity: &'static str| [("KILN_POD_NAME", identity)];
    let namespace = env.namespace.clone();
    let args = [
        "--leader-elect=true".to_owned(),
        format!("--leader-election-namespace={namespace}"),
        "--leader-election-lease-name=kiln-operator".to_owned(),
        // On a loaded two-core machine a renewal can be late by more than
        // the default 15 s, and the standby then rightly takes over; this
        // test is about a healthy leader, so its Lease outlasts any stall.
        "--leader-election-lease-duration=120".to_owned(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Replace the plain operator with two electing replicas.
    env.operator =
        Operator::start_with(env.cluster, &namespace, &args, &election("replica-a")).await;
    let second = Operator::start_with(env.cluster, &namespace, &args, &election("replica-b")).await;

    let leases = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(
        env.client.clone(),
        &namespace,
    );
    let held = wait_for(
        leases.clone(),
        "kiln-operator",
        |l: Option<&k8s_openapi::api::coordination::v1::Lease>| {
            l.and_then(|l| l.spec.as_ref())
                .and_then(|s| s.holder_identity.as_deref())
                .is_some_and(|h| !h.is_empty())
        },
        Duration::from_secs(60),
        "the Lease getting a holder",
    )
    .await;
    assert!(
        held.is_ok(),
        "{held:?}\n{}\n{}",
        env.operator.log(),
        second.log()
    );

    let context = env.context(&format!(
        "FROM {}\nCOPY hello.txt /\n",
        env.fixtures.amd64.reference
    ));
    let build = env.single("leader", "linux/amd64", context.path()).await;
    env.create(&build).await;
    env.wait_phase("leader", Phase::Succeeded).await;
    assert_eq!(job_names(&env).await, ["leader-linux-amd64-g1-1"]);

    let holder = leases
        .get("kiln-operator")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
        .unwrap();
    let (leader, standby) = if holder == "replica-a" {
        (env.operator.log(), second.log())
    } else {
        assert_eq!(holder, "replica-b");
        (second.log(), env.operator.log())
    };
    assert!(leader.contains("became the leader"), "{leader}");
    assert!(
        !standby.contains("became the leader"),
        "the standby must not lead:\n{standby}"
    );
    assert!(
        !standby.contains("builder Job"),
        "the standby must not act:\n{standby}"
    );
}

/// `kiln --driver=k8s` with the admin kubeconfig, in the test's namespace.
async fn kiln_k8s(env: &Env, args: &[String]) -> std::process::Output {
    let kiln = workspace_binary("kiln-builder", "kiln").unwrap();
    let config = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(kiln);
    // The guides' examples say --driver=k8s themselves.
    if !args.iter().any(|a| a.starts_with("--driver")) {
        command.arg("--driver=k8s");
    }
    command
        .arg(format!("--namespace={}", env.namespace))
        .args(args)
        .env("KUBECONFIG", env.cluster.kubeconfig())
        .env("DOCKER_CONFIG", config.path())
        .env_remove("KILN_BUILD_REQUEST")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn kiln_driver_k8s_uploads_the_context_follows_the_build_and_prints_the_index() {
    let env = setup("operator-cli").await;
    let context = env.context(&format!(
        "FROM {}\nRUN uname -m > /arch\nCOPY hello.txt /hello.txt\n",
        env.fixtures.index
    ));
    let output = kiln_k8s(
        &env,
        &[
            format!("--context=dir://{}", context.path().display()),
            format!("--destination={}/cli:1.0", env.registry_host),
            "--multi-platform=linux/amd64,linux/arm64".into(),
            "--publish-index".into(),
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{stderr}\noperator:\n{}",
        tail(&env.operator.log(), 40)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let reference = stdout.trim();
    let index = skopeo_raw(&format!("{}/cli:1.0", env.registry_host), &[]);
    let raw = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/cli:1.0", env.registry_host))
        .output()
        .unwrap();
    assert_eq!(
        reference,
        format!(
            "{}/cli@{}",
            env.registry_host,
            kiln_builder::image::sha256_digest(&raw.stdout)
        )
    );
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    for line in [
        "[linux/amd64] Succeeded",
        "[linux/arm64] Succeeded",
        "MultiArchBuild Succeeded",
    ] {
        assert!(
            stderr.contains(line),
            "missing progress line {line:?}:\n{stderr}"
        );
    }
    // The context went to the registry as an artifact next to the image.
    let builds = env
        .builds()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(builds.len(), 1);
    let used = &builds[0].spec.build.context;
    assert!(
        used.starts_with(&format!("oci://{}/cli/context@sha256:", env.registry_host)),
        "{used}"
    );
}

#[tokio::test]
async fn kiln_driver_k8s_fails_with_the_build_message_and_detach_returns_at_once() {
    let env = setup("operator-cli-fail").await;
    let context = env.context(&format!(
        "FROM {}\nRUN exit 3\n",
        env.fixtures.amd64.reference
    ));
    let output = kiln_k8s(
        &env,
        &[
            format!("--context=dir://{}", context.path().display()),
            format!("--destination={}/cli:broken", env.registry_host),
            "--multi-platform=linux/amd64".into(),
            "--publish-index".into(),
            "--log-format=json".into(),
        ],
    )
    .await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    // With --log-format=json every line the driver prints (created,
    // progress, the error) is a JSON object.
    let messages: Vec<String> = stderr
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{stderr}"));
            value["fields"]["message"]
                .as_str()
                .unwrap_or_else(|| panic!("no message: {line}"))
                .to_string()
        })
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with(&format!("created MultiArchBuild {}/", env.namespace))),
        "{stderr}"
    );
    assert!(
        messages.iter().any(|m| m.starts_with("[linux/amd64] ")),
        "{stderr}"
    );
    let last = messages.last().cloned().unwrap_or_default();
    assert!(
        last.contains("failed: linux/amd64 failed: failed after 3 attempt(s): "),
        "{stderr}"
    );
    assert!(last.contains("exit 3"), "{stderr}");

    let slow = env.context(&format!(
        "FROM {}\nRUN sleep 30\n",
        env.fixtures.amd64.reference
    ));
    let started = std::time::Instant::now();
    let output = kiln_k8s(
        &env,
        &[
            format!("--context=dir://{}", slow.path().display()),
            format!("--destination={}/cli:detached", env.registry_host),
            "--multi-platform=linux/amd64".into(),
            "--publish-index".into(),
            "--detach".into(),
        ],
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "--detach does not wait for the build"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let name = stdout
        .trim()
        .strip_prefix("multiarchbuild/")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_owned();
    assert!(env.builds().get_opt(&name).await.unwrap().is_some());
}

/// The `os/architecture` of each entry of the index at `reference`, and
/// the index's media type.
fn index_of(reference: &str) -> (String, Vec<String>, serde_json::Value) {
    let index = skopeo_raw(reference, &[]);
    let platforms = index["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("{reference} is not an index: {index}"))
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    (
        index["mediaType"].as_str().unwrap().to_owned(),
        platforms,
        index,
    )
}

/// The layer media types of every child of `index` in `repository`.
fn child_layer_types(repository: &str, index: &serde_json::Value) -> Vec<String> {
    let mut types = Vec::new();
    for child in index["manifests"].as_array().unwrap() {
        let digest = child["digest"].as_str().unwrap();
        let manifest = skopeo_raw(&format!("{repository}@{digest}"), &[]);
        assert_eq!(manifest["mediaType"], child["mediaType"], "{manifest}");
        for layer in manifest["layers"].as_array().unwrap() {
            types.push(layer["mediaType"].as_str().unwrap().to_owned());
        }
    }
    types.sort();
    types.dedup();
    types
}

/// The tags of `repository` (none when it does not exist).
fn tags_of(repository: &str) -> Vec<String> {
    let output = std::process::Command::new("skopeo")
        .args(["list-tags", "--tls-verify=false"])
        .arg(format!("docker://{repository}"))
        .output()
        .unwrap();
    if !output.status.success() {
        return Vec::new();
    }
    let listed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    listed["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

/// The `--driver=k8s` command lines of both seed guides, flag for flag
/// (the registry replaced by the loopback one, `$(date +%s)` by a fixed
/// tag, the git URL by a `git daemon` this test starts), each checked for
/// the image its text promises:
///
/// - 001 "Kubernetes Build Configuration" (also the Job of "Kubernetes
///   Build Script"): `--context=/workspace` with an absolute
///   `--dockerfile`, two platforms and no `--publish-index`: the
///   multi-platform image at the tag;
/// - 001 "Advanced Kubernetes Configuration": three platforms (s390x on a
///   node the test adds), zstd, index annotations: the index carries all
///   three, the annotations and zstd layers;
/// - 001 "Performance Optimization": zstd at level 3, cache TTL, retries;
/// - 000 "Kubernetes Multi-Arch Build": a `git=` context built by the
///   cluster from the repository (not uploaded) and
///   `--legacy-manifest-list=true`: a Docker manifest list of Docker
///   manifests;
/// - 000 "Advanced Multi-Platform with Caching": `-${ARCH}` as kiln
///   receives it quoted: each platform's RUN layer cached in its own
///   repository, and an OCI index.
#[tokio::test]
async fn the_guides_k8s_driver_examples_give_their_images() {
    let env = setup("operator-guides").await;
    let host = env.registry_host.clone();
    let plain = env.context("FROM scratch\nCOPY hello.txt /hello.txt\n");
    let workspace = plain.path().display().to_string();
    let run = |args: Vec<String>| {
        let env = &env;
        async move {
            let output = kiln_k8s(env, &args).await;
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            assert!(
                output.status.success(),
                "{args:?}\n{stderr}\noperator:\n{}",
                tail(&env.operator.log(), 40)
            );
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        }
    };
    let oci_index = "application/vnd.oci.image.index.v1+json";
    let zstd = "application/vnd.oci.image.layer.v1.tar+zstd";
    let pair = ["linux/amd64", "linux/arm64"];

    // 001: Kubernetes Build Configuration / Build Script.
    let image = format!("{host}/myrepo/myimage:latest");
    let printed = run(vec![
        format!("--dockerfile={workspace}/Dockerfile"),
        format!("--context={workspace}"),
        format!("--destination={image}"),
        "--platform=linux/amd64,linux/arm64".into(),
        "--driver=k8s".into(),
        "--cache=true".into(),
        format!("--cache-repo={host}/myrepo/cache"),
        "--push-retry=3".into(),
        "--push-retry-initial-delay=1000".into(),
        "--push-retry-max-delay=30000".into(),
    ])
    .await;
    let (media_type, platforms, _) = index_of(&image);
    assert_eq!(
        (media_type.as_str(), platforms),
        (oci_index, pair.map(String::from).to_vec())
    );
    assert!(
        printed.starts_with(&format!("{host}/myrepo/myimage@sha256:")),
        "{printed}"
    );

    // 001: Advanced Kubernetes Configuration, with an s390x node to build on.
    env.cluster
        .add_node(&format!("{}-s390x", env.namespace), "s390x")
        .await
        .unwrap();
    let image = format!("{host}/myrepo/myimage:1700000000");
    run(vec![
        format!("--dockerfile={workspace}/Dockerfile"),
        format!("--context={workspace}"),
        format!("--destination={image}"),
        "--platform=linux/amd64,linux/arm64,linux/s390x".into(),
        "--driver=k8s".into(),
        "--cache=true".into(),
        format!("--cache-repo={host}/myrepo/cache"),
        "--cache-ttl=168h".into(),
        "--compression=zstd".into(),
        "--publish-index=true".into(),
        "--index-annotations=org.opencontainers.image.title=MyApp".into(),
        "--index-annotations=org.opencontainers.image.version=1.0".into(),
        "--push-retry=5".into(),
        "--push-retry-initial-delay=2000".into(),
        "--push-retry-max-delay=60000".into(),
    ])
    .await;
    let (media_type, platforms, index) = index_of(&image);
    assert_eq!(media_type, oci_index);
    assert_eq!(platforms, ["linux/amd64", "linux/arm64", "linux/s390x"]);
    assert_eq!(
        index["annotations"]["org.opencontainers.image.title"],
        "MyApp"
    );
    assert_eq!(
        index["annotations"]["org.opencontainers.image.version"],
        "1.0"
    );
    assert_eq!(
        child_layer_types(&format!("{host}/myrepo/myimage"), &index),
        [zstd]
    );

    // 001: Performance Optimization.
    let image = format!("{host}/myrepo/optimized:latest");
    run(vec![
        format!("--dockerfile={workspace}/Dockerfile"),
        format!("--context={workspace}"),
        format!("--destination={image}"),
        "--platform=linux/amd64,linux/arm64".into(),
        "--driver=k8s".into(),
        "--cache=true".into(),
        format!("--cache-repo={host}/myrepo/cache"),
        "--cache-ttl=336h".into(),
        "--compression=zstd".into(),
        "--compression-level=3".into(),
        "--publish-index=true".into(),
        "--push-retry=3".into(),
        "--push-retry-initial-delay=1000".into(),
        "--push-retry-max-delay=30000".into(),
        "--verbosity=info".into(),
    ])
    .await;
    let (media_type, platforms, index) = index_of(&image);
    assert_eq!(
        (media_type.as_str(), platforms),
        (oci_index, pair.map(String::from).to_vec())
    );
    assert_eq!(
        child_layer_types(&format!("{host}/myrepo/optimized"), &index),
        [zstd]
    );

    // 000: Kubernetes Multi-Arch Build, from a git repository.
    let repository = tempfile::tempdir().unwrap();
    std::fs::write(
        repository.path().join("Dockerfile"),
        "FROM scratch\nCOPY version.txt /version.txt\n",
    )
    .unwrap();
    std::fs::write(repository.path().join("version.txt"), "from git\n").unwrap();
    let git = support::git_daemon::GitDaemon::serve(
        repository.path(),
        std::net::Ipv4Addr::LOCALHOST.into(),
    );
    let image = format!("{host}/org/app:1.2.3");
    let context = format!("git={}#main", git.url());
    run(vec![
        format!("--context={context}"),
        "--dockerfile=Dockerfile".into(),
        format!("--destination={image}"),
        "--multi-platform=linux/amd64,linux/arm64".into(),
        "--driver=k8s".into(),
        "--publish-index=true".into(),
        "--legacy-manifest-list=true".into(),
        "--require-native-nodes=true".into(),
    ])
    .await;
    let (media_type, platforms, index) = index_of(&image);
    assert_eq!(
        (media_type.as_str(), platforms),
        (
            "application/vnd.docker.distribution.manifest.list.v2+json",
            pair.map(String::from).to_vec()
        )
    );
    assert_eq!(
        child_layer_types(&format!("{host}/org/app"), &index),
        ["application/vnd.docker.image.rootfs.diff.tar.gzip"]
    );
    // The cluster fetched the repository itself: nothing was uploaded.
    let builds = env
        .builds()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let from_git: Vec<&str> = builds
        .iter()
        .map(|b| b.spec.build.context.as_str())
        .filter(|c| c.contains("git://"))
        .collect();
    assert_eq!(from_git, [context.as_str()]);
    let amd64 = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest = skopeo_raw(&format!("{host}/org/app@{amd64}"), &[]);
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let blob = reqwest::get(format!("http://{host}/v2/org/app/blobs/{layer}"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&blob[..]));
    let mut found = None;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            == "version.txt"
        {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
            found = Some(text);
        }
    }
    assert_eq!(found.as_deref(), Some("from git\n"));

    // 000: Advanced Multi-Platform with Caching.
    let cached = env.context(&format!(
        "FROM {}\nRUN uname -m > /arch\nCOPY hello.txt /hello.txt\n",
        env.fixtures.index
    ));
    let image = format!("{host}/org/cached:1.0");
    run(vec![
        format!("--context=dir://{}", cached.path().display()),
        format!("--destination={image}"),
        "--multi-platform=linux/amd64,linux/arm64".into(),
        "--driver=k8s".into(),
        "--cache=true".into(),
        format!("--cache-repo={host}/org/cache"),
        "--arch-cache-repo-suffix=-${ARCH}".into(),
        "--publish-index=true".into(),
        "--oci-mode=oci".into(),
    ])
    .await;
    let (media_type, platforms, _) = index_of(&image);
    assert_eq!(
        (media_type.as_str(), platforms),
        (oci_index, pair.map(String::from).to_vec())
    );
    for arch in ["amd64", "arm64"] {
        assert!(
            !tags_of(&format!("{host}/org/cache-{arch}")).is_empty(),
            "no RUN layer cached in {host}/org/cache-{arch}"
        );
    }
    assert!(tags_of(&format!("{host}/org/cache")).is_empty());
}
