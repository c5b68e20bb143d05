//! SLSA provenance v1 of one platform image, as an in-toto Statement
//! (`https://in-toto.io/Statement/v1`, predicate
//! `https://slsa.dev/provenance/v1`).
//!
//! `--provenance=min` records what the image was built from: the Dockerfile
//! (path and digest), the target, the platform, the context's source (and
//! its digest where the source names one) and every base image resolved to
//! its manifest digest, plus who built it and when. `max` adds the build
//! arguments' values. Secrets (`--secret`) are never an input here, and a
//! build argument whose name says it holds one (`*_TOKEN`, `PASSWORD`, …) is
//! recorded by name only; credentials in a context URL are removed.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::image::config::format_rfc3339;

/// `--provenance`: how much of the build the statement records (buildx's
/// `mode=min|max`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProvenanceMode {
    Min,
    Max,
}

impl ProvenanceMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ProvenanceMode::Min => "min",
            ProvenanceMode::Max => "max",
        }
    }
}

/// The predicate type of the statements kiln writes.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// The in-toto media type the statement is attached as.
pub const STATEMENT_MEDIA_TYPE: &str = "application/vnd.in-toto+json";
/// `buildDefinition.buildType`: how to read `externalParameters`.
pub const BUILD_TYPE: &str = "https://kiln.dev/provenance/dockerfile/v1";

/// A base image as the build resolved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedBase {
    /// The reference as the Dockerfile names it, after ARG expansion.
    pub reference: String,
    /// The manifest (or index) digest it resolved to, `sha256:…`.
    pub digest: String,
}

/// What a statement is made of.
#[derive(Clone, Debug)]
pub struct BuildFacts<'a> {
    pub mode: ProvenanceMode,
    /// The image's repository (`registry/name`) and manifest digest.
    pub repository: &'a str,
    pub digest: &'a str,
    /// `--dockerfile` as given, and the digest of its bytes.
    pub dockerfile: &'a str,
    pub dockerfile_digest: &'a str,
    pub target: Option<&'a str>,
    /// `os/arch[/variant]`.
    pub platform: &'a str,
    /// The context's source, already without credentials.
    pub context: &'a str,
    /// The context's digest (`sha256:…`) or commit (`gitCommit:<hex>`),
    /// where kiln knows one.
    pub context_digest: Option<&'a str>,
    /// The context is a local directory: its commit is the HEAD of the
    /// repository it is in, and files not committed may differ from it.
    pub context_is_worktree: bool,
    pub build_args: &'a BTreeMap<String, String>,
    pub bases: &'a [ResolvedBase],
    /// Seconds since 1970.
    pub started: u64,
    pub finished: u64,
}

/// Names of build arguments whose values are not recorded, even with
/// `max`: the words BuildKit's `SecretsUsedInArgOrEnv` check looks for.
fn names_a_secret(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [
        "apikey",
        "auth",
        "credential",
        "key",
        "password",
        "passwd",
        "pword",
        "secret",
        "token",
    ]
    .iter()
    .any(|word| lower.contains(word))
}

/// `sha256:abc` → `{"sha256": "abc"}`, in-toto's digest set.
fn digest_set(digest: &str) -> Value {
    match digest.split_once(':') {
        Some((algorithm, hex)) => json!({ algorithm: hex }),
        None => json!({}),
    }
}

/// The in-toto Statement for `facts`, as JSON bytes.
pub fn statement(facts: &BuildFacts<'_>) -> Vec<u8> {
    let mut external = json!({
        "dockerfile": facts.dockerfile,
        "platform": facts.platform,
        "context": facts.context,
    });
    if let Some(target) = facts.target {
        external["target"] = target.into();
    }
    if facts.mode == ProvenanceMode::Max {
        let args: BTreeMap<&str, &str> = facts
            .build_args
            .iter()
            .map(|(name, value)| {
                let shown = if names_a_secret(name) {
                    "(not recorded: the name says it is a secret)"
                } else {
                    value.as_str()
                };
                (name.as_str(), shown)
            })
            .collect();
        external["buildArgs"] = json!(args);
    }
    let mut dependencies = vec![json!({
        "uri": facts.dockerfile,
        "digest": digest_set(facts.dockerfile_digest),
    })];
    if let Some(digest) = facts.context_digest {
        let mut context = json!({ "uri": facts.context, "digest": digest_set(digest) });
        if facts.context_is_worktree {
            context["annotations"] = json!({
                "kiln.dev/context": "the HEAD commit of the git repository the local context directory is in; changes not committed are not recorded",
            });
        }
        dependencies.push(context);
    }
    for base in facts.bases {
        dependencies.push(json!({
            "uri": format!("pkg:docker/{}", base.reference),
            "digest": digest_set(&base.digest),
        }));
    }
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{
            "name": facts.repository,
            "digest": digest_set(facts.digest),
        }],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": { "provenanceMode": facts.mode.as_str() },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {
                    "id": "https://kiln.dev/builder",
                    "version": { "kiln": env!("CARGO_PKG_VERSION") },
                },
                "metadata": {
                    "startedOn": format_rfc3339(facts.started),
                    "finishedOn": format_rfc3339(facts.finished),
                },
            },
        },
    });
    serde_json::to_vec(&statement).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn facts<'a>(
        mode: ProvenanceMode,
        args: &'a BTreeMap<String, String>,
        bases: &'a [ResolvedBase],
    ) -> BuildFacts<'a> {
        BuildFacts {
            mode,
            repository: "registry.example/app",
            digest: "sha256:aa",
            dockerfile: "Dockerfile",
            dockerfile_digest: "sha256:dd",
            target: Some("final"),
            platform: "linux/arm64",
            context: "https://git.example/app.git#main",
            context_digest: None,
            context_is_worktree: false,
            build_args: args,
            bases,
            started: 0,
            finished: 61,
        }
    }

    #[test]
    fn a_statement_names_subject_inputs_bases_and_run() {
        let args = BTreeMap::from([("VERSION".to_string(), "1.2".to_string())]);
        let bases = [ResolvedBase {
            reference: "docker.io/library/debian:12".into(),
            digest: "sha256:bb".into(),
        }];
        let min: Value =
            serde_json::from_slice(&statement(&facts(ProvenanceMode::Min, &args, &bases))).unwrap();
        assert_eq!(min["_type"], "https://in-toto.io/Statement/v1");
        assert_eq!(min["predicateType"], PREDICATE_TYPE);
        assert_eq!(min["subject"][0]["name"], "registry.example/app");
        assert_eq!(min["subject"][0]["digest"]["sha256"], "aa");
        let definition = &min["predicate"]["buildDefinition"];
        assert_eq!(definition["externalParameters"]["target"], "final");
        assert_eq!(definition["externalParameters"]["platform"], "linux/arm64");
        assert!(
            definition["externalParameters"].get("buildArgs").is_none(),
            "min records no argument values"
        );
        let deps = definition["resolvedDependencies"].as_array().unwrap();
        assert_eq!(deps[0]["digest"]["sha256"], "dd");
        assert_eq!(deps[1]["uri"], "pkg:docker/docker.io/library/debian:12");
        assert_eq!(deps[1]["digest"]["sha256"], "bb");
        let run = &min["predicate"]["runDetails"];
        assert_eq!(run["metadata"]["startedOn"], "1970-01-01T00:00:00Z");
        assert_eq!(run["metadata"]["finishedOn"], "1970-01-01T00:01:01Z");

        let max: Value =
            serde_json::from_slice(&statement(&facts(ProvenanceMode::Max, &args, &bases))).unwrap();
        assert_eq!(
            max["predicate"]["buildDefinition"]["externalParameters"]["buildArgs"]["VERSION"],
            "1.2"
        );
    }

    #[test]
    fn a_context_commit_is_a_resolved_dependency() {
        let args = BTreeMap::new();
        let mut git = facts(ProvenanceMode::Min, &args, &[]);
        git.context_digest = Some("gitCommit:0123456789abcdef0123456789abcdef01234567");
        let recorded: Value = serde_json::from_slice(&statement(&git)).unwrap();
        let deps = &recorded["predicate"]["buildDefinition"]["resolvedDependencies"];
        assert_eq!(deps[1]["uri"], "https://git.example/app.git#main");
        assert_eq!(
            deps[1]["digest"]["gitCommit"],
            "0123456789abcdef0123456789abcdef01234567"
        );
        assert!(deps[1].get("annotations").is_none());

        git.context = "dir:///src/app";
        git.context_is_worktree = true;
        let recorded: Value = serde_json::from_slice(&statement(&git)).unwrap();
        let deps = &recorded["predicate"]["buildDefinition"]["resolvedDependencies"];
        assert!(
            deps[1]["annotations"]["kiln.dev/context"]
                .as_str()
                .unwrap()
                .contains("not committed")
        );
    }

    #[test]
    fn secret_looking_arguments_are_recorded_by_name_only() {
        let args = BTreeMap::from([
            ("NPM_TOKEN".to_string(), "s3cr3t-token-value".to_string()),
            ("DB_PASSWORD".to_string(), "hunter2-value".to_string()),
            ("GITHUB_AUTH".to_string(), "ghp_value".to_string()),
            ("MODE".to_string(), "release".to_string()),
        ]);
        let text = String::from_utf8(statement(&facts(ProvenanceMode::Max, &args, &[]))).unwrap();
        for value in ["s3cr3t-token-value", "hunter2-value", "ghp_value"] {
            assert!(!text.contains(value), "{value} leaked: {text}");
        }
        for name in ["NPM_TOKEN", "DB_PASSWORD", "GITHUB_AUTH"] {
            assert!(text.contains(name), "{name} is listed");
        }
        assert!(text.contains("release"));
    }
}
