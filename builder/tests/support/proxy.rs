//! A loopback HTTP proxy in front of a registry that fails chosen requests
//! with HTTP 503 and records every request it sees.
//!
//! Clients talk to the proxy as if it were the registry (`proxy.host()` is
//! the registry part of references). Each connection carries one request:
//! passed-through requests are forwarded with `Connection: close`, so the
//! proxy never has to parse responses.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Predicate = Box<dyn Fn(&str, &str) -> bool + Send + Sync>;

struct State {
    upstream: String,
    matches: Predicate,
    /// The answer a fault gets: 503, or what [`FaultProxy::denying`] says.
    fault: Fault,
    /// Faults still to inject.
    remaining: Mutex<usize>,
    injected: AtomicUsize,
    requests: Mutex<Vec<String>>,
    /// Every request with its Authorization header, if any.
    authorizations: Mutex<Vec<(String, Option<String>)>>,
    /// Set for [`FaultProxy::bearer`].
    bearer: Option<Bearer>,
    /// `127.0.0.1:PORT` of this proxy.
    own_host: String,
}

/// A registry that wants tokens, as Docker Hub does: its token server is
/// this proxy's `/token`, which gives [`BEARER_TOKEN`] for HTTP basic
/// `user:password`; blob GETs may be redirected to another host.
struct Bearer {
    basic: String,
    redirect_blobs_to: Option<String>,
}

/// The one token [`FaultProxy::bearer`] hands out and accepts.
pub const BEARER_TOKEN: &str = "kiln-test-token";

/// The proxy; stops accepting connections when dropped.
pub struct FaultProxy {
    host: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`
    /// (`127.0.0.1:PORT`), answering HTTP 503 to the first `failures`
    /// requests for which `matches(method, path_and_query)` holds.
    /// Must be called inside a tokio runtime.
    pub async fn start(
        upstream: &str,
        failures: usize,
        matches: impl Fn(&str, &str) -> bool + Send + Sync + 'static,
    ) -> FaultProxy {
        FaultProxy::launch(upstream, failures, Fault::Unavailable, matches).await
    }

    /// A proxy that asks for Bearer tokens from its own `/token` (the
    /// realm), which gives one for basic `user:password` and any scope;
    /// requests with the token pass through, blob GETs are answered 307 to
    /// `redirect_blobs_to` (another proxy, standing for the registry's
    /// storage) when given.
    pub async fn bearer(
        upstream: &str,
        user: &str,
        password: &str,
        redirect_blobs_to: Option<&str>,
    ) -> FaultProxy {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        FaultProxy::launch_with(
            upstream,
            0,
            Fault::Unavailable,
            |_, _| false,
            Some(Bearer {
                basic: format!("Basic {basic}"),
                redirect_blobs_to: redirect_blobs_to.map(str::to_string),
            }),
        )
        .await
    }

    async fn launch(
        upstream: &str,
        failures: usize,
        fault: Fault,
        matches: impl Fn(&str, &str) -> bool + Send + Sync + 'static,
    ) -> FaultProxy {
        FaultProxy::launch_with(upstream, failures, fault, matches, None).await
    }

    async fn launch_with(
        upstream: &str,
        failures: usize,
        fault: Fault,
        matches: impl Fn(&str, &str) -> bool + Send + Sync + 'static,
        bearer: Option<Bearer>,
    ) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the fault proxy to loopback");
        let host = listener
            .local_addr()
            .expect("the fault proxy's address")
            .to_string();
        let state = Arc::new(State {
            upstream: upstream.to_string(),
            matches: Box::new(matches),
            fault,
            remaining: Mutex::new(failures),
            injected: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
            authorizations: Mutex::new(Vec::new()),
            bearer,
            own_host: host.clone(),
        });
        let accept_state = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, Arc::clone(&accept_state)));
            }
        });
        FaultProxy { host, state, task }
    }

    /// A proxy that only records: nothing fails.
    pub async fn recording(upstream: &str) -> FaultProxy {
        FaultProxy::start(upstream, 0, |_, _| false).await
    }

    /// A proxy that answers HTTP 403 DENIED, as a registry does to a user
    /// without push rights, to every request for which `matches(method,
    /// path_and_query)` holds, and passes the rest through.
    pub async fn denying(
        upstream: &str,
        matches: impl Fn(&str, &str) -> bool + Send + Sync + 'static,
    ) -> FaultProxy {
        FaultProxy::launch(upstream, usize::MAX, Fault::Denied, matches).await
    }

    /// A proxy that answers 400 MANIFEST_INVALID, as registries without
    /// OCI support do, to every manifest PUT whose Content-Type is an OCI
    /// manifest or index, and passes the rest through (Docker manifests
    /// are accepted).
    pub async fn refusing_oci(upstream: &str) -> FaultProxy {
        FaultProxy::launch(upstream, usize::MAX, Fault::OciRefused, manifest_put).await
    }

    /// A registry whose tags are immutable (as ECR's, Harbor's or Artifact
    /// Registry's can be): every manifest PUT under a tag is answered 400
    /// TAG_INVALID, "immutable"; pushes by digest pass through.
    pub async fn immutable_tags(upstream: &str) -> FaultProxy {
        FaultProxy::launch(upstream, usize::MAX, Fault::ImmutableTag, |method, path| {
            manifest_put(method, path) && !path.contains("/manifests/sha256:")
        })
        .await
    }

    /// `127.0.0.1:PORT` of the proxy.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Every request seen so far, in order, as `METHOD /path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.state
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Every request seen so far with its Authorization header.
    pub fn authorizations(&self) -> Vec<(String, Option<String>)> {
        self.state
            .authorizations
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// How many 503 answers were given.
    pub fn faults_injected(&self) -> usize {
        self.state.injected.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Predicate: the requests of a blob upload (start, chunk, commit).
pub fn blob_upload(method: &str, path: &str) -> bool {
    matches!(method, "POST" | "PATCH" | "PUT") && path.contains("/blobs/uploads/")
}

/// Predicate: a manifest being pushed.
pub fn manifest_put(method: &str, path: &str) -> bool {
    method == "PUT" && path.contains("/manifests/")
}

/// Predicate: a blob being downloaded.
pub fn blob_get(method: &str, path: &str) -> bool {
    method == "GET" && path.contains("/blobs/sha256:")
}

const FAULT_BODY: &str = r#"{"errors":[{"code":"UNAVAILABLE","message":"service unavailable (injected by FaultProxy)"}]}"#;
const OCI_REFUSED_BODY: &str = r#"{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid","detail":"media type not supported (injected by FaultProxy)"}]}"#;
const IMMUTABLE_BODY: &str = r#"{"errors":[{"code":"TAG_INVALID","message":"the tag already exists and is immutable (injected by FaultProxy)"}]}"#;
const DENIED_BODY: &str = r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied (injected by FaultProxy)"}]}"#;

#[derive(Clone, Copy)]
enum Fault {
    Unavailable,
    Denied,
    OciRefused,
    ImmutableTag,
}

/// Whether the request head carries an OCI manifest or index Content-Type.
fn oci_content_type(head: &str) -> bool {
    head.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("content-type")
                && matches!(
                    value.trim(),
                    "application/vnd.oci.image.manifest.v1+json"
                        | "application/vnd.oci.image.index.v1+json"
                )
        })
    })
}

async fn serve(mut client: TcpStream, state: Arc<State>) {
    let Some((head, leftover)) = read_head(&mut client).await else {
        return;
    };
    let head_text = String::from_utf8_lossy(&head).to_string();
    let mut request_line = head_text.lines().next().unwrap_or("").split_whitespace();
    let method = request_line.next().unwrap_or("").to_string();
    let target = request_line.next().unwrap_or("").to_string();
    if let Ok(mut requests) = state.requests.lock() {
        requests.push(format!("{method} {target}"));
    }
    let authorization = header_value(&head_text, "authorization");
    if let Ok(mut seen) = state.authorizations.lock() {
        seen.push((format!("{method} {target}"), authorization.clone()));
    }
    if let Some(bearer) = &state.bearer {
        let answer = if target.starts_with("/token") {
            if authorization.as_deref() == Some(bearer.basic.as_str()) {
                let body = format!(r#"{{"token":"{BEARER_TOKEN}","expires_in":300}}"#);
                Some(("200 OK", String::new(), body))
            } else {
                Some((
                    "401 Unauthorized",
                    String::new(),
                    r#"{"details":"incorrect username or password"}"#.to_string(),
                ))
            }
        } else if authorization.as_deref() != Some(&format!("Bearer {BEARER_TOKEN}")) {
            Some((
                "401 Unauthorized",
                format!(
                    "WWW-Authenticate: Bearer realm=\"http://{}/token\",service=\"kiln-test\"\r\n",
                    state.own_host
                ),
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
                    .to_string(),
            ))
        } else {
            bearer
                .redirect_blobs_to
                .as_ref()
                .filter(|_| blob_get(&method, &target))
                .map(|storage| {
                    (
                        "307 Temporary Redirect",
                        format!("Location: http://{storage}{target}\r\n"),
                        String::new(),
                    )
                })
        };
        if let Some((status, headers, body)) = answer {
            discard_body(&mut client, &head_text, leftover).await;
            let response = format!(
                "HTTP/1.1 {status}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = client.write_all(response.as_bytes()).await;
            let _ = client.shutdown().await;
            return;
        }
    }

    let fail = (state.matches)(&method, &target)
        && (!matches!(state.fault, Fault::OciRefused) || oci_content_type(&head_text))
        && state
            .remaining
            .lock()
            .map(|mut remaining| {
                let fail = *remaining > 0;
                if fail {
                    *remaining -= 1;
                }
                fail
            })
            .unwrap_or(false);
    if fail {
        state.injected.fetch_add(1, Ordering::SeqCst);
        discard_body(&mut client, &head_text, leftover).await;
        let (status, body) = match state.fault {
            Fault::Unavailable => ("503 Service Unavailable", FAULT_BODY),
            Fault::Denied => ("403 Forbidden", DENIED_BODY),
            Fault::OciRefused => ("400 Bad Request", OCI_REFUSED_BODY),
            Fault::ImmutableTag => ("400 Bad Request", IMMUTABLE_BODY),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = client.write_all(response.as_bytes()).await;
        let _ = client.shutdown().await;
        return;
    }

    let Ok(upstream) = TcpStream::connect(&state.upstream).await else {
        let _ = client
            .write_all(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await;
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    if upstream_write
        .write_all(&with_connection_close(&head_text))
        .await
        .is_err()
        || upstream_write.write_all(&leftover).await.is_err()
    {
        return;
    }
    let body = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut upstream_write).await;
    });
    let _ = tokio::io::copy(&mut upstream_read, &mut client_write).await;
    let _ = client_write.shutdown().await;
    body.abort();
}

/// Reads up to the end of the request head; returns the head and whatever
/// body bytes arrived with it.
async fn read_head(client: &mut TcpStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = find(&buffer, b"\r\n\r\n") {
            let leftover = buffer.split_off(end + 4);
            return Some((buffer, leftover));
        }
        if buffer.len() > 1 << 20 {
            return None;
        }
        let n = client.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// The value of the request head's header `name`, if present.
fn header_value(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

/// Reads the request body so that the client sees the 503, not a reset.
async fn discard_body(client: &mut TcpStream, head: &str, leftover: Vec<u8>) {
    let header = |name: &str| {
        head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_ascii_lowercase())
        })
    };
    let mut chunk = [0u8; 65536];
    if let Some(length) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        let mut seen = leftover.len();
        while seen < length {
            match client.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen += n,
            }
        }
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut tail = leftover;
        while find(&tail, b"0\r\n\r\n").is_none() {
            match client.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    tail.extend_from_slice(&chunk[..n]);
                    let keep = tail.len().saturating_sub(8);
                    tail.drain(..keep);
                }
            }
        }
    }
}

/// The request head with any `Connection` header replaced by `close`.
fn with_connection_close(head: &str) -> Vec<u8> {
    let mut out = String::new();
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        let is_connection = line
            .split_once(':')
            .is_some_and(|(key, _)| key.trim().eq_ignore_ascii_case("connection"));
        if !is_connection {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
