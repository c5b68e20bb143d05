//! A hostile registry on loopback (a few lines of tokio, not a real
//! registry: it serves what no real one would) against kiln's pull path:
//! bodies are bounded before they are read into memory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use kiln_builder::registry::{Registry, RegistryError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const CONFIG_DIGEST: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// A manifest whose config claims 64 GiB.
fn huge_config_manifest() -> String {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": CONFIG_DIGEST,
            "size": 64u64 << 30,
        },
        "layers": [],
    })
    .to_string()
}

/// Serves `/v2/endless/manifests/*` as a body that never ends (bounded at
/// 256 MiB so the test itself stops) and `/v2/huge/...` as above; answers
/// config blob requests with an endless body too. Stops when dropped.
async fn hostile_registry() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut request = vec![0u8; 8192];
                let n = socket.read(&mut request).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&request[..n]).into_owned();
                let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
                let endless =
                    path.starts_with("/v2/endless/manifests/") || path.contains("/blobs/");
                let head = if endless {
                    "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n".to_string()
                } else if path.starts_with("/v2/huge/manifests/") {
                    let body = huge_config_manifest();
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".to_string()
                };
                if socket.write_all(head.as_bytes()).await.is_err() || !endless {
                    return;
                }
                let _ = socket.write_all(b"{\"padding\":\"").await;
                let chunk = vec![b'a'; 1 << 20];
                for _ in 0..256 {
                    if socket.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (host, server)
}

fn registry() -> Registry {
    Registry::new(support::registry::isolated_options()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_manifest_is_refused_at_the_bound() {
    let (host, server) = hostile_registry().await;
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        registry().pull_image(
            &format!("{host}/endless:latest"),
            &"linux/amd64".parse().unwrap(),
        ),
    )
    .await
    .expect("kiln kept reading an endless manifest");
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::TooLarge {
                what: "manifest",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "manifest of {host}/endless:latest is larger than 4194304 bytes; refusing to read it"
        )
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_declared_at_64_gib_is_refused_before_reading() {
    let (host, server) = hostile_registry().await;
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        registry().pull_image(
            &format!("{host}/huge:latest"),
            &"linux/amd64".parse().unwrap(),
        ),
    )
    .await
    .expect("kiln kept reading a huge configuration")
    .unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::TooLarge {
                what: "configuration",
                ..
            }
        ),
        "{err}"
    );
    server.abort();
}
