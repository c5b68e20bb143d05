//! Fuzzes the reading of a cosign private key file (`--sign-key`): nothing
//! may panic, and a key that parses asks scrypt for no more than the
//! bounds allow, so a hostile file cannot make kiln derive a key with
//! gigabytes of memory. Key derivation itself is not run here.

#![no_main]

use kiln_builder::attest::sign::{MAX_LOG_N, MAX_P, MAX_R, SealedKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = SealedKey::parse(data) {
        assert!((1..=MAX_LOG_N).contains(&key.log_n), "log N {}", key.log_n);
        assert!((1..=MAX_R).contains(&key.r), "r {}", key.r);
        assert!((1..=MAX_P).contains(&key.p), "p {}", key.p);
        assert_eq!(key.nonce.len(), 24);
    }
});
