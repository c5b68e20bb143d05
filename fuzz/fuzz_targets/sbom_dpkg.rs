//! Fuzzes the dpkg status parser (`/var/lib/dpkg/status` and distroless'
//! `status.d/*`): nothing may panic, and every package it returns has a
//! name and a version.

#![no_main]

use kiln_builder::sbom::dpkg::{Kind, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for kind in [Kind::Status, Kind::StatusD] {
        if let Ok(packages) = parse(data, kind, "var/lib/dpkg/status") {
            for package in packages {
                assert!(!package.name.is_empty());
                assert!(package.version.is_some_and(|v| !v.is_empty()));
            }
        }
    }
});
