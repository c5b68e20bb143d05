//! Admission behaviour of the CRD schemas, evaluated client-side: the CEL
//! rules and schema defaults run through kube-cel (kube's `cel` feature),
//! which mirrors the API server's defaulting-then-CEL order. OpenAPI keywords
//! (`pattern`, `minItems`, `enum`) are not evaluated by kube-cel; the CEL
//! rules carry the same platform pattern, and the e2e tests exercise a real
//! API server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kiln_crds::platform::{self, platform_is_valid};
use kiln_crds::{
    BuildRequest, Compression, MultiArchBuild, OciMode, OutputSpec, SchedulingSpec, render,
};
use kube::core::cel::{self, Validator};
use serde_json::{Value, json};
use std::time::Duration;

/// One table for the Rust check, the MultiArchBuild list rule and the
/// BuildRequest rule. Upper case is invalid, as in the pattern.
const PLATFORMS: &[(&str, bool)] = &[
    ("linux/amd64", true),
    ("linux/arm64", true),
    ("linux/arm64/v8", true),
    ("linux/arm/v7", true),
    ("linux/arm/v6", true),
    ("linux/386", true),
    ("linux/s390x", true),
    ("linux/ppc64le", true),
    ("linux/riscv64", true),
    ("linux/mips64_le", true),
    ("linux/amd64/v1.2", true),
    ("windows/amd64", true),
    ("linux", false),
    ("linux/", false),
    ("/amd64", false),
    ("linux/amd64/", false),
    ("linux//v8", false),
    ("linux/amd64/v8/x", false),
    ("Linux/AMD64", false),
    ("linux/AMD64", false),
    ("linux/arm64/V8", false),
    ("linux/amd-64", false),
    ("linux_x/amd64", false),
    ("linux/arm/v7_", false),
    ("linux /amd64", false),
    (" linux/amd64", false),
    ("linux/amd64\n", false),
    ("linux/amd64,linux/arm64", false),
    ("linux/ämd64", false),
    ("", false),
];

fn openapi_schema(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Value {
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

fn mab_schema() -> Value {
    openapi_schema(&render::crds()[0])
}

fn br_schema() -> Value {
    openapi_schema(&render::crds()[1])
}

fn mab(platforms: Value) -> Value {
    json!({
        "apiVersion": "kiln.dev/v1alpha1",
        "kind": "MultiArchBuild",
        "metadata": {"name": "hello", "namespace": "default"},
        "spec": {
            "context": "git://example.com/hello.git",
            "destinations": ["registry.example.com/hello:1"],
            "platforms": platforms,
        },
    })
}

fn br(platform: &str) -> Value {
    json!({
        "apiVersion": "kiln.dev/v1alpha1",
        "kind": "BuildRequest",
        "metadata": {"name": "hello-arm64", "namespace": "default"},
        "spec": {
            "context": "git://example.com/hello.git",
            "destinations": ["registry.example.com/hello:1"],
            "platform": platform,
        },
    })
}

/// `object` defaulted as the API server does it. Its algorithm
/// (apiextensions-apiserver `structuraldefaulting.Default`) fills missing
/// fields, then recurses into every field, including those it just filled,
/// so `output: {}` gains `output.ociMode: auto`. kube-cel 0.8's
/// `apply_defaults` recurses only into fields that were present; applying it
/// until nothing changes gives the API server's result.
fn apiserver_defaults(schema: &Value, object: &Value) -> Value {
    let mut current = object.clone();
    loop {
        let next = cel::apply_defaults(schema, &current);
        if next == current {
            return current;
        }
        current = next;
    }
}

/// The messages of the rules `object` violates (empty when admitted), after
/// defaulting.
fn violations(schema: &Value, object: &Value, old: Option<&Value>) -> Vec<String> {
    let object = apiserver_defaults(schema, object);
    let old = old.map(|old| apiserver_defaults(schema, old));
    match Validator::new().validate(schema, &object, old.as_ref()) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_vec().into_iter().map(|e| e.message).collect(),
    }
}

#[test]
fn platform_is_valid_table() {
    for &(input, valid) in PLATFORMS {
        assert_eq!(
            platform_is_valid(input),
            valid,
            "platform_is_valid({input:?})"
        );
    }
}

/// Whether `input` matches the OpenAPI `pattern`, evaluated with CEL's
/// `matches` (an RE2-syntax engine, like the API server's).
fn pattern_matches(pattern: &str, input: &str) -> bool {
    let program = cel::cel::Program::compile("input.matches(pattern)").unwrap();
    let mut context = cel::cel::Context::default();
    context.add_variable_from_value("input", input.to_owned());
    context.add_variable_from_value("pattern", pattern.to_owned());
    match program.execute(&context).unwrap() {
        cel::cel::Value::Bool(matched) => matched,
        other => panic!("matches returned {other:?}"),
    }
}

#[test]
fn platform_pattern_follows_the_table() {
    for &(input, valid) in PLATFORMS {
        assert_eq!(
            pattern_matches(platform::PLATFORM_PATTERN, input),
            valid,
            "pattern on {input:?}"
        );
    }
}

#[test]
fn duration_pattern_accepts_what_kube_parses() {
    let table: &[(&str, Option<Duration>)] = &[
        ("30m", Some(Duration::from_secs(1800))),
        ("1h30m", Some(Duration::from_secs(5400))),
        ("168h", Some(Duration::from_secs(168 * 3600))),
        ("1.5s", Some(Duration::from_millis(1500))),
        ("500ms", Some(Duration::from_millis(500))),
        ("250us", Some(Duration::from_micros(250))),
        ("250\u{b5}s", Some(Duration::from_micros(250))),
        ("250\u{3bc}s", Some(Duration::from_micros(250))),
        ("10ns", Some(Duration::from_nanos(10))),
        ("1800s", Some(Duration::from_secs(1800))),
        ("30", None),
        ("-5m", None),
        ("+5m", None),
        ("m", None),
        ("1d", None),
        ("1.m", None),
        ("30 m", None),
        ("", None),
    ];
    for (input, expected) in table {
        assert_eq!(
            pattern_matches(kiln_crds::spec::DURATION_PATTERN, input),
            expected.is_some(),
            "pattern on {input:?}"
        );
        if let Some(expected) = expected {
            let parsed: kube::core::Duration = input.parse().unwrap();
            assert_eq!(parsed, *expected, "{input}");
            // What serde writes back is accepted too.
            let written = serde_json::to_value(parsed).unwrap();
            assert!(
                pattern_matches(kiln_crds::spec::DURATION_PATTERN, written.as_str().unwrap()),
                "{input} is written as {written}, which the pattern rejects"
            );
        }
    }
}

#[test]
fn cel_platform_rules_follow_the_table() {
    let mab_schema = mab_schema();
    let br_schema = br_schema();
    for &(input, valid) in PLATFORMS {
        let expected = if valid {
            Vec::new()
        } else {
            vec![format!(
                "invalid platform format: {input} (expected os/arch)"
            )]
        };
        assert_eq!(
            violations(&mab_schema, &mab(json!([input])), None),
            expected,
            "MultiArchBuild platforms [{input:?}]"
        );
        assert_eq!(
            violations(&br_schema, &br(input), None),
            expected,
            "BuildRequest platform {input:?}"
        );
    }
}

#[test]
fn cel_message_names_the_first_bad_platform() {
    assert_eq!(
        violations(
            &mab_schema(),
            &mab(json!(["linux/amd64", "linux", "Linux/ARM64"])),
            None
        ),
        ["invalid platform format: linux (expected os/arch)"]
    );
}

#[test]
fn cel_rejects_duplicate_platforms() {
    let schema = mab_schema();
    assert_eq!(
        violations(
            &schema,
            &mab(json!(["linux/amd64", "linux/arm64", "linux/amd64"])),
            None
        ),
        ["duplicate platform: linux/amd64 (list each platform once)"]
    );
    assert_eq!(
        violations(
            &schema,
            &mab(json!(["linux/arm64", "linux/arm64/v8", "linux/amd64"])),
            None
        ),
        Vec::<String>::new()
    );
}

#[test]
fn cel_rejects_zstd_with_docker_media_types() {
    let schema = mab_schema();
    let with_output = |output: Value| {
        let mut object = mab(json!(["linux/amd64"]));
        object["spec"]["output"] = output;
        object
    };
    assert_eq!(
        violations(
            &schema,
            &with_output(json!({"ociMode": "docker", "compression": "zstd"})),
            None
        ),
        [kiln_crds::spec::OUTPUT_DOCKER_ZSTD_MESSAGE]
    );
    for allowed in [
        json!({"ociMode": "oci", "compression": "zstd"}),
        json!({"compression": "zstd"}),
        json!({"ociMode": "docker"}),
        json!({}),
    ] {
        assert_eq!(
            violations(&schema, &with_output(allowed.clone()), None),
            Vec::<String>::new(),
            "{allowed}"
        );
    }
}

#[test]
fn build_request_platform_is_immutable() {
    let schema = br_schema();
    let old = br("linux/amd64");
    assert_eq!(
        violations(&schema, &br("linux/arm64"), Some(&old)),
        [platform::PLATFORM_IMMUTABLE_MESSAGE]
    );
    assert_eq!(
        violations(&schema, &br("linux/amd64"), Some(&old)),
        Vec::<String>::new()
    );
}

#[test]
fn rule_cost_is_bounded_by_max_items_and_length() {
    let schema = mab_schema();
    let platforms = &schema["properties"]["spec"]["properties"]["platforms"];
    let compiled = cel::compile_schema(platforms);
    assert!(!compiled.has_errors());
    for rule in [platform::PLATFORMS_RULE, platform::PLATFORMS_UNIQUE_RULE] {
        assert_eq!(cel::estimate_rule_cost(rule, &compiled), []);
    }
    // Without the bounds the estimate does flag the rules, so the check above
    // is not vacuous.
    let mut unbounded = platforms.clone();
    unbounded.as_object_mut().unwrap().remove("maxItems");
    let compiled = cel::compile_schema(&unbounded);
    assert!(!cel::estimate_rule_cost(platform::PLATFORMS_UNIQUE_RULE, &compiled).is_empty());
}

#[test]
fn schema_defaults_fill_omitted_objects() {
    let schema = mab_schema();
    let defaulted = apiserver_defaults(&schema, &mab(json!(["linux/amd64"])));
    let spec = &defaulted["spec"];
    assert_eq!(spec["dockerfile"], "Dockerfile");
    assert_eq!(spec["retries"], 2);
    assert_eq!(
        spec["output"],
        json!({"ociMode": "auto", "compression": "gzip", "publishIndex": true})
    );
    assert_eq!(spec["scheduling"], json!({"requireNativeNodes": true}));

    // A partly written object keeps what the user wrote and gains the rest.
    let mut partial = mab(json!(["linux/amd64"]));
    partial["spec"]["output"] = json!({"compression": "zstd"});
    partial["spec"]["scheduling"] = json!({"requireNativeNodes": false});
    let defaulted = apiserver_defaults(&schema, &partial);
    assert_eq!(
        defaulted["spec"]["output"],
        json!({"ociMode": "auto", "compression": "zstd", "publishIndex": true})
    );
    assert_eq!(
        defaulted["spec"]["scheduling"],
        json!({"requireNativeNodes": false})
    );

    // The BuildRequest shares the defaults.
    let defaulted = apiserver_defaults(&br_schema(), &br("linux/arm64"));
    assert_eq!(defaulted["spec"]["output"]["publishIndex"], true);
    assert_eq!(defaulted["spec"]["scheduling"]["requireNativeNodes"], true);
    assert_eq!(defaulted["spec"]["buildGeneration"], 0);
}

#[test]
fn serde_defaults_equal_schema_defaults() {
    // What the operator reads is the same whether the API server filled the
    // defaults or the object never went through one.
    let raw = mab(json!(["linux/amd64"]));
    let defaulted = apiserver_defaults(&mab_schema(), &raw);
    let from_raw: MultiArchBuild = serde_json::from_value(raw).unwrap();
    let from_defaulted: MultiArchBuild = serde_json::from_value(defaulted).unwrap();
    assert_eq!(from_raw, from_defaulted);
    assert_eq!(from_raw.spec.build.output, OutputSpec::default());
    assert_eq!(from_raw.spec.build.scheduling, SchedulingSpec::default());
    assert_eq!(from_raw.spec.build.output.oci_mode, OciMode::Auto);
    assert_eq!(from_raw.spec.build.output.compression, Compression::Gzip);
    assert!(from_raw.spec.build.output.publish_index);
    assert!(from_raw.spec.build.scheduling.require_native_nodes);
    assert_eq!(from_raw.spec.build.retries, 2);
    assert_eq!(from_raw.spec.build.dockerfile, "Dockerfile");

    let raw = br("linux/arm64");
    let defaulted = apiserver_defaults(&br_schema(), &raw);
    let from_raw: BuildRequest = serde_json::from_value(raw).unwrap();
    let from_defaulted: BuildRequest = serde_json::from_value(defaulted).unwrap();
    assert_eq!(from_raw, from_defaulted);
    assert_eq!(from_raw.spec.build_generation, 0);
}

fn sample() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/samples/multiarchbuild.yaml"
    );
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn sample_round_trips_and_is_admitted() {
    let yaml = sample();
    let build: MultiArchBuild = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(build.metadata.name.as_deref(), Some("hello"));
    assert_eq!(build.spec.platforms, ["linux/amd64", "linux/arm64"]);
    assert!(build.spec.platforms.iter().all(|p| platform_is_valid(p)));
    let spec = &build.spec.build;
    assert_eq!(
        spec.destinations,
        [
            "registry.example.com/example/hello:1.0.0",
            "registry.example.com/example/hello:latest"
        ]
    );
    assert_eq!(spec.output.oci_mode, OciMode::Oci);
    assert!(spec.scheduling.require_native_nodes);
    assert_eq!(spec.retries, 2);
    assert_eq!(spec.timeout, Some(Duration::from_secs(30 * 60).into()));
    let cache = spec.cache.as_ref().unwrap();
    assert!(cache.enabled);
    assert_eq!(cache.ttl, Some(Duration::from_secs(168 * 3600).into()));
    assert_eq!(cache.arch_repo_suffix.as_deref(), Some("-${ARCH}"));
    let push_retry = spec.push_retry.as_ref().unwrap();
    assert_eq!(push_retry.count, Some(3));
    assert_eq!(
        push_retry.initial_delay,
        Some(Duration::from_secs(1).into())
    );
    assert_eq!(push_retry.max_delay, Some(Duration::from_secs(30).into()));
    assert_eq!(
        spec.registry_secret_ref.as_ref().map(|s| s.name.as_str()),
        Some("registry-credentials")
    );
    let resources = spec.scheduling.resources.as_ref().unwrap();
    assert_eq!(
        resources.requests.as_ref().unwrap()["memory"].0,
        "2Gi".to_owned()
    );

    // Serialize and read back: the same object.
    let json = serde_json::to_value(&build).unwrap();
    let again: MultiArchBuild = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(again, build);
    // The only field written differently is the normalised durations.
    let original: Value = serde_yaml::from_str(&yaml).unwrap();
    let mut expected = original.clone();
    expected["spec"]["timeout"] = json!("1800s");
    expected["spec"]["cache"]["ttl"] = json!("604800s");
    assert_eq!(json, expected);

    // Admitted by the CEL rules, as written and after defaulting.
    assert_eq!(
        violations(&mab_schema(), &original, None),
        Vec::<String>::new()
    );
}
