//! One TLS crypto provider for the whole process.
//!
//! reqwest (kiln's registry and git client) is compiled without a provider and kube brings
//! `ring`; installing `ring` once at start-up keeps every client on the same
//! implementation instead of rustls refusing to choose between two.

/// Installs `ring` as the process-wide rustls provider. Safe to call more
/// than once: later calls find it installed and do nothing.
pub fn install_crypto_provider() {
    // An Err only means a provider is already installed, which is the state
    // this function exists to reach.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
