//! Supply-chain documents about the images kiln pushes, attached to them
//! as OCI 1.1 referrers: SLSA provenance (`--provenance`), SBOMs (from
//! [`crate::sbom`]) and cosign signatures ([`sign`]). See
//! [`referrers`] for how a document reaches the registry, with the tag
//! schema where a registry lacks the referrers API.

pub mod buildkit_layout;
pub mod provenance;
pub mod referrers;
pub mod sign;

pub use provenance::{BuildFacts, ProvenanceMode, ResolvedBase};
pub use referrers::{AttachError, Attached, Attachment, Listing, Subject, attach};

/// `--attest-layout`: where the documents about a platform image are
/// listed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttestLayout {
    /// As OCI 1.1 referrers of the image only; the index lists platform
    /// images and nothing else.
    #[default]
    Referrers,
    /// As referrers and, in the published index, as BuildKit's
    /// `unknown/unknown` attestation manifests ([`buildkit_layout`]).
    BuildKit,
}

impl AttestLayout {
    /// The flag's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AttestLayout::Referrers => "referrers",
            AttestLayout::BuildKit => "buildkit",
        }
    }
}

/// The repositories of pushed references (`repo@sha256:…`), each once, in
/// order: two tags of one repository get one signature and one referrer.
pub fn repositories_of(pushed: &[String]) -> Vec<&str> {
    let mut repositories: Vec<&str> = Vec::new();
    for reference in pushed {
        let repository = reference
            .split_once('@')
            .map_or(reference.as_str(), |(r, _)| r);
        if !repositories.contains(&repository) {
            repositories.push(repository);
        }
    }
    repositories
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_repository_once_in_order() {
        let pushed = ["r/a@sha256:1", "r/b@sha256:1", "r/a@sha256:1"].map(String::from);
        assert_eq!(super::repositories_of(&pushed), ["r/a", "r/b"]);
    }
}
