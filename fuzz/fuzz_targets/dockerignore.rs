//! Fuzzes `.dockerignore` parsing and matching.
//!
//! Input: the rules text, then a NUL byte, then newline-separated paths.
//! Besides not panicking, it checks the promise the walker relies on: a
//! directory that `can_skip_dir` says may be skipped is excluded, and so is
//! everything below it.

#![no_main]

use kiln_builder::context::IgnoreRules;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (rules_text, paths) = text.split_once('\0').unwrap_or((&text, "a/b/c\nd"));
    let Ok(rules) = IgnoreRules::parse(rules_text) else {
        return;
    };
    for path in paths.split('\n') {
        let excluded = rules.is_excluded(path);
        if rules.can_skip_dir(path) {
            assert!(excluded, "skippable but not excluded: {path:?}");
            for child in ["x", "x/y", ".x", "x.y/z"] {
                let below = format!("{path}/{child}");
                assert!(rules.is_excluded(&below), "{below:?} kept under skippable {path:?}");
            }
        }
    }
});
