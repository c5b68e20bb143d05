//! End-to-end harness: a control plane built from source, kwok nodes, a
//! pod runner and a real node ([`real_node::RealNode`]: kubelet,
//! containerd, runc).
//!
//! [`cluster::Cluster`] starts kube-apiserver, kube-controller-manager,
//! kube-scheduler, etcd and kwok on loopback (see `e2e/cluster/up.sh`);
//! [`runner::Runner`] plays the kubelet for the pods bound to its fake
//! nodes; [`binaries::workspace_binary`] finds the workspace's `kiln` and
//! `kiln-operator` for the runner's image table.
//!
//! A test that runs the operator against the cluster looks like this:
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use kiln_e2e::{binaries::workspace_binary, cluster::Cluster, runner::{Runner, RunnerConfig}};
//!
//! let cluster = Cluster::shared().await?; // or Cluster::start() for one of its own
//! let client = cluster.client().await?; // cluster-admin, one per test
//! let namespace = cluster.create_namespace(&client, "mab").await?;
//! let kiln = workspace_binary("kiln-builder", "kiln")?;
//! let config = RunnerConfig::default()
//!     // Builder pods name the image's entrypoint or nothing; either runs `kiln`.
//!     .with_program("ghcr.io/example/kiln", &kiln, &["/kiln/executor", "/kaniko/executor"])
//!     .with_replaced_arg("ghcr.io/example/kiln", "--isolation=inplace", "--isolation=chroot")
//!     .in_namespace(&namespace);
//! let runner = Runner::start(cluster, config).await?;
//! cluster.add_node("kiln-e2e-s390x-1", "s390x").await?; // Ready when it returns
//! // … create objects; runner.log(&namespace, "pod") and runner.pod_files(…)
//! // (token, kubeconfig, termination message) are there for assertions.
//! # drop(runner);
//! # Ok(())
//! # }
//! ```
//!
//! The operator itself can run as a plain process with
//! `KUBECONFIG=cluster.kubeconfig()` (cluster-admin), or as the pod of its
//! Deployment through the runner, which then uses the Deployment's service
//! account.

pub mod binaries;
pub mod cluster;
pub mod real_node;
pub mod runner;
