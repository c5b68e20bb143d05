//! Supply-chain documents about the images kiln pushes, attached to them
//! as OCI 1.1 referrers: SLSA provenance (`--provenance`). See
//! [`referrers`] for how a document reaches the registry, with the tag
//! schema where a registry lacks the referrers API.

pub mod provenance;
pub mod referrers;
pub mod sign;

pub use provenance::{BuildFacts, ProvenanceMode, ResolvedBase};
pub use referrers::{AttachError, Attached, Attachment, Listing, Subject, attach};
