//! `kiln-operator`: see the library for what it does and
//! `charts/kiln/README.md` for its flags.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kiln_builder::tls::install_crypto_provider();
    kiln_operator::run(kiln_operator::config::Args::parse()).await
}
