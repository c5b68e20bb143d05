//! The committed CRD YAML is what `crdgen` renders, and the rendered CRDs
//! carry the schema the operator issue asks for.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kiln_crds::render::{self, REGENERATE};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn committed_yaml_is_what_crdgen_renders() {
    let root = repo_root();
    let mut stale = Vec::new();
    for (relative, rendered) in render::generated_files().unwrap() {
        match std::fs::read(root.join(&relative)) {
            Ok(committed) if committed == rendered.as_bytes() => {}
            Ok(_) => stale.push(format!("{} differs", relative.display())),
            Err(e) => stale.push(format!("{} unreadable: {e}", relative.display())),
        }
    }
    assert!(
        stale.is_empty(),
        "generated CRD files are out of date:\n  {}\nrun `{REGENERATE}` and commit the result",
        stale.join("\n  ")
    );
    assert_eq!(render::stale_files(&root).unwrap(), Vec::<PathBuf>::new());
}

#[test]
fn generated_file_list() {
    let paths: Vec<_> = render::generated_files()
        .unwrap()
        .into_iter()
        .map(|(p, _)| p.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        paths,
        [
            "charts/kiln/crds/multiarchbuilds.kiln.dev.yaml",
            "charts/kiln/crds/buildrequests.kiln.dev.yaml",
            "config/crd/multiarchbuilds.kiln.dev.yaml",
            "config/crd/buildrequests.kiln.dev.yaml",
            "config/crd/kustomization.yaml",
        ]
    );
    let kustomization = render::kustomization(&render::render_crds().unwrap());
    assert!(kustomization.ends_with(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n\
         - multiarchbuilds.kiln.dev.yaml\n- buildrequests.kiln.dev.yaml\n"
    ));
}

#[test]
fn rendering_is_deterministic_and_faithful() {
    let first = render::render_stream().unwrap();
    assert_eq!(first, render::render_stream().unwrap());
    let files = render::render_crds().unwrap();
    let concatenated: String = files.iter().map(|f| format!("---\n{}", f.yaml)).collect();
    assert_eq!(first, concatenated);

    // The YAML stream reads back as exactly the two CRD objects.
    let parsed: Vec<CustomResourceDefinition> = serde_yaml::Deserializer::from_str(&first)
        .map(|doc| CustomResourceDefinition::deserialize(doc).unwrap())
        .collect();
    let expected = render::crds();
    assert_eq!(parsed.len(), 2);
    for (parsed, expected) in parsed.iter().zip(expected.iter()) {
        assert_eq!(
            serde_json::to_value(parsed).unwrap(),
            serde_json::to_value(expected).unwrap()
        );
    }
}

/// The CRD of `kind` as JSON.
fn crd(kind: &str) -> Value {
    render::crds()
        .iter()
        .map(|c| serde_json::to_value(c).unwrap())
        .find(|c| c["spec"]["names"]["kind"] == kind)
        .unwrap()
}

/// `openAPIV3Schema` of the only version.
fn schema(crd: &Value) -> &Value {
    &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
}

fn at<'a>(value: &'a Value, pointer: &str) -> &'a Value {
    value
        .pointer(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in the schema"))
}

#[test]
fn names_scope_version_and_subresources() {
    for (kind, plural, short) in [
        ("MultiArchBuild", "multiarchbuilds", "mab"),
        ("BuildRequest", "buildrequests", "br"),
    ] {
        let crd = crd(kind);
        assert_eq!(crd["metadata"]["name"], format!("{plural}.kiln.dev"));
        assert_eq!(crd["spec"]["group"], kiln_crds::GROUP);
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        assert_eq!(
            crd["spec"]["names"],
            json!({
                "categories": ["kiln"],
                "kind": kind,
                "plural": plural,
                "shortNames": [short],
                "singular": kind.to_lowercase(),
            })
        );
        let versions = crd["spec"]["versions"].as_array().unwrap();
        assert_eq!(versions.len(), 1);
        assert_eq!(versions[0]["name"], kiln_crds::VERSION);
        assert_eq!(versions[0]["served"], true);
        assert_eq!(versions[0]["storage"], true);
        assert_eq!(versions[0]["subresources"], json!({"status": {}}));
    }
}

#[test]
fn printer_columns() {
    let column = |name: &str, type_: &str, path: &str| json!({"name": name, "type": type_, "jsonPath": path});
    assert_eq!(
        crd("MultiArchBuild")["spec"]["versions"][0]["additionalPrinterColumns"],
        json!([
            column("Phase", "string", ".status.phase"),
            column("Platforms", "string", ".spec.platforms"),
            column("Digest", "string", ".status.index.digest"),
            column("Age", "date", ".metadata.creationTimestamp"),
        ])
    );
    let br = crd("BuildRequest");
    assert_eq!(
        br["spec"]["versions"][0]["additionalPrinterColumns"],
        json!([
            column("Platform", "string", ".spec.platform"),
            column("Phase", "string", ".status.phase"),
            column("Digest", "string", ".status.digest"),
            column("Age", "date", ".metadata.creationTimestamp"),
        ])
    );
    assert_eq!(
        br["spec"]["versions"][0]["selectableFields"],
        json!([{"jsonPath": ".spec.platform"}])
    );
}

#[test]
fn status_lists_are_list_maps_with_required_keys() {
    let cases = [
        (
            "MultiArchBuild",
            "/properties/status/properties/platforms",
            "platform",
        ),
        (
            "MultiArchBuild",
            "/properties/status/properties/conditions",
            "type",
        ),
        (
            "BuildRequest",
            "/properties/status/properties/conditions",
            "type",
        ),
    ];
    for (kind, pointer, key) in cases {
        let crd = crd(kind);
        let list = at(schema(&crd), pointer);
        assert_eq!(list["type"], "array", "{kind} {pointer}");
        assert_eq!(list["x-kubernetes-list-type"], "map", "{kind} {pointer}");
        assert_eq!(
            list["x-kubernetes-list-map-keys"],
            json!([key]),
            "{kind} {pointer}"
        );
        let required = list["items"]["required"].as_array().unwrap();
        assert!(
            required.contains(&json!(key)),
            "{kind} {pointer}: {key} not required"
        );
        // A key must not be nullable or defaulted away.
        assert_eq!(list["items"]["properties"][key]["type"], "string");
        assert!(list["items"]["properties"][key].get("nullable").is_none());
    }
}

#[test]
fn defaults_sit_at_their_paths() {
    for kind in ["MultiArchBuild", "BuildRequest"] {
        let crd = crd(kind);
        let spec = at(schema(&crd), "/properties/spec/properties");
        let cases = [
            ("/dockerfile/default", json!("Dockerfile")),
            ("/retries/default", json!(2)),
            ("/retries/minimum", json!(0.0)),
            ("/output/default", json!({})),
            ("/output/properties/ociMode/default", json!("auto")),
            (
                "/output/properties/ociMode/enum",
                json!(["oci", "docker", "auto"]),
            ),
            ("/output/properties/compression/default", json!("gzip")),
            (
                "/output/properties/compression/enum",
                json!(["gzip", "zstd"]),
            ),
            ("/output/properties/publishIndex/default", json!(true)),
            ("/scheduling/default", json!({})),
            (
                "/scheduling/properties/requireNativeNodes/default",
                json!(true),
            ),
        ];
        for (pointer, expected) in cases {
            assert_eq!(at(spec, pointer), &expected, "{kind} spec{pointer}");
        }
        // No other defaults: maps, lists and optional fields stay absent.
        for absent in [
            "/buildArgs/default",
            "/labels/default",
            "/cache/default",
            "/output/properties/legacyManifestList/default",
            "/scheduling/properties/nodeSelector/default",
            "/scheduling/properties/tolerations/default",
        ] {
            assert!(spec.pointer(absent).is_none(), "{kind} spec{absent} is set");
        }
    }
}

#[test]
fn required_fields_and_list_bounds() {
    let mab = crd("MultiArchBuild");
    let spec = at(schema(&mab), "/properties/spec");
    assert_eq!(
        spec["required"],
        json!(["context", "destinations", "platforms"])
    );
    let destinations = &spec["properties"]["destinations"];
    assert_eq!(destinations["minItems"], 1);
    assert_eq!(destinations["items"]["minLength"], 1);
    let platforms = &spec["properties"]["platforms"];
    assert_eq!(platforms["minItems"], 1);
    assert_eq!(platforms["maxItems"], 32);
    assert_eq!(platforms["items"]["maxLength"], 64);

    let br = crd("BuildRequest");
    let spec = at(schema(&br), "/properties/spec");
    assert_eq!(
        spec["required"],
        json!(["context", "destinations", "platform"])
    );
    assert_eq!(spec["properties"]["destinations"]["minItems"], 1);
    assert_eq!(spec["properties"]["buildGeneration"]["default"], 0);
    assert!(spec["properties"].get("platforms").is_none());
    let mab_spec = at(schema(&mab), "/properties/spec");
    assert!(mab_spec["properties"].get("platform").is_none());
}

#[test]
fn platform_pattern_and_cel_rules() {
    let pattern = "^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9.]+)?$";
    assert_eq!(kiln_crds::platform::PLATFORM_PATTERN, pattern);

    let mab = crd("MultiArchBuild");
    let platforms = at(schema(&mab), "/properties/spec/properties/platforms");
    assert_eq!(platforms["items"]["pattern"], pattern);
    assert_eq!(
        platforms["x-kubernetes-validations"],
        json!([
            {
                "rule": format!("self.all(p, p.matches('{pattern}'))"),
                "messageExpression": format!(
                    "'invalid platform format: ' + self.filter(p, !p.matches('{pattern}'))[0] + ' (expected os/arch)'"
                ),
                "reason": "FieldValueInvalid",
            },
            {
                "rule": "self.all(p, self.exists_one(q, q == p))",
                "messageExpression": "'duplicate platform: ' + self.filter(p, !self.exists_one(q, q == p))[0] + ' (list each platform once)'",
                "reason": "FieldValueDuplicate",
            },
        ])
    );

    let br = crd("BuildRequest");
    let platform = at(schema(&br), "/properties/spec/properties/platform");
    assert_eq!(platform["type"], "string");
    assert_eq!(platform["pattern"], pattern);
    assert_eq!(
        platform["x-kubernetes-validations"],
        json!([
            {
                "rule": format!("self.matches('{pattern}')"),
                "messageExpression": "'invalid platform format: ' + self + ' (expected os/arch)'",
                "reason": "FieldValueInvalid",
            },
            {
                "rule": "self == oldSelf",
                "message": "platform is immutable (create a new BuildRequest for another platform)",
                "reason": "FieldValueForbidden",
            },
        ])
    );
}

#[test]
fn status_fields() {
    let mab = crd("MultiArchBuild");
    let status = at(schema(&mab), "/properties/status/properties");
    assert_eq!(
        status["phase"]["enum"],
        json!(["Pending", "Building", "Publishing", "Succeeded", "Failed"])
    );
    let keys = |v: &Value| -> Vec<String> {
        let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(
        keys(status),
        [
            "conditions",
            "index",
            "observedGeneration",
            "phase",
            "platforms"
        ]
    );
    assert_eq!(
        keys(&status["platforms"]["items"]["properties"]),
        [
            "attempts",
            "buildRequest",
            "completedAt",
            "digest",
            "message",
            "phase",
            "platform",
            "startedAt"
        ]
    );
    assert_eq!(
        keys(&status["index"]["properties"]),
        ["digest", "mediaType", "reference"]
    );
    assert_eq!(
        keys(&status["conditions"]["items"]["properties"]),
        [
            "lastTransitionTime",
            "message",
            "observedGeneration",
            "reason",
            "status",
            "type"
        ]
    );
    assert_eq!(
        status["conditions"]["items"]["properties"]["status"]["enum"],
        json!(["True", "False", "Unknown"])
    );

    let br = crd("BuildRequest");
    let status = at(schema(&br), "/properties/status/properties");
    assert_eq!(
        keys(status),
        [
            "attempts",
            "cacheHits",
            "cacheMisses",
            "conditions",
            "digest",
            "disruptions",
            "durationSeconds",
            "imageReference",
            "jobName",
            "mediaType",
            "message",
            "nodeName",
            "observedGeneration",
            "phase",
            "podName",
            "size"
        ]
    );
    assert_eq!(
        keys(&status["disruptions"]["items"]["properties"]),
        ["attempt", "message", "node", "nodeAvoided", "reason"]
    );
    assert_eq!(
        status["disruptions"]["x-kubernetes-list-map-keys"],
        json!(["attempt"])
    );
    assert_eq!(
        status["phase"]["enum"],
        json!(["Pending", "Running", "Succeeded", "Failed"])
    );
}

#[test]
fn output_docs_say_what_overrides_what() {
    // BuildRequest carries the MultiArchBuild's build spec as it is.
    for (kind, pointer) in [
        (
            "MultiArchBuild",
            "/properties/spec/properties/output/properties",
        ),
        (
            "BuildRequest",
            "/properties/spec/properties/output/properties",
        ),
    ] {
        let crd = crd(kind);
        let output = at(schema(&crd), pointer);
        let legacy = output["legacyManifestList"]["description"]
            .as_str()
            .unwrap();
        assert!(
            legacy.contains("Overrides\n`ociMode`")
                && legacy.contains("built with Docker media types (`--oci-mode=docker`)"),
            "{kind}: {legacy}"
        );
        let immutable = &output["pushIgnoreImmutableTagErrors"];
        assert_eq!(immutable["type"], "boolean", "{kind}");
        assert!(immutable.get("default").is_none(), "{kind}: {immutable}");
        let text = immutable["description"].as_str().unwrap();
        assert!(
            text.contains("`--push-ignore-immutable-tag-errors`")
                && text
                    .contains("every platform's builder and to the\nindex the operator publishes"),
            "{kind}: {text}"
        );
    }
}
