//! End-to-end harness: a control plane built from source, kwok nodes and a
//! pod runner.
//!
//! [`cluster::Cluster`] starts kube-apiserver, kube-controller-manager,
//! kube-scheduler, etcd and kwok on loopback (see `e2e/cluster/up.sh`).

pub mod cluster;
