//! Start-up: logging, the API client, the HTTP endpoints, leader election,
//! and both controllers until shutdown or loss of leadership.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kiln_crds::{BuildRequest, MultiArchBuild};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

use crate::build_request;
use crate::build_request::render::BuilderSettings;
use crate::config::{Args, LogFormat, bind_address};
use crate::context::{Context, Listed, Stores};
use crate::http::{self, Health};
use crate::metrics::Metrics;
use crate::multi_arch_build;

fn init_logging(args: &Args) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{},kube=warn", args.verbosity)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn api<K>(client: &Client, namespace: &str) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    if namespace.is_empty() {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), namespace)
    }
}

/// Waits for Ctrl-C or SIGTERM.
async fn termination() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}

/// Runs the operator with `args` until it is told to stop.
pub async fn run(args: Args) -> anyhow::Result<()> {
    init_logging(&args);
    let metrics_address = bind_address("metrics-bind-address", &args.metrics_bind_address)?;
    let health_address =
        bind_address("health-probe-bind-address", &args.health_probe_bind_address)?;
    if args.builder_image.trim().is_empty() {
        anyhow::bail!(
            "--builder-image (or KILN_BUILDER_IMAGE_REF) is empty: name the kiln builder image the Jobs run"
        );
    }

    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster service account or KUBECONFIG)")?;
    let version = client
        .apiserver_version()
        .await
        .context("asking the Kubernetes API server for its version")?;
    info!("connected to Kubernetes {}", version.git_version);

    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health {
        metrics: Arc::clone(&metrics),
        ready: false.into(),
    });
    if let Some(address) = metrics_address {
        http::serve(address, Arc::clone(&health), true)
            .await
            .with_context(|| format!("listening on {address} for metrics"))?;
    }
    if let Some(address) = health_address {
        http::serve(address, Arc::clone(&health), false)
            .await
            .with_context(|| format!("listening on {address} for health probes"))?;
    }

    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            termination().await;
            info!("termination requested");
            stop.cancel();
        });
    }

    let mut leadership = None;
    if args.leader_elect {
        let namespace = args
            .leader_election_namespace
            .clone()
            .context("--leader-elect needs the Lease's namespace: --leader-election-namespace or KILN_POD_NAMESPACE")?;
        let identity = args.identity.clone().unwrap_or_else(|| {
            std::env::var("HOSTNAME")
                .unwrap_or_else(|_| format!("kiln-operator-{}", std::process::id()))
        });
        let manager = LeaseManagerBuilder::new(client.clone(), &args.leader_election_lease_name)
            .with_namespace(&namespace)
            .with_identity(&identity)
            .with_duration(args.leader_election_lease_duration)
            .with_grace(args.leader_election_lease_duration / 3)
            // One field manager per replica, as the library's default is:
            // taking a free Lease is a server-side apply of holderIdentity,
            // and only a different manager makes the second of two
            // replicas racing for it get a conflict. With one shared
            // manager both applies succeeded and both replicas led.
            .with_field_manager(format!("kiln-operator-{identity}"))
            .build()
            .await
            .context("setting up leader election")?;
        let (mut leader, task) = manager.watch().await;
        health.ready.store(true, Ordering::Relaxed);
        info!(%identity, "waiting to become the leader (Lease {namespace}/{})", args.leader_election_lease_name);
        loop {
            if *leader.borrow_and_update() {
                break;
            }
            tokio::select! {
                changed = leader.changed() => changed.context("leader election stopped")?,
                _ = stop.cancelled() => return Ok(()),
            }
        }
        info!(%identity, "became the leader");
        let lost = stop.clone();
        tokio::spawn(async move {
            loop {
                if leader.changed().await.is_err() || !*leader.borrow() {
                    warn!("lost the leadership; stopping the controllers");
                    lost.cancel();
                    return;
                }
            }
        });
        leadership = Some(task);
    }

    let (stores, writers) = Stores::new();
    metrics.count_in_flight_from(stores.builds.clone());
    let ctx = Arc::new(Context::new(
        client.clone(),
        Arc::clone(&metrics),
        BuilderSettings {
            image: args.builder_image.clone(),
            pull_policy: args.builder_image_pull_policy.clone(),
            job_ttl_seconds: args.job_ttl_seconds_after_finished,
        },
        stores,
    ));
    health.ready.store(true, Ordering::Relaxed);
    let namespace = args.watch_namespace.as_str();
    info!(
        "reconciling MultiArchBuilds and BuildRequests in {}",
        if namespace.is_empty() {
            "all namespaces"
        } else {
            namespace
        }
    );
    // One BuildRequest watch for both controllers: the reflector applies
    // each event to the store, then it is handed to each controller, so
    // either finds in the store what woke it. (Not kube's shared streams:
    // their subscriber stalls for good when an object is deleted between
    // the broadcast and its read.)
    let (for_builds_tx, for_builds) = futures::channel::mpsc::unbounded();
    let (for_requests_tx, for_requests) = futures::channel::mpsc::unbounded();
    let request_watch = watcher(
        api::<BuildRequest>(&client, namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|request| request.managed_fields_mut().clear())
    .reflect(writers.requests)
    .inspect(Arc::clone(&ctx.stores.listed).on_listed(Listed::REQUESTS))
    .for_each(move |event| {
        match event {
            Ok(watcher::Event::Apply(request) | watcher::Event::InitApply(request)) => {
                // A controller that stopped takes nothing more.
                let _ = for_requests_tx.unbounded_send(Ok(request.clone()));
                let _ = for_builds_tx.unbounded_send(Ok(request));
            }
            // A deleted request wakes its MultiArchBuild (as owns() does).
            Ok(watcher::Event::Delete(request)) => {
                let _ = for_builds_tx.unbounded_send(Ok(request));
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
            Err(e) => warn!("watching BuildRequests: {e}"),
        }
        futures::future::ready(())
    });
    let builds = multi_arch_build::controller::run(
        Arc::clone(&ctx),
        api::<MultiArchBuild>(&client, namespace),
        writers.builds,
        for_builds,
        stop.clone().cancelled_owned(),
    );
    let requests = build_request::controller::run(
        Arc::clone(&ctx),
        for_requests,
        api::<Job>(&client, namespace),
        api::<Pod>(&client, namespace),
        build_request::controller::RequestWriters {
            jobs: writers.jobs,
            pods: writers.pods,
            nodes: writers.nodes,
        },
        stop.clone().cancelled_owned(),
    );
    // The shared watch ends when the controllers have (it has no shutdown
    // of its own).
    tokio::select! {
        _ = async { tokio::join!(builds, requests) } => {}
        _ = request_watch => {}
    }

    if let Some(task) = leadership {
        // Dropping the receiver made the lease task release the Lease.
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    info!("stopped");
    Ok(())
}
