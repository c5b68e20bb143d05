//! `kiln-operator`: reconciles MultiArchBuild and BuildRequest resources.
//! The controllers arrive with the operator issue; until then the binary
//! says so instead of pretending to run.

fn main() -> anyhow::Result<()> {
    kiln_builder::tls::install_crypto_provider();
    anyhow::bail!(
        "kiln-operator {} ({}/{}): the controllers are not built yet",
        env!("CARGO_PKG_VERSION"),
        kiln_crds::GROUP,
        kiln_crds::VERSION
    )
}
