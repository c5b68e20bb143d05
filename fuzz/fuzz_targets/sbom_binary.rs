//! Fuzzes what the SBOM reads from executables: the Go build information
//! section parser, the cargo auditable section reader (zlib + JSON, size
//! capped), and the ELF section lookup on a file holding the input.

#![no_main]

use std::io::Write;

use kiln_builder::sbom::binary::{parse_auditable, parse_go_buildinfo, scan_elf};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(packages) = parse_go_buildinfo(data, "usr/bin/app") {
        assert!(packages.iter().all(|p| !p.name.is_empty()));
    }
    let _ = parse_auditable(data, "usr/bin/app");
    if data.starts_with(b"\x7fELF") {
        let mut file = tempfile::tempfile().expect("a scratch file");
        file.write_all(data).expect("write the scratch file");
        let _ = scan_elf(&file, "usr/bin/app");
    }
});
