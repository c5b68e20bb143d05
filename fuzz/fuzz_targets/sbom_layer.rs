//! Fuzzes SBOM generation over one layer: the input is wrapped as the
//! content of well-known package files in a tar layer (and, raw, as a
//! layer itself), so the walk, the whiteout bookkeeping, the rpm sqlite
//! reader and every scanner see hostile bytes. Nothing may panic; a
//! failure is either an error or a skipped file, and the scratch directory
//! is always removed.

#![no_main]

use kiln_builder::platform::Platform;
use kiln_builder::sbom::{LayerFile, SbomOptions, Subject, generate};
use libfuzzer_sys::fuzz_target;

const PATHS: [&str; 8] = [
    "var/lib/dpkg/status",
    "var/lib/dpkg/status.d/x",
    "lib/apk/db/installed",
    "var/lib/rpm/rpmdb.sqlite",
    "usr/lib/python3/dist-packages/x-1.dist-info/METADATA",
    "app/node_modules/x/package.json",
    "usr/local/bin/app",
    "etc/os-release",
];

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).expect("the work directory");
    let subject = Subject {
        reference: "fuzz.example/x:1".into(),
        platform: Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        },
        manifest_digest: "sha256:00".into(),
    };
    let options = SbomOptions::new(&work, 0);

    let mut builder = tar::Builder::new(Vec::new());
    let path = PATHS[data.first().map_or(0, |b| *b as usize) % PATHS.len()];
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o755);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, path, data).expect("append");
    let wrapped = dir.path().join("wrapped");
    std::fs::write(&wrapped, builder.into_inner().expect("tar")).expect("write layer");
    let raw = dir.path().join("raw");
    std::fs::write(&raw, data).expect("write layer");

    for layer in [wrapped, raw] {
        let layers = [LayerFile {
            path: layer,
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        }];
        if let Ok(sbom) = generate(&layers, &subject, &options) {
            serde_json::from_slice::<serde_json::Value>(&sbom.document).expect("valid JSON");
        }
        assert_eq!(std::fs::read_dir(&work).expect("work dir").count(), 0);
    }
});
