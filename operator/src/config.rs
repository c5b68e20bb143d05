//! The operator's command line: flags and environment variables, documented
//! in `charts/kiln/README.md` and set by the chart and `config/manager`.

use std::net::SocketAddr;

use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// kiln-operator: builds each platform of a MultiArchBuild on a native
/// node and publishes the image index.
#[derive(Debug, Parser)]
#[command(name = "kiln-operator", version)]
pub struct Args {
    /// Image of the builder Jobs (required).
    #[arg(long, env = "KILN_BUILDER_IMAGE_REF")]
    pub builder_image: String,
    /// Pull policy of builder containers: Always, IfNotPresent or Never.
    #[arg(long, default_value = "IfNotPresent", value_parser = ["Always", "IfNotPresent", "Never"])]
    pub builder_image_pull_policy: String,
    /// `ttlSecondsAfterFinished` of builder Jobs.
    #[arg(long, default_value_t = 3600)]
    pub job_ttl_seconds_after_finished: i32,
    /// Watch one namespace; empty or unset watches all.
    #[arg(long, env = "KILN_NAMESPACE", default_value = "")]
    pub watch_namespace: String,
    /// Take part in leader election: only the holder of the Lease reconciles.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Name of the coordination.k8s.io/v1 Lease.
    #[arg(long, default_value = "kiln-operator")]
    pub leader_election_lease_name: String,
    /// Seconds a leader holds the Lease without renewing it; it renews a
    /// third of that before it runs out. Longer survives a slow API server,
    /// shorter fails over sooner.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(6..=3600))]
    pub leader_election_lease_duration: u64,
    /// Namespace of the Lease (the operator's own namespace in a pod).
    #[arg(long, env = "KILN_POD_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Holder identity in the Lease (the hostname when unset).
    #[arg(long, env = "KILN_POD_NAME", hide = true)]
    pub identity: Option<String>,
    /// Prometheus `/metrics`; `:PORT` listens on all addresses, `0` disables.
    #[arg(long, default_value = ":8080")]
    pub metrics_bind_address: String,
    /// `/healthz` and `/readyz`; `0` disables.
    #[arg(long, default_value = ":8081")]
    pub health_probe_bind_address: String,
    /// Log lines as text or JSON objects.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// error, warn, info, debug or trace; RUST_LOG refines it.
    #[arg(long, default_value = "info")]
    pub verbosity: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--{flag}={value}: expected HOST:PORT, :PORT or 0")]
pub struct AddressError {
    flag: &'static str,
    value: String,
}

/// `:8080` → `0.0.0.0:8080`, `127.0.0.1:9000` as is, `0` (or empty) → off.
pub fn bind_address(flag: &'static str, value: &str) -> Result<Option<SocketAddr>, AddressError> {
    let error = || AddressError {
        flag,
        value: value.to_owned(),
    };
    match value {
        "" | "0" => Ok(None),
        _ if value.starts_with(':') => format!("0.0.0.0{value}")
            .parse()
            .map(Some)
            .map_err(|_| error()),
        _ => value.parse().map(Some).map_err(|_| error()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            bind_address("m", ":8080").unwrap(),
            Some("0.0.0.0:8080".parse().unwrap())
        );
        assert_eq!(
            bind_address("m", "127.0.0.1:9").unwrap(),
            Some("127.0.0.1:9".parse().unwrap())
        );
        assert_eq!(bind_address("m", "0").unwrap(), None);
        assert_eq!(
            bind_address("metrics-bind-address", "8080")
                .unwrap_err()
                .to_string(),
            "--metrics-bind-address=8080: expected HOST:PORT, :PORT or 0"
        );
    }

    #[test]
    fn chart_arguments_parse() {
        let args = Args::try_parse_from([
            "kiln-operator",
            "--leader-elect=true",
            "--leader-election-lease-name=kiln-operator",
            "--metrics-bind-address=:8080",
            "--health-probe-bind-address=:8081",
            "--builder-image-pull-policy=IfNotPresent",
            "--job-ttl-seconds-after-finished=3600",
            "--log-format=json",
            "--verbosity=info",
            "--builder-image=ghcr.io/kiln-dev/kiln-builder:0.1.0",
        ])
        .unwrap();
        assert!(args.leader_elect);
        assert_eq!(args.log_format, LogFormat::Json);
        assert_eq!(args.job_ttl_seconds_after_finished, 3600);
    }
}
