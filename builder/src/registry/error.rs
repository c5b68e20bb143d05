//! What can go wrong talking to a registry, worded for the person who has to
//! fix it: every message names the reference (and digest) involved, the HTTP
//! status where there is one, and what to try next.

use std::path::PathBuf;

use super::distribution::{TransportError, one_line};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid image reference {reference:?}: {source}")]
    InvalidReference {
        reference: String,
        #[source]
        source: oci_spec::distribution::ParseError,
    },

    /// The registry answered, with a status that is not success.
    #[error("{operation}: HTTP {}{detail}{hint}", status_text(*status))]
    Status {
        operation: String,
        status: u16,
        /// What the registry said, e.g. ` (UNAUTHORIZED: authentication required)`.
        detail: String,
        /// What to do about it, starting with `; `, or empty.
        hint: String,
    },

    /// No HTTP answer at all: refused, reset, timed out, TLS failure.
    #[error("{operation}: cannot reach {registry}: {message}{hint}")]
    Connection {
        operation: String,
        registry: String,
        message: String,
        hint: String,
        /// Whether another attempt may succeed: not for a certificate the
        /// client rejects.
        transient: bool,
    },

    /// The registry answered something that does not follow the protocol.
    #[error("{operation}: {message}")]
    Protocol { operation: String, message: String },

    #[error("image {reference} has no entry for platform {platform} (available: {available})")]
    NoMatchingPlatform {
        reference: String,
        platform: String,
        available: String,
    },

    #[error(
        "image {reference} is built for {found}, not {wanted}; use an image (or a multi-platform index) that has a {wanted} variant"
    )]
    PlatformMismatch {
        reference: String,
        wanted: String,
        found: String,
    },

    #[error(
        "{what} {digest} from {reference} does not match its digest: its content hashes to {actual}"
    )]
    DigestMismatch {
        what: &'static str,
        reference: String,
        digest: String,
        actual: String,
    },

    #[error(
        "{what} {digest} from {reference} is {actual} bytes long, the manifest says {expected}"
    )]
    SizeMismatch {
        what: &'static str,
        reference: String,
        digest: String,
        expected: u64,
        actual: u64,
    },

    /// A body larger than anything real of its kind: a hostile or broken
    /// registry, refused before it is read into memory.
    #[error("{what} of {reference} is larger than {limit} bytes; refusing to read it")]
    TooLarge {
        what: &'static str,
        reference: String,
        limit: u64,
    },

    #[error("{reference}: unsupported manifest media type {media_type:?}{hint}")]
    UnsupportedMediaType {
        reference: String,
        media_type: String,
        hint: String,
    },

    #[error("{operation}: {path}: {source}")]
    Io {
        operation: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("reading registry credentials for {registry} from {source_description}: {message}")]
    Credentials {
        registry: String,
        source_description: String,
        message: String,
    },

    /// `--take-docker-config` or `--copy-docker-config` could not do its part.
    #[error("{action} the docker config {path}: {source}")]
    TakeDockerConfig {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("reading the CA certificate {path} for registry {registry}: {source}")]
    Certificate {
        registry: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// `--registry-client-cert`'s certificate or key file cannot be read.
    #[error(
        "--registry-client-cert={registry}={},{}: reading {}: {source}",
        cert.display(),
        key.display(),
        path.display()
    )]
    ClientCertificateFile {
        registry: String,
        cert: PathBuf,
        key: PathBuf,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// `--registry-client-cert`'s files are not a certificate and its key.
    #[error(
        "--registry-client-cert={registry}={},{}: {message}; give the client's PEM certificate and the PEM private key that belongs to it",
        cert.display(),
        key.display()
    )]
    ClientIdentity {
        registry: String,
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },

    #[error("creating the HTTP client for {registry}: {message}")]
    Client { registry: String, message: String },

    #[error("{reference}: invalid {what}: {source}")]
    Json {
        reference: String,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// The last failure of an operation that was retried and never succeeded.
    #[error("{last} (gave up after {attempts} attempts)")]
    RetriesExhausted {
        attempts: u32,
        #[source]
        last: Box<RegistryError>,
    },
}

impl RegistryError {
    /// The HTTP status the registry answered with, if that is what failed.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Status { status, .. } => Some(*status),
            RegistryError::RetriesExhausted { last, .. } => last.status(),
            _ => None,
        }
    }

    /// Whether the manifest, blob or repository does not exist (HTTP 404):
    /// a cache miss, or an image name that needs fixing.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Whether a refused manifest push says the tag is immutable: ECR (400
    /// TAG_INVALID, "already exists … immutable"), Harbor (412), Artifact
    /// Registry (400 "immutable"), Docker Hub and others (409). Callers
    /// also check that the tag exists before treating the refusal as
    /// harmless (`--push-ignore-immutable-tag-errors`).
    pub fn refuses_immutable_tag(&self) -> bool {
        let text = self.to_string().to_ascii_lowercase();
        matches!(self.status(), Some(400 | 403 | 409 | 412))
            && (text.contains("immutable") || text.contains("already exists"))
    }

    /// Transient failures that another attempt may cure: server errors, rate
    /// limits and lost connections. Authentication, missing content and
    /// digest mismatches are not retried: the next attempt would fail the same
    /// way, only later.
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Status { status, .. } => is_retryable_status(*status),
            RegistryError::Connection { transient, .. } => *transient,
            _ => false,
        }
    }
}

pub(crate) fn is_retryable_status(status: u16) -> bool {
    status >= 500 || status == 429 || status == 408
}

/// `401 Unauthorized`: the code with its reason phrase, as users search for it.
fn status_text(status: u16) -> String {
    match reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_string(),
    }
}

/// What a failed exchange amounts to, for the message and the retry
/// decision.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    Status { status: u16, detail: String },
    Connection { message: String, transient: bool },
    Protocol { message: String },
}

/// Sorts a transport failure into what kiln reports.
pub(crate) fn classify(err: &TransportError) -> Failure {
    match err {
        TransportError::Status { status, body } => Failure::Status {
            status: *status,
            detail: detail_from_body(body),
        },
        // A token server that is down or busy is retried as the registry
        // would be.
        TransportError::TokenRefused {
            realm,
            status,
            body,
        } if is_retryable_status(*status) => Failure::Status {
            status: *status,
            detail: format!(
                " (token request to {realm} failed{})",
                detail_from_body(body)
            ),
        },
        // The registry refused the credentials at its token server: to the
        // user, the same as the registry refusing them.
        TransportError::TokenRefused {
            realm,
            status,
            body,
        } => Failure::Status {
            status: 401,
            detail: format!(
                " (token request to {realm} refused: HTTP {}{})",
                status_text(*status),
                detail_from_body(body)
            ),
        },
        TransportError::Request(e) => match e.status() {
            Some(status) => Failure::Status {
                status: status.as_u16(),
                detail: String::new(),
            },
            None if e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() => {
                let message = error_chain(e);
                Failure::Connection {
                    transient: !is_certificate_failure(&message),
                    message,
                }
            }
            None => Failure::Protocol {
                message: error_chain(e),
            },
        },
        other => Failure::Protocol {
            message: error_chain(other),
        },
    }
}

/// rustls reports a rejected certificate as `invalid peer certificate: …`;
/// retrying cannot change the certificate.
pub(crate) fn is_certificate_failure(message: &str) -> bool {
    message.contains("invalid peer certificate") || is_client_certificate_refusal(message)
}

/// A server that wants a TLS client certificate and got none (or one it
/// does not accept) ends the handshake with a fatal alert, which rustls
/// reports as `received fatal alert: CertificateRequired` (TLS 1.3) or
/// `BadCertificate`, `UnknownCA`, `CertificateUnknown` (TLS 1.2 and Go
/// servers).
pub(crate) fn is_client_certificate_refusal(message: &str) -> bool {
    message.contains("received fatal alert: CertificateRequired")
        || message.contains("received fatal alert: BadCertificate")
        || message.contains("received fatal alert: UnknownCA")
        || message.contains("received fatal alert: CertificateUnknown")
}

/// The whole `source()` chain on one line: reqwest's top-level message
/// ("error sending request") hides the useful part ("connection refused").
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The error answer of the distribution specification.
#[derive(serde::Deserialize)]
struct OciEnvelope {
    errors: Vec<OciErrorInfo>,
}

#[derive(serde::Deserialize)]
struct OciErrorInfo {
    code: String,
    #[serde(default)]
    message: Option<String>,
}

/// Registries answer errors with an OCI error envelope; show its codes
/// and messages, not a page of JSON.
fn detail_from_body(body: &str) -> String {
    match serde_json::from_str::<OciEnvelope>(body) {
        Ok(envelope) => envelope_detail(&envelope),
        Err(_) if body.trim().is_empty() => String::new(),
        Err(_) => format!(" ({})", one_line(body, 200)),
    }
}

fn envelope_detail(envelope: &OciEnvelope) -> String {
    let parts: Vec<String> = envelope
        .errors
        .iter()
        .take(8)
        .map(|e| {
            let code = one_line(&e.code, 60);
            match e.message.as_deref().map(str::trim) {
                None | Some("") => code,
                Some(message) => format!("{code}: {}", one_line(message, 200)),
            }
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, body: &str) -> TransportError {
        TransportError::Status {
            status,
            body: body.to_string(),
        }
    }

    #[test]
    fn classifies_transport_errors() {
        let table: Vec<(TransportError, Failure)> = vec![
            (
                status(
                    401,
                    r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#,
                ),
                Failure::Status {
                    status: 401,
                    detail: " (UNAUTHORIZED: authentication required)".to_string(),
                },
            ),
            (
                status(503, "upstream busy\n"),
                Failure::Status {
                    status: 503,
                    detail: " (upstream busy)".to_string(),
                },
            ),
            (
                status(502, ""),
                Failure::Status {
                    status: 502,
                    detail: String::new(),
                },
            ),
            (
                status(
                    404,
                    r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"nope"}}]}"#,
                ),
                Failure::Status {
                    status: 404,
                    detail: " (MANIFEST_UNKNOWN: manifest unknown)".to_string(),
                },
            ),
            (
                status(403, r#"{"errors":[{"code":"DENIED","message":""}]}"#),
                Failure::Status {
                    status: 403,
                    detail: " (DENIED)".to_string(),
                },
            ),
            (
                status(
                    400,
                    r#"{"errors":[{"code":"MANIFEST_INVALID","message":"bad"},{"code":"TAG_INVALID"}]}"#,
                ),
                Failure::Status {
                    status: 400,
                    detail: " (MANIFEST_INVALID: bad; TAG_INVALID)".to_string(),
                },
            ),
            (
                TransportError::TokenRefused {
                    realm: "https://auth.example/token".to_string(),
                    status: 401,
                    body: r#"{"details":"incorrect username or password"}"#.to_string(),
                },
                Failure::Status {
                    status: 401,
                    detail: r#" (token request to https://auth.example/token refused: HTTP 401 Unauthorized ({"details":"incorrect username or password"}))"#.to_string(),
                },
            ),
            (
                TransportError::TokenRefused {
                    realm: "https://auth.example/token".to_string(),
                    status: 503,
                    body: String::new(),
                },
                Failure::Status {
                    status: 503,
                    detail: " (token request to https://auth.example/token failed)".to_string(),
                },
            ),
            (
                TransportError::Location {
                    location: "::".to_string(),
                },
                Failure::Protocol {
                    message: "the registry's upload location \"::\" is not a URL".to_string(),
                },
            ),
        ];
        for (err, want) in table {
            let text = err.to_string();
            assert_eq!(classify(&err), want, "{text}");
        }
    }

    #[test]
    fn messages_name_operation_status_and_hint() {
        let err = RegistryError::Status {
            operation: "pushing blob sha256:abc to 127.0.0.1:5000/app".to_string(),
            status: 401,
            detail: " (UNAUTHORIZED: authentication required)".to_string(),
            hint: "; check the credentials for 127.0.0.1:5000 in /tmp/c/config.json".to_string(),
        };
        assert_eq!(
            err.to_string(),
            "pushing blob sha256:abc to 127.0.0.1:5000/app: HTTP 401 Unauthorized (UNAUTHORIZED: authentication required); check the credentials for 127.0.0.1:5000 in /tmp/c/config.json"
        );
        let exhausted = RegistryError::RetriesExhausted {
            attempts: 3,
            last: Box::new(RegistryError::Status {
                operation: "pushing manifest to 127.0.0.1:5000/app:1".to_string(),
                status: 503,
                detail: String::new(),
                hint: String::new(),
            }),
        };
        assert_eq!(
            exhausted.to_string(),
            "pushing manifest to 127.0.0.1:5000/app:1: HTTP 503 Service Unavailable (gave up after 3 attempts)"
        );
        assert_eq!(exhausted.status(), Some(503));
        assert!(!exhausted.is_not_found());
    }

    #[test]
    fn retries_only_transient_failures() {
        let status = |status| RegistryError::Status {
            operation: String::new(),
            status,
            detail: String::new(),
            hint: String::new(),
        };
        for (code, want) in [
            (500, true),
            (502, true),
            (503, true),
            (429, true),
            (408, true),
            (400, false),
            (401, false),
            (403, false),
            (404, false),
        ] {
            assert_eq!(status(code).is_retryable(), want, "HTTP {code}");
        }
        let connection = |transient| RegistryError::Connection {
            operation: String::new(),
            registry: String::new(),
            message: String::new(),
            hint: String::new(),
            transient,
        };
        assert!(connection(true).is_retryable());
        assert!(!connection(false).is_retryable());
        assert!(is_certificate_failure(
            "error sending request: client error (Connect): invalid peer certificate: UnknownIssuer"
        ));
        assert!(!is_certificate_failure(
            "tcp connect error: Connection refused (os error 111)"
        ));
        let mismatch = RegistryError::DigestMismatch {
            what: "blob",
            reference: String::new(),
            digest: String::new(),
            actual: String::new(),
        };
        assert!(!mismatch.is_retryable());
    }

    #[test]
    fn long_bodies_are_cut_to_one_line() {
        let body = format!("line one\nline two {}", "x".repeat(300));
        let detail = detail_from_body(&body);
        assert!(detail.starts_with(" (line one line two xxx"), "{detail}");
        assert!(detail.ends_with("…)"), "{detail}");
        assert_eq!(detail.chars().count(), 200 + 4);
    }

    #[test]
    fn which_refusals_name_an_immutable_tag() {
        let status = |status: u16, detail: &str| RegistryError::Status {
            operation: "pushing manifest to 127.0.0.1:5000/app:1".to_string(),
            status,
            detail: detail.to_string(),
            hint: String::new(),
        };
        let table = [
            (
                status(
                    400,
                    " (TAG_INVALID: The image tag '1' already exists in the 'app' repository and cannot be overwritten because the repository is immutable.)",
                ),
                true,
            ),
            (status(412, " (PRECONDITION: tag is immutable)"), true),
            (status(409, " (DENIED: tag already exists)"), true),
            (status(403, " (DENIED: immutable tag)"), true),
            (status(400, " (MANIFEST_INVALID: manifest invalid)"), false),
            (status(404, " (NAME_UNKNOWN: immutable)"), false),
            (status(500, " (UNKNOWN: already exists)"), false),
            (
                RegistryError::RetriesExhausted {
                    attempts: 2,
                    last: Box::new(status(409, " (CONFLICT: tag already exists)")),
                },
                true,
            ),
        ];
        for (error, want) in table {
            assert_eq!(error.refuses_immutable_tag(), want, "{error}");
        }
    }
}
