//! The operator's HTTP endpoints: `/metrics`, `/healthz`, `/readyz`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::metrics::Metrics;

/// What the endpoints report.
pub struct Health {
    pub metrics: Arc<Metrics>,
    /// Set once the operator reached the API server and (as leader or
    /// standby) is running: a standby replica is ready too.
    pub ready: AtomicBool,
}

fn respond(health: &Health, path: &str, serve_metrics: bool) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/healthz" => (StatusCode::OK, "ok".to_owned()),
        "/readyz" if health.ready.load(Ordering::Relaxed) => (StatusCode::OK, "ok".to_owned()),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "not ready".to_owned()),
        "/metrics" if serve_metrics => (StatusCode::OK, health.metrics.encode()),
        _ => (StatusCode::NOT_FOUND, "not found".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// Binds `address` and serves `/healthz` and `/readyz`, plus `/metrics`
/// when `serve_metrics`, until the process ends.
pub async fn serve(
    address: SocketAddr,
    health: Arc<Health>,
    serve_metrics: bool,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(address).await?;
    info!("serving HTTP on {}", listener.local_addr()?);
    Ok(tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!("accepting a connection: {e}");
                    continue;
                }
            };
            let health = Arc::clone(&health);
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let response = respond(&health, request.uri().path(), serve_metrics);
                    async move { Ok::<_, Infallible>(response) }
                });
                if let Err(e) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    warn!("HTTP connection: {e}");
                }
            });
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn get(health: &Health, path: &str, serve_metrics: bool) -> (StatusCode, String) {
        let response = respond(health, path, serve_metrics);
        let status = response.status();
        let body = response.into_body().collect().await.map(|b| b.to_bytes());
        let body = body.map(|b| String::from_utf8_lossy(&b).into_owned());
        (status, body.unwrap_or_default())
    }

    #[tokio::test]
    async fn endpoints() {
        let health = Health {
            metrics: Arc::new(Metrics::default()),
            ready: false.into(),
        };
        health.metrics.builds_in_flight.set(1);
        assert_eq!(
            get(&health, "/healthz", false).await,
            (StatusCode::OK, "ok".into())
        );
        assert_eq!(
            get(&health, "/readyz", false).await,
            (StatusCode::SERVICE_UNAVAILABLE, "not ready".into())
        );
        health.ready.store(true, Ordering::Relaxed);
        assert_eq!(
            get(&health, "/readyz", false).await,
            (StatusCode::OK, "ok".into())
        );
        assert_eq!(
            get(&health, "/metrics", false).await.0,
            StatusCode::NOT_FOUND
        );
        let (status, body) = get(&health, "/metrics", true).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("kiln_builds_in_flight 1"), "{body}");
    }
}
