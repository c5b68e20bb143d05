//! Fuzzes the Python core metadata parser (`METADATA`, `PKG-INFO`):
//! nothing may panic; a package found has a name and a version.

#![no_main]

use kiln_builder::sbom::python::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(package) = parse(data, "usr/lib/python3/dist-packages/x.dist-info/METADATA") {
        assert!(!package.name.is_empty());
        assert!(package.version.is_some_and(|v| !v.is_empty()));
    }
});
