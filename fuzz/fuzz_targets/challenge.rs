//! Fuzzes what kiln makes of a registry's `WWW-Authenticate` values and
//! its token server's answer, as the registry transport does: the input's
//! lines are header values, the whole input a token answer. Nothing may
//! panic; a challenge is refused for length exactly when it is over the
//! bound; a Bearer realm is an http(s) URL, and the token URL built on it
//! stays on its host; a token is non-empty and fits in a header.

#![no_main]

use kiln_builder::registry::challenge::{
    Challenge, ChallengeError, MAX_CHALLENGE_BYTES, parse_challenge, parse_token, token_url,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let values: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let length: usize = values.iter().map(|v| v.len() + 2).sum();
    match parse_challenge(values.iter().copied()) {
        None => unreachable!("split always yields a value"),
        Some(Err(ChallengeError::TooLong { length: reported })) => {
            assert_eq!(reported, length);
            assert!(length > MAX_CHALLENGE_BYTES);
        }
        Some(result) => {
            assert!(length <= MAX_CHALLENGE_BYTES, "{length} bytes were parsed");
            if let Ok(Challenge::Bearer { realm, service }) = result {
                assert!(matches!(realm.scheme(), "http" | "https"), "{realm}");
                let scopes = ["repository:a/b:pull,push".to_string()];
                let url = token_url(&realm, service.as_deref(), &scopes);
                assert_eq!(url.host_str(), realm.host_str());
                assert_eq!(url.port_or_known_default(), realm.port_or_known_default());
                assert!(url.query_pairs().any(|(k, v)| k == "scope" && v == scopes[0]));
            }
        }
    }
    if let Ok(token) = parse_token(data) {
        assert!(!token.value.is_empty());
        // What an HTTP header value may hold: no control bytes but tab.
        assert!(
            token.value.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f)),
            "{:?}",
            token.value
        );
    }
});
