//! kaniko's executor flags (v1.24.0, and the maintained fork's additions)
//! and what each is in kiln: the same flag, another spelling of one of
//! kiln's, or accepted and ignored with a warning saying why. README.md's
//! kaniko table is rendered from [`KANIKO_FLAGS`].

use std::collections::BTreeSet;

/// What a kaniko spelling is in kiln.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InKiln {
    /// A kiln flag of the same name and kaniko's meaning.
    Same,
    /// Another spelling of the named kiln flag (`-v` of `--verbosity`,
    /// kaniko's deprecated camelCase names).
    Alias(&'static str),
    /// Accepted with kaniko's meaning where kiln can give it; the note
    /// says what kiln does.
    Meaning(&'static str),
    /// Accepted and ignored: setting it logs this reason as a warning.
    Ignored(&'static str),
}

/// Every spelling kaniko's executor accepts (long names without `--`,
/// short ones as `-x`), in kaniko's order, then the fork's additions.
pub const KANIKO_FLAGS: &[(&str, InKiln)] = &[
    ("verbosity", InKiln::Same),
    ("-v", InKiln::Alias("verbosity")),
    ("log-format", InKiln::Same),
    ("log-timestamp", InKiln::Same),
    ("force", InKiln::Same),
    ("dockerfile", InKiln::Same),
    ("-f", InKiln::Alias("dockerfile")),
    ("context", InKiln::Same),
    ("-c", InKiln::Alias("context")),
    ("context-sub-path", InKiln::Same),
    (
        "bucket",
        InKiln::Meaning(
            "the context is gs://BUCKET (or the URL given), which kiln refuses: kiln reads no \
             gs:// or s3:// context; download it and pass --context=tar://FILE",
        ),
    ),
    ("-b", InKiln::Alias("bucket")),
    ("destination", InKiln::Same),
    ("-d", InKiln::Alias("destination")),
    ("snapshot-mode", InKiln::Same),
    ("custom-platform", InKiln::Same),
    ("build-arg", InKiln::Same),
    ("insecure", InKiln::Same),
    ("skip-tls-verify", InKiln::Same),
    ("insecure-pull", InKiln::Same),
    ("skip-tls-verify-pull", InKiln::Same),
    ("push-retry", InKiln::Same),
    (
        "push-ignore-immutable-tag-errors",
        InKiln::Meaning(
            "a tag push the registry refuses because the tag exists and is immutable (400, 403, \
             409 or 412 naming an immutable or existing tag, and the tag is there) is a warning, \
             and the tag keeps its image",
        ),
    ),
    (
        "image-fs-extract-retry",
        InKiln::Ignored(
            "kiln unpacks base images from local blobs checked against their digests; downloads \
             are retried with --image-download-retry",
        ),
    ),
    ("image-download-retry", InKiln::Same),
    (
        "kaniko-dir",
        InKiln::Ignored("kiln keeps nothing in a kaniko directory"),
    ),
    ("tar-path", InKiln::Same),
    ("single-snapshot", InKiln::Same),
    ("reproducible", InKiln::Same),
    ("target", InKiln::Same),
    ("no-push", InKiln::Same),
    (
        "no-push-cache",
        InKiln::Meaning("no layer is pushed to the cache repository; cached layers are still used"),
    ),
    ("cache-repo", InKiln::Same),
    ("cache-dir", InKiln::Same),
    ("digest-file", InKiln::Same),
    ("image-name-with-digest-file", InKiln::Same),
    ("image-name-tag-with-digest-file", InKiln::Same),
    ("oci-layout-path", InKiln::Same),
    ("compression", InKiln::Same),
    ("compression-level", InKiln::Same),
    ("cache", InKiln::Same),
    (
        "compressed-caching",
        InKiln::Ignored("kiln's layers are compressed into files on disk, never held in memory"),
    ),
    ("cleanup", InKiln::Same),
    ("cache-ttl", InKiln::Same),
    ("insecure-registry", InKiln::Same),
    ("skip-tls-verify-registry", InKiln::Same),
    ("registry-certificate", InKiln::Same),
    ("registry-client-cert", InKiln::Same),
    (
        "registry-map",
        InKiln::Meaning("REGISTRY=MIRROR[;…]: mirrors tried, in order, before REGISTRY for pulls"),
    ),
    ("registry-mirror", InKiln::Same),
    (
        "skip-default-registry-fallback",
        InKiln::Meaning("an image with mirrors is pulled from them only"),
    ),
    ("ignore-var-run", InKiln::Same),
    ("label", InKiln::Same),
    (
        "skip-unused-stages",
        InKiln::Meaning(
            "on by default, as in BuildKit: --skip-unused-stages=false builds every stage, kaniko's default",
        ),
    ),
    (
        "use-new-run",
        InKiln::Ignored(
            "kaniko's experimental RUN change detection; kiln's is chosen with --snapshot-mode",
        ),
    ),
    (
        "git",
        InKiln::Meaning(
            "branch=NAME is the ref of a git context whose URL has no #ref; single-branch, \
             recurse-submodules and insecure-skip-tls are ignored with a warning",
        ),
    ),
    ("cache-copy-layers", InKiln::Same),
    ("cache-run-layers", InKiln::Same),
    ("ignore-path", InKiln::Same),
    (
        "force-build-metadata",
        InKiln::Ignored("kiln records metadata in the image config and adds no empty layers"),
    ),
    (
        "skip-push-permission-check",
        InKiln::Meaning("the destinations are not checked for push access before the build"),
    ),
    ("snapshotMode", InKiln::Alias("snapshot-mode")),
    ("customPlatform", InKiln::Alias("custom-platform")),
    ("tarPath", InKiln::Alias("tar-path")),
    ("whitelist-var-run", InKiln::Alias("ignore-var-run")),
    // The maintained fork's additions.
    ("annotation", InKiln::Same),
    (
        "credential-helpers",
        InKiln::Meaning(
            "for a registry the docker config (auths, credHelpers, credsStore) has no \
             credentials for, kiln runs docker-credential-NAME get for each listed NAME, in order, \
             as the docker CLI does",
        ),
    ),
    ("dryrun", InKiln::Alias("dry-run")),
    (
        "image-format",
        InKiln::Meaning("oci or docker media types, as --oci-mode=oci or --oci-mode=docker"),
    ),
    (
        "materialize",
        InKiln::Ignored("kiln's result never depends on unpacking a fully cached build"),
    ),
    (
        "pre-cleanup",
        InKiln::Ignored("with --isolation=inplace kiln always empties / before unpacking a stage"),
    ),
    (
        "preserve-context",
        InKiln::Ignored("a kiln build never changes its context"),
    ),
    ("secret", InKiln::Same),
];

/// The warning for each ignored kaniko flag among `changed` (flags set to
/// something other than their default), in table order.
pub fn ignored_warnings(changed: &BTreeSet<String>) -> Vec<String> {
    KANIKO_FLAGS
        .iter()
        .filter_map(|(flag, in_kiln)| match in_kiln {
            InKiln::Ignored(reason) if changed.contains(*flag) => Some(format!(
                "--{flag} is accepted for kaniko compatibility and has no effect: {reason}"
            )),
            _ => None,
        })
        .collect()
}

/// README.md's kaniko table: every spelling and what it is in kiln.
pub fn markdown() -> String {
    let mut out = String::from("| kaniko flag | in kiln |\n|---|---|\n");
    for (flag, in_kiln) in KANIKO_FLAGS {
        let spelled = if flag.starts_with('-') {
            format!("`{flag}`")
        } else {
            format!("`--{flag}`")
        };
        let what = match in_kiln {
            InKiln::Same => "kaniko's meaning".to_string(),
            InKiln::Alias(of) => format!("kaniko's meaning: the same as `--{of}`"),
            InKiln::Meaning(note) => format!("kaniko's meaning: {note}"),
            InKiln::Ignored(reason) => format!("accepted and ignored, with a warning: {reason}"),
        };
        out.push_str(&format!("| {spelled} | {} |\n", what.replace('|', "\\|")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ignored_flags_that_are_set_warn() {
        let changed: BTreeSet<String> = ["use-new-run", "kaniko-dir", "cache", "no-push-cache"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            ignored_warnings(&changed),
            [
                "--kaniko-dir is accepted for kaniko compatibility and has no effect: kiln keeps \
                 nothing in a kaniko directory",
                "--use-new-run is accepted for kaniko compatibility and has no effect: kaniko's \
                 experimental RUN change detection; kiln's is chosen with --snapshot-mode",
            ]
        );
    }
}
