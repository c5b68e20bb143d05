//! Names and labels of the objects the operator creates. Kubernetes limits
//! most names to 253 characters and Job names to 63 (the Job controller puts
//! the name into a label of its pods), so long names are shortened with a
//! hash of the full name: two different inputs never collide, and the same
//! input always gives the same name, which keeps every reconcile idempotent.

use sha2::{Digest, Sha256};

/// Label on everything the operator creates for a MultiArchBuild.
pub const MULTI_ARCH_BUILD_LABEL: &str = "kiln.dev/multiarchbuild";
/// Label on Jobs, pods and access objects of a BuildRequest.
pub const BUILD_REQUEST_LABEL: &str = "kiln.dev/build-request";
/// Label on a Job: the attempt it runs (1, 2, …).
pub const ATTEMPT_LABEL: &str = "kiln.dev/attempt";
/// Label on a BuildRequest: the MultiArchBuild generation it builds.
pub const GENERATION_LABEL: &str = "kiln.dev/build-generation";
/// `app.kubernetes.io/managed-by` value.
pub const MANAGED_BY: &str = "kiln-operator";

/// Longest name of a Job (its pods carry it in the `job-name` label).
pub const JOB_NAME_MAX: usize = 63;
/// Longest name of most other objects (DNS subdomain).
pub const NAME_MAX: usize = 253;

/// `parts` joined by `-`, lower-cased, with characters a DNS label cannot
/// hold turned into `-`; cut to `max` characters and suffixed with 8 hex
/// characters of the full name's hash when longer.
pub fn object_name(parts: &[&str], max: usize) -> String {
    let full: String = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| sanitize(p))
        .collect::<Vec<_>>()
        .join("-");
    if full.len() <= max {
        return full;
    }
    let hash = hex::encode(Sha256::digest(full.as_bytes()));
    let keep = max - 9;
    let head = full[..keep].trim_end_matches('-');
    format!("{head}-{}", &hash[..8])
}

fn sanitize(part: &str) -> String {
    part.chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect()
}

/// `linux/arm64/v8` → `linux-arm64-v8`.
pub fn platform_slug(platform: &str) -> String {
    platform.replace('/', "-")
}

/// The BuildRequest of one platform of one generation of a MultiArchBuild.
/// The generation is part of the name, so a spec change makes new requests
/// and the results of two generations can never be confused.
pub fn build_request_name(multi_arch_build: &str, platform: &str, generation: i64) -> String {
    object_name(
        &[
            multi_arch_build,
            &platform_slug(platform),
            &format!("g{generation}"),
        ],
        NAME_MAX,
    )
}

/// The builder Job of one attempt of a BuildRequest.
pub fn job_name(build_request: &str, attempt: i32) -> String {
    object_name(&[build_request, &attempt.to_string()], JOB_NAME_MAX)
}

/// ServiceAccount, Role and RoleBinding that let a BuildRequest's builder
/// pods patch that BuildRequest's status and nothing else.
pub fn builder_access_name(build_request: &str) -> String {
    object_name(&[build_request, "builder"], NAME_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_bounded() {
        assert_eq!(
            build_request_name("hello", "linux/arm64/v8", 3),
            "hello-linux-arm64-v8-g3"
        );
        assert_eq!(
            job_name("hello-linux-amd64-g1", 2),
            "hello-linux-amd64-g1-2"
        );
        assert_eq!(
            builder_access_name("hello-linux-amd64-g1"),
            "hello-linux-amd64-g1-builder"
        );
        assert_eq!(object_name(&["My_App", "", "x"], 63), "my-app-x");

        let long = "a".repeat(70);
        let one = job_name(&long, 1);
        let two = job_name(&long, 2);
        assert_eq!(one.len(), JOB_NAME_MAX);
        assert_eq!(two.len(), JOB_NAME_MAX);
        assert_ne!(one, two, "attempts must never share a Job name");
        assert_eq!(
            one,
            job_name(&long, 1),
            "the same input gives the same name"
        );
        assert!(one.starts_with(&"a".repeat(54)));
    }
}
