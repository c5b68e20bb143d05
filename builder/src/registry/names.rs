//! Names of images as written in flags and specs: the repository or tag
//! part of `registry/repo:tag@digest`, and the distinct repositories a
//! list of destinations names.

use oci_spec::distribution::Reference;

/// `registry/repo:tag` → `registry/repo`; a digest reference keeps only
/// the name, too.
pub fn repository(name: &str) -> String {
    let without_digest = name.split('@').next().unwrap_or(name);
    match without_digest.rfind(':') {
        Some(colon) if !without_digest[colon..].contains('/') => {
            without_digest[..colon].to_string()
        }
        _ => without_digest.to_string(),
    }
}

pub fn tag_of(name: &str) -> Option<String> {
    let without_digest = name.split('@').next().unwrap_or(name);
    let colon = without_digest.rfind(':')?;
    let tag = &without_digest[colon + 1..];
    (!tag.contains('/')).then(|| tag.to_string())
}

/// `registry/repo` of a parsed reference: without tag or digest.
pub fn repository_of(reference: &Reference) -> String {
    format!("{}/{}", reference.registry(), reference.repository())
}

/// The repositories images and indexes go to, first destination first,
/// each once.
pub fn destination_repositories(
    destinations: &[String],
) -> Result<Vec<Reference>, super::RegistryError> {
    let mut seen = std::collections::BTreeSet::new();
    let mut repositories = Vec::new();
    for destination in destinations {
        let reference = super::parse_reference(destination)?;
        let key = (
            reference.resolve_registry().to_string(),
            reference.repository().to_string(),
        );
        if seen.insert(key) {
            repositories.push(reference);
        }
    }
    Ok(repositories)
}
