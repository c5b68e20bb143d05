//! The objects a BuildRequest needs, rendered from its spec: the builder
//! Job of an attempt, and the ServiceAccount, Role and RoleBinding through
//! which its pod reports the result. Pure functions; the Job is compared
//! byte for byte with a committed snapshot.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, EmptyDirVolumeSource, KeyToPath, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, PodSpec, PodTemplateSpec, SeccompProfile,
    SecretVolumeSource, SecurityContext, ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kiln_builder::drivers::k8s::submit::builder_args;
use kiln_crds::BuildRequest;
use kube::Resource;

use crate::names::{
    self, ATTEMPT_LABEL, BUILD_REQUEST_LABEL, JOB_NAME_MAX, MANAGED_BY, MULTI_ARCH_BUILD_LABEL,
};
use crate::nodes::{ARCH_LABEL, OS_LABEL, os_arch};

/// Where the init container of a builder pod sees the registry Secret
/// (its `.dockerconfigjson` as `config.json`). The builder container never
/// mounts it: a RUN step could read it there (kaniko#106).
pub const SECRET_DIR: &str = "/kiln/registry-secret";
/// The memory-backed volume the init container copies `config.json` into
/// and the builder takes it from (`--take-docker-config`: read, then
/// removed, before the first step).
pub const CREDENTIALS_DIR: &str = "/kiln/registry-credentials";
/// Name of the init container that copies the registry credentials.
pub const CREDENTIALS_CONTAINER: &str = "registry-credentials";
/// Name of the builder container.
pub const CONTAINER: &str = "kiln";
/// Field manager of everything the operator applies.
pub const FIELD_MANAGER: &str = "kiln-operator";

/// The capabilities a builder container keeps; every other one is dropped.
/// An in-place build is root in its container and does, for the image,
/// what a root user does: give files their owners (`CHOWN`), write into
/// and read from directories and files of other users (`DAC_OVERRIDE`),
/// set modes and times of files it does not own (`FOWNER`), keep the
/// set-group-ID bit of a file whose group it is not in (`FSETID`, which the
/// kernel otherwise clears silently), set file capabilities (`SETFCAP`,
/// `RUN setcap …`) and run steps as the image's `USER` (`SETUID`,
/// `SETGID`). Each is proven necessary on the real node
/// (`e2e/tests/real_node_builder.rs`); `MKNOD` is not kept (a layer's
/// device nodes are skipped with a warning, `RUN mknod` fails), nor
/// anything a container runtime adds by default beyond these
/// (`NET_RAW`, `KILL`, `SYS_CHROOT`, …).
pub const BUILDER_CAPABILITIES: [&str; 7] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "SETFCAP",
    "SETGID",
    "SETUID",
];

/// The security context of the builder container: not privileged, no
/// privilege escalation (`no_new_privs`: no set-user-ID binary or file
/// capability raises a RUN step's privileges), the runtime's default
/// seccomp profile, and of the capabilities only [`BUILDER_CAPABILITIES`].
pub fn builder_security_context() -> SecurityContext {
    SecurityContext {
        privileged: Some(false),
        allow_privilege_escalation: Some(false),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: Some(BUILDER_CAPABILITIES.map(String::from).to_vec()),
        }),
        ..SecurityContext::default()
    }
}

/// The security context of the init container that copies the registry
/// credentials: as the builder's, with no capability at all (it reads a
/// file it owns and writes into an empty volume).
fn credentials_security_context() -> SecurityContext {
    SecurityContext {
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        ..builder_security_context()
    }
}

/// What a builder pod needs for a registry Secret: the Secret's volume and
/// a memory-backed one, the init container (the builder image itself, as
/// `kiln --copy-docker-config`, since the image has no shell or `cp`) that
/// copies `config.json` from the first to the second, and the builder's
/// mount of the second only.
struct RegistryCredentials {
    volumes: Vec<Volume>,
    init: Container,
    mount: VolumeMount,
}

fn registry_credentials(secret_name: &str, settings: &BuilderSettings) -> RegistryCredentials {
    let secret = Volume {
        name: "registry-secret".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret_name.to_owned()),
            items: Some(vec![KeyToPath {
                key: ".dockerconfigjson".into(),
                path: "config.json".into(),
                ..KeyToPath::default()
            }]),
            default_mode: Some(0o400),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    };
    let credentials = Volume {
        name: "registry-credentials".into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".into()),
            size_limit: Some(Quantity("1Mi".into())),
        }),
        ..Volume::default()
    };
    let mount = |volume: &Volume, path: &str, read_only: bool| VolumeMount {
        name: volume.name.clone(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    };
    let init = Container {
        name: CREDENTIALS_CONTAINER.into(),
        image: Some(settings.image.clone()),
        image_pull_policy: Some(settings.pull_policy.clone()),
        args: Some(vec![
            "--copy-docker-config".into(),
            format!("{SECRET_DIR}/config.json"),
            format!("{CREDENTIALS_DIR}/config.json"),
        ]),
        volume_mounts: Some(vec![
            mount(&secret, SECRET_DIR, true),
            mount(&credentials, CREDENTIALS_DIR, false),
        ]),
        security_context: Some(credentials_security_context()),
        ..Container::default()
    };
    RegistryCredentials {
        mount: mount(&credentials, CREDENTIALS_DIR, false),
        volumes: vec![secret, credentials],
        init,
    }
}

/// How the operator was configured to run builders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuilderSettings {
    /// Builder image reference.
    pub image: String,
    /// `Always`, `IfNotPresent` or `Never`.
    pub pull_policy: String,
    /// `ttlSecondsAfterFinished` of builder Jobs.
    pub job_ttl_seconds: i32,
}

fn owner(request: &BuildRequest) -> OwnerReference {
    let mut owner = request
        .controller_owner_ref(&())
        .unwrap_or_else(|| OwnerReference {
            api_version: BuildRequest::api_version(&()).into_owned(),
            kind: BuildRequest::kind(&()).into_owned(),
            name: request.metadata.name.clone().unwrap_or_default(),
            uid: request.metadata.uid.clone().unwrap_or_default(),
            ..OwnerReference::default()
        });
    owner.block_owner_deletion = Some(true);
    owner
}

/// Labels of everything made for `request` (label values are at most 63
/// characters, so long names are shortened the way Job names are).
pub fn labels(request: &BuildRequest, component: &str) -> BTreeMap<String, String> {
    let name = request.metadata.name.as_deref().unwrap_or_default();
    let mut labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "kiln".to_owned()),
        (
            "app.kubernetes.io/component".to_owned(),
            component.to_owned(),
        ),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            MANAGED_BY.to_owned(),
        ),
        (
            BUILD_REQUEST_LABEL.to_owned(),
            names::object_name(&[name], JOB_NAME_MAX),
        ),
    ]);
    if let Some(mab) = request
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MULTI_ARCH_BUILD_LABEL))
    {
        labels.insert(MULTI_ARCH_BUILD_LABEL.to_owned(), mab.clone());
    }
    labels
}

fn meta(request: &BuildRequest, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: request.metadata.namespace.clone(),
        labels: Some(labels),
        owner_references: Some(vec![owner(request)]),
        ..ObjectMeta::default()
    }
}

/// Keeps a pod off `nodes` (by node name): earlier attempts of the same
/// build lost their pods there.
fn avoiding(nodes: &[String]) -> Option<Affinity> {
    (!nodes.is_empty()).then(|| Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_fields: Some(vec![NodeSelectorRequirement {
                        key: "metadata.name".into(),
                        operator: "NotIn".into(),
                        values: Some(nodes.to_vec()),
                    }]),
                    ..NodeSelectorTerm::default()
                }],
            }),
            ..NodeAffinity::default()
        }),
        ..Affinity::default()
    })
}

/// The builder Job of `attempt`, its pod kept off `avoid_nodes`;
/// `host_users` is the pod's `hostUsers` (`Some(false)`: a user namespace
/// of its own, see `user_namespaces`).
pub fn job(
    request: &BuildRequest,
    attempt: i32,
    avoid_nodes: &[String],
    settings: &BuilderSettings,
    host_users: Option<bool>,
) -> Job {
    let name = request.metadata.name.as_deref().unwrap_or_default();
    let spec = &request.spec;
    let scheduling = &spec.build.scheduling;
    let mut labels = labels(request, "builder");
    labels.insert(ATTEMPT_LABEL.to_owned(), attempt.to_string());

    let mut node_selector = scheduling.node_selector.clone();
    let (os, arch) = os_arch(&spec.platform);
    node_selector.insert(OS_LABEL.to_owned(), os.to_owned());
    if scheduling.require_native_nodes {
        node_selector.insert(ARCH_LABEL.to_owned(), arch.to_owned());
    }

    let credentials = spec
        .build
        .registry_secret_ref
        .as_ref()
        .map(|secret| registry_credentials(&secret.name, settings));
    let mut args = builder_args(request);
    if credentials.is_some() {
        args.push(format!(
            "--take-docker-config={CREDENTIALS_DIR}/config.json"
        ));
    }

    let service_account = scheduling
        .service_account_name
        .clone()
        .unwrap_or_else(|| names::builder_access_name(name));

    Job {
        metadata: meta(request, names::job_name(name, attempt), labels.clone()),
        spec: Some(JobSpec {
            // Retries are the operator's, counted in the BuildRequest.
            backoff_limit: Some(0),
            active_deadline_seconds: spec
                .build
                .timeout
                .map(|t| std::time::Duration::from(t).as_secs().max(1) as i64),
            ttl_seconds_after_finished: Some(settings.job_ttl_seconds),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    host_users,
                    service_account_name: Some(service_account),
                    automount_service_account_token: Some(true),
                    node_selector: Some(node_selector),
                    affinity: avoiding(avoid_nodes),
                    tolerations: (!scheduling.tolerations.is_empty())
                        .then(|| scheduling.tolerations.clone()),
                    volumes: credentials.as_ref().map(|c| c.volumes.clone()),
                    init_containers: credentials.as_ref().map(|c| vec![c.init.clone()]),
                    containers: vec![Container {
                        name: CONTAINER.into(),
                        image: Some(settings.image.clone()),
                        image_pull_policy: Some(settings.pull_policy.clone()),
                        args: Some(args),
                        volume_mounts: credentials.map(|c| vec![c.mount]),
                        resources: scheduling.resources.clone(),
                        security_context: Some(builder_security_context()),
                        termination_message_path: Some("/dev/termination-log".into()),
                        // The builder writes the digest (or its error) there;
                        // if it dies before, the log's tail stands in.
                        termination_message_policy: Some("FallbackToLogsOnError".into()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// ServiceAccount, Role and RoleBinding of a BuildRequest's builder pods:
/// `get` and `patch` on the status of this one BuildRequest, nothing else.
pub fn builder_access(request: &BuildRequest) -> (ServiceAccount, Role, RoleBinding) {
    let name = request.metadata.name.clone().unwrap_or_default();
    let access = names::builder_access_name(&name);
    let labels = labels(request, "builder-access");
    let account = ServiceAccount {
        metadata: meta(request, access.clone(), labels.clone()),
        ..ServiceAccount::default()
    };
    let role = Role {
        metadata: meta(request, access.clone(), labels.clone()),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![kiln_crds::GROUP.into()]),
            resources: Some(vec!["buildrequests/status".into()]),
            resource_names: Some(vec![name]),
            verbs: vec!["get".into(), "patch".into()],
            ..PolicyRule::default()
        }]),
    };
    let binding = RoleBinding {
        metadata: meta(request, access.clone(), labels),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: access.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: access,
            namespace: request.metadata.namespace.clone(),
            ..Subject::default()
        }]),
    };
    (account, role, binding)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::test_objects::build_request;

    fn settings() -> BuilderSettings {
        BuilderSettings {
            image: "ghcr.io/kiln-dev/kiln-builder:0.1.0".into(),
            pull_policy: "IfNotPresent".into(),
            job_ttl_seconds: 3600,
        }
    }

    fn full_request() -> BuildRequest {
        let mut request = build_request("app-linux-arm64-g4", "linux/arm64/v8", 2);
        request.metadata.labels = Some(BTreeMap::from([(
            MULTI_ARCH_BUILD_LABEL.to_owned(),
            "app".to_owned(),
        )]));
        let spec = serde_json::json!({
            "platform": "linux/arm64/v8",
            "buildGeneration": 4,
            "tags": "none",
            "context": "git://example.invalid/app.git#main",
            "contextSubPath": "web",
            "dockerfile": "build/Dockerfile",
            "destinations": ["registry.example/app:1.0", "mirror.example/app:1.0"],
            "buildArgs": {"VERSION": "1.0", "GOFLAGS": "-trimpath"},
            "target": "runtime",
            "labels": {"org.opencontainers.image.source": "https://example.invalid/app"},
            "cache": {"enabled": true, "repo": "registry.example/app/cache", "ttl": "168h", "archRepoSuffix": "-${ARCH}"},
            "output": {"ociMode": "oci", "compression": "zstd", "compressionLevel": 3, "reproducible": true},
            "scheduling": {
                "nodeSelector": {"pool": "builders"},
                "tolerations": [{"key": "arch", "operator": "Equal", "value": "arm64", "effect": "NoSchedule"}],
                "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
            },
            "registrySecretRef": {"name": "registry-push"},
            "retries": 2,
            "timeout": "30m",
            "pushRetry": {"count": 3, "initialDelay": "500ms", "maxDelay": "10s"},
        });
        request.spec = serde_json::from_value(spec).unwrap();
        request
    }

    #[test]
    fn job_rendering() {
        let yaml =
            serde_yaml::to_string(&job(&full_request(), 2, &[], &settings(), Some(false))).unwrap();
        insta::assert_snapshot!("job_full_spec_attempt_2", yaml);
        let minimal = build_request("app-linux-amd64-g1", "linux/amd64", 0);
        let yaml = serde_yaml::to_string(&job(&minimal, 1, &[], &settings(), None)).unwrap();
        insta::assert_snapshot!("job_minimal_spec_attempt_1", yaml);
    }

    #[test]
    fn without_native_nodes_the_arch_is_not_pinned_and_emulation_is_on() {
        let mut request = build_request("b", "linux/s390x", 0);
        request.spec.build.scheduling.require_native_nodes = false;
        let job = job(&request, 1, &[], &settings(), None);
        let pod = job.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.affinity, None);
        assert_eq!(
            pod.node_selector.unwrap(),
            BTreeMap::from([(OS_LABEL.to_owned(), "linux".to_owned())])
        );
        let args = pod.containers[0].args.clone().unwrap();
        assert!(args.contains(&"--emulation=qemu".to_owned()), "{args:?}");
    }

    #[test]
    fn the_registry_secret_is_mounted_in_the_init_container_only() {
        let job = job(&full_request(), 1, &[], &settings(), None);
        let pod = job.spec.unwrap().template.spec.unwrap();
        let names = |mounts: &Option<Vec<VolumeMount>>| -> Vec<(String, String)> {
            mounts
                .iter()
                .flatten()
                .map(|m| (m.name.clone(), m.mount_path.clone()))
                .collect()
        };
        let builder = &pod.containers[0];
        assert_eq!(
            names(&builder.volume_mounts),
            [("registry-credentials".into(), CREDENTIALS_DIR.into())]
        );
        assert_eq!(builder.env, None);
        let args = builder.args.clone().unwrap();
        assert_eq!(
            args.last().unwrap(),
            "--take-docker-config=/kiln/registry-credentials/config.json"
        );
        let [init] = pod.init_containers.as_deref().unwrap() else {
            panic!("one init container: {:?}", pod.init_containers)
        };
        assert_eq!(init.image, builder.image);
        assert_eq!(
            names(&init.volume_mounts),
            [
                ("registry-secret".into(), SECRET_DIR.into()),
                ("registry-credentials".into(), CREDENTIALS_DIR.into())
            ]
        );
        let volumes = pod.volumes.unwrap();
        assert_eq!(
            volumes[0].secret.as_ref().unwrap().secret_name.as_deref(),
            Some("registry-push")
        );
        let memory = volumes[1].empty_dir.as_ref().unwrap();
        assert_eq!(memory.medium.as_deref(), Some("Memory"));
        let caps = init.security_context.as_ref().unwrap().capabilities.clone();
        assert_eq!(caps.unwrap().add, None);
        // Without a Secret, neither the volumes nor the init container.
        let minimal = build_request("app-linux-amd64-g1", "linux/amd64", 0);
        let pod = job_pod(&minimal);
        assert_eq!((pod.volumes, pod.init_containers), (None, None));
    }

    fn job_pod(request: &BuildRequest) -> PodSpec {
        job(request, 1, &[], &settings(), None)
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
    }

    #[test]
    fn the_builder_is_locked_down() {
        let pod = job_pod(&full_request());
        let context = pod.containers[0].security_context.clone().unwrap();
        assert_eq!(context.privileged, Some(false));
        assert_eq!(context.allow_privilege_escalation, Some(false));
        assert_eq!(context.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let caps = context.capabilities.unwrap();
        assert_eq!(caps.drop.unwrap(), ["ALL"]);
        assert_eq!(
            caps.add.unwrap(),
            [
                "CHOWN",
                "DAC_OVERRIDE",
                "FOWNER",
                "FSETID",
                "SETFCAP",
                "SETGID",
                "SETUID"
            ]
        );
    }

    #[test]
    fn a_legacy_manifest_list_builds_docker_manifests() {
        // (ociMode, legacyManifestList, the builder's --oci-mode)
        let table = [
            ("auto", false, "--oci-mode=auto"),
            ("oci", false, "--oci-mode=oci"),
            ("docker", false, "--oci-mode=docker"),
            ("auto", true, "--oci-mode=docker"),
            ("oci", true, "--oci-mode=docker"),
            ("docker", true, "--oci-mode=docker"),
        ];
        for (mode, legacy, want) in table {
            let mut request = build_request("b", "linux/amd64", 0);
            request.spec.build.output = serde_json::from_value(serde_json::json!({
                "ociMode": mode,
                "legacyManifestList": legacy,
            }))
            .unwrap();
            let args = builder_args(&request);
            let modes: Vec<&String> = args
                .iter()
                .filter(|a| a.starts_with("--oci-mode="))
                .collect();
            assert_eq!(modes, [want], "{mode} legacy={legacy}");
        }
    }

    #[test]
    fn immutable_tag_errors_are_ignored_by_every_builder_on_request() {
        // (pushIgnoreImmutableTagErrors, the builder's flag)
        let table: [(Option<bool>, &[&str]); 3] = [
            (None, &[]),
            (Some(false), &[]),
            (Some(true), &["--push-ignore-immutable-tag-errors=true"]),
        ];
        for (set, want) in table {
            for platform in ["linux/amd64", "linux/arm64"] {
                let mut request = build_request("b", platform, 0);
                let mut output = serde_json::json!({ "ociMode": "oci" });
                if let Some(set) = set {
                    output["pushIgnoreImmutableTagErrors"] = set.into();
                }
                request.spec.build.output = serde_json::from_value(output).unwrap();
                let args = builder_args(&request);
                let flags: Vec<&str> = args
                    .iter()
                    .map(String::as_str)
                    .filter(|a| a.starts_with("--push-ignore-immutable-tag-errors"))
                    .collect();
                assert_eq!(flags, want, "{set:?} {platform}");
            }
        }
    }

    #[test]
    fn a_retry_is_kept_off_the_nodes_that_lost_earlier_attempts() {
        let request = build_request("b", "linux/amd64", 0);
        let avoid = ["node-1".to_owned(), "node-3".to_owned()];
        let pod = job(&request, 3, &avoid, &settings(), None)
            .spec
            .unwrap()
            .template
            .spec
            .unwrap();
        let affinity = serde_json::to_value(pod.affinity.unwrap()).unwrap();
        assert_eq!(
            affinity,
            serde_json::json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [
                    {"key": "metadata.name", "operator": "NotIn", "values": ["node-1", "node-3"]}
                ]}]
            }}})
        );
        // The arch pin is still there: the affinity narrows, never widens.
        assert_eq!(pod.node_selector.unwrap()[ARCH_LABEL], "amd64");
    }

    #[test]
    fn builder_access_is_limited_to_its_own_status() {
        let request = full_request();
        let (account, role, binding) = builder_access(&request);
        let name = "app-linux-arm64-g4-builder";
        assert_eq!(account.metadata.name.as_deref(), Some(name));
        let rules = role.rules.unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules[0].resources.as_deref().unwrap(),
            ["buildrequests/status"]
        );
        assert_eq!(
            rules[0].resource_names.as_deref().unwrap(),
            ["app-linux-arm64-g4"]
        );
        assert_eq!(rules[0].verbs, ["get", "patch"]);
        assert_eq!(binding.role_ref.name, name);
        let subject = &binding.subjects.unwrap()[0];
        assert_eq!(
            (subject.name.as_str(), subject.namespace.as_deref()),
            (name, Some("ns"))
        );
        for owners in [
            account.metadata.owner_references,
            role.metadata.owner_references,
            binding.metadata.owner_references,
        ] {
            let owners = owners.unwrap();
            assert_eq!(owners[0].uid, "uid-app-linux-arm64-g4");
            assert_eq!(owners[0].controller, Some(true));
        }
    }
}
