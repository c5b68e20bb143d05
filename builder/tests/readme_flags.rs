//! README.md's flag reference is generated from the CLI definitions; this
//! fails when they drift apart. `KILN_UPDATE_README=1 cargo test -p
//! kiln-builder --test readme_flags` rewrites the section.

use kiln_builder::cli::reference;

#[test]
fn readme_flag_reference_matches_the_cli() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).expect("README.md");
    let updated =
        reference::update_readme(&readme).expect("README.md has the flag reference markers");
    if std::env::var_os("KILN_UPDATE_README").is_some() {
        std::fs::write(path, &updated).expect("writing README.md");
        return;
    }
    assert!(
        readme == updated,
        "README.md's flag reference is out of date: run `KILN_UPDATE_README=1 cargo test -p kiln-builder --test readme_flags`"
    );
    // Every flag the parser accepts is documented.
    for line in [
        "--multi-platform",
        "--destination",
        "--push-retry-initial-delay",
        "--oci-mode",
    ] {
        assert!(readme.contains(&format!("`{line}`")), "{line} missing");
    }
}
