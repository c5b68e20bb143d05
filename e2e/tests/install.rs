//! The two install paths against the real control plane: `helm install`
//! of `charts/kiln`, then (after `helm uninstall`) `kubectl apply -k
//! config/default`. Each time the operator Deployment's pod is run by the
//! pod runner as the `kiln-operator` binary, with the install's own service
//! account token, so the chart's and kustomize's RBAC are what the build
//! exercises; then the sample MultiArchBuild must succeed.
//!
//! Its own test binary (and cluster): the installed operator watches every
//! namespace, which would interfere with the per-namespace operators of
//! the other suites.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kiln_crds::Phase;
use kiln_e2e::binaries::workspace_binary;
use kiln_e2e::cluster::Cluster;
use kiln_e2e::runner::{Runner, RunnerConfig};
use kube::Client;
use kube::api::{Api, ListParams};

use support::{Builds, fixtures, registry, repo_root, skopeo_raw, tail};

const OPERATOR_IMAGE: &str = "ghcr.io/kiln-dev/kiln-operator";
const BUILDER_IMAGE: &str = "ghcr.io/kiln-dev/kiln-builder";
const INSTALL_NAMESPACE: &str = "kiln-system";

/// The pinned helm, built by `scripts/tools.sh` (cached by version).
fn helm() -> std::path::PathBuf {
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
    let dir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    std::path::Path::new(&dir).join("helm")
}

fn run(command: &mut std::process::Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The operator pods of the install.
async fn operator_pods(client: &Client) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), INSTALL_NAMESPACE)
        .list(&ListParams::default().labels("app.kubernetes.io/component=operator"))
        .await
        .unwrap()
        .items
}

/// Waits until an operator pod runs; returns its name.
async fn operator_running(client: &Client) -> String {
    for _ in 0..120 {
        let running = operator_pods(client).await.into_iter().find(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        });
        if let Some(pod) = running {
            return pod.metadata.name.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!(
        "no operator pod is Running: {:#?}",
        operator_pods(client).await
    );
}

async fn operator_gone(client: &Client) {
    for _ in 0..120 {
        if operator_pods(client).await.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("the operator pod outlived its uninstall");
}

/// Builds the sample in `builds`' namespace and checks its index.
async fn sample_succeeds(builds: &Builds, runner: &Runner, operator_pod: &str, base: &str) {
    let context = builds.context(&format!("FROM {base}\nCOPY hello.txt /hello.txt\n"));
    let name = format!("hello-{}", &operator_pod[operator_pod.len() - 5..]);
    let build = builds.sample(&name, context.path()).await;
    builds.create(&build).await;
    let log = || {
        tail(
            &runner
                .log(INSTALL_NAMESPACE, operator_pod)
                .unwrap_or_default(),
            60,
        )
    };
    let done = builds.wait_phase(&name, Phase::Succeeded, log).await;
    let index = done.status.unwrap().index.unwrap();
    let pushed = skopeo_raw(&format!("{}/hello:1.0.0", builds.registry_host), &[]);
    let platforms: Vec<&str> = pushed["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["amd64", "arm64"]);
    assert_eq!(
        index.reference.unwrap(),
        format!("{}/hello@{}", builds.registry_host, index.digest.unwrap())
    );
}

#[tokio::test]
async fn helm_install_and_kubectl_apply_k_each_run_the_sample_build() {
    let cluster = Cluster::shared().await.unwrap();
    let client = cluster.client().await.unwrap();
    let registry = registry::TestRegistry::start();
    let fixtures = fixtures::push_busybox_index(registry.host()).await;
    let namespace = cluster.create_namespace(&client, "install").await.unwrap();
    let operator = workspace_binary("kiln-operator", "kiln-operator").unwrap();
    let kiln = workspace_binary("kiln-builder", "kiln").unwrap();
    // The chart's probes and metrics listen on fixed ports inside the pod;
    // on the host they take any free loopback port.
    let config = RunnerConfig::default()
        .with_program(OPERATOR_IMAGE, &operator, &["/kiln-operator"])
        .with_replaced_arg(
            OPERATOR_IMAGE,
            "--metrics-bind-address=:8080",
            "--metrics-bind-address=127.0.0.1:0",
        )
        .with_replaced_arg(
            OPERATOR_IMAGE,
            "--health-probe-bind-address=:8081",
            "--health-probe-bind-address=127.0.0.1:0",
        )
        .with_program(
            BUILDER_IMAGE,
            &kiln,
            &["/kiln/executor", "/kaniko/executor"],
        )
        .in_namespace(INSTALL_NAMESPACE)
        .in_namespace(&namespace);
    let runner = Runner::start(cluster, config).await.unwrap();
    let builds = Builds {
        client: client.clone(),
        namespace,
        registry_host: registry.host().to_owned(),
    };
    let kubeconfig = cluster.kubeconfig().display().to_string();

    // helm install.
    run(std::process::Command::new(helm())
        .args(["install", "kiln"])
        .arg(repo_root().join("charts/kiln"))
        .args([
            "-n",
            INSTALL_NAMESPACE,
            "--create-namespace",
            "--kubeconfig",
            &kubeconfig,
        ]));
    let pod = operator_running(&client).await;
    sample_succeeds(&builds, &runner, &pod, &fixtures.index).await;
    let log = runner.log(INSTALL_NAMESPACE, &pod).unwrap_or_default();
    assert!(
        log.contains("became the leader"),
        "the chart enables leader election:\n{log}"
    );
    run(std::process::Command::new(helm()).args([
        "uninstall",
        "kiln",
        "-n",
        INSTALL_NAMESPACE,
        "--kubeconfig",
        &kubeconfig,
    ]));
    operator_gone(&client).await;

    // kubectl apply -k config/default.
    run(std::process::Command::new(cluster.kubectl())
        .args([
            "--kubeconfig",
            &kubeconfig,
            "apply",
            "--server-side",
            "--force-conflicts",
            "-k",
        ])
        .arg(repo_root().join("config/default")));
    let pod = operator_running(&client).await;
    sample_succeeds(&builds, &runner, &pod, &fixtures.index).await;
}
