//! Fuzzes the rpm header parser (one blob of rpmdb.sqlite's `Packages`
//! table): nothing may panic or allocate from an unchecked count, and a
//! header that parses re-parses the same after a round trip through
//! `header::build`.

#![no_main]

use kiln_builder::sbom::rpm::header::{build, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = parse(data) {
        let strings: Vec<(u32, u32, &[u8])> = vec![
            (1000, 6, info.name.as_bytes()),
            (1001, 6, info.version.as_bytes()),
            (1002, 6, info.release.as_bytes()),
        ];
        let epochs: Vec<(u32, u32)> = info.epoch.map(|e| (1003, e)).into_iter().collect();
        // Strings holding a NUL cannot round-trip (the parser stops there,
        // and lossy UTF-8 may have changed bytes): only check clean ones.
        if strings.iter().all(|(_, _, s)| !s.contains(&0)) {
            let again = parse(&build(&strings, &epochs)).expect("a built header parses");
            assert_eq!(again.name, info.name);
            assert_eq!(again.version, info.version);
            assert_eq!(again.release, info.release);
            assert_eq!(again.epoch, info.epoch);
        }
    }
});
