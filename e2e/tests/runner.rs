//! The pod runner against the real control plane: pods bound by the real
//! scheduler to kwok nodes run as host processes, with their env, volumes
//! and a service-account token bound to the pod, and their status,
//! termination message and log follow the process.
//!
//! One cluster for the binary; each test has its own namespace and a
//! runner limited to it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kiln_e2e::binaries::workspace_binary;
use kiln_e2e::cluster::{Cluster, wait_for};
use kiln_e2e::runner::{Runner, RunnerConfig};
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::conditions;

const WAIT: Duration = Duration::from_secs(60);
/// An image the runner maps to host commands (`/bin/sh` is the host's).
const SHELL_IMAGE: &str = "registry.invalid/kiln-e2e/shell:1";

async fn setup(prefix: &str) -> (&'static Cluster, Client, String, Runner) {
    let cluster = Cluster::shared().await.unwrap();
    let client = cluster.client().await.unwrap();
    let namespace = cluster.create_namespace(&client, prefix).await.unwrap();
    let config = RunnerConfig::default()
        .with_host_commands("registry.invalid/kiln-e2e/shell")
        .in_namespace(&namespace);
    let runner = Runner::start(cluster, config).await.unwrap();
    (cluster, client, namespace, runner)
}

fn shell_pod(name: &str, arch: &str, script: &str, env: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": { "kubernetes.io/arch": arch },
            "containers": [{
                "name": "main",
                "image": SHELL_IMAGE,
                "command": ["/bin/sh", "-c", script],
                "env": env,
            }],
        }
    }))
    .unwrap()
}

fn phase(pod: Option<&Pod>) -> Option<String> {
    pod?.status.as_ref()?.phase.clone()
}

fn is_finished(pod: Option<&Pod>) -> bool {
    matches!(phase(pod).as_deref(), Some("Succeeded" | "Failed"))
}

/// The terminated state of the pod's only container.
fn terminated(pod: &Pod) -> k8s_openapi::api::core::v1::ContainerStateTerminated {
    pod.status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .expect("a terminated container")
}

#[tokio::test]
async fn a_pod_runs_with_its_env_and_volumes_and_reports_exit_code_and_message() {
    let (_cluster, client, namespace, runner) = setup("runner-run").await;
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), &namespace);
    config_maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": { "name": "settings" },
                "data": { "greeting": "hi from a ConfigMap" },
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let mut pod = shell_pod(
        "greeter",
        "amd64",
        // Long enough for the test to see it Running.
        "echo \"hello from $POD_NAME in $POD_NAMESPACE, emulation=${KILN_EMULATION:-none}\"; \
         sleep 2; cat \"$GREETING_FILE\" > \"$KILN_TERMINATION_MESSAGE_PATH\"; exit 3",
        serde_json::json!([
            { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
            { "name": "POD_NAMESPACE", "valueFrom": { "fieldRef": { "fieldPath": "metadata.namespace" } } },
            { "name": "GREETING_FILE", "value": "/etc/kiln/settings/greeting" },
        ]),
    );
    let spec = pod.spec.as_mut().unwrap();
    spec.volumes = Some(vec![
        serde_json::from_value(
            serde_json::json!({ "name": "settings", "configMap": { "name": "settings" } }),
        )
        .unwrap(),
    ]);
    spec.containers[0].volume_mounts = Some(vec![
        serde_json::from_value(
            serde_json::json!({ "name": "settings", "mountPath": "/etc/kiln/settings" }),
        )
        .unwrap(),
    ]);
    let pods = Api::<Pod>::namespaced(client, &namespace);
    pods.create(&PostParams::default(), &pod).await.unwrap();

    wait_for(
        pods.clone(),
        "greeter",
        |pod: Option<&Pod>| phase(pod).as_deref() == Some("Running"),
        WAIT,
        "greeter Running",
    )
    .await
    .unwrap();
    let running = pods.get("greeter").await.unwrap();
    let status = running.status.unwrap();
    assert!(status.start_time.is_some(), "{status:?}");
    let container = &status.container_statuses.unwrap()[0];
    assert!(
        container.state.as_ref().unwrap().running.is_some(),
        "{container:?}"
    );
    assert!(container.ready);

    wait_for(
        pods.clone(),
        "greeter",
        is_finished,
        WAIT,
        "greeter finishing",
    )
    .await
    .unwrap();
    let finished = pods.get("greeter").await.unwrap();
    assert_eq!(phase(Some(&finished)).as_deref(), Some("Failed"));
    let state = terminated(&finished);
    assert_eq!(state.exit_code, 3);
    assert_eq!(state.reason.as_deref(), Some("Error"));
    assert_eq!(state.message.as_deref(), Some("hi from a ConfigMap"));

    let log = runner.log(&namespace, "greeter").unwrap();
    assert_eq!(
        log,
        format!("hello from greeter in {namespace}, emulation=none\n")
    );
}

#[tokio::test]
async fn an_arm64_pod_runs_under_emulation_and_succeeds() {
    let (_cluster, client, namespace, _runner) = setup("runner-arm64").await;
    let pods = Api::<Pod>::namespaced(client, &namespace);
    let pod = shell_pod(
        "arm",
        "arm64",
        "printf '%s' \"${KILN_EMULATION:-none}\" > \"$KILN_TERMINATION_MESSAGE_PATH\"",
        serde_json::json!([]),
    );
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_for(pods.clone(), "arm", is_finished, WAIT, "arm finishing")
        .await
        .unwrap();
    let finished = pods.get("arm").await.unwrap();
    assert_eq!(
        finished.spec.as_ref().unwrap().node_name.as_deref(),
        Some("kiln-e2e-arm64-1")
    );
    assert_eq!(phase(Some(&finished)).as_deref(), Some("Succeeded"));
    let state = terminated(&finished);
    assert_eq!(state.exit_code, 0);
    assert_eq!(state.reason.as_deref(), Some("Completed"));
    assert_eq!(state.message.as_deref(), Some("qemu"));
}

#[tokio::test]
async fn a_pod_talks_to_the_apiserver_as_its_own_service_account() {
    let (cluster, client, namespace, runner) = setup("runner-token").await;
    let pods = Api::<Pod>::namespaced(client, &namespace);
    // kubectl as the in-cluster client: it finds the runner's kubeconfig
    // through KUBECONFIG, as kube-rs does.
    let pod = shell_pod(
        "whoami",
        "amd64",
        "\"$KUBECTL\" auth whoami -o json > \"$KILN_TERMINATION_MESSAGE_PATH\"",
        serde_json::json!([{ "name": "KUBECTL", "value": cluster.kubectl().display().to_string() }]),
    );
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_for(
        pods.clone(),
        "whoami",
        is_finished,
        WAIT,
        "whoami finishing",
    )
    .await
    .unwrap();
    let finished = pods.get("whoami").await.unwrap();
    let state = terminated(&finished);
    let log = runner.log(&namespace, "whoami").unwrap_or_default();
    assert_eq!(state.exit_code, 0, "log: {log}");
    let review: serde_json::Value =
        serde_json::from_str(state.message.as_deref().unwrap()).unwrap();
    let user = &review["status"]["userInfo"];
    assert_eq!(
        user["username"],
        format!("system:serviceaccount:{namespace}:default")
    );
    // The token is bound to this very pod (TokenRequest with boundObjectRef).
    assert_eq!(
        user["extra"]["authentication.kubernetes.io/pod-name"][0],
        "whoami"
    );
    assert_eq!(
        user["extra"]["authentication.kubernetes.io/pod-uid"][0],
        finished.metadata.uid.unwrap().as_str()
    );

    let files = runner.pod_files(&namespace, "whoami").unwrap();
    assert!(
        files
            .token
            .is_some_and(|token| std::fs::metadata(token).unwrap().len() > 0)
    );
    assert!(files.kubeconfig.is_some());
}

#[tokio::test]
async fn deleting_a_pod_kills_its_process_and_removes_the_pod() {
    let (_cluster, client, namespace, _runner) = setup("runner-delete").await;
    let pods = Api::<Pod>::namespaced(client, &namespace);
    let pod = shell_pod("sleeper", "amd64", "exec sleep 300", serde_json::json!([]));
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_for(
        pods.clone(),
        "sleeper",
        |pod: Option<&Pod>| phase(pod).as_deref() == Some("Running"),
        WAIT,
        "sleeper Running",
    )
    .await
    .unwrap();
    let running = pods.get("sleeper").await.unwrap();
    let container_id = running.status.unwrap().container_statuses.unwrap()[0]
        .container_id
        .clone()
        .unwrap();
    let pid: u32 = container_id
        .strip_prefix("kiln-e2e://")
        .unwrap()
        .parse()
        .unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmdline, b"sleep\x00300\x00");

    pods.delete("sleeper", &DeleteParams::default())
        .await
        .unwrap();
    let uid = running.metadata.uid.unwrap();
    wait_for(
        pods.clone(),
        "sleeper",
        conditions::is_deleted(&uid),
        WAIT,
        "sleeper removed",
    )
    .await
    .unwrap();
    // The process is gone too (checked after the pod: the runner removes
    // the pod only once the process has exited).
    let gone = std::fs::read(format!("/proc/{pid}/cmdline")).map_or(true, |now| now != cmdline);
    assert!(gone, "sleep 300 ({pid}) still running");
}

#[tokio::test]
async fn the_builder_image_runs_the_workspace_kiln_binary() {
    const BUILDER_IMAGE: &str = "registry.invalid/kiln/builder";
    let cluster = Cluster::shared().await.unwrap();
    let client = cluster.client().await.unwrap();
    let namespace = cluster
        .create_namespace(&client, "runner-kiln")
        .await
        .unwrap();
    let kiln = workspace_binary("kiln-builder", "kiln").unwrap();
    let config = RunnerConfig::default()
        .with_program(
            BUILDER_IMAGE,
            &kiln,
            &["/kiln/executor", "/kaniko/executor"],
        )
        .in_namespace(&namespace);
    let runner = Runner::start(cluster, config).await.unwrap();
    let pods = Api::<Pod>::namespaced(client, &namespace);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "kiln-version" },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "kiln",
                "image": format!("{BUILDER_IMAGE}:v0.1.0"),
                "command": ["/kaniko/executor"],
                "args": ["--version"],
            }],
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_for(
        pods.clone(),
        "kiln-version",
        is_finished,
        WAIT,
        "kiln-version finishing",
    )
    .await
    .unwrap();
    let finished = pods.get("kiln-version").await.unwrap();
    let log = runner.log(&namespace, "kiln-version").unwrap();
    assert_eq!(
        phase(Some(&finished)).as_deref(),
        Some("Succeeded"),
        "log: {log}"
    );
    assert_eq!(terminated(&finished).exit_code, 0);
    assert_eq!(log, format!("kiln {}\n", env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn a_docker_config_secret_is_found_through_docker_config() {
    let (_cluster, client, namespace, runner) = setup("runner-docker").await;
    let config_json = r#"{"auths":{"127.0.0.1:5000":{"auth":"dTpw"}}}"#;
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &namespace)
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": { "name": "registry" },
                "type": "kubernetes.io/dockerconfigjson",
                "stringData": { ".dockerconfigjson": config_json },
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let mut pod = shell_pod(
        "docker",
        "amd64",
        "cat \"$DOCKER_CONFIG/config.json\" > \"$KILN_TERMINATION_MESSAGE_PATH\"",
        serde_json::json!([]),
    );
    let spec = pod.spec.as_mut().unwrap();
    spec.volumes = Some(vec![
        serde_json::from_value(serde_json::json!({ "name": "docker-config", "secret": {
            "secretName": "registry", "items": [{ "key": ".dockerconfigjson", "path": "config.json" }] } }))
        .unwrap(),
    ]);
    // Where kaniko's (and kiln's builder image's) credentials are mounted.
    spec.containers[0].volume_mounts = Some(vec![
        serde_json::from_value(
            serde_json::json!({ "name": "docker-config", "mountPath": "/kaniko/.docker" }),
        )
        .unwrap(),
    ]);
    let pods = Api::<Pod>::namespaced(client, &namespace);
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_for(
        pods.clone(),
        "docker",
        is_finished,
        WAIT,
        "docker finishing",
    )
    .await
    .unwrap();
    let finished = pods.get("docker").await.unwrap();
    // Once seen failing in a full suite run (passing alone): what the pod
    // printed and its status say why, if it happens again.
    let log = runner.log(&namespace, "docker");
    assert_eq!(
        phase(Some(&finished)).as_deref(),
        Some("Succeeded"),
        "log: {log:?}\nstatus: {:#?}",
        finished.status
    );
    assert_eq!(terminated(&finished).message.as_deref(), Some(config_json));
}

#[tokio::test]
async fn restart_policy_on_failure_restarts_the_container_until_it_succeeds() {
    let (_cluster, client, namespace, runner) = setup("runner-restart").await;
    let mut pod = shell_pod(
        "flaky",
        "amd64",
        // Fails on its first run, succeeds on its second: the count lives
        // in an emptyDir, which outlives container restarts.
        "n=$(cat \"$SCRATCH/runs\" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > \"$SCRATCH/runs\"; \
         echo \"run $n\"; [ $n -ge 2 ]",
        serde_json::json!([{ "name": "SCRATCH", "value": "/scratch" }]),
    );
    let spec = pod.spec.as_mut().unwrap();
    spec.restart_policy = Some("OnFailure".to_string());
    spec.volumes = Some(vec![
        serde_json::from_value(serde_json::json!({ "name": "scratch", "emptyDir": {} })).unwrap(),
    ]);
    spec.containers[0].volume_mounts = Some(vec![
        serde_json::from_value(serde_json::json!({ "name": "scratch", "mountPath": "/scratch" }))
            .unwrap(),
    ]);
    let pods = Api::<Pod>::namespaced(client, &namespace);
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_for(pods.clone(), "flaky", is_finished, WAIT, "flaky finishing")
        .await
        .unwrap();
    let finished = pods.get("flaky").await.unwrap();
    assert_eq!(phase(Some(&finished)).as_deref(), Some("Succeeded"));
    let status = &finished
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    assert_eq!(status.restart_count, 1);
    assert_eq!(runner.log(&namespace, "flaky").unwrap(), "run 1\nrun 2\n");
}

/// `pod` with an emptyDir `/shared` in its container and an init
/// container running `script` with it mounted too; `$SHARED` names it in
/// both (the runner rewrites paths in env values, not inside scripts).
fn with_init(mut pod: Pod, script: &str) -> Pod {
    let mount: k8s_openapi::api::core::v1::VolumeMount =
        serde_json::from_value(serde_json::json!({ "name": "shared", "mountPath": "/shared" }))
            .unwrap();
    let spec = pod.spec.as_mut().unwrap();
    spec.volumes = Some(vec![
        serde_json::from_value(serde_json::json!({ "name": "shared", "emptyDir": {} })).unwrap(),
    ]);
    spec.containers[0].volume_mounts = Some(vec![mount.clone()]);
    let env = serde_json::json!([{ "name": "SHARED", "value": "/shared" }]);
    spec.containers[0].env = Some(serde_json::from_value(env.clone()).unwrap());
    spec.init_containers = Some(vec![
        serde_json::from_value(serde_json::json!({
            "name": "init",
            "image": SHELL_IMAGE,
            "command": ["/bin/sh", "-c", script],
            "env": env,
            "volumeMounts": [mount],
        }))
        .unwrap(),
    ]);
    pod
}

#[tokio::test]
async fn init_containers_run_first_and_a_failing_one_fails_the_pod() {
    let (_cluster, client, namespace, runner) = setup("runner-init").await;
    let pods = Api::<Pod>::namespaced(client, &namespace);
    // The init container's file, in a volume both mount, is there when the
    // container starts.
    let pod = with_init(
        shell_pod(
            "inited",
            "amd64",
            "cat \"$SHARED/from-init\"",
            serde_json::json!([]),
        ),
        "echo written by init > \"$SHARED/from-init\"",
    );
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_for(
        pods.clone(),
        "inited",
        is_finished,
        WAIT,
        "inited finishing",
    )
    .await
    .unwrap();
    let finished = pods.get("inited").await.unwrap();
    assert_eq!(phase(Some(&finished)).as_deref(), Some("Succeeded"));
    assert_eq!(
        runner.log(&namespace, "inited").unwrap(),
        "written by init\n"
    );

    // A failing init container: the container never runs.
    let pod = with_init(
        shell_pod(
            "blocked",
            "amd64",
            "echo container ran",
            serde_json::json!([]),
        ),
        "echo init says no; exit 3",
    );
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_for(
        pods.clone(),
        "blocked",
        is_finished,
        WAIT,
        "blocked finishing",
    )
    .await
    .unwrap();
    let finished = pods.get("blocked").await.unwrap();
    assert_eq!(phase(Some(&finished)).as_deref(), Some("Failed"));
    let terminated = finished.status.unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(terminated.reason.as_deref(), Some("Init:Error"));
    assert_eq!(
        terminated.message.as_deref(),
        Some("init container init exited with 3: init says no")
    );
    assert_eq!(runner.log(&namespace, "blocked").unwrap_or_default(), "");
}

#[tokio::test]
async fn a_job_completes_when_its_pod_succeeds() {
    let (_cluster, client, namespace, _runner) = setup("runner-job").await;
    let jobs = Api::<k8s_openapi::api::batch::v1::Job>::namespaced(client, &namespace);
    let job = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "once" },
        "spec": {
            "backoffLimit": 0,
            "template": { "spec": {
                "restartPolicy": "Never",
                "nodeSelector": { "kubernetes.io/arch": "arm64" },
                "containers": [{ "name": "main", "image": SHELL_IMAGE, "command": ["/bin/sh", "-c", "exit 0"] }],
            } },
        }
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    // The job controller sees the pod the runner ran succeed.
    wait_for(
        jobs,
        "once",
        conditions::is_job_completed(),
        WAIT,
        "job once completing",
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn the_builders_termination_message_reaches_the_pod_status() {
    const BUILDER_IMAGE: &str = "registry.invalid/kiln/builder";
    let cluster = Cluster::shared().await.unwrap();
    let client = cluster.client().await.unwrap();
    let namespace = cluster
        .create_namespace(&client, "runner-builder")
        .await
        .unwrap();
    let kiln = workspace_binary("kiln-builder", "kiln").unwrap();
    let config = RunnerConfig::default()
        .with_program(
            BUILDER_IMAGE,
            &kiln,
            &["/kiln/executor", "/kaniko/executor"],
        )
        .in_namespace(&namespace);
    let runner = Runner::start(cluster, config).await.unwrap();
    let pods = Api::<Pod>::namespaced(client, &namespace);
    // Shaped like the operator's builder pods: the image's entrypoint, the
    // default termination message path, FallbackToLogsOnError. The builder
    // writes its error where the runner points KILN_TERMINATION_MESSAGE_PATH
    // (the runner reads nothing else), not to the host's /dev.
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "bad-context" },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "kiln",
                "image": format!("{BUILDER_IMAGE}:v0.1.0"),
                "args": [
                    "--context=dir:///nonexistent-context",
                    "--no-push",
                    format!("--build-request={namespace}/missing"),
                ],
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }],
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_for(
        pods.clone(),
        "bad-context",
        is_finished,
        WAIT,
        "bad-context finishing",
    )
    .await
    .unwrap();
    let finished = pods.get("bad-context").await.unwrap();
    let log = runner.log(&namespace, "bad-context").unwrap();
    assert_eq!(
        phase(Some(&finished)).as_deref(),
        Some("Failed"),
        "log: {log}"
    );
    let state = terminated(&finished);
    assert_eq!(state.exit_code, 1, "log: {log}");
    assert_eq!(
        state.message.as_deref(),
        Some("context directory /nonexistent-context does not exist or is not a directory")
    );
}
