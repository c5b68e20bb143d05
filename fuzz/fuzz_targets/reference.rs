//! Fuzzes kiln's image reference parser against oci-spec's regular
//! expression: on ASCII input both must give the same reference or the
//! same error; on other input kiln may only refuse what oci-spec refuses
//! or a tag oci-spec's Unicode `\w` lets through.

#![no_main]

use kiln_builder::registry::reference::parse;
use libfuzzer_sys::fuzz_target;
use oci_spec::distribution::Reference;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ours = parse(text);
    let theirs = text.parse::<Reference>();
    if text.is_ascii() {
        assert_eq!(ours, theirs, "{text:?}");
    } else if ours.is_ok() {
        assert_eq!(ours, theirs, "{text:?}");
    }
});
