//! Objects as the API server would return them, for the decision tables.

#![allow(clippy::unwrap_used)]

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kiln_crds::{BuildRequest, MultiArchBuild};
use serde_json::json;

pub fn time(s: &str) -> Time {
    Time(s.parse().unwrap())
}

/// A BuildRequest of generation 1 in namespace `ns`, 30-minute timeout.
pub fn build_request(name: &str, platform: &str, retries: i32) -> BuildRequest {
    serde_json::from_value(json!({
        "apiVersion": "kiln.dev/v1alpha1",
        "kind": "BuildRequest",
        "metadata": {
            "name": name, "namespace": "ns", "uid": format!("uid-{name}"),
            "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {
            "platform": platform,
            "context": "git://example.invalid/app.git#main",
            "destinations": ["registry.example/app:1.0"],
            "retries": retries,
            "timeout": "30m",
        },
    }))
    .unwrap()
}

/// A MultiArchBuild of generation `generation` in namespace `ns`.
pub fn multi_arch_build(name: &str, platforms: &[&str], generation: i64) -> MultiArchBuild {
    serde_json::from_value(json!({
        "apiVersion": "kiln.dev/v1alpha1",
        "kind": "MultiArchBuild",
        "metadata": {
            "name": name, "namespace": "ns", "uid": format!("uid-{name}"),
            "generation": generation, "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {
            "platforms": platforms,
            "context": "git://example.invalid/app.git#main",
            "destinations": ["registry.example/app:1.0", "registry.example/app:latest"],
        },
    }))
    .unwrap()
}

/// A Job; `condition` = (`Complete`|`Failed`, reason) when it has ended.
pub fn job(name: &str, condition: Option<(&str, &str)>) -> Job {
    let conditions: Vec<_> = condition
        .into_iter()
        .map(|(type_, reason)| json!({"type": type_, "status": "True", "reason": reason}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
        "status": {"conditions": conditions},
    }))
    .unwrap()
}

/// A pod of Job `job` on `node`; with `terminated`, its container has
/// ended with that termination message.
pub fn pod(job: &str, name: &str, node: Option<&str>, terminated: Option<&str>) -> Pod {
    let statuses: Vec<_> = terminated
        .into_iter()
        .map(|message| {
            json!({
                "name": "kiln", "image": "kiln", "imageID": "", "ready": false,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "message": message}},
            })
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {
            "name": name, "namespace": "ns",
            "creationTimestamp": "2026-01-01T00:00:01Z",
            "ownerReferences": [{
                "apiVersion": "batch/v1", "kind": "Job", "name": job,
                "uid": format!("uid-{job}"), "controller": true,
            }],
        },
        "spec": {"nodeName": node, "containers": [{"name": "kiln"}]},
        "status": {"containerStatuses": statuses},
    }))
    .unwrap()
}
