//! Whether kiln runs inside a container: `--isolation=inplace` unpacks
//! images over `/` and must not do that to a machine's own root unless
//! told to (`--force`). The decision is a function of observed facts
//! ([`ContainerFacts`]); [`ContainerFacts::observe`] gathers them.

use std::path::Path;

use crate::work_root::{BUILDER_IMAGE_ENV, in_builder_image};

/// What kiln can see of its surroundings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerFacts {
    /// `/.dockerenv` exists (Docker, and most Kubernetes runtimes based on
    /// it).
    pub dockerenv: bool,
    /// `/run/.containerenv` exists (Podman, Buildah).
    pub containerenv: bool,
    /// The `container` environment variable (systemd's convention: `docker`,
    /// `podman`, `lxc`, `oci`, …).
    pub container_var: Option<String>,
    /// `KUBERNETES_SERVICE_HOST` is set (every pod has it).
    pub kubernetes: bool,
    /// `KILN_BUILDER_IMAGE` is set to a true value (kiln's builder image).
    pub builder_image: bool,
    /// The text of `/proc/self/cgroup`.
    pub cgroup: Option<String>,
}

/// Words in a cgroup path that only container runtimes put there (cgroup
/// v1, and v2 without a cgroup namespace).
const CGROUP_HINTS: [&str; 6] = [
    "/docker/",
    "/docker-",
    "/kubepods",
    "/libpod-",
    "/lxc/",
    "/containerd/",
];

impl ContainerFacts {
    /// Reads the facts from this process's environment and filesystem.
    pub fn observe() -> ContainerFacts {
        let var = |name: &str| std::env::var_os(name);
        ContainerFacts {
            dockerenv: Path::new("/.dockerenv").exists(),
            containerenv: Path::new("/run/.containerenv").exists(),
            container_var: var("container").map(|v| v.to_string_lossy().into_owned()),
            kubernetes: var("KUBERNETES_SERVICE_HOST").is_some_and(|v| !v.is_empty()),
            builder_image: in_builder_image(var(BUILDER_IMAGE_ENV).as_deref()),
            cgroup: std::fs::read_to_string("/proc/self/cgroup").ok(),
        }
    }

    /// The first fact that says "container", in words for a log line; `None`
    /// when nothing does.
    pub fn evidence(&self) -> Option<String> {
        if self.builder_image {
            return Some("KILN_BUILDER_IMAGE=1 (kiln's builder image)".to_string());
        }
        if self.dockerenv {
            return Some("/.dockerenv exists".to_string());
        }
        if self.containerenv {
            return Some("/run/.containerenv exists".to_string());
        }
        if let Some(value) = self.container_var.as_deref().filter(|v| !v.is_empty()) {
            return Some(format!("container={value} is set"));
        }
        if self.kubernetes {
            return Some("KUBERNETES_SERVICE_HOST is set (a Kubernetes pod)".to_string());
        }
        let cgroup = self.cgroup.as_deref().unwrap_or("");
        for line in cgroup.lines() {
            let path = line.splitn(3, ':').nth(2).unwrap_or("");
            if let Some(hint) = CGROUP_HINTS.iter().find(|hint| path.contains(*hint)) {
                return Some(format!(
                    "the cgroup {path} names a container runtime ({hint})"
                ));
            }
        }
        None
    }
}

/// Marker files of container runtimes, kept by in-place builds so that a
/// container can build again after `--cleanup`.
pub const MARKER_FILES: [&str; 2] = ["/.dockerenv", "/run/.containerenv"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_table() {
        let none = ContainerFacts::default();
        let host_cgroup =
            "12:pids:/user.slice/user-1000.slice\n0::/user.slice/user-1000.slice/session-2.scope\n";
        let cases: [(ContainerFacts, Option<&str>); 11] = [
            (none.clone(), None),
            (
                ContainerFacts {
                    cgroup: Some(host_cgroup.to_string()),
                    ..none.clone()
                },
                None,
            ),
            (
                ContainerFacts {
                    cgroup: Some("0::/\n".to_string()),
                    container_var: Some(String::new()),
                    ..none.clone()
                },
                None,
            ),
            (
                ContainerFacts {
                    dockerenv: true,
                    ..none.clone()
                },
                Some("/.dockerenv exists"),
            ),
            (
                ContainerFacts {
                    containerenv: true,
                    ..none.clone()
                },
                Some("/run/.containerenv exists"),
            ),
            (
                ContainerFacts {
                    container_var: Some("podman".to_string()),
                    ..none.clone()
                },
                Some("container=podman is set"),
            ),
            (
                ContainerFacts {
                    kubernetes: true,
                    ..none.clone()
                },
                Some("KUBERNETES_SERVICE_HOST is set (a Kubernetes pod)"),
            ),
            (
                ContainerFacts {
                    builder_image: true,
                    dockerenv: true,
                    ..none.clone()
                },
                Some("KILN_BUILDER_IMAGE=1 (kiln's builder image)"),
            ),
            (
                ContainerFacts {
                    cgroup: Some("11:memory:/docker/0123abcd\n".to_string()),
                    ..none.clone()
                },
                Some("the cgroup /docker/0123abcd names a container runtime (/docker/)"),
            ),
            (
                ContainerFacts {
                    cgroup: Some(
                        "0::/kubepods.slice/kubepods-burstable.slice/cri-containerd-1.scope\n"
                            .to_string(),
                    ),
                    ..none.clone()
                },
                Some(
                    "the cgroup /kubepods.slice/kubepods-burstable.slice/cri-containerd-1.scope \
                     names a container runtime (/kubepods)",
                ),
            ),
            (
                ContainerFacts {
                    cgroup: Some("0::/machine.slice/libpod-42.scope\n".to_string()),
                    ..none
                },
                Some(
                    "the cgroup /machine.slice/libpod-42.scope names a container runtime (/libpod-)",
                ),
            ),
        ];
        for (facts, want) in cases {
            assert_eq!(facts.evidence().as_deref(), want, "{facts:?}");
        }
    }
}
