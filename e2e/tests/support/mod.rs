//! What the operator and install tests share: the builder's registry and
//! busybox fixture (included by path, so every suite builds from the very
//! same base image), the CRDs, and a namespace to build in.

#![allow(dead_code)]

#[path = "../../../builder/tests/support/fixtures.rs"]
pub mod fixtures;
pub mod git_daemon;
#[path = "../../../builder/tests/support/registry.rs"]
pub mod registry;

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kiln_crds::{BuildRequest, MultiArchBuild, Phase};
use kiln_e2e::cluster::wait_for;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::conditions;

pub const BUILD_TIMEOUT: Duration = Duration::from_secs(300);

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The bin directory of a tool `scripts/tools.sh` builds (pinned, cached
/// by version: milliseconds once built).
pub fn tool_dir(name: &str) -> PathBuf {
    let output = std::process::Command::new("bash")
        .arg(repo_root().join("scripts/tools.sh"))
        .arg(name)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "scripts/tools.sh {name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// How GitOps tools see a MultiArchBuild: Flux's kstatus and the chart's
/// Argo CD health script, each status with its message.
#[derive(Debug, serde::Deserialize)]
pub struct Health {
    pub kstatus: String,
    #[serde(rename = "kstatusMessage")]
    pub kstatus_message: String,
    pub argocd: String,
    #[serde(rename = "argocdMessage")]
    pub argocd_message: String,
}

impl Health {
    /// `(kstatus, Argo CD)`, for assertions.
    pub fn statuses(&self) -> (&str, &str) {
        (&self.kstatus, &self.argocd)
    }
}

/// [`Health`] of `build` as it is (a live object, or one changed by the
/// test), from `e2e/tools/health-check`: kstatus of
/// `sigs.k8s.io/cli-utils` and the script under gopher-lua, as Flux and
/// Argo CD run them.
pub fn health(build: &serde_json::Value) -> Health {
    use std::io::Write;
    let checker = tool_dir("e2e-tools").join("health-check");
    let script = repo_root().join("charts/kiln/argocd/multiarchbuild-health.lua");
    let mut child = std::process::Command::new(checker)
        .arg(format!("--lua={}", script.display()))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(build.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "health-check: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Applies `config/crd` server-side and waits until both are established.
pub async fn install_crds(client: &Client) {
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
            BUILD_TIMEOUT,
            &name,
        )
        .await
        .unwrap();
    }
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `skopeo inspect --raw [extra] docker://reference`, parsed.
pub fn skopeo_raw(reference: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    args.extend_from_slice(extra);
    let target = format!("docker://{reference}");
    args.push(&target);
    let output = std::process::Command::new("skopeo")
        .args(&args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A namespace to build in, and the loopback registry its builds push to.
pub struct Builds {
    pub client: Client,
    pub namespace: String,
    pub registry_host: String,
}

impl Builds {
    pub fn builds(&self) -> Api<MultiArchBuild> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn requests(&self) -> Api<BuildRequest> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// A context directory with `dockerfile`, kept for the test's life.
    pub fn context(&self, dockerfile: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
        std::fs::write(dir.path().join("hello.txt"), "hello from kiln\n").unwrap();
        dir
    }

    /// `config/samples/multiarchbuild.yaml`, pointed at this test's context,
    /// registry and registry Secret; everything else as committed.
    pub async fn sample(&self, name: &str, context: &Path) -> MultiArchBuild {
        let text = std::fs::read_to_string(repo_root().join("config/samples/multiarchbuild.yaml"))
            .unwrap();
        let mut build: MultiArchBuild = serde_yaml::from_str(&text).unwrap();
        build.metadata.name = Some(name.to_owned());
        let spec = &mut build.spec.build;
        spec.context = format!("dir://{}", context.display());
        spec.destinations = vec![
            format!("{}/hello:1.0.0", self.registry_host),
            format!("{}/hello:latest", self.registry_host),
        ];
        if let Some(cache) = spec.cache.as_mut() {
            cache.repo = Some(format!("{}/hello-cache", self.registry_host));
        }
        let secret_name = spec.registry_secret_ref.as_ref().unwrap().name.clone();
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": secret_name},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": "{\"auths\":{}}"},
        }))
        .unwrap();
        let secrets = Api::<Secret>::namespaced(self.client.clone(), &self.namespace);
        if secrets.get_opt(&secret_name).await.unwrap().is_none() {
            secrets
                .create(&PostParams::default(), &secret)
                .await
                .unwrap();
        }
        build
    }

    /// The image config of a platform the sample pushed to `hello`.
    pub fn image_config(&self, entry: &kiln_crds::PlatformStatus) -> serde_json::Value {
        let digest = entry.digest.as_deref().expect("the platform has a digest");
        skopeo_raw(
            &format!("{}/hello@{digest}", self.registry_host),
            &["--config"],
        )
    }

    /// [`Builds::sample`] for one platform, without the layer cache.
    pub async fn single(&self, name: &str, platform: &str, context: &Path) -> MultiArchBuild {
        let mut build = self.sample(name, context).await;
        build.spec.platforms = vec![platform.to_owned()];
        build.spec.build.cache = None;
        build
    }

    pub async fn create(&self, build: &MultiArchBuild) {
        self.builds()
            .create(&PostParams::default(), build)
            .await
            .unwrap();
    }

    /// Waits until the build's phase is `phase`; on timeout, panics with the
    /// build, its requests and `operator_log()`.
    pub async fn wait_phase(
        &self,
        name: &str,
        phase: Phase,
        operator_log: impl Fn() -> String,
    ) -> MultiArchBuild {
        let done = wait_for(
            self.builds(),
            name,
            move |b: Option<&MultiArchBuild>| {
                b.and_then(|b| b.status.as_ref()).and_then(|s| s.phase) == Some(phase)
            },
            BUILD_TIMEOUT,
            &format!("MultiArchBuild {name} reaching {phase}"),
        )
        .await;
        if let Err(error) = done {
            let build = self.builds().get_opt(name).await.unwrap();
            let requests = self.requests().list(&ListParams::default()).await.unwrap();
            panic!(
                "{error}\nbuild status: {:#?}\nrequests: {:#?}\noperator log:\n{}",
                build.and_then(|b| b.status),
                requests
                    .items
                    .iter()
                    .map(|r| (&r.metadata.name, &r.status))
                    .collect::<Vec<_>>(),
                operator_log()
            );
        }
        self.builds().get(name).await.unwrap()
    }
}
