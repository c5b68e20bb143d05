//! Downloading an https context tarball to a file.

use std::path::Path;

use tokio::io::AsyncWriteExt;

use super::ContextError;
use super::source::redact_url;

/// Streams `url` into `dest` and returns the server's `Last-Modified`, if
/// it sent one that parses. `ca_file` adds PEM certificates to the trusted
/// roots (how a self-signed server is reached).
pub(crate) async fn download(
    url: &str,
    ca_file: Option<&Path>,
    dest: &Path,
) -> Result<Option<std::time::SystemTime>, ContextError> {
    let shown = redact_url(url);
    let failed = |message: String| ContextError::Http {
        url: shown.clone(),
        message,
    };
    crate::tls::install_crypto_provider();
    let mut builder = reqwest::Client::builder();
    if let Some(ca) = ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| ContextError::io("reading CA certificates from", ca, e))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| failed(format!("CA file {}: {}", ca.display(), chain(&e))))?;
        builder = builder.tls_certs_merge(certs);
    }
    let client = builder.build().map_err(|e| failed(chain(&e)))?;
    let mut response = client
        .get(url)
        .send()
        .await
        .map_err(|e| failed(chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(ContextError::HttpStatus {
            url: shown,
            status: status.as_u16(),
        });
    }
    let last_modified = response
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| httpdate::parse_http_date(value).ok());
    let mut file = tokio::fs::File::create(dest)
        .await
        .map_err(|e| ContextError::io("creating", dest, e))?;
    while let Some(chunk) = response.chunk().await.map_err(|e| failed(chain(&e)))? {
        file.write_all(&chunk)
            .await
            .map_err(|e| ContextError::io("writing", dest, e))?;
    }
    file.flush()
        .await
        .map_err(|e| ContextError::io("writing", dest, e))?;
    Ok(last_modified)
}

/// A reqwest error with its causes (the TLS or connection detail is in
/// them), without the URL reqwest would print with its credentials.
fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), &redact_url(url.as_str()));
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
