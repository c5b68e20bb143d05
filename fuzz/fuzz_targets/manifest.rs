//! Fuzzes what kiln makes of a registry's manifest bytes, as
//! `Registry::pull_image` does: the media type probe, index or manifest
//! parsing, the platform choice among an index's entries, and the
//! platform a configuration declares. Nothing may panic; a chosen entry
//! must be one of the index's and match the platform asked for.

#![no_main]

use kiln_builder::platform::Platform;
use kiln_builder::registry::select::{
    ManifestKind, config_platform, entry_platform, manifest_kind, manifest_media_type,
    select_entry,
};
use libfuzzer_sys::fuzz_target;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

fuzz_target!(|data: &[u8]| {
    let platforms = ["linux/amd64", "linux/arm64", "linux/arm/v7", "linux/riscv64"];
    if let Ok(media_type) = manifest_media_type(data) {
        match manifest_kind(&media_type) {
            Some(ManifestKind::Index) => {
                if let Ok(index) = serde_json::from_slice::<ImageIndex>(data) {
                    for text in platforms {
                        let wanted: Platform = text.parse().expect("a valid platform");
                        if let Ok(entry) = select_entry(&index, &wanted) {
                            let found = entry_platform(entry).expect("a chosen entry has a platform");
                            assert!(wanted.match_score(&found).is_some(), "{found} chosen for {wanted}");
                        }
                    }
                }
            }
            Some(ManifestKind::Image) => {
                let _ = serde_json::from_slice::<ImageManifest>(data);
            }
            None => {}
        }
    }
    if let Ok(config) = serde_json::from_slice::<ImageConfiguration>(data) {
        let _ = config_platform(&config);
    }
});
