//! Fuzzes the Dockerfile front end: parsing, variable expansion of the
//! global ARGs and the stage planner (which expands FROM, ARG defaults and
//! every expanded instruction's words), with the build arguments a user
//! could pass. Besides not panicking (a stack overflow aborts too), it
//! checks that an error message quotes at most a bounded part of the
//! input: errors are printed, and a Dockerfile may hold what a user did
//! not mean to print.

#![no_main]

use std::collections::BTreeMap;

use kiln_builder::dockerfile::{self, BuildVars};
use kiln_builder::platform::Platform;
use libfuzzer_sys::fuzz_target;

/// Longest error message accepted: excerpts of a line or two plus the
/// words around them, never a whole input.
const MAX_MESSAGE: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = match dockerfile::parse(&text) {
        Ok(parsed) => parsed,
        Err(err) => {
            check_message(&err.to_string());
            return;
        }
    };
    let platform: Platform = "linux/arm64".parse().expect("a valid platform");
    let mut build_args = BTreeMap::new();
    build_args.insert("VERSION".to_string(), "1.0".to_string());
    let vars = match BuildVars::new(
        build_args,
        &platform,
        &Platform::host(),
        &parsed.global_args,
        parsed.escape,
    ) {
        Ok(vars) => vars,
        Err(err) => {
            check_message(&err.to_string());
            return;
        }
    };
    for skip_unused in [false, true] {
        if let Err(err) = dockerfile::plan(&parsed, None, skip_unused, &vars) {
            check_message(&err.to_string());
        }
    }
});

fn check_message(message: &str) {
    assert!(
        message.len() <= MAX_MESSAGE,
        "an error message of {} bytes: {}…",
        message.len(),
        &message[..message.char_indices().nth(200).map_or(message.len(), |(i, _)| i)]
    );
}
