//! End-to-end harness: a control plane built from source, kwok nodes and a
//! pod runner.
//!
//! [`cluster::Cluster`] starts kube-apiserver, kube-controller-manager,
//! kube-scheduler, etcd and kwok on loopback (see `e2e/cluster/up.sh`);
//! [`runner::Runner`] plays the kubelet for the pods bound to its fake
//! nodes.

pub mod binaries;
pub mod cluster;
pub mod runner;
