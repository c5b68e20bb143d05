//! Fuzzes the apk database parser (`/lib/apk/db/installed`): nothing may
//! panic, and every package it returns has a name and a version.

#![no_main]

use kiln_builder::sbom::apk::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(packages) = parse(data, "lib/apk/db/installed") {
        for package in packages {
            assert!(!package.name.is_empty());
            assert!(package.version.is_some_and(|v| !v.is_empty()));
        }
    }
});
