//! Multi-platform drivers (`local`, `ci`, `k8s`).
