//! What a pushed platform image gets besides its layers: SLSA provenance
//! (`--provenance`) and an SPDX SBOM (`--sbom`) attached as OCI referrers
//! in every repository it was pushed to, and with `--sign-key` its cosign
//! signature and both documents pushed signed as attestations.
//!
//! A registry that refuses a document gets a warning naming it and the
//! image stays published; with `--oci-layout-path` the document is written
//! into the layout instead of being lost. A signature that cannot be pushed
//! is an error: a user who asked for signed images must not get unsigned
//! ones silently.

use std::collections::BTreeMap;
use std::path::Path;

use tracing::{info, warn};

use super::outputs::{BuildOutcome, OutputPlan};
use super::{BuildError, BuiltImage, Session, unix_now};
use crate::attest::{self, Attachment, Listing, provenance};
use crate::context::ContextSource;
use crate::image::Descriptor;
use crate::options::BuildOptions;
use crate::sbom;

use crate::attest::buildkit_layout::SPDX_PREDICATE_TYPE;

/// One document for one repository, before it is attached.
struct Document {
    /// For the log: `SLSA provenance`, `SBOM`.
    what: &'static str,
    attachment: Attachment,
    /// The in-toto statement to push signed, with its predicate type.
    statement: Vec<u8>,
    predicate_type: &'static str,
}

impl Session {
    pub(super) async fn attest_and_sign(
        &self,
        image: &BuiltImage,
        outcome: &BuildOutcome,
        plan: &OutputPlan<'_>,
    ) -> Result<(), BuildError> {
        let sbom = match plan.sbom {
            true => self.sbom_of(image, outcome).await,
            false => None,
        };
        let subject = Descriptor::new(&outcome.media_type, &outcome.digest, outcome.size);
        for repository in attest::repositories_of(&outcome.pushed) {
            let mut documents = Vec::new();
            if let Some((mode, options)) = plan.provenance {
                documents.push(self.provenance(image, outcome, repository, mode, options));
            }
            if let Some(sbom) = &sbom {
                documents.push(spdx_document(sbom, repository, &outcome.digest));
            }
            for document in &documents {
                attach_or_keep(
                    &self.registry,
                    repository,
                    &subject,
                    document,
                    plan.oci_layout_path,
                )
                .await;
            }
            let Some(signer) = &self.signer else {
                continue;
            };
            let signature =
                attest::sign::push_signature(&self.registry, signer, repository, &outcome.digest)
                    .await?;
            info!("signed {repository}@{} ({signature})", outcome.digest);
            for document in &documents {
                let attestation = attest::sign::push_attestation(
                    &self.registry,
                    signer,
                    repository,
                    &outcome.digest,
                    &document.statement,
                    document.predicate_type,
                )
                .await?;
                info!(
                    "signed the {} of {repository}@{} ({attestation})",
                    document.what, outcome.digest
                );
            }
        }
        Ok(())
    }

    /// The SBOM of `image`, from its layers (fetched where only the
    /// registry has them). A failure is a warning: the image is published
    /// without an SBOM.
    async fn sbom_of(&self, image: &BuiltImage, outcome: &BuildOutcome) -> Option<sbom::Sbom> {
        let started = std::time::Instant::now();
        let descriptors: Vec<Descriptor> = image
            .image
            .layers
            .iter()
            .map(|l| l.descriptor.clone())
            .collect();
        let stored = match self
            .blobs()
            .stored_layers(&image.image.layers, &descriptors)
            .await
        {
            Ok(stored) => stored,
            Err(error) => {
                warn!("the SBOM was not made ({error}); the image is published without it");
                return None;
            }
        };
        let layers: Vec<sbom::LayerFile> = stored
            .into_iter()
            .map(|layer| sbom::LayerFile {
                path: layer.path,
                media_type: layer.descriptor.media_type,
            })
            .collect();
        let subject = sbom::Subject {
            reference: outcome
                .pushed
                .first()
                .cloned()
                .unwrap_or_else(|| outcome.digest.clone()),
            platform: image.platform.clone(),
            manifest_digest: outcome.digest.clone(),
        };
        let options = sbom::SbomOptions::new(self.work.path(), self.timestamps.created(self.now));
        let generated =
            tokio::task::spawn_blocking(move || sbom::generate(&layers, &subject, &options)).await;
        let sbom = match generated {
            Ok(Ok(sbom)) => sbom,
            Ok(Err(error)) => {
                warn!("the SBOM was not made ({error}); the image is published without it");
                return None;
            }
            Err(join) => {
                warn!("the SBOM was not made ({join}); the image is published without it");
                return None;
            }
        };
        for skipped in &sbom.skipped {
            warn!(
                "SBOM: /{} (layer {}) not read: {}; its packages are missing from the SBOM",
                skipped.path, skipped.layer, skipped.reason
            );
        }
        info!(
            "SBOM: {} packages from {} layers in {:.1}s",
            sbom.packages.len(),
            sbom.stats.layers,
            started.elapsed().as_secs_f64()
        );
        Some(sbom)
    }

    /// The SLSA provenance statement of the image in `repository`.
    fn provenance(
        &self,
        image: &BuiltImage,
        outcome: &BuildOutcome,
        repository: &str,
        mode: attest::ProvenanceMode,
        options: &BuildOptions,
    ) -> Document {
        let source = ContextSource::parse(&options.context).ok();
        let context = match &source {
            // A download URL's query may be a signature (pre-signed S3).
            Some(ContextSource::Http { url }) => crate::context::redact_url(url)
                .split(['?', '#'])
                .next()
                .unwrap_or_default()
                .to_string(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let context_digest = match &source {
            Some(ContextSource::Oci { reference }) => reference
                .rsplit_once('@')
                .map(|(_, digest)| digest.to_string()),
            // SLSA's digest-set name for a commit id.
            _ => (self.context.revision.as_ref()).map(|commit| format!("gitCommit:{commit}")),
        };
        let context_uncommitted_possible = matches!(source, Some(ContextSource::Dir { .. }));
        let platform = image.platform.to_string();
        let statement = provenance::statement(&attest::BuildFacts {
            mode,
            repository,
            digest: &outcome.digest,
            dockerfile: &options.dockerfile,
            dockerfile_digest: &self.dockerfile_digest,
            target: options.target.as_deref(),
            platform: &platform,
            context: &context,
            context_digest: context_digest.as_deref(),
            context_is_worktree: context_uncommitted_possible,
            build_args: &options.build_args,
            bases: &image.bases,
            started: image.started_at,
            finished: unix_now(),
        });
        Document {
            what: "SLSA provenance",
            attachment: Attachment {
                artifact_type: provenance::STATEMENT_MEDIA_TYPE.to_string(),
                bytes: statement.clone(),
                annotations: predicate_annotation(provenance::PREDICATE_TYPE),
            },
            statement,
            predicate_type: provenance::PREDICATE_TYPE,
        }
    }
}

fn predicate_annotation(predicate_type: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(
        "in-toto.io/predicate-type".to_string(),
        predicate_type.to_string(),
    )])
}

/// The SBOM attached as itself (`application/spdx+json`), and as the
/// predicate of an in-toto statement about the image when signed (what
/// `cosign verify-attestation --type spdxjson` reads).
fn spdx_document(sbom: &sbom::Sbom, repository: &str, digest: &str) -> Document {
    let predicate: serde_json::Value =
        serde_json::from_slice(&sbom.document).unwrap_or(serde_json::Value::Null);
    let statement =
        attest::buildkit_layout::statement(repository, digest, SPDX_PREDICATE_TYPE, predicate);
    Document {
        what: "SBOM",
        attachment: Attachment {
            artifact_type: sbom.media_type.to_string(),
            bytes: sbom.document.clone(),
            annotations: predicate_annotation(SPDX_PREDICATE_TYPE),
        },
        statement,
        predicate_type: SPDX_PREDICATE_TYPE,
    }
}

/// Attaches `document` to `subject` in `repository`; where the registry
/// refuses, warns naming it and, with an OCI layout, keeps it there.
async fn attach_or_keep(
    registry: &crate::registry::Registry,
    repository: &str,
    subject: &Descriptor,
    document: &Document,
    oci_layout: Option<&Path>,
) {
    let target = attest::Subject {
        repository,
        descriptor: subject.clone(),
    };
    let error = match attest::attach(registry, &target, &document.attachment).await {
        Ok(attached) => {
            info!(
                "attached the {} {} ({})",
                document.what,
                attached.reference,
                match attached.listing {
                    Listing::ReferrersApi => "referrers API",
                    Listing::TagSchema => "tag schema: the registry has no referrers API",
                }
            );
            return;
        }
        Err(error) => error,
    };
    warn!(
        "{repository}: the {} was not attached ({error}); the image is published without it",
        document.what
    );
    // --oci-layout-path holds the image: the document goes next to it
    // rather than nowhere.
    let Some(path) = oci_layout else {
        return;
    };
    let written = crate::image::OciLayout::open_or_create(path).and_then(|layout| {
        attest::referrers::write_to_layout(&layout, subject, &document.attachment)
    });
    match written {
        Ok(digest) => info!(
            "wrote the {} to the OCI layout {} ({digest})",
            document.what,
            path.display()
        ),
        Err(error) => warn!(
            "writing the {} to the OCI layout {}: {error}",
            document.what,
            path.display()
        ),
    }
}
