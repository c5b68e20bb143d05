//! Prints the kiln CRDs as a multi-document YAML stream, or with `--write`
//! writes them into `charts/kiln/crds/` and `config/crd/` of the repository
//! (`--root DIR` to write elsewhere).

use anyhow::{Context, bail};
use std::io::Write;
use std::path::Path;

fn main() -> anyhow::Result<()> {
    let mut write = false;
    // The repository root: the parent of this crate's directory.
    let mut root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--write" => write = true,
            "--root" => root = args.next().context("--root needs a directory")?.into(),
            "-h" | "--help" => {
                println!("usage: crdgen [--write [--root DIR]]");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (usage: crdgen [--write [--root DIR]])"),
        }
    }
    if write {
        for path in kiln_crds::render::write_files(&root)? {
            eprintln!("wrote {}", path.display());
        }
    } else {
        std::io::stdout()
            .write_all(kiln_crds::render::render_stream()?.as_bytes())
            .context("writing to stdout")?;
    }
    Ok(())
}
