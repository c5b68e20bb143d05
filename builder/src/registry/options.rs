//! kaniko's registry flags and the per-registry decisions they imply: plain
//! HTTP or HTTPS, certificate checks, extra CAs, mirrors, retry policies.
//! Pure functions of the options, so every flag combination is unit-tested.

use std::path::PathBuf;
use std::time::Duration;

use oci_spec::distribution::Reference;

use super::retry::RetryPolicy;

/// The registry flags of a build, as kaniko spells them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryOptions {
    /// `--insecure`: push to (and read caches from) registries over plain HTTP.
    pub insecure: bool,
    /// `--insecure-pull`: pull base images over plain HTTP.
    pub insecure_pull: bool,
    /// `--insecure-registry`: registries (`host[:port]`) always reached over
    /// plain HTTP.
    pub insecure_registries: Vec<String>,
    /// `--skip-tls-verify`: accept any certificate when pushing.
    pub skip_tls_verify: bool,
    /// `--skip-tls-verify-pull`: accept any certificate when pulling.
    pub skip_tls_verify_pull: bool,
    /// `--skip-tls-verify-registry`: registries whose certificates are never
    /// checked.
    pub skip_tls_verify_registries: Vec<String>,
    /// `--registry-certificate my.registry=/path/ca.pem`: extra trusted CAs
    /// (PEM) for one registry each.
    pub registry_certificates: Vec<(String, PathBuf)>,
    /// `--registry-client-cert my.registry=/path/client.crt,/path/client.key`:
    /// a TLS client certificate presented to one registry each.
    pub registry_client_certs: Vec<ClientCertificate>,
    /// `--registry-mirror`: `host[:port][/path]` tried, in order, before
    /// Docker Hub for images on `docker.io`.
    pub registry_mirrors: Vec<String>,
    /// `--registry-map REGISTRY=MIRROR`: mirrors (`host[:port][/path]`)
    /// tried, in order, before `REGISTRY` for its images.
    pub registry_maps: Vec<(String, String)>,
    /// `--skip-default-registry-fallback`: when an image has mirrors, pull
    /// it from them only.
    pub skip_default_registry_fallback: bool,
    /// `--push-retry`: retries after the first attempt of each push request.
    pub push_retry: u32,
    /// `--push-retry-initial-delay`.
    pub push_retry_initial_delay: Duration,
    /// `--push-retry-max-delay`.
    pub push_retry_max_delay: Duration,
    /// `--image-download-retry`: retries after the first attempt of each
    /// download (manifests and blobs); waits as for pushes.
    pub image_download_retry: u32,
    /// The directory holding `config.json`. `None` looks in
    /// `$DOCKER_CONFIG`, `~/.docker`, then `/kaniko/.docker`; tests set it
    /// so that they never depend on the environment.
    pub docker_config_dir: Option<PathBuf>,
    /// `--credential-helpers`: names of docker credential helpers
    /// (`docker-credential-NAME` on PATH) asked, in order, for a registry
    /// the docker config has no credentials for.
    pub credential_helpers: Vec<String>,
}

impl Default for RegistryOptions {
    fn default() -> RegistryOptions {
        RegistryOptions {
            insecure: false,
            insecure_pull: false,
            insecure_registries: Vec::new(),
            skip_tls_verify: false,
            skip_tls_verify_pull: false,
            skip_tls_verify_registries: Vec::new(),
            registry_certificates: Vec::new(),
            registry_client_certs: Vec::new(),
            registry_mirrors: Vec::new(),
            registry_maps: Vec::new(),
            skip_default_registry_fallback: false,
            push_retry: 0,
            push_retry_initial_delay: Duration::from_millis(1000),
            push_retry_max_delay: Duration::from_millis(30_000),
            image_download_retry: 0,
            docker_config_dir: None,
            credential_helpers: Vec::new(),
        }
    }
}

/// A TLS client identity for one registry (`--registry-client-cert`):
/// PEM files of the certificate (its chain may follow it) and its private
/// key (PKCS#8, PKCS#1 or SEC1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientCertificate {
    /// `host[:port]`, compared as `--registry-certificate`'s registry is.
    pub registry: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Which set of flags applies to a request.
///
/// Base images are *pulled* (`--insecure-pull`, `--skip-tls-verify-pull`).
/// Destinations, cache repositories and the children of an index being
/// published are *pushed to*, also when kiln reads from them
/// (`--insecure`, `--skip-tls-verify`), as in kaniko.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    Pull,
    Push,
}

/// How to reach one registry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Transport {
    pub plain_http: bool,
    pub tls: Tls,
}

/// What an HTTP client's TLS depends on: registries and directions with
/// equal settings share one client.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Tls {
    pub accept_invalid_certs: bool,
    pub ca_certificates: Vec<PathBuf>,
    /// The client certificate presented: the last `--registry-client-cert`
    /// given for the registry.
    pub client_certificate: Option<ClientCertificate>,
}

impl RegistryOptions {
    /// The transport for `registry` (as `Reference::resolve_registry` gives
    /// it). Loopback registries (`localhost:5000`, `127.0.0.1:5000`) speak
    /// plain HTTP unless TLS was configured for them, as with docker and
    /// go-containerregistry, so a local test registry needs no flags.
    pub(crate) fn transport(&self, registry: &str, access: Access) -> Transport {
        let listed = |list: &[String]| list.iter().any(|r| same_registry(r, registry));
        let ca_certificates: Vec<PathBuf> = self
            .registry_certificates
            .iter()
            .filter(|(r, _)| same_registry(r, registry))
            .map(|(_, path)| path.clone())
            .collect();
        let accept_invalid_certs = listed(&self.skip_tls_verify_registries)
            || match access {
                Access::Push => self.skip_tls_verify,
                Access::Pull => self.skip_tls_verify_pull,
            };
        let client_certificate = self
            .registry_client_certs
            .iter()
            .rfind(|c| same_registry(&c.registry, registry))
            .cloned();
        let tls_configured = !ca_certificates.is_empty()
            || client_certificate.is_some()
            || listed(&self.skip_tls_verify_registries);
        let plain_http = listed(&self.insecure_registries)
            || match access {
                Access::Push => self.insecure,
                Access::Pull => self.insecure_pull,
            }
            || (is_loopback(registry) && !tls_configured);
        Transport {
            plain_http,
            tls: Tls {
                accept_invalid_certs,
                ca_certificates,
                client_certificate,
            },
        }
    }

    /// Where to look for `reference`, in order: each `--registry-mirror`
    /// for Docker Hub images, each `--registry-map` mirror of its registry,
    /// then the reference itself (unless `--skip-default-registry-fallback`
    /// and there is a mirror).
    pub(crate) fn pull_candidates(&self, reference: &Reference) -> Vec<Reference> {
        let registry = reference.registry();
        let hub_mirrors = self
            .registry_mirrors
            .iter()
            .filter(|_| same_registry(registry, "docker.io"));
        let mapped = self
            .registry_maps
            .iter()
            .filter(|(original, _)| same_registry(registry, original))
            .map(|(_, mirror)| mirror);
        let mut candidates: Vec<Reference> = hub_mirrors
            .chain(mapped)
            .filter_map(|mirror| mirror_reference(mirror, reference))
            .collect();
        if candidates.is_empty() || !self.skip_default_registry_fallback {
            candidates.push(reference.clone());
        }
        candidates
    }

    pub(crate) fn push_policy(&self) -> RetryPolicy {
        RetryPolicy {
            retries: self.push_retry,
            initial_delay: self.push_retry_initial_delay,
            max_delay: self.push_retry_max_delay,
        }
    }

    pub(crate) fn download_policy(&self) -> RetryPolicy {
        RetryPolicy {
            retries: self.image_download_retry,
            initial_delay: self.push_retry_initial_delay,
            max_delay: self.push_retry_max_delay,
        }
    }
}

/// `reference` as served by `mirror` (`host[:port][/prefix]`): the mirror's
/// host, the prefix before the repository, tag and digest unchanged.
fn mirror_reference(mirror: &str, reference: &Reference) -> Option<Reference> {
    let mirror = strip_scheme(mirror.trim()).trim_end_matches('/');
    let (host, prefix) = match mirror.split_once('/') {
        Some((host, prefix)) => (host, prefix.trim_matches('/')),
        None => (mirror, ""),
    };
    if host.is_empty() {
        return None;
    }
    let repository = if prefix.is_empty() {
        reference.repository().to_string()
    } else {
        format!("{prefix}/{}", reference.repository())
    };
    let host = host.to_string();
    Some(match (reference.tag(), reference.digest()) {
        (Some(tag), Some(digest)) => {
            Reference::with_tag_and_digest(host, repository, tag.to_string(), digest.to_string())
        }
        (None, Some(digest)) => Reference::with_digest(host, repository, digest.to_string()),
        (tag, None) => Reference::with_tag(host, repository, tag.unwrap_or("latest").to_string()),
    })
}

fn strip_scheme(text: &str) -> &str {
    text.strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .unwrap_or(text)
}

/// The name users and configs give a registry, compared loosely: scheme and
/// trailing slash ignored, case-insensitive, Docker Hub's aliases equal.
pub(crate) fn canonical_registry(name: &str) -> String {
    let host = strip_scheme(name.trim())
        .split('/')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    }
}

pub(crate) fn same_registry(a: &str, b: &str) -> bool {
    canonical_registry(a) == canonical_registry(b)
}

fn is_loopback(registry: &str) -> bool {
    let host = canonical_registry(registry);
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(&host)
    };
    name == "localhost" || name == "::1" || name.starts_with("127.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport_line(options: &RegistryOptions, registry: &str, access: Access) -> String {
        let t = options.transport(registry, access);
        let mut line = format!(
            "{} verify={} cas={:?}",
            if t.plain_http { "http" } else { "https" },
            !t.tls.accept_invalid_certs,
            t.tls.ca_certificates
        );
        if let Some(c) = t.tls.client_certificate {
            line.push_str(&format!(" client={},{}", c.cert.display(), c.key.display()));
        }
        line
    }

    #[test]
    fn flags_choose_scheme_and_verification_per_direction() {
        let plain = RegistryOptions::default();
        let insecure_push = RegistryOptions {
            insecure: true,
            skip_tls_verify: true,
            ..RegistryOptions::default()
        };
        let insecure_pull = RegistryOptions {
            insecure_pull: true,
            skip_tls_verify_pull: true,
            ..RegistryOptions::default()
        };
        let per_registry = RegistryOptions {
            insecure_registries: vec!["http://Reg.Example:5000/".to_string()],
            skip_tls_verify_registries: vec!["tls.example".to_string()],
            registry_certificates: vec![
                ("ca.example".to_string(), PathBuf::from("/ca.pem")),
                ("localhost:5443".to_string(), PathBuf::from("/local.pem")),
            ],
            ..RegistryOptions::default()
        };
        let table = [
            (&plain, "ghcr.io", Access::Push, "https verify=true cas=[]"),
            (&plain, "ghcr.io", Access::Pull, "https verify=true cas=[]"),
            (
                &plain,
                "127.0.0.1:5000",
                Access::Push,
                "http verify=true cas=[]",
            ),
            (
                &plain,
                "localhost:5000",
                Access::Pull,
                "http verify=true cas=[]",
            ),
            (
                &plain,
                "[::1]:5000",
                Access::Pull,
                "http verify=true cas=[]",
            ),
            (
                &plain,
                "localhost.example:5000",
                Access::Pull,
                "https verify=true cas=[]",
            ),
            (
                &insecure_push,
                "ghcr.io",
                Access::Push,
                "http verify=false cas=[]",
            ),
            (
                &insecure_push,
                "ghcr.io",
                Access::Pull,
                "https verify=true cas=[]",
            ),
            (
                &insecure_pull,
                "ghcr.io",
                Access::Pull,
                "http verify=false cas=[]",
            ),
            (
                &insecure_pull,
                "ghcr.io",
                Access::Push,
                "https verify=true cas=[]",
            ),
            (
                &per_registry,
                "reg.example:5000",
                Access::Push,
                "http verify=true cas=[]",
            ),
            (
                &per_registry,
                "reg.example:5000",
                Access::Pull,
                "http verify=true cas=[]",
            ),
            (
                &per_registry,
                "reg.example",
                Access::Pull,
                "https verify=true cas=[]",
            ),
            (
                &per_registry,
                "tls.example",
                Access::Push,
                "https verify=false cas=[]",
            ),
            (
                &per_registry,
                "ca.example",
                Access::Pull,
                "https verify=true cas=[\"/ca.pem\"]",
            ),
            (
                &per_registry,
                "localhost:5443",
                Access::Pull,
                "https verify=true cas=[\"/local.pem\"]",
            ),
        ];
        for (options, registry, access, want) in table {
            assert_eq!(
                transport_line(options, registry, access),
                want,
                "{registry} {access:?}"
            );
        }
    }

    #[test]
    fn client_certificates_apply_to_their_registry_only() {
        let cert = |registry: &str, name: &str| ClientCertificate {
            registry: registry.to_string(),
            cert: PathBuf::from(format!("/{name}.crt")),
            key: PathBuf::from(format!("/{name}.key")),
        };
        let options = RegistryOptions {
            registry_client_certs: vec![
                cert("reg.example:5000", "first"),
                cert("other.example", "other"),
                cert("https://Reg.Example:5000/", "last"),
                cert("127.0.0.1:5443", "local"),
            ],
            ..RegistryOptions::default()
        };
        let table = [
            (
                "reg.example:5000",
                Access::Push,
                "https verify=true cas=[] client=/last.crt,/last.key",
            ),
            (
                "reg.example:5000",
                Access::Pull,
                "https verify=true cas=[] client=/last.crt,/last.key",
            ),
            ("reg.example", Access::Pull, "https verify=true cas=[]"),
            (
                "other.example",
                Access::Pull,
                "https verify=true cas=[] client=/other.crt,/other.key",
            ),
            // A client certificate is TLS configured: a loopback registry
            // given one is spoken to over HTTPS, as with a CA.
            (
                "127.0.0.1:5443",
                Access::Pull,
                "https verify=true cas=[] client=/local.crt,/local.key",
            ),
            ("ghcr.io", Access::Push, "https verify=true cas=[]"),
        ];
        for (registry, access, want) in table {
            assert_eq!(
                transport_line(&options, registry, access),
                want,
                "{registry} {access:?}"
            );
        }
    }

    #[test]
    fn mirrors_apply_to_docker_hub_only() {
        let options = RegistryOptions {
            registry_mirrors: vec![
                "mirror.gcr.io".to_string(),
                "https://127.0.0.1:5001/hub/".to_string(),
            ],
            ..RegistryOptions::default()
        };
        let table: [(&str, &[&str]); 4] = [
            (
                "alpine",
                &[
                    "mirror.gcr.io/library/alpine:latest",
                    "127.0.0.1:5001/hub/library/alpine:latest",
                    "docker.io/library/alpine:latest",
                ],
            ),
            (
                "index.docker.io/bitnami/redis:7@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                &[
                    "mirror.gcr.io/bitnami/redis:7@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                    "127.0.0.1:5001/hub/bitnami/redis:7@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                    "docker.io/bitnami/redis:7@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                ],
            ),
            ("ghcr.io/org/app:1", &["ghcr.io/org/app:1"]),
            ("127.0.0.1:5000/busybox", &["127.0.0.1:5000/busybox:latest"]),
        ];
        for (input, want) in table {
            let reference: Reference = input.parse().unwrap();
            let got: Vec<String> = options
                .pull_candidates(&reference)
                .iter()
                .map(Reference::whole)
                .collect();
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn registry_maps_add_mirrors_and_fallback_can_be_skipped() {
        let mut options = RegistryOptions {
            registry_mirrors: vec!["mirror.gcr.io".into()],
            registry_maps: vec![
                ("index.docker.io".into(), "127.0.0.1:5001/hub".into()),
                ("ghcr.io".into(), "127.0.0.1:5002".into()),
            ],
            ..RegistryOptions::default()
        };
        let candidates = |options: &RegistryOptions, input: &str| -> Vec<String> {
            options
                .pull_candidates(&input.parse().unwrap_or_else(|e| panic!("{input}: {e}")))
                .iter()
                .map(Reference::whole)
                .collect()
        };
        assert_eq!(
            candidates(&options, "alpine"),
            [
                "mirror.gcr.io/library/alpine:latest",
                "127.0.0.1:5001/hub/library/alpine:latest",
                "docker.io/library/alpine:latest",
            ]
        );
        assert_eq!(
            candidates(&options, "ghcr.io/org/app:1"),
            ["127.0.0.1:5002/org/app:1", "ghcr.io/org/app:1"]
        );
        assert_eq!(candidates(&options, "quay.io/a/b:1"), ["quay.io/a/b:1"]);
        options.skip_default_registry_fallback = true;
        assert_eq!(
            candidates(&options, "ghcr.io/org/app:1"),
            ["127.0.0.1:5002/org/app:1"]
        );
        // Without a mirror, the image's own registry is the only source.
        assert_eq!(candidates(&options, "quay.io/a/b:1"), ["quay.io/a/b:1"]);
    }

    #[test]
    fn registry_names_compare_loosely() {
        let table = [
            ("docker.io", "index.docker.io", true),
            ("https://index.docker.io/v1/", "docker.io", true),
            ("registry-1.docker.io", "docker.io", true),
            ("Quay.IO", "quay.io", true),
            ("127.0.0.1:5000", "127.0.0.1:5001", false),
            ("ghcr.io", "docker.io", false),
        ];
        for (a, b, want) in table {
            assert_eq!(same_registry(a, b), want, "{a} vs {b}");
        }
    }

    #[test]
    fn retry_policies_follow_their_flags() {
        let options = RegistryOptions {
            push_retry: 3,
            image_download_retry: 2,
            push_retry_initial_delay: Duration::from_millis(10),
            push_retry_max_delay: Duration::from_millis(40),
            ..RegistryOptions::default()
        };
        assert_eq!(
            options.push_policy(),
            RetryPolicy {
                retries: 3,
                initial_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(40)
            }
        );
        assert_eq!(options.download_policy().retries, 2);
    }
}
