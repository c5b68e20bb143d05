//! The image config fields the suite compares, and how they are read from
//! an image config JSON (OCI and Docker configs share these names).

use serde_json::{Map, Value};

/// Fields of the config's `config` object, compared as JSON values.
pub const RUNTIME_FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Labels",
    "Volumes",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
    "Shell",
];

/// Top-level fields naming the platform.
pub const PLATFORM_FIELDS: &[&str] = &["os", "architecture", "variant"];

/// How a reference's config is read beside kiln's.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EnvOrder {
    /// `Env` in its order, as Docker (BuildKit) keeps it.
    Kept,
    /// `Env` as a set: buildah moves a redefined variable to the end.
    Ignored,
}

/// The compared fields of `config` as (field, `field: value`), so two
/// images compare (and diff) field by field.
///
/// A missing field, `null`, an empty object and an empty list mean the
/// same at run time (no ports, no labels, nothing to run, no triggers):
/// buildah writes `"Entrypoint": []` and `"OnBuild": []` into every
/// Docker-format config, kiln omits them.
pub fn summary(config: &Value, env: EnvOrder) -> Vec<(String, String)> {
    let runtime = config.get("config").cloned().unwrap_or(Value::Null);
    let mut lines = Vec::new();
    for field in RUNTIME_FIELDS {
        let mut value = runtime.get(field).cloned().unwrap_or(Value::Null);
        if *field == "Healthcheck" {
            value = without_zero_durations(value);
        }
        // buildah moves a redefined variable to the end, Docker and kiln
        // keep its place; a process's environment has no order.
        if *field == "Env"
            && env == EnvOrder::Ignored
            && let Value::Array(variables) = &mut value
        {
            variables.sort_by_key(|v| v.as_str().unwrap_or_default().to_string());
        }
        if value.as_object().is_some_and(Map::is_empty)
            || value.as_array().is_some_and(Vec::is_empty)
            || value.as_str() == Some("")
        {
            value = Value::Null;
        }
        lines.push((field.to_string(), format!("{field}: {value}")));
    }
    for field in PLATFORM_FIELDS {
        let value = config.get(field).cloned().unwrap_or(Value::Null);
        let value = if value.as_str() == Some("") {
            Value::Null
        } else {
            value
        };
        lines.push((field.to_string(), format!("{field}: {value}")));
    }
    lines
}

/// A healthcheck's zero durations and retries mean "the default"; Docker
/// omits them and buildah writes them, so both forms compare equal.
fn without_zero_durations(value: Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .filter(|(_, v)| v.as_i64() != Some(0))
                .collect(),
        ),
        other => other,
    }
}

/// The fields of two summaries that differ, with both sides' lines;
/// `names` are the two sides' names (reference first).
pub fn diff(
    names: (&str, &str),
    reference: &[(String, String)],
    kiln: &[(String, String)],
) -> Vec<(String, String)> {
    let (theirs, ours) = names;
    let width = theirs.len().max(ours.len()) + 2;
    reference
        .iter()
        .zip(kiln)
        .filter(|(b, k)| b != k)
        .map(|((field, b), (_, k))| {
            (
                field.clone(),
                format!(
                    "  {:width$}{b}\n  {:width$}{k}",
                    format!("{theirs}:"),
                    format!("{ours}:")
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summaries_normalise_only_what_means_the_same() {
        let cases = [
            (
                json!({"architecture": "amd64", "os": "linux", "config": {"Labels": {}, "ExposedPorts": null}}),
                json!({"architecture": "amd64", "os": "linux", "variant": "", "config": {}}),
                true,
            ),
            (
                json!({"config": {"Healthcheck": {"Test": ["CMD", "true"], "Interval": 0, "Retries": 0}}}),
                json!({"config": {"Healthcheck": {"Test": ["CMD", "true"]}}}),
                true,
            ),
            (
                json!({"config": {"Healthcheck": {"Test": ["CMD", "true"], "Retries": 3}}}),
                json!({"config": {"Healthcheck": {"Test": ["CMD", "true"]}}}),
                false,
            ),
            (
                json!({"config": {"Entrypoint": [], "OnBuild": []}}),
                json!({"config": {"Entrypoint": null}}),
                true,
            ),
            (
                json!({"config": {"Cmd": [""]}}),
                json!({"config": {}}),
                false,
            ),
            (
                json!({"config": {"Env": ["A=1", "B=2"]}}),
                json!({"config": {"Env": ["B=2", "A=1"]}}),
                true,
            ),
            (
                json!({"config": {"Env": ["A=1", "B=2"]}}),
                json!({"config": {"Env": ["A=1", "B=3"]}}),
                false,
            ),
            (
                json!({"architecture": "arm64", "variant": "v8"}),
                json!({"architecture": "arm64"}),
                false,
            ),
        ];
        for (buildah, kiln, same) in cases {
            let differences = diff(
                ("buildah", "kiln"),
                &summary(&buildah, EnvOrder::Ignored),
                &summary(&kiln, EnvOrder::Ignored),
            );
            assert_eq!(
                differences.is_empty(),
                same,
                "{buildah} vs {kiln}: {differences:?}"
            );
        }
    }

    #[test]
    fn env_order_counts_only_when_kept() {
        let first = json!({"config": {"Env": ["A=1", "B=2"]}});
        let second = json!({"config": {"Env": ["B=2", "A=1"]}});
        let kept = diff(
            ("buildkit", "kiln"),
            &summary(&first, EnvOrder::Kept),
            &summary(&second, EnvOrder::Kept),
        );
        assert_eq!(
            kept,
            vec![(
                "Env".to_string(),
                "  buildkit: Env: [\"A=1\",\"B=2\"]\n  kiln:     Env: [\"B=2\",\"A=1\"]"
                    .to_string()
            )]
        );
        let ignored = diff(
            ("buildah", "kiln"),
            &summary(&first, EnvOrder::Ignored),
            &summary(&second, EnvOrder::Ignored),
        );
        assert_eq!(ignored, vec![]);
    }

    #[test]
    fn a_difference_names_both_sides() {
        let buildah = summary(&json!({"config": {"User": "app"}}), EnvOrder::Ignored);
        let kiln = summary(&json!({"config": {"User": "1000"}}), EnvOrder::Ignored);
        assert_eq!(
            diff(("buildah", "kiln"), &buildah, &kiln),
            vec![(
                "User".to_string(),
                "  buildah: User: \"app\"\n  kiln:    User: \"1000\"".to_string()
            )]
        );
    }
}
