//! Fuzzes the `package.json` reader of `node_modules` packages: nothing
//! may panic (serde_json bounds the nesting depth).

#![no_main]

use kiln_builder::sbom::node::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(package)) = parse(data, "node_modules/x/package.json") {
        assert!(!package.name.is_empty());
    }
});
