//! Publishing a MultiArchBuild's index with the builder's own registry and
//! index code (the same path as `kiln --driver=ci`): every child is checked
//! in every destination repository, then the index is pushed to every
//! destination.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::Secret;
use kiln_builder::attest::buildkit_layout::{LayoutError, publish_attestation_manifests};
use kiln_builder::attest::sign::{SignError, Signer, push_signature};
use kiln_builder::drivers::index::{
    self, IndexOutcome, plan_index, publish_index, verify_in_every_repository,
};
use kiln_builder::image::OciMode;
use kiln_builder::platform::Platform;
use kiln_builder::registry::names::{destination_repositories, repository_of};
use kiln_builder::registry::{Registry, RegistryOptions};
use kiln_crds::MultiArchBuild;
use kiln_crds::spec::AttestLayout;
use kube::Api;

use super::decide::Child;
use crate::context::{Error, SecretProblem};

/// Why publishing failed, and whether trying again could help.
#[derive(Debug)]
pub struct PublishFailure {
    pub message: String,
    /// The children or the options are wrong: retrying cannot help.
    pub permanent: bool,
}

fn oci_mode(mode: kiln_crds::OciMode) -> OciMode {
    match mode {
        kiln_crds::OciMode::Oci => OciMode::Oci,
        kiln_crds::OciMode::Docker => OciMode::Docker,
        kiln_crds::OciMode::Auto => OciMode::Auto,
    }
}

/// Writes the build's registry Secret as `config.json` into `dir`, the
/// form the builder's registry client reads credentials from.
pub async fn write_docker_config(
    client: &kube::Client,
    build: &MultiArchBuild,
    dir: &Path,
) -> Result<(), Error> {
    let Some(secret_ref) = &build.spec.build.registry_secret_ref else {
        return Ok(());
    };
    let namespace = build.metadata.namespace.clone().unwrap_or_default();
    let failure = |problem: SecretProblem| Error::RegistrySecret {
        namespace: namespace.clone(),
        name: secret_ref.name.clone(),
        problem,
    };
    let secret = Api::<Secret>::namespaced(client.clone(), &namespace)
        .get(&secret_ref.name)
        .await
        .map_err(|e| failure(SecretProblem::Read(e)))?;
    let config = secret
        .data
        .as_ref()
        .and_then(|d| d.get(".dockerconfigjson"))
        .ok_or_else(|| failure(SecretProblem::NoDockerConfig))?;
    std::fs::write(dir.join("config.json"), &config.0).map_err(|e| failure(SecretProblem::Write(e)))
}

/// The key `spec.build.output.signing` names: `cosign.key` and
/// `cosign.password` of a Secret in the build's namespace. A Secret not
/// there yet (or an API server not answering) is tried again; a Secret
/// without the keys, or a key its password does not open, fails the build.
pub async fn load_signer(
    client: &kube::Client,
    build: &MultiArchBuild,
) -> Result<Option<Signer>, PublishFailure> {
    let Some(signing) = &build.spec.build.output.signing else {
        return Ok(None);
    };
    let namespace = build.metadata.namespace.clone().unwrap_or_default();
    let name = &signing.key_secret_ref.name;
    let shown = format!("{namespace}/{name}");
    let secret = match Api::<Secret>::namespaced(client.clone(), &namespace)
        .get(name)
        .await
    {
        Ok(secret) => secret,
        Err(error) => {
            let not_found = matches!(&error, kube::Error::Api(s) if s.code == 404);
            return Err(PublishFailure {
                message: format!("reading the signing key Secret {shown}: {error}"),
                permanent: !not_found
                    && matches!(&error, kube::Error::Api(s) if s.code < 500 && s.code != 429),
            });
        }
    };
    let data = secret.data.unwrap_or_default();
    let field = |key: &str| {
        data.get(key).map(|v| v.0.clone()).ok_or_else(|| PublishFailure {
            message: format!(
                "the signing key Secret {shown} has no {key}: make it with cosign generate-key-pair k8s://{shown}"
            ),
            permanent: true,
        })
    };
    let key = field("cosign.key")?;
    let password = field("cosign.password")?;
    Signer::from_secret(&key, &password, &shown)
        .map(Some)
        .map_err(|error| PublishFailure {
            message: error.to_string(),
            permanent: true,
        })
}

/// Verifies `children` and publishes their index for `build`, then, with
/// `signer`, signs the index and every child in every destination
/// repository (in cosign's format).
pub async fn publish(
    build: &MultiArchBuild,
    children: &[Child],
    docker_config_dir: Option<&Path>,
    signer: Option<&Signer>,
) -> Result<IndexOutcome, PublishFailure> {
    let spec = &build.spec.build;
    let transient = |message: String| PublishFailure {
        message,
        permanent: false,
    };
    let permanent = |message: String| PublishFailure {
        message,
        permanent: true,
    };
    let mut parsed = Vec::with_capacity(children.len());
    for child in children {
        let platform: Platform = child
            .platform
            .parse()
            .map_err(|e: kiln_builder::platform::PlatformError| permanent(e.to_string()))?;
        parsed.push((platform, child.digest.clone()));
    }
    let mut options = RegistryOptions {
        docker_config_dir: docker_config_dir.map(Path::to_path_buf),
        ..RegistryOptions::default()
    };
    if let Some(retry) = &spec.push_retry {
        options.push_retry = retry.count.unwrap_or(0).max(0) as u32;
        if let Some(d) = retry.initial_delay {
            options.push_retry_initial_delay = d.into();
        }
        if let Some(d) = retry.max_delay {
            options.push_retry_max_delay = d.into();
        }
    }
    let registry = Registry::new(options).map_err(|e| permanent(e.to_string()))?;
    let repositories =
        destination_repositories(&spec.destinations).map_err(|e| permanent(e.to_string()))?;
    let entries = verify_in_every_repository(&registry, &repositories, &parsed)
        .await
        .map_err(|(at, error)| {
            let message = format!("{}: {error}", children[at].platform);
            match error {
                index::VerifyError::Registry(ref e) if e.is_retryable() => transient(message),
                _ => permanent(message),
            }
        })?;
    let annotations: BTreeMap<String, String> = spec.output.index_annotations.clone();
    let plan = plan_index(
        oci_mode(spec.output.oci_mode),
        spec.output.legacy_manifest_list,
        &entries,
        &annotations,
    )
    .map_err(|e| permanent(e.to_string()))?;
    let attestations = match spec.output.attest_layout {
        AttestLayout::Referrers => Vec::new(),
        AttestLayout::Buildkit => publish_attestation_manifests(&registry, &repositories, &entries)
            .await
            .map_err(|error| match &error {
                LayoutError::Registry(e) if e.is_retryable() => {
                    transient(format!("attestation manifests: {error}"))
                }
                _ => permanent(format!("attestation manifests: {error}")),
            })?,
    };
    // kaniko's --push-ignore-immutable-tag-errors, for the index as for
    // each platform's builder: an existing immutable tag keeps its image.
    let outcome = publish_index(
        &registry,
        &spec.destinations,
        &entries,
        &attestations,
        plan,
        &annotations,
        spec.output.push_ignore_immutable_tag_errors,
    )
    .await
    .map_err(|error| match &error {
        index::PublishError::Registry(e) if e.is_retryable() => transient(error.to_string()),
        _ => permanent(error.to_string()),
    })?;
    if let Some(signer) = signer {
        let signing_failed = |error: SignError| match &error {
            SignError::Registry(e) if e.is_retryable() => transient(format!("signing: {error}")),
            _ => permanent(format!("signing: {error}")),
        };
        for repository in &repositories {
            let name = repository_of(repository);
            for digest in std::iter::once(&outcome.digest).chain(parsed.iter().map(|(_, d)| d)) {
                push_signature(&registry, signer, &name, digest)
                    .await
                    .map_err(signing_failed)?;
            }
        }
    }
    Ok(outcome)
}
